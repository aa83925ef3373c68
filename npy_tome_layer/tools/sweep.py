"""Prune a trained checkpoint at inference time: BLEU against encoder speedup.

    python -m npy_tome_layer.tools.sweep --checkpoint CKPT --data DATA_DIR --subset SPLIT \\
        --rates 1.0 0.95 0.9 0.85 0.8 --init-layers 0 4 [--coverages 0.95 0.9] --out OUT \\
        [--beam N] [--lenpen X] [--max-tokens N] [--cpu]

Decodes SPLIT once per (keep rate, init layer), and per (coverage, init layer)
with ``--token-reduction coverage``, with the checkpoint's weights
and only the pruning overridden (no retraining; a schedule checkpoint is held
at the swept rate), through fairseq's own generate, so each BLEU is the number
``fairseq-generate --scoring sacrebleu`` prints for that setting. Frames and
encoder times are measured on the speech encoder (HuBERT -> subsampler ->
DeltaLM encoder), batch 1, with the settings' timed passes interleaved (this
machine's speed drifts). Writes OUT/sweep.json (one record per setting: rate,
coverage (one of them null), init_layer, bleu, frames_kept, encoder_seconds,
speedup), OUT/sweep.md and
OUT/sweep.png (BLEU against speedup, one curve per init layer, the
checkpoint's own training rate marked).
"""
import argparse
import json
import os
import statistics
import sys
from typing import Dict, List

from ..io.flags import finite_number_flag, keep_rate_flag, whole_number_flag
from ..reduction import REDUCTIONS
from ..errors import InputError, exit_on_input_error
from ..evaluation.decoding import decode_bleu, load_st_model
from ..evaluation.timing import measure_interleaved
from ..io.atomic import check_output_folder, write_text_atomically
from ..st.model import check_st_checkpoint, hubert_from_st_checkpoint


def pruning_overrides(rate: float, init_layer: int, coverage=None,
                      trained_reduction: str = "prune") -> Dict:
    """Model overrides of one setting: a keep rate (the checkpoint's own
    reduction; ``prune`` for a checkpoint of a reduction that sets its own
    counts, so rate 1.0 is the dense encoder), or a coverage (the coverage
    reduction, keep rate 1). The other reductions' own options are cleared:
    each reduction refuses options it does not read."""
    sets_own_counts = REDUCTIONS[trained_reduction].data_dependent_counts
    if coverage is not None:
        rate = 1.0
    # the schedule arch reads max/min rate; holding both at the rate pins it
    overrides = {"pruning_rate": rate, "pruning_max_rate": rate, "pruning_min_rate": rate,
                 "pruning_init_layer": init_layer}
    if coverage is not None:
        overrides.update(token_reduction="coverage", pruning_coverage=coverage,
                         pruning_window=None)
        if trained_reduction != "coverage":
            overrides["pruning_min_keep_rate"] = 0.0
    elif sets_own_counts:
        overrides.update(token_reduction="prune", pruning_coverage=None,
                         pruning_min_keep_rate=0.0)
    return overrides


def trained_setting(checkpoint: str):
    """(reduction, keep rate or its own number, init layer) the checkpoint was
    trained to end at."""
    return hubert_from_st_checkpoint(checkpoint).encoder.final_setting


def trained_description(trained) -> str:
    reduction, value, init_layer = trained
    if REDUCTIONS[reduction].data_dependent_counts:  # value is its own number, not a rate
        what = f"{reduction} {value}"
    else:
        what = f"keep rate {value}" + ("" if reduction == "prune" else f" ({reduction})")
    return f"{what} from layer {init_layer}"


def sweep(checkpoint, data, subset, rates, init_layers, beam=8, lenpen=1.0,
          max_tokens=4000000, cpu=False, repeats=3, log=print, coverages=(),
          trained_reduction="prune") -> List[Dict]:
    settings = [(r, None, i) for i in init_layers for r in rates] + [
        (None, c, i) for i in init_layers for c in coverages]
    pairs = []
    for rate, coverage, init in settings:
        model, dataset, _ = load_st_model(checkpoint, data, subset,
                                          overrides=pruning_overrides(rate, init, coverage,
                                                                      trained_reduction))
        pairs.append((model, dataset))
    records = [{"rate": rate, "coverage": coverage, "init_layer": init,
                "frames_kept": m["frames_out"] / m["frames_in"], "encoder_seconds": m["encoder_s"]}
               for (rate, coverage, init), m in zip(settings,
                                                    measure_interleaved(pairs, repeats))]
    del pairs
    dense = {}
    for record in records:
        bleu = decode_bleu(checkpoint, data, subset, beam=beam, lenpen=lenpen,
                           max_tokens=max_tokens, cpu=cpu,
                           model_overrides=pruning_overrides(record["rate"],
                                                             record["init_layer"],
                                                             record["coverage"],
                                                             trained_reduction))
        record["bleu"] = round(bleu, 2)
        log(f"{setting_name(record)} from layer {record['init_layer']}: BLEU {bleu:.2f}, "
            f"{100 * record['frames_kept']:.1f} % frames, {record['encoder_seconds']:.3f} s")
        if record["rate"] == 1.0:
            dense[record["init_layer"]] = record["encoder_seconds"]
    dense_s = statistics.median(dense.values()) if dense else None
    for record in records:
        record["speedup"] = round(dense_s / record["encoder_seconds"], 3) if dense_s else None
    keys = ("rate", "coverage", "init_layer", "bleu", "frames_kept", "encoder_seconds",
            "speedup")
    return [{k: r[k] for k in keys} for r in records]


def setting_name(record) -> str:
    if record["coverage"] is not None:
        return f"coverage {record['coverage']:g}"
    return f"rate {record['rate']:g}"


def markdown(records, checkpoint, subset, trained) -> str:
    lines = [f"{checkpoint} on {subset} (trained at {trained_description(trained)}); speech "
             "encoder batch 1, median of interleaved passes",
             "", "| setting | from layer | BLEU | HuBERT frames kept | encoder s | speedup |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in records:
        speedup = "n/a" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        lines.append(f"| {setting_name(r)} | {r['init_layer']} | {r['bleu']:.2f} "
                     f"| {100 * r['frames_kept']:.1f} % | {r['encoder_seconds']:.3f} "
                     f"| {speedup} |")
    return "\n".join(lines) + "\n"


def plot(records, trained, path) -> None:
    from ..evaluation.plotting import pyplot, save_labelled

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = sorted({(r["init_layer"], r["coverage"] is not None) for r in records})
    for init, by_coverage in curves:
        rows = [r for r in records if r["init_layer"] == init and r["speedup"] is not None
                and (r["coverage"] is not None) == by_coverage]
        rows.sort(key=lambda r: r["speedup"])
        ax.plot([r["speedup"] for r in rows], [r["bleu"] for r in rows],
                marker="s" if by_coverage else "o", linestyle="--" if by_coverage else "-",
                label=f"{'coverage' if by_coverage else 'keep rate'} from layer {init}")
        for r in rows:
            value = r["coverage"] if by_coverage else r["rate"]
            ax.annotate(f"{value:g}", (r["speedup"], r["bleu"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
            if (by_coverage == REDUCTIONS[trained[0]].data_dependent_counts
                    and (value, r["init_layer"]) == tuple(trained[1:])):
                ax.scatter([r["speedup"]], [r["bleu"]], s=160, facecolors="none",
                           edgecolors="red", zorder=5, label="trained setting")
    save_labelled(fig, ax, "speech encoder speedup vs keep rate 1.0", "BLEU", path)


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
    check_st_checkpoint(args.checkpoint)
    trained = trained_setting(args.checkpoint)
    records = sweep(args.checkpoint, args.data, args.subset, args.rates, args.init_layers,
                    args.beam, args.lenpen, args.max_tokens, args.cpu, args.repeats,
                    log=lambda m: print(m, file=sys.stderr, flush=True),
                    coverages=args.coverages, trained_reduction=trained[0])
    os.makedirs(args.out, exist_ok=True)
    write_text_atomically(os.path.join(args.out, "sweep.json"), json.dumps(records, indent=1))
    table = markdown(records, args.checkpoint, args.subset, trained)
    write_text_atomically(os.path.join(args.out, "sweep.md"), table)
    plot(records, trained, os.path.join(args.out, "sweep.png"))
    print(table)


if __name__ == "__main__":
    main()
