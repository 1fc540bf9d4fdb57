"""The terminal's bootstrap: the concrete store the `clinic` commands and the terminal UI
open. The use cases in `edge.services` take whatever is handed to them
(`edge.ports.DeviceStore`); the maintenance commands and the agent's scheduler open the
SQLite store themselves, being about that file.
"""

from pathlib import Path

from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore, connect


def open_store(data_dir: Path, *, create: bool = False) -> SqliteDeviceStore:
    """The device's store, its schema brought up to date (StoreError if there is none)."""
    return SqliteDeviceStore.open(Path(data_dir), create=create)


def connect_store(data_dir: Path) -> SqliteDeviceStore:
    """Another connection to a store already opened once by this process (a request's)."""
    return SqliteDeviceStore(connect(Path(data_dir) / DATABASE_FILE))
