"""Paired tests between the modes of a study, from their fairseq-generate
outputs alone (no model is loaded): each mode's seeds pooled in seed order, as
``tools.study`` pools them, and sacreBLEU's paired approximate randomization
of each ``--pair MODE OTHER`` (the question the study's ``--against`` columns
do not ask, e.g. a compression against its own control).

    python -m npy_tome_layer.tools.paired \\
        --run ctc 1 ctc_seed1/generate-checkpoint_best.txt \\
        --run ctc 2 ctc_seed2/generate-checkpoint_best.txt \\
        --run ctc_loss 1 ... --run ctc_loss 2 ... --pair ctc ctc_loss

Prints a markdown table: per pair, each mode's BLEU of the pooled hypotheses,
the difference and p.
"""
import argparse
import sys

from ..errors import InputError
from ..evaluation.decoding import translations
from ..evaluation.listening import corpus_bleu, paired_p_values, pool_seeds
from ..io.paths import file_problem


def parse_arguments(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", nargs=3, action="append", required=True,
                   metavar=("MODE", "SEED", "GENERATE_OUTPUT"))
    p.add_argument("--pair", nargs=2, action="append", required=True, metavar=("MODE", "OTHER"),
                   help="test MODE against OTHER (each a mode of --run)")
    args = p.parse_args(argv)
    modes = {mode for mode, _, _ in args.run}
    for pair in args.pair:
        for mode in pair:
            if mode not in modes:
                p.error(f"--pair {' '.join(pair)}: {mode} is not a mode of --run "
                        f"(modes: {' '.join(sorted(modes))})")
        if pair[0] == pair[1]:
            p.error(f"--pair {' '.join(pair)}: a mode against itself")
    for mode, seed, path in args.run:
        if not seed.isdigit():
            p.error(f"--run {mode} {seed}: the seed must be a whole number")
        problem = file_problem(path)
        if problem is not None:
            p.error(f"--run {mode} {seed}: {path} {problem}")
    return args


def main(argv=None):
    args = parse_arguments(argv)
    try:
        pooled, references = pool_seeds({(mode, int(seed)): translations(path)
                                         for mode, seed, path in args.run})
    except (ValueError, InputError) as e:
        sys.exit(f"paired: {e}")
    print("| mode | other | BLEU (seeds pooled) | other's BLEU | difference | p |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mode, other in args.pair:
        p = paired_p_values({other: pooled[other], mode: pooled[mode]}, references, other)[mode]
        bleu, other_bleu = (corpus_bleu(pooled[m], references) for m in (mode, other))
        print(f"| {mode} | {other} | {bleu:.2f} | {other_bleu:.2f} | {bleu - other_bleu:+.2f} | "
              f"{p:.4f} |")


if __name__ == "__main__":
    main()
