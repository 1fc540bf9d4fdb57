"""What coordinators read: the fleet's status (contact, backlog, versions, clock skew,
alarms, differences, the payers of each device's last daily close) and the CSV reports of
settlements and reconciliation items. Amounts by payer carry the names of the national
platform's settlement result (`setlinfo`: hifp_pay, hifmi_pay, maf_pay, …).
"""

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from edge.domain.records import MONEY_FIELDS, NATIONAL_NAMES, body_problem, payer_amounts
from edge.domain.spreadsheet import safe_cell
from sync.hub import reconcile
from sync.hub.model import Slot
from sync.hub.ports import HubStore
from sync.hub.services.releases import software_of
from sync.protocol import canonical_json

PAYERS = tuple(NATIONAL_NAMES[name] for name in MONEY_FIELDS)


def national_amounts(amounts: Mapping) -> dict[str, object]:
    """{national name: amount} of amounts by MONEY_FIELDS; a payer not named (a version 1
    close or reversal names five) is 0."""
    return {NATIONAL_NAMES[name]: amounts.get(name, 0) for name in MONEY_FIELDS}


def national_field(name: str) -> str:
    """A compared field's name with a payer's part in its national name: `fund` is
    `hifp_pay`, a daily close's `net.cash` is `net.psn_cash_pay`; others as they are."""
    section, dot, payer = name.rpartition(".")
    if section in ("settlements", "reversals", "net", "") and payer in NATIONAL_NAMES:
        return section + dot + NATIONAL_NAMES[payer]
    return name


def last_close(record: dict | None) -> dict | None:
    """A device's latest daily close for the fleet: its day, how many settlements, and
    the net each payer paid (national names)."""
    if record is None:
        return None
    body = record["body"]
    return {
        "seq": record["seq"],
        "business_day": body.get("business_day"),
        "settlements": (body.get("settlements") or {}).get("count"),
        "payers": national_amounts(body.get("net") or {}),
    }


def slot_state(slot: Slot, now: datetime) -> str:
    if slot.revoked_at is not None:
        return "revoked"
    if slot.device_id is not None:
        return "enrolled"
    if now >= datetime.fromisoformat(slot.code_expires_at):
        return "code_expired"
    return "awaiting_enrollment"


# What the console shows of a device's own heartbeat: a few short fields (it is the
# device's text; another check caps it at ingest, this keeps every page small anyway).
HEARTBEAT_VERSIONS_SHOWN = 8
HEARTBEAT_TEXT_SHOWN = 40


def shown_text(value: object, limit: int = HEARTBEAT_TEXT_SHOWN) -> str:
    text = value if isinstance(value, str) else canonical_json(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown_heartbeat(beat: object) -> tuple[int | None, dict[str, str | None]]:
    """(records waiting, {kind: version}) of a device's heartbeat, each bounded."""
    if not isinstance(beat, dict):
        return None, {}
    waiting = beat.get("records_waiting")
    versions = beat.get("versions")
    shown: dict[str, str | None] = {}
    if isinstance(versions, dict):
        for kind, version in list(versions.items())[:HEARTBEAT_VERSIONS_SHOWN]:
            shown[shown_text(kind)] = None if version is None else shown_text(version)
    return (waiting if type(waiting) is int else None), shown


def fleet_status(store: HubStore, now: datetime, township: str | None = None) -> list[dict]:
    """One row per device slot (of a township), for coordinators: see `fleet_rows`."""
    return fleet_rows(store, now, store.slots(township))


def fleet_rows(store: HubStore, now: datetime, slots: Sequence[Slot]) -> list[dict]:
    """One row per slot of `slots` (a console page's): contact, backlog, versions, the
    software it runs and its update's state, skew, alarms, reconciliation differences,
    the payers of the device's last daily close.
    Every figure is read for these devices only, so a page costs the same at any size."""
    enrolled = [s.device_id for s in slots if s.device_id]
    counts = store.record_counts(enrolled)
    alarms = store.open_alarm_codes(enrolled)
    differences = store.difference_counts(enrolled, reconcile.NEEDS_REVIEW)
    closes = store.last_records_of_kind("daily_close", enrolled) if enrolled else {}
    rows = []
    for slot in slots:
        waiting, versions = shown_heartbeat(slot.heartbeat_doc)
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
                "records_waiting": waiting,
                "versions": versions,
                "software": software_of(slot),
                "clock_skew_s": slot.clock_skew_s,
                "alarms": alarms.get(slot.device_id or "", []),
                "reconciliation_differences": differences.get(slot.device_id or "", 0),
                "last_close": last_close(closes.get(slot.device_id or "")),
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
    "rules_version",
    *PAYERS,
    "family_account_holder",
    "fund_limited_by",
    "needs_review",
    "county_status",
    *(f"county_{payer}" for payer in PAYERS[1:]),
    "county_fund_limited_by",
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
    if isinstance(value, (dict, list)):
        value = canonical_json(value).decode()
    return safe_cell(value)  # no spreadsheet formula runs from an exported cell


def settlements_csv(store: HubStore, device_ids: Iterable[str] | None = None) -> str:
    """One row per settlement: what the device's result says each payer paid, and what
    the county's recomputation says (empty while it has none); national names."""

    def rows() -> Iterator[dict]:
        for record, status, hub in store.settlements(device_ids):
            body = record["body"]
            # Flagged records are not listed; one stored before bodies were checked is
            # left out here too.
            if body_problem("settlement", body) is not None:
                continue
            result, visit = body.get("result", {}), body.get("visit", {})
            county = national_amounts(payer_amounts(hub)) if hub else {}
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
                "rules_version": body.get("rules_version"),
                **national_amounts(payer_amounts(result)),
                "family_account_holder": visit.get("family_account_holder"),
                "fund_limited_by": result.get("fund_limited_by"),
                "needs_review": ";".join(body.get("needs_review", [])),
                "county_status": status or "pending",
                **{f"county_{payer}": county.get(payer) for payer in PAYERS[1:]},
                "county_fund_limited_by": (hub or {}).get("fund_limited_by"),
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
                yield {
                    **base,
                    "field": national_field(name),
                    "device": sides["device"],
                    "hub": sides["hub"],
                }

    return _csv(RECONCILIATION_CSV_COLUMNS, rows())
