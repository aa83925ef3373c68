"""Rank training settings with several seeds: BLEU mean and spread, significance
against the dense baseline and attention top-k, frames kept, and the saving at HuBERT-base size.

    python -m npy_tome_layer.tools.study --data DATA_DIR --subset tst-COMMON --out DIR \\
        --run baseline 1 CKPT GENERATE_OUT --log baseline 1 TRAIN_LOG \\
        --run fixed 1 CKPT GENERATE_OUT --log fixed 1 TRAIN_LOG ...

``scripts/study.sh`` trains and evaluates the runs and calls this. Per run:
BLEU from its fairseq-generate output with the half-width of its 95 %
bootstrap interval (sacreBLEU, 1,000 resamples of the sentences),
``frames_kept`` (HuBERT frames that leave the encoder over the split, each
utterance alone); from its training log (``--log``, fairseq's validation lines
of ``--selected-by`` and of the split: evaluation/curves.py) its updates, the
update of the checkpoint dev BLEU selects, the split's BLEU at each validation
(the learning curve; its value at the selected update is the plateau), the
first update reaching 95 % of the plateau, and the training time. The first
run's checkpoint also translates the train split (``train_bleu``: whether the
model learnt the corpus by heart). Per mode: mean and
sample standard deviation of BLEU over seeds; ``p_values``, sacreBLEU's paired
approximate-randomization test against each mode of ``--against`` (default
baseline and fixed, those the study holds) with the seeds pooled
(each mode's hypotheses of all seeds concatenated in seed order, references
repeated; 1 where the pooled BLEUs are equal); ``base_speedup``, a random-weight
HuBERT-base encoding the split's audio at the mode's setting, dense time / that
time, timed interleaved (a data-dependent mode, coverage, keeps the counts its
first seed's model kept on each utterance and layer).
Writes DIR/study.json, DIR/study.md, DIR/study.png (BLEU against speedup),
DIR/curves.png (the learning curves, every run), DIR/positions.png (where in
the utterance the frames leaving HuBERT lie) and
DIR/frames_by_length.png (the share of its frames each utterance keeps,
against its length), the last two from each mode's first seed.
"""
import argparse
import json
import os
import statistics
import sys
from typing import Dict, List, Sequence, Tuple

import torch

from ..io.flags import whole_number_flag
from ..evaluation.curves import plot_curves, read_off
from ..evaluation.decoding import (bleu_from_generate_output, check_written_by, decode,
                                   load_st_model, translations)
from ..evaluation.listening import (LISTENING_P, MIN_DISTINCT_SHARE, add_floor_flags,
                                    assess_run, listening_mark, paired_p_values,
                                    pool_seeds)
from ..evaluation.reference import REFERENCE_SIZES, reference_speedups, setting_label
from ..evaluation.timing import (deltalm_frames_per_subword, frames_by_length, hubert_frames,
                                kept_counts, kept_frames, kept_positions, utterances)
from ..io.atomic import write_text_atomically
from ..io.paths import file_problem

RUN_KEYS = ("mode", "seed", "bleu", "bleu_half_width", "distinct", "no_audio_bleu", "listens",
            "frames_kept", "deltalm_frames_per_subword", "checkpoint")
# read off the run's training log, where --log names one
LOG_KEYS = ("updates", "best_update", "curve_plateau", "updates_to_plateau_share",
            "training_seconds", "curve")
MODE_KEYS = ("mode", "seeds", "bleu_mean", "bleu_sd", "bleu_half_width_mean", "distinct_mean",
             "no_audio_bleu_mean", "seeds_listening", "frames_kept",
             "deltalm_frames_per_subword", "p_values", "base_speedup")
# per mode, the mean over its seeds of each run's LOG_KEYS number
MODE_LOG_KEYS = ("updates", "best_update", "updates_to_plateau_share", "training_seconds")
PLATEAU_SHARE = 0.95
BOOTSTRAP_RESAMPLES = 1000


def bleu_half_width(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Half the width of sacreBLEU's 95 % bootstrap interval of the corpus BLEU
    (its resamples of the sentences, seeded: the same text, the same width)."""
    from sacrebleu.metrics import BLEU

    score = BLEU().corpus_score(list(hypotheses), [list(references)],
                                n_bootstrap=BOOTSTRAP_RESAMPLES)
    return round(score._ci, 2)  # sacreBLEU's "μ ± ci" figure


def summarise(runs: List[Dict], translations_of: Dict[Tuple[str, int], Tuple[List, List]],
              timing: Dict[str, tuple], speedups: Dict[tuple, float],
              against: Sequence[str] = ("baseline",)) -> List[Dict]:
    """One entry per mode; ``p_values`` maps each mode of ``against`` that the
    study holds to the paired test of this mode's pooled hypotheses against it
    (None for that mode itself)."""
    modes = list(dict.fromkeys(r["mode"] for r in runs))
    pooled, references = pool_seeds(translations_of)
    p_values = {reference: paired_p_values(pooled, references, reference)
                for reference in against if reference in pooled}
    summary = []
    for mode in modes:
        mine = sorted((r for r in runs if r["mode"] == mode), key=lambda r: r["seed"])
        bleu = [r["bleu"] for r in mine]
        summary.append({
            "mode": mode, "seeds": [r["seed"] for r in mine],
            "bleu_mean": round(statistics.mean(bleu), 2),
            "bleu_sd": round(statistics.stdev(bleu), 2) if len(bleu) > 1 else 0.0,
            "distinct_mean": round(statistics.mean(r["distinct"] for r in mine), 4),
            "no_audio_bleu_mean": round(statistics.mean(r["no_audio_bleu"] for r in mine), 2),
            "seeds_listening": sum(r["listens"] for r in mine),
            "frames_kept": round(statistics.mean(r["frames_kept"] for r in mine), 4),
            "deltalm_frames_per_subword": round(statistics.mean(
                r["deltalm_frames_per_subword"] for r in mine), 3),
            "p_values": {reference: values.get(mode) for reference, values in p_values.items()},
            "base_speedup": round(speedups[timing[mode]], 3),
            "bleu_half_width_mean": round(statistics.mean(r["bleu_half_width"] for r in mine), 2),
        })
        logged = [r for r in mine if "updates" in r]
        if logged:  # None where a run never reached the share: no mean for the mode
            summary[-1].update({key: None if any(r[key] is None for r in logged) else
                                round(statistics.mean(r[key] for r in logged), 1)
                                for key in MODE_LOG_KEYS})
    return summary


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def markdown(runs: List[Dict], modes: List[Dict], settings: Dict[str, tuple]) -> str:
    references = list(modes[0]["p_values"]) if modes else []
    logged = any("updates" in m for m in modes)
    header = ("| mode | setting | seeds | BLEU mean ± sd | BLEU per seed (± 95 % half-width) "
              "| distinct hypotheses | no-audio BLEU | seeds listening | HuBERT frames kept "
              "| frames into DeltaLM per target subword | "
              + "".join(f"p vs {reference} | " for reference in references)
              + "speedup at base size |"
              + (" updates: selected / trained | updates to 95 % of the plateau "
                 "| training time |" if logged else ""))
    lines = [header, "| --- " * (header.count("|") - 1) + "|"]
    for m in modes:
        per_seed = ", ".join(f"{r['bleu']:.2f} (± {r['bleu_half_width']:.2f})" for r in sorted(
            (r for r in runs if r["mode"] == m["mode"]), key=lambda r: r["seed"]))
        p = "".join("– | " if m["p_values"][reference] is None
                    else f"{m['p_values'][reference]:.4f} | " for reference in references)
        line = (f"| {m['mode']} | {setting_label(settings[m['mode']])} | {len(m['seeds'])} "
                f"| {m['bleu_mean']:.2f} ± {m['bleu_sd']:.2f} | {per_seed} "
                f"| {100 * m['distinct_mean']:.0f} % | {m['no_audio_bleu_mean']:.2f} "
                f"| {m['seeds_listening']}/{len(m['seeds'])} "
                f"| {100 * m['frames_kept']:.1f} % | {m['deltalm_frames_per_subword']:.2f} "
                f"| {p}{m['base_speedup']:.2f}x |")
        if logged:
            if "updates" in m:
                reach = m["updates_to_plateau_share"]
                line += (f" {m['best_update']:.0f} / {m['updates']:.0f} "
                         f"| {'never' if reach is None else f'{reach:.0f}'} "
                         f"| {_minutes(m['training_seconds'])} |")
            else:
                line += " – | – | – |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def curve_note(selected_by: str, subset: str) -> str:
    return (f"Updates are each run's own (a run started from another counts from 0), means over "
            f"the seeds; the selected checkpoint is fairseq's checkpoint_best.pt (best {selected_by}"
            f" BLEU); the plateau is the {subset} BLEU of the validation at that update "
            f"(validation's beam), and 'updates to 95 %' the first validation reaching "
            f"{PLATEAU_SHARE:.0%} of it.\n")


def floor_note(constant_bleu: float) -> str:
    return (f"Floors: 'no-audio BLEU' is each run's checkpoint decoding silence of each "
            f"utterance's length; the training split's most frequent target, written for every "
            f"utterance, scores {constant_bleu:.2f}. A run listens with at least "
            f"{MIN_DISTINCT_SHARE:.0%} distinct hypotheses and BLEU above both floors "
            f"(paired approximate randomization, p < {LISTENING_P}).\n")


def plot(modes: List[Dict], constant_bleu: float, path: str) -> None:
    from ..evaluation.plotting import pyplot, save_labelled

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in modes:
        ax.errorbar([m["base_speedup"]], [m["bleu_mean"]], yerr=[m["bleu_sd"]], fmt="o",
                    capsize=4, label=m["mode"])
    ax.axhline(max(m["no_audio_bleu_mean"] for m in modes), color="grey", linestyle="--",
               label="no-audio floor (highest mode)")
    ax.axhline(constant_bleu, color="grey", linestyle=":", label="one constant sentence")
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


# the modes the p-values compare against where --against is not given
DEFAULT_AGAINST = ("baseline", "fixed")


def parse_arguments(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepared pair directory (SPLIT.tsv)")
    p.add_argument("--subset", default="tst-COMMON")
    p.add_argument("--run", nargs=4, action="append", required=True,
                   metavar=("MODE", "SEED", "CHECKPOINT", "GENERATE_OUTPUT"))
    p.add_argument("--log", nargs=3, action="append", default=[],
                   metavar=("MODE", "SEED", "TRAIN_LOG"),
                   help="the fairseq training log of a run of --run (validation of "
                        "--selected-by and of --subset at each validation: the learning curve)")
    p.add_argument("--selected-by", default="dev",
                   help="the subset whose BLEU picked each run's checkpoint_best.pt")
    p.add_argument("--against", nargs="+", default=None, metavar="MODE",
                   help="modes the p-values compare against, a column each (each must be a "
                        "mode of --run; default: the dense baseline and attention top-k, "
                        "those of them the study holds)")
    p.add_argument("--out", required=True)
    p.add_argument("--reference-size", default="base", choices=REFERENCE_SIZES,
                   help="HuBERT size of the speedup column (tiny in tests)")
    p.add_argument("--repeats", type=whole_number_flag(1), default=3, help="timed passes per setting")
    p.add_argument("--timing-utterances", type=whole_number_flag(1), default=100,
                   help="the speedup column times the split's first N utterances (a "
                        "HuBERT-base pass over hundreds takes minutes per setting)")
    add_floor_flags(p)
    args = p.parse_args(argv)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        p.error(f"--out {args.out} exists and is not a directory")
    modes = [mode for mode, *_ in args.run]
    if args.against is None:
        args.against = [mode for mode in DEFAULT_AGAINST if mode in modes]
    named = {(mode, seed) for mode, seed, *_ in args.run}
    for mode, seed, log in args.log:
        if (mode, seed) not in named:
            p.error(f"--log {mode} {seed}: no --run {mode} {seed}")
        problem = file_problem(log)
        if problem is not None:
            p.error(f"--log {mode} {seed}: {log} {problem}")
    missing = [mode for mode in args.against if mode not in modes]
    if missing:
        p.error(f"--against {missing[0]}: not a mode of --run (modes: "
                f"{' '.join(dict.fromkeys(modes))})")
    return args


def measure_runs(args):
    """(runs, translations per (mode, seed), final setting per mode, the split's
    audio, kept counts per data-dependent setting, ``kept_frames`` of each
    mode's first seed)."""
    runs, found, settings, audios, kept, frames = [], {}, {}, None, {}, {}
    logs = {(mode, seed): log for mode, seed, log in args.log}
    for mode, seed_word, checkpoint, generate_output in args.run:
        try:
            seed = int(seed_word)
        except ValueError:
            sys.exit(f"study: --run {mode} {seed}: the seed must be a whole number")
        for path in (checkpoint, generate_output):
            problem = file_problem(path)
            if problem is not None:
                sys.exit(f"study: --run {mode} {seed}: {path} {problem}")
        try:
            check_written_by(generate_output, checkpoint)
            bleu = bleu_from_generate_output(generate_output)
            found[mode, seed] = translations(generate_output)
        except ValueError as e:
            sys.exit(f"study: {e}")
        try:
            heard = assess_run(args, checkpoint, *found[mode, seed])
        except ValueError as e:
            sys.exit(f"study: {e}")
        model, dataset, _ = load_st_model(checkpoint, args.data, args.subset)
        frames_in, frames_out = hubert_frames(model, dataset)
        setting = settings.setdefault(mode, model.encoder.hubert.encoder.final_setting)
        if mode not in frames:  # the first seed's model stands for the mode
            frames[mode] = kept_frames(model, dataset)
            if model.encoder.hubert.encoder.length_reduction.data_dependent_counts:
                # timed with its own counts: two modes of one setting may keep different
                # frames (ctc and its uncompressed control ctc_loss)
                kept[timing_key(setting, mode)] = kept_counts(frames[mode])
        if audios is None:
            audios = utterances(dataset)
        runs.append({"mode": mode, "seed": seed, "bleu": bleu,
                     "distinct": round(heard.distinct, 4),
                     "no_audio_bleu": round(heard.no_audio_bleu, 2), "listens": heard.listens,
                     "constant_bleu": heard.constant_bleu,
                     "frames_kept": round(frames_out / frames_in, 4),
                     "deltalm_frames_per_subword": round(
                         deltalm_frames_per_subword(model, dataset), 3),
                     "checkpoint": checkpoint,
                     "bleu_half_width": bleu_half_width(*found[mode, seed])})
        if (mode, seed_word) in logs:
            log = logs[mode, seed_word]
            try:
                with open(log, encoding="utf-8", errors="replace") as f:
                    runs[-1].update(read_off(f.read(), args.selected_by, args.subset,
                                             PLATEAU_SHARE))
            except ValueError as e:
                sys.exit(f"study: --log {mode} {seed}: {log}: {e}")
        print(f"{mode} seed {seed}: BLEU {bleu:.2f} ({listening_mark(heard)}: "
              f"{100 * heard.distinct:.0f} % distinct, no-audio {heard.no_audio_bleu:.2f}), "
              f"{100 * frames_out / frames_in:.1f} % of HuBERT frames kept",
              file=sys.stderr, flush=True)
    return runs, found, settings, audios, kept, frames


def timing_key(setting: tuple, mode: str) -> tuple:
    """The key a data-dependent mode's speedup is timed under: its setting and
    its name (``reference_speedups`` replays the counts kept under the key)."""
    return setting + (mode,)


def timing_keys(settings: Dict[str, tuple], kept: Dict[tuple, list]) -> Dict[str, tuple]:
    """Per mode, the key its speedup is timed under: its setting, or for a mode
    whose counts were kept (data-dependent) its own ``timing_key``."""
    return {mode: timing_key(setting, mode) if timing_key(setting, mode) in kept else setting
            for mode, setting in settings.items()}


def main(argv=None):
    args = parse_arguments(argv)
    runs, found, settings, audios, kept, frames = measure_runs(args)
    timed = audios[:args.timing_utterances]
    timing = timing_keys(settings, kept)
    speedups = reference_speedups(list(timing.values()), timed, args.reference_size,
                                  repeats=args.repeats,
                                  kept_counts={s: c[:len(timed)] for s, c in kept.items()})
    try:
        modes = summarise(runs, found, timing, speedups, args.against)
    except ValueError as e:
        sys.exit(f"study: {e}")
    constant_bleu = runs[0]["constant_bleu"]
    first = runs[0]
    train_bleu = decode(first["checkpoint"], args.data, "train", beam=args.beam,
                        lenpen=args.lenpen, max_tokens=args.max_tokens, cpu=args.cpu).bleu
    os.makedirs(args.out, exist_ok=True)
    write_text_atomically(os.path.join(args.out, "study.json"), json.dumps(
        {"runs": [{k: r[k] for k in RUN_KEYS + LOG_KEYS if k in r} for r in runs],
         "modes": [{k: m[k] for k in MODE_KEYS + MODE_LOG_KEYS if k in m} for m in modes],
         "train_bleu": {"mode": first["mode"], "seed": first["seed"], "bleu": train_bleu}},
        indent=1))
    memory = (f"{first['mode']} seed {first['seed']} translates the train split at "
              f"{train_bleu:.2f} BLEU, {args.subset} at {first['bleu']:.2f}.\n")
    table = (markdown(runs, modes, settings) + "\n" + floor_note(constant_bleu)
             + (curve_note(args.selected_by, args.subset) if args.log else "") + memory)
    write_text_atomically(os.path.join(args.out, "study.md"), (
        f"{args.subset}, {len(audios)} utterances; speedup: random-weight "
        f"HuBERT-{args.reference_size} on the first {len(timed)} of them, batch 1, "
        f"{torch.get_num_threads()} CPU threads\n\n" + table))
    plot(modes, constant_bleu, os.path.join(args.out, "study.png"))
    if args.log:
        plot_curves([(r["mode"], r["seed"], r["curve"], r["best_update"]) for r in runs
                     if "curve" in r], args.subset, os.path.join(args.out, "curves.png"))
    plot_positions(frames, os.path.join(args.out, "positions.png"))
    plot_frames_by_length(frames, os.path.join(args.out, "frames_by_length.png"))
    print(table)


if __name__ == "__main__":
    main()
