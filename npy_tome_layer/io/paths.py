"""What is at a path a user gave as a file: the one check that names it (a
folder, a FIFO, a device, a dangling link are not "missing", and a FIFO must
not be opened: reading one waits for a writer for ever)."""
import os
import stat
from typing import Optional

from ..errors import InputError

KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
         (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"))


def file_problem(path) -> Optional[str]:
    """None for an existing regular file (or a link to one), else what the path
    is instead: "does not exist", "is a folder, not a file", ..."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return ("is a symbolic link to a missing file" if os.path.islink(path)
                else "does not exist")
    except NotADirectoryError:
        return "does not exist (a part of its path is a file, not a folder)"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in KINDS if test(mode)), "not a regular file")
    return f"is {kind}, not a file"


def is_utf8_path(path: str) -> bool:
    """Whether ``path`` can be written into a UTF-8 file (a manifest, a
    config.yaml): a name of bytes that are not UTF-8 reaches Python with
    surrogates in it, which no UTF-8 writer (nor soundfile, nor sentencepiece)
    takes."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def check_utf8_path(path: str, who: str) -> None:
    """InputError naming ``path`` by its bytes unless it is UTF-8."""
    if not is_utf8_path(path):
        raise InputError(f"{who} {os.fsencode(path)!r}: the path is not UTF-8 text, which "
                         "the files naming it (manifests, config.yaml) must be; rename it")


def check_existing_file(path, who: str) -> None:
    """InputError ``WHO PATH is a folder, not a file`` (or its problem) unless
    ``path`` is a regular file."""
    problem = file_problem(path)
    if problem is not None:
        raise InputError(" ".join(filter(None, (who, str(path), problem))))
