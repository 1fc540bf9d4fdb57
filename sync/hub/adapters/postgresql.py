"""The county hub in PostgreSQL (psycopg 3): `PgHubStore`.

It runs the same queries as the SQLite store (`sql.py`, through a thin connection that
turns `?` into `%s`). Several hub processes (gunicorn workers) may share one database:

* uniqueness of `(device_id, seq)` is a PRIMARY KEY; records go in with
  `INSERT … ON CONFLICT DO NOTHING`, so a batch replayed by two workers at once is
  stored once;
* the ingest of one device is serialized by a row lock on its slot (`slot_by_device`
  inside a unit of work is `SELECT … FOR UPDATE`), the hub's "write lock";
* a record's `position` (order of arrival) comes from a sequence; the recomputation
  reads only positions whose transactions have ended (an advisory-lock barrier with the
  ingests), so a slow commit is never skipped.

The schema is `postgresql_migrations.py`.
"""

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import psycopg

from sync.hub.adapters.postgresql_migrations import MIGRATIONS, migrate, pending_migrations
from sync.hub.adapters.sql import POSTGRESQL, SqlHubStore
from sync.hub.model import HubStoreError, Slot

# Advisory lock key (any bigint): ingests hold it shared, the recomputation's barrier
# exclusively.
INGEST_BARRIER = 7_201_102
# Advisory lock key held from handing out a decision's serial to the end of its unit of
# work: serials then commit in order, and a device reading "after N" skips none.
DECISION_SERIAL = 7_201_103


class _Connection:
    """psycopg's connection with the sqlite3 calls the shared queries make: `?` becomes
    `%s` (the queries hold no literal `%`)."""

    def __init__(self, conn: psycopg.Connection):
        self.raw = conn

    def execute(self, sql: str, params: Sequence = ()) -> psycopg.Cursor:
        return self.raw.execute(sql.replace("?", "%s"), list(params) or None)

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> None:
        rows = [list(row) for row in rows]
        if rows:
            with self.raw.cursor() as cursor:
                cursor.executemany(sql.replace("?", "%s"), rows)

    def close(self) -> None:
        self.raw.close()


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "the configured PostgreSQL database"
    return (
        f"postgresql://{info.get('user', '')}@{info.get('host', '')}:{info.get('port', '')}"
        f"/{info.get('dbname') or ''}"
    )


class PgHubStore(SqlHubStore):
    """One county's hub in one PostgreSQL database (READ COMMITTED, one connection)."""

    dialect = POSTGRESQL
    conn: _Connection

    def __init__(self, conn: psycopg.Connection):
        super().__init__(_Connection(conn))
        self._depth = 0

    @classmethod
    def _raw_connect(cls, url: str) -> psycopg.Connection:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise HubStoreError(f"cannot reach {redacted(url)}: {message}") from None

    @classmethod
    def open(cls, url: str, *, create: bool = False) -> "PgHubStore":
        """Open (with `create`, make the schema of) the hub database and migrate it."""
        conn = cls._raw_connect(url)
        try:
            pending = pending_migrations(conn)
            if pending and len(pending) == len(MIGRATIONS) and not create:
                raise HubStoreError(
                    f"no county hub in {redacted(url)}: run 'clinic hub init --database …'"
                )
            if pending:
                migrate(conn, cls)
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    @classmethod
    def connect(cls, url: str) -> "PgHubStore":
        """A connection to an existing, migrated hub (one per request or worker thread)."""
        return cls(cls._raw_connect(url))

    @contextmanager
    def unit_of_work(self) -> Iterator[None]:
        with self._lock:
            if self._depth:  # nested: part of the outer unit
                yield
                return
            self._depth += 1
            try:
                with self.conn.raw.transaction():
                    yield
            finally:
                self._depth -= 1

    def slot_by_device(self, device_id: str) -> Slot | None:
        # Inside a unit of work this is the device's write lock (ingest re-reads it there).
        return self._slot_where("device_id = ?", [device_id], " FOR UPDATE" if self._depth else "")

    def add_records(self, device_id: str, records: Sequence[dict], received_at: str) -> None:
        # Shared with other ingests, exclusive against the recomputation's barrier.
        self.conn.execute("SELECT pg_advisory_xact_lock_shared(?)", [INGEST_BARRIER])
        super().add_records(device_id, records, received_at)

    def next_decision_serial(self) -> int:
        self.conn.execute("SELECT pg_advisory_xact_lock(?)", [DECISION_SERIAL])
        return super().next_decision_serial()

    def _recomputed_through(self) -> int:
        # In a unit of work, wait for a recomputation in flight and hold the next one off,
        # so the balances read next match the seqs counted.
        lock = " FOR SHARE" if self._depth else ""
        (through,) = self._only(f"SELECT recomputed_through FROM hub_state{lock}")
        return through

    def _recompute_window(self) -> tuple[int, int | None]:
        # One recomputation at a time across processes (the row lock lasts the unit).
        (through,) = self._only("SELECT recomputed_through FROM hub_state FOR UPDATE")
        # Barrier: wait for the ingests in flight; every position handed out so far then
        # belongs to a finished transaction, so none is skipped by a later mark.
        self.conn.execute("SELECT pg_advisory_lock(?)", [INGEST_BARRIER])
        try:
            last, called = self._only("SELECT last_value, is_called FROM record_position_seq")
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(?)", [INGEST_BARRIER])
        return through, last if called else 0
