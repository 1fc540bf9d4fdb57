"""What the doctor finds out about this machine: the data directory, the database, the
ledger, the key, the disk, systemd, the clock and sync (files, SQLite, subprocesses), each
handed to its pure check. The card reader and the printer are not probed here: their
probes are given to `run_doctor` by the command line, which may import the drivers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from edge.adapters.identity import KEY_FILE, IdentityError
from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore, StoreError
from edge.clock import CLINIC_TZ
from edge.maintenance.checks import (
    OVERLAY_FILESYSTEMS,
    SERVICE_UNIT,
    check_clock,
    check_database,
    check_disk,
    check_key,
    check_ledger,
    check_service,
    check_storage,
    check_sync,
    overlayroot_on,
    overlayroot_setting,
)
from edge.maintenance.device_files import integrity_check
from edge.maintenance.findings import SKIPPED, Finding, Text
from edge.services import load_identity, verify_ledger

MOUNTINFO = Path("/proc/self/mountinfo")
# Where overlayroot is configured: the running boot, and the next one (Raspberry Pi OS
# keeps the kernel command line in /boot/firmware/cmdline.txt, before bookworm /boot).
BOOT_CMDLINES = (
    Path("/proc/cmdline"),
    Path("/boot/firmware/cmdline.txt"),
    Path("/boot/cmdline.txt"),
)
# A root-owned folder of the data partition for the system's own state (fake-hwclock's
# saved time, see deploy/raspberry-pi): not the terminal's file, not a foreign one.
SYSTEM_FOLDER = ".system"


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_of(path: Path, mountinfo: Path = MOUNTINFO) -> tuple[str, str] | None:
    """(mount point, filesystem type) of the mount holding `path`, read from mountinfo
    (the last, i.e. topmost, of the longest matching mount points)."""
    try:
        target = os.path.realpath(path)
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    best: tuple[str, str] | None = None
    for line in lines:
        before, _, after = line.partition(" - ")
        fields = before.split()
        if len(fields) < 5 or not after:
            continue
        mount_point = _unescape(fields[4])
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) >= len(best[0])):
            best = (mount_point, after.split()[0])
    return best


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding `path`, from /proc/self/mountinfo."""
    found = mount_of(path)
    return found[1] if found else None


def overlayroot_settings(cmdlines: Sequence[Path] = BOOT_CMDLINES) -> list[tuple[str, str]]:
    """(file, value) of each `overlayroot=` on these kernel command lines."""
    found = []
    for cmdline in cmdlines:
        try:
            setting = overlayroot_setting(cmdline.read_text(errors="replace"))
        except OSError:
            continue
        if setting is not None:
            found.append((str(cmdline), setting))
    return found


def service_state(unit: str = SERVICE_UNIT) -> str | None:
    """`systemctl is-active UNIT`, or None where systemd is not running (sd_booted)."""
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return None
    try:
        done = subprocess.run(
            ["systemctl", "is-active", unit], capture_output=True, text=True, timeout=15
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    return done.stdout.strip() or "unknown"


def build_date() -> date:
    """When this software was built or installed: the clock cannot be before it."""
    return datetime.fromtimestamp(Path(__file__).stat().st_mtime, CLINIC_TZ).date()


def storage(data_dir: Path, cmdlines: Sequence[Path] = BOOT_CMDLINES) -> Finding:
    if not data_dir.is_dir():
        return check_storage(exists=False, fs_type=None, mode=None, owner="", foreign=[])
    info = data_dir.stat()
    foreign = sorted(
        child.name
        for child in data_dir.iterdir()
        if child.lstat().st_uid != info.st_uid
        and child.name != "lost+found"
        and not (child.name == SYSTEM_FOLDER and child.lstat().st_uid == 0 and child.is_dir())
    )
    mount = mount_of(data_dir)
    return check_storage(
        exists=True,
        fs_type=mount[1] if mount else None,
        mode=stat.S_IMODE(info.st_mode),
        owner=_user_name(info.st_uid),
        foreign=foreign,
        own_mount=mount is not None and mount[0] != "/",
        overlayroot=overlayroot_settings(cmdlines),
    )


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


def key(data_dir: Path, store: SqliteDeviceStore | None) -> Finding:
    """The key file; with the device's `store`, whether it is the key the ledger began with."""
    path = data_dir / KEY_FILE
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return check_key(exists=False, mode=None, problem=None)
    problem = None
    if store is not None and not mode & 0o077:
        try:
            load_identity(store, data_dir)
        except (IdentityError, StoreError) as error:
            problem = str(error)
    return check_key(exists=True, mode=mode, problem=problem)


def service(unit: str | None) -> Finding:
    return check_service(service_state(unit) if unit else None, unit or "")


def database(data_dir: Path) -> Finding:
    database = data_dir / DATABASE_FILE
    if not database.is_file():
        return check_database(exists=False, integrity=None, error=None)
    try:
        return check_database(exists=True, integrity=integrity_check(database), error=None)
    except sqlite3.Error as error:
        return check_database(exists=True, integrity=None, error=str(error))


def ledger(store: SqliteDeviceStore) -> Finding:
    return check_ledger(verify_ledger(store))


def disk(data_dir: Path, *, warn_bytes: int, error_bytes: int) -> Finding:
    if not data_dir.is_dir():
        return Finding(SKIPPED, Text("数据目录不存在", "no data directory"))
    usage = shutil.disk_usage(data_dir)
    return check_disk(usage.free, usage.total, warn_bytes=warn_bytes, error_bytes=error_bytes)


def clock(
    store: SqliteDeviceStore,
    now: datetime,
    behind_since: str | None,
    not_before: date,
    saved_in_ram: str | None = None,
) -> Finding:
    """The clock against the last ledger record and the device's clock_behind flag."""
    row = store.db.execute("SELECT created_at FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    last = datetime.fromisoformat(row[0]) if row else None
    return check_clock(
        now,
        last_record_at=last,
        clock_behind_since=behind_since,
        not_before=not_before,
        saved_in_ram=saved_in_ram,
    )


@dataclass(frozen=True)
class HwclockPaths:
    """Where fake-hwclock and an RTC are looked for (tests give their own)."""

    programs: tuple[Path, ...] = (Path("/sbin/fake-hwclock"), Path("/usr/sbin/fake-hwclock"))
    defaults: Path = Path("/etc/default/fake-hwclock")
    rtc: Path = Path("/dev/rtc0")


HWCLOCK = HwclockPaths()


def saved_clock_in_ram(
    data_dir: Path, cmdlines: Sequence[Path] = BOOT_CMDLINES, paths: HwclockPaths = HWCLOCK
) -> str | None:
    """Where fake-hwclock saves the time, when that is lost at reboot: the read-only root
    is on (or configured) and the file is not on the data partition, with no RTC."""
    if paths.rtc.exists() or not any(p.exists() for p in paths.programs):
        return None
    root = mount_of(Path("/"))
    overlay = (root is not None and root[1] in OVERLAY_FILESYSTEMS) or any(
        overlayroot_on(value) for _, value in overlayroot_settings(cmdlines)
    )
    if not overlay:
        return None
    saved = "/etc/fake-hwclock.data"
    with contextlib.suppress(OSError):
        for line in paths.defaults.read_text().splitlines():
            key, _, value = line.strip().partition("=")
            if key.strip() == "FILE" and value.strip(" \"'"):
                saved = value.strip(" \"'")
    data, where = mount_of(data_dir), mount_of(Path(saved).parent)
    if data is not None and data == where and data[0] != "/":
        return None
    return saved


def sync(store: SqliteDeviceStore, now: datetime, last_sync_at: str | None) -> Finding:
    max_hours = None
    with contextlib.suppress(StoreError, ValueError):
        max_hours = store.current_policy().offline_limits.max_hours_since_sync
    return check_sync(
        now,
        last_sync_at=datetime.fromisoformat(last_sync_at) if last_sync_at else None,
        max_hours=max_hours,
        waiting=store.outbox_count(),
        photos_set_aside=store.attachments_set_aside(),
    )
