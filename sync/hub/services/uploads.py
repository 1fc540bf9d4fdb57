"""What enrolled devices send: batches of ledger records (stored idempotently by
`(device_id, seq)`, as `sync.hub.ingest` plans) and heartbeats; and what the hub holds
for a device, exported.
"""

from collections.abc import Iterator
from datetime import datetime

from edge.domain.ledger import genesis_hash
from sync.hub.ingest import plan_ingest
from sync.hub.model import HubError
from sync.hub.ports import HubStore
from sync.protocol import SyncError, iso, load_public_key, parse_time


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
        plan = plan_ingest(
            device_id=device_id,
            public_key=public_key,
            head_seq=head_seq,
            head_hash=head_hash,
            batch=batch,
            stored_hashes=store.stored_hashes(device_id, seqs),
            held=store.held_records(device_id),
        )
        if plan.accepted:
            store.add_records(device_id, plan.accepted, received_at)
        if plan.release:
            store.release_held(device_id, plan.release)
        if plan.hold:
            store.hold_records(device_id, plan.hold, received_at)
        if plan.head_seq != head_seq:
            store.set_head(device_id, plan.head_seq, plan.head_hash)
        for refusal in plan.refusals:
            store.raise_alarm(device_id, refusal.code, refusal.seq, refusal.detail, received_at)
        store.record_contact(device_id, received_at, None, None)
        held = len(store.held_records(device_id)) if plan.hold or plan.release else None
    return {
        "acked_seq": plan.head_seq,
        "acked_hash": plan.head_hash,
        "stored": len(plan.accepted),
        "duplicates": plan.duplicates,
        "held": held if held is not None else len(plan.hold),
        "refused": [{"seq": r.seq, "code": r.code, "detail": r.detail} for r in plan.refusals],
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
    head = document.get("ledger_head") or {}
    if not isinstance(head, dict):
        raise SyncError("BAD_REQUEST", "ledger_head must be an object")
    with store.unit_of_work():
        store.record_contact(device_id, iso(now), report, skew)
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
