"""The rules a value a user gives must keep (a keep rate, a share, a count),
each stated once, for the Python API and the command lines alike.

A ``Rule`` checks a Python value (an argument of ``load_pruned_hubert``, a
config override) and raises ``InputError`` naming it: booleans are not numbers
here (Python counts True as 1), strings are not parsed. ``Rule.flag`` is the
same rule as an argparse type: it parses a flag's text and a bad value is
argparse's own one line, ``error: argument --flag: must be ..., got 'value'``,
exit status 2. Like ``errors.py``, this module imports nothing of the package's
layers, so every layer may use it.
"""
import argparse
import math
import numbers
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Callable

from .errors import InputError


def is_whole_number(value) -> bool:
    """An integer (numpy's included), not a bool: True would be taken as 1."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite real number (numpy's included), not a bool."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def number_or_nan(text: str) -> float:
    """``float(text)``, or NaN (which every range check refuses) for non-numbers."""
    try:
        return float(text)
    except ValueError:
        return math.nan


@dataclass(frozen=True)
class Rule:
    """``requirement``: what the value must be, as the message says it;
    ``accepts``: the test of a Python value; ``convert``: the value as used;
    ``parse``: a flag's text as a Python value (may raise ValueError)."""

    requirement: str
    accepts: Callable[[Any], bool]
    convert: Callable[[Any], Any] = float
    parse: Callable[[str], Any] = number_or_nan

    def check(self, name: str, value):
        """``value`` converted, or InputError naming ``name``."""
        if not self.accepts(value):
            raise InputError(f"{name} {self.requirement}, got {value!r}")
        return self.convert(value)

    @cached_property  # one function per rule: argparse types compare by identity
    def flag(self) -> Callable[[str], Any]:
        """argparse type: the flag's text checked against the same rule (named
        by what it accepts, as argparse and the tests show it)."""
        def parse_flag(text: str):
            try:
                value = self.parse(text)
            except ValueError:
                value = None  # never accepted: every rule wants a number
            if not self.accepts(value):
                raise argparse.ArgumentTypeError(f"{self.requirement}, got {text!r}")
            return self.convert(value)
        parse_flag.__name__ = self.requirement.replace("must be ", "")
        return parse_flag


def _in(low: float, high: float, low_open: bool = False):
    return lambda v: is_number(v) and (low < v if low_open else low <= v) and v <= high


KEEP_RATE = Rule("must be a number in (0, 1]", _in(0.0, 1.0, low_open=True))
SHARE = Rule("must be a number in [0, 1]", _in(0.0, 1.0))  # a dropout, a floor that may be 0
COSINE = Rule("must be a cosine similarity in [-1, 1]", _in(-1.0, 1.0))  # a cosine similarity
FINITE = Rule("must be a finite number", is_number)
POSITIVE = Rule("must be a number > 0", lambda v: is_number(v) and v > 0)  # seconds
NON_NEGATIVE = Rule("must be a number >= 0", lambda v: is_number(v) and v >= 0)  # a loss weight


@lru_cache(maxsize=None)
def whole_number_rule(minimum: int) -> Rule:
    """A whole number >= ``minimum`` (a count, a seed, a stride, a layer)."""
    return Rule(f"must be a whole number >= {minimum}",
                lambda v: is_whole_number(v) and v >= minimum, int, int)


def whole_number(name: str, value, minimum: int) -> int:
    return whole_number_rule(minimum).check(name, value)


def share(name: str, value) -> float:
    return SHARE.check(name, value)


def finite_number(name: str, value) -> float:
    return FINITE.check(name, value)


def check_rate(name: str, value) -> float:
    return KEEP_RATE.check(name, value)
