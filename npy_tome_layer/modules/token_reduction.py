"""One interface for shortening the HuBERT sequence between transformer layers.

A reduction declares
  * ``evidence(tokens, acting)``: what it needs from the attention of a layer
    (an ``AttentionEvidence`` the attention fills while it runs, or None),
  * ``acts_after(layer, init_layer, rate)``: whether it shortens after that layer,
  * ``reduce(tokens, evidence, rate, layer)``: the shorter ``Tokens``; the
    decision is made once and applied to states, padding mask, positions and
    sizes alike,
  * ``lengths_after(valid, run, rate)``: the same, as arithmetic (FLOP formula),
  * ``check(min_rate, init_layer, num_layers)``: settings it cannot run, refused
    when the model is built rather than at some later forward.
``acts_after_dropped_layer``: whether it also acts after a layer that layerdrop
skipped (the conv does, so training sees the length inference does; the
blind baselines do not, so their frame counts stay those of ``prune``).
A new reduction is one class with ``@register_reduction("name")``;
``--token-reduction``, the benchmark and the visualiser list ``REDUCTIONS``.
Timing goes through ``torch.profiler.record_function`` labels (``PROFILE_LABELS``).
"""
import math
from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple, Type

import torch
import torch.nn as nn
from torch import Tensor
from torch.profiler import record_function

from .frame_pruning import (
    gather_frames,
    keep_counts,
    random_ranks,
    ranked_frame_scores,
    received_attention,
    select_frames,
    uniform_ranks,
    valid_lengths,
)
from .token_merging import merge_tokens

EVIDENCE_LABEL = "token_reduction.evidence"  # scoring inside the attention blocks
REDUCE_LABEL = "token_reduction.reduce"  # top-k / matching / conv + gathering
PROFILE_LABELS = (EVIDENCE_LABEL, REDUCE_LABEL)


def full_precision(t: Tensor):
    """Autocast off on ``t``'s device: scores and matching stay fp32 under --amp
    (autocast would run their matmuls in half precision)."""
    return torch.autocast(device_type=t.device.type, enabled=False)


@dataclass(frozen=True)
class Tokens:
    """The sequence between two layers, batch first.

    x: B x T x C; padding_mask: B x T (True = padding) or None; positions:
    B x T original frame index of each token; sizes: B x T frames each token
    stands for (merging) or None (one each).
    """

    x: Tensor
    padding_mask: Optional[Tensor]
    positions: Tensor
    sizes: Optional[Tensor] = None

    def take(self, indices: Tensor, padding_mask: Tensor) -> "Tokens":
        """The tokens at ``indices`` (B x W), one gather for every field."""
        return Tokens(gather_frames(self.x, indices), padding_mask,
                      self.positions.gather(1, indices),
                      None if self.sizes is None else self.sizes.gather(1, indices))


# --- what the attention hands over --------------------------------------------

class AttentionEvidence:
    """Filled by one layer's attention during its forward, read by the reduction.

    ``needs_probabilities``: the attention is computed explicitly and each block
    of fp32 probabilities (some rows, some of ``num_heads`` heads) goes to
    ``add_probabilities``.
    ``needs_keys``: the projected keys go to ``add_keys``. ``key_log_size``
    (B x T, or None) is added to the logits (ToMe's proportional attention).
    """

    needs_probabilities = False
    needs_keys = False

    def __init__(self, key_log_size: Optional[Tensor] = None):
        self.key_log_size = key_log_size

    def add_probabilities(self, probs: Tensor, rows: slice, num_heads: int,
                          key_padding_mask: Optional[Tensor]) -> None:
        pass

    def add_keys(self, keys: Tensor) -> None:
        pass


class ReceivedAttentionSum(AttentionEvidence):
    """B x T attention each key frame receives (head mean, valid queries), fp32."""

    needs_probabilities = True

    def __init__(self, key_log_size: Optional[Tensor] = None):
        super().__init__(key_log_size)
        self._rows: Dict[int, Tensor] = {}  # first row of a block -> its rows' sums

    def add_probabilities(self, probs, rows, num_heads, key_padding_mask):
        with record_function(EVIDENCE_LABEL), full_precision(probs):
            # scores only choose indices: no autograd graph for them
            mask = None if key_padding_mask is None else key_padding_mask[rows]
            part = received_attention(probs.detach(), mask) * (probs.size(1) / num_heads)
            first = rows.start or 0
            self._rows[first] = self._rows[first] + part if first in self._rows else part

    @property
    def scores(self) -> Tensor:
        blocks = [self._rows[first] for first in sorted(self._rows)]
        return torch.cat(blocks, dim=0) if len(blocks) > 1 else blocks[0]


class KeyMean(AttentionEvidence):
    """B x T x d keys averaged over heads (token merging's similarity)."""

    needs_keys = True

    def __init__(self, key_log_size: Optional[Tensor] = None):
        super().__init__(key_log_size)
        self.keys: Optional[Tensor] = None

    def add_keys(self, keys):  # B x H x T x d
        with record_function(EVIDENCE_LABEL):
            self.keys = keys.detach().mean(dim=1)


# --- the reductions -----------------------------------------------------------

class TokenReduction(nn.Module):
    """Base: override ``reduce`` (and the other hooks where they differ)."""

    name = None
    evidence_type: Optional[Type[AttentionEvidence]] = None
    uses_rate = True  # the keep rate sets how much it removes
    acts_after_dropped_layer = False

    @classmethod
    def build(cls, embed_dim: int, conv_stride: int = 2, seed: int = 0) -> "TokenReduction":
        return cls()

    def acts_after(self, layer: int, init_layer: int, rate: float) -> bool:
        """Default: after every layer from ``init_layer`` on, while rate < 1."""
        return layer >= init_layer and rate < 1.0

    def check(self, min_rate: float, init_layer: int, num_layers: int) -> None:
        """Raise ValueError at build time for settings this reduction cannot run."""

    def evidence(self, tokens: Tokens, acting: bool) -> Optional[AttentionEvidence]:
        return self.evidence_type() if acting and self.evidence_type else None

    def reduce(self, tokens: Tokens, evidence: Optional[AttentionEvidence],
               rate: float, layer: int) -> Tokens:
        raise NotImplementedError

    def lengths_after(self, valid: int, run: int, rate: float) -> Tuple[int, int]:
        """(valid frames, sequence length) after one step, equal-length rows."""
        k = int(keep_counts(torch.tensor([valid]), rate)[0])
        return k, k

    def flops(self, run: int, embed_dim: int) -> int:
        """Multiply-add FLOPs of one step on ``run`` frames (besides scoring)."""
        return 0


REDUCTIONS: Dict[str, Type[TokenReduction]] = {}


def register_reduction(name: str):
    def register(cls):
        if name in REDUCTIONS:
            raise ValueError(f"token reduction {name!r} is already registered")
        cls.name = name
        REDUCTIONS[name] = cls
        return cls
    return register


def build_reduction(name: str, embed_dim: int, conv_stride: int = 2,
                    seed: int = 0) -> TokenReduction:
    if name not in REDUCTIONS:
        raise ValueError(f"token_reduction must be one of {tuple(REDUCTIONS)}, got {name!r}")
    return REDUCTIONS[name].build(embed_dim, conv_stride, seed)


@register_reduction("prune")
class AttentionPruning(TokenReduction):
    """The method: keep the ceil(rate * n) frames that receive the most attention."""

    evidence_type = ReceivedAttentionSum

    def reduce(self, tokens, evidence, rate, layer):
        with full_precision(tokens.x):
            indices, padding_mask = select_frames(evidence.scores, tokens.padding_mask, rate)
        return tokens.take(indices, padding_mask)


class BlindSelection(TokenReduction):
    """Keeps as many frames as ``prune`` (ceil(rate * n) of a row's n valid
    frames, after the same layers, layerdrop included) but chooses them without
    looking at the attention: ``ranks(n, k, layer)`` names which of the row's
    valid frames (0 = earliest) survive. The attention runs its fast path."""

    def ranks(self, n: int, k: int, layer: int) -> Tensor:
        raise NotImplementedError

    def reduce(self, tokens, evidence, rate, layer):
        x, padding_mask = tokens.x, tokens.padding_mask
        num_valid = valid_lengths(padding_mask, x.size(0), x.size(1), x.device)
        counts = keep_counts(num_valid, rate).tolist()
        ranks = [self.ranks(n, k, layer) for n, k in zip(num_valid.tolist(), counts)]
        scores = ranked_frame_scores(ranks, padding_mask, x.size(1), x.device)
        indices, new_mask = select_frames(scores, padding_mask, rate)
        return tokens.take(indices, new_mask)


@register_reduction("uniform")
class UniformSelection(BlindSelection):
    """Blind baseline: the kept frames evenly spaced over the row."""

    def ranks(self, n, k, layer):
        return uniform_ranks(n, k)


@register_reduction("random")
class RandomSelection(BlindSelection):
    """Blind baseline: a pseudo-random subset, drawn on the CPU from
    (``--token-reduction-seed``, layer, n) only, so it is the same in any batch
    and on any device."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = seed

    @classmethod
    def build(cls, embed_dim, conv_stride=2, seed=0):
        return cls(seed)

    def ranks(self, n, k, layer):
        return random_ranks(n, k, (self.seed, layer))


@register_reduction("merge")
class TokenMerging(TokenReduction):
    """ToMe bipartite matching to the same counts as pruning; after the first
    merge every layer's attention counts a token as often as its size."""

    evidence_type = KeyMean

    def evidence(self, tokens, acting):
        log_size = None if tokens.sizes is None else tokens.sizes.log()
        return KeyMean(log_size) if acting or log_size is not None else None

    def check(self, min_rate, init_layer, num_layers):
        if min_rate < 0.5:
            raise ValueError(f"token merging needs keep rates >= 0.5 (one bipartite step "
                             f"at most halves a sequence), got a rate down to {min_rate}")

    def reduce(self, tokens, evidence, rate, layer):
        sizes = tokens.sizes
        if sizes is None:
            sizes = tokens.x.new_ones(tokens.x.shape[:2], dtype=torch.float32)
        with full_precision(tokens.x):
            x, sizes, positions, padding_mask = merge_tokens(
                tokens.x, evidence.keys, sizes, tokens.positions, tokens.padding_mask, rate)
        return Tokens(x, padding_mask, positions, sizes)


@register_reduction("conv")
class StridedConvReduction(TokenReduction):
    """Conv1d over time with kernel = stride = s after ``init_layer`` only:
    n frames -> ceil(n / s). Padded input frames are zeroed first so they never
    leak into a valid output frame; odd tails are zero-padded. Initialised to
    average pooling, so a pretrained encoder starts from sensible features."""

    uses_rate = False
    acts_after_dropped_layer = True

    def __init__(self, dim: int, stride: int = 2):
        super().__init__()
        if stride < 2:
            raise ValueError(f"conv length reduction needs stride >= 2, got {stride}")
        self.stride = stride
        self.conv = nn.Conv1d(dim, dim, kernel_size=stride, stride=stride)
        with torch.no_grad():
            self.conv.weight.zero_()
            for j in range(stride):
                self.conv.weight[:, :, j] = torch.eye(dim) / stride
            self.conv.bias.zero_()

    @classmethod
    def build(cls, embed_dim, conv_stride=2, seed=0):
        return cls(embed_dim, conv_stride)

    def acts_after(self, layer, init_layer, rate):
        return layer == init_layer

    def check(self, min_rate, init_layer, num_layers):
        if init_layer >= num_layers:
            raise ValueError(f"the conv reduction acts after layer pruning_init_layer, which must "
                             f"be < {num_layers} for a {num_layers}-layer encoder, got {init_layer}")

    def forward(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """x: B x T x C -> (B x ceil(T/s) x C, new padding mask or None)."""
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        pad = (-x.size(1)) % self.stride
        y = self.conv(nn.functional.pad(x.transpose(1, 2), (0, pad))).transpose(1, 2)
        if padding_mask is None:
            return y, None
        valid = (~padding_mask).sum(dim=1)
        out_len = torch.div(valid + self.stride - 1, self.stride, rounding_mode="floor")
        return y, torch.arange(y.size(1), device=x.device).unsqueeze(0) >= out_len.unsqueeze(1)

    def reduce(self, tokens, evidence, rate, layer):
        x, padding_mask = self(tokens.x, tokens.padding_mask)
        sizes = None if tokens.sizes is None else tokens.sizes[:, :: self.stride]
        return replace(tokens, x=x, padding_mask=padding_mask,
                       positions=tokens.positions[:, :: self.stride], sizes=sizes)

    def lengths_after(self, valid, run, rate):
        return math.ceil(valid / self.stride), math.ceil(run / self.stride)

    def flops(self, run, embed_dim):
        return 2 * embed_dim * embed_dim * self.stride * math.ceil(run / self.stride)
