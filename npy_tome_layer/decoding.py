"""fairseq-generate in this process: one subset of one checkpoint -> sacreBLEU.

Runs fairseq's own ``generate`` (so the number is the one ``fairseq-generate
--scoring sacrebleu`` prints) for tools that decode the same checkpoint many
times with one setting changed (length penalty, keep rate).
"""
import io
import os
from contextlib import redirect_stdout
from typing import Dict, Optional

USER_DIR = os.path.dirname(os.path.abspath(__file__))


def generate_args(checkpoint: str, data: str, subset: str, *, beam: int = 8,
                  lenpen: float = 1.0, max_tokens: int = 4000000, cpu: bool = False,
                  model_overrides: Optional[Dict] = None):
    from fairseq import options

    argv = [data, "--user-dir", USER_DIR, "--task", "speech_and_text_translation",
            "--path", checkpoint, "--gen-subset", subset, "--beam", str(beam),
            "--lenpen", str(lenpen), "--max-tokens", str(max_tokens),
            "--scoring", "sacrebleu", "--required-batch-size-multiple", "1"]
    if cpu:
        argv.append("--cpu")
    if model_overrides:
        argv += ["--model-overrides", repr(model_overrides)]
    parser = options.get_generation_parser()
    return options.parse_args_and_arch(parser, argv)


def decode_bleu(checkpoint: str, data: str, subset: str, **kwargs) -> float:
    """sacreBLEU of one setting; generate's per-sentence lines are not printed."""
    from fairseq_cli import generate

    args = generate_args(checkpoint, data, subset, **kwargs)
    with redirect_stdout(io.StringIO()):
        return generate.main(args).score()
