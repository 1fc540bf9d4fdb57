"""What a device's files hold, read without changing them: a database's facts (its
identity, its ledger verified, what the county acknowledged, the installed versions),
SQLite's integrity check, and whether a key file is the ledger's key. The doctor, backups
and restores all read them."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.ledger import Verification, b64url, raw_public_key
from edge.services import verify_ledger


class MaintenanceError(Exception):
    """A refused backup or restore; nothing was changed. The message says what to do."""


@dataclass(frozen=True)
class DatabaseFacts:
    """What a device database file holds, with its ledger verified."""

    device_id: str
    public_key: str
    head_seq: int
    head_hash: str | None
    synced_seq: int
    last_sync_at: str | None
    versions: dict[str, tuple[str | None, str | None]]
    verification: Verification


def database_facts(path: Path) -> DatabaseFacts:
    """Read a device database that exists (writing nothing) and verify its ledger; raises
    sqlite3.Error or MaintenanceError."""
    if not path.is_file():
        raise MaintenanceError(f"{path} does not exist")
    conn = sqlite3.connect(path)  # read-write: a read-only one leaves -wal and -shm behind
    try:
        store = SqliteDeviceStore(sqlite_utils.Database(conn))
        device = store.device()
        if device is None:
            raise MaintenanceError(f"{path.name} holds no device identity")
        verification = verify_ledger(store)
        head = conn.execute("SELECT max(seq) FROM ledger").fetchone()[0] or 0
        return DatabaseFacts(
            device_id=device.device_id,
            public_key=device.public_key,
            head_seq=head,
            head_hash=verification.last_hash if verification.ok else None,
            synced_seq=device.synced_seq,
            last_sync_at=device.last_sync_at,
            versions=installed_versions(store),
            verification=verification,
        )
    finally:
        conn.close()


def integrity_check(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def installed_versions(store: SqliteDeviceStore) -> dict[str, tuple[str | None, str | None]]:
    """Each kind's installed version, with the county's expiry when the sync agent kept it."""
    expiry: dict[str, tuple[str, str]] = {}
    with contextlib.suppress(sqlite3.Error):
        has_table = store.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sync_installed'"
        ).fetchone()
        if has_table:
            for kind, version, expires_at in store.db.execute(
                "SELECT kind, version, expires_at FROM sync_installed"
            ):
                expiry[kind] = (version, expires_at)
    result = {}
    for kind, version in (
        ("catalog", store.catalog_version()),
        ("policy", store.policy_version()),
        ("roster", store.roster_version()),
    ):
        known = expiry.get(kind)
        result[kind] = (version, known[1] if known and known[0] == version else None)
    return result


def key_matches(key_bytes: bytes, public_key: str) -> bool:
    """Whether `key_bytes` (PEM) is the private key of `public_key` (base64url)."""
    try:
        key = load_pem_private_key(key_bytes, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            return False
        return b64url(raw_public_key(key.public_key())) == public_key
    except (ValueError, TypeError, AttributeError):
        return False
