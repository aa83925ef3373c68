"""The keep rate x init layer grid of one model size and the alternatives at
about equal frames (every registered reduction), each group of settings timed
round-robin against its own dense row; the speed targets; their plots."""
import os
import statistics
from typing import Dict, List

import torch

from ...evaluation.plotting import pyplot, save_png
from ...evaluation.reference import reference_model, setting_model
from ...evaluation.timing import interleaved_times, timed_pass
from ...io.audio import SAMPLE_RATE
from ...reduction import REDUCTIONS, default_reduction, follows_rate
from ...reduction.cost import encoder_flops_formula
from .measuring import DTYPES, PeakMemory, _mib, count_flops, random_audio, reduction_share
from .training import (paths_markdown, plot_attention_paths, run_attention_paths,
                       run_training_step, train_markdown)


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
    audio = random_audio(duration, batch, device, dtype)
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
                                       model.encoder.length_reduction)["total"]
        row["throughput"] = batch * duration / row["latency_s"]
        rows.append(row)
        print(f"  {row['mode']:5s} rate {row['rate']:.3f} init {row['init_layer']:2d} "
              f"{duration:4g}s x{batch}: {row['latency_s'] * 1000:8.1f} ms "
              f"frames {row['frames_out']}/{frames_in}", flush=True)
    return rows


def run_grid(args) -> List[Dict]:
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
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
            defaults = {mode: default_reduction(mode) for mode in REDUCTIONS}
            fixed_counts = {mode: r for mode, r in defaults.items()
                            if r is not None and not r.data_dependent_counts}
            settings += [{"mode": mode, "rate": half if r.uses_rate else 1.0, "init_layer": init}
                         for mode, r in fixed_counts.items()]
            if 0.9 in args.rates:
                settings += [{"mode": mode, "rate": 0.9, "init_layer": init}
                             for mode, r in fixed_counts.items() if follows_rate(r)]
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
            save_png(fig, path, dpi=100)
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
        save_png(fig, path, dpi=100)
        written.append(path)
    paths = [r for r in rows if r["group"] in ("paths", "paths_train")]
    if paths:
        written.append(plot_attention_paths(paths, os.path.join(out, "attention_paths.png")))
    return written


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
