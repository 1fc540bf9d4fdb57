"""What enrolled devices send: batches of ledger records (stored idempotently by
`(device_id, seq)`, as `sync.hub.ingest` plans) and heartbeats; and what the hub holds
for a device, exported.
"""

from collections.abc import Iterator, Sequence
from datetime import datetime

from edge.domain.ledger import genesis_hash
from sync.hub import service_index
from sync.hub.ingest import Refusal, plan_ingest
from sync.hub.model import HubError
from sync.hub.ports import HubStore
from sync.hub.services.releases import software_report
from sync.protocol import SyncError, canonical_json, iso, load_public_key, parse_time

# A heartbeat is a few hundred bytes; these bounds keep one device from bloating the
# fleet page (every field is shown there) or the hub's database.
MAX_HEARTBEAT_BYTES = 16 * 1024
MAX_HEARTBEAT_FIELD_BYTES = 1024
# Seqs named in one grouped alarm's detail.
ALARM_SEQS_SHOWN = 5


def raise_grouped_alarms(
    store: HubStore, device_id: str, refusals: Sequence[Refusal], at: str
) -> None:
    """One alarm per code for a batch, at its first seq, saying how many records and
    which first: a flood of bad records makes a handful of alarms, not one per record."""
    by_code: dict[str, list[Refusal]] = {}
    for refusal in refusals:
        by_code.setdefault(refusal.code, []).append(refusal)
    for code, group in by_code.items():
        first, detail = group[0], group[0].detail
        if len(group) > 1:
            seqs = [str(r.seq) for r in group[:ALARM_SEQS_SHOWN]]
            more = ", …" if len(group) > ALARM_SEQS_SHOWN else ""
            detail = f"{len(group)} records (seq {', '.join(seqs)}{more}); the first: {detail}"
        store.raise_alarm(device_id, code, first.seq, detail, at)


def refuse_batch(store: HubStore, device_id: str, error: SyncError, now: datetime) -> None:
    """A batch the hub cannot read or will not take (nothing of it is stored): one alarm
    for the device, counted again on each repeat."""
    with store.unit_of_work():
        store.raise_alarm(device_id, error.code, None, error.message_en, iso(now))


def ingest(store: HubStore, device_id: str, batch: list[object], now: datetime) -> dict:
    """Store a batch of an authenticated device idempotently by (device_id, seq); answer
    the acknowledged high-water mark. Every refusal raises an alarm for the device."""
    received_at = iso(now)
    with store.unit_of_work():
        current = store.slot_by_device(device_id)  # read inside the write lock
        if current is None or current.public_key is None:
            raise HubError(f"device {device_id} is no longer enrolled at this hub")
        public_key = load_public_key(current.public_key)
        head_seq = current.head_seq
        head_hash = current.head_hash or genesis_hash(public_key)
        seqs = [
            r["seq"]
            for r in batch
            if isinstance(r, dict) and type(r.get("seq")) is int and r["seq"] <= head_seq
        ]
        held_before = store.held_records(device_id)
        plan = plan_ingest(
            device_id=device_id,
            public_key=public_key,
            head_seq=head_seq,
            head_hash=head_hash,
            batch=batch,
            stored_hashes=store.stored_hashes(device_id, seqs),
            held=held_before,
        )
        if plan.accepted:
            store.add_records(device_id, plan.accepted, received_at)
        if plan.release:
            store.release_held(device_id, plan.release)
        if plan.hold:
            store.hold_records(device_id, plan.hold, received_at)
        if plan.malformed:  # kept as evidence, left out of every computation
            store.flag_malformed(
                device_id, [(r.seq or 0, r.detail) for r in plan.malformed], received_at
            )
        if plan.accepted:  # requests and premiums for the county's queue and totals
            flagged = {r.seq or 0 for r in plan.malformed}
            service_index.index_records(store, current, plan.accepted, flagged, received_at)
            service_index.index_account_devices(
                store, device_id, [r for r in plan.accepted if r["seq"] not in flagged]
            )
        if plan.head_seq != head_seq:
            store.set_head(device_id, plan.head_seq, plan.head_hash)
        raise_grouped_alarms(store, device_id, plan.alarms, received_at)
        store.record_contact(device_id, received_at, None, None)
        held = len(held_before) + len(plan.hold) - len(set(plan.release) & held_before.keys())
    return {
        "acked_seq": plan.head_seq,
        "acked_hash": plan.head_hash,
        "stored": len(plan.accepted),
        "duplicates": plan.duplicates,
        "held": held,
        "refused": [{"seq": r.seq, "code": r.code, "detail": r.detail} for r in plan.refusals],
        # Stored, but flagged: the device's chain goes on, the county will not count them.
        "flagged": [{"seq": r.seq, "code": r.code, "detail": r.detail} for r in plan.malformed],
        "hub_time": iso(now),
    }


def heartbeat(store: HubStore, device_id: str, document: dict, now: datetime) -> dict:
    """Remember what an authenticated device reports; a ledger head behind what the hub
    holds means the device was restored from an old backup, and raises an alarm."""
    device_clock = parse_time(document.get("device_clock"), "device_clock")
    skew = round((device_clock - now).total_seconds())
    allowed = (
        "device_clock",
        "versions",
        "records_waiting",
        "synced_seq",
        "ledger_head",
        "disk_free_bytes",
        "agent",
        "expires",
    )
    report = {k: document[k] for k in allowed if k in document}
    for name, value in report.items():
        if len(canonical_json(value)) > MAX_HEARTBEAT_FIELD_BYTES:
            raise SyncError(
                "TOO_LARGE", f"heartbeat field {name} is over {MAX_HEARTBEAT_FIELD_BYTES} bytes"
            )
    # The software it runs and its update's state: checked on its own, so that a bad
    # report is left out (with an alarm) and never costs the heartbeat.
    software_problem = None
    if "software" in document:
        try:
            report["software"] = software_report(document["software"])
        except ValueError as error:
            software_problem = str(error)
    head = document.get("ledger_head") or {}
    if not isinstance(head, dict):
        raise SyncError("BAD_REQUEST", "ledger_head must be an object")
    with store.unit_of_work():
        store.record_contact(device_id, iso(now), report, skew)
        if software_problem is not None:
            store.raise_alarm(
                device_id, "SOFTWARE_REPORT_MALFORMED", None, software_problem, iso(now)
            )
        current = store.slot_by_device(device_id)
        if current is None or current.public_key is None:
            raise HubError(f"device {device_id} is no longer enrolled at this hub")
        acked_hash = current.head_hash or genesis_hash(load_public_key(current.public_key))
        seq, hash_ = head.get("seq"), head.get("hash")
        if type(seq) is int and 0 <= seq < current.head_seq:
            store.raise_alarm(
                device_id,
                "LEDGER_WENT_BACKWARDS",
                seq,
                f"the device's ledger ends at seq {seq}; the hub holds up to {current.head_seq}",
                iso(now),
            )
        elif type(seq) is int and 0 < seq <= current.head_seq:
            held = store.stored_hashes(device_id, [seq]).get(seq)
            if held is not None and held != hash_:
                store.raise_alarm(
                    device_id,
                    "LEDGER_WENT_BACKWARDS",
                    seq,
                    f"the device's record {seq} is not the one the hub holds",
                    iso(now),
                )
    # The device moves its outbox only when this hash is its own at `acked_seq`.
    return {"hub_time": iso(now), "acked_seq": current.head_seq, "acked_hash": acked_hash}


def export_records(store: HubStore, device_id: str) -> Iterator[dict]:
    """What the hub holds for a device, in `seq` order (`clinic ledger export` format)."""
    if store.slot_by_device(device_id) is None:
        raise HubError(f"no device {device_id!r} at this hub")
    return store.records(device_id)
