"""The PostgreSQL hub's schema: a versioned list of DDL steps (`MIGRATIONS`), each applied
in one transaction and recorded in `schema_migration`, under an advisory lock so that
several processes starting at once apply each step once. Hubs made by earlier code have
these versions recorded: a change is a new step, never an edit of one.
"""

from collections.abc import Callable

import psycopg

from sync.hub.ports import HubStore
from sync.hub.service_index import index_stored

# Advisory lock key (any bigint) held while migrating.
MIGRATION_LOCK = 7_201_101

# A step is DDL text, or a function of the store on the step's connection (inside its
# transaction) for data the step must make from what the hub holds.
Step = str | Callable[[HubStore], object]

MIGRATIONS: list[tuple[int, str, list[Step]]] = [
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
    (
        2,
        "version 2 figures",
        [
            # Settlement rules version 2: the year-wide critical-illness figures beside
            # assistance_paid (on the year-wide scope's row), each supplement's year, the
            # fund paid per person, date and visit type (the day cap); closes by kind.
            """ALTER TABLE accumulator ADD COLUMN ci_selfpay BIGINT NOT NULL DEFAULT 0,
                ADD COLUMN ci_paid BIGINT NOT NULL DEFAULT 0""",
            """CREATE TABLE supplement_accumulator (
                insured_id TEXT NOT NULL, year INTEGER NOT NULL, name TEXT NOT NULL,
                paid BIGINT NOT NULL, PRIMARY KEY (insured_id, year, name))""",
            """CREATE TABLE day_accumulator (
                insured_id TEXT NOT NULL, day TEXT NOT NULL, visit_type TEXT NOT NULL,
                fund_paid BIGINT NOT NULL, PRIMARY KEY (insured_id, day, visit_type))""",
            "CREATE INDEX record_kind ON record (device_id, kind, seq)",
        ],
    ),
    (
        3,
        "malformed records",
        [
            # Records kept as evidence but never computed with (a body that is not
            # well-formed, or one the recomputation failed on); records are append-only.
            """CREATE TABLE malformed_record (
                device_id TEXT NOT NULL, seq BIGINT NOT NULL, problem TEXT NOT NULL,
                flagged_at TEXT NOT NULL, PRIMARY KEY (device_id, seq))""",
        ],
    ),
    (
        4,
        "console sessions and throttle",
        [
            # Console sessions kept by the hub (the cookie holds a random id, whose hash is
            # the key), so that sign-out, a role or password change end them at once.
            """CREATE TABLE console_session (
                session_hash TEXT PRIMARY KEY, username TEXT NOT NULL,
                created_at TEXT NOT NULL, last_seen_at TEXT NOT NULL,
                expires_at TEXT NOT NULL)""",
            "CREATE INDEX console_session_user ON console_session (username)",
            # Failed attempts per scope and time window (enrollment codes).
            """CREATE TABLE throttle (
                scope TEXT NOT NULL, window_start TEXT NOT NULL, failures BIGINT NOT NULL,
                PRIMARY KEY (scope, window_start))""",
            "CREATE INDEX throttle_window ON throttle (window_start)",
        ],
    ),
    (
        5,
        "console indexes",
        [
            # The console's pages read one bounded page each (sqlite m005_console_indexes).
            "CREATE INDEX slot_township ON slot (township, slot_id)",
            "CREATE INDEX alarm_device_newest ON alarm (device_id, alarm_id)",
            "CREATE INDEX alarm_open ON alarm (device_id, code) WHERE cleared_at IS NULL",
            "CREATE INDEX alarm_open_newest ON alarm (alarm_id) WHERE cleared_at IS NULL",
            "CREATE INDEX reconciliation_device_newest ON reconciliation_item (device_id, item_id)",
            "CREATE INDEX reconciliation_device_code ON reconciliation_item (device_id, code)",
        ],
    ),
    (
        6,
        "software releases",
        [
            # Software releases the county published (sqlite m006_software_releases);
            # position is the order of publication.
            """CREATE TABLE software_release (
                version TEXT NOT NULL, arch TEXT NOT NULL, python TEXT NOT NULL,
                manifest TEXT NOT NULL, signature TEXT NOT NULL, published_at TEXT NOT NULL,
                withdrawn_at TEXT, position BIGSERIAL NOT NULL UNIQUE,
                PRIMARY KEY (version, arch))""",
        ],
    ),
    (
        7,
        "clearing statements",
        [
            # The county's clearing statements, their events and the devices' reports
            # (sqlite m007_clearing_statements).
            """CREATE TABLE clearing_statement (
                clinic_code TEXT NOT NULL, month TEXT NOT NULL, revision BIGINT NOT NULL,
                built_at TEXT NOT NULL, device_ids TEXT NOT NULL, content TEXT NOT NULL,
                status TEXT NOT NULL, payment_reference TEXT, paid_on TEXT, status_by TEXT,
                status_at TEXT, PRIMARY KEY (clinic_code, month, revision))""",
            "CREATE INDEX clearing_statement_month ON clearing_statement (month, clinic_code)",
            """CREATE TABLE statement_event (
                event_id BIGSERIAL PRIMARY KEY, clinic_code TEXT NOT NULL, month TEXT NOT NULL,
                revision BIGINT NOT NULL, action TEXT NOT NULL, actor TEXT NOT NULL,
                at TEXT NOT NULL, detail TEXT NOT NULL)""",
            "CREATE INDEX statement_event_clinic ON statement_event (clinic_code, month, event_id)",
            """CREATE TABLE statement_report (
                clinic_code TEXT NOT NULL, month TEXT NOT NULL, revision BIGINT NOT NULL,
                device_id TEXT NOT NULL, received_at TEXT NOT NULL, agrees INTEGER NOT NULL,
                report TEXT NOT NULL,
                PRIMARY KEY (clinic_code, month, revision, device_id))""",
        ],
    ),
    (
        8,
        "service point",
        [
            # Requests, the county's decisions, their photos and the premiums collected
            # (sqlite m008_service_point). A decision's serial is handed out under a lock
            # (`PgHubStore.next_decision_serial`), never by a sequence: devices read
            # "after N", so a serial must never commit before a smaller one.
            """CREATE TABLE service_request (
                tx_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, clinic TEXT NOT NULL,
                township TEXT NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL,
                created_at TEXT NOT NULL, insured_id TEXT, applicant TEXT,
                sealed_id_number TEXT, details TEXT NOT NULL, attachments TEXT NOT NULL,
                note TEXT, follow_up_of TEXT, state TEXT NOT NULL, updated_at TEXT NOT NULL,
                UNIQUE (device_id, seq))""",
            "CREATE INDEX service_request_queue ON service_request (township, state, kind)",
            "CREATE INDEX service_request_follow_up ON service_request (follow_up_of)",
            """CREATE TABLE request_decision (
                serial BIGINT PRIMARY KEY, request_tx_id TEXT NOT NULL,
                device_id TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT, result TEXT,
                decided_by TEXT NOT NULL, decided_at TEXT NOT NULL, document TEXT NOT NULL)""",
            "CREATE INDEX request_decision_device ON request_decision (device_id, serial)",
            "CREATE INDEX request_decision_request ON request_decision (request_tx_id, serial)",
            # A photo is kept per device that uploads it: two may send the same bytes.
            """CREATE TABLE request_attachment (
                sha256 TEXT NOT NULL, device_id TEXT NOT NULL, content_type TEXT NOT NULL,
                bytes BIGINT NOT NULL, data BYTEA NOT NULL, received_at TEXT NOT NULL,
                PRIMARY KEY (sha256, device_id))""",
            """CREATE TABLE premium (
                tx_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, clinic TEXT NOT NULL,
                township TEXT NOT NULL, seq BIGINT NOT NULL, created_at TEXT NOT NULL,
                year BIGINT NOT NULL, method TEXT NOT NULL, reference TEXT,
                account_holder TEXT, amount BIGINT NOT NULL, state_paid BIGINT NOT NULL,
                persons TEXT NOT NULL, person_count BIGINT NOT NULL,
                reversed_by TEXT, reversed_at TEXT,
                UNIQUE (device_id, seq))""",
            "CREATE INDEX premium_year ON premium (year, township, clinic)",
            """CREATE TABLE county_seal_key (
                id INTEGER PRIMARY KEY CHECK (id = 1), key_id TEXT NOT NULL,
                recorded_at TEXT NOT NULL)""",
            # the records stored before (devices upgraded first), as ingest indexes them
            index_stored,
        ],
    ),
    (
        9,
        "account devices",
        [
            # Which devices may have moved each person's account (sqlite m009).
            """CREATE TABLE account_device (
                insured_id TEXT NOT NULL, device_id TEXT NOT NULL,
                PRIMARY KEY (insured_id, device_id))""",
            # Filled from the records stored before, in SQL (see sqlite m009).
            """INSERT INTO account_device (insured_id, device_id)
            SELECT DISTINCT person, device_id FROM (
                SELECT record::jsonb #>> '{body,insured_id}' AS person, device_id
                    FROM record WHERE kind IN ('settlement', 'reversal')
                UNION ALL SELECT record::jsonb #>> '{body,visit,family_account_holder}',
                    device_id FROM record WHERE kind = 'settlement'
                UNION ALL SELECT record::jsonb #>> '{body,account_holder}', device_id
                    FROM record WHERE kind IN ('premium', 'premium_reversal')) AS named
            WHERE person IS NOT NULL AND person <> ''
            ON CONFLICT DO NOTHING""",
        ],
    ),
]


def pending_migrations(conn: psycopg.Connection) -> list[int]:
    [(exists,)] = conn.execute("SELECT to_regclass('schema_migration') IS NOT NULL").fetchall()
    done = set()
    if exists:
        done = {v for (v,) in conn.execute("SELECT version FROM schema_migration")}
    return [version for version, _name, _steps in MIGRATIONS if version not in done]


def migrate(
    conn: psycopg.Connection, store_on: Callable[[psycopg.Connection], HubStore]
) -> list[int]:
    """Apply the pending steps, each in one transaction; safe with several processes.
    `store_on` makes the store on `conn` for the steps that are functions."""
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migration (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
    for version, name, steps in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            done = conn.execute(
                "SELECT 1 FROM schema_migration WHERE version = %s", [version]
            ).fetchone()
            if done:
                continue
            for step in steps:
                if isinstance(step, str):
                    conn.execute(step)
                else:
                    step(store_on(conn))
            conn.execute(
                "INSERT INTO schema_migration (version, name) VALUES (%s, %s)", [version, name]
            )
            applied.append(version)
    return applied
