"""Rank training settings with several seeds: BLEU mean and spread, significance
against the dense baseline, frames kept, and the saving at HuBERT-base size.

    python -m npy_tome_layer.tools.study --data DATA_DIR --subset tst-COMMON --out DIR \\
        --run baseline 1 CKPT GENERATE_OUT --run fixed 1 CKPT GENERATE_OUT ...

``scripts/study.sh`` trains and evaluates the runs and calls this. Per run:
BLEU from its fairseq-generate output, ``frames_kept`` (HuBERT frames that
leave the encoder over the split, each utterance alone). Per mode: mean and
sample standard deviation of BLEU over seeds; ``p_value``, sacreBLEU's paired
approximate-randomization test against the baseline with the seeds pooled
(each mode's hypotheses of all seeds concatenated in seed order, references
repeated; 1 where the pooled BLEUs are equal); ``base_speedup``, a random-weight
HuBERT-base encoding the split's audio at the mode's setting, dense time / that
time, timed interleaved (a data-dependent mode, coverage, keeps the counts its
first seed's model kept on each utterance and layer).
Writes DIR/study.json, DIR/study.md, DIR/study.png (BLEU against speedup),
DIR/positions.png (where in the utterance the frames leaving HuBERT lie) and
DIR/frames_by_length.png (the share of its frames each utterance keeps,
against its length), the last two from each mode's first seed.
"""
import argparse
import json
import os
import statistics
import sys
from typing import Dict, List, Tuple

import torch

from ..io.flags import whole_number_flag
from ..errors import InputError
from ..evaluation.decoding import bleu_from_generate_output, load_st_model, translations
from ..evaluation.reference import reference_speedups
from ..evaluation.timing import (frames_by_length, hubert_frames, kept_counts, kept_frames,
                                kept_positions, utterances)
from ..io.atomic import write_text_atomically

RUN_KEYS = ("mode", "seed", "bleu", "frames_kept", "checkpoint")
MODE_KEYS = ("mode", "seeds", "bleu_mean", "bleu_sd", "frames_kept", "p_value", "base_speedup")


def paired_p_values(pooled: Dict[str, List[str]], references: List[str],
                    baseline: str) -> Dict[str, float]:
    """sacreBLEU's paired approximate randomization, each mode against ``baseline``."""
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    others = [m for m in pooled if m != baseline]
    if not others:
        return {}
    systems = [(baseline, pooled[baseline])] + [(m, pooled[m]) for m in others]
    _, scores = PairedTest(systems, {"BLEU": BLEU()}, [references], test_type="ar")()
    base_score = scores["BLEU"][0].score
    # sacreBLEU counts shuffles whose difference is strictly larger than the
    # observed one, so equal scores would get p = 1/(trials + 1): no difference
    # is no evidence of one
    return {m: 1.0 if result.score == base_score else float(result.p_value)
            for m, result in zip(others, scores["BLEU"][1:])}


def summarise(runs: List[Dict], translations_of: Dict[Tuple[str, int], Tuple[List, List]],
              settings: Dict[str, tuple], speedups: Dict[tuple, float],
              baseline: str = "baseline") -> List[Dict]:
    modes = list(dict.fromkeys(r["mode"] for r in runs))
    pooled, references = {}, None
    for mode in modes:
        mine = sorted((r for r in runs if r["mode"] == mode), key=lambda r: r["seed"])
        pooled[mode] = [h for r in mine for h in translations_of[mode, r["seed"]][0]]
        refs = [t for r in mine for t in translations_of[mode, r["seed"]][1]]
        if references is None:
            references = refs
        elif refs != references:
            raise InputError(f"mode {mode}: its seeds' references differ from the first mode's "
                             "(every mode needs the same seeds on the same split)")
    p_values = paired_p_values(pooled, references, baseline) if baseline in pooled else {}
    summary = []
    for mode in modes:
        mine = sorted((r for r in runs if r["mode"] == mode), key=lambda r: r["seed"])
        bleu = [r["bleu"] for r in mine]
        summary.append({
            "mode": mode, "seeds": [r["seed"] for r in mine],
            "bleu_mean": round(statistics.mean(bleu), 2),
            "bleu_sd": round(statistics.stdev(bleu), 2) if len(bleu) > 1 else 0.0,
            "frames_kept": round(statistics.mean(r["frames_kept"] for r in mine), 4),
            "p_value": None if mode == baseline else p_values.get(mode),
            "base_speedup": round(speedups[settings[mode]], 3),
        })
    return summary


def setting_label(setting: tuple) -> str:
    reduction, value, init = setting  # value: the keep rate, or the coverage
    return "dense" if value >= 1.0 and reduction != "conv" else f"{reduction} {value:g} from {init}"


def markdown(runs: List[Dict], modes: List[Dict], settings: Dict[str, tuple]) -> str:
    lines = ["| mode | setting | seeds | BLEU mean ± sd | BLEU per seed | HuBERT frames kept "
             "| p vs baseline | speedup at base size |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in modes:
        per_seed = ", ".join(f"{r['bleu']:.2f}" for r in sorted(
            (r for r in runs if r["mode"] == m["mode"]), key=lambda r: r["seed"]))
        p = "–" if m["p_value"] is None else f"{m['p_value']:.4f}"
        lines.append(f"| {m['mode']} | {setting_label(settings[m['mode']])} | {len(m['seeds'])} "
                     f"| {m['bleu_mean']:.2f} ± {m['bleu_sd']:.2f} | {per_seed} "
                     f"| {100 * m['frames_kept']:.1f} % | {p} | {m['base_speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def plot(modes: List[Dict], path: str) -> None:
    from ..evaluation.plotting import pyplot, save_labelled

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in modes:
        ax.errorbar([m["base_speedup"]], [m["bleu_mean"]], yerr=[m["bleu_sd"]], fmt="o",
                    capsize=4, label=m["mode"])
    save_labelled(fig, ax, "HuBERT-base encoder speedup on the split's audio (dense = 1)",
                  f"BLEU, mean ± sd over {max(len(m['seeds']) for m in modes)} seeds", path)


def plot_positions(frames: Dict[str, list], path: str) -> None:
    """Histogram, per reducing mode, of where in the utterance the frames that
    leave HuBERT lie (relative position; ``frames``: each mode's first seed's
    ``kept_frames``)."""
    from ..evaluation.plotting import pyplot, save_labelled

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [i / 20 for i in range(21)]
    for mode, kept in frames.items():
        where = kept_positions(kept)
        if where:
            ax.hist(where, bins=bins, histtype="step", density=True, label=mode)
    save_labelled(fig, ax, "relative position in the utterance of the frames leaving HuBERT",
                  "density", path)


def plot_frames_by_length(frames: Dict[str, list], path: str) -> None:
    """Share of its frames each utterance keeps to HuBERT's output against its
    length, one series per reducing mode (the first seed's model): where a
    content-adaptive mode keeps fewer than a fixed rate's ceil(rate n) chain."""
    from ..evaluation.plotting import pyplot, save_labelled

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, kept in frames.items():
        pairs = frames_by_length(kept)
        if all(k == n for n, k in pairs):
            continue  # dense: every frame leaves
        ax.scatter([n for n, _ in pairs], [100 * k / n for n, k in pairs], s=12, alpha=0.7,
                   label=mode)
    save_labelled(fig, ax, "HuBERT frames in (utterance length, 50 per second)",
                  "% of the frames leaving HuBERT", path)


def parse_arguments(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepared pair directory (SPLIT.tsv)")
    p.add_argument("--subset", default="tst-COMMON")
    p.add_argument("--run", nargs=4, action="append", required=True,
                   metavar=("MODE", "SEED", "CHECKPOINT", "GENERATE_OUTPUT"))
    p.add_argument("--baseline", default="baseline", help="mode the p-values compare against")
    p.add_argument("--out", required=True)
    p.add_argument("--reference-size", default="base",
                   help="HuBERT size of the speedup column (tiny in tests)")
    p.add_argument("--repeats", type=whole_number_flag(1), default=3, help="timed passes per setting")
    args = p.parse_args(argv)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        p.error(f"--out {args.out} exists and is not a directory")
    return args


def measure_runs(args):
    """(runs, translations per (mode, seed), final setting per mode, the split's
    audio, kept counts per data-dependent setting, ``kept_frames`` of each
    mode's first seed)."""
    runs, found, settings, audios, kept, frames = [], {}, {}, None, {}, {}
    for mode, seed, checkpoint, generate_output in args.run:
        try:
            seed = int(seed)
        except ValueError:
            sys.exit(f"study: --run {mode} {seed}: the seed must be a whole number")
        for path in (checkpoint, generate_output):
            if not os.path.isfile(path):
                sys.exit(f"study: --run {mode} {seed}: {path} not found")
        try:
            bleu = bleu_from_generate_output(generate_output)
            found[mode, seed] = translations(generate_output)
        except ValueError as e:
            sys.exit(f"study: {e}")
        model, dataset, _ = load_st_model(checkpoint, args.data, args.subset)
        frames_in, frames_out = hubert_frames(model, dataset)
        setting = settings.setdefault(mode, model.encoder.hubert.encoder.final_setting)
        if mode not in frames:  # the first seed's model stands for the mode
            frames[mode] = kept_frames(model, dataset)
            if model.encoder.hubert.encoder.length_reduction.data_dependent_counts:
                kept.setdefault(setting, kept_counts(frames[mode]))
        if audios is None:
            audios = utterances(dataset)
        runs.append({"mode": mode, "seed": seed, "bleu": bleu,
                     "frames_kept": round(frames_out / frames_in, 4), "checkpoint": checkpoint})
        print(f"{mode} seed {seed}: BLEU {bleu:.2f}, {100 * frames_out / frames_in:.1f} % "
              "of HuBERT frames kept", file=sys.stderr, flush=True)
    return runs, found, settings, audios, kept, frames


def main(argv=None):
    args = parse_arguments(argv)
    runs, found, settings, audios, kept, frames = measure_runs(args)
    speedups = reference_speedups(list(settings.values()), audios, args.reference_size,
                                  repeats=args.repeats, kept_counts=kept)
    try:
        modes = summarise(runs, found, settings, speedups, args.baseline)
    except ValueError as e:
        sys.exit(f"study: {e}")
    os.makedirs(args.out, exist_ok=True)
    write_text_atomically(os.path.join(args.out, "study.json"), json.dumps(
        {"runs": [{k: r[k] for k in RUN_KEYS} for r in runs],
         "modes": [{k: m[k] for k in MODE_KEYS} for m in modes]}, indent=1))
    table = markdown(runs, modes, settings)
    write_text_atomically(os.path.join(args.out, "study.md"), (
        f"{args.subset}, {len(audios)} utterances; speedup: random-weight "
        f"HuBERT-{args.reference_size} on the same audio, batch 1, "
        f"{torch.get_num_threads()} CPU threads\n\n" + table))
    plot(modes, os.path.join(args.out, "study.png"))
    plot_positions(frames, os.path.join(args.out, "positions.png"))
    plot_frames_by_length(frames, os.path.join(args.out, "frames_by_length.png"))
    print(table)


if __name__ == "__main__":
    main()
