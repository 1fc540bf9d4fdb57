"""Look-ups the pages need beyond `SqliteDeviceStore`'s own methods (and the one small
write of the UI's own table of used e-vouchers)."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.ledger import b64url_decode, canonical, genesis_hash
from edge.domain.model import Rejection


def search_diagnoses(store: SqliteDeviceStore, query: str, limit: int = 12) -> list[dict]:
    """Diagnoses found by `query` (code, characters or pinyin anywhere, the county's
    aliases), the clinic's frequent ones first."""
    return [{"code": hit.code, "name": hit.name} for hit in store.search_diagnoses(query, limit)]


def diagnosis_names(store: SqliteDeviceStore, codes) -> dict[str, str]:
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows = store.db.execute(
        f"SELECT code, name FROM diagnosis WHERE code IN ({', '.join('?' * len(wanted))})",
        wanted,
    )
    return dict(rows.fetchall())


@dataclass(frozen=True)
class Row:
    """A settlement or reversal of the day, with the patient's name from the roster."""

    record: dict
    name: str
    reversed_by: int | None


MIN_PREFIX = 6


def records_of_day(store: SqliteDeviceStore, day: str, query: str = "", limit: int = 200):
    """The day's settlements and reversals, newest first; `query` matches the patient's
    name, insured number, a transaction id or a seq."""
    sql = (
        "SELECT l.record, coalesce(p.name, ''), r.seq FROM ledger AS l"
        " LEFT JOIN person AS p ON p.insured_id = l.insured_id"
        " LEFT JOIN ledger AS r ON r.reverses = l.tx_id"
        " WHERE l.day = ? AND l.kind IN ('settlement', 'reversal')"
    )
    params: list = [day]
    query = query.strip()
    if query:
        # Number prefixes only from 6 characters on: "1" is seq 1, not every tx_id or
        # insured number that happens to start with 1.
        prefix = f"{query}%" if len(query) >= MIN_PREFIX else None
        sql += (
            " AND (p.name LIKE ? OR l.insured_id LIKE ? OR l.tx_id LIKE ?"
            " OR CAST(l.seq AS TEXT) = ?)"
        )
        params += [f"%{query}%", prefix, prefix, query]
    sql += " ORDER BY l.seq DESC LIMIT ?"
    params.append(limit)
    return [Row(json.loads(text), name, rev) for text, name, rev in store.db.execute(sql, params)]


def record_by_seq(store: SqliteDeviceStore, seq: int) -> dict | None:
    row = store.db.execute("SELECT record FROM ledger WHERE seq = ?", [seq]).fetchone()
    return None if row is None else json.loads(row[0])


def person_name(store: SqliteDeviceStore, insured_id: str) -> str:
    row = store.db.execute("SELECT name FROM person WHERE insured_id = ?", [insured_id]).fetchone()
    return row[0] if row else ""


def record_is_genuine(store: SqliteDeviceStore, record: dict, public_key: Ed25519PublicKey) -> bool:
    """This one record: its hash matches its content, the device's key signed it, and it
    links to the record before it (the whole chain is checked on the status page)."""
    data = canonical(record)
    if record.get("hash") != hashlib.sha256(data).hexdigest():
        return False
    try:
        public_key.verify(b64url_decode(str(record.get("sig", ""))), data)
    except (InvalidSignature, ValueError):
        return False
    if record["seq"] == 1:
        return record.get("prev_hash") == genesis_hash(public_key)
    previous = record_by_seq(store, record["seq"] - 1)
    return previous is not None and previous.get("hash") == record.get("prev_hash")


def last_close(store: SqliteDeviceStore) -> dict | None:
    seq = store.last_seq_of_kind("daily_close")
    return record_by_seq(store, seq) if seq else None


def voucher_used(store: SqliteDeviceStore, nonce: str) -> bool:
    row = store.db.execute("SELECT 1 FROM used_voucher WHERE nonce = ?", [nonce]).fetchone()
    return row is not None


def claim_voucher(store: SqliteDeviceStore, nonce: str, insured_id: str, at: datetime) -> None:
    """Mark an e-voucher used (inside the settlement's transaction), or refuse it."""
    with store.write_transaction():
        cursor = store.db.execute(
            "INSERT OR IGNORE INTO used_voucher VALUES (?, ?, ?)",
            [nonce, insured_id, at.isoformat()],
        )
        if cursor.rowcount != 1:
            raise Rejection("VOUCHER_USED", "this e-voucher has already been used")


def claim_visit_token(store: SqliteDeviceStore, token: str, at: datetime) -> None:
    """Settle a chosen patient's visit once (inside the settlement's transaction)."""
    with store.write_transaction():
        cursor = store.db.execute(
            "INSERT OR IGNORE INTO settled_visit_token VALUES (?, ?)", [token, at.isoformat()]
        )
        if not token or cursor.rowcount != 1:
            raise Rejection("ALREADY_SETTLED", "this visit has already been settled")


def search_persons(store: SqliteDeviceStore, query: str, limit: int = 8) -> list[dict]:
    """Roster persons by name (characters anywhere), insured number or card number (from
    their start, 6 characters or more), for picking who a premium or request is for."""
    query = "".join(query.split())
    if not query:
        return []
    prefix = f"{query}%" if len(query) >= MIN_PREFIX else None
    rows = store.db.execute(
        "SELECT insured_id, name, insurance_type, status FROM person"
        " WHERE name LIKE ? OR insured_id LIKE ? OR card_no LIKE ? OR insured_id = ?"
        " ORDER BY name, insured_id LIMIT ?",
        [f"%{query}%", prefix, prefix, query, limit],
    )
    keys = ("insured_id", "name", "insurance_type", "status")
    return [dict(zip(keys, row, strict=True)) for row in rows]
