"""Record times: never before the previous record, and a clock found behind is told apart
from a writer that waited for the write lock."""

from dataclasses import dataclass
from datetime import datetime, timedelta

# A writer reads the clock, then may wait for the write lock while another commits: a
# small step back is that wait, not the clock jumping.
CLOCK_JUMP_TOLERANCE = timedelta(seconds=30)


@dataclass(frozen=True)
class Timing:
    created_at: datetime  # what the record will say: never before the previous record
    clock_behind: bool  # the device clock reads well before the last record


def record_time(now: datetime, last_created_at: datetime | None) -> Timing:
    """Keep record times monotonic; flag a clock that jumped back past the tolerance."""
    now = now.replace(microsecond=0)
    if last_created_at is not None and now < last_created_at:
        return Timing(last_created_at, last_created_at - now > CLOCK_JUMP_TOLERANCE)
    return Timing(now, False)
