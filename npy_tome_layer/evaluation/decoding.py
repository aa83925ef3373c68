"""Trained ST checkpoints for the tools: loading one with settings changed,
decoding a subset through fairseq's own ``generate`` in this process (so the
BLEU is the one ``fairseq-generate --scoring sacrebleu`` prints; for tools that
decode one checkpoint many times with one setting changed), and reading
fairseq-generate's output files.
"""
import hashlib
import io
import os
import re
from contextlib import redirect_stdout
from typing import Dict, List, NamedTuple, Optional, Tuple

from ..errors import InputError

USER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLEU_LINE = re.compile(r"^Generate .*?BLEU = ([0-9.]+)", re.M)
HYPOTHESIS = re.compile(r"^D-(\d+)\t[^\t]*\t(.*)$", re.M)
REFERENCE = re.compile(r"^T-(\d+)\t(.*)$", re.M)
# the first line scripts/evaluate.sh writes: the digest of the checkpoint that
# decoded, so a tool can tell a generate output from another checkpoint's
CHECKPOINT_RECORD = re.compile(r"^# checkpoint sha256 ([0-9a-f]{64}) (.*)$", re.M)
# fairseq-generate's own log line, for outputs written without evaluate.sh
LOADED_FROM = re.compile(r"loading model\(s\) from (.*)$", re.M)


def file_digest(path: str) -> str:
    """sha256 of a file's bytes, read in 16 MiB blocks (a checkpoint is GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def last_parts(path: str, count: int = 2) -> list:
    return os.path.normpath(path).split(os.sep)[-count:]


def check_written_by(generate_output: str, checkpoint: str) -> None:
    """InputError unless ``generate_output`` was decoded by ``checkpoint``:
    evaluate.sh's record of the checkpoint's sha256 must match its bytes; an
    output without one is judged by fairseq's "loading model(s) from PATH" line
    (the same file where PATH resolves from here, else the same run folder and
    name). A BLEU read from another checkpoint's output would be reported as
    this one's."""
    with open(generate_output, encoding="utf-8", errors="replace") as f:
        text = f.read()
    record = CHECKPOINT_RECORD.search(text)
    if record is not None:
        if record.group(1) != file_digest(checkpoint):
            raise InputError(f"{generate_output} was decoded by {record.group(2)}, whose "
                             f"sha256 differs from {checkpoint}'s: not this checkpoint's output")
        return
    loaded = LOADED_FROM.search(text)
    if loaded is None:
        raise InputError(f"{generate_output}: cannot tell which checkpoint wrote it (no "
                         "'# checkpoint sha256' line nor fairseq's 'loading model(s) from' "
                         "line): decode with scripts/evaluate.sh")
    logged = loaded.group(1).strip()
    same = (os.path.samefile(logged, checkpoint) if os.path.exists(logged)
            else last_parts(logged) == last_parts(os.path.abspath(checkpoint)))
    if not same:
        raise InputError(f"{generate_output} was decoded by {logged}, not {checkpoint}")


def load_st_model(checkpoint: str, data: str, subset: str, overrides: Optional[Dict] = None):
    """(model in eval mode, the subset's dataset, task); ``overrides`` change
    model arguments before the model is built (e.g. the keep rate)."""
    from fairseq import checkpoint_utils

    import npy_tome_layer  # noqa: F401  (registers the task/model)

    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [checkpoint], arg_overrides={"data": data, **(overrides or {})})
    task.load_dataset(subset)
    return models[0].eval(), task.datasets[subset], task


def bleu_from_generate_output(path: str) -> float:
    with open(path, encoding="utf-8") as f:
        m = BLEU_LINE.search(f.read())
    if not m:
        raise InputError(f"{path}: no 'Generate ... BLEU = ' line (did fairseq-generate finish?)")
    return float(m.group(1))


def translations(generate_output: str) -> Tuple[List[str], List[str]]:
    """(hypotheses, references) of a fairseq-generate output, in sentence-id order."""
    with open(generate_output, encoding="utf-8") as f:
        return parse_translations(f.read(), generate_output)


def parse_translations(text: str, where: str) -> Tuple[List[str], List[str]]:
    """(hypotheses, references) of fairseq-generate's printed lines, by sentence id."""
    hyps = dict((int(i), h) for i, h in HYPOTHESIS.findall(text))
    refs = dict((int(i), r) for i, r in REFERENCE.findall(text))
    if not hyps or set(hyps) != set(refs):
        raise InputError(f"{where}: hypotheses and references of different "
                         f"sentences ({len(hyps)} D- lines, {len(refs)} T- lines)")
    ids = sorted(hyps)
    return [hyps[i] for i in ids], [refs[i] for i in ids]


def generate_args(checkpoint: str, data: str, subset: str, *, beam: int = 8,
                  lenpen: float = 1.0, max_tokens: int = 4000000, cpu: bool = False,
                  model_overrides: Optional[Dict] = None, replace_audio: Optional[str] = None):
    from fairseq import options

    argv = [data, "--user-dir", USER_DIR, "--task", "speech_and_text_translation",
            "--path", checkpoint, "--gen-subset", subset, "--beam", str(beam),
            "--lenpen", str(lenpen), "--max-tokens", str(max_tokens),
            "--scoring", "sacrebleu", "--required-batch-size-multiple", "1"]
    if cpu:
        argv.append("--cpu")
    if replace_audio:
        argv += ["--replace-audio", replace_audio]
    if model_overrides:
        argv += ["--model-overrides", repr(model_overrides)]
    parser = options.get_generation_parser()
    return options.parse_args_and_arch(parser, argv)


class Decoded(NamedTuple):
    bleu: float
    hypotheses: List[str]  # in sentence-id order
    references: List[str]


def decode(checkpoint: str, data: str, subset: str, **kwargs) -> Decoded:
    """sacreBLEU and the translations of one setting (``generate_args``'
    keywords); generate's per-sentence lines are read, not printed."""
    from fairseq_cli import generate

    args = generate_args(checkpoint, data, subset, **kwargs)
    printed = io.StringIO()
    with redirect_stdout(printed):
        bleu = generate.main(args).score()
    return Decoded(bleu, *parse_translations(printed.getvalue(), f"{checkpoint} on {subset}"))


def decode_bleu(checkpoint: str, data: str, subset: str, **kwargs) -> float:
    """sacreBLEU of one setting; generate's per-sentence lines are not printed."""
    return decode(checkpoint, data, subset, **kwargs).bleu
