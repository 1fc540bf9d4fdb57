"""Offline risk control as the terminal shows it before anything is settled: which of the
policy's offline limits the next settlement would pass (`edge.domain.offline_risk`)."""

from datetime import datetime

from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain import offline_risk


def review_forecast(
    store: SqliteDeviceStore, now: datetime, insured_id: str | None = None
) -> list[str]:
    """Needs-review reasons that already hold now (for a next visit of `insured_id`)."""
    device = store.device()
    if device is None or store.policy_version() is None:
        return []
    visits = 0
    if insured_id is not None:
        visits = store.settlements_on(insured_id, now.date().isoformat()) + 1
    return offline_risk.review_reasons(
        store.current_policy().offline_limits,
        now=now,
        last_sync=datetime.fromisoformat(device.last_sync_at or device.created_at),
        fund_since_sync=device.unsynced_fund,
        visits_today=visits,
    )
