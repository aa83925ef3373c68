"""The content-adaptive ``coverage`` reduction and the windowed ``local`` one:
their rules against plain-Python versions, batch invariance in the encoder,
coverage 1 = dense, the floor, and the settings refused."""
import math
import random

import pytest
import torch

from npy_tome_layer import load_pruned_hubert
from npy_tome_layer.errors import InputError
from npy_tome_layer.reduction.selection import (coverage_counts, select_by_windows,
                                                select_counts, window_quotas)

from .test_pruned_hubert import waveforms


def python_coverage_count(scores, coverage, floor_rate=0.0):
    """The rule as stated: fewest frames by descending score (ties earlier)
    whose scores reach coverage x total; at least ceil(R n) and 1, at most n."""
    n = len(scores)
    if n == 0:
        return 0
    if coverage >= 1:
        return n
    order = sorted(range(n), key=lambda i: (-scores[i], i))
    total, running, m = math.fsum(scores), 0.0, 0
    for m, i in enumerate(order, start=1):
        running += scores[i]
        if running >= coverage * total:
            break
    return min(n, max(m, 1, math.ceil(floor_rate * n) if floor_rate > 0 else 1))


def python_windows(scores, count, window):
    """Kept frame indices of one row under the local rule, in plain Python."""
    n = len(scores)
    sizes = [min(window, n - s) for s in range(0, n, window)]
    quota = [count * size // n for size in sizes]
    remainders = [count * size % n for size in sizes]
    for w in sorted(range(len(sizes)), key=lambda w: (-remainders[w], w))[:count - sum(quota)]:
        quota[w] += 1
    kept = []
    for w, start in enumerate(range(0, n, window)):
        frames = sorted(range(start, start + sizes[w]), key=lambda i: (-scores[i], i))
        kept += frames[:quota[w]]
    return sorted(kept)


def random_rows(seed, rows=5, width=40):
    rng = random.Random(seed)
    lengths = [rng.randint(0, width) for _ in range(rows)]
    # coarse values: many ties
    scores = [[rng.choice([0.0, 0.25, 0.5, 1.0, 3.0]) + (rng.random() if rng.random() < 0.5
                                                        else 0.0) for _ in range(width)]
              for _ in range(rows)]
    mask = torch.arange(width).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
    return torch.tensor(scores, dtype=torch.float32), mask, lengths


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("coverage,floor", [(0.5, 0.0), (0.9, 0.0), (0.99, 0.0), (0.3, 0.5),
                                            (1.0, 0.0)])
def test_coverage_counts_follow_the_rule(seed, coverage, floor):
    scores, mask, lengths = random_rows(seed)
    counts = coverage_counts(scores, mask, coverage, floor).tolist()
    for b, n in enumerate(lengths):
        row = scores[b, :n].double().tolist()
        assert counts[b] == python_coverage_count(row, coverage, floor), (b, row)


def test_coverage_counts_do_not_depend_on_the_batch():
    scores, mask, lengths = random_rows(7)
    together = coverage_counts(scores, mask, 0.8)
    for b, n in enumerate(lengths):
        alone = coverage_counts(scores[b:b + 1, :n], None, 0.8)
        assert int(alone[0]) == int(together[b])


def test_full_coverage_keeps_every_frame_even_where_scores_are_zero():
    scores = torch.tensor([[5.0, 0.0, 0.0, 1e-30, 0.0]])
    assert coverage_counts(scores, None, 1.0).tolist() == [5]
    assert coverage_counts(scores, None, 0.999).tolist() == [1]
    assert coverage_counts(scores, None, 0.999, min_keep_rate=0.5).tolist() == [3]


def test_select_counts_keeps_the_best_in_time_order_ties_to_earlier():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.5, 3.0], [2.0, 2.0, 2.0, 9.0, 9.0]])
    mask = torch.tensor([[False] * 5, [False, False, False, True, True]])
    indices, new_mask = select_counts(scores, mask, torch.tensor([2, 2]))
    assert indices[0].tolist() == [1, 2] and indices[1, :2].tolist() == [0, 1]
    assert new_mask.tolist() == [[False, False], [False, False]]


@pytest.mark.parametrize("n,count,window", [(10, 3, 4), (7, 7, 3), (23, 5, 10), (5, 1, 10),
                                            (100, 37, 7), (1, 1, 1)])
def test_window_quotas_split_the_count_by_largest_remainders(n, count, window):
    quota = window_quotas(n, count, window).tolist()
    sizes = [min(window, n - s) for s in range(0, n, window)]
    assert sum(quota) == count and all(0 <= q <= s for q, s in zip(quota, sizes))
    for q, s in zip(quota, sizes):  # within one of the proportional share
        assert abs(q - count * s / n) < 1


def test_window_quotas_worked_example():
    # 10 frames, 3 kept, windows of 4: shares 1.2, 1.2, 0.6 -> 1, 1, 0 + one left to the
    # window with the largest remainder (0.6): the last
    assert window_quotas(10, 3, 4).tolist() == [1, 1, 1]
    # 9 frames, 4 kept, windows of 3: shares 1.33 each -> 1 each + one to the earliest
    assert window_quotas(9, 4, 3).tolist() == [2, 1, 1]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rate,window", [(0.9, 4), (0.5, 3), (0.3, 10), (0.1, 2)])
def test_local_selection_follows_the_rule(seed, rate, window):
    scores, mask, lengths = random_rows(seed)
    counts = torch.tensor([0 if n == 0 else max(1, math.ceil(rate * n)) for n in lengths])
    indices, new_mask = select_by_windows(scores, mask, counts, window)
    for b, n in enumerate(lengths):
        kept = indices[b][~new_mask[b]].tolist()
        assert kept == python_windows(scores[b, :n].tolist(), int(counts[b]), window)


@pytest.mark.parametrize("kwargs", [
    dict(token_reduction="coverage", pruning_coverage=0.8),
    dict(token_reduction="coverage", pruning_coverage=0.6, pruning_min_keep_rate=0.5),
    dict(token_reduction="local", pruning_rate=0.8, pruning_window=3),
])
def test_encoder_rows_equal_themselves_alone(hubert_tiny, kwargs):
    model = load_pruned_hubert(hubert_tiny, **kwargs)
    lengths = [29237, 17777, 8123]  # odd lengths: not multiples of the hop
    source, mask = waveforms(lengths)
    with torch.no_grad():
        res = model(source, padding_mask=mask, mask=False, features_only=True)
        for b, n in enumerate(lengths):
            alone = model(source[b:b + 1, :n], mask=False, features_only=True)
            k = int((~res["padding_mask"][b]).sum())
            assert k == alone["x"].size(1)
            torch.testing.assert_close(res["x"][b, :k], alone["x"][0], atol=1e-4, rtol=1e-4)
            for together, single in zip(res["kept_indices"], alone["kept_indices"]):
                assert together[b, :single.size(1)].tolist() == single[0].tolist()


def test_coverage_adapts_the_count_to_the_utterance(hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, token_reduction="coverage", pruning_coverage=0.7)
    source, mask = waveforms([32000, 32000])
    source[1] = torch.sin(torch.arange(32000) * 0.05) * 0.1  # a steady tone, unlike noise
    with torch.no_grad():
        res = model(source, padding_mask=mask, mask=False, features_only=True)
    first = res["kept_indices"][0]
    frames_in = model.frame_lengths(torch.tensor([32000])).item()
    kept = (~res["padding_mask"]).sum(dim=1).tolist()
    assert all(k < frames_in for k in kept) and first.size(1) < frames_in


def test_coverage_keeps_few_frames_where_attention_is_concentrated():
    """Two rows of equal length: attention on two frames, or spread evenly.
    A keep rate would keep as many of each; coverage keeps 2 and ceil(0.7 n)."""
    from types import SimpleNamespace

    from npy_tome_layer.reduction import Tokens, build_reduction

    n = 20
    scores = torch.full((2, n), 1.0)
    scores[0] = 0.01
    scores[0, [3, 15]] = 10.0
    tokens = Tokens(torch.randn(2, n, 8), None, torch.arange(n).expand(2, -1))
    reduction = build_reduction("coverage", 8, pruning_coverage=0.7)
    out = reduction.reduce(tokens, SimpleNamespace(scores=scores), 1.0, 0)
    assert (~out.padding_mask).sum(dim=1).tolist() == [2, 14]
    assert out.positions[0, :2].tolist() == [3, 15]


def test_coverage_reaches_the_share_with_the_fewest_frames():
    # equal scores: half the total is reached by 2 of 4 frames, not 3
    assert coverage_counts(torch.ones(1, 4), None, 0.5).tolist() == [2]
    assert coverage_counts(torch.tensor([[4.0, 3.0, 2.0, 1.0]]), None, 0.7).tolist() == [2]
    assert coverage_counts(torch.tensor([[4.0, 3.0, 2.0, 1.0]]), None, 0.71).tolist() == [3]


def test_a_window_keeps_a_frame_wherever_rate_times_window_reaches_one():
    for n in range(1, 120):
        for rate, window in [(0.1, 10), (0.5, 2), (0.34, 3), (0.9, 10)]:
            k = math.ceil(rate * n)
            quotas = window_quotas(n, k, window)
            whole = [q for q, start in zip(quotas.tolist(), range(0, n, window))
                     if n - start >= window]
            assert all(q >= math.floor(rate * window) >= 1 for q in whole), (n, rate, window)


def test_coverage_one_equals_the_dense_encoder(hubert_tiny):
    dense = load_pruned_hubert(hubert_tiny, pruning_rate=1.0)
    full = load_pruned_hubert(hubert_tiny, token_reduction="coverage", pruning_coverage=1.0)
    source, mask = waveforms([16640, 9000])
    with torch.no_grad():
        a = dense(source, padding_mask=mask, mask=False, features_only=True)
        b = full(source, padding_mask=mask, mask=False, features_only=True)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["padding_mask"], b["padding_mask"])


@pytest.mark.parametrize("kwargs,words", [
    (dict(token_reduction="coverage"), "needs pruning_coverage, a number in (0, 1]"),
    (dict(token_reduction="coverage", pruning_coverage=0.0),
     "pruning_coverage must be a number in (0, 1], got 0.0"),
    (dict(token_reduction="coverage", pruning_coverage=1.2),
     "pruning_coverage must be a number in (0, 1], got 1.2"),
    (dict(token_reduction="coverage", pruning_coverage=float("nan")), "pruning_coverage"),
    (dict(token_reduction="coverage", pruning_coverage=0.9, pruning_min_keep_rate=-0.1),
     "pruning_min_keep_rate must be a number in [0, 1]"),
    (dict(token_reduction="coverage", pruning_coverage=0.9, pruning_min_keep_rate=1.5),
     "pruning_min_keep_rate must be a number in [0, 1]"),
    (dict(token_reduction="coverage", pruning_coverage=0.9, pruning_rate=0.8),
     "the keep rate does not apply"),
    (dict(token_reduction="local", pruning_rate=0.9, pruning_window=0), "pruning_window"),
    (dict(token_reduction="local", pruning_rate=0.9, pruning_window=2.5), "pruning_window"),
    # a window must keep a frame: rate x window >= 1 (a schedule's lowest rate counts)
    (dict(token_reduction="local", pruning_rate=0.5, pruning_window=1), "rate x pruning_window"),
    (dict(token_reduction="local", pruning_rate=0.09, pruning_window=10),
     "rate x pruning_window"),
    (dict(token_reduction="local", pruning_max_rate=1.0, pruning_min_rate=0.3,
          pruning_schedule_updates=10, pruning_window=3), "rate x pruning_window"),
    # one reduction's options given to another: a typo would train another method
    (dict(token_reduction="prune", pruning_rate=0.9, pruning_coverage=0.5),
     "pruning_coverage 0.5 is read by token_reduction coverage, not by 'prune'"),
    (dict(token_reduction="prune", pruning_rate=0.9, pruning_window=5),
     "pruning_window 5 is read by token_reduction local, not by 'prune'"),
    (dict(token_reduction="local", pruning_rate=0.9, pruning_min_keep_rate=0.2),
     "pruning_min_keep_rate 0.2 is read by token_reduction coverage or adjacent, not by "
     "'local'"),
    (dict(token_reduction="coverage", pruning_coverage=0.9, pruning_window=5),
     "pruning_window 5 is read by token_reduction local, not by 'coverage'"),
])
def test_bad_settings_are_refused_when_built(hubert_tiny, kwargs, words):
    with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        load_pruned_hubert(hubert_tiny, **kwargs)


@pytest.mark.parametrize("flag,value,message", [
    ("--pruning-coverage", "0", "must be a number in (0, 1], got '0'"),
    ("--pruning-coverage", "1.5", "must be a number in (0, 1], got '1.5'"),
    ("--pruning-min-keep-rate", "-0.1", "must be a number in [0, 1], got '-0.1'"),
    ("--pruning-window", "0", "must be a whole number >= 1, got '0'"),
])
def test_flags_are_checked_by_fairseqs_parser(flag, value, message, capsys):
    import os

    from fairseq import options

    from .conftest import REPO

    parser = options.get_training_parser()
    with pytest.raises(SystemExit) as exit_info:
        options.parse_args_and_arch(parser, [
            "data", "--user-dir", os.path.join(REPO, "npy_tome_layer"),
            "--task", "speech_and_text_translation", "--arch", "hubert_transformer_pruning_layer",
            "--token-reduction", "coverage", flag, value])
    assert exit_info.value.code == 2
    assert f"error: argument {flag}: {message}" in capsys.readouterr().err


def test_the_arch_leaves_the_rate_at_one_for_coverage():
    from argparse import Namespace

    from npy_tome_layer.st.model import hubert_transformer_pruning_layer

    args = Namespace(token_reduction="coverage", pruning_coverage=0.9)
    hubert_transformer_pruning_layer(args)
    assert args.pruning_rate == 1.0
    args = Namespace()
    hubert_transformer_pruning_layer(args)
    assert args.pruning_rate == 0.9 and args.token_reduction == "prune"


def test_sweep_settings_of_a_coverage_or_local_checkpoint(hubert_tiny):
    """The sweep's rates on a coverage checkpoint run prune (rate 1 = dense), its
    coverages on a local checkpoint drop the window: each setting builds."""
    from npy_tome_layer.tools.sweep import pruning_overrides

    def swept(trained, *setting):
        reduction = load_pruned_hubert(hubert_tiny, **trained).encoder.length_reduction
        rate, init_layer, coverage = setting
        return load_pruned_hubert(hubert_tiny, **{**trained, **pruning_overrides(
            rate, init_layer, reduction, coverage)})

    coverage = dict(token_reduction="coverage", pruning_coverage=0.8, pruning_min_keep_rate=0.1)
    for rate in (1.0, 0.9):
        model = swept(coverage, rate, 0, None)
        assert model.encoder.length_reduction.name == "prune"
        assert model.encoder.shortens() == (rate < 1.0)
    # the trained coverage's floor stays when its share is swept
    assert swept(coverage, None, 0, 0.6).encoder.length_reduction.min_keep_rate == 0.1
    local = dict(token_reduction="local", pruning_rate=0.9, pruning_window=5)
    model = swept(local, None, 1, 0.7)
    assert model.encoder.final_setting == ("coverage", 0.7, 1)
    model = swept(local, 0.8, 0, None)
    assert model.encoder.final_setting == ("local", 0.8, 0)
    # a reduction that ignores the rate but not by choosing its own counts keeps its class
    conv = dict(token_reduction="conv", pruning_init_layer=1)
    model = swept(conv, 0.9, 1, None)
    assert model.encoder.length_reduction.name == "conv"


def test_base_size_time_of_a_data_dependent_setting_needs_its_counts():
    from npy_tome_layer.evaluation.reference import reference_speedups

    audio = [torch.randn(1, 16000)]
    with pytest.raises(ValueError, match="depend on the data"):
        reference_speedups([("coverage", 0.8, 0)], audio, "tiny", warmup=0, repeats=1)
    speedups = reference_speedups([("coverage", 0.8, 0)], audio, "tiny", warmup=0, repeats=1,
                                  kept_counts={("coverage", 0.8, 0): [[30, 20, 10]]})
    assert speedups[("coverage", 0.8, 0)] > 0
