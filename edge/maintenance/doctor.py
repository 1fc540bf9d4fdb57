"""`run_doctor`: every check of a device on site, in the order an admin reads them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from edge.adapters.sqlite_store import SqliteDeviceStore, StoreError
from edge.maintenance import probes
from edge.maintenance.checks import (
    DISK_ERROR_MB,
    DISK_WARN_MB,
    SERVICE_UNIT,
    PrinterFacts,
    ReaderFacts,
    check_clock,
    check_database,
    check_ledger,
    check_printer,
    check_reader,
    check_versions,
)
from edge.maintenance.device_files import installed_versions
from edge.maintenance.findings import ERROR, LABELS, SKIPPED, Check, Finding, Text


@dataclass(frozen=True)
class DoctorOptions:
    reader_url: str | None = "pcsc://"
    printer_url: str | None = None
    service: str | None = SERVICE_UNIT  # None: do not check
    disk_warn_bytes: int = DISK_WARN_MB * 1_000_000
    disk_error_bytes: int = DISK_ERROR_MB * 1_000_000
    not_before: date | None = None  # the clock cannot be before this; default: build_date()
    boot_cmdlines: tuple[Path, ...] = probes.BOOT_CMDLINES  # where overlayroot= is looked for
    hwclock: probes.HwclockPaths = probes.HWCLOCK  # where fake-hwclock and an RTC are


ReaderProbe = Callable[[str, date], ReaderFacts]  # (url, today): open, look, let go
PrinterProbe = Callable[[str], PrinterFacts]  # (url): open, ask its status, let go


@dataclass(frozen=True)
class DeviceProbes:
    """How to look at the card reader and the printer; the command line supplies them
    (`edge.maintenance_cli`), so that the doctor itself imports no driver."""

    reader: ReaderProbe
    printer: PrinterProbe


def run_doctor(
    data_dir: Path, now: datetime, options: DoctorOptions, devices: DeviceProbes
) -> list[Check]:
    """Every check, in the order an admin reads them; `devices` looks at the card reader
    and the printer. A check that cannot run (permission denied: not run with sudo) is an
    error of its own; the others still run."""
    data_dir = Path(data_dir)
    not_before = options.not_before or probes.build_date()
    found: dict[str, Finding] = {}
    not_checked = Finding(SKIPPED, Text("数据库不可用，未检查", "not checked: no usable database"))

    def check(name: str, gather: Callable[[], Finding]) -> None:
        try:
            found[name] = gather()
        except Exception as error:  # one check's surprise must not hide the others
            found[name] = _could_not_check(error)

    check("service", lambda: probes.service(options.service))
    check("storage", lambda: probes.storage(data_dir, options.boot_cmdlines))
    check("database", lambda: probes.database(data_dir))
    store = None
    if found["database"].status != ERROR:
        try:
            store = SqliteDeviceStore.open(data_dir)
            device = store.device()
        except (StoreError, sqlite3.Error) as error:
            found["database"] = check_database(exists=True, integrity=None, error=str(error))
            store = None
    try:
        if store is None:
            found["ledger"] = not_checked
        elif device is None:
            found["ledger"] = check_ledger(None, "this device has no identity yet")
        else:
            check("ledger", lambda: probes.ledger(store))
        check("key", lambda: probes.key(data_dir, store if store and device else None))
        check("reader", lambda: _reader(options.reader_url, now.date(), devices.reader))
        check("printer", lambda: _printer(options.printer_url, devices.printer))
        check("disk", lambda: probes.disk(data_dir, warn_bytes=options.disk_warn_bytes,
                                         error_bytes=options.disk_error_bytes))  # fmt: skip
        if store is None or device is None:
            check("clock", lambda: check_clock(now, last_record_at=None, clock_behind_since=None,
                                               not_before=not_before))  # fmt: skip
            found["sync"] = found["versions"] = not_checked
        else:
            check("clock", lambda: probes.clock(
                store, now, device.clock_behind_since, not_before,
                probes.saved_clock_in_ram(data_dir, options.boot_cmdlines, options.hwclock),
            ))  # fmt: skip
            check("sync", lambda: probes.sync(store, now, device.last_sync_at))
            check("versions", lambda: check_versions(installed_versions(store), now))
    finally:
        if store is not None:
            store.close()
    return [Check(name, LABELS[name], finding) for name, finding in found.items()]


def _could_not_check(error: Exception) -> Finding:
    if isinstance(error, PermissionError):
        return Finding(
            ERROR,
            Text(f"没有权限：{error}", f"permission denied: {error}"),
            Text("用 sudo 运行：sudo clinic doctor", "run it with sudo: sudo clinic doctor"),
        )
    return Finding(ERROR, Text(f"无法检查：{error!r}", f"could not be checked: {error!r}"))


def _reader(url: str | None, today: date, look: ReaderProbe) -> Finding:
    return check_reader(url, look(url, today) if url else None)


def _printer(url: str | None, look: PrinterProbe) -> Finding:
    return check_printer(url, look(url) if url else None)
