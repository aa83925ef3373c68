"""argparse types of the numeric flags, for fairseq's parser (the plugin's
flags) and the tools' alike: a bad value is argparse's own one line,
``error: argument --flag: must be ..., got 'value'``, exit status 2."""
import argparse
import math

from ..reduction.keep_rate import check_rate


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
    value = _number_or_nan(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def whole_number_flag(minimum: int):
    """A whole number >= ``minimum``."""
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}")
        return value
    whole_number.__name__ = f"whole number >= {minimum}"
    return whole_number


def finite_number_flag(text: str) -> float:
    """Any finite number (a length penalty)."""
    value = _number_or_nan(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_number_flag(text: str) -> float:
    """A finite number > 0 (a duration in seconds)."""
    value = finite_number_flag(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value
