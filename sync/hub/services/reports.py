"""What coordinators read: the fleet's status (contact, backlog, versions, clock skew,
alarms, differences) and the CSV reports of settlements and reconciliation items.
"""

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from sync.hub import reconcile
from sync.hub.model import Slot
from sync.hub.ports import HubStore
from sync.protocol import canonical_json


def slot_state(slot: Slot, now: datetime) -> str:
    if slot.revoked_at is not None:
        return "revoked"
    if slot.device_id is not None:
        return "enrolled"
    if now >= datetime.fromisoformat(slot.code_expires_at):
        return "code_expired"
    return "awaiting_enrollment"


def fleet_status(store: HubStore, now: datetime, township: str | None = None) -> list[dict]:
    """One row per device slot, for coordinators: contact, backlog, versions, skew, alarms,
    reconciliation differences."""
    counts = store.record_counts()
    alarms: dict[str, list[str]] = defaultdict(list)
    for alarm in store.alarms():
        alarms[alarm.device_id].append(alarm.code)
    slots = store.slots(township)
    differences = Counter(
        item.device_id
        for item in store.reconciliation_items([s.device_id for s in slots if s.device_id])
        if item.code != reconcile.NEEDS_REVIEW
    )
    rows = []
    for slot in slots:
        beat = slot.heartbeat_doc
        held, beyond_gap = counts.get(slot.device_id or "", (0, 0))
        contact = slot.last_contact_at
        rows.append(
            {
                "slot_id": slot.slot_id,
                "clinic_code": slot.clinic_code,
                "township": slot.township,
                "device_id": slot.device_id,
                "state": slot_state(slot, now),
                "enrolled_at": slot.enrolled_at,
                "revoked_at": slot.revoked_at,
                "last_contact_at": contact,
                "minutes_since_contact": None
                if contact is None
                else int((now - datetime.fromisoformat(contact)).total_seconds() // 60),
                "acked_seq": slot.head_seq,
                "records_held": held,
                "records_beyond_gap": beyond_gap,
                "records_waiting": beat.get("records_waiting"),
                "versions": beat.get("versions", {}),
                "clock_skew_s": slot.clock_skew_s,
                "alarms": alarms.get(slot.device_id or "", []),
                "reconciliation_differences": differences.get(slot.device_id or "", 0),
            }
        )
    return rows


SETTLEMENT_CSV_COLUMNS = (
    "device_id",
    "seq",
    "tx_id",
    "created_at",
    "insured_id",
    "visit_date",
    "visit_type",
    "catalog_version",
    "policy_version",
    "total",
    "fund",
    "assistance",
    "personal_account",
    "cash",
    "needs_review",
    "county_status",
    "county_fund",
    "county_assistance",
    "county_cash",
)
RECONCILIATION_CSV_COLUMNS = (
    "item_id",
    "device_id",
    "seq",
    "tx_id",
    "code",
    "business_day",
    "field",
    "device",
    "hub",
    "details",
    "created_at",
)


def _csv(columns: tuple[str, ...], rows: Iterable[Mapping]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return out.getvalue()


def _csv_cell(value: object) -> object:
    # Keep spreadsheet formulas from running: a cell starting with =, +, - or @ is quoted.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def settlements_csv(store: HubStore, device_ids: Iterable[str] | None = None) -> str:
    def rows() -> Iterator[dict]:
        for record, status, hub in store.settlements(device_ids):
            body = record["body"]
            result, visit = body.get("result", {}), body.get("visit", {})
            yield {
                "device_id": record["device_id"],
                "seq": record["seq"],
                "tx_id": record["tx_id"],
                "created_at": record["created_at"],
                "insured_id": body.get("insured_id"),
                "visit_date": visit.get("date"),
                "visit_type": visit.get("visit_type"),
                "catalog_version": body.get("catalog_version"),
                "policy_version": body.get("policy_version"),
                **{
                    k: result.get(k)
                    for k in ("total", "fund", "assistance", "personal_account", "cash")
                },
                "needs_review": ";".join(body.get("needs_review", [])),
                "county_status": status or "pending",
                "county_fund": (hub or {}).get("fund"),
                "county_assistance": (hub or {}).get("assistance"),
                "county_cash": (hub or {}).get("cash"),
            }

    return _csv(SETTLEMENT_CSV_COLUMNS, rows())


def reconciliation_csv(store: HubStore, device_ids: Iterable[str] | None = None) -> str:
    def rows() -> Iterator[dict]:
        for item in store.reconciliation_items(device_ids):
            base = {
                "item_id": item.item_id,
                "device_id": item.device_id,
                "seq": item.seq,
                "tx_id": item.tx_id,
                "code": item.code,
                "business_day": item.business_day,
                "created_at": item.created_at,
            }
            fields = item.details.get("fields") or {}
            if not fields:
                yield {**base, "details": canonical_json(item.details).decode()}
            for name, sides in fields.items():
                yield {**base, "field": name, "device": sides["device"], "hub": sides["hub"]}

    return _csv(RECONCILIATION_CSV_COLUMNS, rows())
