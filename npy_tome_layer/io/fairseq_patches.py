"""The plugin's changes to fairseq, in one place; ``install()`` runs once on
``import npy_tome_layer`` and is idempotent (the package may be imported again
through --user-dir).

* torch's weights-only loader learns the classes fairseq pickles (``SAFE_GLOBALS``).
* ``load_checkpoint_to_cpu``: an unreadable file is named with its path (torch's
  own error, "invalid load key, 'x'", names none), and an unreadable
  checkpoint_last.pt names the newest readable checkpoint to resume from; a
  file that unpickles to a list (or anything but a dict) and weights holding
  NaN or inf are refused, naming the file (and the first such tensor).
* ``_upgrade_state_dict`` assumes a training checkpoint (it reads ``best_loss``
  without ``optimizer_history``): a bare released-weights file such as
  ``deltalm-base.pt`` (``{"weights": ...}``) passes through untouched.
* ``torch_persistent_save`` leaves no FILE.tmp behind when a write fails.
* ``PathManager.copy`` copies local files atomically (checkpoint_last/best.pt).
* ``verify_checkpoint_directory`` (fairseq-train's first look at --save-dir,
  on the worker that saves): a --save-dir that is a file is one line, and the
  folder is locked for the whole run, so two trainings cannot mix their
  checkpoints in it (plain fairseq-train with --user-dir included).
* ``Trainer.load_checkpoint``: a --restore-file / --finetune-from-model whose
  parameters do not fit the model (another stage's or architecture's file) is
  one line naming the file and what it holds.
"""
import contextlib
import functools
import glob
import os
import pickle
import shutil

import torch
from fairseq import checkpoint_utils
from fairseq.file_io import PathManager

from ..errors import InputError, shorten
from .atomic import atomic_destination, check_output_folder, folder_lock
from .checkpoints import (SAFE_GLOBALS, CheckpointError, check_checkpoint_file,
                          check_finite_weights, checkpoint_model_args, checkpoint_task,
                          not_a_checkpoint, resume_hint)

TRAINING_LOCK = ".train.lock"
# the save folders this process trains into, each with its held lock (kept
# open until the process ends: the kernel releases a killed run's lock)
_HELD_SAVE_DIRS = {}


# torch's messages for a zip file that is not a torch archive (or a damaged one)
TORCH_ARCHIVE_ERRORS = ("zip archive", "PytorchStreamReader", "inline_container")


def _unreadable(path: str, local: str, error: Exception, any_dict: bool):
    """After fairseq's loader failed on what it unpickled: the one-line error
    saying what the file holds, or None to let ``error`` stand. fairseq indexes
    the object right after ``torch.load`` with no hook between, so it is read
    again here, on the failure path only (a good checkpoint is read once). A
    dict without fairseq's keys (no ``optimizer_history`` nor ``best_loss``) is
    named too when ``any_dict``."""
    try:
        state = torch.load(local, map_location="cpu")
    except Exception:  # unreadable again: the loader's own error stands
        return None
    if not isinstance(state, dict):
        return not_a_checkpoint(path, state)
    if not any_dict:
        return None
    return CheckpointError(f"{path}: not a fairseq checkpoint (a dict without what fairseq's "
                           f"loader reads: {type(error).__name__} "
                           f"{shorten((str(error).splitlines() or [''])[0])})")


def _wrap_with_path(load):
    @functools.wraps(load)
    def load_checkpoint_to_cpu(path, *args, **kwargs):
        try:
            # a path behind one of fairseq's PathManager handlers (http, ...) is
            # checked where the handler puts it, as fairseq's loader reads it
            local = PathManager.get_local_path(path) if "://" in path else path
            check_checkpoint_file(local)
            try:
                state = load(path, *args, **kwargs)
            except (pickle.UnpicklingError, EOFError, RuntimeError) as e:
                if isinstance(e, RuntimeError) and not any(
                        m in str(e) for m in TORCH_ARCHIVE_ERRORS):
                    # `"args" in tensor` raises this; other RuntimeErrors stand
                    raise _unreadable(path, local, e, any_dict=False) or e
                detail = next(
                    (ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln),
                    str(e).splitlines()[0] if str(e) else type(e).__name__,
                )
                raise CheckpointError(f"{path}: cannot unpickle checkpoint: {detail}") from e
            except OSError:  # reading failed (a remote handler, a disk): not the content
                raise
            except Exception as e:  # noqa: BLE001 - the re-read below decides what it was
                # a list, None, a number; a dict of other keys (KeyError
                # 'best_loss'), a cfg that is not a config, an empty history
                raise _unreadable(path, local, e, any_dict=True) or e
            # every load of fairseq's and the plugin's passes here: a model of
            # NaN weights is refused before it gives NaN features or pictures
            check_finite_weights(path, state)
            return state
        except CheckpointError as e:
            hint = resume_hint(path) if os.path.exists(path) else ""
            if not hint:
                raise
            raise CheckpointError(f"{e}{hint}") from e

    return load_checkpoint_to_cpu


def _atomic_local_copy(copy):
    """fairseq saves checkpoint_N.pt atomically but then *copies* it over
    checkpoint_last.pt / checkpoint_best.pt in place, so a kill during the
    copy would truncate a good file. Local copies go to a temporary name first."""
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


def hold_save_dir(save_dir: str) -> None:
    """Lock ``save_dir`` for this process's lifetime (again: a no-op), or one
    line saying another training holds it. Temporaries are left alone: the
    checkpoint copies clear their own, and evaluate.sh may be decoding there."""
    key = os.path.realpath(save_dir)
    if key in _HELD_SAVE_DIRS:
        return
    stack = contextlib.ExitStack()
    stack.enter_context(folder_lock(
        save_dir, TRAINING_LOCK, f"--save-dir {save_dir}: another training is writing its "
        f"checkpoints here ({TRAINING_LOCK} is locked); wait for it or give another "
        "--save-dir", clear_temporaries=False))
    _HELD_SAVE_DIRS[key] = stack


def _locked_save_dir(verify):
    @functools.wraps(verify)
    def verify_checkpoint_directory(save_dir):
        if "://" not in save_dir:
            check_output_folder(save_dir, "--save-dir")
            hold_save_dir(save_dir)
        return verify(save_dir)

    return verify_checkpoint_directory


def what_checkpoint_holds(path: str) -> str:
    """"task T, arch A" of a checkpoint, for a message; "" where unreadable."""
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception:  # noqa: BLE001 - only a description for a message
        return ""
    model = checkpoint_model_args(state)
    arch = (model.get("_name") if hasattr(model, "get") else None) or getattr(model, "arch", None)
    return f" (it holds task {checkpoint_task(state)}, arch {arch})"


def _named_parameter_mismatch(load):
    """fairseq raises "Cannot load model parameters from checkpoint F; please
    ensure that the architectures match" with torch's list of keys, two
    tracebacks long: one line naming the flag, the file and what it holds."""
    @functools.wraps(load)
    def load_checkpoint(self, filename, *args, **kwargs):
        try:
            return load(self, filename, *args, **kwargs)
        except Exception as e:
            if not str(e).startswith("Cannot load model parameters from checkpoint"):
                raise
            flag = ("--finetune-from-model" if filename == getattr(
                self.cfg.checkpoint, "finetune_from_model", None) else "--restore-file")
            arch = getattr(self.cfg.model, "_name", None) or getattr(self.cfg.model, "arch", None)
            raise InputError(
                f"{flag} {filename}: its parameters do not fit this run's model (arch "
                f"{arch}){what_checkpoint_holds(filename)}: another stage's or "
                "architecture's checkpoint? (HuBERT comes in through --hubert-model-path, the "
                "MT stage through --load-pretrained-mt-encoder-decoder-from)") from None

    return load_checkpoint


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
    _wrap_once(checkpoint_utils, "verify_checkpoint_directory", _locked_save_dir)
    from fairseq.trainer import Trainer

    _wrap_once(Trainer, "load_checkpoint", _named_parameter_mismatch)
