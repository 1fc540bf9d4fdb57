"""Records of the village service point signed by a real device as its own use cases sign
them (requests with photos and a sealed ID number, premiums), and photos put to the hub
the way the agent puts them: for the county console's tests (integration and browser)."""

import base64
import hashlib
import struct
import zlib
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sync_helpers import NOW, Device, signed_call
from web_service_support import with_check_digit

from edge.adapters.attachments import AttachmentFiles
from edge.adapters.sealing import seal
from edge.domain.ledger import genesis_hash, new_record
from sync import agent
from sync.hub.adapters.county_key import load_seal_key
from sync.hub.server import RunningHub

APPLICANT_ID = with_check_digit("32011519700102123")


def png(seed: int) -> bytes:
    """A real 1×1 PNG, a different one for each seed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))  # fmt: skip

    pixel = bytes([0, seed % 256, 80, 160])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(pixel)) + chunk(b"IEND", b""))  # fmt: skip


def append(device: Device, kind: str, body: dict, at: datetime) -> dict:
    """A record of `kind`, signed and chained by the device as its own use cases do."""
    store, identity = device.store, device.identity
    with store.write_transaction():
        head = store.ledger_head()
        seq = head.seq + 1 if head else 1
        record = new_record(
            device_id=identity.device_id,
            seq=seq,
            kind=kind,
            tx_id=f"{kind}-{identity.device_id[:8]}-{seq}",
            created_at=at.isoformat(),
            prev_hash=head.hash if head else genesis_hash(identity.public_key),
            body=body,
            private_key=identity.private_key,
        )
        store.append_record(record, day=at.date().isoformat(), insured_id=body.get("insured_id"))
    return record


def county_public_b64(hub_dir) -> str:
    raw = load_seal_key(hub_dir).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def photo_entry(data: bytes, label: str) -> dict:
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "type": "image/png",
        "bytes": len(data),
        "label": label,
    }


def keep_photos(device: Device, photos: list[bytes]) -> None:
    """On the device's disk before the record names them, as its own use case keeps them."""
    files = AttachmentFiles(device.data_dir)
    for photo in photos:
        files.store(photo)


def enrolment(
    device: Device,
    hub_dir: Path,
    at: datetime,
    photos: list[bytes],
    name: str = "王小梅",
    masked: str = APPLICANT_ID[:6] + "********" + APPLICANT_ID[-4:],
) -> dict:
    keep_photos(device, photos)
    return append(
        device,
        "service_request",
        {
            "kind": "enrolment",
            "operator": "doc01",
            "insured_id": None,
            "applicant": {
                "name": name,
                "gender": "F",
                "birth_date": "1970-01-02",
                "id_number_masked": masked,
            },
            "sealed_id_number": seal(APPLICANT_ID, county_public_b64(hub_dir)),
            "details": {"insurance_type": "resident", "category": None, "village": "东村"},
            "attachments": [photo_entry(p, f"户口本 {i + 1}") for i, p in enumerate(photos)],
            "note": None,
            "follow_up_of": None,
        },
        at,
    )


def premium(device: Device, at: datetime, method: str = "cash", persons: int = 1) -> dict:
    people = [
        {
            "insured_id": f"3201150000000{i + 1}",
            "name": f"参保人{i + 1}",
            "categories": [],
            "due": 40000,
            "state_pays": 0,
            "amount": 40000,
        }
        for i in range(persons)
    ]
    return append(
        device,
        "premium",
        {
            "operator": "doc01",
            "year": NOW.year + 1,
            "payer": {"name": "参保人1", "insured_id": people[0]["insured_id"]},
            "method": method,
            "reference": "WX-0001" if method == "mobile" else None,
            "account_holder": None,
            "persons": people,
            "amount": 40000 * persons,
            "state_paid": 0,
            "account_balance_after": None,
        },
        at,
    )


def put_photo(hub: RunningHub, device: Device, data: bytes, at: datetime) -> None:
    status, answer, _ = signed_call(
        hub.url,
        device.identity,
        "PUT",
        f"/attachments/{hashlib.sha256(data).hexdigest()}",
        data,
        at,
        nonce=f"photo-{hashlib.sha256(data).hexdigest()[:16]}",
        headers={"Content-Type": "image/png"},
    )
    assert status == 200, answer


def upload(device: Device, at: datetime) -> dict:
    """A sync run that succeeds: the records acknowledged and the photos sent or set aside."""
    report = agent.sync_once(device.store, device.identity, device.data_dir, at)
    assert report["ok"], report
    return report
