"""On-site maintenance of a device: the doctor's checks, backups and restores.

- `findings`: what a check says (`Finding`, `Check`, each text in Chinese and English).
- `checks`: the doctor's checks, pure functions from gathered facts to a `Finding`.
- `probes`: gathering those facts on this machine (files, SQLite, systemd, the disk).
- `doctor`: `run_doctor`, every check in order. The card reader and printer probes are
  given to it (`DeviceProbes`) by the command line, `edge.maintenance_cli`, which imports
  the drivers; nothing in this package does.
- `report`: the findings as text.
- `device_files`: what a device's database and key hold, read without changing them.
- `archive`, `backups`, `restores`: the backup archive, `backup` and `restore`.

A backup is one gzip'd tar archive, `clinic-backup-<device>-<YYYYmmdd-HHMMSS>.tar.gz`,
mode 0600, holding `manifest.json`, `clinic.db` (a consistent copy made with SQLite's
online backup API while the terminal keeps running) and `device.key` (the private key:
a backup must be kept like cash). A restore verifies the archive (hashes, SQLite
integrity, the ledger chain, that the key is the ledger's) and refuses a backup whose
ledger ends before what the county has acknowledged, unless forced; the database it
replaces is kept aside in `replaced-<time>/`.

The names below are this package's interface; the modules hold the rest.
"""

from edge.maintenance.archive import backup_name, backups_in
from edge.maintenance.backups import DEFAULT_KEEP, BackupResult, backup
from edge.maintenance.checks import (
    DISK_ERROR_MB,
    DISK_WARN_MB,
    SERVICE_UNIT,
    DriverError,
    PrinterFacts,
    ReaderFacts,
    check_clock,
    check_database,
    check_disk,
    check_key,
    check_ledger,
    check_printer,
    check_reader,
    check_service,
    check_storage,
    check_sync,
    check_versions,
    overlayroot_keeps_data,
    overlayroot_setting,
)
from edge.maintenance.device_files import (
    DatabaseFacts,
    MaintenanceError,
    database_facts,
    installed_versions,
    integrity_check,
)
from edge.maintenance.doctor import DeviceProbes, DoctorOptions, run_doctor
from edge.maintenance.findings import ERROR, LABELS, OK, SKIPPED, WARNING, Check, Finding, Text
from edge.maintenance.probes import (
    BOOT_CMDLINES,
    build_date,
    filesystem_type,
    mount_of,
    service_state,
)
from edge.maintenance.report import doctor_failed, report_lines
from edge.maintenance.restores import RestoreResult, read_backup, restore, restore_refusals

__all__ = [
    "BOOT_CMDLINES",
    "DEFAULT_KEEP",
    "DISK_ERROR_MB",
    "DISK_WARN_MB",
    "ERROR",
    "LABELS",
    "OK",
    "SERVICE_UNIT",
    "SKIPPED",
    "WARNING",
    "BackupResult",
    "Check",
    "DatabaseFacts",
    "DeviceProbes",
    "DoctorOptions",
    "DriverError",
    "Finding",
    "MaintenanceError",
    "PrinterFacts",
    "ReaderFacts",
    "RestoreResult",
    "Text",
    "backup",
    "backup_name",
    "backups_in",
    "build_date",
    "check_clock",
    "check_database",
    "check_disk",
    "check_key",
    "check_ledger",
    "check_printer",
    "check_reader",
    "check_service",
    "check_storage",
    "check_sync",
    "check_versions",
    "database_facts",
    "doctor_failed",
    "filesystem_type",
    "installed_versions",
    "integrity_check",
    "mount_of",
    "overlayroot_keeps_data",
    "overlayroot_setting",
    "read_backup",
    "report_lines",
    "restore",
    "restore_refusals",
    "run_doctor",
    "service_state",
]
