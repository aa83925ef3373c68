"""Say what a checkpoint file is, or check that it is a trained ST checkpoint
of this project (for a language pair) before a long job reads it:

    python -m npy_tome_layer.tools.inspect_checkpoint CKPT [--expect-st] [--tgt-lang de]

Prints one line: the task, the stage (ST / MT / HuBERT), the language pair,
the architecture, the updates and, for an ST checkpoint, its encoder's reduction
settings as it stores them (older checkpoints: the defaults they were trained with). With ``--expect-st`` anything else is one
error line and exit status 1 (``scripts/evaluate.sh`` runs this first).
"""
import argparse

from ..errors import exit_on_input_error
from ..reduction import ENCODER_SETTINGS, REDUCTIONS
from ..reduction.settings import TOKEN_REDUCTION
from ..io.checkpoints import checkpoint_model_args, checkpoint_task, load_checkpoint
from ..st.model import check_st_checkpoint, checkpoint_language


def describe(path: str, state: dict) -> str:
    task = checkpoint_task(state)
    args = checkpoint_model_args(state)
    history = state.get("optimizer_history") or [{}]
    if "model" not in state and "weights" in state:
        return f"{path}: released DeltaLM weights"
    stage = ("HuBERT" if task == "hubert_pretraining" else
             "ST" if getattr(args, "hubert_cfg", None) is not None else "MT")
    language = checkpoint_language(state)
    pair = f", en-{language}" if language else ""
    line = (f"{path}: task {task}, {stage} stage{pair}, arch {getattr(args, 'arch', '?')}, "
            f"{history[-1].get('num_updates', 0)} updates")
    if stage == "ST":
        line += f"; {reduction_description(args)}"
    return line


def reduction_description(args) -> str:
    """The encoder's settings that apply: every reduction's that are set and
    the chosen reduction's own (the declarations say which)."""
    name = TOKEN_REDUCTION.value_in(args)
    settings = [s for s in ENCODER_SETTINGS if s is not TOKEN_REDUCTION]
    settings += list(REDUCTIONS[name].settings) if name in REDUCTIONS else []
    values = [f"{s.name} {s.value_in(args)}" for s in settings if s.value_in(args) is not None]
    return f"token_reduction {name} ({', '.join(values)})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--expect-st", action="store_true",
                        help="fail unless it is a trained ST checkpoint of this project")
    parser.add_argument("--tgt-lang", help="with --expect-st: the pair it must be trained for")
    args = parser.parse_args(argv)
    with exit_on_input_error("inspect_checkpoint"):
        state = load_checkpoint(args.checkpoint)
        if args.expect_st:
            check_st_checkpoint(args.checkpoint, args.tgt_lang, state=state)
        print(describe(args.checkpoint, state))


if __name__ == "__main__":
    main()
