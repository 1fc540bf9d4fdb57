"""The sync agent's own tables in the device's `clinic.db`: enrollment, job state, the
county updates it installed (with their expiry) and the ones it refused.

The tables belong to the device store's one migration set (`edge/adapters/schema.py`,
step m006), made when the store is opened. Every write goes through
`store.write_transaction()`, like the device's own writes.
"""

import json
from dataclasses import dataclass
from datetime import datetime

from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.clock import CLINIC_TZ
from sync.protocol import SyncError


def stamp(now: datetime) -> str:
    """The device's own time format (as `device.created_at`)."""
    return now.astimezone(CLINIC_TZ).replace(microsecond=0).isoformat()


def installed_version(store: SqliteDeviceStore, kind: str) -> str | None:
    """The version of a county update's kind that the device store holds (county or local)."""
    return {
        "catalog": store.catalog_version,
        "policy": store.policy_version,
        "roster": store.roster_version,
        "aliases": store.alias_version,
    }[kind]()


@dataclass(frozen=True)
class Enrollment:
    hub_url: str
    device_id: str
    slot_id: int | None
    clinic_code: str
    township: str
    county_name: str
    county_public_key: str
    enrolled_at: str
    clock_offset_s: int
    # The hub's certificate or CA pinned at enrollment (PEM), and plain http:// allowed
    # to a hub off this machine (a lab): see `sync.agent.client.HubClient`.
    hub_certificate: str | None = None
    plain_http_lab: bool = False
    # The county's X25519 key enrolments' ID numbers are sealed to (base64url), verified
    # with the county key and pinned once (`pin_encryption_key`); None until the hub gave it.
    county_encryption_key: str | None = None


@dataclass(frozen=True)
class JobState:
    job: str
    last_attempt_at: str | None = None
    last_success_at: str | None = None
    last_error_code: str | None = None
    last_error: str | None = None
    failures: int = 0
    next_attempt_at: str | None = None


@dataclass(frozen=True)
class Installed:
    kind: str
    version: str
    update_format: str
    expires_at: str
    content_sha256: str
    installed_at: str


@dataclass(frozen=True)
class Refused:
    refusal_id: int
    kind: str
    version: str | None
    code: str
    message: str
    message_zh: str
    refused_at: str
    repeats: int


def enrollment(store: SqliteDeviceStore) -> Enrollment | None:
    row = store.db.execute(
        "SELECT hub_url, device_id, slot_id, clinic_code, township, county_name,"
        " county_public_key, enrolled_at, clock_offset_s, hub_certificate, plain_http_lab,"
        " county_encryption_key FROM sync_enrollment"
    ).fetchone()
    if row is None:
        return None
    fields = list(row)
    fields[-2] = bool(fields[-2])  # plain_http_lab, an integer in SQLite
    return Enrollment(*fields)


def save_enrollment(store: SqliteDeviceStore, value: Enrollment) -> None:
    """Inside `store.write_transaction()`."""
    store.db.execute(
        "INSERT INTO sync_enrollment (id, hub_url, device_id, slot_id, clinic_code, township,"
        " county_name, county_public_key, enrolled_at, clock_offset_s, hub_certificate,"
        " plain_http_lab, county_encryption_key) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            value.hub_url,
            value.device_id,
            value.slot_id,
            value.clinic_code,
            value.township,
            value.county_name,
            value.county_public_key,
            value.enrolled_at,
            value.clock_offset_s,
            value.hub_certificate,
            int(value.plain_http_lab),
            value.county_encryption_key,
        ],
    )


def pin_encryption_key(store: SqliteDeviceStore, public_key: str) -> bool:
    """Pin the county's encryption key (already verified with the county key): True when
    it was not pinned before. A different key never replaces the pinned one (SyncError
    ENCRYPTION_KEY_CHANGED): ID numbers sealed to a key the county did not pin with this
    device could be opened by whoever holds it."""
    with store.write_transaction():
        row = store.db.execute("SELECT county_encryption_key FROM sync_enrollment").fetchone()
        if row is None:
            raise SyncError("NOT_ENROLLED")
        if row[0] == public_key:
            return False
        if row[0] is not None:
            raise SyncError(
                "ENCRYPTION_KEY_CHANGED",
                "the hub offers another county encryption key than the one pinned",
            )
        store.db.execute("UPDATE sync_enrollment SET county_encryption_key = ?", [public_key])
    return True


def save_hub_pin(
    store: SqliteDeviceStore, hub_url: str, certificate: str | None, plain_http_lab: bool
) -> None:
    """Pin the hub again (a new certificate, or a new address): inside
    `store.write_transaction()`."""
    store.db.execute(
        "UPDATE sync_enrollment SET hub_url = ?, hub_certificate = ?, plain_http_lab = ?",
        [hub_url, certificate, int(plain_http_lab)],
    )


def save_clock_offset(store: SqliteDeviceStore, offset_s: int) -> None:
    with store.write_transaction():
        store.db.execute("UPDATE sync_enrollment SET clock_offset_s = ?", [offset_s])


def job_states(store: SqliteDeviceStore) -> dict[str, JobState]:
    rows = store.db.execute(
        "SELECT job, last_attempt_at, last_success_at, last_error_code, last_error, failures,"
        " next_attempt_at FROM sync_job WHERE job != ?",
        [REVOCATION],
    )
    return {row[0]: JobState(*row) for row in rows}


def record_job_outcome(
    store: SqliteDeviceStore,
    job: str,
    at: datetime,
    *,
    error_code: str | None = None,
    error: str | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    """A job finished: reset its failures on success, count one more and set when to try
    again on failure."""
    stamp = at.isoformat(timespec="seconds")
    retry = None if next_attempt_at is None else next_attempt_at.isoformat(timespec="seconds")
    with store.write_transaction():
        if error_code is None:
            store.db.execute(
                "INSERT INTO sync_job (job, last_attempt_at, last_success_at, failures)"
                " VALUES (?, ?, ?, 0) ON CONFLICT (job) DO UPDATE SET"
                " last_attempt_at = excluded.last_attempt_at,"
                " last_success_at = excluded.last_success_at, last_error_code = NULL,"
                " last_error = NULL, failures = 0, next_attempt_at = NULL",
                [job, stamp, stamp],
            )
        else:
            store.db.execute(
                "INSERT INTO sync_job (job, last_attempt_at, last_error_code, last_error,"
                " failures, next_attempt_at) VALUES (?, ?, ?, ?, 1, ?)"
                " ON CONFLICT (job) DO UPDATE SET last_attempt_at = excluded.last_attempt_at,"
                " last_error_code = excluded.last_error_code, last_error = excluded.last_error,"
                " failures = failures + 1, next_attempt_at = excluded.next_attempt_at",
                [job, stamp, error_code, error, retry],
            )


def installed_updates(store: SqliteDeviceStore) -> dict[str, Installed]:
    rows = store.db.execute(
        "SELECT kind, version, format, expires_at, content_sha256, installed_at FROM sync_installed"
    )
    return {row[0]: Installed(*row) for row in rows}


def save_installed(store: SqliteDeviceStore, value: Installed) -> None:
    with store.write_transaction():
        store.db.execute(
            "INSERT OR REPLACE INTO sync_installed VALUES (?, ?, ?, ?, ?, ?)",
            [
                value.kind,
                value.version,
                value.update_format,
                value.expires_at,
                value.content_sha256,
                value.installed_at,
            ],
        )


def record_refusal(
    store: SqliteDeviceStore,
    kind: str,
    version: str | None,
    code: str,
    message: str,
    message_zh: str,
    at: datetime,
) -> bool:
    """Remember a refused update; True when it is new (not a repeat of the latest refusal of
    the same kind, version and reason), so that the caller signs one event, not one a round."""
    with store.write_transaction():
        latest = store.db.execute(
            "SELECT refusal_id, version, code FROM sync_refusal WHERE kind = ?"
            " ORDER BY refusal_id DESC LIMIT 1",
            [kind],
        ).fetchone()
        if latest is not None and (latest[1], latest[2]) == (version, code):
            store.db.execute(
                "UPDATE sync_refusal SET repeats = repeats + 1, refused_at = ?"
                " WHERE refusal_id = ?",
                [at.isoformat(timespec="seconds"), latest[0]],
            )
            return False
        store.db.execute(
            "INSERT INTO sync_refusal (kind, version, code, message, message_zh, refused_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [kind, version, code, message, message_zh, at.isoformat(timespec="seconds")],
        )
        return True


def refusals(store: SqliteDeviceStore, limit: int = 20) -> list[Refused]:
    rows = store.db.execute(
        "SELECT refusal_id, kind, version, code, message, message_zh, refused_at, repeats"
        " FROM sync_refusal ORDER BY refusal_id DESC LIMIT ?",
        [limit],
    )
    return [Refused(*row) for row in rows]


def apply_ack(
    store: SqliteDeviceStore, acked_seq: int, acked_hash: object, genesis: str, at: str
) -> int:
    """The hub holds every record up to `acked_seq`: drop them from the outbox (never from
    the ledger) and move the device's sync mark (the fund settled since the last sync
    counts from it) and its last sync time, in one transaction. Returns the new mark.

    Only an acknowledgement of this device's own ledger counts: `acked_seq` at most its
    head and `acked_hash` its record's hash there (`genesis` at 0); anything else raises
    ACK_MISMATCH with nothing moved. A hub that reports less than the device already knew
    (restored from a backup) never moves the mark back; the agent uploads again from
    what the hub holds."""
    with store.write_transaction():
        (synced,) = store.db.execute("SELECT synced_seq FROM device").fetchone()
        (head,) = store.db.execute("SELECT coalesce(max(seq), 0) FROM ledger").fetchone()
        if acked_seq > head:
            raise SyncError(
                "ACK_MISMATCH", f"the hub acknowledged seq {acked_seq}; this ledger ends at {head}"
            )
        row = store.db.execute("SELECT record FROM ledger WHERE seq = ?", [acked_seq]).fetchone()
        own = genesis if row is None else json.loads(row[0]).get("hash")
        if acked_hash != own:
            raise SyncError(
                "ACK_MISMATCH", f"the hub's record {acked_seq} is not this device's record"
            )
        mark = max(synced, acked_seq)
        store.db.execute("DELETE FROM outbox WHERE seq <= ?", [mark])
        # A sync happened when the hub took something new or holds everything; a hub that
        # answers but takes nothing (refusing a record) must not look like a sync.
        synced_now = mark > synced or mark == head
        store.db.execute(
            "UPDATE device SET synced_seq = ?,"
            " last_sync_at = CASE WHEN ? THEN ? ELSE last_sync_at END",
            [mark, synced_now, at],
        )
    return mark


# ---- the county's word on this device ----------------------------------------------------

# The `sync_job` row that holds it (not a job: the scheduler never runs it). While the hub
# answers that this device is revoked, `last_error_code` holds the hub's code,
# `last_attempt_at` when it was first heard and `failures` how many answers said so since;
# the next request the hub accepts clears the code (`last_success_at`). The device store
# reads the same row to stop settling (`SqliteDeviceStore.revoked_since`).
REVOCATION = "revocation"
REVOKED_CODES = ("DEVICE_REVOKED", "SLOT_REVOKED")


@dataclass(frozen=True)
class Revocation:
    code: str
    detail: str
    since: str
    answers: int


def revocation(store: SqliteDeviceStore) -> Revocation | None:
    row = store.db.execute(
        "SELECT last_error_code, coalesce(last_error, ''), last_attempt_at, failures"
        " FROM sync_job WHERE job = ? AND last_error_code IS NOT NULL",
        [REVOCATION],
    ).fetchone()
    return None if row is None else Revocation(*row)


def record_revoked(store: SqliteDeviceStore, code: str, detail: str, at: datetime) -> bool:
    """The hub answered that this device (or its slot) is revoked. True the first time."""
    stamp = at.isoformat(timespec="seconds")
    with store.write_transaction():
        known = revocation(store) is not None
        if known:
            store.db.execute(
                "UPDATE sync_job SET failures = failures + 1, last_error_code = ?,"
                " last_error = ? WHERE job = ?",
                [code, detail, REVOCATION],
            )
        else:
            store.db.execute(
                "INSERT INTO sync_job (job, last_attempt_at, last_error_code, last_error,"
                " failures) VALUES (?, ?, ?, ?, 1) ON CONFLICT (job) DO UPDATE SET"
                " last_attempt_at = excluded.last_attempt_at,"
                " last_error_code = excluded.last_error_code,"
                " last_error = excluded.last_error, failures = 1",
                [REVOCATION, stamp, code, detail],
            )
    return not known


def clear_revoked(store: SqliteDeviceStore, at: datetime) -> bool:
    """The hub accepted a request of this device: it is not revoked (any more). True when
    it had been."""
    with store.write_transaction():
        cleared = store.db.execute(
            "UPDATE sync_job SET last_error_code = NULL, last_error = NULL, failures = 0,"
            " last_success_at = ? WHERE job = ? AND last_error_code IS NOT NULL",
            [at.isoformat(timespec="seconds"), REVOCATION],
        ).rowcount
    return cleared > 0


def clear_backoff(store: SqliteDeviceStore, jobs: tuple[str, ...]) -> None:
    """The hub answers again: the jobs that were waiting out a backoff run at their next
    turn instead."""
    with store.write_transaction():
        for job in jobs:
            store.db.execute("UPDATE sync_job SET next_attempt_at = NULL WHERE job = ?", [job])
