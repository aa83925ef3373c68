"""Reading a fairseq dictionary (``dict.txt``) a user named, with one line
when the file is not one: fairseq's ``Dictionary.load`` ends a binary file
(an ``spm.model`` given for ``dict.txt``) in a bare ``Exception`` about the
encoding, naming no flag."""
from fairseq.data import Dictionary

from ..errors import InputError


def binary_problem(data: bytes):
    """Why ``data`` is not UTF-8 text (a NUL, or a byte UTF-8 cannot start), or None."""
    nul = data.find(b"\x00")
    if nul >= 0:
        return f"a NUL byte at offset {nul}"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"byte {data[e.start]:#04x} at offset {e.start} is not UTF-8"
    return None


def load_dictionary(path: str, named: str) -> Dictionary:
    """The dictionary in ``path``, or InputError starting with ``named`` (the
    flag and path, or the path): a binary file, or a line that is not
    ``token count``."""
    with open(path, "rb") as f:
        problem = binary_problem(f.read())
    if problem is not None:
        raise InputError(f"{named}: not a fairseq dictionary (a binary file: {problem}; "
                         "dict.txt is text, a token and a count per line)")
    try:
        return Dictionary.load(path)
    except (ValueError, RuntimeError) as e:  # a line without a count, a duplicate token
        raise InputError(f"{named}: not a fairseq dictionary ({e})") from e
