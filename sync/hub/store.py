"""The county hub's storage: the `HubStore` interface and its SQLite adapter.

The service layer (`sync.hub.service`) sees only `HubStore`, so a PostgreSQL adapter can
follow without touching it. Every write happens inside `unit_of_work()`. Uniqueness of a
device's records by `(device_id, seq)` is the database's job (a UNIQUE constraint), not
the code's. Money is INTEGER fen; documents are TEXT JSON.
"""

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import sqlite_utils
from sqlite_utils.migrations import Migrations

DATABASE_FILE = "hub.db"
# A hub whose database is PostgreSQL names it here (`clinic hub init --database URL`);
# else $CLINIC_HUB_DATABASE; else SQLite in DATABASE_FILE.
DATABASE_URL_FILE = "database.url"
DATABASE_ENV = "CLINIC_HUB_DATABASE"

migrations = Migrations("clinic-hub")


@migrations()
def m001_hub(db: sqlite_utils.Database) -> None:
    statements = [
        """CREATE TABLE county (
            id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL,
            public_key TEXT NOT NULL, created_at TEXT NOT NULL) STRICT""",
        # A provisioned slot (clinic, township); a device fills it at enrollment.
        """CREATE TABLE slot (
            slot_id INTEGER PRIMARY KEY, clinic_code TEXT NOT NULL, township TEXT NOT NULL,
            provisioned_at TEXT NOT NULL, code_hash TEXT NOT NULL UNIQUE,
            code_expires_at TEXT NOT NULL, enrolled_at TEXT, device_id TEXT UNIQUE,
            public_key TEXT, revoked_at TEXT, revoked_reason TEXT,
            head_seq INTEGER NOT NULL DEFAULT 0, head_hash TEXT,
            last_contact_at TEXT, heartbeat TEXT, clock_skew_s INTEGER) STRICT""",
        """CREATE TABLE nonce (
            device_id TEXT NOT NULL, nonce TEXT NOT NULL, seen_at TEXT NOT NULL,
            PRIMARY KEY (device_id, nonce)) STRICT, WITHOUT ROWID""",
        "CREATE INDEX nonce_seen_at ON nonce (seen_at)",
        # rowid is the order of arrival: the county recomputes in that order.
        """CREATE TABLE record (
            device_id TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL,
            kind TEXT NOT NULL, tx_id TEXT NOT NULL, created_at TEXT NOT NULL,
            received_at TEXT NOT NULL, record TEXT NOT NULL,
            UNIQUE (device_id, seq)) STRICT""",
        "CREATE INDEX record_tx ON record (device_id, tx_id)",
        """CREATE TRIGGER record_is_append_only_update BEFORE UPDATE ON record
            BEGIN SELECT RAISE(ABORT, 'records are append-only'); END""",
        """CREATE TRIGGER record_is_append_only_delete BEFORE DELETE ON record
            BEGIN SELECT RAISE(ABORT, 'records are append-only'); END""",
        """CREATE TABLE held_record (
            device_id TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL,
            received_at TEXT NOT NULL, record TEXT NOT NULL,
            PRIMARY KEY (device_id, seq)) STRICT""",
        """CREATE TABLE alarm (
            alarm_id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, code TEXT NOT NULL,
            seq INTEGER, detail TEXT NOT NULL, raised_at TEXT NOT NULL,
            repeats INTEGER NOT NULL DEFAULT 1, cleared_at TEXT) STRICT""",
        "CREATE INDEX alarm_device ON alarm (device_id, code, seq)",
        """CREATE TABLE publication (
            kind TEXT NOT NULL, version TEXT NOT NULL, published_at TEXT NOT NULL,
            expires_at TEXT NOT NULL, manifest TEXT NOT NULL, signature TEXT NOT NULL,
            content TEXT NOT NULL, PRIMARY KEY (kind, version)) STRICT""",
        """CREATE TABLE published_item (
            version TEXT NOT NULL, code TEXT NOT NULL, item TEXT NOT NULL,
            PRIMARY KEY (version, code)) STRICT, WITHOUT ROWID""",
        """CREATE TABLE published_person (
            version TEXT NOT NULL, insured_id TEXT NOT NULL, person TEXT NOT NULL,
            PRIMARY KEY (version, insured_id)) STRICT, WITHOUT ROWID""",
        # The county's own view of each person, which recomputation runs on.
        """CREATE TABLE person (
            insured_id TEXT PRIMARY KEY, person TEXT NOT NULL, roster_version TEXT NOT NULL,
            account_balance INTEGER NOT NULL) STRICT""",
        """CREATE TABLE accumulator (
            insured_id TEXT NOT NULL, year INTEGER NOT NULL, scope TEXT NOT NULL,
            deductible_used INTEGER NOT NULL, fund_paid INTEGER NOT NULL,
            assistance_paid INTEGER NOT NULL,
            PRIMARY KEY (insured_id, year, scope)) STRICT, WITHOUT ROWID""",
        """CREATE TABLE recomputation (
            device_id TEXT NOT NULL, seq INTEGER NOT NULL, tx_id TEXT NOT NULL,
            status TEXT NOT NULL, hub_result TEXT, PRIMARY KEY (device_id, seq)) STRICT""",
        "CREATE INDEX recomputation_tx ON recomputation (device_id, tx_id)",
        """CREATE TABLE reconciliation_item (
            item_id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, seq INTEGER,
            tx_id TEXT, code TEXT NOT NULL, business_day TEXT, details TEXT NOT NULL,
            created_at TEXT NOT NULL) STRICT""",
        "CREATE INDEX reconciliation_device ON reconciliation_item (device_id)",
        """CREATE TABLE hub_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            recomputed_through INTEGER NOT NULL DEFAULT 0) STRICT""",
        "INSERT INTO hub_state (id) VALUES (1)",
        # Console sign-in (the web console of coordinators and admins).
        """CREATE TABLE console_user (
            username TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('admin', 'coordinator')),
            township TEXT, failures INTEGER NOT NULL DEFAULT 0, locked_until TEXT,
            created_at TEXT NOT NULL) STRICT""",
    ]
    for statement in statements:
        db.execute(statement)


class HubStoreError(Exception):
    """A refused storage operation; the message is for the operator."""


# ---- rows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class County:
    name: str
    public_key: str
    created_at: str


@dataclass(frozen=True)
class Slot:
    slot_id: int
    clinic_code: str
    township: str
    provisioned_at: str
    code_hash: str
    code_expires_at: str
    enrolled_at: str | None
    device_id: str | None
    public_key: str | None
    revoked_at: str | None
    revoked_reason: str | None
    head_seq: int
    head_hash: str | None
    last_contact_at: str | None
    heartbeat: str | None
    clock_skew_s: int | None

    @property
    def heartbeat_doc(self) -> dict:
        return json.loads(self.heartbeat) if self.heartbeat else {}


_SLOT_COLUMNS = ", ".join(Slot.__dataclass_fields__)


@dataclass(frozen=True)
class Publication:
    kind: str
    version: str
    published_at: str
    expires_at: str
    manifest: dict
    signature: str
    content: dict


@dataclass(frozen=True)
class Alarm:
    alarm_id: int
    device_id: str
    code: str
    seq: int | None
    detail: str
    raised_at: str
    repeats: int
    cleared_at: str | None


@dataclass(frozen=True)
class StoredRecord:
    position: int  # order of arrival at the hub
    device_id: str
    seq: int
    record: dict


@dataclass(frozen=True)
class ReconciliationItem:
    item_id: int
    device_id: str
    seq: int | None
    tx_id: str | None
    code: str
    business_day: str | None
    details: dict
    created_at: str


@dataclass(frozen=True)
class Balances:
    """The county's running figures for one person, year and visit type."""

    deductible_used: int
    fund_paid: int
    assistance_paid: int
    account_balance: int


@dataclass(frozen=True)
class ConsoleUser:
    username: str
    password_hash: str
    role: str
    township: str | None
    failures: int
    locked_until: str | None


# ---- the interface -----------------------------------------------------------------------


class HubStore(Protocol):
    """What the hub's use cases need from storage. Writes only inside `unit_of_work()`."""

    def unit_of_work(self) -> AbstractContextManager[None]: ...
    def close(self) -> None: ...

    # county
    def county(self) -> County | None: ...
    def create_county(self, name: str, public_key: str, created_at: str) -> None: ...

    # slots and devices
    def add_slot(
        self,
        clinic_code: str,
        township: str,
        code_hash: str,
        code_expires_at: str,
        provisioned_at: str,
    ) -> int: ...
    def slot_by_code_hash(self, code_hash: str) -> Slot | None: ...
    def slot_by_device(self, device_id: str) -> Slot | None: ...
    def slot_by_id(self, slot_id: int) -> Slot | None: ...
    def slots(self, township: str | None = None) -> list[Slot]: ...
    def enroll_slot(self, slot_id: int, device_id: str, public_key: str, at: str) -> None: ...
    def revoke_slot(self, slot_id: int, at: str, reason: str) -> None: ...
    def remember_nonce(self, device_id: str, nonce: str, seen_at: str) -> bool: ...
    def forget_nonces_before(self, before: str) -> None: ...
    def record_contact(
        self, device_id: str, at: str, heartbeat: dict | None, clock_skew_s: int | None
    ) -> None: ...

    # records
    def stored_hashes(self, device_id: str, seqs: Iterable[int]) -> dict[int, str]: ...
    def held_records(self, device_id: str) -> dict[int, dict]: ...
    def add_records(self, device_id: str, records: Sequence[dict], received_at: str) -> None: ...
    def hold_records(self, device_id: str, records: Sequence[dict], received_at: str) -> None: ...
    def release_held(self, device_id: str, seqs: Iterable[int]) -> None: ...
    def set_head(self, device_id: str, seq: int, hash_: str) -> None: ...
    def records(
        self,
        device_id: str,
        after_seq: int = 0,
        to_seq: int | None = None,
    ) -> Iterator[dict]: ...
    def record_counts(self) -> dict[str, tuple[int, int]]: ...
    def last_seq_of_kind(self, device_id: str, kind: str, before_seq: int) -> int: ...
    def record_by_tx(self, device_id: str, tx_id: str) -> dict | None: ...

    # alarms
    def raise_alarm(
        self, device_id: str, code: str, seq: int | None, detail: str, at: str
    ) -> None: ...
    def alarms(self, device_id: str | None = None, open_only: bool = True) -> list[Alarm]: ...
    def clear_alarm(self, alarm_id: int, at: str) -> None: ...

    # publications
    def add_publication(self, publication: Publication) -> None: ...
    def add_published_items(self, version: str, items: Iterable[tuple[str, str]]) -> None: ...
    def add_published_persons(self, version: str, persons: Iterable[tuple[str, str]]) -> None: ...
    def publication(self, kind: str, version: str) -> Publication | None: ...
    def latest_publication(self, kind: str) -> Publication | None: ...
    def publications(self, kind: str | None = None) -> list[Publication]: ...
    def published_items(
        self,
        version: str,
        codes: Iterable[str] | None = None,
    ) -> dict[str, dict]: ...
    def catalog_changes(self, base: str, target: str) -> tuple[list[dict], list[str]]: ...
    def roster_changes(self, base: str, target: str) -> list[dict]: ...

    # the county's view of persons, for recomputation
    def upsert_person(
        self, insured_id: str, person: dict, roster_version: str, account_balance: int
    ) -> None: ...
    def person(self, insured_id: str) -> tuple[dict, int] | None: ...
    def seed_accumulator(
        self,
        insured_id: str,
        year: int,
        scope: str,
        deductible_used: int,
        fund_paid: int,
        assistance_paid: int,
    ) -> None: ...
    def balances(self, insured_id: str, year: int, visit_type: str) -> Balances: ...
    def set_balances(
        self, insured_id: str, year: int, visit_type: str, balances: Balances
    ) -> None: ...

    # recomputation and reconciliation
    def records_to_recompute(self, limit: int) -> list[StoredRecord]: ...
    def mark_recomputed_through(self, position: int) -> None: ...
    def save_recomputation(
        self, device_id: str, seq: int, tx_id: str, status: str, hub_result: dict | None
    ) -> None: ...
    def recomputation_of(self, device_id: str, tx_id: str) -> tuple[str, dict | None] | None: ...
    def add_reconciliation_item(
        self,
        device_id: str,
        seq: int | None,
        tx_id: str | None,
        code: str,
        business_day: str | None,
        details: dict,
        created_at: str,
    ) -> None: ...
    def reconciliation_items(
        self,
        device_ids: Iterable[str] | None = None,
    ) -> list[ReconciliationItem]: ...
    def settlements(
        self,
        device_ids: Iterable[str] | None = None,
    ) -> Iterator[tuple[dict, str | None, dict | None]]: ...

    # console users
    def add_console_user(
        self, username: str, password_hash: str, role: str, township: str | None, created_at: str
    ) -> None: ...
    def console_user(self, username: str) -> ConsoleUser | None: ...
    def set_console_failures(
        self, username: str, failures: int, locked_until: str | None
    ) -> None: ...


# ---- SQLite ---------------------------------------------------------------------------------


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class SqliteHubStore:
    """One county's hub in one SQLite file (WAL, synchronous=FULL)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self._lock = threading.RLock()

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

    def close(self) -> None:
        self.conn.close()

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

    def _one(self, sql: str, params: Sequence = ()) -> tuple | None:
        return self.conn.execute(sql, params).fetchone()

    # ---- county ----------------------------------------------------------------------

    def county(self) -> County | None:
        row = self._one("SELECT name, public_key, created_at FROM county")
        return None if row is None else County(*row)

    def create_county(self, name: str, public_key: str, created_at: str) -> None:
        self.conn.execute("INSERT INTO county VALUES (1, ?, ?, ?)", [name, public_key, created_at])

    # ---- slots and devices -------------------------------------------------------------

    def add_slot(
        self,
        clinic_code: str,
        township: str,
        code_hash: str,
        code_expires_at: str,
        provisioned_at: str,
    ) -> int:
        cursor = self.conn.execute(
            "INSERT INTO slot (clinic_code, township, provisioned_at, code_hash,"
            " code_expires_at) VALUES (?, ?, ?, ?, ?)",
            [clinic_code, township, provisioned_at, code_hash, code_expires_at],
        )
        return cursor.lastrowid

    def _slot_where(self, where: str, params: Sequence) -> Slot | None:
        row = self._one(f"SELECT {_SLOT_COLUMNS} FROM slot WHERE {where}", params)
        return None if row is None else Slot(*row)

    def slot_by_code_hash(self, code_hash: str) -> Slot | None:
        return self._slot_where("code_hash = ?", [code_hash])

    def slot_by_device(self, device_id: str) -> Slot | None:
        return self._slot_where("device_id = ?", [device_id])

    def slot_by_id(self, slot_id: int) -> Slot | None:
        return self._slot_where("slot_id = ?", [slot_id])

    def slots(self, township: str | None = None) -> list[Slot]:
        sql = f"SELECT {_SLOT_COLUMNS} FROM slot"
        params: list = []
        if township is not None:
            sql += " WHERE township = ?"
            params.append(township)
        return [
            Slot(*row) for row in self.conn.execute(sql + " ORDER BY township, slot_id", params)
        ]

    def enroll_slot(self, slot_id: int, device_id: str, public_key: str, at: str) -> None:
        self.conn.execute(
            "UPDATE slot SET device_id = ?, public_key = ?, enrolled_at = ? WHERE slot_id = ?",
            [device_id, public_key, at, slot_id],
        )

    def revoke_slot(self, slot_id: int, at: str, reason: str) -> None:
        self.conn.execute(
            "UPDATE slot SET revoked_at = ?, revoked_reason = ? WHERE slot_id = ?",
            [at, reason, slot_id],
        )

    def remember_nonce(self, device_id: str, nonce: str, seen_at: str) -> bool:
        try:
            self.conn.execute("INSERT INTO nonce VALUES (?, ?, ?)", [device_id, nonce, seen_at])
        except sqlite3.IntegrityError:
            return False
        return True

    def forget_nonces_before(self, before: str) -> None:
        self.conn.execute("DELETE FROM nonce WHERE seen_at < ?", [before])

    def record_contact(
        self, device_id: str, at: str, heartbeat: dict | None, clock_skew_s: int | None
    ) -> None:
        if heartbeat is None:
            self.conn.execute(
                "UPDATE slot SET last_contact_at = ? WHERE device_id = ?", [at, device_id]
            )
        else:
            self.conn.execute(
                "UPDATE slot SET last_contact_at = ?, heartbeat = ?, clock_skew_s = ?"
                " WHERE device_id = ?",
                [at, _dumps(heartbeat), clock_skew_s, device_id],
            )

    # ---- records ---------------------------------------------------------------------

    def stored_hashes(self, device_id: str, seqs: Iterable[int]) -> dict[int, str]:
        wanted = sorted(set(seqs))
        result: dict[int, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            result.update(
                self.conn.execute(
                    f"SELECT seq, hash FROM record WHERE device_id = ?"
                    f" AND seq IN ({', '.join('?' * len(chunk))})",
                    [device_id, *chunk],
                ).fetchall()
            )
        return result

    def held_records(self, device_id: str) -> dict[int, dict]:
        return {
            seq: json.loads(text)
            for seq, text in self.conn.execute(
                "SELECT seq, record FROM held_record WHERE device_id = ?", [device_id]
            )
        }

    def add_records(self, device_id: str, records: Sequence[dict], received_at: str) -> None:
        self.conn.executemany(
            "INSERT INTO record (device_id, seq, hash, kind, tx_id, created_at, received_at,"
            " record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
            "INSERT OR REPLACE INTO held_record VALUES (?, ?, ?, ?, ?)",
            [(device_id, r["seq"], r["hash"], received_at, _dumps(r)) for r in records],
        )

    def release_held(self, device_id: str, seqs: Iterable[int]) -> None:
        self.conn.executemany(
            "DELETE FROM held_record WHERE device_id = ? AND seq = ?",
            [(device_id, seq) for seq in seqs],
        )

    def set_head(self, device_id: str, seq: int, hash_: str) -> None:
        self.conn.execute(
            "UPDATE slot SET head_seq = ?, head_hash = ? WHERE device_id = ?",
            [seq, hash_, device_id],
        )

    def records(
        self, device_id: str, after_seq: int = 0, to_seq: int | None = None
    ) -> Iterator[dict]:
        sql = "SELECT record FROM record WHERE device_id = ? AND seq > ?"
        params: list = [device_id, after_seq]
        if to_seq is not None:
            sql += " AND seq <= ?"
            params.append(to_seq)
        for (text,) in self.conn.execute(sql + " ORDER BY seq", params):
            yield json.loads(text)

    def record_counts(self) -> dict[str, tuple[int, int]]:
        """device_id -> (records held, records held beyond a gap)."""
        counts = {
            device: (n, 0)
            for device, n in self.conn.execute(
                "SELECT device_id, count(*) FROM record GROUP BY device_id"
            )
        }
        for device, n in self.conn.execute(
            "SELECT device_id, count(*) FROM held_record GROUP BY device_id"
        ):
            counts[device] = (counts.get(device, (0, 0))[0], n)
        return counts

    def last_seq_of_kind(self, device_id: str, kind: str, before_seq: int) -> int:
        row = self._one(
            "SELECT max(seq) FROM record WHERE device_id = ? AND kind = ? AND seq < ?",
            [device_id, kind, before_seq],
        )
        return row[0] or 0

    def record_by_tx(self, device_id: str, tx_id: str) -> dict | None:
        row = self._one(
            "SELECT record FROM record WHERE device_id = ? AND tx_id = ?", [device_id, tx_id]
        )
        return None if row is None else json.loads(row[0])

    # ---- alarms ----------------------------------------------------------------------

    def raise_alarm(self, device_id: str, code: str, seq: int | None, detail: str, at: str) -> None:
        """One open alarm per device, code and seq; a repeat counts, it does not pile up."""
        cursor = self.conn.execute(
            "UPDATE alarm SET repeats = repeats + 1 WHERE device_id = ? AND code = ?"
            " AND seq IS ? AND cleared_at IS NULL",
            [device_id, code, seq],
        )
        if cursor.rowcount == 0:
            self.conn.execute(
                "INSERT INTO alarm (device_id, code, seq, detail, raised_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [device_id, code, seq, detail, at],
            )

    def alarms(self, device_id: str | None = None, open_only: bool = True) -> list[Alarm]:
        sql = "SELECT * FROM alarm WHERE 1 = 1"
        params: list = []
        if device_id is not None:
            sql += " AND device_id = ?"
            params.append(device_id)
        if open_only:
            sql += " AND cleared_at IS NULL"
        return [Alarm(*row) for row in self.conn.execute(sql + " ORDER BY alarm_id", params)]

    def clear_alarm(self, alarm_id: int, at: str) -> None:
        self.conn.execute("UPDATE alarm SET cleared_at = ? WHERE alarm_id = ?", [at, alarm_id])

    # ---- publications ------------------------------------------------------------------

    def add_publication(self, publication: Publication) -> None:
        p = publication
        try:
            self.conn.execute(
                "INSERT INTO publication VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        except sqlite3.IntegrityError:
            raise HubStoreError(f"{p.kind} version {p.version} is already published") from None

    def add_published_items(self, version: str, items: Iterable[tuple[str, str]]) -> None:
        self.conn.executemany(
            "INSERT INTO published_item VALUES (?, ?, ?)",
            ((version, code, text) for code, text in items),
        )

    def add_published_persons(self, version: str, persons: Iterable[tuple[str, str]]) -> None:
        self.conn.executemany(
            "INSERT INTO published_person VALUES (?, ?, ?)",
            ((version, insured_id, text) for insured_id, text in persons),
        )

    @staticmethod
    def _publication(row: tuple | None) -> Publication | None:
        if row is None:
            return None
        kind, version, published_at, expires_at, manifest, signature, content = row
        return Publication(
            kind,
            version,
            published_at,
            expires_at,
            json.loads(manifest),
            signature,
            json.loads(content),
        )

    def publication(self, kind: str, version: str) -> Publication | None:
        return self._publication(
            self._one("SELECT * FROM publication WHERE kind = ? AND version = ?", [kind, version])
        )

    def latest_publication(self, kind: str) -> Publication | None:
        # Versions only ever grow (the service refuses older ones), so the last one in wins.
        return self._publication(
            self._one(
                "SELECT * FROM publication WHERE kind = ? ORDER BY rowid DESC LIMIT 1", [kind]
            )
        )

    def publications(self, kind: str | None = None) -> list[Publication]:
        sql = "SELECT kind, version, published_at, expires_at, manifest, signature, '{}'"
        sql += " FROM publication"
        params: list = []
        if kind is not None:
            sql += " WHERE kind = ?"
            params.append(kind)
        rows = self.conn.execute(sql + " ORDER BY rowid", params)
        return [self._publication(row) for row in rows]

    def published_items(self, version: str, codes: Iterable[str] | None = None) -> dict[str, dict]:
        if codes is None:
            rows = self.conn.execute(
                "SELECT code, item FROM published_item WHERE version = ?", [version]
            )
        else:
            wanted = sorted(set(codes))
            if not wanted:
                return {}
            rows = self.conn.execute(
                f"SELECT code, item FROM published_item WHERE version = ?"
                f" AND code IN ({', '.join('?' * len(wanted))})",
                [version, *wanted],
            )
        return {code: json.loads(text) for code, text in rows}

    def catalog_changes(self, base: str, target: str) -> tuple[list[dict], list[str]]:
        upsert = [
            json.loads(text)
            for (text,) in self.conn.execute(
                "SELECT t.item FROM published_item t LEFT JOIN published_item b"
                " ON b.version = ? AND b.code = t.code"
                " WHERE t.version = ? AND (b.item IS NULL OR b.item != t.item) ORDER BY t.code",
                [base, target],
            )
        ]
        removed = [
            code
            for (code,) in self.conn.execute(
                "SELECT b.code FROM published_item b WHERE b.version = ? AND NOT EXISTS"
                " (SELECT 1 FROM published_item t WHERE t.version = ? AND t.code = b.code)"
                " ORDER BY b.code",
                [base, target],
            )
        ]
        return upsert, removed

    def roster_changes(self, base: str, target: str) -> list[dict]:
        return [
            json.loads(text)
            for (text,) in self.conn.execute(
                "SELECT t.person FROM published_person t LEFT JOIN published_person b"
                " ON b.version = ? AND b.insured_id = t.insured_id"
                " WHERE t.version = ? AND (b.person IS NULL OR b.person != t.person)"
                " ORDER BY t.insured_id",
                [base, target],
            )
        ]

    # ---- persons and balances ------------------------------------------------------------

    def upsert_person(
        self, insured_id: str, person: dict, roster_version: str, account_balance: int
    ) -> None:
        """The roster's person; the county's running account balance is kept once known."""
        self.conn.execute(
            "INSERT INTO person VALUES (?, ?, ?, ?) ON CONFLICT (insured_id) DO UPDATE SET"
            " person = excluded.person, roster_version = excluded.roster_version",
            [insured_id, _dumps(person), roster_version, account_balance],
        )

    def person(self, insured_id: str) -> tuple[dict, int] | None:
        row = self._one(
            "SELECT person, account_balance FROM person WHERE insured_id = ?", [insured_id]
        )
        return None if row is None else (json.loads(row[0]), row[1])

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
            "INSERT OR IGNORE INTO accumulator VALUES (?, ?, ?, ?, ?, ?)",
            [insured_id, year, scope, deductible_used, fund_paid, assistance_paid],
        )

    def balances(self, insured_id: str, year: int, visit_type: str) -> Balances:
        row = self._one(
            "SELECT deductible_used, fund_paid FROM accumulator"
            " WHERE insured_id = ? AND year = ? AND scope = ?",
            [insured_id, year, visit_type],
        ) or (0, 0)
        assistance = self._one(
            "SELECT assistance_paid FROM accumulator"
            " WHERE insured_id = ? AND year = ? AND scope = 'assistance'",
            [insured_id, year],
        ) or (0,)
        account = self._one(
            "SELECT account_balance FROM person WHERE insured_id = ?", [insured_id]
        ) or (0,)
        return Balances(row[0], row[1], assistance[0], account[0])

    def set_balances(self, insured_id: str, year: int, visit_type: str, balances: Balances) -> None:
        self.conn.execute(
            "INSERT INTO accumulator VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT DO UPDATE SET"
            " deductible_used = excluded.deductible_used, fund_paid = excluded.fund_paid",
            [insured_id, year, visit_type, balances.deductible_used, balances.fund_paid],
        )
        self.conn.execute(
            "INSERT INTO accumulator VALUES (?, ?, 'assistance', 0, 0, ?) ON CONFLICT DO UPDATE"
            " SET assistance_paid = excluded.assistance_paid",
            [insured_id, year, balances.assistance_paid],
        )
        self.conn.execute(
            "UPDATE person SET account_balance = ? WHERE insured_id = ?",
            [balances.account_balance, insured_id],
        )

    # ---- recomputation and reconciliation ---------------------------------------------

    def records_to_recompute(self, limit: int) -> list[StoredRecord]:
        (through,) = self._one("SELECT recomputed_through FROM hub_state")
        return [
            StoredRecord(rowid, device_id, seq, json.loads(text))
            for rowid, device_id, seq, text in self.conn.execute(
                "SELECT rowid, device_id, seq, record FROM record WHERE rowid > ?"
                " ORDER BY rowid LIMIT ?",
                [through, limit],
            )
        ]

    def mark_recomputed_through(self, position: int) -> None:
        self.conn.execute("UPDATE hub_state SET recomputed_through = ?", [position])

    def save_recomputation(
        self, device_id: str, seq: int, tx_id: str, status: str, hub_result: dict | None
    ) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO recomputation VALUES (?, ?, ?, ?, ?)",
            [device_id, seq, tx_id, status, None if hub_result is None else _dumps(hub_result)],
        )

    def recomputation_of(self, device_id: str, tx_id: str) -> tuple[str, dict | None] | None:
        row = self._one(
            "SELECT status, hub_result FROM recomputation WHERE device_id = ? AND tx_id = ?",
            [device_id, tx_id],
        )
        if row is None:
            return None
        return row[0], None if row[1] is None else json.loads(row[1])

    def add_reconciliation_item(
        self,
        device_id: str,
        seq: int | None,
        tx_id: str | None,
        code: str,
        business_day: str | None,
        details: dict,
        created_at: str,
    ) -> None:
        self.conn.execute(
            "INSERT INTO reconciliation_item (device_id, seq, tx_id, code, business_day,"
            " details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [device_id, seq, tx_id, code, business_day, _dumps(details), created_at],
        )

    def reconciliation_items(
        self, device_ids: Iterable[str] | None = None
    ) -> list[ReconciliationItem]:
        sql, params = "SELECT * FROM reconciliation_item", []
        if device_ids is not None:
            params = sorted(set(device_ids))
            sql += f" WHERE device_id IN ({', '.join('?' * len(params))})"
        return [
            ReconciliationItem(*row[:6], json.loads(row[6]), row[7])
            for row in self.conn.execute(sql + " ORDER BY item_id", params)
        ]

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
            params = sorted(set(device_ids))
            sql += f" AND r.device_id IN ({', '.join('?' * len(params))})"
        for text, status, result in self.conn.execute(sql + " ORDER BY r.rowid", params):
            yield json.loads(text), status, None if result is None else json.loads(result)

    # ---- console users -------------------------------------------------------------------

    def add_console_user(
        self,
        username: str,
        password_hash: str,
        role: str,
        township: str | None,
        created_at: str,
    ) -> None:
        self.conn.execute(
            "INSERT INTO console_user (username, password_hash, role, township, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET"
            " password_hash = excluded.password_hash, role = excluded.role,"
            " township = excluded.township, failures = 0, locked_until = NULL",
            [username, password_hash, role, township, created_at],
        )

    def console_user(self, username: str) -> ConsoleUser | None:
        row = self._one(
            "SELECT username, password_hash, role, township, failures, locked_until"
            " FROM console_user WHERE username = ?",
            [username],
        )
        return None if row is None else ConsoleUser(*row)

    def set_console_failures(self, username: str, failures: int, locked_until: str | None) -> None:
        self.conn.execute(
            "UPDATE console_user SET failures = ?, locked_until = ? WHERE username = ?",
            [failures, locked_until, username],
        )


def database_url(data_dir: Path) -> str | None:
    """The PostgreSQL URL this hub uses, or None for SQLite."""
    path = Path(data_dir) / DATABASE_URL_FILE
    if path.exists():
        return path.read_text().strip() or None
    return os.environ.get(DATABASE_ENV) or None


def open_hub_store(data_dir: Path, *, create: bool = False) -> HubStore:
    """The hub's store as configured (see `database_url`), schema brought up to date."""
    url = database_url(data_dir)
    if url:
        from sync.hub.pg_store import PgHubStore

        return PgHubStore.open(url, create=create)
    return SqliteHubStore.open(data_dir, create=create)


def connect_hub_store(data_dir: Path) -> HubStore:
    """A connection to the configured, existing hub (one per request or worker thread)."""
    url = database_url(data_dir)
    if url:
        from sync.hub.pg_store import PgHubStore

        return PgHubStore.connect(url)
    return SqliteHubStore.connect(data_dir)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn
