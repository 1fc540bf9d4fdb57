"""`clinic` commands for on-site maintenance (doctor, backup, restore); `edge.console`
registers every command listed here.

The logic is in `edge.maintenance`; these commands read the clock and the options, and
print. Errors are one line on standard error with exit status 1, nothing changed. The
doctor's card reader and printer probes are here, the one place that gives the doctor the
drivers.
"""

import json
import sqlite3
from datetime import date
from pathlib import Path

import click

from drivers.cards import CardError, card_reader_for_url
from drivers.printer import PrinterError, printer_for_url
from edge import maintenance
from edge.adapters.identity import IdentityError
from edge.adapters.sqlite_store import StoreError
from edge.cli_options import data_dir_option, json_option
from edge.cli_options import now as _now

COMMANDS: list[click.Command] = []

# One line on standard error, exit 1: refusals, and a full disk or a folder not writable.
FAILURES = (maintenance.MaintenanceError, StoreError, IdentityError, sqlite3.Error, OSError)


service_option = click.option(
    "--service",
    default=maintenance.SERVICE_UNIT,
    envvar="CLINIC_SERVICE",
    show_default=True,
    help="The terminal's systemd unit ('' to leave it out).",
)


def _print_json(value: object) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def probe_reader(url: str, today: date) -> maintenance.ReaderFacts:
    """Open the card reader at `url`, see whether a card is in it, let it go."""
    try:
        reader = card_reader_for_url(url, today=today)
    except CardError as error:
        return maintenance.ReaderFacts(error=error)
    try:
        return maintenance.ReaderFacts(card_present=reader.card_present())
    except CardError as error:
        return maintenance.ReaderFacts(error=error)
    finally:
        reader.close()


def probe_printer(url: str) -> maintenance.PrinterFacts:
    """Open the printer at `url`, ask its status (DLE EOT), let it go."""
    try:
        printer = printer_for_url(url)
    except PrinterError as error:
        return maintenance.PrinterFacts(error=error)
    try:
        status = printer.status()
    except PrinterError as error:
        return maintenance.PrinterFacts(error=error)
    finally:
        printer.close()
    problem = PrinterError(status.problem) if status.problem else None
    return maintenance.PrinterFacts(problem=problem, paper_near_end=status.paper_near_end)


DEVICE_PROBES = maintenance.DeviceProbes(reader=probe_reader, printer=probe_printer)


@click.command()
@data_dir_option
@json_option
@click.option(
    "--reader",
    "reader_url",
    envvar="CLINIC_READER",
    default="pcsc://",
    show_default="$CLINIC_READER, else pcsc://",
    help="Card reader URL (pcsc://[NAME], emulated://).",
)
@click.option(
    "--printer",
    "printer_url",
    envvar="CLINIC_PRINTER",
    help="Receipt printer: serial port or URL ($CLINIC_PRINTER); none: not checked.",
)
@service_option
@click.option(
    "--disk-warn-mb",
    type=click.IntRange(0),
    envvar="CLINIC_DOCTOR_DISK_WARN_MB",
    default=maintenance.DISK_WARN_MB,
    show_default=True,
    help="Warn when less than this is free on the data partition.",
)
@click.option(
    "--disk-error-mb",
    type=click.IntRange(0),
    envvar="CLINIC_DOCTOR_DISK_ERROR_MB",
    default=maintenance.DISK_ERROR_MB,
    show_default=True,
    help="An error when less than this is free.",
)
@click.option(
    "--boot-cmdline",
    "boot_cmdlines",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A kernel command line to look for overlayroot= in (repeatable); default:"
    " /proc/cmdline, /boot/firmware/cmdline.txt, /boot/cmdline.txt.",
)
def doctor(
    data_dir: Path,
    as_json: bool,
    reader_url: str,
    printer_url: str | None,
    service: str,
    disk_warn_mb: int,
    disk_error_mb: int,
    boot_cmdlines: tuple[Path, ...],
) -> None:
    """Check this terminal on site: service, data, ledger, key, reader, printer, disk,
    clock, sync, versions. Each is ok, warning or error with what to do; exit status 1
    when anything is an error."""
    options = maintenance.DoctorOptions(
        reader_url=reader_url or None,
        printer_url=printer_url or None,
        service=service or None,
        disk_warn_bytes=disk_warn_mb * 1_000_000,
        disk_error_bytes=disk_error_mb * 1_000_000,
        boot_cmdlines=boot_cmdlines or maintenance.BOOT_CMDLINES,
    )
    checks = maintenance.run_doctor(data_dir, _now(), options, DEVICE_PROBES)
    failed = maintenance.doctor_failed(checks)
    if as_json:
        _print_json(
            {
                "ok": not failed,
                "data_dir": str(data_dir),
                "checks": [check.to_dict() for check in checks],
            }
        )
    else:
        for line in maintenance.report_lines(checks):
            click.echo(line)
    if failed:
        raise SystemExit(1)


@click.command()
@data_dir_option
@click.option(
    "--to",
    "to",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CLINIC_BACKUP_DIR",
    help="Folder for the backups (a USB stick's); default DATA_DIR/backups.",
)
@click.option(
    "--keep",
    type=click.IntRange(1),
    default=maintenance.DEFAULT_KEEP,
    show_default=True,
    help="How many of this device's backups to keep in that folder.",
)
@json_option
def backup(data_dir: Path, to: Path | None, keep: int, as_json: bool) -> None:
    """Back up the database (SQLite online backup, while the terminal runs) and the device
    key into one archive (mode 0600). It holds the device key: keep it like cash."""
    target = to or data_dir / "backups"
    try:
        result = maintenance.backup(data_dir, target, keep=keep, now=_now())
    except FAILURES as error:
        raise click.ClickException(f"backup not written: {error}") from None
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    manifest = result.manifest
    if as_json:
        _print_json(
            {
                "path": str(result.path),
                "pruned": [str(p) for p in result.pruned],
                "warnings": result.warnings,
                "manifest": manifest,
            }
        )
        return
    key = "included" if manifest["key_included"] else "NOT included"
    click.echo(
        f"backup {result.path}: device {manifest['device_id']}, ledger up to seq"
        f" {manifest['ledger_head_seq']}, device key {key}"
    )
    for old in result.pruned:
        click.echo(f"removed old backup {old.name}")


@click.command()
@data_dir_option
@click.argument("backup_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    help="Restore even a backup whose ledger ends before what the county acknowledged.",
)
@service_option
@json_option
def restore(data_dir: Path, backup_file: Path, force: bool, service: str, as_json: bool) -> None:
    """Replace the device's database and key with a backup, after verifying it. Refuses a
    backup older than what the county has acknowledged unless --force; the replaced
    files are kept in DATA_DIR/replaced-<time>/. Stop the terminal first."""
    state = maintenance.service_state(service) if service else None
    if state in ("active", "activating", "reloading"):
        raise click.ClickException(
            f"{service} is running: stop it first (sudo systemctl stop {service}), then restore"
        )
    try:
        result = maintenance.restore(data_dir, backup_file, force=force, now=_now())
    except FAILURES as error:
        raise click.ClickException(str(error)) from None
    for overridden in result.overridden:
        click.echo(f"warning (--force): {overridden}", err=True)
    if as_json:
        _print_json(
            {
                "device_id": result.device_id,
                "ledger_head_seq": result.head_seq,
                "records": result.records,
                "replaced": str(result.replaced) if result.replaced else None,
                "overridden": result.overridden,
            }
        )
        return
    click.echo(
        f"restored device {result.device_id}: {result.records} records, ledger verified up to"
        f" seq {result.head_seq}"
    )
    if result.replaced:
        click.echo(f"the replaced files are in {result.replaced}")
    if service:
        click.echo(f"start the terminal again: sudo systemctl start {service}")


COMMANDS += [doctor, backup, restore]
