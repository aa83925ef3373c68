"""The one error type for bad input, and how command lines show it.

Every check of something a user gave (a file, a line of it, a flag, an
environment variable, an argument of the Python API) raises ``InputError`` - a
``ValueError``, so callers that catch that keep working - with a message that
names the thing and says what is wrong. Command lines print that message as one
line and exit non-zero; a traceback means a bug, not bad input.
"""
import contextlib
import errno
import os
import sys


class InputError(ValueError):
    """Bad input; the message names the file/line/flag/value and what is wrong."""


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, for a one-line message."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


# errors of writing an output (full disk, quota, read-only or forbidden folder, a
# file-size limit: Python ignores SIGXFSZ, so `ulimit -f` is an EFBIG write error)
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO, errno.EFBIG)


@contextlib.contextmanager
def exit_on_input_error(prog: str):
    """In a tool's ``main``: an ``InputError``, or a failed write that names
    its file, ends the program with one line ``prog: message``, status 1."""
    try:
        yield
    except InputError as e:
        sys.exit(f"{prog}: {e}")
    except OSError as e:
        if e.errno not in WRITE_ERRNOS or not e.filename:
            raise
        sys.exit(f"{prog}: cannot write {e.filename}: {e.strerror}")


def _program() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"


def input_error_message(error: BaseException):
    """The message of an ``InputError``, also one raised in a worker that
    fairseq spawned (torch re-raises it in the parent as text: its traceback's
    last line is ``module.ErrorClass: message``); None for anything else."""
    if isinstance(error, InputError):
        return str(error)
    if type(error).__name__ != "ProcessRaisedException":
        return None
    last = str(error).rstrip().rsplit("\n", 1)[-1]
    name, _, message = last.partition(": ")
    module, _, cls = name.rpartition(".")
    if not module.startswith(__package__ + ".") and module != __package__:
        return None
    found = getattr(sys.modules.get(module), cls, None)
    return message if isinstance(found, type) and issubclass(found, InputError) else None


def _input_errors_as_one_line(previous_hook):
    def hook(kind, error, tb):
        message = input_error_message(error)
        if message is None:
            previous_hook(kind, error, tb)
        else:
            print(f"{_program()}: error: {message}", file=sys.stderr)

    hook.npy_tome_layer_hook = True
    return hook


def runs_under_fairseq_cli() -> bool:
    """fairseq-train / -generate / -validate / -interactive, or ``python -m fairseq_cli.X``."""
    program = sys.argv[0] if sys.argv else ""
    return os.path.basename(program).startswith("fairseq-") or (
        os.path.basename(os.path.dirname(program)) == "fairseq_cli")


def install_one_line_errors() -> None:
    """Under a fairseq command line, an uncaught ``InputError`` (a bad manifest,
    config.yaml, checkpoint or flag found while fairseq sets up the task and
    model) prints one line instead of a traceback. The interpreter still exits
    with status 1. Library use (notebooks, scripts) keeps Python's traceback."""
    if runs_under_fairseq_cli() and not getattr(sys.excepthook, "npy_tome_layer_hook", False):
        sys.excepthook = _input_errors_as_one_line(sys.excepthook)
