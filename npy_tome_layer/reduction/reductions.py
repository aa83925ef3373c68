"""The registered reductions: ``prune`` (the method), ``merge`` and ``conv``
(alternatives that shorten by other means), ``uniform`` and ``random`` (blind
baselines that keep prune's frame counts without looking at the attention),
``coverage`` (as many frames as cover a share of the received attention, per
utterance) and ``local`` (prune's count, spread over windows of the utterance)."""
import math
from dataclasses import replace
from typing import Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import InputError
from .interface import (
    ActingOnceWithWeights,
    KeyMean,
    ReceivedAttentionSum,
    TokenReduction,
    full_precision,
    refuse_keep_rate,
    register_reduction,
)
from ..values import KEEP_RATE, SHARE, whole_number_rule
from .runs import run_spans, stride_runs
from .merging import merge_tokens
from .selection import (
    coverage_counts,
    keep_counts,
    random_choice,
    ranked_frame_scores,
    select_by_windows,
    select_counts,
    select_frames,
    uniform_choice,
    valid_lengths,
)
from .settings import Setting

# read by coverage and by adjacent with a merge threshold: one declaration, listed by both
PRUNING_MIN_KEEP_RATE = Setting(
    "pruning_min_keep_rate", SHARE, 0.0,
    "--token-reduction coverage, or adjacent with --pruning-merge-threshold: keep at least "
    "ceil(R x n) frames (default 0: no floor)")


@register_reduction("prune")
class AttentionPruning(TokenReduction):
    """The method: keep the ceil(rate * n) frames that receive the most attention."""

    evidence_type = ReceivedAttentionSum

    def reduce(self, tokens, evidence, rate, layer):
        with full_precision(tokens.x):
            indices, padding_mask = select_frames(evidence.scores, tokens.padding_mask, rate)
        return tokens.take(indices, padding_mask)


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
            raise InputError(f"token merging needs keep rates >= 0.5 (one bipartite step "
                             f"at most halves a sequence), got a rate down to {min_rate}")

    def reduce(self, tokens, evidence, rate, layer):
        sizes = tokens.sizes
        if sizes is None:
            sizes = tokens.x.new_ones(tokens.x.shape[:2], dtype=torch.float32)
        with full_precision(tokens.x):
            x, sizes, positions, padding_mask = merge_tokens(
                tokens.x, evidence.keys, sizes, tokens.positions, tokens.padding_mask, rate)
        # bipartite matching merges tokens far apart: no run of frames to name
        return replace(tokens, x=x, padding_mask=padding_mask, positions=positions, sizes=sizes,
                       spans=None)


@register_reduction("conv")
class StridedConvReduction(ActingOnceWithWeights):
    """Conv1d over time with kernel = stride = s after ``init_layer`` only:
    n frames -> ceil(n / s). Padded input frames are zeroed first so they never
    leak into a valid output frame; odd tails are zero-padded. Initialised to
    average pooling, so a pretrained encoder starts from sensible features."""

    uses_rate = False
    settings = (Setting("conv_reduction_stride", whole_number_rule(2), 2,
                        "--token-reduction conv: its kernel and stride"),)

    def __init__(self, dim: int, conv_reduction_stride: int = 2):
        super().__init__()
        stride = self.settings[0].check(conv_reduction_stride)
        self.stride = stride
        self.conv = nn.Conv1d(dim, dim, kernel_size=stride, stride=stride)
        with torch.no_grad():
            self.conv.weight.zero_()
            for j in range(stride):
                self.conv.weight[:, :, j] = torch.eye(dim) / stride
            self.conv.bias.zero_()

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
        # each output frame stands for the stride of frames it pooled
        spans = run_spans(tokens, stride_runs(tokens.padding_mask, *tokens.x.shape[:2],
                                              self.stride, tokens.x.device))
        return replace(tokens, x=x, padding_mask=padding_mask,
                       positions=tokens.positions[:, :: self.stride], sizes=sizes, spans=spans)

    def lengths_after(self, valid, run, rate):
        return math.ceil(valid / self.stride), math.ceil(run / self.stride)

    def flops(self, run, embed_dim):
        return 2 * embed_dim * embed_dim * self.stride * math.ceil(run / self.stride)


class BlindSelection(TokenReduction):
    """Keeps as many frames as ``prune`` (ceil(rate * n) of a row's n valid
    frames, after the same layers, layerdrop included) but chooses them without
    looking at the attention: ``chosen(num_valid, counts, length, layer)``
    marks, for every row at once, which of the row's valid frames (by rank,
    0 = earliest) survive. The attention runs its fast path."""

    def chosen(self, num_valid: Tensor, counts: Tensor, length: int, layer: int) -> Tensor:
        raise NotImplementedError

    def reduce(self, tokens, evidence, rate, layer):
        x, padding_mask = tokens.x, tokens.padding_mask
        num_valid = valid_lengths(padding_mask, x.size(0), x.size(1), x.device)
        chosen = self.chosen(num_valid, keep_counts(num_valid, rate), x.size(1), layer)
        indices, new_mask = select_frames(ranked_frame_scores(chosen, padding_mask),
                                          padding_mask, rate)
        return tokens.take(indices, new_mask)


@register_reduction("uniform")
class UniformSelection(BlindSelection):
    """Blind baseline: the kept frames evenly spaced over the row."""

    def chosen(self, num_valid, counts, length, layer):
        return uniform_choice(num_valid, counts, length)


@register_reduction("random")
class RandomSelection(BlindSelection):
    """Blind baseline: a pseudo-random subset, a hash of
    (``--token-reduction-seed``, layer, n, frame rank) only, so it is the same
    in any batch and on any device."""

    settings = (Setting("token_reduction_seed", whole_number_rule(0), 0,
                        "--token-reduction random: the seed (with the layer and the row's "
                        "length it fixes the subset)"),)

    def __init__(self, token_reduction_seed: int = 0):
        super().__init__()
        self.seed = token_reduction_seed

    def chosen(self, num_valid, counts, length, layer):
        return random_choice(num_valid, counts, length, self.seed, layer)


@register_reduction("coverage")
class CoverageReduction(TokenReduction):
    """Content-adaptive: after each layer from the init layer on, each row keeps
    the fewest of its frames, by descending received attention (prune's
    score), whose scores reach ``coverage`` x the row's total - many frames
    where attention is spread, few where it is concentrated - and at least
    ``ceil(min_keep_rate * n)``. The keep rate does not apply (a rate below 1
    is refused); ``coverage`` 1 keeps every frame (the dense encoder)."""

    evidence_type = ReceivedAttentionSum
    uses_rate = False
    data_dependent_counts = True
    settings = (Setting("pruning_coverage", KEEP_RATE, None,
                        "--token-reduction coverage: each row keeps the fewest frames whose "
                        "received attention reaches this share of its total"),
                PRUNING_MIN_KEEP_RATE)

    def __init__(self, pruning_coverage: float, pruning_min_keep_rate: float = 0.0):
        super().__init__()
        if pruning_coverage is None:
            raise InputError("token_reduction coverage needs pruning_coverage, a number in "
                             "(0, 1]")
        self.coverage = self.settings[0].check(pruning_coverage)
        self.min_keep_rate = PRUNING_MIN_KEEP_RATE.check(pruning_min_keep_rate)

    @property
    def own_setting(self):
        return ("pruning_coverage", self.coverage)

    def acts_after(self, layer, init_layer, rate):
        return layer >= init_layer and self.coverage < 1.0

    def check(self, min_rate, init_layer, num_layers):
        refuse_keep_rate(min_rate, "the coverage reduction chooses its own counts")

    def reduce(self, tokens, evidence, rate, layer):
        with full_precision(tokens.x):
            counts = coverage_counts(evidence.scores, tokens.padding_mask, self.coverage,
                                     self.min_keep_rate)
            indices, padding_mask = select_counts(evidence.scores, tokens.padding_mask, counts)
        return tokens.take(indices, padding_mask)

    def lengths_after(self, valid, run, rate):
        raise NotImplementedError("the coverage reduction's counts depend on the data: "
                                  "measure them (benchmark, sweep)")


@register_reduction("local")
class LocalPruning(TokenReduction):
    """Prune's count, ceil(rate * n), split over consecutive windows of
    ``window`` valid frames in proportion to their sizes (largest remainders,
    ties to the earlier window); in each window the frames that receive the
    most attention. Every whole window keeps at least floor(rate x window)
    frames, so rate x window < 1 is refused: no stretch of ``window`` frames
    of an utterance loses all of them (the last, shorter window may)."""

    evidence_type = ReceivedAttentionSum
    # 10 frames: 0.2 s of HuBERT's 50 frames per second, about a syllable
    settings = (Setting("pruning_window", whole_number_rule(1), 10,
                        "--token-reduction local: frames per window"),)

    def __init__(self, pruning_window: int = 10):
        super().__init__()
        self.window = self.settings[0].check(pruning_window)

    def check(self, min_rate, init_layer, num_layers):
        if min_rate < 1.0 and min_rate * self.window < 1.0:
            raise InputError(f"the local reduction needs keep rate x pruning_window >= 1 (each "
                             f"window keeps a frame), got rate {min_rate} and window "
                             f"{self.window}")

    def reduce(self, tokens, evidence, rate, layer):
        num_valid = valid_lengths(tokens.padding_mask, tokens.x.size(0), tokens.x.size(1),
                                  tokens.x.device)
        with full_precision(tokens.x):
            indices, padding_mask = select_by_windows(
                evidence.scores, tokens.padding_mask, keep_counts(num_valid, rate), self.window)
        return tokens.take(indices, padding_mask)
