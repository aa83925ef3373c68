"""Writes that never leave a half-written result: a temporary name beside the
destination, renamed over it when complete."""
import contextlib
import os
import shutil

import torch


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


def write_text_atomically(path: str, text: str) -> None:
    with atomic_destination(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
