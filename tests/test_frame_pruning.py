"""The pruning rule as a pure function, on hand-made tensors."""
import math

import pytest
import torch

from npy_tome_layer.reduction.selection import (
    gather_frames, keep_counts, received_attention, select_frames,
)


def prune_frames(x, attn, padding_mask, rate):
    """The rule end to end: scores from attention, selection, gathering."""
    indices, new_mask = select_frames(received_attention(attn, padding_mask), padding_mask, rate)
    return gather_frames(x, indices), new_mask, indices

NEG = float("-inf")


def test_keep_counts_match_python_ceil_exactly():
    for rate in (0.1, 0.3, 0.5, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0):
        n = torch.arange(0, 700)
        # at least one frame of a non-empty row, none of an empty one
        expected = [max(1 if v else 0, math.ceil(rate * int(v))) for v in n]
        assert keep_counts(n, rate).tolist() == expected, rate
    # the trap float32 falls into: 0.7 * 10 = 7.000000000000001 in float64 too
    assert keep_counts(torch.tensor([10]), 0.7).item() == math.ceil(0.7 * 10)


def test_received_attention_sums_columns_over_valid_queries():
    attn = torch.tensor([[[0.7, 0.2, 0.1],
                          [0.1, 0.8, 0.1],
                          [0.0, 0.0, 1.0]]])  # last query row is padding
    mask = torch.tensor([[False, False, True]])
    scores = received_attention(attn, mask)
    assert torch.allclose(scores, torch.tensor([[0.8, 1.0, 0.2]]))
    # not the row sum, which is constant 1 for probabilities
    assert not torch.allclose(scores, torch.ones_like(scores))


def test_received_attention_averages_heads_in_fp32():
    per_head = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]],
                              [[0.0, 1.0], [0.0, 1.0]]]]).to(torch.bfloat16)  # B=1,H=2
    scores = received_attention(per_head, None)
    assert scores.dtype == torch.float32
    assert torch.allclose(scores, torch.tensor([[1.0, 1.0]]))


def test_received_attention_matches_the_definition_per_head_with_padding():
    g = torch.Generator().manual_seed(0)
    attn = torch.rand(3, 4, 7, 7, generator=g).softmax(dim=-1)  # B x H x Tq x Tk
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[1, 5:] = True
    mask[2, 2:] = True
    head_avg = attn.mean(dim=1)
    expected = (head_avg * (~mask).float().unsqueeze(-1)).sum(dim=1)  # attn.sum(dim=1), valid rows
    assert torch.allclose(received_attention(attn, mask), expected, atol=1e-6)
    assert torch.allclose(received_attention(head_avg, mask), expected, atol=1e-6)
    assert torch.allclose(received_attention(attn, None), head_avg.sum(dim=1), atol=1e-6)


def test_padding_never_wins_and_order_is_kept():
    scores = torch.tensor([[0.1, 5.0, 0.3, 4.0, 99.0, 98.0]])
    mask = torch.tensor([[False, False, False, False, True, True]])
    idx, new_mask = select_frames(scores, mask, 0.5)  # 4 valid -> keep 2
    assert idx.tolist() == [[1, 3]]
    assert new_mask.tolist() == [[False, False]]
    idx, _ = select_frames(scores, mask, 0.75)  # keep 3, time order not score order
    assert idx.tolist() == [[1, 2, 3]]


def test_per_row_counts_and_width_is_max_k():
    scores = torch.tensor([
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
        [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 50.0, 50.0, 50.0],
        [3.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    ])
    lengths = torch.tensor([10, 7, 3])
    mask = torch.arange(10).unsqueeze(0) >= lengths.unsqueeze(1)
    idx, new_mask = select_frames(scores, mask, 0.5)
    k = [5, 4, 2]
    assert idx.shape == (3, 5) and new_mask.shape == (3, 5)
    assert (~new_mask).sum(1).tolist() == k
    assert idx[0].tolist() == [5, 6, 7, 8, 9]
    assert idx[1, :4].tolist() == [0, 1, 2, 3]
    assert idx[2, :2].tolist() == [0, 2]
    for row, kb in enumerate(k):  # kept entries are valid frames in ascending time
        kept = idx[row, :kb]
        assert (kept < lengths[row]).all()
        assert (kept[1:] > kept[:-1]).all()


def test_at_least_one_frame_and_no_mask():
    idx, new_mask = select_frames(torch.tensor([[0.2, 0.9, 0.1]]), None, 0.01)
    assert idx.tolist() == [[1]] and new_mask.tolist() == [[False]]
    idx, _ = select_frames(torch.rand(2, 8), None, 1.0)
    assert idx.tolist() == [list(range(8))] * 2


def test_gather_moves_hidden_states_with_indices():
    x = torch.arange(2 * 4 * 3, dtype=torch.float).view(2, 4, 3)
    idx = torch.tensor([[0, 2], [1, 3]])
    out = gather_frames(x, idx)
    assert torch.equal(out[0], x[0, [0, 2]]) and torch.equal(out[1], x[1, [1, 3]])


def test_prune_frames_end_to_end_on_handmade_attention():
    # frame 2 gets the most attention, then frame 0; frame 3 is padding
    attn = torch.zeros(1, 4, 4)
    attn[0, :3] = torch.tensor([0.3, 0.1, 0.6, 0.0])
    attn[0, 3] = torch.tensor([0.0, 0.0, 0.0, 1.0])  # padded query: ignored
    x = torch.tensor([[[0.0], [1.0], [2.0], [3.0]]])
    mask = torch.tensor([[False, False, False, True]])
    kept, new_mask, idx = prune_frames(x, attn, mask, 0.6)  # ceil(1.8) = 2
    assert idx.tolist() == [[0, 2]]
    assert kept.flatten().tolist() == [0.0, 2.0]
    assert new_mask.tolist() == [[False, False]]


def test_scores_are_differentiable_free_and_fp32_under_half_inputs():
    scores = torch.rand(2, 6, dtype=torch.float16)
    idx, _ = select_frames(scores, None, 0.5)
    assert idx.dtype == torch.long and idx.shape == (2, 3)


@pytest.mark.parametrize("rate", [0.9, 0.5, 0.25])
def test_random_batches_keep_exact_counts(rate):
    torch.manual_seed(0)
    lengths = torch.tensor([37, 1, 20, 36])
    mask = torch.arange(37).unsqueeze(0) >= lengths.unsqueeze(1)
    attn = torch.rand(4, 37, 37).softmax(-1)
    x = torch.randn(4, 37, 5)
    kept, new_mask, idx = prune_frames(x, attn, mask, rate)
    expected = [max(1, math.ceil(rate * int(n))) for n in lengths]
    assert (~new_mask).sum(1).tolist() == expected
    assert kept.size(1) == max(expected)
    for b, kb in enumerate(expected):
        assert not mask[b, idx[b, :kb]].any()
