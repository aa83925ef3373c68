"""Benchmark and visualisation: FLOP counts follow the formula, the tiny
benchmark writes its table and plots, the pruning picture is drawn."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from npy_tome_layer.evaluation.reference import reference_model, setting_model
from npy_tome_layer.reduction import REDUCTIONS
from npy_tome_layer.reduction.cost import encoder_flops_formula
from npy_tome_layer.tools.benchmark import PeakMemory, count_flops, measure_group

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny():
    return reference_model("tiny", torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("mode,rate,init", [("prune", 0.9, 0), ("prune", 0.8, 1),
                                            ("prune", 0.5, 1), ("merge", 0.9, 0),
                                            ("conv", 1.0, 1)])
@pytest.mark.parametrize("num_samples", [16000, 3 * 16000 + 123])
def test_flop_ratio_matches_the_analytic_ideal(tiny, mode, rate, init, num_samples):
    cfg, reference = tiny
    audio = torch.randn(1, num_samples)
    dense = count_flops(setting_model(reference, cfg, "prune", 1.0, 0), audio)
    reduced = count_flops(setting_model(reference, cfg, mode, rate, init), audio)
    f_dense = encoder_flops_formula(cfg, num_samples)["total"]
    f_reduced = encoder_flops_formula(cfg, num_samples, 1, rate, init, mode)["total"]
    assert dense == f_dense  # every matmul/conv accounted for, incl. CPU fused attention
    # merging adds its similarity matmul, which the formula leaves out
    assert (dense / reduced) == pytest.approx(f_dense / f_reduced, rel=0.01)
    assert reduced < dense


def test_flops_scale_with_the_batch_and_follow_the_keep_counts(tiny):
    cfg, reference = tiny
    model = setting_model(reference, cfg, "prune", 0.7, 0)
    audio = torch.randn(3, 32000)
    assert count_flops(model, audio) == 3 * count_flops(model, audio[:1])
    out = encoder_flops_formula(cfg, 32000, 1, 0.7, 0)
    n = 99  # frames of 2 s
    for _ in range(cfg["encoder_layers"]):
        n = math.ceil(0.7 * n)
    assert out["frames_out"] == n


def test_timed_passes_interleave_the_settings(tiny, monkeypatch):
    from npy_tome_layer.tools.benchmark import measuring, settings

    cfg, reference = tiny
    seen = []
    real = settings.timed_pass

    def spy(m, audio):
        seen.append((m.encoder.token_reduction, m.encoder.keep_rate))
        return real(m, audio)

    # timed passes (settings) and the profiled pass of the reduction share (measuring)
    monkeypatch.setattr(settings, "timed_pass", spy)
    monkeypatch.setattr(measuring, "timed_pass", spy)
    settings = [{"mode": "prune", "rate": 1.0, "init_layer": 0},
                {"mode": "merge", "rate": 0.8, "init_layer": 1}]
    models = [setting_model(reference, cfg, **s) for s in settings]
    out = measure_group(models, 0.1 * torch.randn(1, 8000), warmup=1, repeats=3)
    a, b = ("prune", 1.0), ("merge", 0.8)
    assert seen == [a, b] * (1 + 3 + 1)  # warm-up, 3 timed rounds, profiled pass
    # every setting runs on the reference's weights
    assert all(m.encoder.layers[0].fc1.weight is not None and
               m.encoder.layers[0].fc1.weight.data_ptr() ==
               reference.encoder.layers[0].fc1.weight.data_ptr() for m in models)
    assert out[0]["overhead_share"] == 0.0 < out[1]["overhead_share"]
    assert out[0]["frames_out"] > out[1]["frames_out"]
    assert all(lo <= r["latency_s"] <= hi for r in out for lo, hi in [r["latency_range_s"]])


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory(torch.device("cpu")) as peak:
        x = torch.ones(64 * 2 ** 20 // 4)  # 64 MiB
        x += 1
    del x
    assert peak.bytes is not None and peak.bytes >= 60 * 2 ** 20


def test_tiny_benchmark_writes_table_json_and_plots(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "npy_tome_layer.tools.benchmark", "--out", str(out), "--size", "tiny",
         "--durations", "1", "--batches", "1", "2", "--rates", "1.0", "0.9", "--init-layers", "0",
         "1", "--repeats", "1", "--alternatives-duration", "1", "--alternatives-batch", "2"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (out / "benchmark.md").read_text()
    rows = json.loads((out / "results.json").read_text())["rows"]
    # grid: per batch 1 dense + 2 inits x 1 rate; alternatives: its own dense, then
    # 2 inits x (every registered reduction at the half rate, the rate-driven ones at 0.9)
    fixed_count = [cls for cls in REDUCTIONS.values() if not cls.data_dependent_counts]
    per_init = len(fixed_count) + sum(cls.uses_rate for cls in fixed_count)
    # prune merge conv uniform random local adjacent fold; all but conv at 0.9
    assert per_init == 15
    assert len(rows) == 2 * 3 + 1 + 2 * per_init
    assert [r["group"] for r in rows] == ["grid"] * 6 + ["alternatives"] * (1 + 2 * per_init)
    assert sum(1 for line in table.splitlines() if line.startswith("| prune |")) == 2 * 3 + 1 + 4
    for r in rows:  # speedups are against the dense row measured in the same group
        if r["mode"] == "prune" and r["rate"] == 1.0:
            assert r["measured_speedup"] == 1.0
    assert "| merge |" in table and "| conv |" in table and "score+top-k+gather" in table
    for r in rows:
        assert r["flops"] > 0 and r["latency_s"] > 0 and r["frames_out"] <= r["frames_in"]
        if r["mode"] == "prune" and r["rate"] == 0.9:
            assert r["ideal_speedup"] > 1.0
    for name in ("speedup_1s_b1.png", "speedup_1s_b2.png", "alternatives.png"):
        assert (out / name).read_bytes()[:8] == PNG, name


def test_visualisation_of_a_hubert_file(hubert_tiny, tmp_path):
    from npy_tome_layer.tools.visualize_pruning import load_for_visualisation, survival

    wav = tmp_path / "a.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(24000)).astype(np.float32), 16000)
    model = load_for_visualisation(hubert_tiny, 0.8, 1)
    grid = survival(model, sf.read(wav, dtype="float32")[0])
    n = int(model.frame_lengths(torch.tensor(24000)))
    assert grid.shape == (2, n)  # one row per pruning layer (1 and 2 of 3)
    first = math.ceil(0.8 * n)
    assert grid.sum(axis=1).tolist() == [first, math.ceil(0.8 * first)]
    assert ((grid[1] <= grid[0])).all()  # a frame dropped once never comes back
    out = tmp_path / "p.png"
    proc = subprocess.run([sys.executable, "-m", "npy_tome_layer.tools.visualize_pruning", "--wav", str(wav),
                           "--checkpoint", hubert_tiny, "--rate", "0.8", "--init-layer", "1",
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_bytes()[:8] == PNG and "frames leave" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "npy_tome_layer.tools.visualize_pruning", "--wav",
                           str(tmp_path / "none.wav"), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode != 0 and "none.wav does not exist" in proc.stderr \
        and "Traceback" not in proc.stderr


def test_training_step_times_fairseq_dense_against_pruned(tiny):
    from npy_tome_layer.tools.benchmark import run_training_step, train_markdown

    cfg, reference = tiny
    rows = run_training_step(reference, cfg, [1.0, 0.8], duration=1, batch=2,
                             device=torch.device("cpu"), dtype=torch.float32, warmup=1, repeats=2)
    assert [(r["mode"], r["rate"]) for r in rows] == [("fairseq dense", 1.0), ("prune", 1.0),
                                                     ("prune", 0.8)]
    assert rows[0]["measured_speedup"] == 1.0 and rows[0]["ideal_speedup"] == 1.0
    assert rows[2]["ideal_speedup"] > 1.0 and all(r["latency_s"] > 0 for r in rows)
    # the step left no gradients behind, on the shared weights either
    assert all(p.grad is None for p in reference.parameters())
    assert "| fairseq dense | 1 s | 2 | 1 |" in train_markdown(rows)


@pytest.mark.parametrize("training", [False, True])
def test_attention_paths_time_fairseq_dense_explicit_and_fused(tiny, training, monkeypatch,
                                                               tmp_path):
    import npy_tome_layer.tools.benchmark as benchmark
    from npy_tome_layer.encoder.attention import _SCORING_PATH
    from npy_tome_layer.tools.benchmark import training as training_module

    seen = []
    real = training_module._timed_step if training else training_module.timed_pass

    def spy(model, audio):
        seen.append(_SCORING_PATH.get())  # the path each timed pass ran on
        return real(model, audio)
    monkeypatch.setattr(training_module, "_timed_step" if training else "timed_pass", spy)
    cfg, reference = tiny
    rows = benchmark.run_attention_paths(reference, cfg, [0.9, 0.8], duration=1, batch=2,
                                         device=torch.device("cpu"), dtype=torch.float32,
                                         warmup=0, repeats=2, training=training)
    assert [(r["mode"], r["path"], r["rate"]) for r in rows] == [
        ("fairseq dense", "fairseq", 1.0), ("prune", "explicit", 0.9), ("prune", "fused", 0.9),
        ("prune", "explicit", 0.8), ("prune", "fused", 0.8)]
    # interleaved: repeat 1 of every setting, then repeat 2
    assert seen[:10] == ["auto", "explicit", "fused", "explicit", "fused"] * 2
    assert rows[0]["measured_speedup"] == 1.0 and rows[4]["ideal_speedup"] > 1.0
    assert all(0 <= r["overhead_share"] < 1 and r["latency_s"] > 0 for r in rows)
    assert rows[0]["overhead_share"] == 0  # fairseq's model has no scoring
    assert all(p.grad is None for p in reference.parameters())
    assert "| prune | fused | 1 s | 2 | 0.9 |" in benchmark.paths_markdown(rows)
    plot = benchmark.plot_attention_paths(rows, str(tmp_path / "paths.png"))
    with open(plot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_coverage_in_the_grid_reports_measured_frames_per_layer(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "npy_tome_layer.tools.benchmark", "--out", str(out), "--size", "tiny",
         "--durations", "1", "--batches", "2", "--rates", "1.0", "0.9", "--init-layers", "0",
         "--coverages", "0.8", "--repeats", "1", "--no-alternatives"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())["rows"]
    coverage = next(r for r in rows if r["mode"] == "coverage")
    prune = next(r for r in rows if r["mode"] == "prune" and r["rate"] == 0.9)
    assert coverage["flops_formula"] is None and coverage["flops"] > 0
    assert len(coverage["frames_per_layer"]) == 3  # tiny: 3 layers, acting after each
    assert coverage["frames_per_layer"] == sorted(coverage["frames_per_layer"], reverse=True)
    assert prune["frames_per_layer"][-1] == prune["frames_out"]
    assert "| coverage 0.8 |" in (out / "benchmark.md").read_text()


# --- the scaling grid and the profile (issue 31) ----------------------------------

def _benchmark(*flags, timeout=600):
    return subprocess.run([sys.executable, "-m", "npy_tome_layer.tools.benchmark", *flags],
                          capture_output=True, text=True, timeout=timeout)


def test_grid_writes_a_row_per_point_and_setting_and_the_plot(tmp_path):
    out = tmp_path / "grid"
    proc = _benchmark("--grid", "--out", str(out), "--widths", "32", "--batches", "1", "2",
                      "--seconds", "0.5", "--rates", "0.9", "--reductions", "prune", "uniform",
                      "--repeats", "2", "--budget", "60")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "estimated" in proc.stdout and "took" in proc.stdout
    result = json.loads((out / "grid.json").read_text())
    rows = result["rows"]
    # per point (1 width x 2 batches x 1 length): fairseq dense + 2 reductions x 1 rate
    assert sorted((r["batch"], r["mode"]) for r in rows) == sorted(
        (b, m) for b in (1, 2) for m in ("fairseq dense", "prune", "uniform"))
    for r in rows:
        # measured times on a shared CPU: their ratios are the benchmark's to report, not
        # a test's to bound (a loaded machine gave a share of the ideal of 9)
        assert r["speedup"] > 0 and r["share_of_ideal"] > 0, r
        assert r["share_of_ideal"] == pytest.approx(r["speedup"] / r["ideal_speedup"], rel=1e-2)
        assert r["latency_min_s"] <= r["latency_s"] <= r["latency_max_s"]
        if r["mode"] == "fairseq dense":
            assert r["speedup"] == 1.0 and r["ideal_speedup"] == 1.0
        else:
            assert r["ideal_speedup"] > 1.0 and r["layers_ideal_speedup"] > 1.0
    table = (out / "grid.md").read_text()
    assert sum(line.startswith("| 32 | 0.5 s |") for line in table.splitlines()) == len(rows)
    assert "spread" in table and result["actual_s"] > 0 and result["estimate_s"] > 0
    assert (out / "grid.png").read_bytes()[:8] == PNG


def test_grid_plans_more_rounds_for_cheap_points():
    from npy_tome_layer.tools.benchmark.scaling import plan_passes

    assert plan_passes(0.1, 10.0, 5) == (1, 5)  # cheap: a warm-up and every repeat
    assert plan_passes(4.0, 10.0, 5) == (0, 2)  # two rounds fit, a third would not
    assert plan_passes(60.0, 10.0, 5) == (0, 1)  # over its share: one round still


def test_grid_reductions_are_the_rate_driven_registered_ones():
    from npy_tome_layer.tools.benchmark.scaling import rate_driven_reductions, size_of_width

    names = rate_driven_reductions()
    assert {"prune", "uniform", "local", "merge", "adjacent", "fold"} <= set(names)
    assert "conv" not in names and "coverage" not in names
    assert [size_of_width(w) for w in (64, 384, 768)] == ["demo", "small", "base"]


def test_profile_prints_the_time_split():
    proc = _benchmark("--profile", "--widths", "32", "--seconds", "0.5", "--batches", "2",
                      "--reductions", "prune", "merge")
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| model |"))
    for category in ("attention", "scoring", "selection/gather", "mask", "other"):
        assert f"| {category} |" in header
    rows = [line for line in proc.stdout.splitlines()
            if line.startswith(("| fairseq dense |", "| prune |", "| merge |"))]
    assert len(rows) == 3
    prune = rows[1].split("|")[4:9]
    assert float(prune[1].strip(" %")) > 0  # scoring, under EVIDENCE_LABEL
    dense = rows[0].split("|")[4:9]
    assert float(dense[1].strip(" %")) == 0 and float(dense[2].strip(" %")) == 0


@pytest.mark.parametrize("flags,named", [
    (["--grid", "--widths", "48"], "--widths"),
    (["--grid", "--reductions", "coverage"], "--reductions"),
    (["--grid", "--rates", "1.0"], "--rates"),
    (["--grid", "--batches", "0"], "--batches"),
    (["--grid", "--seconds", "-1"], "--seconds"),
    (["--grid", "--profile"], "--profile"),
    (["--durations", "1"], "--out"),
])
def test_bad_flags_are_one_argparse_line_naming_the_flag(flags, named):
    proc = _benchmark(*flags, timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "error:" in last and named in last, last
