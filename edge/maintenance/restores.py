"""`restore`: a verified backup put in place of a device's database (and key).

The archive is unpacked into a private folder and checked (hashes, SQLite integrity, the
ledger chain, that the key is the ledger's); a backup whose ledger ends before what the
county has acknowledged is refused unless forced; the files it replaces are kept aside in
`DATA_DIR/replaced-<time>/`.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from edge.adapters.identity import KEY_FILE, IdentityError
from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore, StoreError
from edge.maintenance.archive import BACKUP_FORMAT, fsync_dir, sha256_file, unpack_archive
from edge.maintenance.device_files import (
    DatabaseFacts,
    MaintenanceError,
    database_facts,
    integrity_check,
    key_matches,
)
from edge.services import load_identity, verify_ledger

SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Unpacked:
    """A backup unpacked into a private folder, verified."""

    folder: Path
    facts: DatabaseFacts
    manifest: dict | None  # None: a bare database file (the admin page's backups)
    key_included: bool


@dataclass(frozen=True)
class RestoreResult:
    device_id: str
    head_seq: int
    records: int
    replaced: Path | None  # where the database it replaced was put
    overridden: list[str] = field(default_factory=list)  # refusals --force overrode


def read_backup(archive: Path, into: Path) -> Unpacked:
    """Unpack `archive` into the empty folder `into` and verify it; MaintenanceError if
    it is not a sound backup."""
    archive = Path(archive)
    try:
        with archive.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise MaintenanceError(f"cannot read {archive}: {error.strerror}") from None
    if head == SQLITE_HEADER:
        shutil.copyfile(archive, into / DATABASE_FILE)
        manifest = None
    else:
        manifest = unpack_archive(archive, into)
    database = into / DATABASE_FILE
    if manifest is not None:
        if manifest.get("format") != BACKUP_FORMAT:
            raise MaintenanceError(
                f"{archive.name}: unknown backup format {manifest.get('format')!r}"
            )
        if sha256_file(database) != manifest.get("database_sha256"):
            raise MaintenanceError(f"{archive.name}: the database does not match its manifest")
    try:
        problems = integrity_check(database)
        if problems != ["ok"]:
            raise MaintenanceError(
                f"{archive.name}: the database fails SQLite's integrity check"
                f" ({'; '.join(problems[:3])}); try an older backup"
            )
        facts = database_facts(database)
    except sqlite3.Error as error:
        raise MaintenanceError(
            f"{archive.name}: not a readable device database ({error})"
        ) from None
    if not facts.verification.ok:
        raise MaintenanceError(
            f"{archive.name}: its ledger is broken at seq {facts.verification.first_bad_seq}"
            f" ({facts.verification.reason}); try an older backup and call the county"
        )
    key = into / KEY_FILE
    if manifest is not None and manifest.get("ledger_head_seq") != facts.head_seq:
        raise MaintenanceError(f"{archive.name}: the ledger does not match its manifest")
    if key.exists():
        _require_key_of(key.read_bytes(), facts.public_key, f"{archive.name}: its device key")
    return Unpacked(into, facts, manifest, key.exists())


def _require_key_of(key_bytes: bytes, public_key: str, what: str) -> None:
    if not key_matches(key_bytes, public_key):
        raise MaintenanceError(f"{what} is damaged or is not the key this ledger was signed with")


def restore_refusals(
    backup: DatabaseFacts, live: DatabaseFacts | None, live_error: str | None
) -> list[str]:
    """Why restoring `backup` over the live database would be wrong (pure)."""
    if live_error is not None:
        return [
            f"the live database cannot be read ({live_error}), so what the county has"
            " acknowledged is unknown: check this device's acknowledged seq on the county"
            f" console (it must be at most {backup.head_seq}), then use --force"
        ]
    if live is None or live.head_seq == 0:
        # No ledger here (clinic.db moved aside, or a fresh `clinic init` in its place):
        # what the county acknowledged cannot be read, so an old backup could roll the
        # ledger back unseen. Only the operator, with the county's word, may go on.
        return [
            "数据目录里没有当前账本，无法得知县里已确认到哪一条：请先在县平台核对本设备已确认的"
            f"序号（不得大于 {backup.head_seq}），再加 --force / "
            "there is no current ledger in the data directory, so what the county has"
            " acknowledged is unknown: check this device's acknowledged seq on the county"
            f" console (it must be at most {backup.head_seq}), then use --force"
        ]
    refusals = []
    if live.device_id != backup.device_id and live.head_seq > 0:
        refusals.append(
            f"the backup is of device {backup.device_id}, but this device is {live.device_id}"
            f" with {live.head_seq} records"
        )
    elif backup.head_seq < live.synced_seq:
        refusals.append(
            f"the backup's ledger ends at seq {backup.head_seq}, but the county has already"
            f" acknowledged seq {live.synced_seq}: the ledger would go backwards and the county"
            " would see different records under the same seq"
        )
    elif backup.head_seq < live.head_seq:
        refusals.append(
            f"the backup's ledger ends at seq {backup.head_seq}, but the live ledger has"
            f" {live.head_seq} records: seq {backup.head_seq + 1}..{live.head_seq} would be lost"
        )
    return refusals


def restore(data_dir: Path, archive: Path, *, force: bool = False, now: datetime) -> RestoreResult:
    """Replace the device's database (and key) with a verified backup; the replaced files
    go to `DATA_DIR/replaced-<time>/`. Stop the terminal first."""
    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
    try:
        unpacked = read_backup(archive, work)
        live_db = data_dir / DATABASE_FILE
        live, live_error = None, None
        if live_db.exists():
            try:
                live = database_facts(live_db)
            except (sqlite3.Error, MaintenanceError) as error:
                live_error = str(error)
        if not unpacked.key_included:
            _require_live_key(data_dir, unpacked.facts.public_key)
        refusals = restore_refusals(unpacked.facts, live, live_error)
        if refusals and not force:
            raise MaintenanceError(
                "restore refused, nothing changed: " + "; ".join(refusals) + " (--force overrides)"
            )
        replaced = _swap(data_dir, work, unpacked.key_included, now)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    restored = _verify_restored(data_dir)
    return RestoreResult(
        unpacked.facts.device_id, unpacked.facts.head_seq, restored, replaced, refusals
    )


def _require_live_key(data_dir: Path, public_key: str) -> None:
    key = data_dir / KEY_FILE
    if not key.exists():
        raise MaintenanceError(
            "this backup holds no device key and there is none in the data directory:"
            " restore a full backup (.tar.gz) instead"
        )
    _require_key_of(
        key.read_bytes(), public_key, f"the device key in {data_dir} (the backup holds none)"
    )


_LIVE_FILES = (
    DATABASE_FILE,
    f"{DATABASE_FILE}-wal",
    f"{DATABASE_FILE}-shm",
    f"{DATABASE_FILE}-journal",
)


def _swap(data_dir: Path, work: Path, with_key: bool, now: datetime) -> Path | None:
    moving = [name for name in _LIVE_FILES if (data_dir / name).exists()]
    if with_key and (data_dir / KEY_FILE).exists():
        moving.append(KEY_FILE)
    aside = None
    if moving:
        aside = data_dir / f"replaced-{now:%Y%m%d-%H%M%S}"
        suffix = 1
        while aside.exists():
            suffix += 1
            aside = data_dir / f"replaced-{now:%Y%m%d-%H%M%S}-{suffix}"
        aside.mkdir(mode=0o700)
        _give_to_owner(aside, data_dir)
        for name in moving:
            os.replace(data_dir / name, aside / name)
    placed = [DATABASE_FILE, *([KEY_FILE] if with_key else [])]
    for name in placed:
        os.chmod(work / name, 0o600)
        _give_to_owner(work / name, data_dir)
        os.replace(work / name, data_dir / name)
    fsync_dir(data_dir)
    return aside


def _give_to_owner(path: Path, data_dir: Path) -> None:
    """Root restoring for the service user: the files must stay the service's own."""
    owner = data_dir.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        os.chown(path, owner.st_uid, owner.st_gid)


def _verify_restored(data_dir: Path) -> int:
    store = SqliteDeviceStore.open(data_dir)
    try:
        load_identity(store, data_dir)
        result = verify_ledger(store)
    except (IdentityError, StoreError) as error:
        raise MaintenanceError(f"restored, but the device cannot sign: {error}") from None
    finally:
        store.close()
    if not result.ok:
        raise MaintenanceError(f"restored, but the ledger does not verify: {result.reason}")
    return result.count
