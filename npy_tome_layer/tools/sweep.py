"""Prune a trained checkpoint at inference time: BLEU against encoder speedup.

    python -m npy_tome_layer.tools.sweep --checkpoint CKPT --data DATA_DIR --subset SPLIT \\
        --rates 1.0 0.95 0.9 0.85 0.8 --init-layers 0 4 [--coverages 0.95 0.9] --out OUT \\
        [--reductions prune uniform local merge adjacent fold] [--reference-size base] \\
        [--beam N] [--lenpen X] [--max-tokens N] [--cpu]

Decodes SPLIT once per (reduction, keep rate, init layer) - the reductions of
``--reductions``, by default the checkpoint's own - and per (coverage, init
layer) with ``--token-reduction coverage``, with the checkpoint's weights
and only the pruning overridden (no retraining; a schedule checkpoint is held
at the swept rate), through fairseq's own generate, so each BLEU is the number
``fairseq-generate --scoring sacrebleu`` prints for that setting (settings that
shorten nothing are the dense model, decoded once). Frames and
encoder times are measured on the speech encoder (HuBERT -> subsampler ->
DeltaLM encoder), batch 1, with the settings' timed passes interleaved (this
machine's speed drifts); with ``--reference-size`` also what the same settings
save in a random-weight HuBERT of that size on the same audio (the speedup at
base size of compare_runs and the study). Writes OUT/sweep.json (one record
per setting: reduction, rate, coverage (one of them null), init_layer, bleu,
frames_kept, deltalm_frames_per_subword, encoder_seconds, speedup, base_speedup (null without
--reference-size)), OUT/sweep.md and OUT/sweep.png (BLEU against the speedup at
base size where measured, else the checkpoint's own, one line per reduction and
init layer, the Pareto front of all settings, the checkpoint's own training
setting marked).
"""
import argparse
import json
import os
import statistics
import sys
from typing import Dict, List, Optional

from ..io.flags import finite_number_flag, keep_rate_flag, whole_number_flag
from ..reduction import (REDUCTIONS, TokenReduction, default_reduction, follows_rate,
                         reduction_defaults)
from ..errors import InputError, exit_on_input_error
from ..evaluation.decoding import decode, load_st_model
from ..evaluation.listening import (LISTENING_P, MIN_DISTINCT_SHARE, assess, listening_mark,
                                    no_audio_floor)
from ..evaluation.reference import REFERENCE_SIZES, reference_speedups
from ..evaluation.timing import kept_counts, kept_frames, measure_interleaved, utterances
from ..io.atomic import check_output_folder, write_text_atomically
from ..st.model import check_st_checkpoint, hubert_from_st_checkpoint


def pruning_overrides(rate: float, init_layer: int, trained: TokenReduction, coverage=None,
                      reduction: Optional[str] = None) -> Dict:
    """Model overrides of one setting: a keep rate for ``reduction`` (by
    default the checkpoint's own), or a coverage (the coverage reduction,
    keep rate 1). The checkpoint's reduction keeps its own settings unless
    one of them set its counts (a merge threshold, a coverage): a swept rate
    sets them, so that one is cleared, and a reduction that cannot run
    without it (coverage) gives way to ``prune`` (rate 1.0 is then the dense
    encoder). Another reduction comes with every other's settings at their
    defaults: each reduction refuses settings it does not read."""
    if coverage is not None:
        rate, swept, own = 1.0, "coverage", {"pruning_coverage": coverage}
    else:
        swept, own = reduction or trained.name, {}
        if swept == trained.name and trained.own_setting is not None \
                and default_reduction(swept) is None:
            swept = "prune"
    keeps_own = swept == trained.name and (coverage is not None or trained.own_setting is None)
    overrides = dict(own, token_reduction=swept) if keeps_own else reduction_defaults(swept, **own)
    # the schedule arch reads max/min rate; holding both at the rate pins it
    overrides.update(pruning_rate=rate, pruning_max_rate=rate, pruning_min_rate=rate,
                     pruning_init_layer=init_layer)
    return overrides


def check_rate_reductions(reductions) -> None:
    """``--reductions`` are swept over keep rates: each must read the rate and
    keep counts that follow from it at its default settings."""
    for name in reductions:
        if not follows_rate(default_reduction(name)):
            instead = " (sweep it with --coverages)" if name == "coverage" else ""
            raise InputError(f"--reductions {name}: the sweep varies the keep rate, which "
                             f"{name} does not follow{instead}")


def trained_encoder(checkpoint: str):
    """The checkpoint's HuBERT encoder as it ends its training: its reduction
    (``length_reduction``) and ``final_setting``."""
    return hubert_from_st_checkpoint(checkpoint).encoder


def trained_description(encoder) -> str:
    """What the encoder's training ended at, in words its own settings choose."""
    reduction, value, init_layer = encoder.final_setting
    own = encoder.length_reduction.own_setting
    if own is not None:  # its own number sets the counts, not the rate
        what = f"{reduction} with {own[0]} {value}"
    else:
        what = f"keep rate {value}" + ("" if reduction == "prune" else f" ({reduction})")
    return f"{what} from layer {init_layer}"


def sweep(checkpoint, data, subset, rates, init_layers, beam=8, lenpen=1.0,
          max_tokens=4000000, cpu=False, repeats=3, log=print, coverages=(),
          trained: Optional[TokenReduction] = None, reductions=(None,),
          reference_size: Optional[str] = None) -> List[Dict]:
    """One record per (reduction, rate, init layer) and (coverage, init layer);
    ``reductions``: names, None = the checkpoint's own; ``trained``: the
    checkpoint's reduction (read from it when not given)."""
    trained = trained or trained_encoder(checkpoint).length_reduction
    settings = [(red, r, None, i) for red in reductions for i in init_layers for r in rates] + [
        (None, None, c, i) for i in init_layers for c in coverages]

    def overrides(setting):
        reduction, rate, coverage, init = setting
        return pruning_overrides(rate, init, trained, coverage, reduction)

    pairs = [load_st_model(checkpoint, data, subset, overrides=overrides(s))[:2]
             for s in settings]
    encoders = [model.encoder.hubert.encoder for model, _ in pairs]
    records = [{"reduction": encoder.token_reduction, "rate": rate, "coverage": coverage,
                "init_layer": init, "frames_kept": m["frames_out"] / m["frames_in"],
                "deltalm_frames_per_subword": round(m["deltalm_frames_per_subword"], 3),
                "encoder_seconds": m["encoder_s"]}
               for (_, rate, coverage, init), encoder, m in zip(
                   settings, encoders, measure_interleaved(pairs, repeats))]
    base = base_size_speedups(records, pairs, reference_size) if reference_size else {}
    # a setting that shortens nothing is the dense model, whatever its reduction
    decoded_as = [encoder.final_setting if encoder.shortens() else "dense"
                  for encoder in encoders]
    del pairs, encoders
    dense, heard = {}, {}
    for record, setting, key in zip(records, settings, decoded_as):
        if key not in heard:  # each setting beside its own no-audio floor
            decode_args = dict(beam=beam, lenpen=lenpen, max_tokens=max_tokens, cpu=cpu,
                               model_overrides=overrides(setting))
            run = decode(checkpoint, data, subset, **decode_args)
            silent, constant = no_audio_floor(checkpoint, data, subset,
                                              os.path.join(data, "train.tsv"), **decode_args)
            heard[key] = assess(run.hypotheses, run.references, silent, constant)
        result = heard[key]
        record["bleu"] = round(result.bleu, 2)
        record["distinct"] = round(result.distinct, 4)
        record["no_audio_bleu"] = round(result.no_audio_bleu, 2)
        record["listens"] = result.listens
        record["constant_bleu"] = round(result.constant_bleu, 2)
        record["base_speedup"] = base.get(id(record))
        log(f"{record['reduction']} {setting_name(record)} from layer {record['init_layer']}: "
            f"BLEU {result.bleu:.2f} ({listening_mark(result)}, no-audio "
            f"{result.no_audio_bleu:.2f}), {100 * record['frames_kept']:.1f} % frames, "
            f"{record['encoder_seconds']:.3f} s")
        if key == "dense":
            dense[record["init_layer"]] = record["encoder_seconds"]
    dense_s = statistics.median(dense.values()) if dense else None
    for record in records:
        record["speedup"] = round(dense_s / record["encoder_seconds"], 3) if dense_s else None
    keys = ("reduction", "rate", "coverage", "init_layer", "bleu", "distinct", "no_audio_bleu",
            "listens", "constant_bleu", "frames_kept", "deltalm_frames_per_subword",
            "encoder_seconds", "speedup", "base_speedup")
    return [{k: r[k] for k in keys} for r in records]


def base_size_speedups(records, pairs, size: str) -> Dict[int, float]:
    """id(record) -> what its setting saves in a random-weight HuBERT of
    ``size`` on the subset's audio (``reference_speedups``); a data-dependent
    setting's counts are those the checkpoint kept, replayed."""
    settings = [(r["reduction"], r["coverage"] if r["coverage"] is not None else r["rate"],
                 r["init_layer"]) for r in records]
    replayed = {setting: kept_counts(kept_frames(model, dataset))
                for setting, (model, dataset) in zip(settings, pairs)
                if model.encoder.hubert.encoder.length_reduction.data_dependent_counts}
    speedups = reference_speedups(settings, utterances(pairs[0][1]), size,
                                  kept_counts=replayed)
    return {id(r): round(speedups[s], 3) for r, s in zip(records, settings)}


def setting_name(record) -> str:
    if record["coverage"] is not None:
        return f"coverage {record['coverage']:g}"
    return f"rate {record['rate']:g}"


def _times(value) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


# the table's columns, (header, cell of one record): a new column is one entry here
TABLE_COLUMNS = (
    ("setting", setting_name),
    ("reduction", lambda r: r["reduction"]),
    ("from layer", lambda r: f"{r['init_layer']}"),
    ("BLEU", lambda r: f"{r['bleu']:.2f}"),
    ("distinct hypotheses", lambda r: f"{100 * r['distinct']:.0f} %"),
    ("no-audio BLEU", lambda r: f"{r['no_audio_bleu']:.2f}"),
    ("listens", lambda r: "yes" if r["listens"] else "NO"),
    ("HuBERT frames kept", lambda r: f"{100 * r['frames_kept']:.1f} %"),
    ("frames into DeltaLM per target subword", lambda r: f"{r['deltalm_frames_per_subword']:.2f}"),
    ("encoder s", lambda r: f"{r['encoder_seconds']:.3f}"),
    ("speedup", lambda r: _times(r["speedup"])),
    ("speedup at base size", lambda r: _times(r["base_speedup"])),
)


def markdown(records, checkpoint, subset, trained: str, columns=TABLE_COLUMNS) -> str:
    """The sweep's table: a caption (``trained``: what the checkpoint's training
    ended at, ``trained_description``), then one row per record, one cell per column."""
    constant = f"{records[0]['constant_bleu']:.2f}" if records else "n/a"
    lines = [f"{checkpoint} on {subset} (trained at {trained}); speech "
             "encoder batch 1, median of interleaved passes; no-audio BLEU: the same setting "
             "decoding silence of each utterance's length; the training split's most frequent "
             f"target for every utterance scores {constant}; listens: at least "
             f"{MIN_DISTINCT_SHARE:.0%} distinct hypotheses and above both floors "
             f"(p < {LISTENING_P})",
             "", "| " + " | ".join(header for header, _ in columns) + " |",
             "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(r) for _, cell in columns) + " |" for r in records]
    return "\n".join(lines) + "\n"


def pareto_front(points):
    """The (speedup, BLEU) points no other point beats on both, by speedup."""
    front, best = [], float("-inf")
    for speedup, bleu in sorted(points, key=lambda p: (-p[0], -p[1])):
        if bleu > best:
            front.append((speedup, bleu))
            best = bleu
    return front[::-1]


def plot(records, trained, path) -> None:
    """BLEU against the speedup at base size (the checkpoint's own speedup where
    that was not measured): one line per reduction (coverage: per share) and
    init layer, the Pareto front of every setting, the trained setting (a
    final setting, or None) ringed."""
    from ..evaluation.plotting import pyplot, save_labelled

    x_key = "base_speedup" if all(r["base_speedup"] is not None for r in records) \
        else "speedup"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    shown = [r for r in records if r[x_key] is not None]
    curves = list(dict.fromkeys((r["reduction"], r["coverage"] is not None, r["init_layer"])
                                for r in shown))
    colours = {name: f"C{i}" for i, name in enumerate(dict.fromkeys(c[0] for c in curves))}
    inits = sorted({c[2] for c in curves})
    for reduction, by_coverage, init in curves:
        rows = sorted((r for r in shown if (r["reduction"], r["coverage"] is not None,
                                            r["init_layer"]) == (reduction, by_coverage, init)),
                      key=lambda r: r[x_key])
        ax.plot([r[x_key] for r in rows], [r["bleu"] for r in rows], color=colours[reduction],
                marker="os^vD<>"[inits.index(init) % 7], linestyle="--" if by_coverage else "-",
                label=f"{reduction} from layer {init}")
        for r in rows:
            value = r["coverage"] if by_coverage else r["rate"]
            ax.annotate(f"{value:g}", (r[x_key], r["bleu"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
            if trained is not None and (r["reduction"], value, r["init_layer"]) == tuple(trained):
                ax.scatter([r[x_key]], [r["bleu"]], s=160, facecolors="none",
                           edgecolors="red", zorder=5, label="trained setting")
    front = pareto_front([(r[x_key], r["bleu"]) for r in shown])
    if front:
        ax.plot(*zip(*front), color="0.5", linestyle=":", linewidth=2, zorder=0,
                label="Pareto front")
    x_label = ("speedup at base size (random-weight HuBERT) vs keep rate 1.0"
               if x_key == "base_speedup" else "speech encoder speedup vs keep rate 1.0")
    save_labelled(fig, ax, x_label, "BLEU", path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="prepared pair directory (SPLIT.tsv, config.yaml)")
    p.add_argument("--subset", default="tst-COMMON")
    p.add_argument("--rates", type=keep_rate_flag, nargs="+", default=[1.0, 0.95, 0.9, 0.85, 0.8])
    p.add_argument("--init-layers", type=whole_number_flag(0), nargs="+", default=[0, 4])
    p.add_argument("--coverages", type=keep_rate_flag, nargs="+", default=[],
                   help="also the coverage reduction at these shares of received attention")
    p.add_argument("--reductions", choices=list(REDUCTIONS), nargs="+", default=None,
                   help="reductions swept over --rates (default: the checkpoint's own)")
    p.add_argument("--reference-size", default=None, choices=REFERENCE_SIZES,
                   help="also time each setting in a random-weight HuBERT of this size (base, "
                        "large; tiny in tests) on the same audio: the plot's x axis")
    p.add_argument("--out", required=True)
    p.add_argument("--beam", type=whole_number_flag(1), default=8)
    p.add_argument("--lenpen", type=finite_number_flag, default=1.0)
    p.add_argument("--max-tokens", type=whole_number_flag(1), default=4000000)
    p.add_argument("--repeats", type=whole_number_flag(1), default=3, help="timed passes per setting")
    p.add_argument("--cpu", action="store_true")
    args = p.parse_args(argv)
    with exit_on_input_error("sweep"):
        run(args)


def run(args):
    for path in (args.checkpoint, os.path.join(args.data, f"{args.subset}.tsv")):
        if not os.path.isfile(path):
            raise InputError(f"{path} not found")
    check_output_folder(args.out, "--out")
    check_rate_reductions(args.reductions or ())
    check_st_checkpoint(args.checkpoint)
    encoder = trained_encoder(args.checkpoint)
    trained = encoder.final_setting
    records = sweep(args.checkpoint, args.data, args.subset, args.rates, args.init_layers,
                    args.beam, args.lenpen, args.max_tokens, args.cpu, args.repeats,
                    log=lambda m: print(m, file=sys.stderr, flush=True),
                    coverages=args.coverages, trained=encoder.length_reduction,
                    reductions=args.reductions or (None,),
                    reference_size=args.reference_size)
    os.makedirs(args.out, exist_ok=True)
    write_text_atomically(os.path.join(args.out, "sweep.json"), json.dumps(records, indent=1))
    table = markdown(records, args.checkpoint, args.subset, trained_description(encoder))
    write_text_atomically(os.path.join(args.out, "sweep.md"), table)
    # the trained setting is ringed where the sweep has it: a rate, or a coverage
    own = encoder.length_reduction.own_setting
    ringed = trained if own is None or own[0] == "pruning_coverage" else None
    plot(records, ringed, os.path.join(args.out, "sweep.png"))
    print(table)


if __name__ == "__main__":
    main()
