"""The terminal's one bootstrap: which concrete store, identity and clock the device's
entry points (the `clinic` commands, the terminal UI, the sync agent) work with. The use
cases in `edge.services` take whatever is handed to them (`edge.ports.DeviceStore`);
only this module names the SQLite adapter for them.
"""

from pathlib import Path

from edge.adapters.identity import DeviceIdentity
from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore, connect
from edge.clock import Clock, configured_clock
from edge.services import load_identity

__all__ = ["configured_clock", "connect_store", "device_identity", "open_store"]


def open_store(data_dir: Path, *, create: bool = False) -> SqliteDeviceStore:
    """The device's store, its schema brought up to date (StoreError if there is none)."""
    return SqliteDeviceStore.open(Path(data_dir), create=create)


def connect_store(data_dir: Path) -> SqliteDeviceStore:
    """Another connection to a store already opened once by this process (a request's)."""
    return SqliteDeviceStore(connect(Path(data_dir) / DATABASE_FILE))


def device_identity(store: SqliteDeviceStore, data_dir: Path) -> DeviceIdentity:
    """The device's id and signing key, checked against the store's public key."""
    return load_identity(store, Path(data_dir))


def clock() -> Clock:
    return configured_clock()
