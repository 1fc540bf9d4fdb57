"""The schema of the device's `clinic.db`, every table of it, as one migration set.

Each step runs inside the transaction that records it (sqlite-utils' Migrations), so a
device is at one step or the next, never between. Steps m005 and m006 bring in the tables
that the terminal UI and the sync agent used to create as migration sets of their own
("clinic-web-ui", "clinic-sync-agent"): on a device where those already ran, the tables
are there and the steps only record that they are.
"""

import json
import sqlite3

import sqlite_utils
from sqlite_utils.migrations import Migrations

from edge.domain import records as rec

migrations = Migrations("clinic-device")
MIGRATION_SET = "clinic-device"


def known_migrations() -> list[str]:
    """The names of this code's migrations, in order: what a release's manifest lists as
    its `schema` (`sync/releases.py`)."""
    return [migration.name for migration in migrations._migrations]


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """The clinic-device migrations a database has had, read without changing it."""
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlite_migrations'"
    ).fetchone()
    if not has_table:
        return []
    rows = conn.execute(
        "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY rowid",
        [MIGRATION_SET],
    )
    return [name for (name,) in rows]


def unknown_migrations(conn: sqlite3.Connection) -> list[str]:
    """Migrations the database has had that this code does not know: a newer release
    wrote it (a rollback after a migration), and this code must not touch it."""
    known = set(known_migrations())
    return [name for name in applied_migrations(conn) if name not in known]


# What a ledger row adds to the fund paid: settlements pay, reversals give it back.
_SIGNED_FUND = (
    "CASE kind WHEN 'settlement' THEN coalesce(fund, 0)"
    " WHEN 'reversal' THEN -coalesce(fund, 0) ELSE 0 END"
)


@migrations()
def m001_catalog_policy_roster(db: sqlite_utils.Database) -> None:
    statements = [
        """CREATE TABLE catalog_version (
            version TEXT PRIMARY KEY, source TEXT NOT NULL, item_count INTEGER NOT NULL,
            installed_at TEXT NOT NULL) STRICT""",
        """CREATE TABLE catalog_item (
            code TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL, unit TEXT NOT NULL,
            kind TEXT NOT NULL, class TEXT NOT NULL, price TEXT NOT NULL,
            payment_standard TEXT, self_prepay_ratio TEXT, gender TEXT,
            min_age INTEGER, max_age INTEGER, max_qty TEXT, chronic_only TEXT NOT NULL,
            valid_from TEXT, valid_to TEXT, pinyin TEXT NOT NULL, initials TEXT NOT NULL
        ) STRICT""",
        """CREATE TABLE catalog_search (
            kind INTEGER NOT NULL, key TEXT NOT NULL, code TEXT NOT NULL,
            PRIMARY KEY (kind, key, code)) STRICT, WITHOUT ROWID""",
        """CREATE TABLE policy_version (
            version TEXT PRIMARY KEY, document TEXT NOT NULL, installed_at TEXT NOT NULL
        ) STRICT""",
        """CREATE TABLE roster_version (
            version TEXT PRIMARY KEY, person_count INTEGER NOT NULL, installed_at TEXT NOT NULL
        ) STRICT""",
        """CREATE TABLE person (
            insured_id TEXT PRIMARY KEY, card_no TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
            id_number_masked TEXT NOT NULL, region TEXT NOT NULL, card_expiry TEXT,
            insurance_type TEXT NOT NULL, gender TEXT NOT NULL, birth_date TEXT NOT NULL,
            status TEXT NOT NULL, waiting_until TEXT, categories TEXT NOT NULL,
            chronic_certs TEXT NOT NULL, account_balance INTEGER NOT NULL
                CHECK (account_balance >= 0)) STRICT""",
        """CREATE TABLE accumulator (
            insured_id TEXT NOT NULL REFERENCES person(insured_id), year INTEGER NOT NULL,
            visit_type TEXT NOT NULL, deductible_used INTEGER NOT NULL CHECK (deductible_used >= 0),
            fund_paid INTEGER NOT NULL CHECK (fund_paid >= 0),
            PRIMARY KEY (insured_id, year, visit_type)) STRICT, WITHOUT ROWID""",
        """CREATE TABLE assistance_accumulator (
            insured_id TEXT NOT NULL REFERENCES person(insured_id), year INTEGER NOT NULL,
            assistance_paid INTEGER NOT NULL CHECK (assistance_paid >= 0),
            PRIMARY KEY (insured_id, year)) STRICT, WITHOUT ROWID""",
    ]
    for statement in statements:
        db.execute(statement)


@migrations()
def m002_device_ledger_outbox(db: sqlite_utils.Database) -> None:
    statements = [
        """CREATE TABLE device (
            id INTEGER PRIMARY KEY CHECK (id = 1), device_id TEXT NOT NULL,
            public_key TEXT NOT NULL, created_at TEXT NOT NULL,
            last_sync_at TEXT, synced_seq INTEGER NOT NULL DEFAULT 0,
            unsynced_fund INTEGER NOT NULL DEFAULT 0, clock_behind_since TEXT) STRICT""",
        """CREATE TABLE operator (
            operator_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL
                CHECK (role IN ('doctor', 'coordinator', 'admin', 'tester')),
            active INTEGER NOT NULL DEFAULT 1) STRICT""",
        # `record` is the signed record as JSON; the other columns index it.
        """CREATE TABLE ledger (
            seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, tx_id TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL, day TEXT NOT NULL, insured_id TEXT, fund INTEGER,
            reverses TEXT, record TEXT NOT NULL) STRICT""",
        # Partial indexes: each settlement commit writes as few index pages as it can.
        "CREATE UNIQUE INDEX ledger_reversal ON ledger (reverses) WHERE reverses IS NOT NULL",
        """CREATE INDEX ledger_settlements_by_person_day ON ledger (insured_id, day)
            WHERE kind = 'settlement'""",
        "CREATE INDEX ledger_reversals ON ledger (seq) WHERE kind = 'reversal'",
        """CREATE TRIGGER ledger_is_append_only_update BEFORE UPDATE ON ledger
            BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END""",
        """CREATE TRIGGER ledger_is_append_only_delete BEFORE DELETE ON ledger
            BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END""",
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY REFERENCES ledger(seq), queued_at TEXT NOT NULL) STRICT""",
    ]
    for statement in statements:
        db.execute(statement)


@migrations()
def m003_running_fund_total(db: sqlite_utils.Database) -> None:
    """Every settlement reads the fund settled since the last sync (an offline limit).
    A running total in each ledger row, written with the row, gives it without a scan
    and without rewriting the device row: one page less in every settlement's commit."""
    db.execute("ALTER TABLE ledger ADD COLUMN fund_total INTEGER NOT NULL DEFAULT 0")
    db.execute("DROP TRIGGER ledger_is_append_only_update")  # only for the backfill
    db.execute(
        "UPDATE ledger SET fund_total = running.total FROM (SELECT seq, sum("
        f"{_SIGNED_FUND}) OVER (ORDER BY seq) AS total FROM ledger) AS running"
        " WHERE running.seq = ledger.seq"
    )
    db.execute(
        """CREATE TRIGGER ledger_is_append_only_update BEFORE UPDATE ON ledger
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END"""
    )
    db.execute("ALTER TABLE device DROP COLUMN unsynced_fund")


@migrations()
def m004_ledger_by_day(db: sqlite_utils.Database) -> None:
    """Index the ledger by day first: the visits-per-day count still finds a person's
    settlements of the day, and the day's list (the terminal's records page) no longer
    scans every record the device ever made. Still one index page per settlement."""
    db.execute("DROP INDEX ledger_settlements_by_person_day")
    db.execute("CREATE INDEX ledger_by_day ON ledger (day, insured_id, kind)")


# The terminal UI's tables: PINs and lockouts on the operator table, the diagnosis list
# with its search keys, used e-voucher nonces, visit tokens already settled.
_TERMINAL_UI_TABLES = [
    """CREATE TABLE diagnosis (
            code TEXT PRIMARY KEY, name TEXT NOT NULL, pinyin TEXT NOT NULL,
            initials TEXT NOT NULL) STRICT""",
    """CREATE TABLE diagnosis_search (
            kind INTEGER NOT NULL, key TEXT NOT NULL, code TEXT NOT NULL,
            PRIMARY KEY (kind, key, code)) STRICT, WITHOUT ROWID""",
    """CREATE TABLE used_voucher (
            nonce TEXT PRIMARY KEY, insured_id TEXT NOT NULL, used_at TEXT NOT NULL) STRICT""",
    """CREATE TABLE settled_visit_token (
            token TEXT PRIMARY KEY, settled_at TEXT NOT NULL) STRICT""",
]
_OPERATOR_PIN_COLUMNS = {
    "pin_hash": "TEXT",
    "failed_attempts": "INTEGER NOT NULL DEFAULT 0",
    "locked_until": "TEXT",
}


@migrations()
def m005_terminal_ui(db: sqlite_utils.Database) -> None:
    present = {column.name for column in db["operator"].columns}
    for name, declaration in _OPERATOR_PIN_COLUMNS.items():
        if name not in present:
            db.execute(f"ALTER TABLE operator ADD COLUMN {name} {declaration}")
    for statement in _TERMINAL_UI_TABLES:
        db.execute(statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))


# The sync agent's tables: enrollment, job state, the county updates it installed (with
# their expiry) and the ones it refused.
_SYNC_AGENT_TABLES = [
    """CREATE TABLE sync_enrollment (
            id INTEGER PRIMARY KEY CHECK (id = 1), hub_url TEXT NOT NULL,
            device_id TEXT NOT NULL, slot_id INTEGER, clinic_code TEXT NOT NULL,
            township TEXT NOT NULL, county_name TEXT NOT NULL,
            county_public_key TEXT NOT NULL, enrolled_at TEXT NOT NULL,
            clock_offset_s INTEGER NOT NULL DEFAULT 0) STRICT""",
    """CREATE TABLE sync_job (
            job TEXT PRIMARY KEY, last_attempt_at TEXT, last_success_at TEXT,
            last_error_code TEXT, last_error TEXT, failures INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT) STRICT""",
    """CREATE TABLE sync_installed (
            kind TEXT PRIMARY KEY, version TEXT NOT NULL, format TEXT NOT NULL,
            expires_at TEXT NOT NULL, content_sha256 TEXT NOT NULL,
            installed_at TEXT NOT NULL) STRICT""",
    """CREATE TABLE sync_refusal (
            refusal_id INTEGER PRIMARY KEY, kind TEXT NOT NULL, version TEXT,
            code TEXT NOT NULL, message TEXT NOT NULL, message_zh TEXT NOT NULL,
            refused_at TEXT NOT NULL, repeats INTEGER NOT NULL DEFAULT 1) STRICT""",
]


@migrations()
def m006_sync_agent(db: sqlite_utils.Database) -> None:
    for statement in _SYNC_AGENT_TABLES:
        db.execute(statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))


@migrations()
def m007_one_stop_accumulators(db: sqlite_utils.Database) -> None:
    """Settlement rules version 2: the fund paid per person, date and visit type (the day
    cap), the year's figures of critical illness and each supplement, the employees whose
    personal account a person may use (家庭共济), and catalog items' fixed fund payment."""
    db.execute(
        """CREATE TABLE day_accumulator (
            insured_id TEXT NOT NULL REFERENCES person(insured_id), day TEXT NOT NULL,
            visit_type TEXT NOT NULL, fund_paid INTEGER NOT NULL CHECK (fund_paid >= 0),
            PRIMARY KEY (insured_id, day, visit_type)) STRICT, WITHOUT ROWID"""
    )
    # name: ci_selfpay, ci_paid, or "supplement:" and the supplement's name
    db.execute(
        """CREATE TABLE year_accumulator (
            insured_id TEXT NOT NULL REFERENCES person(insured_id), year INTEGER NOT NULL,
            name TEXT NOT NULL, amount INTEGER NOT NULL CHECK (amount >= 0),
            PRIMARY KEY (insured_id, year, name)) STRICT, WITHOUT ROWID"""
    )
    db.execute("ALTER TABLE person ADD COLUMN family_account_holders TEXT NOT NULL DEFAULT '[]'")
    db.execute("ALTER TABLE catalog_item ADD COLUMN fund_fixed TEXT")


# Search like a clinic HIS: catalog names keyed once per distinct name (a term), from
# every character and syllable; diagnoses the same way; the county's aliases; what the
# clinic settles most and lately; and bundles (组套) of lines a doctor applies at once.
_SEARCH_TABLES = [
    """CREATE TABLE catalog_term (
            term INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
            core_len INTEGER NOT NULL) STRICT""",
    """CREATE TABLE catalog_key (
            kind INTEGER NOT NULL, key TEXT NOT NULL, term INTEGER NOT NULL,
            PRIMARY KEY (kind, key, term)) STRICT, WITHOUT ROWID""",
    """CREATE TABLE diagnosis_key (
            kind INTEGER NOT NULL, key TEXT NOT NULL, code TEXT NOT NULL,
            PRIMARY KEY (kind, key, code)) STRICT, WITHOUT ROWID""",
    # list: 'item' or 'diagnosis'; key: the alias's characters, full pinyin or initials
    """CREATE TABLE search_alias (
            list TEXT NOT NULL CHECK (list IN ('item', 'diagnosis')), key TEXT NOT NULL,
            code TEXT NOT NULL, alias TEXT NOT NULL,
            PRIMARY KEY (list, key, code)) STRICT, WITHOUT ROWID""",
    """CREATE TABLE search_alias_version (
            version TEXT PRIMARY KEY, source TEXT NOT NULL, alias_count INTEGER NOT NULL,
            installed_at TEXT NOT NULL) STRICT""",
    # score: settlements that used the code, halved every 30 days since last_day
    """CREATE TABLE search_pick (
            list TEXT NOT NULL CHECK (list IN ('item', 'diagnosis')), code TEXT NOT NULL,
            score REAL NOT NULL, last_day TEXT NOT NULL,
            PRIMARY KEY (list, code)) STRICT, WITHOUT ROWID""",
    # lines: [{"code", "quantity"}]; diagnoses: [code]; source: 'county' or 'clinic'
    """CREATE TABLE bundle (
            bundle_id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL CHECK (source IN ('county', 'clinic')),
            lines TEXT NOT NULL, diagnoses TEXT NOT NULL, created_by TEXT,
            created_at TEXT NOT NULL) STRICT""",
    "CREATE INDEX catalog_item_by_term ON catalog_item (term, code)",
]


@migrations()
def m008_search_anywhere(db: sqlite_utils.Database) -> None:
    from edge.domain.search_keys import KEY_CODE, core_offset, name_keys

    db.execute("ALTER TABLE catalog_item ADD COLUMN term INTEGER")
    for statement in _SEARCH_TABLES:
        db.execute(statement)
    # the names were keyed from their start only: key them anew, once per distinct name
    names = [row[0] for row in db.execute("SELECT DISTINCT name FROM catalog_item ORDER BY name")]
    for term, name in enumerate(names, start=1):
        db.execute(
            "INSERT INTO catalog_term VALUES (?, ?, ?)", [term, name, len(name) - core_offset(name)]
        )
        db.conn.executemany(
            "INSERT INTO catalog_key VALUES (?, ?, ?)",
            [(kind, key, term) for kind, key in name_keys(name)],
        )
    db.execute("UPDATE catalog_item SET term = (SELECT term FROM catalog_term AS t WHERE t.name ="
               " catalog_item.name)")  # fmt: skip
    db.execute(f"DELETE FROM catalog_search WHERE kind != {KEY_CODE}")
    for code, name in db.execute("SELECT code, name FROM diagnosis").fetchall():
        db.conn.executemany(
            "INSERT OR IGNORE INTO diagnosis_key VALUES (?, ?, ?)",
            [(kind, key, code) for kind, key in name_keys(name)],
        )
    db.execute(f"DELETE FROM diagnosis_search WHERE kind != {KEY_CODE}")


@migrations()
def m009_visit_drafts(db: sqlite_utils.Database) -> None:
    """The terminal UI's visit being built, one per operator, kept on the device so that a
    reload, another tab, a language switch, a restart or the idle lock never loses it:
    the patient chosen (`patient`, JSON: insured id, how identified, the visit token) and
    the visit as the page last sent it (`visit`, JSON); `draft_id` names one patient's
    visit, so that a late save from the page of a patient already settled is refused.
    And when each operator last signed in, so the sign-in page offers the last one."""
    db.execute(
        """CREATE TABLE visit_draft (
            operator_id TEXT PRIMARY KEY REFERENCES operator(operator_id),
            draft_id TEXT NOT NULL, patient TEXT NOT NULL, visit TEXT NOT NULL DEFAULT '{}',
            rev INTEGER NOT NULL DEFAULT 0, started_at TEXT NOT NULL,
            updated_at TEXT NOT NULL) STRICT"""
    )
    db.execute("ALTER TABLE operator ADD COLUMN last_signed_in_at TEXT")


@migrations()
def m010_operator_session_version(db: sqlite_utils.Database) -> None:
    """The terminal UI's sessions live in a signed cookie, which a copy keeps valid: each
    session carries its operator's `session_version`, and signing out or a PIN set anew
    moves the version on, so every older session (a copied cookie too) stops working."""
    db.execute("ALTER TABLE operator ADD COLUMN session_version INTEGER NOT NULL DEFAULT 0")


@migrations()
def m011_hub_certificate(db: sqlite_utils.Database) -> None:
    """TLS to the county hub: the hub certificate (or CA) the device pinned at enrollment
    (PEM; NULL: the system's CAs for https, nothing for a loopback hub), and whether plain
    http:// to a hub that is not on this machine was explicitly allowed for a lab. A device
    enrolled over plain http:// before this step keeps syncing, flagged as a lab setup
    (its status shows it) until it is pinned again (`clinic sync pin`)."""
    db.execute("ALTER TABLE sync_enrollment ADD COLUMN hub_certificate TEXT")
    db.execute(
        "ALTER TABLE sync_enrollment ADD COLUMN plain_http_lab INTEGER NOT NULL DEFAULT 0"
        " CHECK (plain_http_lab IN (0, 1))"
    )
    db.execute(
        "UPDATE sync_enrollment SET plain_http_lab = 1 WHERE lower(hub_url) LIKE 'http://%'"
        " AND NOT (lower(hub_url) LIKE 'http://127.%' OR lower(hub_url) LIKE 'http://localhost%'"
        " OR lower(hub_url) LIKE 'http://[::1]%')"
    )


# m012 belongs to other work of the same release.


@migrations()
def m013_statement_checks(db: sqlite_utils.Database) -> None:
    """The county's clearing statement of a month as the device last checked it: the
    comparison with its own ledger (JSON, `edge.domain.clearing.Comparison.to_json`), when,
    and whether the hub took the device's reconciliation report."""
    db.execute(
        """CREATE TABLE statement_check (
            month TEXT PRIMARY KEY, revision INTEGER NOT NULL, agrees INTEGER NOT NULL
                CHECK (agrees IN (0, 1)),
            comparison TEXT NOT NULL, statement TEXT NOT NULL, checked_at TEXT NOT NULL,
            reported_at TEXT) STRICT"""
    )


@migrations()
def m014_service_requests(db: sqlite_utils.Database) -> None:
    """The village service point's requests (docs/service-point.md): an index of the
    signed `service_request` records (the ledger holds them; whether one is uploaded is
    its seq against `device.synced_seq`, never a copy), the photos they name (the bytes
    are files in DATA_DIR/attachments, `uploaded_at` once the hub took them, `missing_at`
    when the device found its file gone or damaged and stopped trying), the
    county's signed decisions as they arrived, and the county's encryption key the ID
    numbers of enrolments are sealed to (pinned once, verified with the county key)."""
    statements = [
        """CREATE TABLE service_request (
            tx_id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE REFERENCES ledger(seq),
            kind TEXT NOT NULL, created_at TEXT NOT NULL, insured_id TEXT, name TEXT,
            follow_up_of TEXT) STRICT""",
        "CREATE INDEX service_request_follow_up ON service_request (follow_up_of)"
        " WHERE follow_up_of IS NOT NULL",
        """CREATE TABLE request_attachment (
            sha256 TEXT NOT NULL, request_tx_id TEXT NOT NULL REFERENCES service_request(tx_id),
            content_type TEXT NOT NULL, bytes INTEGER NOT NULL, label TEXT NOT NULL,
            uploaded_at TEXT, missing_at TEXT, PRIMARY KEY (sha256, request_tx_id)) STRICT""",
        """CREATE TABLE request_decision (
            serial INTEGER PRIMARY KEY, request_tx_id TEXT NOT NULL
                REFERENCES service_request(tx_id),
            outcome TEXT NOT NULL CHECK (outcome IN ('approved', 'rejected', 'more_info')),
            reason TEXT, result TEXT, decided_by TEXT NOT NULL, decided_at TEXT NOT NULL,
            received_at TEXT NOT NULL, document TEXT NOT NULL) STRICT""",
        "CREATE INDEX request_decision_by_request ON request_decision (request_tx_id, serial)",
        "ALTER TABLE sync_enrollment ADD COLUMN county_encryption_key TEXT",
    ]
    for statement in statements:
        db.execute(statement)
    for (text,) in db.execute(
        "SELECT record FROM ledger WHERE kind = 'service_request' ORDER BY seq"
    ).fetchall():  # none before this step, but a restored ledger may hold some
        index_request_record(db.conn, json.loads(text))


def index_request_record(conn: sqlite3.Connection, record: dict) -> None:
    """Index one signed `service_request` record and the photos it names (the store calls
    it as it appends one, m014 for those already in the ledger). The name shown is the
    applicant's, or the roster's for an insured person."""
    body = record["body"]
    name = (body.get("applicant") or {}).get("name")
    if name is None and body.get("insured_id"):
        row = conn.execute("SELECT name FROM person WHERE insured_id = ?", [body["insured_id"]])
        name = next(iter(row.fetchone() or ()), None)
    conn.execute(
        "INSERT INTO service_request (tx_id, seq, kind, created_at, insured_id, name,"
        " follow_up_of) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [record["tx_id"], record["seq"], body.get("kind"), record["created_at"],
         body.get("insured_id"), name, body.get("follow_up_of")],
    )  # fmt: skip
    for item in body.get("attachments") or []:
        conn.execute(
            "INSERT OR IGNORE INTO request_attachment (sha256, request_tx_id, content_type,"
            " bytes, label) VALUES (?, ?, ?, ?, ?)",
            [item["sha256"], record["tx_id"], item["type"], item["bytes"], item["label"]],
        )


@migrations()
def m015_premiums(db: sqlite_utils.Database) -> None:
    """The premiums collected (参保缴费), indexed from their signed `premium` records so
    that "has this person paid for that year" and the premium lists are one look-up: one
    row per payment (its persons as JSON, and the reversal that cancelled it, if any),
    one per person covered. The ledger stays the truth; a premium record already in it
    (none before this step, but a restored ledger may hold some) is indexed here too."""
    db.execute(
        """CREATE TABLE premium (
            tx_id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, year INTEGER NOT NULL,
            created_at TEXT NOT NULL, day TEXT NOT NULL, payer_name TEXT NOT NULL,
            method TEXT NOT NULL, reference TEXT, account_holder TEXT,
            amount INTEGER NOT NULL, state_paid INTEGER NOT NULL, persons TEXT NOT NULL,
            reversed_by TEXT, reversal_seq INTEGER) STRICT"""
    )
    db.execute("CREATE INDEX premium_by_year ON premium (year, seq)")
    db.execute("CREATE INDEX premium_by_day ON premium (day, seq)")
    db.execute(
        """CREATE TABLE premium_person (
            insured_id TEXT NOT NULL, year INTEGER NOT NULL,
            tx_id TEXT NOT NULL REFERENCES premium(tx_id),
            PRIMARY KEY (insured_id, year, tx_id)) STRICT"""
    )
    for day, text in db.execute(
        "SELECT day, record FROM ledger WHERE kind IN ('premium', 'premium_reversal') ORDER BY seq"
    ).fetchall():
        index_premium_record(db.conn, json.loads(text), day)


def index_premium_record(conn: sqlite3.Connection, record: dict, day: str) -> None:
    """Index one signed `premium` or `premium_reversal` record (the store calls it as
    it appends one; m015 for those already in the ledger)."""
    body = record["body"]
    if record["kind"] == "premium_reversal":
        conn.execute(
            "UPDATE premium SET reversed_by = ?, reversal_seq = ? WHERE tx_id = ?",
            [record["tx_id"], record["seq"], body["reverses"]],
        )
        return
    conn.execute(
        "INSERT INTO premium VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
        [record["tx_id"], record["seq"], body["year"], record["created_at"], day,
         body["payer"]["name"], body["method"], body.get("reference"),
         body.get("account_holder"), body["amount"], body["state_paid"],
         json.dumps(body["persons"], ensure_ascii=False)],
    )  # fmt: skip
    conn.executemany(
        "INSERT OR IGNORE INTO premium_person VALUES (?, ?, ?)",
        [(person["insured_id"], body["year"], record["tx_id"]) for person in body["persons"]],
    )


@migrations()
def m016_account_movements(db: sqlite_utils.Database) -> None:
    """What each record moved personal-account balances by (`records.account_movements`),
    one row per record and person: a roster whose balance the county computed asks "what
    did this terminal's records after seq N move this person's account by", one indexed
    look-up instead of reading the ledger. The records already in the ledger are indexed
    here."""
    db.execute(
        """CREATE TABLE account_movement (
            insured_id TEXT NOT NULL, seq INTEGER NOT NULL REFERENCES ledger(seq),
            amount INTEGER NOT NULL, PRIMARY KEY (insured_id, seq)) STRICT, WITHOUT ROWID"""
    )
    kinds = ", ".join(f"'{kind}'" for kind in rec.ACCOUNT_KINDS)
    # One record at a time (a terminal's years of settlements need not fit in memory), by
    # the row's own seq and kind: a damaged record's text indexes nothing and never stops
    # the terminal from opening (`clinic ledger verify` is what names it).
    for seq, kind, text in db.conn.execute(
        f"SELECT seq, kind, record FROM ledger WHERE kind IN ({kinds}) ORDER BY seq"
    ):
        try:
            body = json.loads(text).get("body")
        except (ValueError, AttributeError):
            continue
        if isinstance(body, dict):
            index_account_movements(db.conn, {"seq": seq, "kind": kind, "body": body})


def index_account_movements(conn: sqlite3.Connection, record: dict) -> None:
    """Index what one signed record moved accounts by (the store calls it as it appends
    one; m016 for those already in the ledger). A reversal's are its original's, undone."""
    if record["kind"] not in rec.ACCOUNT_KINDS:
        return
    body = record["body"]
    original = None
    if record["kind"] == "reversal":
        row = conn.execute(
            "SELECT record FROM ledger WHERE tx_id = ?", [body.get("reverses")]
        ).fetchone()
        original = json.loads(row[0]).get("body") if row else None
    conn.executemany(
        "INSERT INTO account_movement VALUES (?, ?, ?)",
        [
            (insured_id, record["seq"], amount)
            for insured_id, amount in rec.account_movements(record["kind"], body, original).items()
        ],
    )
