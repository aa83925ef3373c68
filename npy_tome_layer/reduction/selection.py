"""Attention-score top-k frame pruning as pure tensor functions.

The rule: each sequence with ``n`` valid frames keeps ``ceil(rate * n)`` of
them (at least one), namely the frames that *receive* the most attention,
in their original time order. No fairseq here; the encoder in
``encoder/pruned_hubert.py`` is a thin caller.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor


def keep_counts(num_valid: Tensor, rate: float) -> Tensor:
    """``ceil(rate * n)`` per row: at least 1 frame of a non-empty row, none
    of an empty one (a caller padded the batch with an empty utterance).

    Computed in float64 so the count is exactly Python's
    ``math.ceil(rate * n)`` (float32 would turn 0.7 * 10 into 7.0000005 -> 8
    on some values and disagree with a user's own arithmetic).
    """
    k = torch.ceil(num_valid.to(torch.float64) * rate).long()
    return torch.where(num_valid > 0, k.clamp(min=1), k)


def valid_lengths(padding_mask: Optional[Tensor], bsz: int, tsz: int, device) -> Tensor:
    """Valid frames per row (B,); every frame when there is no mask."""
    if padding_mask is None:
        return torch.full((bsz,), tsz, dtype=torch.long, device=device)
    return (~padding_mask).sum(dim=1)


def received_attention(attn: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
    """Attention each key frame receives, in fp32.

    attn: B x Tq x Tk head-averaged probabilities, or B x H x Tq x Tk
    (averaged over heads here). Padded query rows are left out of the sum:
    their softmax still spreads mass over valid keys, which would make the
    score depend on how much padding the batch adds.
    Returns B x Tk.
    """
    attn = attn.float()
    if attn.dim() == 3:
        attn = attn.unsqueeze(1)
    # Sum over queries first, then average heads: one read of the B x H x T x T
    # map and a B x H x T result, instead of two full-size temporaries.
    if padding_mask is None:
        per_head = attn.sum(dim=2)
    else:
        valid_queries = (~padding_mask).to(attn.dtype)[:, None, None, :]  # B x 1 x 1 x Tq
        per_head = torch.matmul(valid_queries, attn).squeeze(2)
    return per_head.mean(dim=1)


def select_frames(
    scores: Tensor, padding_mask: Optional[Tensor], rate: float
) -> Tuple[Tensor, Tensor]:
    """Indices of the frames to keep and the padding mask that goes with them.

    scores: B x T (higher = keep); padding_mask: B x T bool, True = padding.
    Returns (indices B x W, new_padding_mask B x W) with W = max_b k_b. Row b
    holds its k_b best valid frames in ascending time order, then W - k_b
    filler positions that the new mask marks as padding.
    """
    bsz, tsz = scores.shape
    num_valid = valid_lengths(padding_mask, bsz, tsz, scores.device)
    if padding_mask is not None:
        scores = scores.float().masked_fill(padding_mask, float("-inf"))
    k = keep_counts(num_valid, rate).clamp(max=tsz)
    width = max(1, int(k.max()))  # an all-empty batch keeps one filler column
    top = scores.topk(width, dim=1, largest=True, sorted=True).indices
    rank = torch.arange(width, device=scores.device).unsqueeze(0)
    new_padding_mask = rank >= k.unsqueeze(1)
    return time_ordered(top, new_padding_mask, tsz), new_padding_mask


def descending_order(scores: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
    """B x T frame indices by descending score, ties to the earlier frame,
    padded frames last (a stable sort)."""
    if padding_mask is not None:
        scores = scores.masked_fill(padding_mask, float("-inf"))
    return scores.sort(dim=1, descending=True, stable=True).indices


def select_counts(scores: Tensor, padding_mask: Optional[Tensor],
                  counts: Tensor) -> Tuple[Tensor, Tensor]:
    """``select_frames`` with a count per row (``counts``, B) instead of a
    rate: row b keeps its ``counts[b]`` best valid frames (ties to the earlier
    frame) in time order; the batch width is the largest count."""
    bsz, tsz = scores.shape
    width = max(1, int(counts.max())) if bsz else 1
    top = descending_order(scores.float(), padding_mask)[:, :width]
    rank = torch.arange(width, device=scores.device).unsqueeze(0)
    new_padding_mask = rank >= counts.unsqueeze(1)
    return time_ordered(top, new_padding_mask, tsz), new_padding_mask


def coverage_counts(scores: Tensor, padding_mask: Optional[Tensor], coverage: float,
                    min_keep_rate: float = 0.0) -> Tensor:
    """Per row, the smallest number m of its valid frames, taken by descending
    score (ties to the earlier frame), whose scores sum to at least
    ``coverage`` x the row's total; at least ``ceil(min_keep_rate * n)`` and 1,
    at most n (0 for an empty row). ``coverage >= 1`` keeps all n: the running
    sum need not reach the total exactly in floating point. The sum runs in
    float64 over the row's own sorted scores, so the count is the same in any
    batch (padding adds only zeros after them)."""
    bsz, tsz = scores.shape
    num_valid = valid_lengths(padding_mask, bsz, tsz, scores.device)
    if coverage >= 1.0:
        return num_valid
    ordered = scores.double().gather(1, descending_order(scores.double(), padding_mask))
    valid_ranks = torch.arange(tsz, device=scores.device).unsqueeze(0) < num_valid.unsqueeze(1)
    running = ordered.masked_fill(~valid_ranks, 0.0).cumsum(dim=1)
    target = coverage * running[:, -1:]
    m = (running < target).sum(dim=1) + 1
    floor = keep_counts(num_valid, min_keep_rate) if min_keep_rate > 0 else 1
    m = torch.maximum(m, torch.as_tensor(floor, device=m.device))
    return torch.minimum(m, num_valid)


def window_quotas(num_valid: int, count: int, window: int) -> Tensor:
    """``count`` of ``num_valid`` frames split over consecutive windows of
    ``window`` frames (the last may be shorter): window w gets
    floor(count * size_w / n), the frames left one each to the windows with
    the largest remainders, ties to the earlier window. Exact integers."""
    if num_valid == 0:
        return torch.zeros(0, dtype=torch.long)
    starts = torch.arange(0, num_valid, window)
    sizes = torch.clamp(num_valid - starts, max=window)
    quota = torch.div(count * sizes, num_valid, rounding_mode="floor")
    remainder = (count * sizes) % num_valid
    left = count - int(quota.sum())
    favoured = remainder.sort(descending=True, stable=True).indices[:left]
    quota[favoured] += 1
    return quota


def select_by_windows(scores: Tensor, padding_mask: Optional[Tensor], counts: Tensor,
                      window: int) -> Tuple[Tensor, Tensor]:
    """Row b keeps ``counts[b]`` valid frames spread over windows of ``window``
    valid frames (``window_quotas``), in each window those with the highest
    scores (ties to the earlier frame); kept frames in time order. A row's
    valid frames come first (as everywhere in the encoder)."""
    bsz, tsz = scores.shape
    num_valid = valid_lengths(padding_mask, bsz, tsz, scores.device)
    position = torch.arange(tsz, device=scores.device).unsqueeze(0).expand(bsz, -1)
    window_of = torch.div(position, window, rounding_mode="floor")
    if padding_mask is not None:
        window_of = window_of.masked_fill(padding_mask, tsz)  # padding after every window
    # by window, then descending score, ties to the earlier frame: two stable sorts
    by_score = descending_order(scores.float(), padding_mask)
    by_window = window_of.gather(1, by_score).sort(dim=1, stable=True).indices
    order = by_score.gather(1, by_window)
    rank_in_window = torch.arange(tsz, device=scores.device).unsqueeze(0) - \
        window_of.gather(1, order) * window
    keep_score = torch.zeros(bsz, tsz, device=scores.device)
    for b in range(bsz):
        n = int(num_valid[b])
        quota = window_quotas(n, int(counts[b]), window).to(scores.device)
        windows = window_of[b, order[b, :n]]
        kept = rank_in_window[b, :n] < quota[windows]
        keep_score[b, order[b, :n][kept]] = 1.0
    return select_counts(keep_score, padding_mask, counts)


def time_ordered(indices: Tensor, filler: Tensor, length: int) -> Tensor:
    """Each row's kept ``indices`` in time order, then its filler entries.

    indices: B x W frame indices < ``length``; filler: B x W bool, True where
    the entry is not a kept frame. Filler sorts after every kept frame (its key
    is offset by ``length``), so it never takes the place of one.
    """
    order_key = indices + filler.long() * length
    ordered = order_key.sort(dim=1).values
    return ordered - (ordered >= length).long() * length


def uniform_ranks(n: int, k: int) -> Tensor:
    """``k`` of ``n`` frames evenly spaced: the middle frame of each of ``k``
    equal stretches, ``floor((2j + 1) n / 2k)`` for j < k."""
    if k <= 0:
        return torch.zeros(0, dtype=torch.long)
    j = torch.arange(k, dtype=torch.long)
    return torch.div((2 * j + 1) * n, 2 * k, rounding_mode="floor")


def random_ranks(n: int, k: int, key) -> Tensor:
    """``k`` of ``n`` frames drawn without replacement, in time order, from a
    CPU generator seeded by ``key`` (a tuple of ints) and ``n``: the same
    subset in any batch and on any device."""
    seed = 0
    for part in (*key, n):
        seed = (seed * 1_000_003 + int(part)) % (1 << 62)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:k].sort().values


def ranked_frame_scores(ranks, padding_mask: Optional[Tensor], length: int, device) -> Tensor:
    """B x ``length`` scores that make ``select_frames`` keep, in row b, the
    valid frames whose rank among the row's valid frames (0 = earliest) is in
    ``ranks[b]``: those score 1, other valid frames 0."""
    bsz = len(ranks)
    if padding_mask is None:
        valid_positions = torch.arange(length, device=device).expand(bsz, -1)
    else:  # each row's valid positions first, in time order (a stable sort)
        valid_positions = padding_mask.long().sort(dim=1, stable=True).indices
    scores = torch.zeros(bsz, length, device=device)
    for b, row_ranks in enumerate(ranks):
        scores[b, valid_positions[b, row_ranks.to(device)]] = 1.0
    return scores


def gather_frames(x: Tensor, indices: Tensor) -> Tensor:
    """x: B x T x C, indices: B x W -> B x W x C."""
    return x.gather(1, indices.unsqueeze(-1).expand(-1, -1, x.size(-1)))
