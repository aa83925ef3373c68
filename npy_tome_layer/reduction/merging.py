"""ToMe-style token merging, the alternative to pruning, as a pure tensor function.

* ``merge_tokens``: ToMe-style bipartite soft matching (Bolya et al., 2023)
  with the same per-row count as pruning, ``ceil(rate * n)`` tokens left.
  Valid tokens alternate into sets A (even) and B (odd); each A token's most
  similar B token (cosine of the head-averaged attention keys) is its edge;
  the ``n - ceil(rate * n)`` strongest edges merge A into B by a size-weighted
  average. Unlike ToMe on images, the survivors stay in time order (the
  subsampler after HuBERT is a convolution over time).
The strided-conv alternative is ``token_reduction.StridedConvReduction``.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..errors import InputError
from .selection import inverse_permutation, keep_counts, time_ordered, valid_lengths


def merge_tokens(
    x: Tensor, keys: Tensor, sizes: Tensor, positions: Tensor,
    padding_mask: Optional[Tensor], rate: float,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Merge each row's n tokens down to ``ceil(rate * n)``.

    x: B x T x C hidden states; keys: B x T x d (similarity metric);
    sizes: B x T frames each token stands for; positions: B x T original
    frame index of each token; padding_mask: B x T (True = pad), valid
    tokens first. rate must be >= 0.5 (one matching merges at most half).
    Returns (x, sizes, positions, padding_mask), each B x W, W = max_b k_b.
    """
    if not 0.5 <= rate <= 1.0:
        raise InputError(f"token merging needs a keep rate in [0.5, 1.0], got {rate}")
    bsz, tsz, _ = x.shape
    n = valid_lengths(padding_mask, bsz, tsz, x.device)
    k = keep_counts(n, rate)
    r = n - k  # merges per row; <= ceil(n / 2) = |A| since rate >= 0.5
    # both numbers in one read of the host
    longest, most_merges = torch.stack((k.max(), r.max())).tolist()
    width = max(1, longest)  # an all-empty batch keeps one filler column
    new_mask = torch.arange(width, device=x.device).unsqueeze(0) >= k.unsqueeze(1)
    if tsz < 2 or most_merges == 0:  # nothing to merge (and no B set to match against)
        return x[:, :width], sizes[:, :width], positions[:, :width], new_mask
    t = torch.arange(tsz, device=x.device)
    valid = t.unsqueeze(0) < n.unsqueeze(1)

    metric = keys.float()
    metric = metric / metric.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    a, b = metric[:, 0::2], metric[:, 1::2]
    sim = a @ b.transpose(1, 2)  # B x Ta x Tb
    sim = sim.masked_fill(~valid[:, 1::2].unsqueeze(1), float("-inf"))
    best, dst = sim.max(dim=-1)  # every A token's best B partner
    best = best.masked_fill(~valid[:, 0::2], float("-inf"))
    # rank A tokens by edge strength; the r strongest merge
    order = best.argsort(dim=-1, descending=True)
    rank = inverse_permutation(order)
    merged_a = (rank < r.unsqueeze(1)) & valid[:, 0::2]  # B x Ta

    # size-weighted sum into the B tokens (in fp32), then divide by the new size
    size_f = sizes.float()
    weighted = x.float() * size_f.unsqueeze(-1)
    w_a, w_b = weighted[:, 0::2], weighted[:, 1::2].clone()
    s_a, s_b = size_f[:, 0::2], size_f[:, 1::2].clone()
    take = merged_a.unsqueeze(-1).float()
    w_b.scatter_add_(1, dst.unsqueeze(-1).expand(-1, -1, w_a.size(-1)), w_a * take)
    s_b.scatter_add_(1, dst, s_a * merged_a.float())
    merged = weighted.clone()
    merged[:, 1::2] = w_b
    new_sizes = size_f.clone()
    new_sizes[:, 1::2] = s_b
    merged = (merged / new_sizes.clamp(min=1e-6).unsqueeze(-1)).to(x.dtype)

    keep = valid.clone()
    keep[:, 0::2] &= ~merged_a
    idx = time_ordered(t.unsqueeze(0).expand(bsz, -1), ~keep, tsz)[:, :width]
    out = merged.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.size(-1)))
    return (out, new_sizes.gather(1, idx).to(sizes.dtype), positions.gather(1, idx), new_mask)
