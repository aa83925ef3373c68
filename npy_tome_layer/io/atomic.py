"""Writes that never leave a half-written result: a temporary name beside the
destination, renamed over it when complete."""
import contextlib
import errno
import fcntl
import glob
import os
import shutil
import time

import torch

from ..errors import InputError, shorten

TEMPORARY_MARK = ".tmp-"  # FILE.tmp-PID: a write in progress, or a killed one's
# a temporary untouched this long whose process is gone is a killed run's (the
# wait covers a writer on another machine sharing the folder, whose PID means
# nothing here)
STALE_AFTER_S = 60


@contextlib.contextmanager
def atomic_destination(path: str):
    """A temporary name beside ``path`` to write a file or fill a directory at:
    it replaces ``path`` when the block succeeds and is removed when it fails,
    so a crash never leaves a half-written result where a good one (or none) was."""
    tmp = f"{path}{TEMPORARY_MARK}{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if e.filename in (None, tmp):  # a full disk's error names no file: name this one
            raise OSError(e.errno, e.strerror, path) from e
        raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
        elif os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_destinations(paths):
    """Temporary names for several files that belong together (a table, its
    data, its plot): none replaces its destination until every one is
    written, so a failed run leaves the older set whole, not a mix."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_destination(path)) for path in paths]


def remove_temporaries(folder: str) -> None:
    """Every ``*.tmp-*`` in ``folder``: call only holding its lock, when no
    other run can be writing there."""
    for stale in glob.glob(os.path.join(glob.escape(folder), f"*{TEMPORARY_MARK}*")):
        shutil.rmtree(stale) if os.path.isdir(stale) else os.remove(stale)


def process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's: alive
        return False
    return False


def last_touched(path: str) -> float:
    """The newest modification time of ``path`` or anything inside it."""
    newest = os.path.getmtime(path)
    for folder, _, files in os.walk(path):
        for name in files + [""]:
            with contextlib.suppress(OSError):
                newest = max(newest, os.path.getmtime(os.path.join(folder, name)))
    return newest


def remove_killed_temporaries(path: str, log=None) -> None:
    """The temporaries of earlier runs writing ``path`` (``path.tmp-PID``)
    that were killed (no such process, untouched for ``STALE_AFTER_S``): a
    kill -9 runs no cleanup, and each rerun would leave one more."""
    for tmp in glob.glob(glob.escape(path) + TEMPORARY_MARK + "*"):
        pid = tmp[len(path) + len(TEMPORARY_MARK):]
        if not pid.isdigit() or int(pid) == os.getpid() or not process_is_gone(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            if time.time() - last_touched(tmp) < STALE_AFTER_S:
                continue
            if log is not None:
                log(f"removing {tmp}, left by a killed run")
            shutil.rmtree(tmp) if os.path.isdir(tmp) else os.remove(tmp)


@contextlib.contextmanager
def folder_lock(folder: str, lock_name: str, busy: str, clear_temporaries: bool = True,
                error=InputError):
    """One writer per folder: an exclusive ``flock`` on ``folder/lock_name``
    (released by the kernel when the holder ends, however it ends), else
    ``error(busy)`` (an InputError). Holding it, ``clear_temporaries`` removes every
    temporary left in the folder (a killed writer's)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, lock_name), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise error(busy) from None
        if clear_temporaries:
            remove_temporaries(folder)
        yield


def save_atomically(obj, path: str) -> None:
    with atomic_destination(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:
            # torch's archive writer reports a failed write (a full disk, a file-size
            # limit) as a RuntimeError that names no file
            raise OSError(errno.EIO, f"writing failed ({shorten(str(e).splitlines()[0])})",
                          path) from e


def write_text_atomically(path: str, text: str) -> None:
    with atomic_destination(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def check_output_file(path: str, flag: str) -> None:
    """Before the work: a file can be written at ``path`` (its folder exists,
    it is not a folder), so a long run does not fail at its last step."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise InputError(f"{flag} {path}: is a folder, expected a file name")
    if not os.path.isdir(folder):
        raise InputError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{flag} {path}: folder {folder} is not writable")


def check_output_folder(path: str, flag: str) -> None:
    """Before the work: ``path`` is a folder or can be made one."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{flag} {path}: exists and is not a folder")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
        raise InputError(f"{flag} {path}: cannot be created under {existing}")
