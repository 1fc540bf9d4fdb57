"""Signed, hash-chained ledger records of one test device, for the hub's tests (pure: no
store, no hub): the unit tests of the ingest plan and the PostgreSQL store's tests."""

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.adapters.identity import device_id_for
from edge.domain.ledger import genesis_hash, new_record

KEY = Ed25519PrivateKey.generate()
DEVICE = device_id_for(KEY.public_key())


def chain(count: int, key=KEY, device=DEVICE, start_hash=None, first=1, tag="") -> list[dict]:
    records, prev = [], start_hash or genesis_hash(key.public_key())
    for seq in range(first, first + count):
        record = new_record(
            device_id=device,
            seq=seq,
            kind="event",
            tx_id=f"t{tag}{seq}",
            created_at="2026-11-22T09:30:00+08:00",
            prev_hash=prev,
            body={"event": "test", "n": seq, "tag": tag},
            private_key=key,
        )
        records.append(record)
        prev = record["hash"]
    return records
