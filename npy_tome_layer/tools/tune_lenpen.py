"""Re-tune the length penalty of one language on dev.

The values in ``configs/lenpen.tsv`` are CRESS's, tuned for its 10k-unit
vocabulary; DeltaLM's has 250k, so its hypotheses are shorter in tokens and
may want another penalty. This decodes SUBSET once per candidate (beam 8 by
default, as evaluation), prints BLEU per penalty and the best, and writes the
best into the table only with ``--write``.

    python -m npy_tome_layer.tools.tune_lenpen --checkpoint CKPT --data DATA_DIR \
        --tgt-lang de [--subset dev] [--lenpens 0.6 0.8 1.0 1.2 1.4 1.6 1.8] \
        [--write configs/lenpen.tsv]
"""
import argparse
import os
import sys

from ..io.flags import finite_number_flag, whole_number_flag
from ..errors import InputError, exit_on_input_error
from ..evaluation.decoding import decode_bleu
from ..io.atomic import check_output_file, write_text_atomically
from ..io.paths import check_existing_file
from ..st.model import check_st_checkpoint

LANGS = ("de", "es", "fr", "it", "nl", "pt", "ro", "ru")


def table_lines(path: str) -> list:
    """The lines of a length-penalty table (none where it does not exist yet),
    checked as evaluate.sh reads them: fields split at blanks (awk's rule: a
    tab or spaces), at most one row per language. Checked before the decoding,
    so a table that cannot take the result fails at once."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"--write {path}: not UTF-8 text (byte 0x{data[e.start]:02x} at "
                         f"offset {e.start})") from None
    seen = {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] in seen:
            raise InputError(f"--write {path}: lines {seen[fields[0]]} and {number} are both "
                             f"rows of {fields[0]} (evaluate.sh needs one)")
        seen[fields[0]] = number
    return lines


def update_table(path: str, lang: str, lenpen: float) -> None:
    """Replace (or add) the language's row; other rows and comments stay."""
    lines = table_lines(path)
    row = f"{lang}\t{lenpen:g}"
    for i, line in enumerate(lines):
        if line.split()[:1] == [lang]:
            lines[i] = row
            break
    else:
        lines.append(row)
    write_text_atomically(path, "\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="prepared pair directory (SPLIT.tsv, config.yaml)")
    p.add_argument("--tgt-lang", required=True, choices=LANGS)
    p.add_argument("--subset", default="dev")
    p.add_argument("--lenpens", type=finite_number_flag, nargs="+",
                   default=[0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8])
    p.add_argument("--beam", type=whole_number_flag(1), default=8)
    p.add_argument("--max-tokens", type=whole_number_flag(1), default=4000000)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--write", metavar="TSV", help="put the best penalty into this table")
    args = p.parse_args(argv)
    with exit_on_input_error("tune_lenpen"):
        run(args)


def run(args):
    for path in (args.checkpoint, os.path.join(args.data, f"{args.subset}.tsv")):
        check_existing_file(path, "")
    if args.write:
        check_output_file(args.write, "--write")
        table_lines(args.write)
    check_st_checkpoint(args.checkpoint, args.tgt_lang)

    scores = []
    for lenpen in args.lenpens:
        bleu = decode_bleu(args.checkpoint, args.data, args.subset, beam=args.beam,
                           lenpen=lenpen, max_tokens=args.max_tokens, cpu=args.cpu)
        scores.append((lenpen, bleu))
        print(f"lenpen {lenpen:g}: BLEU {bleu:.2f}", file=sys.stderr, flush=True)
    best = max(scores, key=lambda s: s[1])  # the first of equal scores: the smallest tried
    print(f"en-{args.tgt_lang} {args.subset}, beam {args.beam}, {args.checkpoint}")
    print("| lenpen | BLEU |\n| --- | --- |")
    for lenpen, bleu in scores:
        print(f"| {lenpen:g}{' (best)' if (lenpen, bleu) == best else ''} | {bleu:.2f} |")
    if args.write:
        update_table(args.write, args.tgt_lang, best[0])
        print(f"wrote {args.tgt_lang}\t{best[0]:g} to {args.write}")


if __name__ == "__main__":
    main()
