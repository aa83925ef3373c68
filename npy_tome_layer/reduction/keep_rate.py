"""Keep-rate of the pruned encoder: fixed, or a linear schedule over updates."""
import numbers
from dataclasses import dataclass
from typing import Optional

from ..errors import InputError


def check_rate(name: str, value: float) -> None:
    # bool is a number to Python, and float("0.9") would hide a string
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
        raise InputError(f"{name} must be a number in (0, 1], got {value!r}")


@dataclass(frozen=True)
class KeepRateSchedule:
    """Rate moves linearly from ``max_rate`` (update 0) to ``min_rate``
    (update ``updates``) and stays there. A fixed rate has max == min."""

    max_rate: float
    min_rate: float
    updates: int = 0

    @classmethod
    def fixed(cls, rate: float) -> "KeepRateSchedule":
        check_rate("pruning_rate", rate)
        return cls(rate, rate, 0)

    @classmethod
    def from_arguments(cls, pruning_rate: float, pruning_max_rate: Optional[float] = None,
                       pruning_min_rate: Optional[float] = None,
                       pruning_schedule_updates: Optional[int] = None) -> "KeepRateSchedule":
        """The one place a rate setting becomes a schedule: a schedule when a
        max or min rate is given (the ``..._schedule`` arch gives both by
        default), else ``pruning_rate`` fixed. A missing max is 1.0, a missing
        min is ``pruning_rate``."""
        if pruning_max_rate is None and pruning_min_rate is None:
            return cls.fixed(pruning_rate)
        return cls(1.0 if pruning_max_rate is None else pruning_max_rate,
                   pruning_rate if pruning_min_rate is None else pruning_min_rate,
                   pruning_schedule_updates or 0)

    def __post_init__(self):
        check_rate("pruning_max_rate", self.max_rate)
        check_rate("pruning_min_rate", self.min_rate)
        if self.min_rate > self.max_rate:
            raise InputError(
                f"pruning_min_rate ({self.min_rate}) must be <= pruning_max_rate "
                f"({self.max_rate}); allowed: 0 < min_rate <= max_rate <= 1"
            )
        if isinstance(self.updates, bool) or not isinstance(self.updates, numbers.Integral):
            raise InputError(f"pruning_schedule_updates must be a whole number, got "
                             f"{self.updates!r}")
        if self.updates < 0:
            raise InputError(
                f"pruning_schedule_updates must be >= 0, got {self.updates}"
            )

    def rate_at(self, num_updates: int) -> float:
        if self.updates <= 0 or num_updates >= self.updates:
            return self.min_rate
        progress = max(num_updates, 0) / self.updates
        return self.max_rate + (self.min_rate - self.max_rate) * progress
