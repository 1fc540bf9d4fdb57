"""What the service point's web tests share: a small real PNG, a valid ID number, and a
county whose keys sign decisions and take sealed ID numbers, pinned on a device as the
agent pins them at enrollment."""

import struct
import zlib
from datetime import timedelta

from clock import NOW
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edge.adapters.sealing import public_key_b64
from edge.domain.ledger import b64url, canonical, raw_public_key
from sync.agent import state


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A real PNG picture: `width` × `height` of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))  # fmt: skip


def with_check_digit(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


# Born 1990-01-01, a man (17th digit odd), with its GB 11643 check digit.
ID_NUMBER = with_check_digit("32011519900101123")


class County:
    """The county's signing key (decisions) and encryption key (sealed ID numbers)."""

    def __init__(self) -> None:
        self.signing = Ed25519PrivateKey.generate()
        self.sealing = X25519PrivateKey.generate()

    @property
    def public_key(self) -> str:
        return b64url(raw_public_key(self.signing.public_key()))

    def pin_on(self, store, device_id: str, *, encryption_key: bool = True) -> None:
        """The enrollment row the agent keeps, as if this county's hub had answered (with
        its encryption key, unless told: a device enrolled before the service point)."""
        value = state.Enrollment(
            hub_url="http://127.0.0.1:9", device_id=device_id, slot_id=1, clinic_code="C1",
            township="T1", county_name="Demo", county_public_key=self.public_key,
            enrolled_at=NOW.isoformat(), clock_offset_s=0,
            county_encryption_key=public_key_b64(self.sealing) if encryption_key else None,
        )  # fmt: skip
        with store.write_transaction():
            state.save_enrollment(store, value)

    def decision(self, device_id: str, record: dict, outcome: str, result=None, serial=1):
        decision = {
            "v": 1, "kind": "request_decision", "serial": serial, "device_id": device_id,
            "clinic": "C1", "request_tx_id": record["tx_id"],
            "request_kind": record["body"]["kind"], "outcome": outcome,
            "reason": None if outcome == "approved" else "诊断证明不清楚，请重新拍照",
            "decided_by": "coord-t1", "decided_at": (NOW + timedelta(hours=2)).isoformat(),
            "result": result,
        }  # fmt: skip
        return self.sign(decision)

    def sign(self, decision: dict) -> dict:
        return {"decision": decision, "signature": b64url(self.signing.sign(canonical(decision)))}
