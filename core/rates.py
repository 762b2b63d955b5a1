"""Request rates as users write them: ``30``, ``2.5``, ``60/m``, ``5000/h``, ``100/15s``.

A plain number is requests per second; ``N/UNIT`` is curl's ``--rate`` syntax (UNIT ``s``,
``m`` or ``min``, ``h``, ``d``), with an optional count before the unit (``100/15s`` is 100
requests every 15 seconds). The CLI's parameter type, ``--config`` and ``POOLFETCH_QPS`` all
go through ``parse_rate``, so every way of giving a rate accepts the same forms and fails with
the same message. A ``Rate`` keeps the text as given, for the summary.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from poolfetch.core.config import RateLimit
from poolfetch.core.errors import ConfigError

#: Seconds in each unit ``N/UNIT`` accepts.
UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
#: What a rate may look like (for error messages and ``--help``).
FORMS = "a number per second (30, 2.5) or N/UNIT with UNIT s, m, h or d (60/m, 5000/h, 100/15s)"

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_RATE = re.compile(
    rf"^(?P<n>{_NUMBER})(?:\s*/\s*(?P<count>{_NUMBER})?\s*(?P<unit>[A-Za-z]+))?$", re.ASCII
)


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate limit: ``per_second`` for the engine, ``given`` as the user wrote it."""

    per_second: float
    given: str

    def describe(self) -> dict[str, Any]:
        """The summary's view: the text as given and the number it means."""
        return {"given": self.given, "per_s": round(self.per_second, 6)}


def parse_rate(value: str | float) -> Rate:
    """``value`` as a ``Rate``; ``ConfigError`` (saying which forms work) if it is not one.

    Zero, negative, infinite and not-a-number rates are errors: "unlimited" is the absence of
    the option, not a value of it.
    """
    if isinstance(value, bool):  # a TOML ``qps = true`` is not a number
        raise ConfigError(f"{value!r} is not a rate: use {FORMS}")
    if isinstance(value, int | float):
        given = f"{value:g}" if isinstance(value, float) else str(value)
        return _checked(float(value), 1.0, given)
    given = str(value).strip()
    match = _RATE.match(given)
    if match is None:
        raise ConfigError(f"{value!r} is not a rate: use {FORMS}")
    count = float(match.group("n"))
    unit = match.group("unit")
    if unit is None:
        return _checked(count, 1.0, given)
    seconds = UNITS.get(unit.lower())
    if seconds is None:
        raise ConfigError(f"{value!r}: unknown time unit {unit!r}: use {FORMS}")
    multiple = match.group("count")
    if multiple is not None:
        seconds *= float(multiple)
    return _checked(count, seconds, given)


def _checked(count: float, seconds: float, given: str) -> Rate:
    per_second = count / seconds if seconds > 0 else math.inf
    if not (math.isfinite(per_second) and per_second > 0):
        raise ConfigError(f"{given!r} is not a rate above 0: use {FORMS}")
    return Rate(per_second, given)


def describe_rates(limits: RateLimit) -> dict[str, Any]:
    """The summary's ``rates``: each rate as given with the number it means (None when not
    set), and whether the quota servers announce was obeyed."""

    def one(per_second: float | None, given: str | None) -> dict[str, Any] | None:
        if per_second is None:
            return None
        return Rate(per_second, given if given is not None else f"{per_second:g}").describe()

    return {
        "qps": one(limits.qps, limits.qps_given),
        "per_host_qps": one(limits.per_host_qps, limits.per_host_qps_given),
        "rate_headers": limits.rate_headers,
    }
