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


def inverse_permutation(order: Tensor) -> Tensor:
    """B x T: where each entry stands in ``order`` (B x T, a permutation of
    0..T-1 per row), i.e. the rank of each item under the order."""
    ranks = torch.arange(order.size(1), device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, ranks)


def window_quotas(num_valid, counts, window: int, num_windows: Optional[int] = None):
    """``counts[b]`` of ``num_valid[b]`` frames split over consecutive windows
    of ``window`` frames (the last may be shorter): window w gets
    floor(count * size_w / n), the frames left one each to the windows with
    the largest remainders, ties to the earlier window. Exact integers.

    num_valid, counts: (B,) tensors -> B x ``num_windows`` (windows past a
    row's end get 0; by default as many as the longest row has, which reads
    the host); or plain ints -> that one row's windows.
    """
    if not torch.is_tensor(num_valid):
        return window_quotas(torch.tensor([num_valid]), torch.tensor([counts]), window)[0]
    if num_windows is None:
        num_windows = -(-int(num_valid.max()) // window) if len(num_valid) else 0
    starts = torch.arange(num_windows, device=num_valid.device).unsqueeze(0) * window
    n, count = num_valid.unsqueeze(1), counts.unsqueeze(1)
    sizes = (n - starts).clamp(min=0, max=window)
    share = count * sizes
    quota = torch.div(share, n.clamp(min=1), rounding_mode="floor")
    remainder = share - quota * n
    left = count - quota.sum(dim=1, keepdim=True)
    # fewer frames are left than windows with a remainder, so windows past the
    # end (remainder 0, after every real window in the stable order) get none
    by_remainder = remainder.sort(dim=1, descending=True, stable=True).indices
    return quota + (inverse_permutation(by_remainder) < left).long()


def select_by_windows(scores: Tensor, padding_mask: Optional[Tensor], counts: Tensor,
                      window: int) -> Tuple[Tensor, Tensor]:
    """Row b keeps ``counts[b]`` valid frames spread over windows of ``window``
    valid frames (``window_quotas``), in each window those with the highest
    scores (ties to the earlier frame); kept frames in time order. A row's
    valid frames come first (as everywhere in the encoder)."""
    bsz, tsz = scores.shape
    num_valid = valid_lengths(padding_mask, bsz, tsz, scores.device)
    num_windows = -(-tsz // window)
    position = torch.arange(tsz, device=scores.device).unsqueeze(0).expand(bsz, -1)
    window_of = torch.div(position, window, rounding_mode="floor")
    if padding_mask is not None:
        window_of = window_of.masked_fill(padding_mask, num_windows)  # after every window
    # by window, then descending score, ties to the earlier frame: two stable sorts
    by_score = descending_order(scores.float(), padding_mask)
    by_window = window_of.gather(1, by_score).sort(dim=1, stable=True).indices
    order = by_score.gather(1, by_window)
    # the valid frames lead the order, window by window, each window starting
    # at its own first position
    ordered_window = window_of.gather(1, order)
    rank_in_window = position - ordered_window * window
    quota = window_quotas(num_valid, counts, window, num_windows)
    quota_of = quota.gather(1, ordered_window.clamp(max=num_windows - 1))
    kept = (rank_in_window < quota_of) & (position < num_valid.unsqueeze(1))
    keep_score = torch.zeros(bsz, tsz, device=scores.device).scatter_(1, order, kept.float())
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


def uniform_choice(num_valid: Tensor, counts: Tensor, length: int) -> Tensor:
    """B x ``length`` bool: which valid-frame ranks (0 = a row's earliest valid
    frame) row b keeps to have ``counts[b]`` of ``num_valid[b]`` frames evenly
    spaced: the middle frame of each of k equal stretches,
    ``floor((2j + 1) n / 2k)`` for j < k."""
    j = torch.arange(length, device=num_valid.device).unsqueeze(0)
    n, k = num_valid.unsqueeze(1), counts.unsqueeze(1)
    ranks = torch.div((2 * j + 1) * n, 2 * k.clamp(min=1), rounding_mode="floor")
    # j >= k names no frame: sent to a spare column, dropped after the scatter
    ranks = torch.where(j < k, ranks, length)
    chosen = torch.zeros(len(num_valid), length + 1, dtype=torch.bool, device=num_valid.device)
    return chosen.scatter_(1, ranks, True)[:, :length]


_MASK32 = (1 << 32) - 1


def _mix32(h: Tensor) -> Tensor:
    """A bijection of [0, 2^32) that scatters nearby inputs: xor-shifts and
    multiplications by odd numbers mod 2^32. The multipliers are below 2^31,
    so every product of a 32-bit value stays below 2^63: int64 arithmetic
    without overflow gives the same bits on every device."""
    for multiplier in (0x2C9277B5, 0x6B43A9B5):
        h = h ^ (h >> 16)
        h = (h * multiplier) & _MASK32
    return h ^ (h >> 15)


def frame_hash(seed: int, layer: int, num_valid: Tensor, length: int) -> Tensor:
    """B x ``length`` int64 in [0, 2^32): a counter-based hash of (``seed``
    mod 2^32, ``layer``, the row's valid frames n, the valid-frame rank). It
    depends on nothing else (not the batch, not the device), and as a
    bijection of the rank for a given key it never ties within a row."""
    key = torch.full_like(num_valid, int(seed) & _MASK32)
    key = _mix32(_mix32(_mix32(key) ^ (int(layer) & _MASK32)) ^ num_valid)
    rank = torch.arange(length, device=num_valid.device).unsqueeze(0)
    return _mix32(key.unsqueeze(1) ^ rank)


def random_choice(num_valid: Tensor, counts: Tensor, length: int, seed: int,
                  layer: int) -> Tensor:
    """B x ``length`` bool: which valid-frame ranks row b keeps, ``counts[b]``
    of its ``num_valid[b]`` frames, pseudo-random: those with the smallest
    ``frame_hash`` (ties, which the hash does not make, to the earlier frame)."""
    rank = torch.arange(length, device=num_valid.device).unsqueeze(0)
    hashes = frame_hash(seed, layer, num_valid, length).masked_fill(
        rank >= num_valid.unsqueeze(1), 1 << 32)  # past a row's end: after every frame
    by_hash = hashes.sort(dim=1, stable=True).indices
    return inverse_permutation(by_hash) < counts.unsqueeze(1)


def ranked_frame_scores(chosen: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
    """B x T scores that make ``select_frames`` keep, in row b, the valid
    frames whose rank among the row's valid frames (0 = earliest) is marked
    in ``chosen`` (B x T bool, by rank): those score 1, other frames 0."""
    bsz, length = chosen.shape
    if padding_mask is None:
        return chosen.float()
    # each row's valid positions first, in time order (a stable sort)
    valid_positions = padding_mask.long().sort(dim=1, stable=True).indices
    return torch.zeros(bsz, length, device=chosen.device).scatter_(1, valid_positions,
                                                                   chosen.float())


def gather_frames(x: Tensor, indices: Tensor) -> Tensor:
    """x: B x T x C, indices: B x W -> B x W x C."""
    return x.gather(1, indices.unsqueeze(-1).expand(-1, -1, x.size(-1)))
