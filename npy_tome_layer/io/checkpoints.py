"""Reading fairseq checkpoints under torch >= 2.6, and failing clearly when a
file is not one.

torch 2.6 changed ``torch.load`` to ``weights_only=True``, whose unpickler
refuses any class it does not know. fairseq pickles two: ``argparse.Namespace``
(the legacy ``args`` of older checkpoints, HuBERT's and DeltaLM's among them,
and ``cfg.model`` of models with legacy args) and ``fairseq.data.Dictionary``
(HuBERT's ``task_state``). ``SAFE_GLOBALS`` allow-lists exactly those instead of
passing ``weights_only=False`` everywhere: any other pickled object in a
checkpoint still raises, so opening a downloaded file cannot run arbitrary code.
``fairseq_patches.py`` installs the list and makes fairseq's loader use the
checks here.
"""
import argparse
import os
import zipfile
from typing import Mapping, Optional

import torch

from fairseq import checkpoint_utils
from fairseq.data.dictionary import Dictionary

from ..errors import InputError
from .paths import file_problem

SAFE_GLOBALS = [argparse.Namespace, Dictionary]


class CheckpointError(InputError):
    """A file given as a checkpoint could not be read as one."""


def check_checkpoint_file(path: str) -> None:
    """Cheap sanity check before unpickling: torch writes either a zip archive
    (torch >= 1.6) or a legacy pickle stream, which starts with PROTO (0x80).
    A text file or a truncated zip otherwise fails deep in torch with a
    KeyError or a miniz message that names no file."""
    problem = file_problem(path)
    if problem is not None:
        raise CheckpointError(f"{path}: checkpoint file {problem}")
    if zipfile.is_zipfile(path):
        return
    with open(path, "rb") as f:
        head = f.read(2)
    if not head:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    if head[:1] != b"\x80":
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (neither a zip archive nor a "
            "pickle stream; truncated download or a text file?)"
        )


def not_a_checkpoint(path: str, state) -> Optional[CheckpointError]:
    """The error for a file that unpickles to something other than a dict (a
    list, a tensor, None), or None: fairseq indexes it by key and fails with
    ``list indices must be integers``, naming no file."""
    if isinstance(state, dict):
        return None
    return CheckpointError(f"{path}: not a fairseq checkpoint (it holds a value of type "
                           f"{type(state).__name__}, not a dict)")


def weight_tables(state: dict):
    """The tensor tables of a checkpoint: a training checkpoint's ``model``, a
    released weights file's ``weights`` (DeltaLM's format)."""
    return [state[key] for key in ("model", "weights") if isinstance(state.get(key), Mapping)]


def is_finite_tensor(value: torch.Tensor) -> bool:
    """Whether every element is finite. A sum is finite only if every element
    is (NaN and inf carry through it), and takes one pass without the bool copy
    of ``isfinite``: HuBERT base's 95M weights in 0.7-1.0 s against 3.9-5.3 s
    (2-core VM at load 8, 2026-12-06). A sum that overflows is checked
    element-wise."""
    return bool(torch.isfinite(value.sum())) or bool(torch.isfinite(value).all())


def first_non_finite_tensor(weights: Mapping) -> Optional[str]:
    """The name of the first floating-point tensor holding NaN or inf, or None."""
    return next((name for name, value in weights.items()
                 if torch.is_tensor(value) and value.is_floating_point()
                 and not is_finite_tensor(value)), None)


def check_finite_weights(path: str, state: dict) -> None:
    """A checkpoint whose weights hold NaN or inf (a diverged run, a damaged
    file) would load and give NaN features and translations: refused, naming
    the first such tensor."""
    for weights in weight_tables(state):
        broken = first_non_finite_tensor(weights)
        if broken is not None:
            raise CheckpointError(f"{path}: tensor {broken} holds NaN or inf (a diverged run "
                                  "or a damaged file)")


def check_shapes(expected: Mapping, weights: Mapping, path: str) -> None:
    """Every tensor of ``weights`` that the model has is shaped as the model's
    (``expected``: its state dict), else one line naming the file and the
    tensor; torch's own error names neither file nor first tensor."""
    for name, value in weights.items():
        if name in expected and torch.is_tensor(value) and value.shape != expected[name].shape:
            raise CheckpointError(f"{path}: tensor {name} has shape {tuple(value.shape)}, the "
                                  f"model's is {tuple(expected[name].shape)} (a file of "
                                  "another size or architecture than its config says?)")


def newest_readable_checkpoint(directory: str, exclude: str):
    """The most recently written checkpoint*.pt in directory that looks whole."""
    candidates = []
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith("checkpoint") and name.endswith(".pt") and path != exclude:
            try:
                check_checkpoint_file(path)
            except CheckpointError:
                continue
            candidates.append((os.path.getmtime(path), path))
    return max(candidates)[1] if candidates else None


def resume_hint(path: str) -> str:
    """For an unreadable checkpoint_last.pt: where training can resume from."""
    if os.path.basename(path) != "checkpoint_last.pt":
        return ""
    newest = newest_readable_checkpoint(os.path.dirname(os.path.abspath(path)),
                                        os.path.abspath(path))
    if newest is None:
        return "; no other readable checkpoint in its directory"
    return (f"; the newest readable checkpoint is {newest}: resume from it with "
            f"--restore-file {newest} (or move the broken file away)")


def checkpoint_task(state: dict):
    """The task a fairseq checkpoint was trained with: ``cfg.task._name`` (a
    DictConfig in HuBERT files; a legacy Namespace keeps it under ``task``), or
    None where the file records none."""
    cfg = state.get("cfg") if isinstance(state, dict) else None
    task_cfg = cfg.get("task") if hasattr(cfg, "get") else None
    if task_cfg is None and isinstance(state, dict) and state.get("args") is not None:
        return getattr(state["args"], "task", None)
    return (task_cfg.get("_name") if hasattr(task_cfg, "get")
            else getattr(task_cfg, "_name", None) or getattr(task_cfg, "task", None))


def checkpoint_model_args(state: dict):
    """``cfg.model`` (or legacy ``args``) of a training checkpoint, or None."""
    cfg = state.get("cfg") if isinstance(state, dict) else None
    model = cfg.get("model") if hasattr(cfg, "get") else None
    return model if model is not None else (state.get("args") if isinstance(state, dict)
                                            else None)


def checkpoint_path(path) -> str:
    """A str, bytes or os.PathLike path as the str fairseq's reader takes."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise InputError(f"a checkpoint path must be a str or os.PathLike, got "
                         f"{type(path).__name__}")
    return os.fsdecode(path)


def load_checkpoint(path) -> dict:
    """Read a fairseq-format checkpoint (``checkpoint_path``) onto the CPU, with a
    path-naming error."""
    return checkpoint_utils.load_checkpoint_to_cpu(checkpoint_path(path))
