"""The county hub's storage in PostgreSQL (psycopg 3): `PgHubStore`.

Same behaviour as `SqliteHubStore` (it reuses its queries through a thin connection
adapter that turns `?` into `%s`) and overrides what PostgreSQL spells differently.
Several hub processes (gunicorn workers) may share one database:

* uniqueness of `(device_id, seq)` is a PRIMARY KEY; records go in with
  `INSERT … ON CONFLICT DO NOTHING`, so a batch replayed by two workers at once is
  stored once;
* the ingest of one device is serialized by a row lock on its slot (`slot_by_device`
  inside a unit of work is `SELECT … FOR UPDATE`), the hub's "write lock";
* a record's `position` (order of arrival) comes from a sequence; the recomputation
  reads only positions whose transactions have ended (an advisory-lock barrier with the
  ingests), so a slow commit is never skipped.

The schema is a versioned list of DDL steps (`MIGRATIONS`), each applied in one
transaction and recorded in `schema_migration`.
"""

import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import psycopg

from sync.hub.store import (
    _SLOT_COLUMNS,
    DATABASE_URL_FILE,
    HubStoreError,
    Publication,
    Slot,
    SqliteHubStore,
    StoredRecord,
    _dumps,
)

# Advisory lock keys (any bigint; these spell "clinic-hub" in spirit).
_MIGRATION_LOCK = 7_201_101
_INGEST_BARRIER = 7_201_102

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "hub",
        [
            """CREATE TABLE county (
                id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL,
                public_key TEXT NOT NULL, created_at TEXT NOT NULL)""",
            """CREATE TABLE slot (
                slot_id BIGSERIAL PRIMARY KEY, clinic_code TEXT NOT NULL,
                township TEXT NOT NULL, provisioned_at TEXT NOT NULL,
                code_hash TEXT NOT NULL UNIQUE, code_expires_at TEXT NOT NULL,
                enrolled_at TEXT, device_id TEXT UNIQUE, public_key TEXT, revoked_at TEXT,
                revoked_reason TEXT, head_seq BIGINT NOT NULL DEFAULT 0, head_hash TEXT,
                last_contact_at TEXT, heartbeat TEXT, clock_skew_s BIGINT)""",
            """CREATE TABLE nonce (
                device_id TEXT NOT NULL, nonce TEXT NOT NULL, seen_at TEXT NOT NULL,
                PRIMARY KEY (device_id, nonce))""",
            "CREATE INDEX nonce_seen_at ON nonce (seen_at)",
            # position is the order of arrival: the county recomputes in that order.
            """CREATE TABLE record (
                position BIGSERIAL NOT NULL UNIQUE,
                device_id TEXT NOT NULL, seq BIGINT NOT NULL, hash TEXT NOT NULL,
                kind TEXT NOT NULL, tx_id TEXT NOT NULL, created_at TEXT NOT NULL,
                received_at TEXT NOT NULL, record TEXT NOT NULL,
                PRIMARY KEY (device_id, seq))""",
            "CREATE INDEX record_tx ON record (device_id, tx_id)",
            """CREATE FUNCTION record_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'records are append-only'; END $$""",
            """CREATE TRIGGER record_is_append_only BEFORE UPDATE OR DELETE ON record
                FOR EACH ROW EXECUTE FUNCTION record_is_append_only()""",
            """CREATE TABLE held_record (
                device_id TEXT NOT NULL, seq BIGINT NOT NULL, hash TEXT NOT NULL,
                received_at TEXT NOT NULL, record TEXT NOT NULL,
                PRIMARY KEY (device_id, seq))""",
            """CREATE TABLE alarm (
                alarm_id BIGSERIAL PRIMARY KEY, device_id TEXT NOT NULL, code TEXT NOT NULL,
                seq BIGINT, detail TEXT NOT NULL, raised_at TEXT NOT NULL,
                repeats BIGINT NOT NULL DEFAULT 1, cleared_at TEXT)""",
            "CREATE INDEX alarm_device ON alarm (device_id, code, seq)",
            """CREATE TABLE publication (
                kind TEXT NOT NULL, version TEXT NOT NULL, published_at TEXT NOT NULL,
                expires_at TEXT NOT NULL, manifest TEXT NOT NULL, signature TEXT NOT NULL,
                content TEXT NOT NULL, position BIGSERIAL NOT NULL UNIQUE,
                PRIMARY KEY (kind, version))""",
            """CREATE TABLE published_item (
                version TEXT NOT NULL, code TEXT NOT NULL, item TEXT NOT NULL,
                PRIMARY KEY (version, code))""",
            """CREATE TABLE published_person (
                version TEXT NOT NULL, insured_id TEXT NOT NULL, person TEXT NOT NULL,
                PRIMARY KEY (version, insured_id))""",
            """CREATE TABLE person (
                insured_id TEXT PRIMARY KEY, person TEXT NOT NULL,
                roster_version TEXT NOT NULL, account_balance BIGINT NOT NULL)""",
            """CREATE TABLE accumulator (
                insured_id TEXT NOT NULL, year INTEGER NOT NULL, scope TEXT NOT NULL,
                deductible_used BIGINT NOT NULL, fund_paid BIGINT NOT NULL,
                assistance_paid BIGINT NOT NULL, PRIMARY KEY (insured_id, year, scope))""",
            """CREATE TABLE recomputation (
                device_id TEXT NOT NULL, seq BIGINT NOT NULL, tx_id TEXT NOT NULL,
                status TEXT NOT NULL, hub_result TEXT, PRIMARY KEY (device_id, seq))""",
            "CREATE INDEX recomputation_tx ON recomputation (device_id, tx_id)",
            """CREATE TABLE reconciliation_item (
                item_id BIGSERIAL PRIMARY KEY, device_id TEXT NOT NULL, seq BIGINT,
                tx_id TEXT, code TEXT NOT NULL, business_day TEXT, details TEXT NOT NULL,
                created_at TEXT NOT NULL)""",
            "CREATE INDEX reconciliation_device ON reconciliation_item (device_id)",
            """CREATE TABLE hub_state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                recomputed_through BIGINT NOT NULL DEFAULT 0)""",
            "INSERT INTO hub_state (id) VALUES (1)",
            """CREATE TABLE console_user (
                username TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
                role TEXT NOT NULL CHECK (role IN ('admin', 'coordinator')),
                township TEXT, failures INTEGER NOT NULL DEFAULT 0, locked_until TEXT,
                created_at TEXT NOT NULL)""",
        ],
    ),
]


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0] in ("postgresql", "postgres")


class _Connection:
    """psycopg's connection with the sqlite3 calls `SqliteHubStore` makes: `?` becomes
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


def pending_migrations(conn: psycopg.Connection) -> list[int]:
    exists = conn.execute("SELECT to_regclass('schema_migration') IS NOT NULL").fetchone()[0]
    done = set()
    if exists:
        done = {v for (v,) in conn.execute("SELECT version FROM schema_migration")}
    return [version for version, _name, _steps in MIGRATIONS if version not in done]


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply the pending steps, each in one transaction; safe with several processes."""
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migration (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
    for version, name, steps in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
            done = conn.execute(
                "SELECT 1 FROM schema_migration WHERE version = %s", [version]
            ).fetchone()
            if done:
                continue
            for step in steps:
                conn.execute(step)
            conn.execute(
                "INSERT INTO schema_migration (version, name) VALUES (%s, %s)", [version, name]
            )
            applied.append(version)
    return applied


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "the configured PostgreSQL database"
    return f"postgresql://{info.get('user', '')}@{info.get('host', '')}:{info.get('port', '')}/" + (
        info.get("dbname") or ""
    )


class PgHubStore(SqliteHubStore):
    """One county's hub in one PostgreSQL database (READ COMMITTED, one connection)."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = _Connection(conn)  # type: ignore[assignment]
        self._lock = threading.RLock()
        self._depth = 0

    @classmethod
    def _raw_connect(cls, url: str) -> psycopg.Connection:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise HubStoreError(f"cannot reach {_redacted(url)}: {message}") from None

    @classmethod
    def open(cls, url: str, *, create: bool = False) -> "PgHubStore":  # type: ignore[override]
        """Open (with `create`, make the schema of) the hub database and migrate it."""
        conn = cls._raw_connect(url)
        try:
            pending = pending_migrations(conn)
            if pending and len(pending) == len(MIGRATIONS) and not create:
                raise HubStoreError(
                    f"no county hub in {_redacted(url)}: run 'clinic hub init --database …'"
                )
            if pending:
                migrate(conn)
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    @classmethod
    def connect(cls, url: str) -> "PgHubStore":  # type: ignore[override]
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

    # ---- slots and devices -------------------------------------------------------------

    def add_slot(
        self,
        clinic_code: str,
        township: str,
        code_hash: str,
        code_expires_at: str,
        provisioned_at: str,
    ) -> int:
        row = self._one(
            "INSERT INTO slot (clinic_code, township, provisioned_at, code_hash,"
            " code_expires_at) VALUES (?, ?, ?, ?, ?) RETURNING slot_id",
            [clinic_code, township, provisioned_at, code_hash, code_expires_at],
        )
        return row[0]

    def slot_by_device(self, device_id: str) -> Slot | None:
        # Inside a unit of work this is the device's write lock (ingest re-reads it there).
        lock = " FOR UPDATE" if self._depth else ""
        row = self._one(f"SELECT {_SLOT_COLUMNS} FROM slot WHERE device_id = ?{lock}", [device_id])
        return None if row is None else Slot(*row)

    def remember_nonce(self, device_id: str, nonce: str, seen_at: str) -> bool:
        cursor = self.conn.execute(
            "INSERT INTO nonce VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [device_id, nonce, seen_at],
        )
        return cursor.rowcount == 1

    # ---- records ---------------------------------------------------------------------

    def add_records(self, device_id: str, records: Sequence[dict], received_at: str) -> None:
        # Shared with other ingests, exclusive against the recomputation's barrier.
        self.conn.execute("SELECT pg_advisory_xact_lock_shared(?)", [_INGEST_BARRIER])
        self.conn.executemany(
            "INSERT INTO record (device_id, seq, hash, kind, tx_id, created_at, received_at,"
            " record) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [
                (
                    device_id,
                    r["seq"],
                    r["hash"],
                    r["kind"],
                    str(r.get("tx_id", "")),
                    str(r.get("created_at", "")),
                    received_at,
                    _dumps(r),
                )
                for r in records
            ],
        )

    def hold_records(self, device_id: str, records: Sequence[dict], received_at: str) -> None:
        self.conn.executemany(
            "INSERT INTO held_record VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id, seq)"
            " DO UPDATE SET hash = excluded.hash, received_at = excluded.received_at,"
            " record = excluded.record",
            [(device_id, r["seq"], r["hash"], received_at, _dumps(r)) for r in records],
        )

    # ---- alarms ----------------------------------------------------------------------

    def raise_alarm(self, device_id: str, code: str, seq: int | None, detail: str, at: str) -> None:
        """One open alarm per device, code and seq; a repeat counts, it does not pile up."""
        cursor = self.conn.execute(
            "UPDATE alarm SET repeats = repeats + 1 WHERE device_id = ? AND code = ?"
            " AND seq IS NOT DISTINCT FROM ?::bigint AND cleared_at IS NULL",
            [device_id, code, seq],
        )
        if cursor.rowcount == 0:
            self.conn.execute(
                "INSERT INTO alarm (device_id, code, seq, detail, raised_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [device_id, code, seq, detail, at],
            )

    # ---- publications ------------------------------------------------------------------

    _PUBLICATION_COLUMNS = "kind, version, published_at, expires_at, manifest, signature, content"

    def add_publication(self, publication: Publication) -> None:
        p = publication
        cursor = self.conn.execute(
            f"INSERT INTO publication ({self._PUBLICATION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [
                p.kind,
                p.version,
                p.published_at,
                p.expires_at,
                _dumps(p.manifest),
                p.signature,
                _dumps(p.content),
            ],
        )
        if cursor.rowcount == 0:
            raise HubStoreError(f"{p.kind} version {p.version} is already published")

    def publication(self, kind: str, version: str) -> Publication | None:
        return self._publication(
            self._one(
                f"SELECT {self._PUBLICATION_COLUMNS} FROM publication"
                " WHERE kind = ? AND version = ?",
                [kind, version],
            )
        )

    def latest_publication(self, kind: str) -> Publication | None:
        return self._publication(
            self._one(
                f"SELECT {self._PUBLICATION_COLUMNS} FROM publication WHERE kind = ?"
                " ORDER BY position DESC LIMIT 1",
                [kind],
            )
        )

    def publications(self, kind: str | None = None) -> list[Publication]:
        sql = "SELECT kind, version, published_at, expires_at, manifest, signature, '{}'"
        sql += " FROM publication"
        params: list = []
        if kind is not None:
            sql += " WHERE kind = ?"
            params.append(kind)
        rows = self.conn.execute(sql + " ORDER BY position", params)
        return [self._publication(row) for row in rows]

    def published_items(self, version: str, codes: Iterable[str] | None = None) -> dict[str, dict]:
        if codes is not None and not set(codes):
            return {}
        return super().published_items(version, codes)

    # ---- persons and balances ------------------------------------------------------------

    def seed_accumulator(
        self,
        insured_id: str,
        year: int,
        scope: str,
        deductible_used: int,
        fund_paid: int,
        assistance_paid: int,
    ) -> None:
        self.conn.execute(
            "INSERT INTO accumulator VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [insured_id, year, scope, deductible_used, fund_paid, assistance_paid],
        )

    def set_balances(self, insured_id: str, year: int, visit_type: str, balances) -> None:
        self.conn.execute(
            "INSERT INTO accumulator VALUES (?, ?, ?, ?, ?, 0)"
            " ON CONFLICT (insured_id, year, scope) DO UPDATE SET"
            " deductible_used = excluded.deductible_used, fund_paid = excluded.fund_paid",
            [insured_id, year, visit_type, balances.deductible_used, balances.fund_paid],
        )
        self.conn.execute(
            "INSERT INTO accumulator VALUES (?, ?, 'assistance', 0, 0, ?)"
            " ON CONFLICT (insured_id, year, scope) DO UPDATE"
            " SET assistance_paid = excluded.assistance_paid",
            [insured_id, year, balances.assistance_paid],
        )
        self.conn.execute(
            "UPDATE person SET account_balance = ? WHERE insured_id = ?",
            [balances.account_balance, insured_id],
        )

    # ---- recomputation and reconciliation ---------------------------------------------

    def records_to_recompute(self, limit: int) -> list[StoredRecord]:
        # One recomputation at a time across processes (the row lock lasts the unit).
        (through,) = self._one("SELECT recomputed_through FROM hub_state FOR UPDATE")
        # Barrier: wait for the ingests in flight; every position handed out so far then
        # belongs to a finished transaction, so none is skipped by a later mark.
        self.conn.execute("SELECT pg_advisory_lock(?)", [_INGEST_BARRIER])
        try:
            last, called = self._one("SELECT last_value, is_called FROM record_position_seq")
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(?)", [_INGEST_BARRIER])
        visible = last if called else 0
        return [
            StoredRecord(position, device_id, seq, _loads(text))
            for position, device_id, seq, text in self.conn.execute(
                "SELECT position, device_id, seq, record FROM record"
                " WHERE position > ? AND position <= ? ORDER BY position LIMIT ?",
                [through, visible, limit],
            )
        ]

    def save_recomputation(
        self, device_id: str, seq: int, tx_id: str, status: str, hub_result: dict | None
    ) -> None:
        self.conn.execute(
            "INSERT INTO recomputation VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id, seq)"
            " DO UPDATE SET tx_id = excluded.tx_id, status = excluded.status,"
            " hub_result = excluded.hub_result",
            [device_id, seq, tx_id, status, None if hub_result is None else _dumps(hub_result)],
        )

    def reconciliation_items(self, device_ids: Iterable[str] | None = None) -> list:
        if device_ids is not None:
            device_ids = sorted(set(device_ids))
            if not device_ids:
                return []
        return super().reconciliation_items(device_ids)

    def settlements(
        self, device_ids: Iterable[str] | None = None
    ) -> Iterator[tuple[dict, str | None, dict | None]]:
        """(record, recomputation status, hub result) of every settlement held."""
        sql = (
            "SELECT r.record, c.status, c.hub_result FROM record r LEFT JOIN recomputation c"
            " ON c.device_id = r.device_id AND c.seq = r.seq WHERE r.kind = 'settlement'"
        )
        params: list = []
        if device_ids is not None:
            params = [sorted(set(device_ids))]
            sql += " AND r.device_id = ANY(?)"
        for text, status, result in self.conn.execute(sql + " ORDER BY r.position", params):
            yield _loads(text), status, None if result is None else _loads(result)


def _loads(text: str):
    return json.loads(text)


# ---- a hub whose database is PostgreSQL -------------------------------------------------------


def init_pg_hub(data_dir: Path, county_name: str, now: datetime, url: str) -> dict:
    """`service.init_hub` for a PostgreSQL database: the schema, the county signing key
    (in `data_dir`, as ever) and the URL recorded in `data_dir/database.url` (0600)."""

    from sync.hub import service

    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    url_file = data_dir / DATABASE_URL_FILE
    if url_file.exists() and url_file.read_text().strip() != url:
        raise service.HubError(f"{url_file} already names another database")
    store = PgHubStore.open(url, create=True)
    try:
        service.refuse_a_second_county(store, _redacted(url))
        fd = os.open(url_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(url + "\n")
        return service.create_county(store, data_dir, county_name, now)
    finally:
        store.close()
