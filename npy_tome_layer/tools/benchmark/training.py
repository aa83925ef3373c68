"""Forward + backward (a training step) and the attention paths of the
pruning layers (explicit vs fused), each against fairseq's dense HubertModel."""
import statistics
import time
from typing import Dict, List

import torch

from ...encoder.attention import scoring_path
from ...evaluation.plotting import pyplot, save_png
from ...evaluation.reference import setting_model
from ...evaluation.timing import interleaved_times, sync, timed_pass
from ...io.audio import SAMPLE_RATE
from ...reduction.cost import encoder_flops_formula
from .measuring import PeakMemory, _mib, fairseq_dense, labelled_share, random_audio


def _timed_step(model, audio) -> float:
    """One forward + backward of the encoder (loss: mean square of its output)."""
    start = time.perf_counter()
    x, _ = model.extract_features(audio, padding_mask=None, mask=False)
    x.float().pow(2).mean().backward()
    sync(audio.device)
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def run_training_step(reference, cfg, rates: List[float], duration: float, batch: int, device,
                      dtype, warmup: int, repeats: int) -> List[Dict]:
    """Forward + backward, fairseq's dense HubertModel vs this encoder at each
    rate from layer 0, interleaved; dropout off (eval mode) so every pass
    does the same work. The FLOP ideal is the forward pass's ratio (backward
    costs about twice the forward, layer by layer, so the ratio carries over)."""
    num_samples = int(duration * SAMPLE_RATE)
    audio = random_audio(duration, batch, device, dtype)
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


def run_attention_paths(reference, cfg, rates: List[float], duration: float, batch: int, device,
                        dtype, warmup: int, repeats: int, training: bool) -> List[Dict]:
    """fairseq's dense HubertModel vs pruning from layer 0 at each rate on the
    explicit and the fused attention path, interleaved. ``training``: forward
    + backward in train mode (dropout as configured, what fairseq-train does;
    PyTorch's CPU flash kernel refuses attention dropout, so dense layers too
    fall back there), else inference. Scoring share: time under the scoring
    label in a profiled pass of its own; peak memory: one pass of its own."""
    num_samples = int(duration * SAMPLE_RATE)
    audio = random_audio(duration, batch, device, dtype)
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
