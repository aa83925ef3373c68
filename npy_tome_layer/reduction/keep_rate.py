"""Keep-rate of the pruned encoder: fixed, or a linear schedule over updates,
and its settings (declared once: flags, defaults and API keywords follow)."""
from dataclasses import dataclass
from typing import Optional

from ..errors import InputError
from ..values import KEEP_RATE, check_rate, whole_number_rule
from .settings import Setting

PRUNING_RATE = Setting(
    "pruning_rate", KEEP_RATE, 1.0,
    "keep rate: each shortening keeps ceil(rate x n) of a row's n frames; 1.0 = dense "
    "(the fixed architecture's default: 0.9 for a reduction that follows it)")
PRUNING_MAX_RATE = Setting("pruning_max_rate", KEEP_RATE, None,
                           "schedule: the keep rate at update 0")
PRUNING_MIN_RATE = Setting("pruning_min_rate", KEEP_RATE, None,
                           "schedule: the final keep rate")
PRUNING_SCHEDULE_UPDATES = Setting("pruning_schedule_updates", whole_number_rule(0), None,
                                   "schedule: updates to go from the max to the min rate")
SCHEDULE_SETTINGS = (PRUNING_RATE, PRUNING_MAX_RATE, PRUNING_MIN_RATE, PRUNING_SCHEDULE_UPDATES)


@dataclass(frozen=True)
class KeepRateSchedule:
    """Rate moves linearly from ``max_rate`` (update 0) to ``min_rate``
    (update ``updates``) and stays there. A fixed rate has max == min."""

    max_rate: float
    min_rate: float
    updates: int = 0

    @classmethod
    def fixed(cls, rate: float) -> "KeepRateSchedule":
        check_rate(PRUNING_RATE.name, rate)
        return cls(rate, rate, 0)

    @classmethod
    def from_arguments(cls, pruning_rate: float, pruning_max_rate: Optional[float] = None,
                       pruning_min_rate: Optional[float] = None,
                       pruning_schedule_updates: Optional[int] = None) -> "KeepRateSchedule":
        """The one place a rate setting becomes a schedule: a schedule when a
        max or min rate is given (the ``..._schedule`` arch gives both by
        default), else ``pruning_rate`` fixed. A missing max is 1.0, a missing
        min is ``pruning_rate``."""
        if pruning_schedule_updates is not None:  # checked whatever the schedule, as its flag is
            PRUNING_SCHEDULE_UPDATES.check(pruning_schedule_updates)
        if pruning_max_rate is None and pruning_min_rate is None:
            return cls.fixed(pruning_rate)
        return cls(1.0 if pruning_max_rate is None else pruning_max_rate,
                   pruning_rate if pruning_min_rate is None else pruning_min_rate,
                   pruning_schedule_updates or 0)

    def __post_init__(self):
        check_rate(PRUNING_MAX_RATE.name, self.max_rate)
        check_rate(PRUNING_MIN_RATE.name, self.min_rate)
        if self.min_rate > self.max_rate:
            raise InputError(
                f"pruning_min_rate ({self.min_rate}) must be <= pruning_max_rate "
                f"({self.max_rate}); allowed: 0 < min_rate <= max_rate <= 1"
            )
        PRUNING_SCHEDULE_UPDATES.check(self.updates)

    def rate_at(self, num_updates: int) -> float:
        if self.updates <= 0 or num_updates >= self.updates:
            return self.min_rate
        progress = max(num_updates, 0) / self.updates
        return self.max_rate + (self.min_rate - self.max_rate) * progress


def check_rate_beside_schedule(given: dict, settings: dict, where: str = "",
                               whose: str = "the") -> None:
    """One line where ``given`` (a caller's keywords, overrides) names a
    ``pruning_rate`` that sets nothing: the schedule in force once ``given``
    replaces ``settings`` (a checkpoint's, or ``given`` itself) has a min rate,
    and the rate follows it (the sweep's three equal rates pin it)."""
    if given.get(PRUNING_RATE.name) is None:
        return
    schedule = {name: given[name] if name in given else settings.get(name)
                for name in (PRUNING_MAX_RATE.name, PRUNING_MIN_RATE.name)}
    rate, min_rate = given[PRUNING_RATE.name], schedule[PRUNING_MIN_RATE.name]
    if min_rate is not None and rate != min_rate:
        raise InputError(f"{where}pruning_rate {rate!r}: {whose} keep rate follows a schedule "
                         f"(pruning_max_rate {schedule[PRUNING_MAX_RATE.name]}, pruning_min_rate "
                         f"{min_rate}), which pruning_rate does not set: give pruning_min_rate "
                         "(and pruning_max_rate) instead")
