"""The backup archive: one gzip'd tar, `clinic-backup-<device>-<YYYYmmdd-HHMMSS>.tar.gz`,
mode 0600, holding `manifest.json`, `clinic.db` and (when it could be backed up)
`device.key`; writing one safely, listing a device's, and unpacking one without trusting
what it holds."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from datetime import datetime
from pathlib import Path

from edge.adapters.identity import KEY_FILE
from edge.adapters.sqlite_store import DATABASE_FILE
from edge.maintenance.device_files import MaintenanceError

BACKUP_FORMAT = "clinic-backup-1"
BACKUP_PREFIX = "clinic-backup-"
BACKUP_SUFFIX = ".tar.gz"
MANIFEST = "manifest.json"
ARCHIVE_MEMBERS = (MANIFEST, DATABASE_FILE, KEY_FILE)
MAX_MEMBER_BYTES = 8 << 30  # a device database is megabytes; refuse absurd members


def backup_name(device_id: str, now: datetime) -> str:
    return f"{BACKUP_PREFIX}{device_id}-{now:%Y%m%d-%H%M%S}{BACKUP_SUFFIX}"


_BACKUP_NAME = re.compile(
    re.escape(BACKUP_PREFIX) + r"(?P<device>.+)-\d{8}-\d{6}" + re.escape(BACKUP_SUFFIX) + "$"
)


def backups_in(folder: Path, device_id: str) -> list[Path]:
    """This device's backups in `folder`, oldest first (the names sort by time)."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _BACKUP_NAME.match(path.name)
        if match and match["device"] == device_id and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.name)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_archive(
    final: Path, manifest: dict, copy: Path, key_bytes: bytes | None, now: datetime
) -> None:
    partial = final.with_name(f".{final.name}.partial")
    mtime = int(now.timestamp())
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            with (
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=mtime) as zipped,
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                text = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
                tar.addfile(_member(MANIFEST, len(text), mtime, 0o644), io.BytesIO(text))
                with copy.open("rb") as handle:
                    tar.addfile(_member(DATABASE_FILE, copy.stat().st_size, mtime, 0o600), handle)
                if key_bytes is not None:
                    tar.addfile(
                        _member(KEY_FILE, len(key_bytes), mtime, 0o600), io.BytesIO(key_bytes)
                    )
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(partial, 0o600)  # on filesystems that keep modes
        os.replace(partial, final)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    fsync_dir(final.parent)


def _member(name: str, size: int, mtime: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    return info


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem (vfat) lets a directory sync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def unpack_archive(archive: Path, into: Path) -> dict:
    """Unpack `archive`'s members into the empty folder `into` (mode 0600); its manifest."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            seen = set()
            for member in tar:
                if member.name not in ARCHIVE_MEMBERS or not member.isfile() or member.name in seen:
                    raise MaintenanceError(
                        f"{archive.name}: unexpected member {member.name!r}: not a clinic backup"
                    )
                if member.size > MAX_MEMBER_BYTES:
                    raise MaintenanceError(f"{archive.name}: member {member.name} is too large")
                seen.add(member.name)
                source = tar.extractfile(member)
                if source is None:  # not a regular file's content after all
                    raise MaintenanceError(f"{archive.name}: member {member.name} is not a file")
                fd = os.open(into / member.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as error:
        raise MaintenanceError(f"{archive.name}: not a readable backup archive ({error})") from None
    if MANIFEST not in seen or DATABASE_FILE not in seen:
        raise MaintenanceError(f"{archive.name}: incomplete backup (manifest or database missing)")
    try:
        return json.loads((into / MANIFEST).read_text(encoding="utf-8"))
    except ValueError as error:
        raise MaintenanceError(f"{archive.name}: the manifest is not JSON ({error})") from None
