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
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Type

import torch
import torch.nn as nn
from torch import Tensor
from torch.profiler import record_function

from ..errors import InputError
from .selection import gather_frames, keep_counts, received_attention

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
    stands for (merging) or None (one each); spans: B x T x 2 first and last
    original frame of the run a token stands for (``adjacent``, ``fold``) or
    None (each token its own frame: first == last == position).
    """

    x: Tensor
    padding_mask: Optional[Tensor]
    positions: Tensor
    sizes: Optional[Tensor] = None
    spans: Optional[Tensor] = None

    def take(self, indices: Tensor, padding_mask: Tensor) -> "Tokens":
        """The tokens at ``indices`` (B x W), one gather for every field."""
        return Tokens(gather_frames(self.x, indices), padding_mask,
                      self.positions.gather(1, indices),
                      None if self.sizes is None else self.sizes.gather(1, indices),
                      None if self.spans is None else gather_frames(self.spans, indices))

    def span_bounds(self) -> Tensor:
        """B x T x 2: first and last original frame each token stands for."""
        if self.spans is not None:
            return self.spans
        return self.positions.unsqueeze(-1).expand(-1, -1, 2)


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

    def accumulate(self, probs: Tensor, rows: slice, num_heads: int,
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
        with record_function(EVIDENCE_LABEL):
            self.accumulate(probs, rows, num_heads, key_padding_mask)

    def accumulate(self, probs, rows, num_heads, key_padding_mask):
        """``add_probabilities`` without its profiler label (for a caller that
        labels a whole scoring pass). ``key_padding_mask`` marks the padded
        *queries* of this block: they are left out of the sum."""
        with full_precision(probs):
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
    data_dependent_counts = False  # its frame counts depend on the attention, not only n
    # the ReductionOptions of its own (OWN_OPTIONS) that it reads; any other given is refused
    options_read: Tuple[str, ...] = ()
    setting_value = None  # its own number that the setting names instead of the keep rate

    @classmethod
    def build(cls, embed_dim: int, options: "ReductionOptions") -> "TokenReduction":
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


@dataclass(frozen=True)
class ReductionOptions:
    """Settings a reduction may read besides the keep rate (each reads its own
    in ``build``; ``--conv-reduction-stride``, ``--token-reduction-seed``,
    ``--pruning-coverage``, ``--pruning-min-keep-rate``, ``--pruning-window``,
    ``--pruning-merge-threshold``)."""

    conv_stride: int = 2
    seed: int = 0
    coverage: Optional[float] = None
    min_keep_rate: float = 0.0
    window: Optional[int] = None
    merge_threshold: Optional[float] = None  # --pruning-merge-threshold (adjacent)


# options that belong to one reduction, with the API / flag name a user gave them
# by (conv_stride and seed keep fairseq's defaults in every run's args)
OWN_OPTIONS = {"coverage": "pruning_coverage", "min_keep_rate": "pruning_min_keep_rate",
               "window": "pruning_window", "merge_threshold": "pruning_merge_threshold"}


def build_reduction(name: str, embed_dim: int,
                    options: ReductionOptions = ReductionOptions()) -> TokenReduction:
    if name not in REDUCTIONS:
        raise InputError(f"token_reduction must be one of {tuple(REDUCTIONS)}, got {name!r}")
    cls = REDUCTIONS[name]
    for field, given_as in OWN_OPTIONS.items():
        value = getattr(options, field)
        if value != getattr(ReductionOptions, field) and field not in cls.options_read:
            readers = [n for n, c in REDUCTIONS.items() if field in c.options_read]
            # a typo in --token-reduction would otherwise train another method
            raise InputError(f"{given_as} {value!r} is read by token_reduction "
                             f"{' or '.join(readers)}, not by {name!r}")
    return cls.build(embed_dim, options)
