"""Reductions whose tokens stand for runs of frames: ``adjacent`` (A-ToMe-style
neighbour merging) and ``fold`` (prune's choice, dropped frames averaged into
the nearest kept one). Hand-computed cases, the spans contract, rate 1 =
dense, batch invariance, empty rows, refused settings, and batched work (no
per-row loop, one host sync per acting layer)."""
import inspect
import math
from types import SimpleNamespace

import pytest
import torch
from torch.overrides import TorchFunctionMode

from npy_tome_layer import load_pruned_hubert
from npy_tome_layer.errors import InputError
from npy_tome_layer.reduction import (AttentionEvidence, Tokens,
                                      build_reduction)
from npy_tome_layer.reduction import adjacent, runs

from .test_pruned_hubert import waveforms

# neighbour cosines: 0.995, 0.0995, 0.981, 0.832, -0.707
KEYS = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.2, 1.0], [1.0, 1.0],
                      [-1.0, 0.0]]])
X = torch.tensor([[[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]]])


def _tokens(x=X, mask=None, sizes=None, spans=None):
    positions = torch.arange(x.size(1)).expand(x.size(0), -1)
    return Tokens(x, mask, positions, sizes, spans)


def _adjacent(rate=0.5, keys=KEYS, tokens=None, **options):
    reduction = build_reduction("adjacent", 1, **options)
    return reduction.reduce(tokens or _tokens(), SimpleNamespace(keys=keys), rate, 0)


def _fold(scores, rate, tokens=None):
    reduction = build_reduction("fold", 1)
    return reduction.reduce(tokens or _tokens(), SimpleNamespace(scores=scores), rate, 0)


def _values(t):
    return t.squeeze(-1).tolist()


def test_adjacent_merges_the_most_similar_neighbours_into_runs():
    # rate 0.5 of 6: 3 tokens, 3 merges: edges 0 (0.995), 2 (0.981), 3 (0.832);
    # edges 2 and 3 chain: frames 2, 3, 4 become one token
    out = _adjacent(0.5)
    assert out.spans.tolist() == [[[0, 1], [2, 4], [5, 5]]]
    assert out.sizes.tolist() == [[2.0, 3.0, 1.0]]
    assert _values(out.x) == [[0.5, 3.0, 5.0]]
    assert out.positions.tolist() == [[0, 2, 5]]  # a run is named by its first frame
    assert not out.padding_mask.any()
    # rate 0.7: ceil(4.2) = 5 tokens, one merge: the most similar edge only
    assert _adjacent(0.7).spans.tolist() == [[[0, 1], [2, 2], [3, 3], [4, 4], [5, 5]]]


def test_adjacent_averages_by_the_sizes_carried_from_earlier_layers():
    # tokens that already stand for 1, 3, 1, 1, 1, 1 frames (frames 0, 1-3, 4, ...)
    sizes = torch.tensor([[1.0, 3.0, 1.0, 1.0, 1.0, 1.0]])
    spans = torch.tensor([[[0, 0], [1, 3], [4, 4], [5, 5], [6, 6], [7, 7]]])
    out = _adjacent(0.7, tokens=_tokens(sizes=sizes, spans=spans))
    assert out.spans.tolist() == [[[0, 3], [4, 4], [5, 5], [6, 6], [7, 7]]]
    assert out.sizes[0, 0].item() == 4.0
    assert out.x[0, 0, 0].item() == pytest.approx((0.0 * 1 + 1.0 * 3) / 4)


def test_adjacent_threshold_merges_every_pair_above_it_with_a_floor():
    # above 0.9: edges 0 and 2 -> 4 tokens, whatever the rate would say
    out = _adjacent(1.0, pruning_merge_threshold=0.9)
    assert out.spans.tolist() == [[[0, 1], [2, 3], [4, 4], [5, 5]]]
    assert _values(out.x) == [[0.5, 2.5, 4.0, 5.0]]
    # above 0.0: four edges, but the floor ceil(0.8 * 6) = 5 leaves one: the most similar
    out = _adjacent(1.0, pruning_merge_threshold=0.0, pruning_min_keep_rate=0.8)
    assert out.spans.tolist() == [[[0, 1], [2, 2], [3, 3], [4, 4], [5, 5]]]
    # a threshold no pair exceeds merges nothing
    assert _adjacent(1.0, pruning_merge_threshold=0.999).spans.size(1) == 6


def test_adjacent_threshold_count_follows_the_content():
    steady = torch.ones(1, 8, 3)  # one sound held: every neighbour is alike
    varied = torch.eye(8)[:, :3].unsqueeze(0) + torch.eye(8)[:, 3:6].unsqueeze(0)
    keys = torch.cat([steady, varied])
    tokens = _tokens(torch.randn(2, 8, 1))
    out = _adjacent(1.0, keys=keys, tokens=tokens, pruning_merge_threshold=0.5, pruning_min_keep_rate=0.25)
    assert (~out.padding_mask).sum(1).tolist() == [2, 8]  # the floor, and no merge at all


def test_fold_keeps_prunes_frames_and_folds_the_dropped_ones_into_the_nearest():
    # prune keeps ceil(0.5 * 6) = 3: frames 1, 5, 4; frame 0 -> 1, 2 -> 1 (1 away vs 2), 3 -> 4
    out = _fold(torch.tensor([[0.1, 5.0, 0.2, 0.3, 0.4, 4.0]]), 0.5)
    assert out.positions.tolist() == [[1, 4, 5]]  # prune's kept frames
    assert out.spans.tolist() == [[[0, 2], [3, 4], [5, 5]]]
    assert out.sizes.tolist() == [[3.0, 2.0, 1.0]]
    assert _values(out.x) == [[1.0, 3.5, 5.0]]


def test_fold_ties_go_to_the_earlier_kept_frame():
    # kept 1, 3, 5: frame 2 is as near 1 as 3, frame 4 as near 3 as 5
    out = _fold(torch.tensor([[0.0, 5.0, 0.1, 4.0, 0.2, 0.3]]), 0.34)
    assert out.positions.tolist() == [[1, 3, 5]]
    assert out.spans.tolist() == [[[0, 2], [3, 4], [5, 5]]]


def test_fold_measures_time_in_original_frames():
    # kept tokens 1, 3, 5; token 4 stands for frames 12-19 (centre 15.5): nearer token 5
    # (frame 20) than token 3 (frames 9-11, centre 10), though one token from each
    spans = torch.tensor([[[0, 0], [1, 1], [2, 8], [9, 11], [12, 19], [20, 20]]])
    sizes = (spans[..., 1] - spans[..., 0] + 1).float()
    tokens = Tokens(X, None, spans[..., 0], sizes, spans)
    out = _fold(torch.tensor([[0.0, 5.0, 0.1, 4.0, 0.2, 3.0]]), 0.5, tokens)
    assert out.spans.tolist() == [[[0, 8], [9, 11], [12, 20]]]
    assert out.sizes.tolist() == [[9.0, 3.0, 9.0]]
    assert out.positions.tolist() == [[1, 9, 20]]
    assert out.x[0, 2, 0].item() == pytest.approx((4.0 * 8 + 5.0 * 1) / 9)


def _random_batch(lengths, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    tsz = max(lengths)
    x = torch.randn(len(lengths), tsz, dim, generator=g)
    keys = torch.randn(len(lengths), tsz, 3, generator=g)
    keys[:, 1::3] = keys[:, 0::3][:, :keys[:, 1::3].size(1)]  # some equal neighbours
    scores = torch.rand(len(lengths), tsz, generator=g)
    mask = torch.arange(tsz).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
    return _tokens(x, mask), SimpleNamespace(keys=keys, scores=scores)


SETTINGS = [("adjacent", 0.5, {}), ("adjacent", 0.9, {}), ("adjacent", 0.2, {}),
            ("adjacent", 1.0, {"pruning_merge_threshold": 0.3}),
            ("adjacent", 1.0, {"pruning_merge_threshold": -0.5, "pruning_min_keep_rate": 0.4}),
            ("fold", 0.5, {}), ("fold", 0.85, {}), ("fold", 0.1, {})]


@pytest.mark.parametrize("name,rate,options", SETTINGS)
def test_spans_partition_each_rows_frames_and_the_mean_is_kept(name, rate, options):
    lengths = [23, 1, 0, 17, 9]
    tokens, evidence = _random_batch(lengths)
    out = build_reduction(name, 4, **options).reduce(tokens, evidence, rate, 2)
    kept = (~out.padding_mask).sum(1).tolist()
    for b, n in enumerate(lengths):
        k = kept[b]
        if "pruning_merge_threshold" not in options:
            assert k == (max(1, math.ceil(rate * n)) if n else 0)  # prune's count
        spans = out.spans[b, :k].tolist()
        if n:  # contiguous runs in time order covering exactly frames 0 .. n-1
            assert spans[0][0] == 0 and spans[-1][1] == n - 1
            assert all(a[1] + 1 == c[0] for a, c in zip(spans, spans[1:]))
            assert all(first <= out.positions[b, j] <= last for j, (first, last) in
                       enumerate(spans))
        assert out.sizes[b, :k].tolist() == [last - first + 1.0 for first, last in spans]
        torch.testing.assert_close(
            (out.x[b, :k] * out.sizes[b, :k, None]).sum(0), tokens.x[b, :n].sum(0),
            rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out.x).all() and (out.sizes > 0).all()


@pytest.mark.parametrize("name,rate,options", SETTINGS)
def test_a_row_alone_equals_itself_in_a_padded_batch(name, rate, options):
    lengths = [23, 1, 0, 17, 9]
    tokens, evidence = _random_batch(lengths)
    reduction = build_reduction(name, 4, **options)
    together = reduction.reduce(tokens, evidence, rate, 2)
    for b, n in enumerate(lengths):
        if n == 0:
            continue
        alone = reduction.reduce(
            _tokens(tokens.x[b:b + 1, :n]),
            SimpleNamespace(keys=evidence.keys[b:b + 1, :n], scores=evidence.scores[b:b + 1, :n]),
            rate, 2)
        k = alone.x.size(1)
        assert int((~together.padding_mask[b]).sum()) == k
        assert torch.equal(together.spans[b, :k], alone.spans[0])
        assert torch.equal(together.positions[b, :k], alone.positions[0])
        torch.testing.assert_close(together.x[b, :k], alone.x[0])


class _HostSyncs(TorchFunctionMode):
    """Counts the tensor -> Python conversions (each a host sync on a GPU)."""

    SYNCS = ("__int__", "__float__", "__bool__", "__index__", "item", "tolist", "nonzero",
             "numpy")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.SYNCS:
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name,rate,options", SETTINGS)
def test_one_host_sync_per_step_and_no_per_row_loop(name, rate, options):
    tokens, evidence = _random_batch([23, 1, 0, 17, 9])
    reduction = build_reduction(name, 4, **options)
    with _HostSyncs() as syncs:
        reduction.reduce(tokens, evidence, rate, 2)
    assert syncs.seen == ["__int__"]  # the new width
    for function in (runs.runs_from_starts, runs.pool_runs, runs.merge_runs, runs.run_spans,
                     runs.stride_runs, adjacent.adjacent_runs, adjacent.strongest_edges,
                     adjacent.nearest_kept_runs):
        assert "for " not in inspect.getsource(function).split('"""')[-1]


def test_sizes_enter_the_attention_as_log_size():
    tokens = _tokens(sizes=torch.tensor([[1.0, 2.0, 4.0, 1.0, 1.0, 1.0]]))
    for name in ("adjacent", "fold"):
        reduction = build_reduction(name, 1)
        for acting in (True, False):
            evidence = reduction.evidence(tokens, acting)
            assert isinstance(evidence, AttentionEvidence)
            torch.testing.assert_close(evidence.key_log_size, tokens.sizes.log())
        assert reduction.evidence(_tokens(), False) is None  # nothing merged yet: fast path


# --- in the encoder ----------------------------------------------------------------

ENCODER_SETTINGS = [dict(token_reduction="adjacent", pruning_rate=0.7),
                    dict(token_reduction="adjacent", pruning_merge_threshold=0.2,
                         pruning_min_keep_rate=0.3),
                    dict(token_reduction="fold", pruning_rate=0.7)]


@pytest.mark.parametrize("kwargs", ENCODER_SETTINGS)
def test_encoder_rows_equal_themselves_alone_and_spans_partition(hubert_tiny, kwargs):
    model = load_pruned_hubert(hubert_tiny, **kwargs)
    lengths = [29237, 17777, 8123, 0]  # odd lengths; an empty utterance
    source, mask = waveforms(lengths)
    with torch.no_grad():
        res = model(source, padding_mask=mask, mask=False, features_only=True)
        assert torch.isfinite(res["x"]).all() and res["padding_mask"][3].all()
        frames = model.frame_lengths(torch.tensor(lengths)).tolist()
        assert len(res["spans"]) == len(res["kept_indices"]) == 3
        for b, n in enumerate(lengths[:3]):
            alone = model(source[b:b + 1, :n], mask=False, features_only=True)
            k = int((~res["padding_mask"][b]).sum())
            assert k == alone["x"].size(1) < frames[b]
            torch.testing.assert_close(res["x"][b, :k], alone["x"][0], atol=1e-4, rtol=1e-4)
            for together, single in zip(res["spans"], alone["spans"]):
                assert together[b, :single.size(1)].tolist() == single[0].tolist()
            spans = res["spans"][-1][b, :k].tolist()
            assert spans[0][0] == 0 and spans[-1][1] == frames[b] - 1
            assert all(a[1] + 1 == c[0] for a, c in zip(spans, spans[1:]))


def test_prune_like_spans_are_their_positions(hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, pruning_rate=0.7)
    source, mask = waveforms([16640, 9000])
    with torch.no_grad():
        res = model(source, padding_mask=mask, mask=False, features_only=True)
    for kept, spans in zip(res["kept_indices"], res["spans"]):
        assert torch.equal(spans[..., 0], kept) and torch.equal(spans[..., 1], kept)


def test_the_studys_positions_are_the_centres_of_the_runs(hubert_tiny):
    """The study's position plot places a token at the middle of the run of
    frames it stands for: prune's tokens at their own frame, adjacent's
    merged runs at their centre, covering the utterance evenly."""
    from npy_tome_layer.evaluation.timing import kept_frames, kept_positions

    dataset = [{"source": s} for s in waveforms([16640, 9000])[0].unbind(0)]
    dataset[1]["source"] = dataset[1]["source"][:9000]
    for kwargs in (dict(pruning_rate=0.7), dict(token_reduction="adjacent", pruning_rate=0.7)):
        hubert = load_pruned_hubert(hubert_tiny, **kwargs)
        frames = kept_frames(SimpleNamespace(encoder=SimpleNamespace(hubert=hubert)), dataset)
        for audio, (n, layers) in zip(dataset, frames):
            with torch.no_grad():
                res = hubert(audio["source"].unsqueeze(0), mask=False, features_only=True)
            assert n == int(hubert.frame_lengths(torch.tensor(audio["source"].numel())))
            for centres, kept, spans in zip(layers, res["kept_indices"], res["spans"]):
                assert centres.tolist() == spans[0].float().mean(-1).tolist()
                if "token_reduction" not in kwargs:
                    assert centres.tolist() == kept[0].float().tolist()
        positions = kept_positions(frames)
        assert len(positions) == sum(layers[-1].numel() for _, layers in frames)
        assert all(0 < p < 1 for p in positions)
    # adjacent's runs partition each utterance, so the last layer's centres are
    # spread over it: the first run starts at frame 0 and the last ends at n - 1
    assert min(positions) < 0.25 and max(positions) > 0.75


def test_conv_spans_are_its_strides(hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, token_reduction="conv", pruning_init_layer=1)
    source, mask = waveforms([16640, 9000])
    with torch.no_grad():
        res = model(source, padding_mask=mask, mask=False, features_only=True)
    spans = res["spans"][-1]
    for b, n in enumerate(model.frame_lengths(torch.tensor([16640, 9000])).tolist()):
        k = math.ceil(n / 2)
        assert int((~res["padding_mask"][b]).sum()) == k
        assert spans[b, :k].tolist() == [[2 * j, min(2 * j + 1, n - 1)] for j in range(k)]
        assert torch.equal(res["kept_indices"][-1][b, :k], spans[b, :k, 0])


@pytest.mark.parametrize("kwargs", [dict(token_reduction="adjacent", pruning_rate=1.0),
                                    dict(token_reduction="fold", pruning_rate=1.0),
                                    dict(token_reduction="adjacent",
                                         pruning_merge_threshold=1.0)])
def test_rate_one_equals_the_dense_encoder(hubert_tiny, kwargs):
    dense = load_pruned_hubert(hubert_tiny, pruning_rate=1.0)
    model = load_pruned_hubert(hubert_tiny, **kwargs)
    assert not model.encoder.shortens()
    source, mask = waveforms([16640, 9000])
    with torch.no_grad():
        a = dense(source, padding_mask=mask, mask=False, features_only=True)
        b = model(source, padding_mask=mask, mask=False, features_only=True)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["padding_mask"], b["padding_mask"])


def test_the_threshold_setting_is_named_by_its_threshold(hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, token_reduction="adjacent",
                               pruning_merge_threshold=0.4, pruning_init_layer=1)
    assert model.encoder.final_setting == ("adjacent", 0.4, 1)
    reduction = model.encoder.length_reduction
    assert reduction.data_dependent_counts and not reduction.uses_rate
    with pytest.raises(NotImplementedError, match="depend on the data"):
        reduction.lengths_after(10, 10, 1.0)
    plain = load_pruned_hubert(hubert_tiny, token_reduction="adjacent", pruning_rate=0.8)
    assert plain.encoder.final_setting == ("adjacent", 0.8, 0)
    assert plain.encoder.length_reduction.lengths_after(10, 10, 0.8) == (8, 8)


@pytest.mark.parametrize("kwargs,words", [
    (dict(token_reduction="adjacent", pruning_merge_threshold=1.5),
     "pruning_merge_threshold must be a cosine similarity in [-1, 1], got 1.5"),
    (dict(token_reduction="adjacent", pruning_merge_threshold=float("nan")),
     "pruning_merge_threshold must be a cosine similarity"),
    (dict(token_reduction="adjacent", pruning_merge_threshold="high"),
     "pruning_merge_threshold must be a cosine similarity"),
    (dict(token_reduction="adjacent", pruning_merge_threshold=0.5, pruning_min_keep_rate=2.0),
     "pruning_min_keep_rate must be a number in [0, 1], got 2.0"),
    (dict(token_reduction="adjacent", pruning_rate=0.8, pruning_min_keep_rate=0.3),
     "pruning_min_keep_rate 0.3 is the floor of pruning_merge_threshold"),
    (dict(token_reduction="adjacent", pruning_merge_threshold=0.5, pruning_rate=0.8),
     "the keep rate does not apply to it, got a rate of 0.8"),
    (dict(token_reduction="prune", pruning_rate=0.8, pruning_merge_threshold=0.5),
     "pruning_merge_threshold 0.5 is read by token_reduction adjacent, not by 'prune'"),
    (dict(token_reduction="fold", pruning_rate=0.8, pruning_merge_threshold=0.5),
     "pruning_merge_threshold 0.5 is read by token_reduction adjacent, not by 'fold'"),
    (dict(token_reduction="fold", pruning_rate=0.8, pruning_window=4),
     "pruning_window 4 is read by token_reduction local, not by 'fold'"),
])
def test_bad_settings_are_refused_in_one_line_naming_the_flag(hubert_tiny, kwargs, words):
    with pytest.raises(InputError) as error:
        load_pruned_hubert(hubert_tiny, **kwargs)
    message = str(error.value)
    assert words in message and "\n" not in message


@pytest.mark.parametrize("value", ["1.5", "-2", "nan", "high"])
def test_the_threshold_flag_is_checked_by_fairseqs_parser(value, capsys):
    import os

    from fairseq import options

    from .conftest import REPO

    parser = options.get_training_parser()
    with pytest.raises(SystemExit) as exit_info:
        options.parse_args_and_arch(parser, [
            "data", "--user-dir", os.path.join(REPO, "npy_tome_layer"),
            "--task", "speech_and_text_translation", "--arch", "hubert_transformer_pruning_layer",
            "--token-reduction", "adjacent", "--pruning-merge-threshold", value])
    assert exit_info.value.code == 2
    assert (f"error: argument --pruning-merge-threshold: must be a cosine similarity in [-1, 1], "
            f"got '{value}'") in capsys.readouterr().err


def test_the_arch_leaves_the_rate_at_one_for_a_merge_threshold():
    from argparse import Namespace

    from npy_tome_layer.st.model import hubert_arguments, hubert_transformer_pruning_layer

    args = Namespace(token_reduction="adjacent", pruning_merge_threshold=0.6)
    hubert_transformer_pruning_layer(args)
    assert args.pruning_rate == 1.0
    assert hubert_arguments(args)["pruning_merge_threshold"] == 0.6
    args = Namespace(token_reduction="adjacent")
    hubert_transformer_pruning_layer(args)
    assert args.pruning_rate == 0.9 and args.pruning_merge_threshold is None


def test_the_visualiser_shades_the_runs(hubert_tiny, tmp_path):
    from npy_tome_layer.tools.visualize_pruning import draw, encode, run_shading, survival

    audio = (0.1 * torch.randn(24000, generator=torch.Generator().manual_seed(0))).numpy()
    model = load_pruned_hubert(hubert_tiny, token_reduction="adjacent", pruning_rate=0.6,
                               pruning_init_layer=1)
    encoded = encode(model, audio)
    grid, shading = survival(model, audio, encoded), run_shading(encoded[1], encoded[2])
    assert grid.shape == shading.shape == (2, encoded[2])
    # every frame of the last layer is kept or inside a run; some runs are longer than one
    assert ((grid[-1] > 0) | (shading[-1] > 0)).all() and (shading[-1] > 0).any()
    out = tmp_path / "runs.png"
    draw(audio, grid, 1, "adjacent", str(out), shading)
    assert out.read_bytes()[:4] == b"\x89PNG"
    prune = load_pruned_hubert(hubert_tiny, pruning_rate=0.6, pruning_init_layer=1)
    assert not run_shading(encode(prune, audio)[1], encoded[2]).any()


# --- the sweep over reductions --------------------------------------------------------

def test_sweep_overrides_of_another_reduction_clear_the_trained_ones_options(hubert_tiny):
    from npy_tome_layer.tools.sweep import pruning_overrides

    threshold = dict(token_reduction="adjacent", pruning_merge_threshold=0.3,
                     pruning_min_keep_rate=0.2)
    local = dict(token_reduction="local", pruning_rate=0.9, pruning_window=5)
    def reduction_of(settings):
        return load_pruned_hubert(hubert_tiny, **settings).encoder.length_reduction

    for trained, reduction, expected in [(threshold, None, "adjacent"),
                                         (threshold, "fold", "fold"),
                                         (local, "adjacent", "adjacent"),
                                         (local, "local", "local")]:
        model = load_pruned_hubert(hubert_tiny, **{**trained, **pruning_overrides(
            0.8, 1, reduction_of(trained), None, reduction)})
        assert model.encoder.final_setting == (expected, 0.8, 1)
    model = load_pruned_hubert(hubert_tiny, **{**local, **pruning_overrides(
        0.8, 0, reduction_of(local), None, "local")})
    assert model.encoder.length_reduction.window == 5  # the trained reduction keeps its own


def test_sweep_refuses_reductions_that_do_not_follow_the_rate():
    from npy_tome_layer.tools.sweep import check_rate_reductions

    check_rate_reductions(["prune", "uniform", "local", "merge", "adjacent", "fold"])
    for name, words in (("conv", "which conv does not follow"),
                        ("coverage", "sweep it with --coverages")):
        with pytest.raises(InputError, match=words):
            check_rate_reductions(["prune", name])


def test_sweep_table_has_a_row_per_record_and_columns_in_one_place():
    from npy_tome_layer.tools.sweep import TABLE_COLUMNS, markdown, pareto_front

    records = [dict(reduction=name, rate=rate, coverage=None, init_layer=0, bleu=bleu,
                    frames_kept=kept, deltalm_frames_per_subword=2.5 * kept,
                    encoder_seconds=1.0 / speedup, speedup=speedup,
                    base_speedup=None if name == "prune" else 1.5, distinct=0.95,
                    no_audio_bleu=9.94, listens=bleu > 20.0, constant_bleu=6.46)
               for name, rate, bleu, kept, speedup in [("prune", 1.0, 30.0, 1.0, 1.0),
                                                       ("prune", 0.8, 20.0, 0.5, 1.2),
                                                       ("fold", 0.8, 25.0, 0.5, 1.2)]]
    table = markdown(records, "ckpt.pt", "dev", "keep rate 0.8 from layer 0")
    lines = table.splitlines()
    assert lines[2] == "| " + " | ".join(h for h, _ in TABLE_COLUMNS) + " |"
    assert lines[4:] == [
        "| rate 1 | prune | 0 | 30.00 | 95 % | 9.94 | yes | 100.0 % | 2.50 | 1.000 | 1.00x | n/a |",
        "| rate 0.8 | prune | 0 | 20.00 | 95 % | 9.94 | NO | 50.0 % | 1.25 | 0.833 | 1.20x | n/a |",
        "| rate 0.8 | fold | 0 | 25.00 | 95 % | 9.94 | yes | 50.0 % | 1.25 | 0.833 | 1.20x | "
        "1.50x |"]
    assert "most frequent target for every utterance scores 6.46" in lines[0]
    extra = TABLE_COLUMNS + (("distinct", lambda r: "-"),)
    assert markdown(records, "ckpt.pt", "dev", "keep rate 0.8 from layer 0", extra).splitlines()[4] \
        .endswith("| n/a | - |")
    assert pareto_front([(1.0, 30.0), (1.2, 20.0), (1.2, 25.0), (1.1, 10.0), (1.5, 5.0)]) == \
        [(1.0, 30.0), (1.2, 25.0), (1.5, 5.0)]
