"""The SQLite hub's schema: the migration set `clinic-hub` (sqlite-utils), applied by
`SqliteHubStore.open`. Hubs made by earlier code have these steps recorded under these
names: a change is a new step, never an edit of one.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import sqlite_utils
from sqlite_utils.migrations import Migrations

from sync.hub.adapters.sql import SQLITE, SqlHubStore
from sync.hub.service_index import index_stored

migrations = Migrations("clinic-hub")


class _MigratingStore(SqlHubStore):
    """The store's queries on the connection a step runs in (inside its transaction)."""

    dialect = SQLITE

    @contextmanager
    def unit_of_work(self) -> Iterator[None]:
        yield  # the step's own transaction


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


@migrations()
def m002_version_2_figures(db: sqlite_utils.Database) -> None:
    """Settlement rules version 2: the county's year-wide critical-illness figures beside
    `assistance_paid` (on the year-wide scope's row), what each supplement paid a person
    in a year, and what the fund paid a person on one date for one visit type (the day
    cap). Daily closes are found by kind (the fleet's last close of a device)."""
    statements = [
        "ALTER TABLE accumulator ADD COLUMN ci_selfpay INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE accumulator ADD COLUMN ci_paid INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE supplement_accumulator (
            insured_id TEXT NOT NULL, year INTEGER NOT NULL, name TEXT NOT NULL,
            paid INTEGER NOT NULL,
            PRIMARY KEY (insured_id, year, name)) STRICT, WITHOUT ROWID""",
        """CREATE TABLE day_accumulator (
            insured_id TEXT NOT NULL, day TEXT NOT NULL, visit_type TEXT NOT NULL,
            fund_paid INTEGER NOT NULL,
            PRIMARY KEY (insured_id, day, visit_type)) STRICT, WITHOUT ROWID""",
        "CREATE INDEX record_kind ON record (device_id, kind, seq)",
    ]
    for statement in statements:
        db.execute(statement)


@migrations()
def m003_malformed_records(db: sqlite_utils.Database) -> None:
    """Records stored as evidence but never computed with: signed and chained, their body
    not well-formed (`edge.domain.records.body_problem`), or one the recomputation failed
    on. Records are append-only, so the flag is a row of its own."""
    db.execute(
        """CREATE TABLE malformed_record (
            device_id TEXT NOT NULL, seq INTEGER NOT NULL, problem TEXT NOT NULL,
            flagged_at TEXT NOT NULL, PRIMARY KEY (device_id, seq)) STRICT, WITHOUT ROWID"""
    )


@migrations()
def m004_console_sessions_throttle(db: sqlite_utils.Database) -> None:
    """Console sessions kept by the hub (the cookie holds only a random id, whose hash is
    the key here), so that signing out, a role or password change end them at once; and
    counters of failed attempts per scope and time window (enrollment codes)."""
    statements = [
        """CREATE TABLE console_session (
            session_hash TEXT PRIMARY KEY, username TEXT NOT NULL,
            created_at TEXT NOT NULL, last_seen_at TEXT NOT NULL,
            expires_at TEXT NOT NULL) STRICT, WITHOUT ROWID""",
        "CREATE INDEX console_session_user ON console_session (username)",
        """CREATE TABLE throttle (
            scope TEXT NOT NULL, window_start TEXT NOT NULL, failures INTEGER NOT NULL,
            PRIMARY KEY (scope, window_start)) STRICT, WITHOUT ROWID""",
        "CREATE INDEX throttle_window ON throttle (window_start)",
    ]
    for statement in statements:
        db.execute(statement)


@migrations()
def m005_console_indexes(db: sqlite_utils.Database) -> None:
    """The console's pages read one bounded page each (LIMIT/OFFSET, newest first): the
    fleet by township then slot, a device's alarms and reconciliation items newest first,
    the open alarms (a device's codes; the county's newest), differences by device and
    code. A device's records are listed on their (device_id, seq) key."""
    statements = [
        "CREATE INDEX slot_township ON slot (township, slot_id)",
        "CREATE INDEX alarm_device_newest ON alarm (device_id, alarm_id)",
        "CREATE INDEX alarm_open ON alarm (device_id, code) WHERE cleared_at IS NULL",
        "CREATE INDEX alarm_open_newest ON alarm (alarm_id) WHERE cleared_at IS NULL",
        "CREATE INDEX reconciliation_device_newest ON reconciliation_item (device_id, item_id)",
        "CREATE INDEX reconciliation_device_code ON reconciliation_item (device_id, code)",
    ]
    for statement in statements:
        db.execute(statement)


@migrations()
def m006_software_releases(db: sqlite_utils.Database) -> None:
    """Software releases the county published (`sync.releases`), one row per version and
    architecture, in order of publication (rowid); a withdrawn one is no longer offered.
    The files are in the data directory (`releases/<version>/<arch>/`)."""
    db.execute(
        """CREATE TABLE software_release (
            version TEXT NOT NULL, arch TEXT NOT NULL, python TEXT NOT NULL,
            manifest TEXT NOT NULL, signature TEXT NOT NULL, published_at TEXT NOT NULL,
            withdrawn_at TEXT, PRIMARY KEY (version, arch)) STRICT"""
    )


@migrations()
def m007_clearing_statements(db: sqlite_utils.Database) -> None:
    """The county's clearing statements (`docs/statements.md`): each revision of a
    clinic's month as built (its content JSON) with the status the county set on it; what
    happened to them (built, revised, agreed, paid, reported: who and when); the devices'
    reconciliation reports. Revisions and events are never deleted."""
    statements = [
        """CREATE TABLE clearing_statement (
            clinic_code TEXT NOT NULL, month TEXT NOT NULL, revision INTEGER NOT NULL,
            built_at TEXT NOT NULL, device_ids TEXT NOT NULL, content TEXT NOT NULL,
            status TEXT NOT NULL, payment_reference TEXT, paid_on TEXT, status_by TEXT,
            status_at TEXT, PRIMARY KEY (clinic_code, month, revision)) STRICT""",
        "CREATE INDEX clearing_statement_month ON clearing_statement (month, clinic_code)",
        """CREATE TABLE statement_event (
            event_id INTEGER PRIMARY KEY, clinic_code TEXT NOT NULL, month TEXT NOT NULL,
            revision INTEGER NOT NULL, action TEXT NOT NULL, actor TEXT NOT NULL,
            at TEXT NOT NULL, detail TEXT NOT NULL) STRICT""",
        "CREATE INDEX statement_event_clinic ON statement_event (clinic_code, month, event_id)",
        """CREATE TABLE statement_report (
            clinic_code TEXT NOT NULL, month TEXT NOT NULL, revision INTEGER NOT NULL,
            device_id TEXT NOT NULL, received_at TEXT NOT NULL, agrees INTEGER NOT NULL,
            report TEXT NOT NULL,
            PRIMARY KEY (clinic_code, month, revision, device_id)) STRICT""",
    ]
    for statement in statements:
        db.execute(statement)


@migrations()
def m008_service_point(db: sqlite_utils.Database) -> None:
    """The village service point (`docs/service-point.md`): the requests devices upload
    (`service_request` records) indexed for the county's queue, with their state; the
    county's signed decisions in the order devices fetch them (serial); the photos a
    request names, uploaded after it; the premiums collected (`premium` records) and
    their reversal. The ledger records stay the evidence: these rows are made from them
    at ingest, in the same transaction; the records a hub stored before (its devices
    upgraded first) are indexed here. A photo is kept per device that uploads it: two
    devices may send the same bytes."""
    statements = [
        """CREATE TABLE service_request (
            tx_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, clinic TEXT NOT NULL,
            township TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
            created_at TEXT NOT NULL, insured_id TEXT, applicant TEXT,
            sealed_id_number TEXT, details TEXT NOT NULL, attachments TEXT NOT NULL,
            note TEXT, follow_up_of TEXT, state TEXT NOT NULL, updated_at TEXT NOT NULL,
            UNIQUE (device_id, seq)) STRICT""",
        "CREATE INDEX service_request_queue ON service_request (township, state, kind)",
        "CREATE INDEX service_request_follow_up ON service_request (follow_up_of)",
        """CREATE TABLE request_decision (
            serial INTEGER PRIMARY KEY, request_tx_id TEXT NOT NULL, device_id TEXT NOT NULL,
            outcome TEXT NOT NULL, reason TEXT, result TEXT, decided_by TEXT NOT NULL,
            decided_at TEXT NOT NULL, document TEXT NOT NULL) STRICT""",
        "CREATE INDEX request_decision_device ON request_decision (device_id, serial)",
        "CREATE INDEX request_decision_request ON request_decision (request_tx_id, serial)",
        """CREATE TABLE request_attachment (
            sha256 TEXT NOT NULL, device_id TEXT NOT NULL, content_type TEXT NOT NULL,
            bytes INTEGER NOT NULL, data BLOB NOT NULL, received_at TEXT NOT NULL,
            PRIMARY KEY (sha256, device_id)) STRICT""",
        """CREATE TABLE premium (
            tx_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, clinic TEXT NOT NULL,
            township TEXT NOT NULL, seq INTEGER NOT NULL, created_at TEXT NOT NULL,
            year INTEGER NOT NULL, method TEXT NOT NULL, reference TEXT,
            account_holder TEXT, amount INTEGER NOT NULL, state_paid INTEGER NOT NULL,
            persons TEXT NOT NULL, person_count INTEGER NOT NULL,
            reversed_by TEXT, reversed_at TEXT,
            UNIQUE (device_id, seq)) STRICT""",
        "CREATE INDEX premium_year ON premium (year, township, clinic)",
        # The id of the encryption key the ID numbers are sealed to, recorded when the hub
        # first has it: a missing or different key file then stops the hub.
        """CREATE TABLE county_seal_key (
            id INTEGER PRIMARY KEY CHECK (id = 1), key_id TEXT NOT NULL,
            recorded_at TEXT NOT NULL) STRICT""",
    ]
    for statement in statements:
        db.execute(statement)
    index_stored(_MigratingStore(db.conn))


@migrations()
def m009_account_devices(db: sqlite_utils.Database) -> None:
    """Which devices may have moved each person's account (`service_index`): a balance
    the county computes for a point release names how far it counted those devices'
    records. Filled from the records stored before, in SQL (a county's records would not
    fit in memory): a few more names than ingest would note (a malformed record's) only
    name a device whose counted seq is then given, which is never wrong."""
    db.execute(
        """CREATE TABLE account_device (
            insured_id TEXT NOT NULL, device_id TEXT NOT NULL,
            PRIMARY KEY (insured_id, device_id)) STRICT, WITHOUT ROWID"""
    )
    db.execute(
        """INSERT OR IGNORE INTO account_device (insured_id, device_id)
        SELECT DISTINCT person, device_id FROM (
            SELECT json_extract(record, '$.body.insured_id') AS person, device_id
                FROM record WHERE kind IN ('settlement', 'reversal')
            UNION ALL SELECT json_extract(record, '$.body.visit.family_account_holder'),
                device_id FROM record WHERE kind = 'settlement'
            UNION ALL SELECT json_extract(record, '$.body.account_holder'), device_id
                FROM record WHERE kind IN ('premium', 'premium_reversal'))
        WHERE typeof(person) = 'text' AND person != ''"""
    )
