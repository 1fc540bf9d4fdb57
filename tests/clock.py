"""The tests' one clock: a fixed moment on the demo day, and a clock a test moves by hand.

Every product entry point takes a clock (edge/clock.py); tests hand it this one, in
process or through `CLINIC_CLOCK` for child processes, so no test compares a fixed date
with a clock the product reads by itself. Tests that must run on the real clock (power
loss, the real `clinic demo`) read it through `real_now()` and derive their dates from it.
"""

from datetime import datetime, time, timedelta

from edge.clock import CLINIC_TZ, system_clock
from edge.demo import DEMO_DAY

NOW = datetime.combine(DEMO_DAY, time(9, 30), CLINIC_TZ)
TODAY = NOW.date()


class FakeClock:
    """A clock that reads what the test set, and moves only when told."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def real_now() -> datetime:
    return system_clock()
