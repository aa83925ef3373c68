"""The checks of numbers a user gives, one per fact, for the Python API and the
command lines alike.

``whole_number``, ``share`` and ``finite_number`` check a Python value (an
argument of ``load_pruned_hubert``, a config override) and raise
``InputError`` naming it: booleans are not numbers here (Python counts True
as 1), strings are not parsed. The argparse types below parse a flag's text
and apply the same check, so a bad value is argparse's own one line,
``error: argument --flag: must be ..., got 'value'``, exit status 2; fairseq's
parser (the plugin's flags) and the tools' use them.
"""
import argparse
import math
import numbers

from ..errors import InputError
from ..reduction.keep_rate import check_rate

SHARE_RULE = "must be a number in [0, 1]"
FINITE_RULE = "must be a finite number"


def whole_number_rule(minimum: int) -> str:
    return f"must be a whole number >= {minimum}"


def is_whole_number(value) -> bool:
    """An integer (numpy's included), not a bool: True would be taken as 1."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite real number (numpy's included), not a bool."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def whole_number(name: str, value, minimum: int) -> int:
    """``value`` as an int if it is a whole number >= ``minimum`` (a count, a
    seed, a stride), else InputError naming ``name``."""
    if not is_whole_number(value) or value < minimum:
        raise InputError(f"{name} {whole_number_rule(minimum)}, got {value!r}")
    return int(value)


def share(name: str, value) -> float:
    """``value`` as a float if it is a probability or share in [0, 1] (a
    dropout, a layerdrop, a floor that may be off), else InputError."""
    if not is_number(value) or not 0.0 <= value <= 1.0:
        raise InputError(f"{name} {SHARE_RULE}, got {value!r}")
    return float(value)


def finite_number(name: str, value) -> float:
    if not is_number(value):
        raise InputError(f"{name} {FINITE_RULE}, got {value!r}")
    return float(value)


def keep_rate_flag(text: str) -> float:
    """A keep rate in (0, 1]."""
    try:
        value = float(text)
        check_rate("a keep rate", value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}") from e
    return value


def _number_or_nan(text: str) -> float:
    """``float(text)``, or NaN (which every range check refuses) for non-numbers."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def share_flag(text: str) -> float:
    """A share in [0, 1] (0 allowed: a floor that is off)."""
    try:
        return share("", _number_or_nan(text))
    except InputError:
        raise argparse.ArgumentTypeError(f"{SHARE_RULE}, got {text!r}") from None


def whole_number_flag(minimum: int):
    """A whole number >= ``minimum``."""
    def whole_number_type(text: str) -> int:
        try:
            return whole_number("", int(text), minimum)
        except ValueError:  # not an int's text, or InputError (a ValueError): below minimum
            raise argparse.ArgumentTypeError(
                f"{whole_number_rule(minimum)}, got {text!r}") from None
    whole_number_type.__name__ = f"whole number >= {minimum}"
    return whole_number_type


def finite_number_flag(text: str) -> float:
    """Any finite number (a length penalty)."""
    try:
        return finite_number("", _number_or_nan(text))
    except InputError:
        raise argparse.ArgumentTypeError(f"{FINITE_RULE}, got {text!r}") from None


def cosine_flag(text: str) -> float:
    """A cosine similarity in [-1, 1] (a merge threshold)."""
    value = _number_or_nan(text)
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [-1, 1], got {text!r}")
    return value


def positive_number_flag(text: str) -> float:
    """A finite number > 0 (a duration in seconds)."""
    value = finite_number_flag(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value
