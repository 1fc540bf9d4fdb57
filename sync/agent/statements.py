"""Checking the county's clearing statement of a month on the device (`clinic statement`,
the terminal's month page): fetch it, verify it with the pinned county key, compare it
with the device's own ledger record by record, report the result to the hub and keep it.
"""

from datetime import datetime

from edge import services
from edge.adapters.identity import DeviceIdentity
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.clock import CLINIC_TZ
from edge.domain.clearing import compare
from sync.agent import state
from sync.agent.client import SyncError
from sync.agent.jobs import client_for
from sync.statements import parse_month


def check_statement(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    month: str,
    now: datetime,
    hub_url: str | None = None,
) -> dict | None:
    """The check of `month`'s statement as kept on the device ({comparison, statement,
    checked_at, reported_at}), or None when the county has no statement for it yet.
    Raises SyncError when the hub cannot be asked or its statement does not verify
    (nothing is kept then)."""
    parse_month(month)
    enrollment = state.enrollment(store)
    if enrollment is None:
        raise SyncError("NOT_ENROLLED", "this device is not enrolled with a county hub")
    client = client_for(enrollment, identity, hub_url)
    document = client.statement(month, now)  # verified with the pinned county key
    if document is None:
        return None
    statement = document["statement"]
    comparison = compare(statement, services.month_records(store, month),
                         device_id=identity.device_id)  # fmt: skip
    stamp = now.astimezone(CLINIC_TZ).replace(microsecond=0).isoformat()
    reported = None
    try:
        client.report_reconciliation(comparison.report(), now)
        reported = stamp
    except SyncError:
        pass  # kept unreported: the next check reports it again
    store.save_statement_check(month, comparison.to_json(), statement, stamp, reported)
    return store.statement_check(month)


def difference_names(store: SqliteDeviceStore, comparison: dict) -> dict[str, str]:
    """The patients' names of the settlements a comparison names, by tx_id."""
    names = {}
    tx_ids = {d["tx_id"] for d in comparison["differences"]} | set(comparison["missing_at_county"])
    for tx_id in tx_ids:
        record = store.record_by_tx(tx_id)
        entry = record and store.insured_person(record["body"].get("insured_id", ""),
                                                with_accumulators=False)  # fmt: skip
        if entry:
            names[tx_id] = entry.name
    return names
