"""The county hub in one SQLite file (`hub.db` in the hub's data directory): WAL,
synchronous=FULL, one writer at a time (`BEGIN IMMEDIATE`). Records are numbered in
order of arrival by their rowid. The queries are the shared ones (`sql.py`); the schema
is `sqlite_migrations.py`.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from edge.adapters.sqlite_store import private_database_file
from sync.hub.adapters.sql import SQLITE, SqlHubStore
from sync.hub.adapters.sqlite_migrations import migrations
from sync.hub.model import HubStoreError

DATABASE_FILE = "hub.db"


class SqliteHubStore(SqlHubStore):
    """One county's hub in one SQLite file (WAL, synchronous=FULL)."""

    dialect = SQLITE
    conn: sqlite3.Connection

    @classmethod
    def open(cls, data_dir: Path, *, create: bool = False) -> "SqliteHubStore":
        """Open (with `create`, make) the hub database and bring its schema up to date."""
        path = Path(data_dir) / DATABASE_FILE
        if not path.exists() and not create:
            raise HubStoreError(
                f"no county hub in {data_dir}: run 'clinic hub init --data-dir {data_dir}' first"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(_connect(path))
        db = sqlite_utils.Database(store.conn)
        if migrations.pending(db):
            with store._lock:
                migrations.apply(db)
        return store

    @classmethod
    def connect(cls, data_dir: Path) -> "SqliteHubStore":
        """A connection to an existing, migrated hub (one per request or worker thread)."""
        path = Path(data_dir) / DATABASE_FILE
        if not path.exists():
            raise HubStoreError(f"no county hub in {data_dir}")
        return cls(_connect(path))

    @contextmanager
    def unit_of_work(self) -> Iterator[None]:
        with self._lock:
            if self.conn.in_transaction:  # nested: part of the outer unit
                yield
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise


def _connect(path: Path) -> sqlite3.Connection:
    # the roster's personal data and the console's password hashes: owner only
    private_database_file(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn
