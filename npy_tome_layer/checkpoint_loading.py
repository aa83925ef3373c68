"""Make fairseq checkpoints load under torch >= 2.6, and fail clearly when they can't.

torch 2.6 changed ``torch.load`` to ``weights_only=True``, whose unpickler
refuses any class it does not know. fairseq pickles two: ``argparse.Namespace``
(the legacy ``args`` of older checkpoints, HuBERT's and DeltaLM's among them,
and ``cfg.model`` of models with legacy args) and ``fairseq.data.Dictionary``
(HuBERT's ``task_state``). We allow-list exactly those instead of passing
``weights_only=False`` everywhere: any other pickled object in a checkpoint
still raises, so opening a downloaded file cannot run arbitrary code.

``load_checkpoint_to_cpu`` is also wrapped so an unreadable file names its path;
torch's own error ("invalid load key, 'x'") does not. And fairseq's upgrade step
assumes a training checkpoint (it reads ``best_loss`` when there is no
``optimizer_history``), so a bare released-weights file such as
``deltalm-base.pt`` (``{"weights": ...}``) is passed through untouched.
"""
import argparse
import contextlib
import functools
import glob
import os
import pickle
import shutil
import zipfile

import torch
from fairseq import checkpoint_utils
from fairseq.data.dictionary import Dictionary
from fairseq.file_io import PathManager

SAFE_GLOBALS = [argparse.Namespace, Dictionary]


class CheckpointError(RuntimeError):
    """A file given as a checkpoint could not be read as one."""


def check_checkpoint_file(path: str) -> None:
    """Cheap sanity check before unpickling: torch writes either a zip archive
    (torch >= 1.6) or a legacy pickle stream, which starts with PROTO (0x80).
    A text file or a truncated zip otherwise fails deep in torch with a
    KeyError or a miniz message that names no file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file does not exist")
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


def _wrap_with_path(load):
    @functools.wraps(load)
    def load_checkpoint_to_cpu(path, *args, **kwargs):
        try:
            # a path behind one of fairseq's PathManager handlers (http, ...) is
            # checked where the handler puts it, as fairseq's loader reads it
            check_checkpoint_file(PathManager.get_local_path(path) if "://" in path else path)
            try:
                return load(path, *args, **kwargs)
            except (pickle.UnpicklingError, EOFError, RuntimeError) as e:
                if isinstance(e, RuntimeError) and "zip archive" not in str(e):
                    raise
                detail = next(
                    (ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln),
                    str(e).splitlines()[0] if str(e) else type(e).__name__,
                )
                raise CheckpointError(f"{path}: cannot unpickle checkpoint: {detail}") from e
        except CheckpointError as e:
            hint = _resume_hint(path) if os.path.exists(path) else ""
            if not hint:
                raise
            raise CheckpointError(f"{e}{hint}") from e

    return load_checkpoint_to_cpu


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


def _resume_hint(path: str) -> str:
    if os.path.basename(path) != "checkpoint_last.pt":
        return ""
    newest = newest_readable_checkpoint(os.path.dirname(os.path.abspath(path)),
                                        os.path.abspath(path))
    if newest is None:
        return "; no other readable checkpoint in its directory"
    return (f"; the newest readable checkpoint is {newest}: resume from it with "
            f"--restore-file {newest} (or move the broken file away)")


def _atomic_local_copy(copy):
    """fairseq saves checkpoint_N.pt atomically but then *copies* it over
    checkpoint_last.pt / checkpoint_best.pt in place, so a kill during the
    copy truncated a good file. Local copies now go to a temporary name first."""
    def atomic_copy(src_path, dst_path, overwrite=False):
        if "://" in src_path or "://" in dst_path:
            return copy(src_path, dst_path, overwrite=overwrite)
        if os.path.exists(dst_path) and not overwrite:
            return False
        # one trainer writes a save dir: temporaries of earlier, killed copies are stale
        for stale in glob.glob(glob.escape(dst_path) + ".tmp-*"):
            os.remove(stale)
        with atomic_destination(dst_path) as tmp:
            shutil.copyfile(src_path, tmp)
        return True

    return atomic_copy


def _no_leftover_on_error(save):
    """fairseq writes FILE.tmp and renames it; a failed write left FILE.tmp."""
    @functools.wraps(save)
    def torch_persistent_save(obj, filename, *args, **kwargs):
        try:
            return save(obj, filename, *args, **kwargs)
        except BaseException:
            if isinstance(filename, str) and os.path.exists(filename + ".tmp"):
                os.remove(filename + ".tmp")
            raise

    return torch_persistent_save


def _pass_through_weight_files(upgrade):
    @functools.wraps(upgrade)
    def _upgrade_state_dict(state):
        if "weights" in state and "model" not in state and "optimizer_history" not in state:
            return state
        return upgrade(state)

    return _upgrade_state_dict


def _wrap_once(owner, name: str, wrap, static: bool = False) -> None:
    """Replace ``owner.name`` by ``wrap(owner.name)`` unless that was done
    already (the package may be imported again through --user-dir)."""
    current = getattr(owner, name)
    if getattr(current, "_npy_tome_layer_wrapper", False):
        return
    wrapped = wrap(current)
    wrapped._npy_tome_layer_wrapper = True
    setattr(owner, name, staticmethod(wrapped) if static else wrapped)


def install() -> None:
    """Idempotent; called once on ``import npy_tome_layer``."""
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
    _wrap_once(checkpoint_utils, "_upgrade_state_dict", _pass_through_weight_files)
    _wrap_once(checkpoint_utils, "load_checkpoint_to_cpu", _wrap_with_path)
    _wrap_once(checkpoint_utils, "torch_persistent_save", _no_leftover_on_error)
    _wrap_once(PathManager, "copy", _atomic_local_copy, static=True)


def load_checkpoint(path: str) -> dict:
    """Read a fairseq-format checkpoint onto the CPU, with a path-naming error."""
    return checkpoint_utils.load_checkpoint_to_cpu(path)


@contextlib.contextmanager
def atomic_destination(path: str):
    """A temporary name beside ``path`` to write a file or fill a directory at:
    it replaces ``path`` when the block succeeds and is removed when it fails,
    so a crash never leaves a half-written result where a good one (or none) was."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
        elif os.path.exists(tmp):
            os.remove(tmp)


def save_atomically(obj, path: str) -> None:
    with atomic_destination(path) as tmp:
        torch.save(obj, tmp)
