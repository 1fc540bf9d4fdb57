"""`backup`: one generation of a running device, as an archive (`archive`) holding a
consistent copy of its database (SQLite's online backup API, while the terminal keeps
running) and its device key, so that a backup must be kept like cash."""

from __future__ import annotations

import hashlib
import shutil
import socket
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge.adapters.identity import KEY_FILE
from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore, private_database_file
from edge.maintenance.archive import (
    BACKUP_FORMAT,
    backup_name,
    backups_in,
    fsync_dir,
    sha256_file,
    write_archive,
)
from edge.maintenance.device_files import (
    DatabaseFacts,
    MaintenanceError,
    database_facts,
    integrity_check,
    key_matches,
)

DEFAULT_KEEP = 7


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict
    pruned: list[Path]
    warnings: list[str]


def backup(data_dir: Path, to: Path, *, keep: int = DEFAULT_KEEP, now: datetime) -> BackupResult:
    """Write one backup generation of the (running) device into `to`, then keep only the
    newest `keep` of this device's backups there."""
    if keep < 1:
        raise MaintenanceError("--keep must be at least 1")
    data_dir, to = Path(data_dir), Path(to)
    work = Path(tempfile.mkdtemp(prefix=".backup-", dir=data_dir)) if data_dir.is_dir() else None
    if work is None:
        raise MaintenanceError(f"no device data in {data_dir}")
    try:
        copy = work / DATABASE_FILE
        store = SqliteDeviceStore.open(data_dir)
        try:
            if store.device() is None:
                raise MaintenanceError("this device has no identity yet: nothing to back up")
            _online_copy(store, copy)
        finally:
            store.close()
        problems = integrity_check(copy)
        if problems != ["ok"]:
            raise MaintenanceError(
                "the copy of the database fails SQLite's integrity check"
                f" ({'; '.join(problems[:3])}): the live database is damaged. No backup was"
                " written and older backups are kept; run clinic doctor and call the county"
            )
        facts = database_facts(copy)
        warnings = []
        if not facts.verification.ok:
            warnings.append(
                f"the ledger is broken at seq {facts.verification.first_bad_seq}"
                f" ({facts.verification.reason}): backed up as it is, as evidence;"
                " clinic restore refuses this backup"
            )
        key_bytes = _key_for_backup(data_dir, facts.public_key, warnings)
        to.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = to / backup_name(facts.device_id, now)
        if final.exists():
            raise MaintenanceError(f"{final} already exists; run the backup again in a second")
        manifest = _manifest(facts, copy, key_bytes, now)
        write_archive(final, manifest, copy, key_bytes, now)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pruned = backups_in(to, facts.device_id)[:-keep]
    for old in pruned:
        old.unlink()
    if pruned:
        fsync_dir(to)
    return BackupResult(final, manifest, pruned, warnings)


def _online_copy(store: SqliteDeviceStore, target: Path) -> None:
    """SQLite's online backup API: a consistent snapshot while others keep writing."""
    private_database_file(target)
    destination = sqlite3.connect(target)
    try:
        store.db.conn.backup(destination)
        destination.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
    finally:
        destination.close()


def _key_for_backup(data_dir: Path, public_key: str, warnings: list[str]) -> bytes | None:
    path = data_dir / KEY_FILE
    try:
        data = path.read_bytes()
    except OSError as error:
        warnings.append(f"the device key was not backed up: {error.strerror} ({path})")
        return None
    if not key_matches(data, public_key):
        warnings.append(
            f"the device key was not backed up: {path} is damaged or not this ledger's key"
        )
        return None
    return data


def _app_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("clinic-terminal")
    except Exception:  # not installed as a distribution (a bare checkout)
        return None


def _manifest(facts: DatabaseFacts, copy: Path, key_bytes: bytes | None, now: datetime) -> dict:
    return {
        "format": BACKUP_FORMAT,
        "device_id": facts.device_id,
        "public_key": facts.public_key,
        "created_at": now.replace(microsecond=0).isoformat(),
        "host": socket.gethostname(),
        "app_version": _app_version(),
        "ledger_head_seq": facts.head_seq,
        "ledger_head_hash": facts.head_hash,
        "ledger_ok": facts.verification.ok,
        "synced_seq": facts.synced_seq,
        "last_sync_at": facts.last_sync_at,
        "versions": {kind: version for kind, (version, _) in facts.versions.items()},
        "database_sha256": sha256_file(copy),
        "database_bytes": copy.stat().st_size,
        "key_included": key_bytes is not None,
        "key_sha256": hashlib.sha256(key_bytes).hexdigest() if key_bytes else None,
    }
