"""The service point's index at the county (`docs/service-point.md`): the well-formed
`service_request`, `premium` and `premium_reversal` records a device uploads, indexed in
the ingest's own transaction for the county's queue and totals. The ledger records stay
the evidence: a record flagged malformed is never indexed. With them, whose personal
account each settlement, reversal and premium may move, by which device
(`index_account_devices`, called by the ingest; SQLite m009 / PostgreSQL step 9 fill
that table from stored records themselves, after m008 ran).

It is also how the hub's schema step that adds the index (SQLite m008, PostgreSQL step
8) indexes the records a hub stored before it had one, so the store may call it.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from edge.domain.records import ACCOUNT_KINDS, account_persons, body_problem
from sync.hub.model import Slot
from sync.hub.ports import HubStore

APPLICANT_FIELDS = ("name", "gender", "birth_date", "id_number_masked")
INDEXED_KINDS = ("service_request", "premium", "premium_reversal")


def index_stored(store: HubStore) -> int:
    """Index the well-formed records of the indexed kinds every enrolled device's slot
    already holds (idempotent: a row indexed already is left as it is); returns how many
    records were read. Their index time is the record's own."""
    count = 0
    for slot in store.slots():
        if slot.device_id is None:
            continue
        flagged = store.malformed_records(slot.device_id)
        records = [
            r
            for r in store.records_of_kinds(slot.device_id, INDEXED_KINDS)
            # one stored before ingest checked bodies
            if r["seq"] not in flagged and body_problem(r["kind"], r["body"]) is None
        ]
        for record in records:
            index_records(store, slot, [record], (), record["created_at"])
        count += len(records)
    return count


def index_records(
    store: HubStore, slot: Slot, records: Sequence[dict], flagged: Iterable[int], at: str
) -> None:
    """Index the well-formed `service_request`, `premium` and `premium_reversal` records
    just stored for `slot`'s device (inside the ingest's unit of work), in seq order: a
    reversal in the same batch as its premium finds it."""
    skip = set(flagged)
    for record in records:
        if record["seq"] in skip or not isinstance(record.get("body"), dict):
            continue
        kind = record["kind"]
        if kind == "service_request":
            _index_request(store, slot, record, at)
        elif kind == "premium":
            _index_premium(store, slot, record)
        elif kind == "premium_reversal":
            _index_reversal(store, slot.device_id or "", record)


def index_account_devices(store: HubStore, device_id: str, records: Iterable[dict]) -> None:
    """Note whose personal account each well-formed record may move, as moved by this
    device: a balance the county computes names how far it counted each of those
    devices' records (`HubStore.records_counted`), and only those."""
    persons = set()
    for record in records:
        body = record.get("body")
        if record.get("kind") in ACCOUNT_KINDS and isinstance(body, dict):
            persons |= account_persons(record["kind"], body)
    if persons:
        store.add_account_devices(device_id, sorted(persons))


def _index_reversal(store: HubStore, device_id: str, record: dict) -> None:
    """Mark the premium a reversal undoes, once, and only when the reversal gives back
    what it took (amount, method, account): one that does not is flagged at
    recomputation and counts nowhere."""
    body = record["body"]
    target = body.get("reverses")
    original = store.premium_of(device_id, target) if isinstance(target, str) else None
    if original is None or any(
        body.get(name) != original[name] for name in ("amount", "method", "account_holder")
    ):
        return
    store.reverse_premium(device_id, original["tx_id"], record["tx_id"], record["created_at"])


def _index_request(store: HubStore, slot: Slot, record: dict, at: str) -> None:
    body = record["body"]
    applicant = body.get("applicant")
    follow_up_of = body.get("follow_up_of")
    store.add_service_request(
        {
            "tx_id": record["tx_id"],
            "device_id": slot.device_id,
            "clinic": slot.clinic_code,
            "township": slot.township,
            "seq": record["seq"],
            "kind": str(body.get("kind")),
            "created_at": record["created_at"],
            "insured_id": _text_or_none(body.get("insured_id")),
            # Masked data only: whatever else a body carried stays in the record.
            "applicant": (
                {k: applicant.get(k) for k in APPLICANT_FIELDS}
                if isinstance(applicant, dict)
                else None
            ),
            "sealed_id_number": body.get("sealed_id_number") or None,
            "details": body.get("details") if isinstance(body.get("details"), dict) else {},
            "attachments": [a for a in body.get("attachments") or [] if isinstance(a, dict)],
            "note": _text_or_none(body.get("note")),
            "follow_up_of": _text_or_none(follow_up_of),
            "state": "pending",
            "updated_at": at,
        }
    )
    if isinstance(follow_up_of, str):
        # More information for a request the county asked about: back in the queue.
        original = store.service_request(follow_up_of)
        if original is not None and original["device_id"] == slot.device_id:
            store.set_request_state(follow_up_of, "pending", at, expected="more_info")


def _index_premium(store: HubStore, slot: Slot, record: dict) -> None:
    body = record["body"]
    year, amount, state_paid = body.get("year"), body.get("amount"), body.get("state_paid")
    if not all(type(v) is int for v in (year, amount, state_paid)):
        return  # only a body the foundation's schema let through is counted
    persons = [p for p in body.get("persons") or [] if isinstance(p, dict)]
    store.add_premium(
        {
            "tx_id": record["tx_id"],
            "device_id": slot.device_id,
            "clinic": slot.clinic_code,
            "township": slot.township,
            "seq": record["seq"],
            "created_at": record["created_at"],
            "year": year,
            "method": str(body.get("method")),
            "reference": _text_or_none(body.get("reference")),
            "account_holder": _text_or_none(body.get("account_holder")),
            "amount": amount,
            "state_paid": state_paid,
            "persons": persons,
            "person_count": len(persons),
        }
    )


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
