"""Choose the coverage of ``--token-reduction coverage`` on a development split:
the share C at which a trained checkpoint keeps (about) a target share of
HuBERT frames, so coverage can be compared with a keep rate at equal frames.

    python -m npy_tome_layer.tools.choose_coverage --checkpoint DENSE_CKPT --data DATA_DIR \\
        --subset dev (--target 0.309 | --match FIXED_CKPT) [--init-layer 0] [--tolerance 0.02]

The share of frames leaving HuBERT (each utterance alone, over the split)
grows with C, so C is found by bisection in (0, 1]; prints one line,
``coverage C frames F target T``, and fails unless |F - T| <= tolerance.
"""
import argparse
import sys

from ..errors import InputError, exit_on_input_error
from ..evaluation.decoding import load_st_model
from ..evaluation.timing import hubert_frames
from ..io.flags import keep_rate_flag, whole_number_flag
from ..reduction import reduction_defaults
from ..st.model import check_st_checkpoint


def frames_share(checkpoint, data, subset, overrides=None) -> float:
    model, dataset, _ = load_st_model(checkpoint, data, subset, overrides=overrides)
    frames_in, frames_out = hubert_frames(model, dataset)
    return frames_out / frames_in


def coverage_overrides(coverage: float, init_layer: int) -> dict:
    """The checkpoint's model at coverage C: every other reduction's settings at
    their defaults, the keep rate (and any schedule) held at 1."""
    return dict(reduction_defaults("coverage", pruning_coverage=coverage), pruning_rate=1.0,
                pruning_max_rate=1.0, pruning_min_rate=1.0, pruning_init_layer=init_layer)


def choose(checkpoint, data, subset, target, init_layer=0, steps=14, log=print):
    """(C, its frame share): the bisection's end closest to ``target``."""
    low, high = 0.0, 1.0
    tried = {1.0: frames_share(checkpoint, data, subset, coverage_overrides(1.0, init_layer))}
    for _ in range(steps):
        middle = round((low + high) / 2, 5)  # the value printed is the value measured
        tried[middle] = frames_share(checkpoint, data, subset,
                                     coverage_overrides(middle, init_layer))
        log(f"coverage {middle:.5f}: {100 * tried[middle]:.1f} % of frames")
        if tried[middle] < target:
            low = middle
        else:
            high = middle
    best = min(tried, key=lambda c: (abs(tried[c] - target), c))
    return best, tried[best]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="the trained model to choose C for")
    p.add_argument("--data", required=True, help="prepared pair directory (SPLIT.tsv)")
    p.add_argument("--subset", default="dev")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target", type=keep_rate_flag, help="share of frames to keep")
    target.add_argument("--match", metavar="CKPT",
                        help="keep the share this checkpoint keeps (at its own setting)")
    p.add_argument("--init-layer", type=whole_number_flag(0), default=0)
    p.add_argument("--tolerance", type=keep_rate_flag, default=0.02)
    args = p.parse_args(argv)
    with exit_on_input_error("choose_coverage"):
        check_st_checkpoint(args.checkpoint)
        if args.match:
            check_st_checkpoint(args.match)
        goal = args.target or frames_share(args.match, args.data, args.subset)
        coverage, share = choose(args.checkpoint, args.data, args.subset, goal, args.init_layer,
                                 log=lambda m: print(m, file=sys.stderr, flush=True))
        if abs(share - goal) > args.tolerance:
            raise InputError(f"no coverage keeps {100 * goal:.1f} % of frames within "
                             f"{100 * args.tolerance:g} points (closest: {coverage} keeps "
                             f"{100 * share:.1f} %)")
        print(f"coverage {coverage} frames {share:.4f} target {goal:.4f}")


if __name__ == "__main__":
    main()
