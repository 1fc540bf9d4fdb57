"""The clock every entry point hands to the code below it.

Settlement days, accumulator years and validity checks follow China time whatever zone
the machine is set to, so the clock reads aware datetimes in `CLINIC_TZ`. Only entry
points (the `clinic` commands, the Flask app factories, the hub's WSGI factory) call
`configured_clock()`; everything below them, the sync scheduler included, is handed `now`
or a clock.

`CLINIC_CLOCK=2026-11-22T09:30:00+08:00` in the environment starts the clock at that
instant, from where it advances with real time: for tests, training and reproducing a
county's report at a given moment, in every process that inherits the variable (gunicorn
workers included). A terminal in the field never sets it.
"""

import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

CLINIC_TZ = ZoneInfo("Asia/Shanghai")
CLOCK_VARIABLE = "CLINIC_CLOCK"

Clock = Callable[[], datetime]


class ClockError(ValueError):
    pass


def system_clock() -> datetime:
    return datetime.now(CLINIC_TZ)


def starting_at(start: datetime) -> Clock:
    """A clock that reads `start` now and advances with real (monotonic) time."""
    if start.tzinfo is None:
        raise ClockError("a clock needs an aware start time (with its UTC offset)")
    start = start.astimezone(CLINIC_TZ)
    origin = time.monotonic()

    def clock() -> datetime:
        return start + timedelta(seconds=time.monotonic() - origin)

    return clock


def configured_clock(environ: Mapping[str, str] | None = None) -> Clock:
    """The system clock, or the one `CLINIC_CLOCK` starts (see the module docstring)."""
    value = (os.environ if environ is None else environ).get(CLOCK_VARIABLE, "").strip()
    if not value:
        return system_clock
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        raise ClockError(
            f"{CLOCK_VARIABLE}={value!r} 不是带时区的 ISO 时间 / is not an ISO 8601 time"
            " with its UTC offset, e.g. 2026-11-22T09:30:00+08:00"
        ) from None
    if start.tzinfo is None:
        raise ClockError(f"{CLOCK_VARIABLE}={value!r} 缺少时区 / has no UTC offset, e.g. +08:00")
    return starting_at(start)
