"""The offline-risk rule: a terminal that has not synced for long, or has paid out much of
the fund since, or sees a person many times a day, still settles, and flags the settlement
for the county's review (the reasons go into the signed record)."""

from datetime import datetime, timedelta

from edge.domain.model import OfflineLimits

# Needs-review reasons (offline risk control: docs/ledger.md, settlement bodies).
OFFLINE_TOO_LONG = "OFFLINE_TOO_LONG"
OFFLINE_FUND_LIMIT = "OFFLINE_FUND_LIMIT"
VISITS_PER_DAY_LIMIT = "VISITS_PER_DAY_LIMIT"


def review_reasons(
    limits: OfflineLimits,
    *,
    now: datetime,
    last_sync: datetime,
    fund_since_sync: int,
    visits_today: int,
) -> list[str]:
    """Offline limits this settlement passes (it is settled anyway, and flagged)."""
    reasons = []
    if limits.max_hours_since_sync is not None and now - last_sync > timedelta(
        hours=limits.max_hours_since_sync
    ):
        reasons.append(OFFLINE_TOO_LONG)
    if limits.max_fund_since_sync is not None and fund_since_sync > limits.max_fund_since_sync:
        reasons.append(OFFLINE_FUND_LIMIT)
    if (
        limits.max_visits_per_person_per_day is not None
        and visits_today > limits.max_visits_per_person_per_day
    ):
        reasons.append(VISITS_PER_DAY_LIMIT)
    return reasons
