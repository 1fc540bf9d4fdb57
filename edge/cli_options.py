"""What every `clinic` command module shares: the clock, `--data-dir`, `--json`, and the
device store a command opens (`device_store`).

Kept apart from `edge.cli`, which imports the other packages' commands, so that those
modules can use these without an import cycle.
"""

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path

import click

from edge import bootstrap
from edge.adapters.identity import IdentityError
from edge.adapters.sqlite_store import SqliteDeviceStore, StoreError, database_error_text
from edge.clock import CLOCK_VARIABLE, Clock, ClockError, configured_clock
from edge.domain.model import Rejection

# Errors an operator can act on: printed as one line, nothing changed.
OPERATOR_ERRORS = (StoreError, IdentityError, Rejection)

_clock: tuple[str, Clock] | None = None  # the clock, and the CLINIC_CLOCK it was made from


def clock() -> Clock:
    """The command line's one clock (`CLINIC_CLOCK` may start it), handed to the servers
    and jobs a command starts. Made again only when CLINIC_CLOCK changes (in-process test
    runs of several commands), so that within a process it keeps advancing."""
    global _clock
    setting = os.environ.get(CLOCK_VARIABLE, "")
    if _clock is None or _clock[0] != setting:
        try:
            _clock = (setting, configured_clock())
        except ClockError as error:
            raise click.ClickException(str(error)) from None
    return _clock[1]


def now() -> datetime:
    return clock()()


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "clinic"


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CLINIC_DATA_DIR",
    default=default_data_dir,
    show_default="$CLINIC_DATA_DIR, else ~/.local/share/clinic",
    help="The device's data directory.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def print_json(value: object) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


@contextmanager
def device_store(data_dir: Path, create: bool = False) -> Iterator[SqliteDeviceStore]:
    """The store for a command; operator errors become one clear line and exit 1."""
    try:
        store = bootstrap.open_store(data_dir, create=create)
    except StoreError as error:
        raise click.ClickException(str(error)) from None
    except sqlite3.Error as error:  # a damaged clinic.db, a full disk while migrating
        raise click.ClickException(database_error_text(error, Path(data_dir))) from None
    try:
        yield store
    except OPERATOR_ERRORS as error:
        raise click.ClickException(_describe(error)) from None
    except sqlite3.Error as error:  # the write transaction has rolled back
        raise click.ClickException(database_error_text(error, Path(data_dir))) from None
    finally:
        with suppress(sqlite3.Error):
            store.close()


def _describe(error: Exception) -> str:
    if isinstance(error, Rejection):
        line = f" (line {error.line})" if error.line is not None else ""
        return f"{error.code}: {error.message}{line}"
    return str(error)
