"""Contiguous runs of tokens, each to become one token: the partition a
reduction decides, applied alike to states, sizes, positions and spans (as
ToMe's ``merge.py`` returns one function applied to states and sizes). Pure
tensor functions over the whole batch: no per-row Python loop, and no host
sync but the caller's one for the new width.

A partition is described by ``starts`` (B x T bool): True where a token opens
a new run. A row's valid tokens come first (as everywhere in the encoder);
token 0 and every padding token open a run, so padding never joins speech and
each row's first ``count`` runs are its speech. Used by ``adjacent`` and
``fold`` (``adjacent.py``) and for the spans of ``conv``.
"""
from dataclasses import replace
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .interface import Tokens, full_precision
from .selection import valid_lengths


class Runs(NamedTuple):
    """A partition of each row's tokens into contiguous runs, W output slots.

    run: B x T output slot of each input token (``W`` = the discarded slot: a
    padding run past the width); first, last: B x W input index of each
    slot's first and last token; padding_mask: B x W, True past a row's runs
    of speech."""

    run: Tensor
    first: Tensor
    last: Tensor
    padding_mask: Tensor

    @property
    def width(self) -> int:
        return self.padding_mask.size(1)


def runs_from_starts(starts: Tensor, counts: Tensor, width: int) -> Runs:
    """The runs that ``starts`` opens; ``counts``: B runs of speech per row
    (the valid tokens' runs), ``width``: the output width (max of counts, at
    least 1: the caller's one host sync)."""
    bsz, tsz = starts.shape
    run = (starts.long().cumsum(dim=1) - 1).clamp(max=width)
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]  # a token closes its run where the next opens one
    token = torch.arange(tsz, device=starts.device).unsqueeze(0).expand(bsz, -1)

    def member(flags: Tensor) -> Tensor:
        # each run has exactly one opening (closing) token; the rest go to slot W
        slots = torch.zeros(bsz, width + 1, dtype=torch.long, device=starts.device)
        return slots.scatter_(1, torch.where(flags, run, width), token)[:, :width]

    padding_mask = torch.arange(width, device=starts.device).unsqueeze(0) >= counts.unsqueeze(1)
    return Runs(run, member(starts), member(ends), padding_mask)


def pool_runs(runs: Runs, x: Tensor, sizes: Tensor, weights: Optional[Tensor] = None):
    """(B x W x C states, B x W sizes): each run's mean state weighted by
    ``weights`` (B x T; by default the sizes), in fp32 sums cast back to
    ``x``'s dtype, and its total size. Slots past a row's speech count as one
    frame each, so log-size attention stays finite on a row of padding."""
    bsz, _, dim = x.shape
    width = runs.width
    size = sizes.float()
    weight = size if weights is None else weights.float()
    index = runs.run.unsqueeze(-1).expand(-1, -1, dim)
    sums = x.new_zeros(bsz, width + 1, dim, dtype=torch.float32).scatter_add_(
        1, index, x.float() * weight.unsqueeze(-1))[:, :width]
    weight_sums = weight.new_zeros(bsz, width + 1).scatter_add_(1, runs.run, weight)[:, :width]
    totals = size.new_zeros(bsz, width + 1).scatter_add_(1, runs.run, size)[:, :width]
    states = (sums / weight_sums.clamp(min=1e-6).unsqueeze(-1)).to(x.dtype)
    totals = totals.masked_fill(runs.padding_mask, 1.0)
    return states, totals.to(sizes.dtype)


def run_spans(tokens: Tokens, runs: Runs) -> Tensor:
    """B x W x 2: each run's span, from its first token's first original frame
    to its last token's last."""
    bounds = tokens.span_bounds()
    return torch.stack([bounds[..., 0].gather(1, runs.first),
                        bounds[..., 1].gather(1, runs.last)], dim=-1)


def merge_runs(tokens: Tokens, runs: Runs, anchor: Tensor,
               weights: Optional[Tensor] = None) -> Tokens:
    """``tokens`` with each run pooled into one token: mean state weighted by
    size (times ``weights``, B x T, where given), summed size, its span
    (``run_spans``), and the position of its ``anchor`` token (B x W input
    index: the frame that names it in ``kept_indices``)."""
    sizes = tokens.sizes
    if sizes is None:
        sizes = tokens.x.new_ones(tokens.x.shape[:2], dtype=torch.float32)
    with full_precision(tokens.x):
        states, sizes = pool_runs(runs, tokens.x, sizes,
                                  None if weights is None else sizes.float() * weights.float())
    return replace(tokens, x=states, padding_mask=runs.padding_mask,
                   positions=tokens.positions.gather(1, anchor), sizes=sizes,
                   spans=run_spans(tokens, runs))


def stride_runs(padding_mask: Optional[Tensor], bsz: int, tsz: int, stride: int,
                device) -> Runs:
    """The runs a stride-``stride`` conv with kernel = stride pools: tokens
    [s j, s j + s - 1] of a row's valid ones, ceil(n / s) per row, width
    ceil(T / s) (known without a host sync)."""
    token = torch.arange(tsz, device=device).unsqueeze(0).expand(bsz, -1)
    starts = token % stride == 0
    if padding_mask is not None:
        starts = starts | padding_mask
    n = valid_lengths(padding_mask, bsz, tsz, device)
    counts = torch.div(n + stride - 1, stride, rounding_mode="floor")
    return runs_from_starts(starts, counts, -(-tsz // stride))
