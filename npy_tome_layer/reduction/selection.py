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
