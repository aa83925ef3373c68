"""Benchmark the pruned HuBERT encoder against its FLOP ideal and the alternatives.

  python -m npy_tome_layer.tools.benchmark --out bench/            # full grid, official base size
  python -m npy_tome_layer.tools.benchmark --out bench/ --size tiny --durations 1 --batches 2 \\
      --rates 1.0 0.9 --init-layers 0 --repeats 1          # seconds; what CI runs

Random weights in the official configuration (no download). Per setting
(duration x batch x keep rate x init layer): median latency of --repeats
forward passes after --warmup, throughput (seconds of audio per second),
peak memory of one pass, FLOPs counted by torch.utils.flop_counter.FlopCounterMode,
the FLOP-ideal speedup (dense FLOPs / these FLOPs), the measured speedup, and
the share of time spent scoring, selecting (top-k) and gathering frames.
Alternatives at (about) the same number of frames leaving the encoder:
a stride-2 convolution after layer k, and ToMe-style token merging.
Optionally (--decode-checkpoints) end-to-end beam search dense vs pruned.

Writes OUT/results.json, OUT/benchmark.md (the tables) and OUT/*.png.
Peak memory: on CUDA torch.cuda.max_memory_allocated; on the CPU the growth of
the process's peak resident set (VmHWM, reset through /proc/self/clear_refs
after glibc's malloc_trim) during the pass — the CPU allocator keeps no count.
"""
import argparse
import ctypes
import json
import os
import platform
import statistics
import time
from typing import Dict, List, Optional

import torch
from torch.autograd import DeviceType
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from fairseq.models.hubert.hubert import HubertModel
from omegaconf import OmegaConf

from ..io.flags import keep_rate_flag, positive_number_flag, whole_number_flag
from ..encoder.config import HUBERT_SIZES, hubert_config
from ..encoder.attention import scoring_path
from ..encoder.pruned_hubert import PrunedHubertModel
from ..evaluation.reference import reference_model, setting_model, share_weights
from ..evaluation.timing import interleaved_times, sync, timed_pass
from ..reduction import PROFILE_LABELS, REDUCTIONS
from ..reduction.cost import encoder_flops_formula
from ..evaluation.plotting import pyplot, save_png
from ..io.audio import SAMPLE_RATE


def _cpu_flash_attention_flops(query, key, value, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(query, key, value)


# torch counts the CUDA attention kernels but not the CPU one that fairseq's
# fast path reaches through scaled_dot_product_attention: without this the
# dense model's attention would count as free and the ideal speedup would shrink
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
                  _cpu_flash_attention_flops}


def count_flops(model: PrunedHubertModel, audio: torch.Tensor) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False,
                                                 custom_mapping=_CPU_ATTENTION) as counter:
        model.extract_features(audio, padding_mask=None, mask=False)
    return int(counter.get_total_flops())


# --- measuring ----------------------------------------------------------------

class PeakMemory:
    """Peak memory of the block, in bytes above what was held before it."""

    def __init__(self, device: torch.device):
        self.device = device
        self.bytes = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            self.start = _reset_peak_rss()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self.start
        elif self.start is not None:
            self.bytes = max(0, _status_kib("VmHWM") * 1024 - self.start)
        return False


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> Optional[int]:
    """Return freed heap to the OS, reset VmHWM to the current RSS; the RSS in bytes."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmRSS") * 1024
    except OSError:
        return None  # not Linux/glibc: no CPU peak memory


def reduction_share(model, audio) -> float:
    """Share of one pass spent under the reductions' profiler labels (scoring
    inside attention, top-k / matching / conv, gathering), from a profiled
    pass of its own (profiling slows every op alike, roughly)."""
    return labelled_share(lambda: timed_pass(model, audio), audio.is_cuda)


def measure_group(models, audio, warmup: int, repeats: int) -> List[Dict]:
    """Latency, peak memory, reduction share and frames out of models (one
    per setting) on one input. The timed passes go round-robin over the
    settings (repeat 1 of every setting, then repeat 2, ...): on a shared
    machine the speed drifts by tens of percent over minutes, and
    interleaving makes that drift hit dense and pruned alike instead of
    whichever ran later."""
    with torch.inference_mode():
        times = interleaved_times(models, lambda model: timed_pass(model, audio), warmup,
                                  repeats)
        results = []
        for i, model in enumerate(models):
            # peak memory in a pass of its own: resetting the CPU peak returns
            # the heap to the OS, and the page faults that follow are not timed
            peak = PeakMemory(audio.device)
            with peak:
                out = model(audio, padding_mask=None, mask=False, features_only=True)
            mask = out["padding_mask"]
            frames_out = out["x"].size(1) if mask is None else int((~mask[0]).sum())
            # the batch's width after each acting layer (measured: a data-dependent
            # reduction's counts are not arithmetic)
            per_layer = [int(k.size(1)) for k in out["kept_indices"]]
            del out, mask
            results.append({"latency_s": statistics.median(times[i]),
                            "latency_range_s": (min(times[i]), max(times[i])),
                            "peak_bytes": peak.bytes,
                            "overhead_share": reduction_share(model, audio),
                            "frames_out": frames_out, "frames_per_layer": per_layer})
    return results


def run_group(reference, cfg, settings: List[Dict], duration: float, batch: int, device,
              dtype, warmup: int, repeats: int) -> List[Dict]:
    """One row per setting ({mode, rate, init_layer}) on duration x batch audio."""
    num_samples = int(duration * SAMPLE_RATE)
    g = torch.Generator().manual_seed(0)
    audio = (0.1 * torch.randn(batch, num_samples, generator=g)).to(device=device, dtype=dtype)
    frames_in = int(reference.frame_lengths(torch.tensor(num_samples)))
    models = [setting_model(reference, cfg, s["mode"], s["rate"], s["init_layer"],
                            **({"pruning_coverage": s["coverage"]} if s.get("coverage") else {}))
              for s in settings]
    rows = []
    for s, model, measured in zip(settings, models,
                                  measure_group(models, audio, warmup, repeats)):
        row = {**s, "duration_s": duration, "batch": batch, "frames_in": frames_in, **measured}
        # FLOPs scale exactly with the batch (equal lengths, no padding): count one row
        row["flops"] = count_flops(model, audio[:1]) * batch
        # a data-dependent reduction has no formula: its FLOPs are the counted ones
        row["flops_formula"] = None if model.encoder.length_reduction.data_dependent_counts \
            else encoder_flops_formula(cfg, num_samples, batch, s["rate"], s["init_layer"],
                                       s["mode"])["total"]
        row["throughput"] = batch * duration / row["latency_s"]
        rows.append(row)
        print(f"  {row['mode']:5s} rate {row['rate']:.3f} init {row['init_layer']:2d} "
              f"{duration:4g}s x{batch}: {row['latency_s'] * 1000:8.1f} ms "
              f"frames {row['frames_out']}/{frames_in}", flush=True)
    return rows


# --- training step -------------------------------------------------------------

def _timed_step(model, audio) -> float:
    """One forward + backward of the encoder (loss: mean square of its output)."""
    start = time.perf_counter()
    x, _ = model.extract_features(audio, padding_mask=None, mask=False)
    x.float().pow(2).mean().backward()
    sync(audio.device)
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def fairseq_dense(reference: PrunedHubertModel, cfg: Dict) -> HubertModel:
    """fairseq's own HubertModel on the reference's weights (shared, no copy)."""
    model = HubertModel(hubert_config(cfg), OmegaConf.create({"sample_rate": SAMPLE_RATE}), [None])
    model.remove_pretraining_modules()
    return share_weights(model, reference)


def run_training_step(reference, cfg, rates: List[float], duration: float, batch: int, device,
                      dtype, warmup: int, repeats: int) -> List[Dict]:
    """Forward + backward, fairseq's dense HubertModel vs this encoder at each
    rate from layer 0, interleaved; dropout off (eval mode) so every pass
    does the same work. The FLOP ideal is the forward pass's ratio (backward
    costs about twice the forward, layer by layer, so the ratio carries over)."""
    num_samples = int(duration * SAMPLE_RATE)
    g = torch.Generator().manual_seed(0)
    audio = (0.1 * torch.randn(batch, num_samples, generator=g)).to(device=device, dtype=dtype)
    settings = [{"mode": "fairseq dense", "rate": 1.0, "init_layer": 0}] + [
        {"mode": "prune", "rate": rate, "init_layer": 0} for rate in rates]
    models = [fairseq_dense(reference, cfg)] + [
        setting_model(reference, cfg, "prune", rate, 0) for rate in rates]
    for model in models:
        model.requires_grad_(True)
    times = interleaved_times(models, lambda model: _timed_step(model, audio), warmup, repeats)
    dense_flops = encoder_flops_formula(cfg, num_samples, batch)["total"]
    rows = []
    for s, model, t in zip(settings, models, times):
        peak = PeakMemory(audio.device)
        with peak:
            _timed_step(model, audio)
        flops = encoder_flops_formula(cfg, num_samples, batch, s["rate"], 0)["total"]
        rows.append({"group": "train_step", **s, "duration_s": duration, "batch": batch,
                     "latency_s": statistics.median(t), "latency_range_s": (min(t), max(t)),
                     "peak_bytes": peak.bytes, "ideal_speedup": dense_flops / flops})
        print(f"  train step {s['mode']:13s} rate {s['rate']:.2f} {duration:g}s x{batch}: "
              f"{rows[-1]['latency_s'] * 1000:8.1f} ms", flush=True)
    for row in rows:
        row["measured_speedup"] = rows[0]["latency_s"] / row["latency_s"]
    return rows


# --- attention paths of the acting layers ---------------------------------------

def run_attention_paths(reference, cfg, rates: List[float], duration: float, batch: int, device,
                        dtype, warmup: int, repeats: int, training: bool) -> List[Dict]:
    """fairseq's dense HubertModel vs pruning from layer 0 at each rate on the
    explicit and the fused attention path, interleaved. ``training``: forward
    + backward in train mode (dropout as configured, what fairseq-train does;
    PyTorch's CPU flash kernel refuses attention dropout, so dense layers too
    fall back there), else inference. Scoring share: time under the scoring
    label in a profiled pass of its own; peak memory: one pass of its own."""
    num_samples = int(duration * SAMPLE_RATE)
    g = torch.Generator().manual_seed(0)
    audio = (0.1 * torch.randn(batch, num_samples, generator=g)).to(device=device, dtype=dtype)
    entries = [("fairseq dense", 1.0, None, fairseq_dense(reference, cfg))] + [
        ("prune", rate, path, setting_model(reference, cfg, "prune", rate, 0))
        for rate in rates for path in ("explicit", "fused")]
    for *_, model in entries:
        model.train(training).requires_grad_(training)

    def measure(entry):
        _, _, path, model = entry
        with scoring_path(path or "auto"):
            if training:
                return _timed_step(model, audio)
            with torch.inference_mode():
                return timed_pass(model, audio)

    times = interleaved_times(entries, measure, warmup, repeats)
    dense_flops = encoder_flops_formula(cfg, num_samples, batch)["total"]
    rows = []
    for (mode, rate, path, model), t in zip(entries, times):
        peak = PeakMemory(audio.device)
        with peak:
            measure((mode, rate, path, model))
        with scoring_path(path or "auto"):
            share = labelled_share(lambda: measure((mode, rate, path, model)), audio.is_cuda)
        flops = encoder_flops_formula(cfg, num_samples, batch, rate, 0)["total"]
        rows.append({"group": "paths_train" if training else "paths", "mode": mode,
                     "path": path or "fairseq", "rate": rate, "init_layer": 0,
                     "duration_s": duration, "batch": batch,
                     "latency_s": statistics.median(t), "latency_range_s": (min(t), max(t)),
                     "peak_bytes": peak.bytes, "ideal_speedup": dense_flops / flops,
                     "overhead_share": share})
        print(f"  {'train step' if training else 'inference'} {mode:13s} "
              f"{path or '':8s} rate {rate:.2f} {duration:g}s x{batch}: "
              f"{rows[-1]['latency_s'] * 1000:8.1f} ms", flush=True)
    for row in rows:
        row["measured_speedup"] = rows[0]["latency_s"] / row["latency_s"]
    return rows


def labelled_share(run, cuda: bool) -> float:
    """Share of ``run()``'s time under the reductions' profiler labels."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        total = run()
    field = "device_time_total" if cuda else "cpu_time_total"
    spent_us = sum(getattr(e, field) for e in prof.key_averages()
                   if e.key in PROFILE_LABELS and e.device_type == DeviceType.CPU)
    return spent_us / 1e6 / total


def paths_markdown(rows: List[Dict]) -> str:
    out = ["| model | attention path | audio | batch | keep rate (from layer 0) | ms, median "
           "(min-max) | peak MiB | speedup over fairseq dense | FLOP ideal | measured/ideal "
           "| scoring + selection share |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lo, hi = r["latency_range_s"]
        out.append(f"| {r['mode']} | {r['path']} | {r['duration_s']:g} s | {r['batch']} "
                   f"| {r['rate']:g} | {r['latency_s'] * 1000:.0f} ({lo * 1000:.0f}-"
                   f"{hi * 1000:.0f}) | {_mib(r['peak_bytes'])} | {r['measured_speedup']:.2f}x "
                   f"| {r['ideal_speedup']:.2f}x "
                   f"| {r['measured_speedup'] / r['ideal_speedup']:.2f} "
                   f"| {100 * r['overhead_share']:.1f} % |")
    return "\n".join(out)


def train_markdown(rows: List[Dict]) -> str:
    out = ["| model | audio | batch | keep rate (from layer 0) | forward + backward ms, median "
           "(min-max) | peak MiB | speedup over fairseq dense | FLOP ideal |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lo, hi = r["latency_range_s"]
        out.append(f"| {r['mode']} | {r['duration_s']:g} s | {r['batch']} | {r['rate']:g} "
                   f"| {r['latency_s'] * 1000:.0f} ({lo * 1000:.0f}-{hi * 1000:.0f}) "
                   f"| {_mib(r['peak_bytes'])} | {r['measured_speedup']:.2f}x "
                   f"| {r['ideal_speedup']:.2f}x |")
    return "\n".join(out)


def run_grid(args) -> List[Dict]:
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    cfg, model = reference_model(args.size, device, dtype)
    rows = []

    def group(name, duration, batch, settings):
        print(f"[benchmark] {name}: {duration:g} s x {batch}, {len(settings)} settings, "
              "round-robin", flush=True)
        rows.extend({"group": name, **row} for row in run_group(
            model, cfg, settings, duration, batch, device, dtype, args.warmup,
            args.repeats))

    dense = {"mode": "prune", "rate": 1.0, "init_layer": 0}
    for duration in args.durations if args.grid else []:
        for batch in args.batches:
            group("grid", duration, batch, [dense] + [
                {"mode": "prune", "rate": rate, "init_layer": init}
                for init in args.init_layers for rate in args.rates if rate < 1.0] + [
                {"mode": "coverage", "rate": 1.0, "coverage": c, "init_layer": init}
                for init in args.init_layers for c in args.coverages])
    if args.alternatives:
        layers = cfg["encoder_layers"]
        settings = [dense]  # each group has its own dense reference, measured alongside
        for init in [i for i in args.init_layers if i < layers]:  # none act after the last
            # the rate that leaves about half the frames, as one stride-2 conv does
            half = round(0.5 ** (1 / (layers - init)), 4)
            # a data-dependent reduction (coverage) sets its own counts: the grid's --coverages
            settings += [{"mode": mode, "rate": half if cls.uses_rate else 1.0, "init_layer": init}
                         for mode, cls in REDUCTIONS.items() if not cls.data_dependent_counts]
            if 0.9 in args.rates:
                settings += [{"mode": mode, "rate": 0.9, "init_layer": init}
                             for mode, cls in REDUCTIONS.items()
                             if cls.uses_rate and not cls.data_dependent_counts]
        group("alternatives", args.alternatives_duration, args.alternatives_batch, settings)
    if args.attention_paths:
        print(f"[benchmark] attention paths: {args.paths_duration:g} s x {args.paths_batch} "
              f"inference, {args.paths_train_durations} s x {args.train_step_batch} training "
              f"steps, rates {args.paths_rates}", flush=True)
        rows.extend(run_attention_paths(model, cfg, args.paths_rates, args.paths_duration,
                                        args.paths_batch, device, dtype, args.warmup,
                                        args.repeats, training=False))
        for duration in args.paths_train_durations:
            rows.extend(run_attention_paths(model, cfg, args.paths_rates, duration,
                                            args.train_step_batch, device, dtype, args.warmup,
                                            args.repeats, training=True))
    if args.train_step:
        print(f"[benchmark] training step: {args.train_step_duration:g} s x "
              f"{args.train_step_batch}, fairseq dense + rates {args.train_step_rates}", flush=True)
        train_rows = run_training_step(model, cfg, args.train_step_rates, args.train_step_duration,
                                       args.train_step_batch, device, dtype, args.warmup,
                                       args.repeats)
    else:
        train_rows = []
    for row in rows:
        if row["group"].startswith("paths"):
            continue  # against fairseq's dense model, measured alongside
        dense = next(r for r in rows if r["mode"] == "prune" and r["rate"] == 1.0
                     and r["group"] == row["group"] and r["duration_s"] == row["duration_s"]
                     and r["batch"] == row["batch"])
        row["ideal_speedup"] = dense["flops"] / row["flops"]
        row["measured_speedup"] = dense["latency_s"] / row["latency_s"]
        row["peak_vs_dense"] = (None if not row["peak_bytes"] or not dense["peak_bytes"]
                                else row["peak_bytes"] / dense["peak_bytes"])
    return rows + train_rows


# --- reporting ----------------------------------------------------------------

def _mib(b):
    return "n/a" if b is None else f"{b / 2 ** 20:.0f}"


def markdown(rows: List[Dict]) -> str:
    out = ["| mode | audio | batch | keep rate | init | frames out/in | latency ms median (min-max) "
           "| audio s/s | peak MiB | GFLOPs | ideal speedup | measured speedup | measured/ideal "
           "| score+top-k+gather |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lo, hi = r["latency_range_s"]
        out.append(
            f"| {r['mode']} | {r['duration_s']:g} s | {r['batch']} "
            f"| {'coverage ' + format(r['coverage'], 'g') if r.get('coverage') else format(r['rate'], 'g')} "
            f"| {r['init_layer']} | {r['frames_out']}/{r['frames_in']} "
            f"| {r['latency_s'] * 1000:.0f} ({lo * 1000:.0f}-{hi * 1000:.0f}) "
            f"| {r['throughput']:.1f} | {_mib(r['peak_bytes'])} "
            f"| {r['flops'] / 1e9:.1f} | {r['ideal_speedup']:.2f}x | {r['measured_speedup']:.2f}x "
            f"| {r['measured_speedup'] / r['ideal_speedup']:.2f} | {100 * r['overhead_share']:.1f} % |")
    return "\n".join(out)


def targets(rows: List[Dict]) -> str:
    """The speed targets at rate 0.9 from layer 0, 10 s, batch 8, where measured."""
    def find(group, mode, rate=0.9, dur=10, batch=8, init=0):
        return next((r for r in rows if r["group"] == group and r["mode"] == mode
                     and r["rate"] == rate and r["duration_s"] == dur and r["batch"] == batch
                     and r["init_layer"] == init), None)
    prune = find("grid", "prune")
    # prune vs merge from the alternatives group, where they ran interleaved
    alt_prune, merge = find("alternatives", "prune"), find("alternatives", "merge")
    if prune is None:
        return "Targets: not measured (needs rate 0.9, init 0, 10 s, batch 8 in the grid)."
    ratio = prune["measured_speedup"] / prune["ideal_speedup"]
    lines = ["| target (rate 0.9, init 0, 10 s, batch 8) | measured | met |", "| --- | --- | --- |",
             f"| speedup >= 0.9 x FLOP ideal | {prune['measured_speedup']:.2f}x vs ideal "
             f"{prune['ideal_speedup']:.2f}x = {ratio:.2f} | {'yes' if ratio >= 0.9 else 'no'} |",
             f"| score+top-k+gather <= 3 % of encoder time | {100 * prune['overhead_share']:.1f} % "
             f"| {'yes' if prune['overhead_share'] <= 0.03 else 'no'} |"]
    if merge is not None and alt_prune is not None:
        lines.append(f"| pruning faster than merging at equal frames | prune "
                     f"{alt_prune['latency_s'] * 1000:.0f} ms, merge "
                     f"{merge['latency_s'] * 1000:.0f} ms "
                     f"| {'yes' if alt_prune['latency_s'] < merge['latency_s'] else 'no'} |")
    peaks = [r["peak_vs_dense"] for r in rows if r.get("peak_vs_dense") is not None
             and r["mode"] == "prune"]
    if peaks:
        worst = max(peaks)
        lines.append(f"| peak memory never above dense | worst pruned/dense {worst:.2f} "
                     f"| {'yes' if worst <= 1.0 else 'no'} |")
    return "\n".join(lines)


def plots(rows: List[Dict], out: str) -> List[str]:
    plt = pyplot()

    written = []
    prune = [r for r in rows if r["mode"] == "prune" and r["group"] == "grid"]
    for duration in sorted({r["duration_s"] for r in prune}):
        for batch in sorted({r["batch"] for r in prune}):
            sel = [r for r in prune if r["duration_s"] == duration and r["batch"] == batch]
            fig, ax = plt.subplots(figsize=(6, 4))
            for init in sorted({r["init_layer"] for r in sel if r["rate"] < 1.0}):
                pts = sorted([r for r in sel if r["init_layer"] == init or r["rate"] == 1.0],
                             key=lambda r: -r["rate"])
                rates = [r["rate"] for r in pts]
                line, = ax.plot(rates, [r["measured_speedup"] for r in pts], "o-",
                                label=f"measured, init {init}")
                ax.plot(rates, [r["ideal_speedup"] for r in pts], "--",
                        color=line.get_color(), label=f"FLOP ideal, init {init}")
            ax.set_xlabel("keep rate per layer")
            ax.set_ylabel("speedup over dense")
            ax.invert_xaxis()
            ax.set_title(f"HuBERT encoder, {duration:g} s audio, batch {batch}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            path = os.path.join(out, f"speedup_{duration:g}s_b{batch}.png")
            fig.tight_layout()
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    alt = [r for r in rows if r["group"] == "alternatives"]
    if alt:
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{r['mode']}\nr={r['rate']:g} k={r['init_layer']}" for r in alt]
        colors = {mode: f"C{i}" for i, mode in enumerate(REDUCTIONS)}
        ax.bar(range(len(alt)), [r["latency_s"] * 1000 for r in alt],
               color=[colors[r["mode"]] for r in alt])
        ax.set_xticks(range(len(alt)))
        ax.set_xticklabels(labels, fontsize=6)
        ax.set_ylabel("latency (ms)")
        ax.set_title(" vs ".join(REDUCTIONS) + " (registered reductions)")
        fig.tight_layout()
        path = os.path.join(out, "alternatives.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    paths = [r for r in rows if r["group"] in ("paths", "paths_train")]
    if paths:
        written.append(plot_attention_paths(paths, os.path.join(out, "attention_paths.png")))
    return written


def plot_attention_paths(rows: List[Dict], path: str) -> str:
    """Speedup over fairseq's dense model per measured input and rate, one bar
    per attention path, the FLOP ideal marked."""
    plt = pyplot()
    inputs = list(dict.fromkeys((r["group"], r["duration_s"], r["batch"]) for r in rows))
    rates = sorted({r["rate"] for r in rows if r["path"] != "fairseq"}, reverse=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / (2 * len(rates))
    for i, (group, duration, batch) in enumerate(inputs):
        for j, (rate, attention_path) in enumerate(
                (rate, p) for rate in rates for p in ("explicit", "fused")):
            row = next((r for r in rows if (r["group"], r["duration_s"], r["batch"], r["rate"],
                                            r["path"]) == (group, duration, batch, rate,
                                                           attention_path)), None)
            if row is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            ax.bar(x, row["measured_speedup"], width, color=f"C{j}",
                   label=f"{attention_path}, rate {rate:g}" if i == 0 else None)
            ax.plot([x - width / 2, x + width / 2], [row["ideal_speedup"]] * 2, "k-", lw=1.5,
                    label="FLOP ideal" if i == 0 and j == 0 else None)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(inputs)))
    ax.set_xticklabels([f"{'training' if g == 'paths_train' else 'inference'}\n{d:g} s x {b}"
                        for g, d, b in inputs], fontsize=8)
    ax.set_ylabel("speedup over fairseq's dense HuBERT")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    save_png(fig, path, dpi=100)
    return path


def decode_timing(checkpoints: Dict[str, str], data: str, subset: str, beam: int) -> str:
    """End-to-end fairseq beam search over a subset, batch 1, per checkpoint,
    after one warm-up utterance; the speech encoder is also timed on its own."""
    from argparse import Namespace

    from ..evaluation.decoding import load_st_model

    lines = ["| model | beam | utterances | decode s (total) | of which speech encoder s |",
             "| --- | --- | --- | --- | --- |"]
    for name, ckpt in checkpoints.items():
        model, dataset, task = load_st_model(ckpt, data, subset)
        generator = task.build_generator([model], Namespace(beam=beam, max_len_a=0, max_len_b=50,
                                                            lenpen=1.0))
        samples = [dataset.collater([dataset[i]]) for i in range(len(dataset))]
        decode_s = encoder_s = 0.0
        with torch.inference_mode():
            task.inference_step(generator, [model], samples[0])  # warm-up
            for s in samples:
                start = time.perf_counter()
                model.encoder(**s["net_input"])
                encoder_s += time.perf_counter() - start
                start = time.perf_counter()
                task.inference_step(generator, [model], s)
                decode_s += time.perf_counter() - start
        lines.append(f"| {name} | {beam} | {len(samples)} | {decode_s:.2f} | {encoder_s:.2f} |")
    return "\n".join(lines)


def machine_description(device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return (f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", default="base", choices=list(HUBERT_SIZES))
    parser.add_argument("--durations", type=positive_number_flag, nargs="+", default=[5, 10, 20])
    parser.add_argument("--batches", type=whole_number_flag(1), nargs="+", default=[1, 8])
    parser.add_argument("--rates", type=keep_rate_flag, nargs="+", default=[1.0, 0.95, 0.9, 0.85, 0.8])
    parser.add_argument("--init-layers", type=whole_number_flag(0), nargs="+", default=[0, 4, 6])
    parser.add_argument("--coverages", type=keep_rate_flag, nargs="+", default=[],
                        help="also the coverage reduction at these shares (grid; frames per "
                             "layer measured)")
    parser.add_argument("--repeats", type=whole_number_flag(1), default=5)
    parser.add_argument("--warmup", type=whole_number_flag(0), default=1)
    parser.add_argument("--no-alternatives", dest="alternatives", action="store_false")
    parser.add_argument("--alternatives-duration", type=positive_number_flag, default=10)
    parser.add_argument("--alternatives-batch", type=whole_number_flag(1), default=8)
    parser.add_argument("--train-step", action="store_true",
                        help="also time forward + backward: fairseq's dense HubertModel vs pruned")
    parser.add_argument("--train-step-duration", type=positive_number_flag, default=5)
    parser.add_argument("--train-step-batch", type=whole_number_flag(1), default=4)
    parser.add_argument("--train-step-rates", type=keep_rate_flag, nargs="+", default=[1.0, 0.9, 0.8])
    parser.add_argument("--attention-paths", action="store_true",
                        help="also compare the explicit and fused attention paths of the "
                             "pruning layers with fairseq's dense model (inference and training)")
    parser.add_argument("--paths-duration", type=positive_number_flag, default=10)
    parser.add_argument("--paths-batch", type=whole_number_flag(1), default=8)
    parser.add_argument("--paths-train-durations", type=positive_number_flag, nargs="+",
                        default=[5, 20])
    parser.add_argument("--paths-rates", type=keep_rate_flag, nargs="+", default=[0.9, 0.8])
    parser.add_argument("--no-grid", dest="grid", action="store_false",
                        help="skip the rate x init-layer grid")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--threads", type=whole_number_flag(1), help="torch.set_num_threads (CPU)")
    parser.add_argument("--decode-checkpoints", nargs="*", metavar="NAME=CKPT",
                        help="also time beam search of these ST checkpoints on --decode-data")
    parser.add_argument("--decode-data")
    parser.add_argument("--decode-subset", default="tst-COMMON")
    parser.add_argument("--beam", type=whole_number_flag(1), default=5)
    return parser.parse_args(argv)


def report_lines(args, rows: List[Dict], machine: str) -> List[str]:
    """benchmark.md: the grid, the alternatives, the training step, the targets."""
    grid = [r for r in rows if r["group"] == "grid"]
    alternatives = [r for r in rows if r["group"] == "alternatives"]
    train_step = [r for r in rows if r["group"] == "train_step"]
    paths = [r for r in rows if r["group"] == "paths"]
    paths_train = [r for r in rows if r["group"] == "paths_train"]
    report = [f"# HuBERT-{args.size} encoder benchmark ({args.dtype}, random weights)", "",
              f"Machine: {machine}; median of {args.repeats} passes after {args.warmup} "
              "warm-up, settings of one table section interleaved.", "",
              "Keep rates x init layers (speedups against the dense row of the same input):", "",
              markdown(grid)] if grid else [f"# HuBERT-{args.size} encoder benchmark ({args.dtype}, "
                                            f"random weights)", "", f"Machine: {machine}."]
    if alternatives:
        report += ["", f"Alternatives at about equal frames leaving the encoder "
                       f"({args.alternatives_duration:g} s x {args.alternatives_batch}; "
                       "rate-driven reductions at the rate that halves the frames and at 0.9, "
                       "conv stride 2; own dense reference):", "", markdown(alternatives)]
    if train_step:
        report += ["", f"Training step (forward + backward, {args.train_step_duration:g} s x "
                       f"{args.train_step_batch}, dropout off, settings interleaved):", "",
                   train_markdown(train_step)]
    if paths:
        report += ["", "Attention paths of the pruning layers, inference (eval mode, settings "
                       "interleaved; scoring + selection share: time under the reductions' "
                       "profiler labels):", "", paths_markdown(paths)]
    if paths_train:
        report += ["", f"Attention paths, training step (forward + backward in train mode, "
                       f"dropout as configured, batch {args.train_step_batch}, interleaved per "
                       "duration):", "", paths_markdown(paths_train)]
    return report + (["", targets(rows)] if grid else [])


def main(argv=None):
    args = parse_arguments(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    machine = machine_description(torch.device(args.device))
    print(f"[benchmark] {args.size} HuBERT, random weights, {args.dtype}, {machine}", flush=True)
    rows = run_grid(args)
    report = report_lines(args, rows, machine)
    # written before the decoding step, so a failure there loses no encoder results
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": machine, "args": vars(args), "rows": rows}, f, indent=1)
    if args.decode_checkpoints:
        runs = dict(spec.split("=", 1) for spec in args.decode_checkpoints)
        report += ["", f"End-to-end decoding ({args.decode_subset}, batch 1):", "",
                   decode_timing(runs, args.decode_data, args.decode_subset, args.beam)]
    with open(os.path.join(args.out, "benchmark.md"), "w") as f:
        f.write("\n".join(report) + "\n")
    written = plots(rows, args.out)
    print("\n".join(report))
    print(f"[benchmark] wrote {args.out}/benchmark.md, results.json, "
          + ", ".join(os.path.basename(p) for p in written))


if __name__ == "__main__":
    main()
