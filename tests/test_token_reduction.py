"""The alternatives to pruning: ToMe-style merging and a strided conv.
Requested frame counts, correct padding masks, no batch dependence, and the
encoder/CLI switch --token-reduction."""
import math

import pytest
import torch

from npy_tome_layer.encoder.pruned_hubert import build_pruned_hubert, load_pruned_hubert
from npy_tome_layer.reduction.merging import merge_tokens
from npy_tome_layer.reduction.reductions import StridedConvReduction
from npy_tome_layer.encoder.config import hubert_model_config


def _batch(lengths, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    tsz = max(lengths)
    x = torch.randn(len(lengths), tsz, dim, generator=g)
    keys = torch.randn(len(lengths), tsz, 4, generator=g)
    mask = torch.arange(tsz).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
    return x, keys, mask


@pytest.mark.parametrize("rate", [0.5, 0.7, 0.9, 0.95, 1.0])
def test_merge_keeps_ceil_rate_n_with_a_correct_mask(rate):
    lengths = [37, 20, 9, 1]
    x, keys, mask = _batch(lengths)
    sizes = torch.ones(x.shape[:2])
    positions = torch.arange(x.size(1)).expand(len(lengths), -1)
    y, new_sizes, new_pos, new_mask = merge_tokens(x, keys, sizes, positions, mask, rate)
    expected = [max(1, math.ceil(rate * n)) for n in lengths]
    assert (~new_mask).sum(1).tolist() == expected
    assert y.shape == (4, max(expected), 8) and new_sizes.shape == new_mask.shape
    for b, n in enumerate(lengths):
        k = expected[b]
        assert not new_mask[b, :k].any() and new_mask[b, k:].all()  # valid first
        valid_pos = new_pos[b, :k]
        assert (valid_pos[1:] > valid_pos[:-1]).all() and (valid_pos < n).all()  # time order
        # every valid frame is represented exactly once, and the mean is conserved
        assert new_sizes[b, :k].sum().item() == pytest.approx(n)
        torch.testing.assert_close((y[b, :k] * new_sizes[b, :k, None]).sum(0), x[b, :n].sum(0),
                                   rtol=1e-5, atol=1e-5)


def test_merge_joins_the_most_similar_pair():
    # A = tokens 0, 2; B = tokens 1, 3. Token 2's key equals token 3's: that edge wins.
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]])
    x = torch.tensor([[[1.0], [2.0], [3.0], [5.0]]])
    y, sizes, pos, mask = merge_tokens(x, keys, torch.ones(1, 4), torch.arange(4)[None], None, 0.75)
    assert pos.tolist() == [[0, 1, 3]] and sizes.tolist() == [[1.0, 1.0, 2.0]]
    assert y.squeeze(-1).tolist() == [[1.0, 2.0, 4.0]] and not mask.any()


def test_merge_refuses_rates_below_one_half():
    x, keys, mask = _batch([10])
    with pytest.raises(ValueError, match=r"keep rate in \[0.5, 1.0\], got 0.4"):
        merge_tokens(x, keys, torch.ones(1, 10), torch.arange(10)[None], mask, 0.4)


def test_conv_reduction_halves_with_a_correct_mask_and_starts_as_average_pooling():
    lengths = [9, 4, 1]
    x, _, mask = _batch(lengths)
    conv = StridedConvReduction(8, conv_reduction_stride=2)
    y, new_mask = conv(x, mask)
    assert (~new_mask).sum(1).tolist() == [5, 2, 1] and y.size(1) == 5
    torch.testing.assert_close(y[1, :2], (x[1, 0:4:2] + x[1, 1:4:2]) / 2)
    # padded input never leaks into valid output frames
    noisy = x.masked_fill(mask.unsqueeze(-1), 1e4)
    y2, _ = conv(noisy, mask)
    torch.testing.assert_close(y2.masked_fill(new_mask.unsqueeze(-1), 0), y.masked_fill(new_mask.unsqueeze(-1), 0))
    y3, m3 = conv(x[:1], None)
    assert m3 is None and y3.size(1) == 5


def _tiny(token_reduction, rate=0.9, init=1, **kw):
    torch.manual_seed(0)
    cfg = hubert_model_config("tiny", layer_norm_first=True, extractor_mode="layer_norm",
                              encoder_layers=4)
    return build_pruned_hubert(cfg, pruning_rate=rate, pruning_init_layer=init,
                               token_reduction=token_reduction, **kw).eval()


def _padded_and_alone(model):
    torch.manual_seed(1)
    audio = torch.randn(2, 48000)
    lengths = [29200, 15120]  # the conv front end gives these the same frames padded or alone
    padding = torch.arange(48000).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
    audio = audio.masked_fill(padding, 0.0)
    with torch.no_grad():
        y, mask = model.extract_features(audio, padding_mask=padding)
        alone = [model.extract_features(audio[b:b + 1, :n])[0] for b, n in enumerate(lengths)]
    return y, mask, alone


@pytest.mark.parametrize("mode", ["merge", "conv", "uniform", "random"])
def test_encoder_alternatives_are_batch_invariant(mode):
    model = _tiny(mode)
    y, mask, alone = _padded_and_alone(model)
    for b, single in enumerate(alone):
        n = int((~mask[b]).sum())
        assert n == single.size(1)
        torch.testing.assert_close(y[b, :n], single[0], rtol=1e-4, atol=1e-4)


def test_merge_leaves_as_many_frames_as_prune_and_conv_halves_once():
    counts = {}
    for mode in ("prune", "merge", "conv", "uniform", "random"):
        _, mask, alone = _padded_and_alone(_tiny(mode))
        counts[mode] = [a.size(1) for a in alone]
    assert counts["merge"] == counts["prune"] == counts["uniform"] == counts["random"]
    frames = [91, 47]  # conv front end of 29200 and 15120 samples
    chain = []
    for n in frames:  # init layer 1 of 4: three pruning steps
        for _ in range(3):
            n = math.ceil(0.9 * n)
        chain.append(n)
    assert counts["prune"] == chain
    assert counts["conv"] == [math.ceil(n / 2) for n in frames]


def test_conv_mode_loads_official_weights_and_rejects_foreign_ones(hubert_tiny, tmp_path):
    model = load_pruned_hubert(hubert_tiny, token_reduction="conv", pruning_init_layer=1)
    assert model.encoder.length_reduction.stride == 2
    state = torch.load(hubert_tiny, weights_only=True)
    state["model"].pop("encoder.layers.0.fc1.weight")
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    with pytest.raises(ValueError, match=r"broken.pt: HuBERT weights do not fit .*encoder.layers.0.fc1.weight"):
        load_pruned_hubert(str(broken), token_reduction="conv")


def uniform_ranks(n, k):
    """One row's kept ranks under the uniform rule."""
    from npy_tome_layer.reduction.selection import uniform_choice

    return uniform_choice(torch.tensor([n]), torch.tensor([k]), n)[0].nonzero().flatten()


def random_ranks(n, k, seed, layer, length=None):
    """One row's kept ranks under the random rule (``length``: its padded width)."""
    from npy_tome_layer.reduction.selection import random_choice

    chosen = random_choice(torch.tensor([n]), torch.tensor([k]), length or n, seed, layer)
    return chosen[0].nonzero().flatten()


def test_uniform_keeps_evenly_spaced_frames():
    assert uniform_ranks(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert uniform_ranks(10, 10).tolist() == list(range(10))
    assert uniform_ranks(7, 1).tolist() == [3]
    for n in range(1, 60):
        for k in range(1, n + 1):
            ranks = uniform_ranks(n, k)
            assert len(ranks) == k and ranks[0] >= 0 and ranks[-1] < n
            assert ranks.tolist() == [(2 * j + 1) * n // (2 * k) for j in range(k)]
            if k > 1:  # strictly increasing, gaps differ by at most one frame
                gaps = ranks[1:] - ranks[:-1]
                assert (gaps >= 1).all() and int(gaps.max() - gaps.min()) <= 1


def test_blind_reductions_choose_within_each_rows_valid_frames():
    """The reduction itself on a padded batch: row b keeps keep_counts(n_b)
    frames, at the ranks the rule names, in time order, padding never kept."""
    from npy_tome_layer.reduction.selection import keep_counts
    from npy_tome_layer.reduction import Tokens, build_reduction

    lengths = [37, 20, 9, 1, 0]
    x, _, mask = _batch(lengths)
    positions = torch.arange(x.size(1)).expand(len(lengths), -1)
    for name, settings, rule in (("uniform", {}, lambda n, k: uniform_ranks(n, k)),
                                 ("random", {"token_reduction_seed": 5},
                                  lambda n, k: random_ranks(n, k, 5, 3))):
        out = build_reduction(name, 8, **settings).reduce(Tokens(x, mask, positions), None,
                                                          0.7, 3)
        for b, n in enumerate(lengths):
            k = int(keep_counts(torch.tensor([n]), 0.7)[0])
            assert int((~out.padding_mask[b]).sum()) == k
            assert out.positions[b, :k].tolist() == rule(n, k).tolist()
            torch.testing.assert_close(out.x[b, :k], x[b, rule(n, k)])


def python_frame_hash(seed, layer, n, rank):
    """The random rule's hash in Python's unbounded integers: what int64
    tensors must give on any device (no product may overflow)."""
    def mix(h):
        for multiplier in (0x2C9277B5, 0x6B43A9B5):
            h ^= h >> 16
            h = (h * multiplier) & 0xFFFFFFFF
        return h ^ (h >> 15)

    key = mix(mix(mix(seed & 0xFFFFFFFF) ^ layer) ^ n)
    return mix(key ^ rank)


def test_random_subset_is_the_smallest_hashes_of_seed_layer_length_and_rank():
    from npy_tome_layer.reduction.selection import frame_hash

    for seed, layer, n in [(0, 0, 1), (5, 3, 37), (2**40 + 7, 11, 500), (123456789, 2, 999)]:
        hashes = frame_hash(seed, layer, torch.tensor([n]), n)[0].tolist()
        assert hashes == [python_frame_hash(seed, layer, n, r) for r in range(n)]
        assert len(set(hashes)) == n  # a bijection of the rank: no ties
        k = max(1, (7 * n) // 10)
        expected = sorted(sorted(range(n), key=lambda r: hashes[r])[:k])
        assert random_ranks(n, k, seed, layer).tolist() == expected


def test_random_subset_depends_on_seed_layer_and_length_only():
    from npy_tome_layer.reduction.selection import random_choice

    a = random_ranks(100, 40, 0, 3)
    assert a.tolist() == random_ranks(100, 40, 0, 3).tolist()
    assert (a[1:] > a[:-1]).all() and len(set(a.tolist())) == 40
    assert a.tolist() != random_ranks(100, 40, 1, 3).tolist()  # seed
    assert a.tolist() != random_ranks(100, 40, 0, 4).tolist()  # layer
    assert a.tolist() != random_ranks(99, 40, 0, 3).tolist()  # length
    assert a.tolist() == random_ranks(100, 40, 0, 3, length=173).tolist()  # not the padding
    # any batch: each row as it is alone
    lengths, counts = torch.tensor([100, 7, 0, 100, 64]), torch.tensor([40, 3, 0, 90, 64])
    together = random_choice(lengths, counts, 120, 0, 3)
    for b, (n, k) in enumerate(zip(lengths.tolist(), counts.tolist())):
        assert together[b].nonzero().flatten().tolist() == random_ranks(n, k, 0, 3).tolist()
    # spread over the utterance, not bunched
    kept = random_ranks(1000, 500, 0, 0)
    assert 200 < int((kept < 500).sum()) < 300


def test_random_reduction_seed_changes_the_kept_frames(hubert_tiny):
    audio = torch.randn(1, 16640, generator=torch.Generator().manual_seed(0))
    kept = []
    for seed in (0, 0, 1):
        model = load_pruned_hubert(hubert_tiny, pruning_rate=0.7, token_reduction="random",
                                   token_reduction_seed=seed)
        with torch.no_grad():
            kept.append(model(audio, mask=False, features_only=True)["kept_indices"][-1].tolist())
    assert kept[0] == kept[1] != kept[2]
