"""Say what a checkpoint file is, or check that it is a trained ST checkpoint
of this project (for a language pair) before a long job reads it:

    python -m npy_tome_layer.tools.inspect_checkpoint CKPT [--expect-st] [--tgt-lang de]

Prints one line: the task, the stage (ST / MT / HuBERT), the language pair,
the architecture and the updates. With ``--expect-st`` anything else is one
error line and exit status 1 (``scripts/evaluate.sh`` runs this first).
"""
import argparse

from ..errors import exit_on_input_error
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
    return (f"{path}: task {task}, {stage} stage{pair}, arch {getattr(args, 'arch', '?')}, "
            f"{history[-1].get('num_updates', 0)} updates")


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
