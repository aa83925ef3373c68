"""Reductions whose output tokens stand for contiguous runs of input tokens:
``adjacent`` (A-ToMe-style merging of similar neighbours, Li et al., 2023)
and ``fold`` (prune's choice of frames, each dropped frame folded into its
nearest kept one).

Both decide a partition of each row's valid tokens into runs, in time order
(``starts``: where a run opens, see ``runs.py``), which ``runs.merge_runs``
applies alike to states, sizes, positions and spans. The decisions are pure
tensor functions over the whole batch: no per-row Python loop, one host sync
per acting layer (the new width).
"""
from typing import Optional

import torch
from torch import Tensor

from ..errors import InputError
from .interface import (
    AttentionEvidence,
    KeyMean,
    ReceivedAttentionSum,
    Tokens,
    TokenReduction,
    full_precision,
    refuse_keep_rate,
    register_reduction,
)
from .settings import Setting
from ..values import COSINE
from .reductions import PRUNING_MIN_KEEP_RATE
from .runs import Runs, merge_runs, runs_from_starts
from .selection import keep_counts, select_frames, valid_lengths


# --- adjacent: merge the most similar neighbours --------------------------------

def neighbour_similarity(keys: Tensor) -> Tensor:
    """B x (T - 1) fp32 cosine similarity of each token's key with the next one's."""
    metric = keys.float()
    metric = metric / metric.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    return (metric[:, :-1] * metric[:, 1:]).sum(dim=-1)


def strongest_edges(similarity: Tensor, edge_valid: Tensor, merges: Tensor) -> Tensor:
    """B x (T - 1) bool: each row's ``merges`` most similar valid edges (ties to
    the earlier edge)."""
    ranked = similarity.masked_fill(~edge_valid, float("-inf"))
    order = ranked.sort(dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(order.size(1), device=order.device).expand_as(order))
    return (rank < merges.unsqueeze(1)) & edge_valid


def adjacent_runs(keys: Tensor, padding_mask: Optional[Tensor], rate: float,
                  threshold: Optional[float] = None, min_keep_rate: float = 0.0) -> Runs:
    """Edge j joins token j + 1 to token j's run. Without ``threshold``: the
    ``n - ceil(rate * n)`` most similar edges of a row with n valid tokens, so
    ``ceil(rate * n)`` runs are left (prune's count). With it: every edge
    whose similarity exceeds it, but no more than leave ``ceil(min_keep_rate
    * n)`` runs (and 1), the most similar first. Chosen edges chain: k chosen
    consecutive edges make one run of k + 1 tokens, so a row keeps exactly n
    minus its chosen edges."""
    bsz, tsz = keys.shape[:2]
    n = valid_lengths(padding_mask, bsz, tsz, keys.device)
    similarity = neighbour_similarity(keys)
    edge_valid = torch.arange(1, tsz, device=keys.device).unsqueeze(0) < n.unsqueeze(1)
    if threshold is None:
        merges = n - keep_counts(n, rate)
    else:
        above = ((similarity > threshold) & edge_valid).sum(dim=1)
        merges = torch.minimum(above, n - keep_counts(n, min_keep_rate))
    chosen = strongest_edges(similarity, edge_valid, merges)
    starts = torch.ones(bsz, tsz, dtype=torch.bool, device=keys.device)
    starts[:, 1:] = ~chosen
    counts = n - merges
    return runs_from_starts(starts, counts, max(1, int(counts.max())) if bsz else 1)


def size_evidence(evidence_type, tokens: Tokens, acting: bool):
    """The evidence of a reduction that carries sizes: its own type where it
    acts, else a bare one that only adds log(size) to the logits (ToMe's
    proportional attention) once tokens stand for several frames."""
    log_size = None if tokens.sizes is None else tokens.sizes.log()
    if acting:
        return evidence_type(log_size)
    return None if log_size is None else AttentionEvidence(log_size)


@register_reduction("adjacent")
class AdjacentMerging(TokenReduction):
    """A-ToMe-style merging: after each acting layer, the most similar pairs
    of neighbouring tokens (cosine of the head-averaged keys) merge, runs of
    similar tokens into one, down to prune's ceil(rate * n); or, with
    ``merge_threshold``, every neighbour pair above it (the count follows the
    content, floored at ceil(min_keep_rate * n)). Sizes are carried and enter
    later attention as log(size); spans say which frames each token covers."""

    evidence_type = KeyMean
    settings = (Setting("pruning_merge_threshold", COSINE, None,
                        "--token-reduction adjacent: merge every pair of neighbouring frames "
                        "whose key cosine similarity exceeds this, instead of prune's count "
                        "(the keep rate then does not apply)"),
                PRUNING_MIN_KEEP_RATE)

    def __init__(self, pruning_merge_threshold: Optional[float] = None,
                 pruning_min_keep_rate: float = 0.0):
        super().__init__()
        self.threshold = self.settings[0].check(pruning_merge_threshold)
        self.min_keep_rate = PRUNING_MIN_KEEP_RATE.check(pruning_min_keep_rate)
        if self.threshold is None and self.min_keep_rate != 0.0:
            raise InputError(f"pruning_min_keep_rate {pruning_min_keep_rate!r} is the floor of "
                             "pruning_merge_threshold for token_reduction 'adjacent': give "
                             "the threshold too, or leave the floor out")
        if self.threshold is not None:
            # per instance: without a threshold it keeps prune's counts
            self.uses_rate, self.data_dependent_counts = False, True

    @property
    def own_setting(self):
        return None if self.threshold is None else ("pruning_merge_threshold", self.threshold)

    def acts_after(self, layer, init_layer, rate):
        if self.threshold is None:
            return layer >= init_layer and rate < 1.0
        return layer >= init_layer and self.threshold < 1.0  # cosine never exceeds 1

    def check(self, min_rate, init_layer, num_layers):
        if self.threshold is not None:
            refuse_keep_rate(min_rate, "pruning_merge_threshold sets the adjacent reduction's "
                                       "counts")

    def evidence(self, tokens, acting):
        return size_evidence(self.evidence_type, tokens, acting)

    def reduce(self, tokens, evidence, rate, layer):
        with full_precision(tokens.x):
            runs = adjacent_runs(evidence.keys, tokens.padding_mask, rate, self.threshold,
                                 self.min_keep_rate)
        return merge_runs(tokens, runs, runs.first)

    def lengths_after(self, valid, run, rate):
        if self.threshold is not None:
            raise NotImplementedError("the adjacent reduction's counts with "
                                      "pruning_merge_threshold depend on the data: measure "
                                      "them (benchmark, sweep)")
        return super().lengths_after(valid, run, rate)


# --- fold: prune's choice, nothing thrown away ------------------------------------

def nearest_kept_runs(kept: Tensor, new_mask: Tensor, bounds: Tensor,
                      padding_mask: Optional[Tensor]) -> Runs:
    """Each valid token joins the kept token nearest in time (ties to the
    earlier); ``kept``: B x W input indices of the kept tokens in time order
    (filler where ``new_mask``); ``bounds``: B x T x 2 original first and last
    frame of each token, whose sum (twice the centre) measures time. Kept
    tokens are in time order, so each one's catchment is a contiguous run."""
    bsz, tsz = bounds.shape[:2]
    device = bounds.device
    token = torch.arange(tsz, device=device).unsqueeze(0).expand(bsz, -1)
    is_kept = torch.zeros(bsz, tsz + 1, dtype=torch.bool, device=device)
    is_kept = is_kept.scatter_(1, kept.masked_fill(new_mask, tsz), True)[:, :tsz]
    centre = bounds.sum(dim=-1)
    before = torch.where(is_kept, token, -1).cummax(dim=1).values  # last kept at or before
    after = torch.where(is_kept, token, tsz).flip(1).cummin(dim=1).values.flip(1)
    gap_before = centre - centre.gather(1, before.clamp(min=0))
    gap_after = centre.gather(1, after.clamp(max=tsz - 1)) - centre
    to_before = (before >= 0) & ((after >= tsz) | (gap_before <= gap_after))
    owner = torch.where(to_before, before, after)
    starts = torch.ones(bsz, tsz, dtype=torch.bool, device=device)
    starts[:, 1:] = owner[:, 1:] != owner[:, :-1]
    if padding_mask is not None:
        starts |= padding_mask  # padding never joins speech
    return runs_from_starts(starts, (~new_mask).sum(dim=1), new_mask.size(1))


@register_reduction("fold")
class FoldPruning(TokenReduction):
    """Prune's choice and counts (the ceil(rate * n) tokens that receive the
    most attention), but each dropped token is averaged (by size) into the
    kept token nearest in time, ties to the earlier: no stretch's content is
    thrown away. Sizes are carried as merge's; spans say which frames each
    token covers; the kept frame names it in ``kept_indices``."""

    evidence_type = ReceivedAttentionSum

    def evidence(self, tokens, acting):
        return size_evidence(self.evidence_type, tokens, acting)

    def reduce(self, tokens, evidence, rate, layer):
        with full_precision(tokens.x):
            kept, new_mask = select_frames(evidence.scores, tokens.padding_mask, rate)
            runs = nearest_kept_runs(kept, new_mask, tokens.span_bounds(), tokens.padding_mask)
        return merge_runs(tokens, runs, kept)
