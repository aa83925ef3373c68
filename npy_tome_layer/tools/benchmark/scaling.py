"""The scaling grid: model width x batch x audio length, every rate-driven
registered reduction at each keep rate from layer 0, against fairseq's own
dense HubertModel on the same (random) weights, inference.

Per point: the measured speedup, the FLOP ideal (``reduction/cost.py``) and
the share of it that is reached, with the spread of the repeated passes.
The conv front end is the same modules in every setting and no reduction
acts before it, so each round times it once (fairseq's, on the shared
weights) and adds it to every model's transformer time: at widths 384 and
768 it is 40-70 % of the dense FLOPs, and timing it once per model would
double the grid's time for no information. The transformer-only speedup is
kept beside the whole one.

Repeats are planned per point from a time budget: a point's round (front end
+ every model once) is estimated from its FLOPs at the speed of a matmul
measured at the start, corrected by the ratio of measured to estimated time
of the points already run; cheap points get up to ``--repeats`` rounds and a
warm-up round, the dearest a single round.
"""
import json
import os
import statistics
import time
from typing import Dict, List, Optional

import torch

from ...encoder.config import HUBERT_SIZES, hubert_model_config
from ...evaluation.plotting import pyplot, save_figure
from ...io.atomic import atomic_destinations
from ...evaluation.reference import reference_model, setting_model
from ...evaluation.timing import sync
from ...io.audio import SAMPLE_RATE
from ...reduction import REDUCTIONS, default_reduction, follows_rate
from ...reduction.cost import encoder_flops_formula
from .measuring import PeakMemory, _mib, autocast, fairseq_dense, random_audio

# what a model of each width costs per layer beyond its FLOPs (launches,
# small ops, the reductions' bookkeeping): a rough constant for the estimate only
_LAYER_OVERHEAD_S = {"cpu": 1e-3, "cuda": 2e-4}


def size_of_width(width: int) -> str:
    """The HUBERT_SIZES entry of that encoder width (64 demo, 384 small, 768 base)."""
    for size, cfg in HUBERT_SIZES.items():
        if cfg["encoder_embed_dim"] == width:
            return size
    raise ValueError(f"no model size of width {width} (known: "
                     f"{sorted(c['encoder_embed_dim'] for c in HUBERT_SIZES.values())})")


def rate_driven_reductions() -> List[str]:
    """Registered reductions whose keep rate sets their frame counts."""
    return [mode for mode in REDUCTIONS if follows_rate(default_reduction(mode))]


# --- timing one point -----------------------------------------------------------

def front_end(model, audio):
    """fairseq's feature path of ``features_only`` without masking: conv front
    end, layer norm, projection (dropout is off in eval mode)."""
    features = model.feature_extractor(audio).transpose(1, 2)
    features = model.layer_norm(features)
    if model.post_extract_proj is not None:
        features = model.post_extract_proj(features)
    return features


def _timed(run, device):
    """(seconds, result) of ``run()``, synchronised on CUDA."""
    sync(device)
    start = time.perf_counter()
    out = run()
    sync(device)
    return time.perf_counter() - start, out


def time_point(dense, models: List, audio, precision: str, warmup: int,
               rounds: int) -> Dict:
    """Round-robin passes on ``audio``: each round times the front end once,
    then fairseq's dense encoder and every model's encoder on its features.
    Returns per-round seconds {"front": [...], "encoders": [[dense], [m1], ...]}
    and, on CUDA, each encoder's peak memory above the features."""
    device = audio.device
    everything = [dense] + list(models)
    front_s, encoder_s = [], [[] for _ in everything]
    peaks: List[Optional[int]] = [None] * len(everything)
    with torch.inference_mode(), autocast(device, precision):
        for r in range(warmup + rounds):
            seconds, features = _timed(lambda: front_end(dense, audio), device)
            if r >= warmup:
                front_s.append(seconds)
            for i, model in enumerate(everything):
                # peak memory from the last round's pass itself (CUDA keeps the count for free)
                measure_peak = device.type == "cuda" and r == warmup + rounds - 1
                peak = PeakMemory(device) if measure_peak else None
                if peak is not None:
                    peak.__enter__()
                seconds, _ = _timed(lambda: model.encoder(features, padding_mask=None), device)
                if peak is not None:
                    peak.__exit__(None, None, None)
                    peaks[i] = peak.bytes
                if r >= warmup:
                    encoder_s[i].append(seconds)
            del features
    return {"front": front_s, "encoders": encoder_s, "peaks": peaks}


def point_rows(cfg, settings: List[Dict], timing: Dict, width: int, seconds: float,
               batch: int) -> List[Dict]:
    """One row per setting (dense first) from ``time_point``'s passes."""
    num_samples = int(seconds * SAMPLE_RATE)
    dense_flops = encoder_flops_formula(cfg, num_samples, batch)
    whole = [[f + e for f, e in zip(timing["front"], runs)] for runs in timing["encoders"]]
    dense_s, dense_layers_s = statistics.median(whole[0]), statistics.median(timing["encoders"][0])
    rows = []
    for setting, runs, layer_runs, peak in zip(settings, whole, timing["encoders"],
                                               timing["peaks"]):
        flops = encoder_flops_formula(cfg, num_samples, batch, setting["rate"], 0,
                                      setting["mode"] if setting["rate"] < 1.0 else "prune")
        latency = statistics.median(runs)
        row = {**setting, "width": width, "seconds": seconds, "batch": batch,
               "latency_s": latency, "latency_min_s": min(runs), "latency_max_s": max(runs),
               "passes": len(runs), "front_end_s": statistics.median(timing["front"]),
               "peak_bytes": peak, "frames_out": flops["frames_out"],
               "speedup": dense_s / latency,
               "ideal_speedup": dense_flops["total"] / flops["total"],
               "layers_speedup": dense_layers_s / statistics.median(layer_runs),
               "layers_ideal_speedup": dense_flops["layers"] / flops["layers"]}
        row["share_of_ideal"] = row["speedup"] / row["ideal_speedup"]
        # run-to-run spread: (max - min) / median of this setting's passes
        row["spread"] = (max(runs) - min(runs)) / latency if len(runs) > 1 else None
        rows.append(row)
    return rows


# --- planning ----------------------------------------------------------------------

def matmul_flops_per_s(device, precision: str) -> float:
    """FLOP/s of a layer-sized matmul here: the scale of the time estimate."""
    a = torch.randn(2048, 768, device=device)
    b = torch.randn(768, 3072, device=device)
    with torch.inference_mode(), autocast(device, precision):
        a @ b  # first call: kernels, thread pool
        seconds, _ = _timed(lambda: [a @ b for _ in range(5)], torch.device(device))
    return 5 * 2 * 2048 * 768 * 3072 / seconds


def round_flops(cfg, seconds: float, batch: int, settings: List[Dict]) -> int:
    """FLOPs of one round: the front end once, every setting's layers."""
    num_samples = int(seconds * SAMPLE_RATE)
    dense = encoder_flops_formula(cfg, num_samples, batch)
    return dense["front_end"] + sum(
        encoder_flops_formula(cfg, num_samples, batch, s["rate"], 0,
                              s["mode"] if s["rate"] < 1.0 else "prune")["layers"]
        for s in settings)


def estimate_round_s(cfg, seconds, batch, settings, flops_per_s: float, device) -> float:
    overhead = _LAYER_OVERHEAD_S["cuda" if torch.device(device).type == "cuda" else "cpu"]
    return (round_flops(cfg, seconds, batch, settings) / flops_per_s
            + overhead * cfg["encoder_layers"] * len(settings))


def plan_passes(estimate_s: float, share_s: float, max_rounds: int):
    """(warm-up rounds, timed rounds) for a point whose round should take
    ``estimate_s`` within ``share_s`` of the budget: as many rounds as fit,
    1 to ``max_rounds``; a warm-up only where it fits beside them. The
    grid runs each width's points from the cheapest up, so a point without
    a warm-up runs on code paths and thread pools that smaller inputs of
    the same models already warmed (and glibc hands large buffers back to
    the OS after every pass, so a warm-up would not keep them mapped)."""
    rounds = max(1, min(max_rounds, int(share_s // max(estimate_s, 1e-9))))
    warmup = 1 if (rounds + 1) * estimate_s <= share_s else 0
    return warmup, rounds


# --- the grid --------------------------------------------------------------------

def run_scaling(widths, batches, seconds_list, rates, reductions, device, precision: str,
                max_rounds: int, budget_s: float) -> Dict:
    """Every point of the grid; returns {"rows", "estimate_s", "actual_s", "flops_per_s"}.
    The actual time includes building the models (once per width; random
    initialisation of every model, about a minute for base's on 2 cores),
    which the estimate leaves out but the budget's plan counts as spent."""
    device = torch.device(device)
    settings = [{"mode": "fairseq dense", "rate": 1.0}] + [
        {"mode": mode, "rate": rate} for mode in reductions for rate in rates]
    flops_per_s = matmul_flops_per_s(device, precision)
    points = []
    for width in widths:
        cfg = hubert_model_config(size_of_width(width))
        for seconds in seconds_list:
            for batch in batches:
                points.append((width, seconds, batch, cfg, estimate_round_s(
                    cfg, seconds, batch, settings, flops_per_s, device)))
    # per width, cheapest first: the dear points run on warmed models
    points.sort(key=lambda p: (widths.index(p[0]), p[4]))
    planned = sum(p[4] for p in points)
    print(f"[benchmark grid] {len(points)} points x {len(settings)} models, matmul speed "
          f"{flops_per_s / 1e9:.0f} GFLOP/s; one round of every point: about {planned:.0f} s; "
          f"budget {budget_s:.0f} s", flush=True)
    rows, start, correction = [], time.perf_counter(), {}
    estimate_total, current = 0.0, None
    for k, (width, seconds, batch, cfg, estimate) in enumerate(points):
        first = current != width
        if first:
            current, built = width, time.perf_counter()
            reference = reference_model(size_of_width(width), device, torch.float32)[1]
            dense = fairseq_dense(reference, cfg)
            models = [setting_model(reference, cfg, s["mode"], s["rate"], 0)
                      for s in settings[1:]]
            print(f"  width {width}: {len(settings)} models built in "
                  f"{time.perf_counter() - built:.0f} s", flush=True)
        # what the points so far took against their estimate corrects the rest
        # (those of the same width: the overheads the FLOPs miss weigh most at small widths)
        seen = correction.get(width) or [r for rs in correction.values() for r in rs]
        factor = statistics.median(seen) if seen else 1.0
        left = budget_s - (time.perf_counter() - start)
        share = max(left, 0.0) / (len(points) - k)
        warmup, rounds = plan_passes(estimate * factor, share, max_rounds)
        # a width's first (cheapest) point always warms up: the first pass of a new
        # model pays for kernel and thread-pool set-up (several times a pass here)
        warmup = max(warmup, int(first))
        expected = (warmup + rounds) * estimate * factor
        estimate_total += expected
        audio = random_audio(seconds, batch, device)
        began = time.perf_counter()
        timing = time_point(dense, models, audio, precision, warmup, rounds)
        took = time.perf_counter() - began
        correction.setdefault(width, []).append(took / ((warmup + rounds) * estimate))
        point = point_rows(cfg, settings, timing, width, seconds, batch)
        rows.extend(point)
        print(f"  width {width:4d} {seconds:4g} s x {batch:2d}: {warmup} warm-up + {rounds} "
              f"rounds, estimated {expected:6.1f} s, took {took:6.1f} s; dense "
              f"{point[0]['latency_s'] * 1000:.0f} ms, best "
              f"{max(r['speedup'] for r in point):.2f}x", flush=True)
        del audio
    actual = time.perf_counter() - start
    print(f"[benchmark grid] estimated {estimate_total:.0f} s, took {actual:.0f} s", flush=True)
    return {"rows": rows, "estimate_s": estimate_total, "actual_s": actual,
            "flops_per_s": flops_per_s, "settings": settings}


# --- reporting ------------------------------------------------------------------

def dense_spread(rows: List[Dict]) -> Optional[float]:
    """Median over points of fairseq dense's own run-to-run spread."""
    spreads = [r["spread"] for r in rows if r["mode"] == "fairseq dense"
               and r["spread"] is not None]
    return statistics.median(spreads) if spreads else None


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.0f} %"


def scaling_markdown(rows: List[Dict]) -> str:
    out = ["| width | audio | batch | reduction | keep rate | frames out | ms, median "
           "(min-max) | passes | spread | peak MiB | speedup | FLOP ideal | share of ideal "
           "| layers only: speedup / ideal |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(f"| {r['width']} | {r['seconds']:g} s | {r['batch']} | {r['mode']} "
                   f"| {r['rate']:g} | {r['frames_out']} | {r['latency_s'] * 1000:.0f} "
                   f"({r['latency_min_s'] * 1000:.0f}-{r['latency_max_s'] * 1000:.0f}) "
                   f"| {r['passes']} | {_pct(r['spread'])} | {_mib(r['peak_bytes'])} "
                   f"| {r['speedup']:.2f}x | {r['ideal_speedup']:.2f}x "
                   f"| {r['share_of_ideal']:.2f} "
                   f"| {r['layers_speedup']:.2f}x / {r['layers_ideal_speedup']:.2f}x |")
    return "\n".join(out)


def scaling_plot(rows: List[Dict], path: str, fmt: str = "png") -> str:
    """Speedup over fairseq dense against the batch: a panel per width and
    audio length, a line per reduction and rate, the FLOP ideal dotted."""
    plt = pyplot()
    widths = sorted({r["width"] for r in rows})
    lengths = sorted({r["seconds"] for r in rows})
    fig, axes = plt.subplots(len(lengths), len(widths), squeeze=False,
                             figsize=(4 * len(widths), 3.2 * len(lengths)), sharey=True)
    lines = sorted({(r["mode"], r["rate"]) for r in rows if r["mode"] != "fairseq dense"},
                   key=lambda m: (m[0], -m[1]))
    colours = {mode: f"C{i}" for i, mode in enumerate(dict.fromkeys(m for m, _ in lines))}
    for i, seconds in enumerate(lengths):
        for j, width in enumerate(widths):
            ax = axes[i][j]
            for mode, rate in lines:
                pts = sorted((r for r in rows if (r["mode"], r["rate"], r["width"],
                                                  r["seconds"]) == (mode, rate, width, seconds)),
                             key=lambda r: r["batch"])
                if not pts:
                    continue
                style = "-" if rate == max(rt for m, rt in lines if m == mode) else "--"
                ax.plot([r["batch"] for r in pts], [r["speedup"] for r in pts], "o" + style,
                        color=colours[mode], ms=3, label=f"{mode} {rate:g}")
            # the FLOP ideal of the first reduction (the others' differ by their own step only)
            for rate in sorted({rt for m, rt in lines if m == lines[0][0]}):
                pts = sorted((r["batch"], r["ideal_speedup"]) for r in rows
                             if (r["mode"], r["rate"], r["width"], r["seconds"])
                             == (lines[0][0], rate, width, seconds))
                ax.plot([b for b, _ in pts], [s for _, s in pts], ":", color="k", lw=1,
                        label=f"FLOP ideal ({lines[0][0]})" if rate == lines[0][1] else None)
            ax.axhline(1.0, color="grey", lw=0.8)
            ax.set_xscale("log", base=2)
            batches = sorted({r["batch"] for r in rows})
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.minorticks_off()
            ax.set_title(f"width {width}, {seconds:g} s audio", fontsize=9)
            ax.set_xlabel("batch")
            if j == 0:
                ax.set_ylabel("speedup over fairseq dense")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    save_figure(fig, path, fmt, dpi=100)
    return path


def write_scaling(result: Dict, out: str, machine: str, precision: str, command: str) -> List[str]:
    """OUT/grid.md, grid.json, grid.png."""
    os.makedirs(out, exist_ok=True)
    rows = result["rows"]
    spread = dense_spread(rows)
    md = [f"# Benchmark grid: speedup over fairseq's dense HuBERT ({precision}, random weights)",
          "", f"Machine: {machine}. Command: `{command}`", "",
          f"Estimated {result['estimate_s']:.0f} s, took {result['actual_s']:.0f} s. "
          "Inference, reductions from layer 0; per point the front end is timed once per "
          "round and added to every model's transformer time; rounds interleave the models. "
          f"Run-to-run spread of fairseq dense (median over points with 2+ passes, "
          f"(max - min) / median): {_pct(spread)}.", "", scaling_markdown(rows)]
    paths = [os.path.join(out, name) for name in ("grid.md", "grid.json", "grid.png")]
    with atomic_destinations(paths) as (md_tmp, json_tmp, png_tmp):
        with open(md_tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(md) + "\n")
        with open(json_tmp, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, "precision": precision, "command": command,
                       **{k: v for k, v in result.items() if k != "settings"}}, f, indent=1)
        scaling_plot(rows, png_tmp)
    return paths

