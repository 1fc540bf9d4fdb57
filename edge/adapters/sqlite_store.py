"""The device's SQLite store: catalog (with pinyin search), policy, roster, accumulators.

One file, WAL, `synchronous=FULL`; the schema grows by migrations (`schema.py`) that
commit together with the record of having run. Money is INTEGER fen, prices and ratios
TEXT decimals. Past 500 lines because it is one class, the one implementation of
`edge.ports.DeviceStore` (and the queries the UI and the agent run on the same tables).
"""

import dataclasses
import functools
import json
import os
import re
import shutil
import sqlite3
import stat
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import islice
from pathlib import Path
from types import MappingProxyType
from typing import Any

import sqlite_utils

from edge.adapters.schema import (
    index_account_movements,
    index_premium_record,
    index_request_record,
    migrations,
    unknown_migrations,
)
from edge.domain.documents import (
    YEAR_WIDE,
    InsuredPerson,
    category_from_json,
    chronic_cert_from_json,
    policy_from_json,
    roster_from_json,
)
from edge.domain.ledger import record_hash
from edge.domain.model import (
    Accumulators,
    CatalogItem,
    Category,
    ChronicCert,
    Person,
    Policy,
)
from edge.domain.search_keys import (
    KEY_CODE,
    KEY_NAME_INSIDE,
    MATCHED,
    NAME_KINDS,
    alias_keys,
    core_offset,
    name_keys,
    pinyin_keys,
    search_key,
)
from edge.domain.versions import supersedes, version_problem
from edge.ports import DeviceRow, LedgerHead

DATABASE_FILE = "clinic.db"
SEARCH_LIMIT = 20
ITEM_CACHE_SIZE = 5000  # parsed catalog items kept per connection
PERSON_CACHE_SIZE = 4096  # parsed roster rows kept per process
_IMPORT_BATCH = 1000  # most items per short write transaction of an import
_MIN_BATCH = 50  # fewest, however slow the disk
_BATCH_TARGET_S = 0.1  # how long one import batch should hold the write lock
_WAL_KEPT = 64 * 1024 * 1024  # bytes of WAL file kept once checkpointed
_DROP_BATCH = 5000  # rows per transaction when an old catalog or roster is dropped
_IMPORT_CACHE_KIB = 32 * 1024  # SQLite's page cache while a catalog goes in
_IMPORT_BUSY_MS = 120_000  # how long one import batch may wait for the write lock
_FULL_BELOW = 1024 * 1024  # free bytes under which an I/O error is taken for a full disk
# A catalog import builds these beside the installed ones and renames them into place.
_CATALOG_TABLES = ("catalog_item", "catalog_term", "catalog_search", "catalog_key")
_STAGED, _RETIRED, _ALTERNATE = "_staged", "_retired", "_b"
_ALIAS_TABLES = ("search_alias",)
_ROSTER_TABLES = ("person",)
# What a large roster import needs until its swap: whose balance settlements changed
# meanwhile, whom the roster lists, and its accumulator figures (merged after the swap).
_ROSTER_SCRATCH = MappingProxyType(
    {
        f"balance_noted{_STAGED}": "insured_id TEXT PRIMARY KEY",
        f"roster_id{_STAGED}": "insured_id TEXT PRIMARY KEY",
        f"roster_figure{_STAGED}": "kind TEXT NOT NULL, params TEXT NOT NULL",
    }
)
_NOTE_BALANCES = f"""CREATE TRIGGER person_balance{_STAGED} AFTER UPDATE OF account_balance
    ON person BEGIN INSERT OR IGNORE INTO balance_noted{_STAGED} VALUES (new.insured_id); END"""
_UPSERT_PERSON = """INSERT INTO {table} VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
    ON CONFLICT (insured_id) DO UPDATE SET card_no = excluded.card_no,
      name = excluded.name, id_number_masked = excluded.id_number_masked,
      region = excluded.region, card_expiry = excluded.card_expiry,
      insurance_type = excluded.insurance_type, gender = excluded.gender,
      birth_date = excluded.birth_date, status = excluded.status,
      waiting_until = excluded.waiting_until, categories = excluded.categories,
      chronic_certs = excluded.chronic_certs, account_balance = excluded.account_balance,
      family_account_holders = excluded.family_account_holders"""
# The roster's figures may predate settlements this device has not uploaded yet: keep the
# larger of the two, never undercounting a deductible or a cap. The county's
# reconciliation settles the rest.
_MERGE_FIGURE = {
    "assistance": "INSERT INTO assistance_accumulator VALUES (?, ?, ?) ON CONFLICT DO UPDATE"
    " SET assistance_paid = max(assistance_paid, excluded.assistance_paid)",
    "year": "INSERT INTO year_accumulator VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
    " SET amount = max(amount, excluded.amount)",
    "scope": "INSERT INTO accumulator VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
    " SET deductible_used = max(deductible_used, excluded.deductible_used),"
    " fund_paid = max(fund_paid, excluded.fund_paid)",
}
_CREATE_TABLE = re.compile(r'^CREATE TABLE\s+("[^"]+"|\S+)', re.IGNORECASE)
_CREATE_INDEX = re.compile(r'^CREATE INDEX\s+("[^"]+"|\S+)\s+ON\s+("[^"]+"|\S+)', re.IGNORECASE)

# Search ranks: the clinic's own picks, then aliases, codes, names from their start, names
# from inside (`edge.domain.search_keys` kinds, moved past the first two).
RANK_PICK, RANK_ALIAS = 0, 1
_RANK_OF_KIND = 2
PICK_HALF_LIFE_DAYS = 30
PICKS_KEPT = 400  # the clinic's most used codes of each list that search looks through
BUNDLE_NAME_MAX = 40


class _Picks:
    """The clinic's picks of one list, best first, with every search key of each laid
    end to end in one string (each key after a separator), so that one `str.find` per
    pick found answers which picks a query finds."""

    SEPARATOR = "\x01"

    def __init__(self, stamp: tuple[int, int], ranked: list[tuple[float, tuple]]):
        self.stamp = stamp
        self.ranked = ranked  # (score, row): row is (code, name, …)
        parts, self.starts = [], []
        offset = 0
        for _score, row in ranked:
            keys = [search_key(row[0]), *(key for _kind, key in name_keys(row[1]))]
            part = "".join(self.SEPARATOR + key for key in keys)
            self.starts.append(offset)
            parts.append(part)
            offset += len(part)
        self.text = "".join(parts)

    def find(self, key: str, limit: int) -> list[tuple]:
        found: list[tuple] = []
        needle = self.SEPARATOR + key
        position = self.text.find(needle)
        while position >= 0 and len(found) < limit:
            index = bisect_right(self.starts, position) - 1
            found.append(self.ranked[index][1])
            if index + 1 >= len(self.starts):
                break
            position = self.text.find(needle, self.starts[index + 1])
        return found


def database_error_text(error: sqlite3.Error, data_dir: Path | None = None) -> str:
    """What an operator reads for a database failure, in Chinese and English: a full disk,
    a damaged file or a busy database each say what to do, never a traceback. A full disk
    shows as SQLITE_FULL, or as an I/O error when even the -shm file cannot grow."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _disk_full(data_dir)):
        return (
            "磁盘已满，未做任何更改：请腾出空间后重试（clinic doctor 查看磁盘） / the disk is"
            " full, nothing changed: free some space and try again (clinic doctor shows it)"
        )
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return (
            "设备数据库已损坏，未做任何更改：运行 clinic doctor，然后用 clinic restore 恢复最近的"
            " 备份 / the device database is damaged, nothing changed: run clinic doctor, then"
            f" clinic restore the latest backup ({error})"
        )
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return (
            "设备数据库正忙，未做任何更改：请稍后重试 / the device database is busy, nothing"
            f" changed: try again in a moment ({error})"
        )
    return f"设备数据库出错，未做任何更改 / a device database error, nothing changed: {error}"


def _disk_full(data_dir: Path | None) -> bool:
    try:
        return data_dir is not None and shutil.disk_usage(data_dir).free < _FULL_BELOW
    except OSError:
        return False


class StoreError(Exception):
    """A refused store operation; the message is for the operator."""


class SchemaNewer(StoreError):
    """SCHEMA_NEWER: the database has had migrations this code does not know (a newer
    release migrated it, then the software went back): opening it could damage it."""

    code = "SCHEMA_NEWER"

    def __init__(self, unknown: list[str]) -> None:
        self.unknown = unknown
        super().__init__(
            "设备数据库的结构比本软件版本新（由更新的版本升级过），本版本不能打开它：请安装该新版本"
            f"或联系县里 / SCHEMA_NEWER: the device database has migrations this software"
            f" does not know ({', '.join(unknown)}): it was upgraded by a newer release;"
            " run that release again or call the county"
        )


@dataclass(frozen=True, slots=True)
class SearchHit:
    code: str
    name: str
    spec: str
    unit: str
    kind: str
    item_class: str
    price: str
    matched: str  # "pick" | "alias" | "code" | "name" | "initials" | "pinyin"
    anywhere: bool = False  # found inside the name rather than from its start


@dataclass(frozen=True, slots=True)
class DiagnosisHit:
    code: str
    name: str
    matched: str
    anywhere: bool = False


@dataclass(frozen=True, slots=True)
class Bundle:
    """A named set of lines (and diagnoses) a doctor applies to a visit at once (组套)."""

    bundle_id: int
    name: str
    source: str  # "county" (published, read-only here) | "clinic" (saved by a doctor)
    lines: tuple[tuple[str, str], ...]  # (code, quantity)
    diagnoses: tuple[str, ...]


def prefix_range(prefix: str) -> tuple[str, str]:
    """Bounds of every string starting with `prefix`, for an index range scan."""
    return prefix, prefix + "\U0010ffff"


def _ranked_sql(alias_list: str, code_table: str, key_subquery: str, outer: str) -> str:
    """Per rank, the first `:limit` keys in key order (an index range scan that stops
    early), each with the length it ranks by within its rank: `{union}` in `outer`."""
    window = " AND key >= :low AND key < :high ORDER BY key LIMIT :limit"
    parts = [
        f"SELECT {RANK_ALIAS} AS rank, key, code, length(key) AS len FROM search_alias"
        f" WHERE list = '{alias_list}'{window}",
        f"SELECT {_RANK_OF_KIND + KEY_CODE}, key, code, length(key) FROM {code_table}"
        f" WHERE kind = {KEY_CODE}{window}",
        *(key_subquery.format(rank=_RANK_OF_KIND + kind, kind=kind) for kind in NAME_KINDS),
    ]
    return outer.format(union=" UNION ALL ".join(f"SELECT * FROM ({p})" for p in parts))


# Each item once, at its best rank (SQLite takes the bare columns from the row min()
# picks), the first `:limit` of them ranked; only those are then read from catalog_item.
_SEARCH_SQL = _ranked_sql(
    "item",
    "catalog_search",
    "SELECT {rank}, k.key, i.code, t.core_len FROM catalog_key AS k"
    " JOIN catalog_term AS t ON t.term = k.term"
    " JOIN catalog_item AS i ON i.term = k.term WHERE k.kind = {kind}"
    " AND k.key >= :low AND k.key < :high ORDER BY k.key LIMIT :limit",
    "SELECT m.rank, i.code, i.name, i.spec, i.unit, i.kind, i.class, i.price FROM ("
    "SELECT code, min(rank) AS rank, len, key FROM ({union}) GROUP BY code"
    " ORDER BY rank, len, key, code LIMIT :limit"
    ") AS m JOIN catalog_item AS i ON i.code = m.code ORDER BY m.rank, m.len, m.key, m.code",
)
_DIAGNOSIS_SQL = _ranked_sql(
    "diagnosis",
    "diagnosis_search",
    "SELECT {rank}, key, code, 0 FROM diagnosis_key WHERE kind = {kind}"
    " AND key >= :low AND key < :high ORDER BY key LIMIT :limit",
    "SELECT m.rank, d.code, d.name FROM ({union}) AS m JOIN diagnosis AS d ON d.code = m.code"
    " ORDER BY m.rank, length(d.name), m.key, d.code",
)


def _matched(rank: int) -> tuple[str, bool]:
    if rank == RANK_PICK:
        return "pick", False
    if rank == RANK_ALIAS:
        return "alias", False
    kind = rank - _RANK_OF_KIND
    return MATCHED[kind], kind >= KEY_NAME_INSIDE


def private_database_file(path: Path) -> None:
    """Make `path` (created empty if missing: SQLite takes an empty file as a new database)
    readable by its owner only, whatever the umask and the folder, and its -wal, -shm and
    -journal if present. SQLite creates those with the database file's own mode, so a
    0600 database keeps them 0600 too. Another user's files (root's probes) are left."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except PermissionError:  # another user's database: SQLite says what it can do
        return
    try:
        _private(fd)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        try:
            fd = os.open(f"{path}{suffix}", os.O_RDONLY)
        except OSError:  # none (the usual case), or not ours to open
            continue
        try:
            _private(fd)
        finally:
            os.close(fd)


def _private(fd: int) -> None:
    if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
        with suppress(PermissionError):  # not ours: its owner's `clinic` fixes it
            os.fchmod(fd, 0o600)


def connect(path: Path) -> sqlite_utils.Database:
    """A connection with the durability settings every money-recording write needs, to a
    database file only its owner can read."""
    private_database_file(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    # A settlement commits ~8 WAL pages (record, outbox, indexes, accumulators): checkpoint
    # every 4000 pages rather than SQLite's 1000, so a checkpoint lands on one settlement
    # in ~500, as it would for single-page writes at the default.
    conn.execute("PRAGMA wal_autocheckpoint = 4000")
    # a WAL an import grew is cut back to this when a writer starts it over (an SD card's room)
    conn.execute(f"PRAGMA journal_size_limit = {_WAL_KEPT}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")
    return sqlite_utils.Database(conn)


class SqliteDeviceStore:
    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self._write_lock = threading.RLock()
        self._write_depth = 0
        # (seq, stored text, record) of the head this connection wrote or verified
        self._trusted_head: tuple[int, str, dict] | None = None
        self._policy: Policy | None = None  # parsed once per installed version
        self._items: dict[str, CatalogItem] = {}  # parsed items of `_items_version`
        self._items_version: str | None = None
        # the clinic's picks of each list, (code, name, score) best first, and what they
        # were read at: (PRAGMA data_version, this connection's own writes)
        self._picks: dict[str, _Picks] = {}
        self._own_writes = 0

    @contextmanager
    def write_transaction(self) -> Iterator[None]:
        """One unit of work that writes: serialised across threads (a lock) and processes
        (BEGIN IMMEDIATE takes SQLite's write lock up front, so the reads inside see
        exactly what the writes build on). Rolls back on any exception."""
        with self._write_lock:
            if self._write_depth:  # nested: part of the caller's transaction
                self._write_depth += 1
                try:
                    yield
                finally:
                    self._write_depth -= 1
                return
            self.db.execute("BEGIN IMMEDIATE")
            self._write_depth = 1
            try:
                yield
            except BaseException:
                if self.db.conn.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            else:
                try:
                    self.db.execute("COMMIT")
                except BaseException:
                    if self.db.conn.in_transaction:
                        self.db.execute("ROLLBACK")
                    raise
            finally:
                self._write_depth = 0

    @classmethod
    def open(cls, data_dir: Path, *, create: bool = False) -> "SqliteDeviceStore":
        path = Path(data_dir) / DATABASE_FILE
        if not path.exists() and not create:
            raise StoreError(
                f"no device data in {data_dir}: run 'clinic init --data-dir {data_dir}' first"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(connect(path))
        unknown = unknown_migrations(store.db.conn)
        if unknown:  # never write to a schema this code does not know
            store.close()
            raise SchemaNewer(unknown)
        if migrations.pending(store.db):  # the one place clinic.db's schema changes
            # under the write lock, checked again there: a scheduler, the doctor and a
            # command opening a device from an older release at once must not collide
            with store.write_transaction():
                migrations.apply(store.db)
        return store

    def close(self) -> None:
        self.db.close()

    # ---- catalog -------------------------------------------------------------------

    def catalog_version(self) -> str | None:
        return self._latest("catalog_version")

    def import_catalog(
        self, items: Iterable[CatalogItem], version: str, source: str, *, now: datetime
    ) -> int:
        """Replace the catalog with a newer version; returns the count.

        The new catalog is built beside the installed one (`*_staged` tables) in short
        write transactions (`_write_in_batches`), so a settle waits for one batch at most,
        never for the whole file; then one short transaction renames the tables into place.
        `items` may be a lazy iterator: a bad item, a crash or a power cut before the swap
        leave the installed catalog exactly as it was."""
        self._refuse_rollback("catalog", self.catalog_version(), version, now)
        terms: dict[str, int] = {}
        with self._staging(_CATALOG_TABLES):
            count = self._write_in_batches(
                items, lambda batch: self._catalog_rows(batch, terms), self._insert_catalog_rows
            )

            def swap() -> None:
                # checked again: another import may have installed one meanwhile
                self._refuse_rollback("catalog", self.catalog_version(), version, now)
                self._swap_staged(_CATALOG_TABLES)
                self.db.execute(
                    "INSERT INTO catalog_version VALUES (?, ?, ?, ?)",
                    [version, source, count, _installed_at(now)],
                )

            self._commit_staged(swap)
        return count

    # ---- staging: what imports share ------------------------------------------------

    @contextmanager
    def _staging(
        self, tables: tuple[str, ...], scratch: Mapping[str, str] = MappingProxyType({})
    ) -> Iterator[None]:
        """Around an import that builds `tables` beside the installed ones: import-time
        settings, empty `*_staged` copies (a crashed import's left-overs dropped first),
        the staged copies dropped again if the import fails, the old tables (renamed aside
        by the swap) dropped after it. `scratch`: more tables the import needs until its
        swap (name: columns), made and dropped with the copies."""
        staged = tables + tuple(name[: -len(_STAGED)] for name in scratch)
        (cache_size,) = self.db.execute("PRAGMA cache_size").fetchone()
        (busy_ms,) = self.db.execute("PRAGMA busy_timeout").fetchone()
        # The search keys go in in no order: a page cache that holds most of them spares
        # the import rewriting the same pages over and over (twice as fast at 300,000 items).
        self.db.execute(f"PRAGMA cache_size = {-_IMPORT_CACHE_KIB}")
        # SQLite's lock is not fair: between busy settles the import's batch may wait long.
        # It can afford to; a settle waits at most one batch.
        self.db.execute(f"PRAGMA busy_timeout = {_IMPORT_BUSY_MS}")
        # The staged rows are worth nothing until the swap: no fsync for each batch (a power
        # cut loses them, and the next import starts over); the swap itself commits FULL.
        self.db.execute("PRAGMA synchronous = NORMAL")
        try:
            self._drop_tables(tables, _RETIRED)  # left by a crash after an earlier swap
            self._drop_staged_triggers()  # before the tables they write to
            self._drop_tables(staged, _STAGED)  # left by a crashed import
            self._create_staged(tables)
            with self.write_transaction():
                for name, columns in scratch.items():
                    self.db.execute(f"CREATE TABLE {name} ({columns}) STRICT")
            yield
        except BaseException:
            with suppress(sqlite3.Error):  # the import's own error is the one to tell
                self._drop_staged_triggers()
                self._drop_tables(staged, _STAGED)
            raise
        finally:
            self.db.execute(f"PRAGMA cache_size = {int(cache_size)}")
            self.db.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
            self.db.execute("PRAGMA synchronous = FULL")
            self._own_writes += 1  # the picks' rows are read anew
        self._drop_tables(tables, _RETIRED)
        # Copy the last pages back. Not TRUNCATE: it holds off every writer while it copies
        # and waits for readers, and a busy clinic always has one; the WAL, grown by the
        # whole import, is cut back to `_WAL_KEPT` by the next write that starts it over.
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _drop_staged_triggers(self) -> None:
        """A staging trigger left behind would fail every settle once its table is gone."""
        with self.write_transaction():
            for (name,) in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?",
                [f"%{_STAGED}"],
            ).fetchall():
                self.db.execute(f"DROP TRIGGER {name}")

    def _commit_staged(self, swap: Callable[[], None]) -> None:
        """Run `swap` (renames and the version row) in one short, fully synced transaction.
        Foreign keys are off for it (a no-op inside a transaction, so around it): with them
        on, renaming `person` aside would repoint the accumulators' references."""
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute("PRAGMA foreign_keys = OFF")
        try:
            with self.write_transaction():
                swap()
        finally:
            self.db.execute("PRAGMA foreign_keys = ON")

    def _write_in_batches(
        self,
        items: Iterable[Any],
        prepare: Callable[[list[Any]], Any],
        write: Callable[[Any], object],
    ) -> int:
        """Write `items` in short transactions; returns the count. `prepare` turns a batch
        into rows outside the write lock (search keys, JSON: the slow part), `write` inserts
        them. A batch that held the lock over _BATCH_TARGET_S halves the next one (a loaded
        Pi, a slow card), a quick one doubles it up to _IMPORT_BATCH."""
        count, size = 0, _IMPORT_BATCH
        iterator = iter(items)
        while batch := list(islice(iterator, size)):
            rows = prepare(batch)
            with self._import_transaction() as held:
                write(rows)
            count += len(batch)
            if held[0] > _BATCH_TARGET_S:
                size = max(_MIN_BATCH, size // 2)
            elif held[0] < _BATCH_TARGET_S / 4:
                size = min(_IMPORT_BATCH, size * 2)
        return count

    @contextmanager
    def _import_transaction(self) -> Iterator[list[float]]:
        """One short write transaction of an import (yields [seconds it held the lock],
        filled in after), then room for settles. SQLite's lock is not fair: a waiting
        settle polls it every 100 ms at most, and back-to-back batches starved one for
        2.6 s; so the import pauses as long as it held the lock. And it copies the batch's
        pages into the database outside the lock: left to the WAL's autocheckpoint, a
        settle's commit could be the one to copy them."""
        held = [0.0]
        with self.write_transaction():
            started = time.perf_counter()
            yield held
        held[0] = time.perf_counter() - started
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        time.sleep(held[0])

    def _create_staged(self, tables: tuple[str, ...]) -> None:
        """Empty `*_staged` copies of `tables` (their current columns, as the migrations
        left them) and of their indexes, under the index names not in use."""
        with self.write_transaction():
            for table in tables:
                (sql,) = self.db.execute(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]
                ).fetchone()
                self.db.execute(_CREATE_TABLE.sub(f"CREATE TABLE {table}{_STAGED}", sql, 1))
                for name, index_sql in self.db.execute(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                    " AND tbl_name = ? AND sql IS NOT NULL",
                    [table],
                ).fetchall():
                    # an index keeps its name through a rename: alternate two names
                    other = (
                        name[: -len(_ALTERNATE)] if name.endswith(_ALTERNATE) else name + _ALTERNATE
                    )
                    self.db.execute(
                        _CREATE_INDEX.sub(f"CREATE INDEX {other} ON {table}{_STAGED}", index_sql, 1)
                    )

    def _swap_staged(self, tables: tuple[str, ...]) -> None:
        """Inside the swap's transaction: the installed tables aside, the staged in place.
        Other tables' foreign keys keep naming the installed table (SQLite would otherwise
        point them at the renamed-aside one); the caller turned `foreign_keys` off."""
        self.db.execute("PRAGMA legacy_alter_table = ON")
        try:
            for table in tables:
                self.db.execute(f"ALTER TABLE {table} RENAME TO {table}{_RETIRED}")
                self.db.execute(f"ALTER TABLE {table}{_STAGED} RENAME TO {table}")
        finally:
            self.db.execute("PRAGMA legacy_alter_table = OFF")

    def _drop_tables(self, tables: tuple[str, ...], suffix: str) -> None:
        """Drop the `suffix` copies of `tables`. DROP TABLE of a million rows holds the
        write lock for seconds: the rows go first, in short transactions of
        _DROP_BATCH, and the empty table is dropped last."""
        for table in tables:
            name = f"{table}{suffix}"
            found = self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]
            ).fetchone()
            if found is None:
                continue
            keys = [row[1] for row in self.db.execute(f"PRAGMA table_info({name})") if row[5]]
            key = ", ".join(keys) if keys else "rowid"
            while True:
                with self._import_transaction():
                    deleted = self.db.execute(
                        f"DELETE FROM {name} WHERE ({key}) IN"
                        f" (SELECT {key} FROM {name} LIMIT {_DROP_BATCH})"
                    ).rowcount
                if deleted < _DROP_BATCH:
                    break
            with self.write_transaction():
                self.db.execute(f"DROP TABLE IF EXISTS {name}")

    def _catalog_rows(self, items: list[CatalogItem], terms: dict[str, int]) -> tuple:
        """The staged tables' rows for a batch of items; each distinct name (a term) is
        keyed once, when first seen."""
        rows: list[tuple] = []
        codes: list[tuple[int, str, str]] = []
        new_terms: list[tuple[int, str, int]] = []
        keys: list[tuple[int, str, int]] = []
        for item in items:
            term = terms.get(item.name)
            if term is None:
                term = terms[item.name] = len(terms) + 1
                new_terms.append((term, item.name, len(item.name) - core_offset(item.name)))
                keys.extend((kind, key, term) for kind, key in name_keys(item.name))
            pinyin, initials = pinyin_keys(item.name)
            rows.append(
                (
                    item.code, item.name, item.spec, item.unit, item.kind, item.item_class,
                    str(item.price), _text(item.payment_standard), _text(item.self_prepay_ratio),
                    item.gender, item.min_age, item.max_age, _text(item.max_qty),
                    json.dumps(item.chronic_only), _text(item.valid_from), _text(item.valid_to),
                    pinyin, initials, _text(item.fund_fixed), term,
                )
            )  # fmt: skip
            codes.append((KEY_CODE, search_key(item.code), item.code))
        return rows, new_terms, codes, keys

    def _insert_catalog_rows(self, prepared: tuple) -> None:
        rows, new_terms, codes, keys = prepared
        try:
            self.db.conn.executemany(
                f"INSERT INTO catalog_item{_STAGED} VALUES ({', '.join('?' * 20)})", rows
            )
        except sqlite3.IntegrityError as error:
            raise StoreError(f"the catalog repeats an item code ({error})") from None
        self.db.conn.executemany(f"INSERT INTO catalog_term{_STAGED} VALUES (?, ?, ?)", new_terms)
        self.db.conn.executemany(
            f"INSERT OR IGNORE INTO catalog_search{_STAGED} VALUES (?, ?, ?)", codes
        )
        self.db.conn.executemany(
            f"INSERT OR IGNORE INTO catalog_key{_STAGED} VALUES (?, ?, ?)", keys
        )

    def search_catalog(self, query: str, limit: int = SEARCH_LIMIT) -> list[SearchHit]:
        """Items found by `query` as a clinic HIS finds them: the clinic's frequent and
        recent picks first, then the county's aliases, codes from their start, names
        (characters, full pinyin, initials) from their start or their core's start (salt
        and form prefixes ignored), then from anywhere inside."""
        key = search_key(query)
        if not key:
            return []
        low, high = prefix_range(key)
        hits, seen = [], set()
        for code, name, spec, unit, item_kind, item_class, price in self._picked(
            "item", key, limit
        ):
            seen.add(code)
            hits.append(SearchHit(code, name, spec, unit, item_kind, item_class, price, "pick"))
        if len(hits) >= limit:
            return hits
        for rank, code, name, spec, unit, item_kind, item_class, price in self.db.execute(
            _SEARCH_SQL, {"low": low, "high": high, "limit": limit}
        ):
            if code not in seen:
                seen.add(code)
                matched, anywhere = _matched(rank)
                hits.append(
                    SearchHit(
                        code, name, spec, unit, item_kind, item_class, price, matched, anywhere
                    )
                )
                if len(hits) == limit:  # the rows come ranked: the rest rank lower
                    break
        return hits[:limit]

    def catalog_items(
        self, codes: Iterable[str], version: str | None = None
    ) -> dict[str, CatalogItem]:
        """The named items that exist, by code (the engine reports the missing ones);
        `version` is the installed catalog version when the caller has just read it.

        Items are immutable within a catalog version, so parsed ones are kept per
        version: the settle path then reads one short row instead of parsing items."""
        wanted = set(codes)
        version = version or self.catalog_version()
        if version != self._items_version or len(self._items) > ITEM_CACHE_SIZE:
            self._items, self._items_version = {}, version
        missing = sorted(code for code in wanted if code not in self._items)
        if missing:
            rows = self.db.execute(
                f"SELECT * FROM catalog_item WHERE code IN ({', '.join('?' * len(missing))})",
                missing,
            )
            columns = [d[0] for d in rows.description]
            for row in rows:
                self._items[row[0]] = _item_from_row(dict(zip(columns, row, strict=True)))
        return {code: self._items[code] for code in wanted if code in self._items}

    # ---- diagnoses -----------------------------------------------------------------

    def load_diagnoses(self, rows: Iterable[tuple[str, str]]) -> int:
        """Install the diagnosis list when the device has none yet; returns how many it holds."""
        with self.write_transaction():
            (present,) = self.db.execute("SELECT count(*) FROM diagnosis").fetchone()
            if present:
                return present
            count = 0
            for code, name in rows:
                pinyin, initials = pinyin_keys(name)
                self.db.execute(
                    "INSERT OR IGNORE INTO diagnosis VALUES (?, ?, ?, ?)",
                    [code, name, pinyin, initials],
                )
                self.db.execute(
                    "INSERT OR IGNORE INTO diagnosis_search VALUES (?, ?, ?)",
                    [KEY_CODE, search_key(code), code],
                )
                self.db.conn.executemany(
                    "INSERT OR IGNORE INTO diagnosis_key VALUES (?, ?, ?)",
                    [(kind, key, code) for kind, key in name_keys(name)],
                )
                count += 1
            self._own_writes += 1  # the picks' rows are read anew
            return count

    def unknown_diagnoses(self, codes: Iterable[str]) -> list[str]:
        """The codes not in the installed diagnosis list, in order; none while the device
        has no list yet (the format check of `visit_from_json` still applies)."""
        wanted = list(dict.fromkeys(codes))
        if not wanted or self.db.execute("SELECT 1 FROM diagnosis LIMIT 1").fetchone() is None:
            return []
        known = {
            code
            for (code,) in self.db.execute(
                f"SELECT code FROM diagnosis WHERE code IN ({', '.join('?' * len(wanted))})",
                wanted,
            )
        }
        return [code for code in wanted if code not in known]

    def search_diagnoses(self, query: str, limit: int = 12) -> list[DiagnosisHit]:
        """Diagnoses found by `query`, ranked as `search_catalog` ranks items (感冒 finds
        急性鼻咽炎[感冒], 上感 the county's alias of 急性上呼吸道感染)."""
        key = search_key(query)
        if not key:
            return []
        low, high = prefix_range(key)
        hits, seen = [], set()
        for code, name in self._picked("diagnosis", key, limit):
            seen.add(code)
            hits.append(DiagnosisHit(code, name, "pick"))
        for rank, code, name in self.db.execute(
            _DIAGNOSIS_SQL, {"low": low, "high": high, "limit": limit}
        ):
            if code not in seen:
                seen.add(code)
                hits.append(DiagnosisHit(code, name, *_matched(rank)))
        return hits[:limit]

    # ---- aliases (the county's list: 上感, 高血压, 糖尿病 …) --------------------------------

    def alias_version(self) -> str | None:
        return self._latest("search_alias_version")

    def import_aliases(
        self, rows: Iterable[tuple[str, str, str]], version: str, source: str, *, now: datetime
    ) -> int:
        """Replace the alias list with a newer version: (list, alias, code) rows, list being
        "item" or "diagnosis". Codes not (or no longer) in the catalog are kept and found
        once they are. Staged and swapped in like the catalog."""
        self._refuse_rollback("alias list", self.alias_version(), version, now)

        def keyed(batch: list[tuple[str, str, str]]) -> list[tuple[str, str, str, str]]:
            keys: list[tuple[str, str, str, str]] = []
            for target, alias, code in batch:
                if target not in ("item", "diagnosis"):
                    raise StoreError(f"alias {alias!r}: unknown list {target!r}")
                keys.extend((target, key, code, alias) for key in alias_keys(alias))
            return keys

        def insert(keys: list[tuple[str, str, str, str]]) -> None:
            self.db.conn.executemany(
                f"INSERT OR IGNORE INTO search_alias{_STAGED} VALUES (?, ?, ?, ?)", keys
            )

        with self._staging(_ALIAS_TABLES):
            count = self._write_in_batches(rows, keyed, insert)

            def swap() -> None:
                self._refuse_rollback("alias list", self.alias_version(), version, now)
                self._swap_staged(_ALIAS_TABLES)
                self.db.execute(
                    "INSERT INTO search_alias_version VALUES (?, ?, ?, ?)",
                    [version, source, count, _installed_at(now)],
                )

            self._commit_staged(swap)
        return count

    # ---- what the clinic settles (frequent and recent first) ---------------------------

    def _count_picks(self, record: dict, day: str) -> None:
        """Inside the settlement's transaction: each code the visit used counts once,
        on top of its earlier count halved every PICK_HALF_LIFE_DAYS days."""
        visit = record.get("body", {}).get("visit") or {}
        wanted = {("item", line["code"]) for line in visit.get("lines", []) if "code" in line}
        wanted |= {("diagnosis", code) for code in visit.get("diagnoses", [])}
        if not wanted:
            return
        today = date.fromisoformat(day)
        rows = []
        for target, code in sorted(wanted):
            found = self.db.execute(
                "SELECT score, last_day FROM search_pick WHERE list = ? AND code = ?",
                [target, code],
            ).fetchone()
            score = _decayed(found[0], found[1], today) if found else 0.0
            rows.append((target, code, score + 1, max(day, found[1]) if found else day))
        self.db.conn.executemany("INSERT OR REPLACE INTO search_pick VALUES (?, ?, ?, ?)", rows)
        self._own_writes += 1

    def _picked(self, target: str, key: str, limit: int) -> list[tuple]:
        """The clinic's picks of `target` that `key` finds, most used (lately) first: the
        rows a hit is made of (code first, name second)."""
        stamp = (self.db.execute("PRAGMA data_version").fetchone()[0], self._own_writes)
        cached = self._picks.get(target)
        if cached is None or cached.stamp != stamp:
            cached = self._picks[target] = self._read_picks(target, stamp)
        return cached.find(key, limit)

    def _read_picks(self, target: str, stamp: tuple[int, int]) -> "_Picks":
        names = (
            "SELECT p.score, p.last_day, i.code, i.name, i.spec, i.unit, i.kind, i.class,"
            " i.price FROM search_pick AS p JOIN catalog_item AS i ON i.code = p.code"
            " WHERE p.list = 'item'"
            if target == "item"
            else "SELECT p.score, p.last_day, d.code, d.name FROM search_pick AS p"
            " JOIN diagnosis AS d ON d.code = p.code WHERE p.list = 'diagnosis'"
        )
        rows = self.db.execute(names).fetchall()
        # decayed to the last day anything was settled: a ranking needs no clock
        latest = date.fromisoformat(max((row[1] for row in rows), default="2000-01-01"))
        ranked = sorted(
            ((_decayed(row[0], row[1], latest), tuple(row[2:])) for row in rows),
            key=lambda entry: (-entry[0], entry[1][0]),
        )[:PICKS_KEPT]
        return _Picks(stamp, ranked)

    def picks(self, target: str = "item") -> list[tuple[str, float]]:
        """(code, score) of the clinic's picks, most used (lately) first."""
        self._picked(target, "", 0)
        return [(row[0], round(score, 3)) for score, row in self._picks[target].ranked]

    # ---- bundles (组套) --------------------------------------------------------------

    def bundles(self) -> list[Bundle]:
        """The county's bundles, then the clinic's own, each by name."""
        rows = self.db.execute(
            "SELECT bundle_id, name, source, lines, diagnoses FROM bundle"
            " ORDER BY source = 'clinic', name"
        )
        return [_bundle_from_row(row) for row in rows]

    def bundle(self, bundle_id: int) -> Bundle | None:
        row = self.db.execute(
            "SELECT bundle_id, name, source, lines, diagnoses FROM bundle WHERE bundle_id = ?",
            [bundle_id],
        ).fetchone()
        return None if row is None else _bundle_from_row(row)

    def save_bundle(
        self,
        name: str,
        lines: Iterable[tuple[str, str]],
        diagnoses: Iterable[str] = (),
        *,
        created_by: str | None,
        now: datetime,
        source: str = "clinic",
    ) -> int:
        """Save a bundle under `name`; a clinic bundle of that name gets the new lines
        (and keeps its id), a county one is not touched. Returns its id."""
        name = " ".join(name.split())
        lines = [(str(code), str(quantity)) for code, quantity in lines]
        if not name or len(name) > BUNDLE_NAME_MAX:
            raise StoreError(f"a bundle needs a name of 1 to {BUNDLE_NAME_MAX} characters")
        if not lines:
            raise StoreError("a bundle needs at least one line")
        with self.write_transaction():
            found = self.db.execute(
                "SELECT bundle_id, source FROM bundle WHERE name = ?", [name]
            ).fetchone()
            if found is not None and found[1] != source:
                raise StoreError(f"the county's bundle {name!r} cannot be replaced here")
            values = [
                json.dumps([{"code": c, "quantity": q} for c, q in lines], ensure_ascii=False),
                json.dumps(list(diagnoses), ensure_ascii=False),
                created_by,
                _installed_at(now),
            ]
            if found is not None:  # the same bundle, its lines replaced
                self.db.execute(
                    "UPDATE bundle SET lines = ?, diagnoses = ?, created_by = ?, created_at = ?"
                    " WHERE bundle_id = ?",
                    [*values, found[0]],
                )
                return int(found[0])
            cursor = self.db.execute(
                "INSERT INTO bundle (name, source, lines, diagnoses, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [name, source, *values],
            )
            return int(cursor.lastrowid or 0)

    def delete_bundle(self, bundle_id: int) -> bool:
        """Delete one of the clinic's own bundles; False when there is none by that id."""
        with self.write_transaction():
            cursor = self.db.execute(
                "DELETE FROM bundle WHERE bundle_id = ? AND source = 'clinic'", [bundle_id]
            )
            return cursor.rowcount > 0

    def install_county_bundles(self, bundles: Iterable[dict], *, now: datetime) -> int:
        """Replace the county's bundles: {"name", "lines": [{"code", "quantity"}],
        "diagnoses": [code]} each. The clinic's own are kept."""
        with self.write_transaction():
            self.db.execute("DELETE FROM bundle WHERE source = 'county'")
            count = 0
            for entry in bundles:
                self.db.execute("DELETE FROM bundle WHERE name = ?", [entry["name"]])
                self.save_bundle(
                    entry["name"],
                    [(line["code"], line["quantity"]) for line in entry["lines"]],
                    entry.get("diagnoses", ()),
                    created_by=None,
                    now=now,
                    source="county",
                )
                count += 1
            return count

    # ---- policy ----------------------------------------------------------------------

    def policy_version(self) -> str | None:
        return self._latest("policy_version")

    def import_policy(self, document: dict, *, now: datetime) -> Policy:
        policy = policy_from_json(document)
        with self.write_transaction():
            self._refuse_rollback("policy", self.policy_version(), policy.version, now)
            self.db.execute(
                "INSERT INTO policy_version VALUES (?, ?, ?)",
                [
                    policy.version,
                    json.dumps(document, ensure_ascii=False, sort_keys=True),
                    _installed_at(now),
                ],
            )
        return policy

    def current_policy(self) -> Policy:
        version = self.policy_version()
        if version is None:
            raise StoreError("no policy installed: import the county's policy first")
        if self._policy is None or self._policy.version != version:
            (document,) = self.db.execute(
                "SELECT document FROM policy_version WHERE version = ?", [version]
            ).fetchone()
            self._policy = policy_from_json(json.loads(document))
        return self._policy

    # ---- roster ----------------------------------------------------------------------

    def roster_version(self) -> str | None:
        return self._latest("roster_version")

    def import_roster(self, document: dict, *, now: datetime) -> int:
        """Install a roster version: persons are upserted, accumulators it carries are set.

        A delta (up to _IMPORT_BATCH persons) goes in in one short transaction. A larger
        roster is staged like the catalog: the installed persons are copied to
        `person_staged` and the roster upserted there in short transactions, then one
        transaction swaps the tables. Balances settlements changed meanwhile are carried
        over (a trigger notes whose); for a person the roster lists, the roster's balance
        stands, as if the settlement had come just before the import, unless the county
        computed it (`account_as_of`): then what this terminal's later records moved is
        applied on top (`_apply_own_account_movements`). The roster's
        accumulator figures only ever raise a figure (max), so they are merged after the
        swap in short transactions, from a table a crash leaves for the next import."""
        version, persons = roster_from_json(document)
        self._refuse_rollback("roster", self.roster_version(), version, now)
        self.merge_pending_roster_figures()  # a crash after an earlier swap left them
        if len(persons) <= _IMPORT_BATCH:
            with self.write_transaction():
                self._refuse_rollback("roster", self.roster_version(), version, now)
                for entry in persons:
                    self.db.execute(_UPSERT_PERSON.format(table="person"), _person_row(entry))
                    for kind, params in _figure_rows(entry):
                        self.db.execute(_MERGE_FIGURE[kind], params)
                self._apply_own_account_movements(persons)
                self.db.execute(
                    "INSERT INTO roster_version VALUES (?, ?, ?)",
                    [version, len(persons), _installed_at(now)],
                )
            return len(persons)
        with self._staging(_ROSTER_TABLES, _ROSTER_SCRATCH):
            with self.write_transaction():
                self.db.execute(_NOTE_BALANCES)
            (last,) = self.db.execute("SELECT coalesce(max(rowid), 0) FROM person").fetchone()
            self._write_in_batches(
                range(1, last + 1),
                lambda batch: (batch[0], batch[-1]),
                lambda bounds: self.db.execute(
                    f"INSERT INTO person{_STAGED} SELECT * FROM person WHERE rowid BETWEEN ? AND ?",
                    bounds,
                ),
            )
            self._write_in_batches(persons, _roster_rows, self._insert_roster_rows)

            def swap() -> None:
                self._refuse_rollback("roster", self.roster_version(), version, now)
                self.db.execute(f"DROP TRIGGER person_balance{_STAGED}")
                self.db.execute(
                    f"UPDATE person{_STAGED} SET account_balance = (SELECT account_balance"
                    f" FROM person WHERE person.insured_id = person{_STAGED}.insured_id)"
                    f" WHERE insured_id IN (SELECT insured_id FROM balance_noted{_STAGED})"
                    f" AND insured_id NOT IN (SELECT insured_id FROM roster_id{_STAGED})"
                )
                self._swap_staged(_ROSTER_TABLES)
                self._apply_own_account_movements(persons)
                self.db.execute(f"ALTER TABLE roster_figure{_STAGED} RENAME TO roster_figure")
                self.db.execute(
                    "INSERT INTO roster_version VALUES (?, ?, ?)",
                    [version, len(persons), _installed_at(now)],
                )

            self._commit_staged(swap)
            self._drop_tables(("balance_noted", "roster_id"), _STAGED)
        self.merge_pending_roster_figures()
        return len(persons)

    def _apply_own_account_movements(self, persons: list[InsuredPerson]) -> None:
        """For each person whose balance the county computed (`account_as_of`), apply on top
        what this terminal's records after the seq it names for this terminal moved
        (`account_movement`): a visit paid from the account offline, not yet counted by
        the county, must not give the money back. Never below zero (as the county's)."""
        device = self.device()
        device_id = device.device_id if device else ""
        moved = []
        for entry in persons:
            if entry.account_as_of is not None:
                (amount,) = self.db.execute(
                    "SELECT coalesce(sum(amount), 0) FROM account_movement"
                    " WHERE insured_id = ? AND seq > ?",
                    [entry.insured_id, entry.account_as_of.get(device_id, 0)],
                ).fetchone()
                if amount:
                    moved.append((amount, entry.insured_id))
        self.db.conn.executemany(
            "UPDATE person SET account_balance = max(0, account_balance + ?) WHERE insured_id = ?",
            moved,
        )

    def _insert_roster_rows(self, prepared: tuple[list[list], list[tuple[str, str]]]) -> None:
        persons, figures = prepared
        self.db.conn.executemany(_UPSERT_PERSON.format(table=f"person{_STAGED}"), persons)
        self.db.conn.executemany(
            f"INSERT INTO roster_id{_STAGED} VALUES (?)", [[row[0]] for row in persons]
        )
        self.db.conn.executemany(f"INSERT INTO roster_figure{_STAGED} VALUES (?, ?)", figures)

    def merge_pending_roster_figures(self) -> None:
        """Merge the accumulator figures of a swapped-in roster, in short transactions;
        each batch's rows are deleted with it, so a crash merges the rest next time."""
        found = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'roster_figure'"
        ).fetchone()
        if found is None:
            return
        while True:
            with self._import_transaction():
                rows = self.db.execute(
                    f"SELECT rowid, kind, params FROM roster_figure ORDER BY rowid"
                    f" LIMIT {_IMPORT_BATCH}"
                ).fetchall()
                for _rowid, kind, params in rows:
                    self.db.execute(_MERGE_FIGURE[kind], json.loads(params))
                if rows:
                    self.db.execute("DELETE FROM roster_figure WHERE rowid <= ?", [rows[-1][0]])
                else:
                    self.db.execute("DROP TABLE roster_figure")
                    return

    def insured_person(
        self, insured_id: str, with_accumulators: bool = True
    ) -> InsuredPerson | None:
        """A roster entry; `with_accumulators=False` skips reading every year's figures."""
        row = self.db.execute(
            "SELECT insured_id, card_no, name, id_number_masked, region, card_expiry,"
            " insurance_type, gender, birth_date, status, waiting_until, categories,"
            " chronic_certs, account_balance, family_account_holders FROM person"
            " WHERE insured_id = ?",
            [insured_id],
        ).fetchone()
        if row is None:
            return None
        entry = _entry_from_row(row)
        if with_accumulators:
            return dataclasses.replace(entry, accumulators=self._all_accumulators(insured_id))
        return entry

    def accumulators(
        self, insured_id: str, on: date, visit_type: str, family_holder: str | None = None
    ) -> Accumulators:
        """What a visit on `on` reads: the year so far for its visit type, the year-wide
        figures, the fund paid that day for the visit type, and the balance of
        `family_holder`'s personal account (0 without one)."""
        year = on.year
        row = self.db.execute(
            "SELECT coalesce(a.deductible_used, 0), coalesce(a.fund_paid, 0),"
            " coalesce((SELECT assistance_paid FROM assistance_accumulator"
            "   WHERE insured_id = :id AND year = :year), 0),"
            " coalesce((SELECT fund_paid FROM day_accumulator"
            "   WHERE insured_id = :id AND day = :day AND visit_type = :visit_type), 0),"
            " coalesce((SELECT account_balance FROM person WHERE insured_id = :holder), 0)"
            " FROM (SELECT 1) LEFT JOIN accumulator AS a"
            " ON a.insured_id = :id AND a.year = :year AND a.visit_type = :visit_type",
            {"id": insured_id, "year": year, "visit_type": visit_type,
             "day": on.isoformat(), "holder": family_holder},
        ).fetchone()  # fmt: skip
        deductible_used, fund_paid, assistance_paid, day_fund_paid, family_balance = row
        figures = dict(
            self.db.execute(
                "SELECT name, amount FROM year_accumulator WHERE insured_id = ? AND year = ?",
                [insured_id, year],
            ).fetchall()
        )
        return Accumulators(
            deductible_used, fund_paid, assistance_paid, day_fund_paid,
            ci_selfpay=figures.pop("ci_selfpay", 0),
            ci_paid=figures.pop("ci_paid", 0),
            supplements_paid=_supplements(figures),
            family_account_balance=family_balance,
        )  # fmt: skip

    def _all_accumulators(self, insured_id: str) -> dict[tuple[int, str], Accumulators]:
        result = {}
        for year, visit_type, deductible_used, fund_paid in self.db.execute(
            "SELECT year, visit_type, deductible_used, fund_paid FROM accumulator"
            " WHERE insured_id = ? ORDER BY year, visit_type",
            [insured_id],
        ):
            result[(year, visit_type)] = Accumulators(deductible_used, fund_paid)
        years = {
            year: {"assistance_paid": assistance_paid}
            for year, assistance_paid in self.db.execute(
                "SELECT year, assistance_paid FROM assistance_accumulator WHERE insured_id = ?",
                [insured_id],
            )
        }
        for year, name, amount in self.db.execute(
            "SELECT year, name, amount FROM year_accumulator WHERE insured_id = ?", [insured_id]
        ):
            years.setdefault(year, {})[name] = amount
        for year, figures in years.items():
            result[(year, YEAR_WIDE)] = Accumulators(
                assistance_paid=figures.pop("assistance_paid", 0),
                ci_selfpay=figures.pop("ci_selfpay", 0),
                ci_paid=figures.pop("ci_paid", 0),
                supplements_paid=_supplements(figures),
            )
        return result

    # ---- device, operators --------------------------------------------------------------

    def device(self) -> DeviceRow | None:
        row = self.db.execute(
            "SELECT device_id, public_key, created_at, last_sync_at, synced_seq,"
            " coalesce((SELECT fund_total FROM ledger ORDER BY seq DESC LIMIT 1)"
            "  - coalesce((SELECT fund_total FROM ledger WHERE seq = synced_seq), 0), 0),"
            " clock_behind_since FROM device"
        ).fetchone()
        return None if row is None else DeviceRow(*row)

    def create_device(self, device_id: str, public_key: str, created_at: str) -> None:
        with self.write_transaction():
            if self.device() is not None:
                raise StoreError("this data directory already has a device identity")
            self.db.execute(
                "INSERT INTO device (id, device_id, public_key, created_at) VALUES (1, ?, ?, ?)",
                [device_id, public_key, created_at],
            )

    def set_clock_behind_since(self, created_at: str | None) -> None:
        self.db.execute("UPDATE device SET clock_behind_since = ?", [created_at])

    def add_operator(self, operator_id: str, name: str, role: str) -> None:
        with self.write_transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO operator (operator_id, name, role) VALUES (?, ?, ?)",
                [operator_id, name, role],
            )

    def active_operator(self, operator_id: str) -> tuple[str, str] | None:
        """(name, role) of an operator who may work, else None."""
        return self.db.execute(
            "SELECT name, role FROM operator WHERE operator_id = ? AND active = 1", [operator_id]
        ).fetchone()

    # ---- ledger --------------------------------------------------------------------------

    def ledger_head(self) -> LedgerHead | None:
        """The last record, read from its signed content: the next record chains onto it,
        so an index column edited behind the device's back stops settlement instead."""
        row = self.db.execute("SELECT seq, record FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return None
        if self._trusted_head is not None and self._trusted_head[:2] == row:
            record = self._trusted_head[2]  # the row this connection wrote or checked last
            return LedgerHead(record["seq"], record["hash"], record["created_at"])
        record = json.loads(row[1])
        if record.get("seq") != row[0] or record.get("hash") != record_hash(record):
            raise StoreError(
                f"the ledger's last record (seq {row[0]}) does not match its content: settlement"
                " is stopped; run 'clinic ledger verify' and call the county"
            )
        self._trusted_head = (row[0], row[1], record)
        return LedgerHead(record["seq"], record["hash"], record["created_at"])

    def append_record(
        self, record: dict, *, day: str, insured_id: str | None = None,
        fund: int | None = None, reverses: str | None = None, text: str | None = None,
    ) -> None:  # fmt: skip
        """Add a sealed record and queue it for upload (inside `write_transaction`);
        `text` is its JSON when the caller already has it."""
        if text is None:
            text = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        signed_fund = {"settlement": fund or 0, "reversal": -(fund or 0)}.get(record["kind"], 0)
        self.db.execute(
            "INSERT INTO ledger (seq, kind, tx_id, created_at, day, insured_id, fund, reverses,"
            " record, fund_total) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " coalesce((SELECT fund_total FROM ledger ORDER BY seq DESC LIMIT 1), 0) + ?)",
            [
                record["seq"], record["kind"], record["tx_id"], record["created_at"], day,
                insured_id, fund, reverses, text, signed_fund,
            ],
        )  # fmt: skip
        self._trusted_head = (record["seq"], text, record)
        self.db.execute("INSERT INTO outbox VALUES (?, ?)", [record["seq"], record["created_at"]])
        index_account_movements(self.db.conn, record)
        if record["kind"] == "settlement":
            self._count_picks(record, day)
        elif record["kind"] in ("premium", "premium_reversal"):
            index_premium_record(self.db.conn, record, day)
        elif record["kind"] == "service_request":
            index_request_record(self.db.conn, record)

    def records(self, after_seq: int = 0) -> Iterator[dict]:
        """Stored records in `seq` order, as stored (not verified)."""
        for (text,) in self.db.execute(
            "SELECT record FROM ledger WHERE seq > ? ORDER BY seq", [after_seq]
        ):
            yield json.loads(text)

    def records_between_days(self, first: str, last: str) -> list[dict]:
        """The records appended on China-time days `first` to `last` (YYYY-MM-DD), in seq
        order."""
        return [
            json.loads(text)
            for (text,) in self.db.execute(
                "SELECT record FROM ledger WHERE day BETWEEN ? AND ? ORDER BY seq", [first, last]
            )
        ]

    def save_statement_check(
        self, month: str, comparison: dict, statement: dict, checked_at: str,
        reported_at: str | None,
    ) -> None:  # fmt: skip
        """Keep the latest check of `month`'s clearing statement (one row per month)."""
        with self.write_transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO statement_check (month, revision, agrees, comparison,"
                " statement, checked_at, reported_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [month, comparison["revision"], int(comparison["agrees"]),
                 json.dumps(comparison, ensure_ascii=False),
                 json.dumps(statement, ensure_ascii=False), checked_at, reported_at],
            )  # fmt: skip

    def statement_check(self, month: str) -> dict | None:
        """The latest check of `month`'s statement: {comparison, statement, checked_at,
        reported_at}, or None."""
        row = self.db.execute(
            "SELECT comparison, statement, checked_at, reported_at FROM statement_check"
            " WHERE month = ?",
            [month],
        ).fetchone()
        if row is None:
            return None
        return {"comparison": json.loads(row[0]), "statement": json.loads(row[1]),
                "checked_at": row[2], "reported_at": row[3]}  # fmt: skip

    # ---- the service point's requests (docs/service-point.md) -----------------------------

    def county_encryption_key(self) -> str | None:
        """The county's X25519 public key (base64url) the agent pinned, or None."""
        row = self.db.execute("SELECT county_encryption_key FROM sync_enrollment").fetchone()
        return None if row is None else row[0]

    _REQUEST_COLUMNS = (
        "r.tx_id, r.seq, r.kind, r.created_at, r.insured_id, r.name, r.follow_up_of,"
        " r.seq <= (SELECT synced_seq FROM device), d.outcome, d.reason, d.result, d.serial,"
        " d.decided_at"
    )
    _REQUEST_FROM = (
        " FROM service_request r LEFT JOIN request_decision d ON d.serial ="
        " (SELECT max(serial) FROM request_decision WHERE request_tx_id = r.tx_id)"
    )

    def request_rows(
        self, *, kind: str | None = None, state: str | None = None, limit: int = 200,
        tx_id: str | None = None, seq: int | None = None,
    ) -> list[dict]:  # fmt: skip
        """Indexed requests, newest first, with their state: `pending` until the hub holds
        the record, `submitted` then, and the latest decision's outcome once one came."""
        state_sql = (
            "CASE WHEN d.outcome IS NOT NULL THEN d.outcome"
            " WHEN r.seq <= (SELECT synced_seq FROM device) THEN 'submitted' ELSE 'pending' END"
        )
        where: list[str] = []
        args: list[object] = []
        if tx_id is not None:
            where.append("r.tx_id = ?")
            args.append(tx_id)
        if seq is not None:
            where.append("r.seq = ?")
            args.append(seq)
        if kind is not None:
            where.append("r.kind = ?")
            args.append(kind)
        if state is not None:
            where.append(f"{state_sql} = ?")
            args.append(state)
        sql = (
            f"SELECT {self._REQUEST_COLUMNS}, {state_sql}{self._REQUEST_FROM}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY r.seq DESC LIMIT ?"
        )
        rows = self.db.execute(sql, [*args, limit]).fetchall()
        names = (
            "tx_id", "seq", "kind", "created_at", "insured_id", "name", "follow_up_of",
            "uploaded", "outcome", "reason", "result", "serial", "decided_at", "state",
        )  # fmt: skip
        found = []
        for row in rows:
            item = dict(zip(names, row, strict=True))
            item["uploaded"] = bool(item["uploaded"])
            item["result"] = None if item["result"] is None else json.loads(item["result"])
            found.append(item)
        return found

    def request_attachments(self, tx_id: str) -> list[dict]:
        rows = self.db.execute(
            "SELECT sha256, content_type, bytes, label, uploaded_at, missing_at"
            " FROM request_attachment WHERE request_tx_id = ? ORDER BY rowid",
            [tx_id],
        )
        names = ("sha256", "type", "bytes", "label", "uploaded_at", "missing_at")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def request_follow_ups(self, tx_id: str) -> list[str]:
        rows = self.db.execute(
            "SELECT tx_id FROM service_request WHERE follow_up_of = ? ORDER BY seq", [tx_id]
        )
        return [row[0] for row in rows]

    def attachment_named(self, sha256: str) -> bool:
        """Whether a stored request names the photo (its file must then stay)."""
        row = self.db.execute(
            "SELECT 1 FROM request_attachment WHERE sha256 = ? LIMIT 1", [sha256]
        ).fetchone()
        return row is not None

    def attachments_to_upload(self, limit: int) -> list[tuple[str, str]]:
        """(sha256, content type) of photos the hub does not have yet, of requests whose
        record it already holds (it refuses a photo no stored request names)."""
        rows = self.db.execute(
            "SELECT a.sha256, min(a.content_type) FROM request_attachment a"
            " JOIN service_request r ON r.tx_id = a.request_tx_id"
            " WHERE a.uploaded_at IS NULL AND a.missing_at IS NULL"
            " AND r.seq <= (SELECT synced_seq FROM device)"
            " GROUP BY a.sha256 ORDER BY min(r.seq), a.sha256 LIMIT ?",
            [limit],
        )
        return [(row[0], row[1]) for row in rows]

    def mark_attachment_uploaded(self, sha256: str, at: str) -> None:
        with self.write_transaction():
            self.db.execute(
                "UPDATE request_attachment SET uploaded_at = ? WHERE sha256 = ?"
                " AND uploaded_at IS NULL",
                [at, sha256],
            )

    def mark_attachment_missing(self, sha256: str, at: str) -> None:
        """The photo's file is gone or damaged: the agent stops trying to send it."""
        with self.write_transaction():
            self.db.execute(
                "UPDATE request_attachment SET missing_at = ? WHERE sha256 = ?"
                " AND uploaded_at IS NULL AND missing_at IS NULL",
                [at, sha256],
            )

    def attachments_set_aside(self) -> list[tuple[str, str | None]]:
        """(sha256, the refusal's code) of the photos the agent stopped trying to send,
        oldest first: gone or damaged here, or refused by the hub for good."""
        rows = self.db.execute(
            "SELECT a.sha256, (SELECT code FROM sync_refusal WHERE kind = 'attachment'"
            " AND version = a.sha256 ORDER BY refusal_id DESC LIMIT 1)"
            " FROM request_attachment a WHERE a.missing_at IS NOT NULL AND a.uploaded_at IS NULL"
            " GROUP BY a.sha256 ORDER BY min(a.missing_at), a.sha256"
        )
        return [(row[0], row[1]) for row in rows]

    def decision(self, serial: int) -> dict | None:
        row = self.db.execute(
            "SELECT document FROM request_decision WHERE serial = ?", [serial]
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def request_decisions(self, tx_id: str) -> list[dict]:
        """The signed decisions received for a request, oldest first."""
        rows = self.db.execute(
            "SELECT document, received_at FROM request_decision WHERE request_tx_id = ?"
            " ORDER BY serial",
            [tx_id],
        )
        return [{**json.loads(document), "received_at": at} for document, at in rows]

    def save_decision(self, document: dict, received_at: str) -> None:
        """Keep a verified decision (inside `write_transaction`)."""
        decision = document["decision"]
        result = decision.get("result")
        self.db.execute(
            "INSERT INTO request_decision (serial, request_tx_id, outcome, reason, result,"
            " decided_by, decided_at, received_at, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [decision["serial"], decision["request_tx_id"], decision["outcome"],
             decision.get("reason"), None if result is None else json.dumps(result,
             ensure_ascii=False), decision["decided_by"], decision["decided_at"], received_at,
             json.dumps(document, ensure_ascii=False, sort_keys=True)],
        )  # fmt: skip

    def last_decision_serial(self) -> int:
        return self.db.execute("SELECT coalesce(max(serial), 0) FROM request_decision").fetchone()[
            0
        ]

    def records_of_kind(self, kind: str) -> list[dict]:
        return [
            json.loads(text)
            for (text,) in self.db.execute(
                "SELECT record FROM ledger WHERE kind = ? ORDER BY seq", [kind]
            )
        ]

    def record_by_tx(self, tx_id: str) -> dict | None:
        row = self.db.execute("SELECT record FROM ledger WHERE tx_id = ?", [tx_id]).fetchone()
        return None if row is None else json.loads(row[0])

    def reversal_of(self, tx_id: str) -> int | None:
        """The seq of the reversal of `tx_id`, by its index column or its signed body."""
        row = self.db.execute(
            "SELECT seq FROM ledger WHERE reverses = ?"
            " OR (kind = 'reversal' AND json_extract(record, '$.body.reverses') = ?)",
            [tx_id, tx_id],
        ).fetchone()
        return None if row is None else row[0]

    def last_seq_of_kind(self, kind: str) -> int:
        row = self.db.execute("SELECT max(seq) FROM ledger WHERE kind = ?", [kind]).fetchone()
        return row[0] or 0

    def settlements_on(self, insured_id: str, day: str) -> int:
        row = self.db.execute(
            "SELECT count(*) FROM ledger WHERE insured_id = ? AND day = ? AND kind = 'settlement'",
            [insured_id, day],
        ).fetchone()
        return row[0]

    def revoked_since(self) -> str | None:
        """When the sync agent first heard the county hub say this device (or its slot) is
        revoked, None when it is not: the agent's `sync_job` row "revocation"
        (`sync.agent.state.record_revoked`), cleared when the hub accepts the device again."""
        row = self.db.execute(
            "SELECT last_attempt_at FROM sync_job"
            " WHERE job = 'revocation' AND last_error_code IS NOT NULL"
        ).fetchone()
        return None if row is None else row[0]

    # ---- premiums (参保缴费), indexed from their records by `append_record` ----------------

    def premium_paid(self, insured_id: str, year: int) -> str | None:
        """The tx_id of a premium for `insured_id`'s `year` that no reversal cancelled."""
        row = self.db.execute(
            "SELECT p.tx_id FROM premium_person AS pp JOIN premium AS p USING (tx_id)"
            " WHERE pp.insured_id = ? AND pp.year = ? AND p.reversed_by IS NULL"
            " ORDER BY p.seq LIMIT 1",
            [insured_id, year],
        ).fetchone()
        return None if row is None else row[0]

    def premium_rows(
        self, *, year: int | None = None, day: str | None = None, tx_id: str | None = None,
        limit: int = 200,
    ) -> list[dict]:  # fmt: skip
        """Premiums collected, newest first: of `year` (the insurance year paid for), of
        the China-time `day` they were collected on, or the one `tx_id`."""
        where, params = [], []
        for column, value in (("year", year), ("day", day), ("tx_id", tx_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = (
            "SELECT tx_id, seq, year, created_at, day, payer_name, method, reference,"
            " account_holder, amount, state_paid, persons, reversed_by, reversal_seq"
            " FROM premium"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY seq DESC LIMIT ?"
        )
        columns = ("tx_id", "seq", "year", "created_at", "day", "payer_name", "method",
                   "reference", "account_holder", "amount", "state_paid", "persons",
                   "reversed_by", "reversal_seq")  # fmt: skip
        rows = []
        for values in self.db.execute(sql, [*params, limit]):
            row = dict(zip(columns, values, strict=True))
            row["persons"] = json.loads(row["persons"])
            rows.append(row)
        return rows

    def set_account_balance(self, insured_id: str, balance: int) -> None:
        """A personal account's balance after a premium paid from it (家庭共济) or given
        back; the roster's next import treats it as a settlement's change."""
        self.db.execute(
            "UPDATE person SET account_balance = ? WHERE insured_id = ?", [balance, insured_id]
        )

    def outbox_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def set_accumulators(
        self, insured_id: str, on: date, visit_type: str, figures: Mapping[str, Any],
        *, before: Mapping[str, Any] | None = None, family_holder: str | None = None,
    ) -> None:  # fmt: skip
        """Write one person's accumulators after a settlement or reversal on a visit of
        `on`: `figures` has every member of `records.ACCUMULATOR_FIELDS`, the family
        account's balance being `family_holder`'s. With `before` (the same figures as
        they were), unchanged rows are not rewritten, so the commit writes fewer pages."""

        def changed(*names: str) -> bool:
            return before is None or any(figures[n] != before[n] for n in names)

        year = on.year
        if changed("deductible_used", "fund_paid"):
            self.db.execute(
                "INSERT INTO accumulator VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                " deductible_used = excluded.deductible_used, fund_paid = excluded.fund_paid",
                [insured_id, year, visit_type, figures["deductible_used"], figures["fund_paid"]],
            )
        if changed("assistance_paid"):
            self.db.execute(
                "INSERT INTO assistance_accumulator VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET"
                " assistance_paid = excluded.assistance_paid",
                [insured_id, year, figures["assistance_paid"]],
            )
        if changed("day_fund_paid"):
            self.db.execute(
                "INSERT INTO day_accumulator VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                " fund_paid = excluded.fund_paid",
                [insured_id, on.isoformat(), visit_type, figures["day_fund_paid"]],
            )
        if changed("ci_selfpay", "ci_paid", "supplements_paid"):
            self.db.conn.executemany(
                "INSERT INTO year_accumulator VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                " amount = excluded.amount",
                [
                    (insured_id, year, name, amount)
                    for name, amount in _year_figures(
                        Accumulators(
                            ci_selfpay=figures["ci_selfpay"], ci_paid=figures["ci_paid"],
                            supplements_paid=figures["supplements_paid"],
                        )
                    ).items()
                ],
            )  # fmt: skip
        if changed("account_balance"):
            self.db.execute(
                "UPDATE person SET account_balance = ? WHERE insured_id = ?",
                [figures["account_balance"], insured_id],
            )
        if family_holder is not None and changed("family_account_balance"):
            self.db.execute(
                "UPDATE person SET account_balance = ? WHERE insured_id = ?",
                [figures["family_account_balance"], family_holder],
            )

    # ---- shared ------------------------------------------------------------------------

    def _latest(self, table: str) -> str | None:
        row = self.db.execute(f"SELECT version FROM {table} ORDER BY rowid DESC LIMIT 1").fetchone()
        return row[0] if row else None

    @staticmethod
    def _refuse_rollback(what: str, installed: str | None, offered: str, now: datetime) -> None:
        problem = version_problem(offered, now.date())
        if problem is not None:
            raise StoreError(f"{what} {problem}")
        if installed is not None and not supersedes(offered, installed, now.date()):
            raise StoreError(
                f"{what} version {offered} is not newer than the installed {installed};"
                " refusing to roll back"
            )


def _decayed(score: float, last_day: str, today: date) -> float:
    days = max(0, (today - date.fromisoformat(last_day)).days)
    return score * 0.5 ** (days / PICK_HALF_LIFE_DAYS)


def _bundle_from_row(row: tuple) -> Bundle:
    bundle_id, name, source, lines, diagnoses = row
    return Bundle(
        bundle_id,
        name,
        source,
        tuple((line["code"], line["quantity"]) for line in json.loads(lines)),
        tuple(json.loads(diagnoses)),
    )


def _installed_at(now: datetime) -> str:
    """UTC as `YYYY-MM-DD HH:MM:SS`, the form the version tables have always held."""
    return now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


_NO_ACCUMULATORS: Mapping = MappingProxyType({})  # shared by cached entries: read-only
_SUPPLEMENT = "supplement:"  # year_accumulator names of supplements' payments


def _supplements(figures: Mapping[str, int]) -> dict[str, int]:
    """Each supplement's year so far from year_accumulator rows (the critical-illness ones
    taken out); one that paid nothing (a reversal took it back) is as if absent."""
    return {name.removeprefix(_SUPPLEMENT): paid for name, paid in figures.items() if paid}


def _year_figures(values: Accumulators) -> dict[str, int]:
    """The year_accumulator rows of a year's critical-illness and supplement figures."""
    return {
        "ci_selfpay": values.ci_selfpay,
        "ci_paid": values.ci_paid,
        **{_SUPPLEMENT + name: paid for name, paid in values.supplements_paid.items()},
    }


def _person_row(entry: InsuredPerson) -> list:
    """The `person` row of a roster entry (the order of `_UPSERT_PERSON`)."""
    p = entry.person
    return [
        entry.insured_id, entry.card_no, entry.name, entry.id_number_masked,
        entry.region, _text(entry.card_expiry), p.insurance_type, p.gender,
        p.birth_date.isoformat(), p.status, _text(p.waiting_until),
        json.dumps([_category_to_json(c) for c in p.categories]),
        json.dumps([_cert_to_json(c) for c in p.chronic_certs]),
        p.account_balance, json.dumps(entry.family_account_holders),
    ]  # fmt: skip


def _figure_rows(entry: InsuredPerson) -> list[tuple[str, list]]:
    """The accumulator figures a roster entry carries: (`_MERGE_FIGURE` kind, params)."""
    rows: list[tuple[str, list]] = []
    for (year, scope), values in entry.accumulators.items():
        if scope == YEAR_WIDE:
            rows.append(("assistance", [entry.insured_id, year, values.assistance_paid]))
            rows.extend(
                ("year", [entry.insured_id, year, name, amount])
                for name, amount in _year_figures(values).items()
            )
        else:
            rows.append(
                ("scope", [entry.insured_id, year, scope, values.deductible_used, values.fund_paid])
            )
    return rows


def _roster_rows(batch: list[InsuredPerson]) -> tuple[list[list], list[tuple[str, str]]]:
    """A batch of roster entries as staged rows: persons, and figures as JSON."""
    figures = [
        (kind, json.dumps(params)) for entry in batch for kind, params in _figure_rows(entry)
    ]
    return [_person_row(entry) for entry in batch], figures


@functools.lru_cache(maxsize=PERSON_CACHE_SIZE)
def _entry_from_row(row: tuple) -> InsuredPerson:
    """A `person` row as a roster entry without accumulators. Entries are immutable and
    depend on nothing but the row, so each distinct row is parsed once: the settle path
    reads the same few persons again and again."""
    (insured_id, card_no, name, id_number_masked, region, card_expiry, insurance_type,
     gender, birth_date, status, waiting_until, categories, chronic_certs,
     account_balance, family_account_holders) = row  # fmt: skip
    return InsuredPerson(
        insured_id=insured_id,
        card_no=card_no,
        name=name,
        id_number_masked=id_number_masked,
        region=region,
        card_expiry=_date(card_expiry),
        person=Person(
            insurance_type=insurance_type,
            gender=gender,
            birth_date=date.fromisoformat(birth_date),
            status=status,
            waiting_until=_date(waiting_until),
            categories=tuple(category_from_json(c, "categories") for c in json.loads(categories)),
            chronic_certs=tuple(
                chronic_cert_from_json(c, "chronic_certs") for c in json.loads(chronic_certs)
            ),
            account_balance=account_balance,
        ),
        accumulators=_NO_ACCUMULATORS,
        family_account_holders=tuple(json.loads(family_account_holders)),
    )


def _category_to_json(category: Category) -> str | dict:
    if category.valid_from is None and category.valid_to is None:
        return category.name
    return {
        "name": category.name,
        "valid_from": _text(category.valid_from),
        "valid_to": _text(category.valid_to),
    }


def _cert_to_json(cert: ChronicCert) -> dict:
    return {
        "disease_code": cert.disease_code,
        "valid_from": _text(cert.valid_from),
        "valid_to": _text(cert.valid_to),
    }


def _item_from_row(row: dict) -> CatalogItem:
    return CatalogItem(
        code=row["code"],
        name=row["name"],
        kind=row["kind"],
        item_class=row["class"],
        price=Decimal(row["price"]),
        payment_standard=_decimal(row["payment_standard"]),
        self_prepay_ratio=_decimal(row["self_prepay_ratio"]),
        gender=row["gender"],
        min_age=row["min_age"],
        max_age=row["max_age"],
        max_qty=_decimal(row["max_qty"]),
        chronic_only=tuple(json.loads(row["chronic_only"])),
        valid_from=_date(row["valid_from"]),
        valid_to=_date(row["valid_to"]),
        spec=row["spec"],
        unit=row["unit"],
        fund_fixed=_decimal(row["fund_fixed"]),
    )


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
