"""Compare trained ST checkpoints: BLEU, HuBERT frames kept, encoder time.

  python -m npy_tome_layer.tools.compare_runs --data data/en-de --subset tst-COMMON \\
      --run dense=ckpt/st_baseline/avg.pt:ckpt/st_baseline/generate-avg.txt \\
      --run pruned=ckpt/st_fixed/avg.pt:ckpt/st_fixed/generate-avg.txt

BLEU is read from each run's fairseq-generate output (``scripts/evaluate.sh``
writes it), next to the floor it is read against (``evaluation/listening.py``):
the share of distinct hypotheses, the same checkpoint's BLEU with every
utterance's audio replaced by silence (decoded here with ``--beam``,
``--lenpen``: give evaluate.sh's), the BLEU of the training split's most
frequent target for every utterance, and whether the run listens. Frames and
times are measured here, now: every utterance of the
subset goes through the checkpoint's speech encoder one at a time (batch 1,
so no padding), ``--repeats`` times after one warm-up pass, the runs' passes
interleaved, and the median total is reported. Prints a markdown table.
"""
import argparse
import os
from typing import Dict, List, Optional

import torch

from ..io.flags import whole_number_flag
from ..errors import InputError, exit_on_input_error
from ..io.paths import check_existing_file
from ..evaluation.decoding import (bleu_from_generate_output, check_written_by, load_st_model,
                                   translations)
from ..evaluation.listening import (LISTENING_P, MIN_DISTINCT_SHARE, add_floor_flags,
                                    assess_run, listening_mark)
from ..evaluation.reference import REFERENCE_SIZES, reference_speedups, setting_label
from ..evaluation.timing import kept_counts, kept_frames, measure_interleaved, utterances
from ..st.model import check_st_checkpoint


def markdown_table(rows: List[Dict], baseline: Optional[str] = None) -> str:
    base = next((r for r in rows if r["name"] == baseline), rows[0])
    lines = ["| run | setting | BLEU | distinct hypotheses | no-audio BLEU | listens "
             "| HuBERT frames kept | frames into DeltaLM per target subword | HuBERT time (s) "
             "| speech encoder time (s) | encoder speedup | speedup at base size |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        bleu = "n/a" if r.get("bleu") is None else f"{r['bleu']:.2f}"
        heard = r.get("listening")
        lines.append(
            f"| {r['name']} | {setting_label(r['setting'])} | {bleu} "
            + ("| n/a | n/a " if heard is None else
               f"| {100 * heard.distinct:.0f} % | {heard.no_audio_bleu:.2f} ")
            + f"| {listening_mark(heard)} "
            f"| {r['frames_out']}/{r['frames_in']} ({100 * r['frames_out'] / r['frames_in']:.1f} %) "
            f"| {r['deltalm_frames_per_subword']:.2f} | {r['hubert_s']:.3f} | {r['encoder_s']:.3f} "
            f"| {base['encoder_s'] / r['encoder_s']:.2f}x | {r['base_speedup']:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="prepared data directory (SPLIT.tsv)")
    parser.add_argument("--subset", default="tst-COMMON")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=CKPT[:GENERATE_OUT]",
                        help="the first run is the speedup baseline")
    parser.add_argument("--repeats", type=whole_number_flag(1), default=3)
    parser.add_argument("--threads", type=whole_number_flag(1), default=None, help="torch.set_num_threads")
    add_floor_flags(parser)
    parser.add_argument("--reference-size", default="base", choices=REFERENCE_SIZES,
                        help="HuBERT size of the last column: a random-weight encoder of that "
                             "size on the same audio at each run's setting (tiny in tests)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with exit_on_input_error("compare_runs"):
        args.run = [parse_run(spec) for spec in args.run]
        names = [name for name, _, _ in args.run]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InputError(f"--run: name {repeated[0]} given {names.count(repeated[0])} "
                             "times; each run needs its own name (a table row each)")
        run(args)


def parse_run(spec: str):
    """(name, checkpoint, generate output or "") of ``--run NAME=CKPT[:GENERATE_OUT]``.
    A checkpoint's path may hold ':' itself: the whole text is the checkpoint
    where that file exists, else it splits at the one ':' whose left side is a
    file."""
    name, _, paths = spec.partition("=")
    if not name or not paths:
        raise InputError(f"--run {spec!r}: expected NAME=CHECKPOINT[:GENERATE_OUTPUT]")
    if os.path.isfile(paths) or ":" not in paths:
        ckpt, generate_out = paths, ""
    else:
        splits = [(paths[:i], paths[i + 1:]) for i, c in enumerate(paths) if c == ":"]
        found = [pair for pair in splits if os.path.isfile(pair[0])]
        if len(found) != 1:
            tried = " nor ".join(repr(left) for left, _ in splits)
            raise InputError(f"--run {name}: neither {paths!r} nor {tried} is a checkpoint "
                             "file (':' separates CHECKPOINT from GENERATE_OUTPUT)"
                             if not found else
                             f"--run {name}: {paths!r} splits at ':' into more than one "
                             "existing checkpoint; rename one")
        ckpt, generate_out = found[0]
    for path in filter(None, (ckpt, generate_out)):
        check_existing_file(path, f"--run {name}:")
    return name, ckpt, generate_out


def run(args):
    rows, pairs = [], []
    for name, ckpt, generate_out in args.run:
        check_st_checkpoint(ckpt)
        if generate_out:
            check_written_by(generate_out, ckpt)
        bleu = bleu_from_generate_output(generate_out) if generate_out else None
        heard = assess_run(args, ckpt, *translations(generate_out)) if generate_out else None
        model, dataset, _ = load_st_model(ckpt, args.data, args.subset)
        rows.append({"name": name, "bleu": bleu, "listening": heard})
        pairs.append((model, dataset))
    for row, measured in zip(rows, measure_interleaved(pairs, args.repeats)):
        row.update(measured)
    settings = [model.encoder.hubert.encoder.final_setting for model, _ in pairs]
    for row, (model, _), (reduction, value, init_layer) in zip(rows, pairs, settings):
        # a rate-driven model is shown at the rate it ran (a schedule may not have ended)
        by_rate = model.encoder.hubert.encoder.length_reduction.own_setting is None
        row["setting"] = (reduction, row["keep_rate"] if by_rate else value, init_layer)
    # a data-dependent reduction's counts at base size: those this model kept, replayed
    kept = {setting: kept_counts(kept_frames(model, dataset))
            for setting, (model, dataset) in zip(settings, pairs)
            if model.encoder.hubert.encoder.length_reduction.data_dependent_counts}
    dataset = pairs[0][1]
    audios = utterances(dataset)
    del pairs
    speedups = reference_speedups(settings, audios, args.reference_size, repeats=args.repeats,
                                  kept_counts=kept)
    for row, setting in zip(rows, settings):
        row["base_speedup"] = speedups[setting]
    r = rows[0]
    print(f"{args.subset}: {r['utterances']} utterances, {r['audio_s']:.1f} s of audio; batch 1, "
          f"median of {args.repeats} interleaved passes, {torch.get_num_threads()} CPU threads; "
          f"last column: random-weight HuBERT-{args.reference_size}, same audio and settings")
    constant = next((row["listening"] for row in rows if row["listening"]), None)
    if constant is not None:
        print(f"floors: no-audio BLEU = the same checkpoint decoding silence of each "
              f"utterance's length; the training split's most frequent target for every "
              f"utterance scores {constant.constant_bleu:.2f}; 'listens' = at least "
              f"{MIN_DISTINCT_SHARE:.0%} distinct hypotheses and above both floors "
              f"(paired approximate randomization, p < {LISTENING_P})")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
