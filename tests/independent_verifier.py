"""A second, independent implementation of ledger verification, written from ledger.md alone.

It imports nothing from `edge`: only hashlib, json, base64 and `cryptography`. If it and
the device's own verifier agree on every ledger, including tampered ones, the spec is
precise enough for a county auditor to write their own.

    python independent_verifier.py EXPORT.jsonl PUBLIC_KEY_B64URL

prints {"ok", "records", "first_bad_seq", "reason"} and exits 1 when the ledger is broken.
"""

import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def result(records: int, first_bad_seq: int | None = None, reason: str | None = None) -> dict:
    """The shape `clinic ledger verify --json` prints; `records` counts the good ones."""
    return {"ok": first_bad_seq is None, "records": records, "first_bad_seq": first_bad_seq,
            "reason": reason}  # fmt: skip


class _Float(Exception):
    pass


def _no_floats(text: str):
    raise _Float(text)


def b64url_decode(text: str) -> bytes:
    """base64url without padding ("=" is never part of the spec's encoding)."""
    if not isinstance(text, str) or "=" in text:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_from_b64url(text: str) -> Ed25519PublicKey:
    raw = b64url_decode(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 raw bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def canonical(record: dict) -> bytes:
    """The record without `hash` and `sig`: UTF-8 JSON, keys sorted, no white space,
    non-ASCII kept as is."""
    unsigned = {key: value for key, value in record.items() if key not in ("hash", "sig")}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def _parse(line: str | bytes) -> object:
    if isinstance(line, bytes):
        line = line.decode("utf-8")
    return json.loads(line, parse_float=_no_floats, parse_constant=_no_floats)


def verify_records(lines, public_key_b64: str) -> dict:
    """Check exported records (JSON Lines, str or bytes, one record each) in the given order."""
    public_key = public_key_from_b64url(public_key_b64)
    raw_key = b64url_decode(public_key_b64)
    expected_seq = 1
    prev_hash = hashlib.sha256(raw_key).hexdigest()  # genesis: SHA-256 of the raw key
    cancellable: dict[str, set[str]] = {"settlement": set(), "premium": set()}
    cancelled: set[str] = set()

    def broken(reason: str) -> dict:
        return result(expected_seq - 1, expected_seq, reason)

    for line in lines:
        if isinstance(line, (str, bytes)) and not line.strip():
            continue  # a trailing newline, not a record
        try:
            record = _parse(line)
        except _Float:
            return broken("a number with a fraction or exponent (floats are not allowed)")
        except (UnicodeDecodeError, ValueError):
            return broken("not a JSON document")
        if not isinstance(record, dict):
            return broken("not a JSON object")
        seq = record.get("seq")
        if type(seq) is not int or seq != expected_seq:
            return broken(f"seq is {seq!r}, expected {expected_seq}")
        if record.get("prev_hash") != prev_hash:
            return broken("prev_hash is not the previous record's hash")
        data = canonical(record)
        digest = hashlib.sha256(data).hexdigest()
        if record.get("hash") != digest:
            return broken("hash is not the SHA-256 of the canonical bytes")
        try:
            public_key.verify(b64url_decode(record.get("sig")), data)
        except (InvalidSignature, ValueError, TypeError):
            return broken("signature does not verify")
        kind = record.get("kind")
        body = record.get("body")
        if kind in ("reversal", "premium_reversal"):
            target_kind = "settlement" if kind == "reversal" else "premium"
            target = body.get("reverses") if isinstance(body, dict) else None
            if target not in cancellable[target_kind]:
                return broken(f"{kind} names {target!r}, not an earlier {target_kind}")
            if target in cancelled:
                return broken(f"{target_kind} {target!r} is already reversed")
            cancelled.add(target)
        elif kind in cancellable:
            cancellable[kind].add(record.get("tx_id"))
        prev_hash = digest
        expected_seq += 1
    return result(expected_seq - 1)


def verify_export(path: str, public_key_b64: str) -> dict:
    with open(path, "rb") as handle:
        return verify_records(handle.read().split(b"\n"), public_key_b64)


def main(argv: list[str]) -> int:
    verdict = verify_export(argv[0], argv[1])
    print(json.dumps(verdict, ensure_ascii=False))
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
