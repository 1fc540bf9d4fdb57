"""The signed, hash-chained ledger of `ledger.md`, version 1: building and verifying records.

Pure functions over dicts and keys; the store decides where records live. Anyone with
the device's public key can run `verify_chain` over an export.
"""

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

RECORD_VERSION = 1
# The kinds that cancel an earlier record of the same ledger, at most once: and which kind.
REVERSES = {"reversal": "settlement", "premium_reversal": "premium"}
KINDS = (
    "settlement", "reversal", "daily_close", "monthly_close", "yearly_close", "event",
    "service_request", "premium", "premium_reversal",
)  # fmt: skip


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def genesis_hash(public_key: Ed25519PublicKey) -> str:
    """`prev_hash` of record 1: SHA-256 of the device's raw public key."""
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()


def canonical(record: dict[str, Any]) -> bytes:
    """The signed bytes: the record without `hash` and `sig`, sorted compact UTF-8 JSON.

    orjson writes exactly ledger.md's `json.dumps(r, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False).encode()` for what a record may hold (string keys, integers of at
    most 64 bits, no floats; tests/unit/test_ledger_canonical.py), ten times as fast: it is on
    every settlement's path and every verification's. Anything else it refuses (TypeError).
    """
    unsigned = {k: v for k, v in record.items() if k not in ("hash", "sig")}
    return orjson.dumps(unsigned, option=orjson.OPT_SORT_KEYS)


def record_hash(record: dict[str, Any]) -> str:
    """Lowercase hex SHA-256 of the canonical bytes."""
    return hashlib.sha256(canonical(record)).hexdigest()


def seal(record: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """The record with its `hash` and `sig`."""
    return seal_with_text(record, private_key)[0]


def seal_with_text(
    record: dict[str, Any], private_key: Ed25519PrivateKey
) -> tuple[dict[str, Any], str]:
    """The sealed record and its JSON text for storage, made from the canonical bytes
    already built for the signature instead of encoding the record a second time."""
    data = canonical(record)
    digest, signature = hashlib.sha256(data).hexdigest(), b64url(private_key.sign(data))
    text = f'{data.decode()[:-1]},"hash":"{digest}","sig":"{signature}"}}'
    return {**record, "hash": digest, "sig": signature}, text


def new_record(**fields: Any) -> dict[str, Any]:
    """A sealed record (the fields are those of `new_record_with_text`)."""
    return new_record_with_text(**fields)[0]


def new_record_with_text(
    *,
    device_id: str,
    seq: int,
    kind: str,
    tx_id: str,
    created_at: str,
    prev_hash: str,
    body: dict[str, Any],
    private_key: Ed25519PrivateKey,
) -> tuple[dict[str, Any], str]:
    return seal_with_text(
        {
            "v": RECORD_VERSION,
            "device_id": device_id,
            "seq": seq,
            "kind": kind,
            "tx_id": tx_id,
            "created_at": created_at,
            "prev_hash": prev_hash,
            "body": body,
        },
        private_key,
    )


@dataclass(frozen=True)
class Verification:
    count: int
    first_bad_seq: int | None = None
    reason: str | None = None
    last_hash: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


def verify_chain(records: Iterable[dict[str, Any]], public_key: Ed25519PublicKey) -> Verification:
    """Check records in `seq` order; report the first that breaks the chain, and why."""
    expected_seq = 1
    prev_hash = genesis_hash(public_key)
    seen: dict[str, set[str]] = {kind: set() for kind in REVERSES.values()}
    reversed_tx: set[str] = set()
    for record in records:
        problem = _record_problem(record, expected_seq, prev_hash, public_key)
        if problem is None and record["kind"] in REVERSES:
            target_kind = REVERSES[record["kind"]]
            problem = _reversal_problem(record["body"], target_kind, seen[target_kind], reversed_tx)
        if problem is not None:
            # The first seq whose record is not what it must be (missing, moved, altered).
            return Verification(expected_seq - 1, expected_seq, problem, prev_hash)
        if record["kind"] in seen:
            seen[record["kind"]].add(record["tx_id"])
        prev_hash = record["hash"]
        expected_seq += 1
    return Verification(expected_seq - 1, last_hash=prev_hash)


def _record_problem(
    record: object, expected_seq: int, prev_hash: str, public_key: Ed25519PublicKey
) -> str | None:
    if not isinstance(record, dict):
        return "not a record"
    seq = record.get("seq")
    if type(seq) is not int or seq != expected_seq:  # True == 1, but is no seq
        return f"seq is {seq!r}, expected {expected_seq} (a record is missing, repeated or moved)"
    if record.get("prev_hash") != prev_hash:
        return "prev_hash does not match the previous record's hash"
    problem = self_consistency_problem(record, public_key)
    if problem is not None:
        return problem
    if not isinstance(record.get("kind"), str):  # unknown kinds are chained like any other
        return "kind is not a string"
    if not isinstance(record.get("body"), dict):
        return "body is not an object"
    return None


def self_consistency_problem(record: dict[str, Any], public_key: Ed25519PublicKey) -> str | None:
    """Why a record's own `hash` or `sig` is wrong, or None; the chain is checked apart."""
    if _holds_a_float(record):
        return "holds a number with a fraction (amounts and counts are integers)"
    try:
        data = canonical(record)
    except (TypeError, ValueError):
        return "cannot be serialised canonically"
    if record.get("hash") != hashlib.sha256(data).hexdigest():
        return "hash does not match the record's content (altered)"
    try:
        public_key.verify(b64url_decode(str(record.get("sig", ""))), data)
    except (InvalidSignature, ValueError):
        return "signature does not verify with the device's public key"
    return None


def _holds_a_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_holds_a_float(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_a_float(item) for item in value)
    return False


def _reversal_problem(
    body: dict[str, Any], target_kind: str, earlier: set[str], reversed_tx: set[str]
) -> str | None:
    target = body.get("reverses")
    if target not in earlier:
        return f"reversal names {target!r}, not an earlier {target_kind}"
    if target in reversed_tx:
        return f"{target_kind} {target} is reversed twice"
    reversed_tx.add(target)
    return None
