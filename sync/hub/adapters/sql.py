"""The SQL both hub stores run, written once: `SqlHubStore` implements `HubStore` on a
connection that takes `?` placeholders and a `Dialect`, the little that SQLite and
PostgreSQL spell differently, as data.

`SqliteHubStore` (`sqlite.py`) and `PgHubStore` (`postgresql.py`) add how they open and
migrate their database, run a unit of work, and PostgreSQL's locks between processes.
Documents are stored as canonical JSON text (`sync.protocol.canonical_json`), so the
same document is the same text whichever store holds it.

The file is longer than the project's usual ~500 lines on purpose: it is one class that
implements the whole `HubStore` protocol, a short method and one query for each of its
operations, grouped by what they store; split into mixins it would read as several
stores instead of one.
"""

import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import date

from edge.domain.documents import YEAR_WIDE
from edge.domain.model import Accumulators
from sync.hub.model import (
    Alarm,
    Balances,
    ConsoleSession,
    ConsoleUser,
    County,
    HubStoreError,
    Publication,
    PublishedRelease,
    ReconciliationItem,
    RecordSummary,
    Slot,
    StatementEvent,
    StatementReport,
    StatementRevision,
    StoredRecord,
)
from sync.protocol import canonical_json


@dataclass(frozen=True)
class Dialect:
    """Where the two databases differ in the text of a shared query."""

    # The column that numbers records and publications in order of arrival.
    arrival: str
    # `alarm.seq` equal to a parameter that may be NULL.
    seq_is: str
    # What inserting a record at a (device_id, seq) already held does: "" lets the
    # unique constraint refuse it, " ON CONFLICT DO NOTHING" skips it.
    on_record_conflict: str


SQLITE = Dialect(arrival="rowid", seq_is="IS ?", on_record_conflict="")
POSTGRESQL = Dialect(
    arrival="position",
    seq_is="IS NOT DISTINCT FROM ?::bigint",
    on_record_conflict=" ON CONFLICT DO NOTHING",
)

SLOT_COLUMNS = ", ".join(f.name for f in fields(Slot))
PUBLICATION_COLUMNS = ", ".join(f.name for f in fields(Publication))
RELEASE_COLUMNS = ", ".join(f.name for f in fields(PublishedRelease))
# Bound parameters per `IN (…)` list, below either database's limit.
IN_CHUNK = 500
# `r` (a record) is not flagged malformed: computations leave flagged records out.
WELL_FORMED = (
    " AND NOT EXISTS (SELECT 1 FROM malformed_record m"
    " WHERE m.device_id = r.device_id AND m.seq = r.seq)"
)


def dumps(value: object) -> str:
    return canonical_json(value).decode()


def loads(text: str | None):
    return None if text is None else json.loads(text)


def marks(values: Sequence) -> str:
    """`?, ?, …`: one placeholder per value, for an `IN (…)` list."""
    return ", ".join("?" * len(values))


def devices_in(column: str, device_ids: Iterable[str] | None) -> tuple[str, list] | None:
    """(` AND column IN (…)`, its parameters) limiting a query to `device_ids`; ("", [])
    for every device (None); None when the list is empty, which nothing matches."""
    if device_ids is None:
        return "", []
    wanted = sorted(set(device_ids))
    if not wanted:
        return None
    return f" AND {column} IN ({marks(wanted)})", wanted


def chunks(device_ids: Iterable[str]) -> Iterator[list[str]]:
    """The distinct device ids in lists of at most IN_CHUNK, for `IN (…)` queries."""
    wanted = sorted(set(device_ids))
    for start in range(0, len(wanted), IN_CHUNK):
        yield wanted[start : start + IN_CHUNK]


# Console listings limited to one township: the devices of its slots.
IN_TOWNSHIP = " AND device_id IN (SELECT device_id FROM slot WHERE township = ?)"
ALARM_COLUMNS = ", ".join(f.name for f in fields(Alarm))
ITEM_COLUMNS = "item_id, device_id, seq, tx_id, code, business_day, details, created_at"
STATEMENT_COLUMNS = ", ".join(f.name for f in fields(StatementRevision))
REQUEST_COLUMNS = (
    "tx_id",
    "device_id",
    "clinic",
    "township",
    "seq",
    "kind",
    "created_at",
    "insured_id",
    "applicant",
    "sealed_id_number",
    "details",
    "attachments",
    "note",
    "follow_up_of",
    "state",
    "updated_at",
)
REQUEST_JSON = ("applicant", "sealed_id_number", "details", "attachments")
PREMIUM_COLUMNS = (
    "tx_id",
    "device_id",
    "clinic",
    "township",
    "seq",
    "created_at",
    "year",
    "method",
    "reference",
    "account_holder",
    "amount",
    "state_paid",
    "persons",
    "person_count",
    "reversed_by",
    "reversed_at",
)


class SqlHubStore:
    """`HubStore` in SQL shared by both databases; subclasses give `conn` (`?`
    placeholders, sqlite3's `execute`/`executemany`), `dialect` and `unit_of_work`."""

    dialect: Dialect

    def __init__(self, conn):
        self.conn = conn
        self._lock = threading.RLock()

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a unit of work: what the block wrote is undone if it raises."""
        self.conn.execute("SAVEPOINT one_record")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO SAVEPOINT one_record")
            self.conn.execute("RELEASE SAVEPOINT one_record")
            raise
        self.conn.execute("RELEASE SAVEPOINT one_record")

    def _one(self, sql: str, params: Sequence = ()) -> tuple | None:
        return self.conn.execute(sql, params).fetchone()

    def _only(self, sql: str, params: Sequence = ()) -> tuple:
        """The row of a query that always answers one (an aggregate, the hub's state)."""
        row = self._one(sql, params)
        if row is None:
            raise HubStoreError(f"the hub database answered no row to: {sql}")
        return row

    # ---- county ----------------------------------------------------------------------

    def county(self) -> County | None:
        row = self._one("SELECT name, public_key, created_at FROM county")
        return None if row is None else County(*row)

    def create_county(self, name: str, public_key: str, created_at: str) -> None:
        self.conn.execute(
            "INSERT INTO county (id, name, public_key, created_at) VALUES (1, ?, ?, ?)",
            [name, public_key, created_at],
        )

    # ---- slots and devices -------------------------------------------------------------

    def add_slot(
        self,
        clinic_code: str,
        township: str,
        code_hash: str,
        code_expires_at: str,
        provisioned_at: str,
    ) -> int:
        rows = self.conn.execute(
            "INSERT INTO slot (clinic_code, township, provisioned_at, code_hash,"
            " code_expires_at) VALUES (?, ?, ?, ?, ?) RETURNING slot_id",
            [clinic_code, township, provisioned_at, code_hash, code_expires_at],
        ).fetchall()
        return rows[0][0]

    def _slot_where(self, where: str, params: Sequence, lock: str = "") -> Slot | None:
        row = self._one(f"SELECT {SLOT_COLUMNS} FROM slot WHERE {where}{lock}", params)
        return None if row is None else Slot(*row)

    def slot_by_code_hash(self, code_hash: str) -> Slot | None:
        return self._slot_where("code_hash = ?", [code_hash])

    def slot_by_device(self, device_id: str) -> Slot | None:
        return self._slot_where("device_id = ?", [device_id])

    def slot_by_id(self, slot_id: int) -> Slot | None:
        return self._slot_where("slot_id = ?", [slot_id])

    def slots(self, township: str | None = None) -> list[Slot]:
        sql = f"SELECT {SLOT_COLUMNS} FROM slot"
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
        cursor = self.conn.execute(
            "INSERT INTO nonce (device_id, nonce, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [device_id, nonce, seen_at],
        )
        return cursor.rowcount == 1

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
                [at, dumps(heartbeat), clock_skew_s, device_id],
            )

    # ---- records ---------------------------------------------------------------------

    def stored_hashes(self, device_id: str, seqs: Iterable[int]) -> dict[int, str]:
        wanted = sorted(set(seqs))
        result: dict[int, str] = {}
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            result.update(
                self.conn.execute(
                    f"SELECT seq, hash FROM record WHERE device_id = ? AND seq IN ({marks(chunk)})",
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
            " record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)" + self.dialect.on_record_conflict,
            [
                (
                    device_id,
                    r["seq"],
                    r["hash"],
                    r["kind"],
                    str(r.get("tx_id", "")),
                    str(r.get("created_at", "")),
                    received_at,
                    dumps(r),
                )
                for r in records
            ],
        )

    def hold_records(self, device_id: str, records: Sequence[dict], received_at: str) -> None:
        self.conn.executemany(
            "INSERT INTO held_record (device_id, seq, hash, received_at, record)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id, seq) DO UPDATE SET"
            " hash = excluded.hash, received_at = excluded.received_at,"
            " record = excluded.record",
            [(device_id, r["seq"], r["hash"], received_at, dumps(r)) for r in records],
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
        self,
        device_id: str,
        after_seq: int = 0,
        to_seq: int | None = None,
        *,
        well_formed: bool = False,
    ) -> Iterator[dict]:
        """A device's records in seq order; `well_formed`: without the flagged ones."""
        sql = "SELECT record FROM record r WHERE device_id = ? AND seq > ?"
        params: list = [device_id, after_seq]
        if to_seq is not None:
            sql += " AND seq <= ?"
            params.append(to_seq)
        if well_formed:
            sql += WELL_FORMED
        for (text,) in self.conn.execute(sql + " ORDER BY seq", params):
            yield json.loads(text)

    def records_of_kinds(self, device_id: str, kinds: Sequence[str]) -> list[dict]:
        """A device's unflagged records of these kinds, in seq order."""
        rows = self.conn.execute(
            f"SELECT record FROM record r WHERE device_id = ? AND kind IN ({marks(kinds)})"
            + WELL_FORMED
            + " ORDER BY seq",
            [device_id, *kinds],
        )
        return [json.loads(text) for (text,) in rows]

    def record_counts(self, device_ids: Iterable[str] | None = None) -> dict[str, tuple[int, int]]:
        """device_id -> (records held, records held beyond a gap), of every device or of
        `device_ids` (a console page's: counted through the (device_id, seq) keys)."""
        queries = (
            "SELECT device_id, count(*) FROM record{} GROUP BY device_id",
            "SELECT device_id, count(*) FROM held_record{} GROUP BY device_id",
        )
        groups: list[tuple[str, list]] = (
            [("", [])]
            if device_ids is None
            else [(f" WHERE device_id IN ({marks(c)})", c) for c in chunks(device_ids)]
        )
        counts: dict[str, tuple[int, int]] = {}
        for where, params in groups:
            for device, n in self.conn.execute(queries[0].format(where), params):
                counts[device] = (n, 0)
            for device, n in self.conn.execute(queries[1].format(where), params):
                counts[device] = (counts.get(device, (0, 0))[0], n)
        return counts

    def last_seq_of_kind(self, device_id: str, kind: str, before_seq: int) -> int:
        row = self._only(
            "SELECT max(seq) FROM record WHERE device_id = ? AND kind = ? AND seq < ?",
            [device_id, kind, before_seq],
        )
        return row[0] or 0

    def last_records_of_kind(
        self, kind: str, device_ids: Iterable[str] | None = None
    ) -> dict[str, dict]:
        """device_id -> its latest record of `kind`, for the enrolled devices (of
        `device_ids`) that have one."""
        of_devices = devices_in("s.device_id", device_ids)
        if of_devices is None:
            return {}
        where, params = of_devices
        rows = self.conn.execute(
            "SELECT s.device_id, (SELECT r.record FROM record r WHERE r.device_id = s.device_id"
            f" AND r.kind = ?{WELL_FORMED} ORDER BY r.seq DESC LIMIT 1) FROM slot s"
            f" WHERE s.device_id IS NOT NULL{where}",
            [kind, *params],
        )
        return {device: json.loads(text) for device, text in rows if text is not None}

    def record_by_tx(self, device_id: str, tx_id: str) -> dict | None:
        """The well-formed record named `tx_id` (a flagged one is none to compute with)."""
        row = self._one(
            f"SELECT record FROM record r WHERE device_id = ? AND tx_id = ?{WELL_FORMED}",
            [device_id, tx_id],
        )
        return None if row is None else json.loads(row[0])

    def flag_malformed(self, device_id: str, problems: Sequence[tuple[int, str]], at: str) -> None:
        """Flag records as kept for evidence only: (seq, why) each; the first flag stays."""
        self.conn.executemany(
            "INSERT INTO malformed_record (device_id, seq, problem, flagged_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (device_id, seq) DO NOTHING",
            [(device_id, seq, problem, at) for seq, problem in problems],
        )

    def malformed_records(self, device_id: str) -> dict[int, str]:
        """seq -> why, of a device's flagged records."""
        return dict(
            self.conn.execute(
                "SELECT seq, problem FROM malformed_record WHERE device_id = ? ORDER BY seq",
                [device_id],
            ).fetchall()
        )

    # ---- alarms ----------------------------------------------------------------------

    def raise_alarm(self, device_id: str, code: str, seq: int | None, detail: str, at: str) -> None:
        """One open alarm per device, code and seq; a repeat counts, it does not pile up."""
        cursor = self.conn.execute(
            "UPDATE alarm SET repeats = repeats + 1 WHERE device_id = ? AND code = ?"
            f" AND seq {self.dialect.seq_is} AND cleared_at IS NULL",
            [device_id, code, seq],
        )
        if cursor.rowcount == 0:
            self.conn.execute(
                "INSERT INTO alarm (device_id, code, seq, detail, raised_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [device_id, code, seq, detail, at],
            )

    def alarms(self, device_id: str | None = None, open_only: bool = True) -> list[Alarm]:
        sql = f"SELECT {', '.join(f.name for f in fields(Alarm))} FROM alarm WHERE 1 = 1"
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
        cursor = self.conn.execute(
            f"INSERT INTO publication ({PUBLICATION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [
                p.kind,
                p.version,
                p.published_at,
                p.expires_at,
                dumps(p.manifest),
                p.signature,
                dumps(p.content),
            ],
        )
        if cursor.rowcount == 0:
            raise HubStoreError(f"{p.kind} version {p.version} is already published")

    def add_published_items(self, version: str, items: Iterable[tuple[str, str]]) -> None:
        self.conn.executemany(
            "INSERT INTO published_item (version, code, item) VALUES (?, ?, ?)",
            ((version, code, text) for code, text in items),
        )

    def add_published_persons(self, version: str, persons: Iterable[tuple[str, str]]) -> None:
        self.conn.executemany(
            "INSERT INTO published_person (version, insured_id, person) VALUES (?, ?, ?)",
            ((version, insured_id, text) for insured_id, text in persons),
        )

    @staticmethod
    def _publication(row: tuple) -> Publication:
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
        row = self._one(
            f"SELECT {PUBLICATION_COLUMNS} FROM publication WHERE kind = ? AND version = ?",
            [kind, version],
        )
        return None if row is None else self._publication(row)

    def latest_publication(self, kind: str) -> Publication | None:
        # Versions only ever grow (the service refuses older ones), so the last one in wins.
        row = self._one(
            f"SELECT {PUBLICATION_COLUMNS} FROM publication WHERE kind = ?"
            f" ORDER BY {self.dialect.arrival} DESC LIMIT 1",
            [kind],
        )
        return None if row is None else self._publication(row)

    def latest_version(self, kind: str) -> str | None:
        """The newest published version of `kind`, without reading its content."""
        row = self._one(
            f"SELECT version FROM publication WHERE kind = ?"
            f" ORDER BY {self.dialect.arrival} DESC LIMIT 1",
            [kind],
        )
        return None if row is None else row[0]

    def publications(self, kind: str | None = None) -> list[Publication]:
        sql = "SELECT kind, version, published_at, expires_at, manifest, signature, '{}'"
        sql += " FROM publication"
        params: list = []
        if kind is not None:
            sql += " WHERE kind = ?"
            params.append(kind)
        rows = self.conn.execute(sql + f" ORDER BY {self.dialect.arrival}", params)
        return [self._publication(row) for row in rows]

    # ---- software releases --------------------------------------------------------------

    def add_release(self, release: PublishedRelease) -> None:
        r = release
        cursor = self.conn.execute(
            f"INSERT INTO software_release ({RELEASE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [
                r.version,
                r.arch,
                r.python,
                dumps(r.manifest),
                r.signature,
                r.published_at,
                r.withdrawn_at,
            ],
        )
        if cursor.rowcount == 0:
            raise HubStoreError(f"release {r.version} for {r.arch} is already published")

    @staticmethod
    def _release(row: tuple) -> PublishedRelease:
        version, arch, python, manifest, signature, published_at, withdrawn_at = row
        return PublishedRelease(
            version, arch, python, json.loads(manifest), signature, published_at, withdrawn_at
        )

    def release(self, version: str, arch: str) -> PublishedRelease | None:
        row = self._one(
            f"SELECT {RELEASE_COLUMNS} FROM software_release WHERE version = ? AND arch = ?",
            [version, arch],
        )
        return None if row is None else self._release(row)

    def releases(self, arch: str | None = None) -> list[PublishedRelease]:
        """Oldest first (order of publication); a county has a few dozen at most."""
        sql = f"SELECT {RELEASE_COLUMNS} FROM software_release"
        params: list = []
        if arch is not None:
            sql += " WHERE arch = ?"
            params.append(arch)
        rows = self.conn.execute(sql + f" ORDER BY {self.dialect.arrival}", params)
        return [self._release(row) for row in rows]

    def withdraw_release(self, version: str, arch: str, at: str) -> None:
        self.conn.execute(
            "UPDATE software_release SET withdrawn_at = ? WHERE version = ? AND arch = ?"
            " AND withdrawn_at IS NULL",
            [at, version, arch],
        )

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
                f" AND code IN ({marks(wanted)})",
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
            "INSERT INTO person (insured_id, person, roster_version, account_balance)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (insured_id) DO UPDATE SET"
            " person = excluded.person, roster_version = excluded.roster_version",
            [insured_id, dumps(person), roster_version, account_balance],
        )

    def person(self, insured_id: str) -> tuple[dict, int] | None:
        row = self._one(
            "SELECT person, account_balance FROM person WHERE insured_id = ?", [insured_id]
        )
        return None if row is None else (json.loads(row[0]), row[1])

    def add_account_devices(self, device_id: str, insured_ids: Sequence[str]) -> None:
        self.conn.executemany(
            "INSERT INTO account_device (insured_id, device_id) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            [(insured_id, device_id) for insured_id in insured_ids],
        )

    def records_counted(self, insured_id: str) -> dict[str, int]:
        """For each device that may have moved this person's account, its last seq the
        recomputation has counted: the running balance includes its records up to there
        (a device's records arrive in seq order); a device left out has none counted.
        Read before the balance, in the same unit of work."""
        through = self._recomputed_through()
        rows = self.conn.execute(
            f"SELECT a.device_id, (SELECT max(r.seq) FROM record r WHERE r.device_id ="
            f" a.device_id AND r.{self.dialect.arrival} <= ?) FROM account_device a"
            " WHERE a.insured_id = ?",
            [through, insured_id],
        )
        return {device_id: seq for device_id, seq in rows if seq is not None}

    def _recomputed_through(self) -> int:
        (through,) = self._only("SELECT recomputed_through FROM hub_state")
        return through

    def person_figures(self, insured_id: str) -> dict:
        """The county's running figures of a person as a roster carries them
        (`{year: {visit type: {deductible_used, fund_paid}, assistance_paid, ci_selfpay,
        ci_paid, supplements_paid}}`, years as text)."""
        years: dict[str, dict] = {}
        for year, scope, deductible, fund, assistance, ci_selfpay, ci_paid in self.conn.execute(
            "SELECT year, scope, deductible_used, fund_paid, assistance_paid, ci_selfpay,"
            " ci_paid FROM accumulator WHERE insured_id = ? ORDER BY year, scope",
            [insured_id],
        ):
            figures = years.setdefault(str(year), {})
            if scope == YEAR_WIDE:
                figures.update(assistance_paid=assistance, ci_selfpay=ci_selfpay, ci_paid=ci_paid)
            else:
                figures[scope] = {"deductible_used": deductible, "fund_paid": fund}
        for year, name, paid in self.conn.execute(
            "SELECT year, name, paid FROM supplement_accumulator WHERE insured_id = ?"
            " ORDER BY year, name",
            [insured_id],
        ):
            figures = years.setdefault(str(year), {})
            figures.setdefault("supplements_paid", {})[name] = paid
        return years

    def seed_accumulator(
        self, insured_id: str, year: int, scope: str, figures: Accumulators
    ) -> None:
        """Start a person's figures of a year and scope (a visit type, or `YEAR_WIDE` with
        the supplements) unless the county already keeps that year and scope."""
        cursor = self.conn.execute(
            "INSERT INTO accumulator (insured_id, year, scope, deductible_used, fund_paid,"
            " assistance_paid, ci_selfpay, ci_paid) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [
                insured_id,
                year,
                scope,
                figures.deductible_used,
                figures.fund_paid,
                figures.assistance_paid,
                figures.ci_selfpay,
                figures.ci_paid,
            ],
        )
        if cursor.rowcount == 1 and scope == YEAR_WIDE:
            self.conn.executemany(
                "INSERT INTO supplement_accumulator (insured_id, year, name, paid)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (insured_id, year, name, paid)
                    for name, paid in sorted(figures.supplements_paid.items())
                ],
            )

    def balances(
        self, insured_id: str, on: date, visit_type: str, family_holder: str | None = None
    ) -> Balances:
        year = on.year
        rows = {
            scope: values
            for scope, *values in self.conn.execute(
                "SELECT scope, deductible_used, fund_paid, assistance_paid, ci_selfpay, ci_paid"
                " FROM accumulator WHERE insured_id = ? AND year = ? AND scope IN (?, ?)",
                [insured_id, year, visit_type, YEAR_WIDE],
            )
        }
        deductible_used, fund_paid = (rows.get(visit_type) or [0, 0])[:2]
        assistance_paid, ci_selfpay, ci_paid = (rows.get(YEAR_WIDE) or [0, 0, 0, 0, 0])[2:]
        supplements = dict(
            self.conn.execute(
                "SELECT name, paid FROM supplement_accumulator WHERE insured_id = ? AND year = ?",
                [insured_id, year],
            ).fetchall()
        )
        day = self._one(
            "SELECT fund_paid FROM day_accumulator"
            " WHERE insured_id = ? AND day = ? AND visit_type = ?",
            [insured_id, on.isoformat(), visit_type],
        ) or (0,)
        accounts = dict(
            self.conn.execute(
                "SELECT insured_id, account_balance FROM person WHERE insured_id IN (?, ?)",
                [insured_id, family_holder or insured_id],
            ).fetchall()
        )
        return Balances(
            deductible_used=deductible_used,
            fund_paid=fund_paid,
            assistance_paid=assistance_paid,
            account_balance=accounts.get(insured_id, 0),
            day_fund_paid=day[0],
            ci_selfpay=ci_selfpay,
            ci_paid=ci_paid,
            supplements_paid=supplements,
            family_account_balance=accounts.get(family_holder, 0) if family_holder else 0,
        )

    def set_balances(
        self,
        insured_id: str,
        on: date,
        visit_type: str,
        balances: Balances,
        family_holder: str | None = None,
    ) -> None:
        year = on.year
        insert = (
            "INSERT INTO accumulator (insured_id, year, scope, deductible_used, fund_paid,"
            " assistance_paid, ci_selfpay, ci_paid) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (insured_id, year, scope)"
        )
        b = balances
        self.conn.execute(
            insert + " DO UPDATE SET deductible_used = excluded.deductible_used,"
            " fund_paid = excluded.fund_paid",
            [insured_id, year, visit_type, b.deductible_used, b.fund_paid, 0, 0, 0],
        )
        self.conn.execute(
            insert + " DO UPDATE SET assistance_paid = excluded.assistance_paid,"
            " ci_selfpay = excluded.ci_selfpay, ci_paid = excluded.ci_paid",
            [insured_id, year, YEAR_WIDE, 0, 0, b.assistance_paid, b.ci_selfpay, b.ci_paid],
        )
        self.conn.executemany(
            "INSERT INTO supplement_accumulator (insured_id, year, name, paid)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (insured_id, year, name)"
            " DO UPDATE SET paid = excluded.paid",
            [(insured_id, year, name, paid) for name, paid in sorted(b.supplements_paid.items())],
        )
        self.conn.execute(
            "INSERT INTO day_accumulator (insured_id, day, visit_type, fund_paid)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (insured_id, day, visit_type)"
            " DO UPDATE SET fund_paid = excluded.fund_paid",
            [insured_id, on.isoformat(), visit_type, b.day_fund_paid],
        )
        self.conn.execute(
            "UPDATE person SET account_balance = ? WHERE insured_id = ?",
            [b.account_balance, insured_id],
        )
        if family_holder is not None and family_holder != insured_id:
            self.conn.execute(
                "UPDATE person SET account_balance = ? WHERE insured_id = ?",
                [b.family_account_balance, family_holder],
            )

    # ---- recomputation and reconciliation ---------------------------------------------

    def _recompute_window(self) -> tuple[int, int | None]:
        """(the last position recomputed, the last one that may be read; None: any)."""
        return self._recomputed_through(), None

    def records_to_recompute(self, limit: int) -> list[StoredRecord]:
        through, visible = self._recompute_window()
        arrival = self.dialect.arrival
        sql = (
            f"SELECT {arrival}, device_id, seq, record, EXISTS (SELECT 1 FROM malformed_record m"
            f" WHERE m.device_id = r.device_id AND m.seq = r.seq) FROM record r WHERE {arrival} > ?"
        )
        params: list = [through]
        if visible is not None:
            sql += f" AND {arrival} <= ?"
            params.append(visible)
        return [
            StoredRecord(position, device_id, seq, json.loads(text), bool(malformed))
            for position, device_id, seq, text, malformed in self.conn.execute(
                sql + f" ORDER BY {arrival} LIMIT ?", [*params, limit]
            )
        ]

    def mark_recomputed_through(self, position: int) -> None:
        self.conn.execute("UPDATE hub_state SET recomputed_through = ?", [position])

    def save_recomputation(
        self, device_id: str, seq: int, tx_id: str, status: str, hub_result: dict | None
    ) -> None:
        self.conn.execute(
            "INSERT INTO recomputation (device_id, seq, tx_id, status, hub_result)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id, seq) DO UPDATE SET"
            " tx_id = excluded.tx_id, status = excluded.status,"
            " hub_result = excluded.hub_result",
            [device_id, seq, tx_id, status, None if hub_result is None else dumps(hub_result)],
        )

    def recomputation_of(self, device_id: str, tx_id: str) -> tuple[str, dict | None] | None:
        row = self._one(
            "SELECT status, hub_result FROM recomputation WHERE device_id = ? AND tx_id = ?",
            [device_id, tx_id],
        )
        return None if row is None else (row[0], loads(row[1]))

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
            [device_id, seq, tx_id, code, business_day, dumps(details), created_at],
        )

    def reconciliation_items(
        self, device_ids: Iterable[str] | None = None
    ) -> list[ReconciliationItem]:
        of_devices = devices_in("device_id", device_ids)
        if of_devices is None:
            return []
        where, params = of_devices
        sql = (
            "SELECT item_id, device_id, seq, tx_id, code, business_day, details, created_at"
            f" FROM reconciliation_item WHERE 1 = 1{where} ORDER BY item_id"
        )
        return [
            ReconciliationItem(
                item_id, device_id, seq, tx_id, code, business_day, json.loads(details), created_at
            )
            for item_id, device_id, seq, tx_id, code, business_day, details, created_at in (
                self.conn.execute(sql, params)
            )
        ]

    def settlements(
        self, device_ids: Iterable[str] | None = None
    ) -> Iterator[tuple[dict, str | None, dict | None]]:
        """(record, recomputation status, hub result) of every settlement held."""
        of_devices = devices_in("r.device_id", device_ids)
        if of_devices is None:
            return
        where, params = of_devices
        sql = (
            "SELECT r.record, c.status, c.hub_result FROM record r LEFT JOIN recomputation c"
            " ON c.device_id = r.device_id AND c.seq = r.seq WHERE r.kind = 'settlement'"
            f"{WELL_FORMED}{where} ORDER BY r.{self.dialect.arrival}"
        )
        for text, status, result in self.conn.execute(sql, params):
            yield json.loads(text), status, loads(result)

    # ---- clearing statements (m007 / step 7) ------------------------------------------

    def month_records(
        self, device_id: str, kinds: Sequence[str], created_from: str, created_before: str
    ) -> list[dict]:
        """A device's well-formed records of `kinds` whose `created_at` text is in
        [created_from, created_before), in seq order (on the record_kind index). The
        caller widens the window and checks each record's month itself: `created_at` is
        compared as text."""
        rows = self.conn.execute(
            f"SELECT record FROM record r WHERE device_id = ? AND kind IN ({marks(kinds)})"
            f" AND created_at >= ? AND created_at < ?{WELL_FORMED} ORDER BY seq",
            [device_id, *kinds, created_from, created_before],
        )
        return [json.loads(text) for (text,) in rows]

    @staticmethod
    def _statement(row: tuple) -> StatementRevision:
        values = list(row)
        values[4], values[5] = json.loads(values[4]), json.loads(values[5])
        return StatementRevision(*values)

    def latest_statement(self, clinic_code: str, month: str) -> StatementRevision | None:
        row = self._one(
            f"SELECT {STATEMENT_COLUMNS} FROM clearing_statement WHERE clinic_code = ?"
            " AND month = ? ORDER BY revision DESC LIMIT 1",
            [clinic_code, month],
        )
        return None if row is None else self._statement(row)

    def statement_revision(
        self, clinic_code: str, month: str, revision: int
    ) -> StatementRevision | None:
        row = self._one(
            f"SELECT {STATEMENT_COLUMNS} FROM clearing_statement WHERE clinic_code = ?"
            " AND month = ? AND revision = ?",
            [clinic_code, month, revision],
        )
        return None if row is None else self._statement(row)

    def latest_statements(
        self, month: str, clinic_codes: Iterable[str] | None = None
    ) -> dict[str, StatementRevision]:
        """clinic_code -> the latest revision of its statement for `month` (of
        `clinic_codes`, or every clinic's)."""
        of_clinics = devices_in("s.clinic_code", clinic_codes)
        if of_clinics is None:
            return {}
        where, params = of_clinics
        rows = self.conn.execute(
            f"SELECT {', '.join('s.' + c for c in STATEMENT_COLUMNS.split(', '))}"
            " FROM clearing_statement s WHERE s.month = ?"
            " AND s.revision = (SELECT max(l.revision) FROM clearing_statement l"
            f" WHERE l.clinic_code = s.clinic_code AND l.month = s.month){where}",
            [month, *params],
        )
        return {row[0]: self._statement(row) for row in rows}

    def statement_statuses(self, month: str, clinic_codes: Iterable[str]) -> dict[str, str]:
        """clinic_code -> the status of its latest clearing statement for `month`
        (draft, agreed, paid); a clinic without one is absent (the month reports read
        it without building statements)."""
        statuses: dict[str, str] = {}
        for chunk in chunks(clinic_codes):
            statuses.update(
                self.conn.execute(
                    "SELECT s.clinic_code, s.status FROM clearing_statement s WHERE s.month = ?"
                    f" AND s.clinic_code IN ({marks(chunk)}) AND s.revision ="
                    " (SELECT max(l.revision) FROM clearing_statement l"
                    " WHERE l.clinic_code = s.clinic_code AND l.month = s.month)",
                    [month, *chunk],
                ).fetchall()
            )
        return statuses

    def add_statement(self, statement: StatementRevision) -> bool:
        """Keep a new revision; False when that revision is already there (another
        request built it first)."""
        cursor = self.conn.execute(
            f"INSERT INTO clearing_statement ({STATEMENT_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [
                statement.clinic_code,
                statement.month,
                statement.revision,
                statement.built_at,
                dumps(statement.device_ids),
                dumps(statement.content),
                statement.status,
                statement.payment_reference,
                statement.paid_on,
                statement.status_by,
                statement.status_at,
            ],
        )
        return cursor.rowcount == 1

    def set_statement_status(
        self,
        clinic_code: str,
        month: str,
        revision: int,
        *,
        status: str,
        payment_reference: str | None,
        paid_on: str | None,
        by: str,
        at: str,
        expected: str,
    ) -> bool:
        """False when the revision is no longer in the `expected` status (another admin
        moved it first): nothing changed."""
        cursor = self.conn.execute(
            "UPDATE clearing_statement SET status = ?, payment_reference = ?, paid_on = ?,"
            " status_by = ?, status_at = ? WHERE clinic_code = ? AND month = ? AND revision = ?"
            " AND status = ?",
            [status, payment_reference, paid_on, by, at, clinic_code, month, revision, expected],
        )
        return cursor.rowcount == 1

    def add_statement_event(
        self,
        clinic_code: str,
        month: str,
        revision: int,
        action: str,
        actor: str,
        at: str,
        detail: dict,
    ) -> None:
        self.conn.execute(
            "INSERT INTO statement_event (clinic_code, month, revision, action, actor, at,"
            " detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [clinic_code, month, revision, action, actor, at, dumps(detail)],
        )

    def statement_events(self, clinic_code: str, month: str) -> list[StatementEvent]:
        rows = self.conn.execute(
            "SELECT event_id, clinic_code, month, revision, action, actor, at, detail"
            " FROM statement_event WHERE clinic_code = ? AND month = ? ORDER BY event_id",
            [clinic_code, month],
        )
        return [
            StatementEvent(event_id, clinic, month_, revision, action, actor, at, loads(detail))
            for event_id, clinic, month_, revision, action, actor, at, detail in rows
        ]

    def save_statement_report(self, report: StatementReport) -> None:
        """A device's report on a revision; a later one of the same device replaces it."""
        self.conn.execute(
            "INSERT INTO statement_report (clinic_code, month, revision, device_id,"
            " received_at, agrees, report) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (clinic_code, month, revision, device_id) DO UPDATE SET"
            " received_at = excluded.received_at, agrees = excluded.agrees,"
            " report = excluded.report",
            [
                report.clinic_code,
                report.month,
                report.revision,
                report.device_id,
                report.received_at,
                int(report.agrees),
                dumps(report.report),
            ],
        )

    def statement_reports(self, clinic_code: str, month: str) -> list[StatementReport]:
        """Every device's reports on the month's revisions, the latest revision first."""
        rows = self.conn.execute(
            "SELECT clinic_code, month, revision, device_id, received_at, agrees, report"
            " FROM statement_report WHERE clinic_code = ? AND month = ?"
            " ORDER BY revision DESC, device_id",
            [clinic_code, month],
        )
        return [
            StatementReport(clinic, month_, revision, device, at, bool(agrees), loads(report))
            for clinic, month_, revision, device, at, agrees, report in rows
        ]

    def statement_checks(self, month: str, clinic_codes: Iterable[str]) -> dict[str, bool]:
        """clinic_code -> whether its devices agree with the latest revision of `month`'s
        statement they reported on (every one of them); a clinic without a report is
        absent."""
        checks: dict[str, bool] = {}
        for chunk in chunks(clinic_codes):
            checks.update(
                (code, bool(agrees))
                for code, agrees in self.conn.execute(
                    "SELECT r.clinic_code, min(r.agrees) FROM statement_report r"
                    f" WHERE r.month = ? AND r.clinic_code IN ({marks(chunk)}) AND r.revision ="
                    " (SELECT max(l.revision) FROM statement_report l"
                    " WHERE l.clinic_code = r.clinic_code AND l.month = r.month)"
                    " GROUP BY r.clinic_code",
                    [month, *chunk],
                )
            )
        return checks

    def activity_between(
        self, device_ids: Iterable[str], created_from: str, created_to: str
    ) -> Iterator[tuple[dict, str | None, dict | None]]:
        """(record, recomputation status, hub result) of the well-formed settlements and
        reversals of `device_ids` whose `created_at` text is in [created_from,
        created_to), in each device's seq order (the month reports: the caller leaves a
        margin and places each record by its instant, since offsets may differ)."""
        for chunk in chunks(device_ids):
            sql = (
                "SELECT r.record, c.status, c.hub_result FROM record r LEFT JOIN recomputation c"
                " ON c.device_id = r.device_id AND c.seq = r.seq"
                " WHERE r.kind IN ('settlement', 'reversal') AND r.created_at >= ?"
                f" AND r.created_at < ?{WELL_FORMED} AND r.device_id IN ({marks(chunk)})"
                " ORDER BY r.device_id, r.seq"
            )
            for text, status, result in self.conn.execute(sql, [created_from, created_to, *chunk]):
                yield json.loads(text), status, loads(result)

    # ---- console listings: one bounded page each, on indexes (m005 / step 5) --------

    def slots_page(self, township: str | None, limit: int, offset: int) -> list[Slot]:
        sql = f"SELECT {SLOT_COLUMNS} FROM slot"
        params: list = []
        if township is not None:
            sql += " WHERE township = ?"
            params.append(township)
        sql += " ORDER BY township, slot_id LIMIT ? OFFSET ?"
        return [Slot(*row) for row in self.conn.execute(sql, [*params, limit, offset])]

    def townships(self) -> list[str]:
        return [t for (t,) in self.conn.execute("SELECT DISTINCT township FROM slot ORDER BY 1")]

    def open_alarm_codes(self, device_ids: Iterable[str]) -> dict[str, list[str]]:
        """device_id -> the codes of its open alarms, each once (a flood of one code is
        one entry), of `device_ids`."""
        codes: dict[str, list[str]] = {}
        for chunk in chunks(device_ids):
            for device, code in self.conn.execute(
                "SELECT DISTINCT device_id, code FROM alarm WHERE cleared_at IS NULL"
                f" AND device_id IN ({marks(chunk)}) ORDER BY device_id, code",
                chunk,
            ):
                codes.setdefault(device, []).append(code)
        return codes

    def difference_counts(self, device_ids: Iterable[str], except_code: str) -> dict[str, int]:
        """device_id -> its reconciliation items other than `except_code`, of `device_ids`."""
        counts: dict[str, int] = {}
        for chunk in chunks(device_ids):
            counts.update(
                self.conn.execute(
                    "SELECT device_id, count(*) FROM reconciliation_item WHERE code != ?"
                    f" AND device_id IN ({marks(chunk)}) GROUP BY device_id",
                    [except_code, *chunk],
                ).fetchall()
            )
        return counts

    def alarms_page(
        self,
        *,
        device_id: str | None = None,
        township: str | None = None,
        device_prefix: str | None = None,
        open_only: bool = True,
        limit: int,
        offset: int,
    ) -> list[Alarm]:
        """Alarms newest first, of one device, one township's devices, the "devices" whose
        id starts with `device_prefix` (a client address's enrollment alarms) or all."""
        sql = f"SELECT {ALARM_COLUMNS} FROM alarm WHERE 1 = 1"
        params: list = []
        if device_id is not None:
            sql += " AND device_id = ?"
            params.append(device_id)
        if device_prefix is not None:
            sql += " AND device_id LIKE ? ESCAPE '!'"
            escaped = device_prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_")
            params.append(escaped + "%")
        if township is not None:
            sql += IN_TOWNSHIP
            params.append(township)
        if open_only:
            sql += " AND cleared_at IS NULL"
        sql += " ORDER BY alarm_id DESC LIMIT ? OFFSET ?"
        return [Alarm(*row) for row in self.conn.execute(sql, [*params, limit, offset])]

    def reconciliation_page(
        self,
        *,
        device_id: str | None = None,
        township: str | None = None,
        except_code: str | None = None,
        limit: int,
        offset: int,
    ) -> list[ReconciliationItem]:
        """Reconciliation items newest first, of one device, one township's devices or all,
        without those of `except_code`."""
        sql = f"SELECT {ITEM_COLUMNS} FROM reconciliation_item WHERE 1 = 1"
        params: list = []
        if device_id is not None:
            sql += " AND device_id = ?"
            params.append(device_id)
        if township is not None:
            sql += IN_TOWNSHIP
            params.append(township)
        if except_code is not None:
            sql += " AND code != ?"
            params.append(except_code)
        sql += " ORDER BY item_id DESC LIMIT ? OFFSET ?"
        return [
            ReconciliationItem(item_id, device, seq, tx_id, code, day, json.loads(details), at)
            for item_id, device, seq, tx_id, code, day, details, at in self.conn.execute(
                sql, [*params, limit, offset]
            )
        ]

    def records_page(self, device_id: str, limit: int, offset: int) -> list[RecordSummary]:
        """A device's records newest first, their outline only (no body)."""
        return [
            RecordSummary(*row)
            for row in self.conn.execute(
                "SELECT seq, kind, tx_id, created_at, received_at, hash FROM record"
                " WHERE device_id = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
                [device_id, limit, offset],
            )
        ]

    # ---- the service point: requests, decisions, photos, premiums (m008 / step 8) ----

    def add_service_request(self, row: dict) -> bool:
        """Index an uploaded request (`REQUEST_COLUMNS`, JSON members as values); False
        when its tx_id is indexed already (a replay, or another device's tx_id)."""
        values = [
            dumps(row[c]) if c in REQUEST_JSON and row[c] is not None else row[c]
            for c in REQUEST_COLUMNS
        ]
        cursor = self.conn.execute(
            f"INSERT INTO service_request ({', '.join(REQUEST_COLUMNS)})"
            f" VALUES ({marks(REQUEST_COLUMNS)}) ON CONFLICT DO NOTHING",
            values,
        )
        return cursor.rowcount == 1

    def set_request_state(self, tx_id: str, state: str, at: str, *, expected: str) -> bool:
        """Move a request from the `expected` state; False when it is no longer in it."""
        cursor = self.conn.execute(
            "UPDATE service_request SET state = ?, updated_at = ? WHERE tx_id = ? AND state = ?",
            [state, at, tx_id, expected],
        )
        return cursor.rowcount == 1

    @staticmethod
    def _request(row: Sequence) -> dict:
        request = dict(zip(REQUEST_COLUMNS, row, strict=True))
        for name in REQUEST_JSON:
            request[name] = loads(request[name])
        return request

    def service_request(self, tx_id: str) -> dict | None:
        row = self._one(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM service_request WHERE tx_id = ?", [tx_id]
        )
        return None if row is None else self._request(row)

    def service_requests(
        self,
        *,
        township: str | None = None,
        kind: str | None = None,
        state: str | None = None,
        follow_ups_of: str | None = None,
        limit: int = 500,
    ) -> list[dict]:
        """Requests oldest first (the queue's order); without `follow_ups_of`, a request
        that answers one the hub holds is left out (it is shown with that one)."""
        sql = f"SELECT {', '.join(REQUEST_COLUMNS)} FROM service_request r WHERE 1 = 1"
        params: list = []
        for column, value in (("township", township), ("kind", kind), ("state", state)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if follow_ups_of is not None:
            sql += " AND follow_up_of = ?"
            params.append(follow_ups_of)
        else:
            sql += (
                " AND NOT EXISTS (SELECT 1 FROM service_request o WHERE o.tx_id ="
                " r.follow_up_of AND o.device_id = r.device_id)"
            )
        sql += " ORDER BY created_at, tx_id LIMIT ?"
        return [self._request(row) for row in self.conn.execute(sql, [*params, limit])]

    def next_decision_serial(self) -> int:
        """The serial the next decision takes (inside the unit of work that adds it)."""
        return self._only("SELECT coalesce(max(serial), 0) + 1 FROM request_decision")[0]

    def add_decision(self, decision: dict, document: dict) -> None:
        """Keep a signed decision: `decision` is its signed member, `document` the whole."""
        d = decision
        self.conn.execute(
            "INSERT INTO request_decision (serial, request_tx_id, device_id, outcome, reason,"
            " result, decided_by, decided_at, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                d["serial"],
                d["request_tx_id"],
                d["device_id"],
                d["outcome"],
                d["reason"],
                None if d["result"] is None else dumps(d["result"]),
                d["decided_by"],
                d["decided_at"],
                dumps(document),
            ],
        )

    def decisions_of_request(self, tx_id: str) -> list[dict]:
        """The signed decision documents on a request, oldest first."""
        return [
            json.loads(text)
            for (text,) in self.conn.execute(
                "SELECT document FROM request_decision WHERE request_tx_id = ? ORDER BY serial",
                [tx_id],
            )
        ]

    def decisions_for_device(self, device_id: str, after: int, limit: int) -> list[dict]:
        """A device's signed decision documents with a serial above `after`, ascending."""
        return [
            json.loads(text)
            for (text,) in self.conn.execute(
                "SELECT document FROM request_decision WHERE device_id = ? AND serial > ?"
                " ORDER BY serial LIMIT ?",
                [device_id, after, limit],
            )
        ]

    def add_attachment(
        self, sha256: str, device_id: str, content_type: str, data: bytes, received_at: str
    ) -> bool:
        """Keep a device's photo once; False when that device's copy is kept already."""
        cursor = self.conn.execute(
            "INSERT INTO request_attachment (sha256, device_id, content_type, bytes, data,"
            " received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [sha256, device_id, content_type, len(data), data, received_at],
        )
        return cursor.rowcount == 1

    def attachment_devices(self, sha256: str) -> list[str]:
        """The devices whose copy of a photo is kept."""
        return [
            device_id
            for (device_id,) in self.conn.execute(
                "SELECT device_id FROM request_attachment WHERE sha256 = ? ORDER BY device_id",
                [sha256],
            )
        ]

    def attachment(self, sha256: str, device_id: str) -> tuple[str, bytes] | None:
        """(content type, bytes) of a device's kept photo."""
        row = self._one(
            "SELECT content_type, data FROM request_attachment WHERE sha256 = ? AND device_id = ?",
            [sha256, device_id],
        )
        return None if row is None else (row[0], bytes(row[1]))

    def attachments_received(
        self, device_id: str, sha256s: Iterable[str]
    ) -> dict[str, tuple[str, int, str]]:
        """sha256 -> (content type, bytes, received_at) of a device's photos kept among
        these."""
        received: dict[str, tuple[str, int, str]] = {}
        for chunk in chunks(sha256s):
            for sha, content_type, size, at in self.conn.execute(
                "SELECT sha256, content_type, bytes, received_at FROM request_attachment"
                f" WHERE device_id = ? AND sha256 IN ({marks(chunk)})",
                [device_id, *chunk],
            ):
                received[sha] = (content_type, size, at)
        return received

    def requests_naming_attachment(self, device_id: str, sha256: str) -> list[dict]:
        """The device's indexed requests whose attachments name `sha256` (hex only, so the
        pattern holds no wildcard); the caller reads their lists to be sure."""
        rows = self.conn.execute(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM service_request"
            " WHERE device_id = ? AND attachments LIKE ?",
            [device_id, f'%"{sha256}"%'],
        )
        return [self._request(row) for row in rows]

    def add_premium(self, row: dict) -> bool:
        """Index a collected premium (`PREMIUM_COLUMNS` but the reversal's); False when
        its tx_id is indexed already."""
        columns = PREMIUM_COLUMNS[:-2]
        cursor = self.conn.execute(
            f"INSERT INTO premium ({', '.join(columns)}) VALUES ({marks(columns)})"
            " ON CONFLICT DO NOTHING",
            [dumps(row[c]) if c == "persons" else row[c] for c in columns],
        )
        return cursor.rowcount == 1

    def reverse_premium(self, device_id: str, tx_id: str, reversed_by: str, at: str) -> bool:
        """Mark a device's premium reversed, once; False when it is not there or already."""
        cursor = self.conn.execute(
            "UPDATE premium SET reversed_by = ?, reversed_at = ? WHERE tx_id = ?"
            " AND device_id = ? AND reversed_by IS NULL",
            [reversed_by, at, tx_id, device_id],
        )
        return cursor.rowcount == 1

    def premium_of(self, device_id: str, tx_id: str) -> dict | None:
        """A device's indexed premium (`PREMIUM_COLUMNS`, persons decoded)."""
        row = self._one(
            f"SELECT {', '.join(PREMIUM_COLUMNS)} FROM premium WHERE device_id = ? AND tx_id = ?",
            [device_id, tx_id],
        )
        if row is None:
            return None
        return {**dict(zip(PREMIUM_COLUMNS, row, strict=True)), "persons": json.loads(row[12])}

    def premium_sums(self, *, year: int | None = None, township: str | None = None) -> list[dict]:
        """Per clinic (by code), summed in the database: `count`, `persons`, `amount`, by
        method (`cash`, `mobile`, `family_account`), `state_paid`, and of those reversed
        `reversed_count`, `reversed_amount`, `reversed_cash`, `reversed_state_paid`."""

        def total(value: str, when: str = "1 = 1") -> str:
            return f"CAST(coalesce(sum(CASE WHEN {when} THEN {value} ELSE 0 END), 0) AS BIGINT)"

        cash = "method NOT IN ('mobile', 'family_account')"  # as the close counts them
        reversed_ = "reversed_by IS NOT NULL"
        sums = {
            "count": total("1"),
            "persons": total("person_count"),
            "amount": total("amount"),
            "cash": total("amount", cash),
            "mobile": total("amount", "method = 'mobile'"),
            "family_account": total("amount", "method = 'family_account'"),
            "state_paid": total("state_paid"),
            "reversed_count": total("1", reversed_),
            "reversed_amount": total("amount", reversed_),
            "reversed_cash": total("amount", f"{reversed_} AND {cash}"),
            "reversed_state_paid": total("state_paid", reversed_),
        }
        sql = f"SELECT clinic, min(township), {', '.join(sums.values())} FROM premium WHERE 1 = 1"
        params: list = []
        if year is not None:
            sql += " AND year = ?"
            params.append(year)
        if township is not None:
            sql += " AND township = ?"
            params.append(township)
        rows = self.conn.execute(sql + " GROUP BY clinic ORDER BY clinic", params)
        return [
            {"clinic": clinic, "township": township_, **dict(zip(sums, values, strict=True))}
            for clinic, township_, *values in rows
        ]

    def move_account_balance(self, insured_id: str, by: int) -> bool:
        """Add `by` fen to the county's account balance of a person; False: no such one."""
        cursor = self.conn.execute(
            "UPDATE person SET account_balance = account_balance + ? WHERE insured_id = ?",
            [by, insured_id],
        )
        return cursor.rowcount == 1

    def seal_key_id(self) -> str | None:
        """The id of the county's encryption key as recorded when the hub first had it."""
        row = self._one("SELECT key_id FROM county_seal_key WHERE id = 1")
        return None if row is None else row[0]

    def record_seal_key_id(self, key_id: str, at: str) -> None:
        """Record the encryption key's id, once (a second call changes nothing)."""
        self.conn.execute(
            "INSERT INTO county_seal_key (id, key_id, recorded_at) VALUES (1, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [key_id, at],
        )

    def holds_sealed_id_numbers(self) -> bool:
        """Whether a request the hub indexed carries a sealed ID number."""
        return (
            self._one("SELECT 1 FROM service_request WHERE sealed_id_number IS NOT NULL LIMIT 1")
            is not None
        )

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
            f"SELECT {', '.join(f.name for f in fields(ConsoleUser))}"
            " FROM console_user WHERE username = ?",
            [username],
        )
        return None if row is None else ConsoleUser(*row)

    def set_console_failures(self, username: str, failures: int, locked_until: str | None) -> None:
        self.conn.execute(
            "UPDATE console_user SET failures = ?, locked_until = ? WHERE username = ?",
            [failures, locked_until, username],
        )

    def count_console_attempt(self, username: str) -> tuple[int, str | None] | None:
        """Count one more attempt of `username` and read the count and lock in the same
        statement (the row stays locked to the end of the unit of work): parallel
        attempts each see a different count. None: no such user."""
        rows = self.conn.execute(  # fetchall: RETURNING rows are read to the end
            "UPDATE console_user SET failures = failures + 1 WHERE username = ?"
            " RETURNING failures, locked_until",
            [username],
        ).fetchall()
        return (rows[0][0], rows[0][1]) if rows else None

    # ---- console sessions ----------------------------------------------------------------

    def add_console_session(
        self, session_hash: str, username: str, created_at: str, expires_at: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO console_session (session_hash, username, created_at, last_seen_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?)",
            [session_hash, username, created_at, created_at, expires_at],
        )

    def console_session(self, session_hash: str) -> ConsoleSession | None:
        row = self._one(
            "SELECT s.session_hash, s.username, u.role, u.township, s.created_at,"
            " s.last_seen_at, s.expires_at FROM console_session s"
            " JOIN console_user u ON u.username = s.username WHERE s.session_hash = ?",
            [session_hash],
        )
        return None if row is None else ConsoleSession(*row)

    def touch_console_session(self, session_hash: str, last_seen_at: str) -> None:
        self.conn.execute(
            "UPDATE console_session SET last_seen_at = ? WHERE session_hash = ?",
            [last_seen_at, session_hash],
        )

    def end_console_sessions(self, username: str) -> int:
        cursor = self.conn.execute("DELETE FROM console_session WHERE username = ?", [username])
        return cursor.rowcount

    def end_console_session(self, session_hash: str) -> None:
        self.conn.execute("DELETE FROM console_session WHERE session_hash = ?", [session_hash])

    def forget_console_sessions_before(self, at: str) -> None:
        self.conn.execute("DELETE FROM console_session WHERE expires_at < ?", [at])

    # ---- throttles -----------------------------------------------------------------------

    def count_failure(self, scope: str, window_start: str) -> int:
        """One more failure of `scope` in the window, and the window's count: one
        statement, so parallel requests each see a different count."""
        rows = self.conn.execute(
            "INSERT INTO throttle (scope, window_start, failures) VALUES (?, ?, 1)"
            " ON CONFLICT (scope, window_start) DO UPDATE"
            " SET failures = throttle.failures + 1 RETURNING failures",
            [scope, window_start],
        ).fetchall()
        return rows[0][0]

    def uncount_failure(self, scope: str, window_start: str) -> None:
        self.conn.execute(
            "UPDATE throttle SET failures = failures - 1"
            " WHERE scope = ? AND window_start = ? AND failures > 0",
            [scope, window_start],
        )

    def forget_failures_before(self, window_start: str) -> None:
        self.conn.execute("DELETE FROM throttle WHERE window_start < ?", [window_start])
