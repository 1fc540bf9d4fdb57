"""The device's sync agent: enrollment, and three jobs run by APScheduler 3.x —

- `upload`: the outbox, in bounded gzip batches, until the hub has acknowledged it all;
  nothing leaves the outbox before the hub's acknowledgement, and the ledger itself is
  never touched;
- `updates`: signed policy, catalog and roster versions from the county, verified
  against the county key pinned at enrollment before anything is applied;
- `heartbeat`: versions, records waiting, disk free, the device clock.

Each job runs once at a time (a lock per data directory and job) and backs off
exponentially, with jitter, after failures. `sync_once` runs all three now (the UI's
"sync now", `clinic sync once`); `sync_status` is what the status page shows.

The terminal UI calls exactly: `enroll`, `sync_once`, `sync_status`, `start_scheduler`.
"""

import logging
import random
import shutil
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from edge import services
from edge.adapters.identity import DeviceIdentity, IdentityError
from edge.adapters.sqlite_store import SqliteDeviceStore, StoreError
from edge.clock import Clock
from sync import agent_state
from sync.client import HubClient
from sync.protocol import (
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    SyncError,
    backoff_delay,
    encode_batch,
    iso,
    key_fingerprint,
    load_public_key,
    plan_batch,
)
from sync.updates import (
    DELTA,
    KINDS,
    VerifiedUpdate,
    catalog_item_to_json,
    catalog_items_of,
    policy_document_of,
    roster_document_of,
    verify_update,
)

log = logging.getLogger(__name__)

JOBS = ("upload", "updates", "heartbeat")
JOB_INTERVALS_S = {"upload": 60, "updates": 15 * 60, "heartbeat": 5 * 60}
AGENT = "clinic-sync-agent/1"
UPDATE_ORDER = ("policy", "catalog", "roster")  # a catalog may need the newer policy
LOCK_WAIT_S = 120.0

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _job_lock(data_dir: Path, job: str) -> threading.Lock:
    key = (str(Path(data_dir).resolve()), job)
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _stamp(now: datetime) -> str:
    """The device's own time format (as `device.created_at`)."""
    return now.astimezone(services.CLINIC_TZ).replace(microsecond=0).isoformat()


# ---- enrollment ------------------------------------------------------------------------------


def enroll(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    data_dir: Path,
    hub_url: str,
    code: str,
    now: datetime,
) -> dict:
    """Join a county hub with a one-time code: send this device's existing id and public
    key, pin the county's public key, and return the clinic details."""
    agent_state.ensure_tables(store)
    existing = agent_state.enrollment(store)
    if existing is not None:
        raise SyncError(
            "ALREADY_ENROLLED", f"with {existing.hub_url} as clinic {existing.clinic_code}"
        )
    client = HubClient(hub_url, identity)
    answer = client.enroll(
        {
            "code": code.strip(),
            "device_id": identity.device_id,
            "public_key": identity.public_key_b64,
            "device_clock": iso(now),
        },
        now,
    )
    fields = (
        "device_id",
        "clinic_code",
        "township",
        "county_name",
        "county_public_key",
        "enrolled_at",
    )
    if not all(isinstance(answer.get(name), str) for name in fields):
        raise SyncError("BAD_RESPONSE", "the enrollment answer lacks the clinic details")
    if answer["device_id"] != identity.device_id:
        raise SyncError("BAD_RESPONSE", "the hub enrolled another device id")
    load_public_key(answer["county_public_key"])
    value = agent_state.Enrollment(
        hub_url=client.base_url,
        device_id=identity.device_id,
        slot_id=answer.get("slot_id"),
        clinic_code=answer["clinic_code"],
        township=answer["township"],
        county_name=answer["county_name"],
        county_public_key=answer["county_public_key"],
        enrolled_at=answer["enrolled_at"],
        clock_offset_s=client.clock_offset_s,
    )
    try:
        with store.write_transaction():
            agent_state.save_enrollment(store, value)
    except sqlite3.IntegrityError:
        raise SyncError("ALREADY_ENROLLED") from None
    fingerprint = key_fingerprint(value.county_public_key)
    services.record_event(
        store,
        identity,
        {
            "event": "enrolled",
            "hub_url": value.hub_url,
            "clinic_code": value.clinic_code,
            "township": value.township,
            "county_key_fingerprint": fingerprint,
        },
        now,
    )
    return {
        "device_id": value.device_id,
        "clinic_code": value.clinic_code,
        "township": value.township,
        "county_name": value.county_name,
        "county_key_fingerprint": fingerprint,
        "hub_url": value.hub_url,
        "enrolled_at": value.enrolled_at,
    }


# ---- the jobs --------------------------------------------------------------------------------


def _new_report(now: datetime, hub_url: str | None) -> dict:
    return {
        "started_at": _stamp(now),
        "hub_url": hub_url,
        "sent": 0,
        "uploaded": 0,
        "duplicates": 0,
        "batches": 0,
        "acked_seq": None,
        "records_waiting": None,
        "updates_applied": [],
        "updates_refused": [],
        "heartbeat": False,
        "errors": [],
        "ok": False,
    }


def upload_outbox(
    store: SqliteDeviceStore,
    client: HubClient,
    now: datetime,
    report: dict,
    *,
    max_records: int = MAX_BATCH_RECORDS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> None:
    """Send what the hub has not acknowledged, in seq order, batch after batch."""
    device = store.device()
    cursor = device.synced_seq
    (first_waiting,) = store.db.execute("SELECT min(seq) FROM outbox").fetchone()
    if first_waiting is not None:
        cursor = min(cursor, first_waiting - 1)
    stalled = 0
    while True:
        rows = store.db.execute(
            "SELECT seq, record FROM ledger WHERE seq > ? ORDER BY seq LIMIT ?",
            [cursor, max_records],
        ).fetchall()
        batch = plan_batch(rows, max_records=max_records, max_bytes=max_bytes)
        if not batch:
            return
        answer = client.upload(encode_batch(text for _, text in batch), now)
        acked = answer.get("acked_seq")
        if type(acked) is not int or acked < 0:
            raise SyncError("BAD_RESPONSE", "the hub's answer has no acknowledged seq")
        report["batches"] += 1
        report["sent"] += len(batch)
        report["uploaded"] += int(answer.get("stored") or 0)
        report["duplicates"] += int(answer.get("duplicates") or 0)
        report["acked_seq"] = acked
        agent_state.apply_ack(store, acked, _stamp(now))
        refused = answer.get("refused") or []
        if refused:
            first = refused[0]
            raise SyncError(
                str(first.get("code", "HUB_ERROR")),
                f"the hub refused record {first.get('seq')}: {first.get('detail', '')}",
            )
        stalled = 0 if acked > cursor else stalled + 1
        if stalled >= 2:
            raise SyncError("HUB_ERROR", f"the hub does not acknowledge past seq {acked}")
        cursor = acked  # may move back: a hub restored from a backup gets the records again


def _installed_catalog(store: SqliteDeviceStore) -> dict[str, dict]:
    codes = [code for (code,) in store.db.execute("SELECT code FROM catalog_item")]
    result: dict[str, dict] = {}
    for start in range(0, len(codes), 5000):
        for code, item in store.catalog_items(codes[start : start + 5000]).items():
            result[code] = catalog_item_to_json(item)
    return result


def _installed_version(store: SqliteDeviceStore, kind: str) -> str | None:
    return {
        "catalog": store.catalog_version,
        "policy": store.policy_version,
        "roster": store.roster_version,
    }[kind]()


def _apply(store: SqliteDeviceStore, update: VerifiedUpdate, now: datetime) -> None:
    """Install a verified update in one transaction (the store's import)."""
    try:
        if update.kind == "catalog":
            current = _installed_catalog(store) if update.update_format == DELTA else {}
            items = catalog_items_of(update, current)
            store.import_catalog(
                items, update.version, source=f"county {update.update_format}", now=now
            )
        elif update.kind == "policy":
            store.import_policy(policy_document_of(update), now=now)
        else:
            store.import_roster(roster_document_of(update), now=now)
    except StoreError as error:
        code = "UPDATE_OLDER" if "roll back" in str(error) else "UPDATE_INVALID"
        raise SyncError(code, str(error)) from None


def _pull_one(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    client: HubClient,
    county_key,
    kind: str,
    now: datetime,
    report: dict,
    *,
    full: bool,
) -> None:
    installed = _installed_version(store, kind)
    offered = client.update(kind, installed, now, full=full)
    if offered is None:
        return
    try:
        update = verify_update(offered, county_key, kind=kind, installed_version=installed, now=now)
        if update is None:
            return
        _apply(store, update, now)
    except SyncError as error:
        manifest = offered.get("manifest") if isinstance(offered, dict) else None
        claimed = manifest.get("version") if isinstance(manifest, dict) else None
        error.version = claimed if isinstance(claimed, str) else None
        raise
    agent_state.save_installed(
        store,
        agent_state.Installed(
            kind,
            update.version,
            update.update_format,
            iso(update.expires_at),
            update.content_sha256,
            _stamp(now),
        ),
    )
    services.record_event(
        store,
        identity,
        {
            "event": "update_applied",
            "kind": kind,
            "version": update.version,
            "format": update.update_format,
            "replaces": installed,
            "expires_at": iso(update.expires_at),
            "content_sha256": update.content_sha256,
        },
        now,
    )
    report["updates_applied"].append(
        {"kind": kind, "version": update.version, "format": update.update_format}
    )


def _version_offered(error: SyncError) -> str | None:
    return getattr(error, "version", None)


def _refuse(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    kind: str,
    error: SyncError,
    now: datetime,
    report: dict,
) -> None:
    """The installed version stays; the refusal is kept, shown, and signed once."""
    version = _version_offered(error)
    report["updates_refused"].append({"kind": kind, "version": version, **error.to_dict()})
    new = agent_state.record_refusal(
        store, kind, version, error.code, error.message_en, error.message_zh, now
    )
    if new:
        services.record_event(
            store,
            identity,
            {
                "event": "update_refused",
                "kind": kind,
                "version": version,
                "code": error.code,
                "reason": error.message_en,
            },
            now,
        )


def _is_refusal(error: SyncError) -> bool:
    return error.code.startswith(("UPDATE_", "DELTA_"))


def pull_updates(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    client: HubClient,
    county_public_key: str,
    now: datetime,
    report: dict,
) -> None:
    """Fetch, verify and install each kind of county update; a refused one is recorded and
    the others still go. A delta that does not fit falls back to the full version."""
    county_key = load_public_key(county_public_key)
    for kind in UPDATE_ORDER:
        try:
            _pull_one(store, identity, client, county_key, kind, now, report, full=False)
        except SyncError as error:
            if not _is_refusal(error):
                raise
            _refuse(store, identity, kind, error, now, report)
            if not error.code.startswith("DELTA_"):
                continue
            try:
                _pull_one(store, identity, client, county_key, kind, now, report, full=True)
            except SyncError as again:
                if not _is_refusal(again):
                    raise
                _refuse(store, identity, kind, again, now, report)


def send_heartbeat(
    store: SqliteDeviceStore, client: HubClient, data_dir: Path, now: datetime, report: dict
) -> None:
    device, head = store.device(), store.ledger_head()
    installed = agent_state.installed_updates(store)
    versions = {kind: _installed_version(store, kind) for kind in KINDS}
    document = {
        "device_clock": iso(now),
        "versions": versions,
        "expires": {
            kind: value.expires_at
            for kind, value in installed.items()
            if value.version == versions[kind]
        },
        "records_waiting": store.outbox_count(),
        "synced_seq": device.synced_seq,
        "ledger_head": {"seq": head.seq if head else 0, "hash": head.hash if head else None},
        "disk_free_bytes": shutil.disk_usage(data_dir).free,
        "agent": AGENT,
    }
    answer = client.heartbeat(document, now)
    acked = answer.get("acked_seq")
    if type(acked) is int:
        agent_state.apply_ack(store, acked, _stamp(now))
    report["heartbeat"] = True


def _run_job(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    data_dir: Path,
    client: HubClient,
    enrollment: agent_state.Enrollment,
    job: str,
    now: datetime,
    report: dict,
    rng: Callable[[], float],
) -> None:
    """One job, with its outcome recorded (and, after a failure, when to try again)."""
    try:
        if job == "upload":
            upload_outbox(store, client, now, report)
        elif job == "updates":
            pull_updates(store, identity, client, enrollment.county_public_key, now, report)
        else:
            send_heartbeat(store, client, data_dir, now, report)
    except (SyncError, StoreError, IdentityError, sqlite3.Error) as error:
        if not isinstance(error, SyncError):
            error = SyncError("AGENT_ERROR", f"{type(error).__name__}: {error}")
        report["errors"].append({"job": job, **error.to_dict()})
        failures = agent_state.job_states(store).get(job, agent_state.JobState(job)).failures
        delay = backoff_delay(failures + 1, rng)
        agent_state.record_job_outcome(
            store,
            job,
            now,
            error_code=error.code,
            error=error.message_en,
            next_attempt_at=now + timedelta(seconds=delay),
        )
    else:
        agent_state.record_job_outcome(store, job, now)


def _client_for(
    enrollment: agent_state.Enrollment, identity: DeviceIdentity, hub_url: str | None
) -> HubClient:
    return HubClient(
        hub_url or enrollment.hub_url, identity, clock_offset_s=enrollment.clock_offset_s
    )


def sync_once(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    data_dir: Path,
    now: datetime,
    hub_url: str | None = None,
) -> dict:
    """Run upload, updates and heartbeat now ("sync now"), whatever their backoff says.
    `hub_url` overrides the enrolled address for this run (diagnostics). Returns a report:
    records sent and acknowledged, updates applied and refused, errors."""
    agent_state.ensure_tables(store)
    enrollment = agent_state.enrollment(store)
    report = _new_report(now, hub_url or (enrollment.hub_url if enrollment else None))
    if enrollment is None:
        report["errors"].append({"job": None, **SyncError("NOT_ENROLLED").to_dict()})
        return report
    try:
        client = _client_for(enrollment, identity, hub_url)
    except SyncError as error:
        report["errors"].append({"job": None, **error.to_dict()})
        return report
    rng = random.Random().random
    for job in JOBS:
        lock = _job_lock(data_dir, job)
        if not lock.acquire(timeout=LOCK_WAIT_S):
            report["errors"].append({"job": job, **SyncError("BUSY").to_dict()})
            continue
        try:
            _run_job(store, identity, data_dir, client, enrollment, job, now, report, rng)
        finally:
            lock.release()
    if client.clock_offset_s != enrollment.clock_offset_s:
        agent_state.save_clock_offset(store, client.clock_offset_s)
    report["records_waiting"] = store.outbox_count()
    report["ok"] = not report["errors"]
    return report


# ---- status ------------------------------------------------------------------------------------


def sync_status(store: SqliteDeviceStore, now: datetime | None = None) -> dict:
    """What the terminal's status page shows. With `now`, installed versions say whether
    they have expired (stale data is shown as stale)."""
    agent_state.ensure_tables(store)
    enrollment = agent_state.enrollment(store)
    device = store.device()
    jobs = agent_state.job_states(store)
    installed = agent_state.installed_updates(store)
    versions = {}
    for kind in KINDS:
        version = _installed_version(store, kind)
        info = installed.get(kind)
        from_county = info is not None and info.version == version
        expires_at = info.expires_at if from_county else None
        versions[kind] = {
            "version": version,
            "source": "county" if from_county else ("local" if version else None),
            "expires_at": expires_at,
            "expired": None
            if now is None or expires_at is None
            else now >= datetime.fromisoformat(expires_at),
        }
    attempts = [j for j in jobs.values() if j.last_attempt_at]
    latest = max(attempts, key=lambda j: j.last_attempt_at, default=None)
    successes = [j.last_success_at for j in jobs.values() if j.last_success_at]
    failing = [j for j in jobs.values() if j.last_error_code]
    last_failure = max(failing, key=lambda j: j.last_attempt_at, default=None)
    return {
        "enrolled": enrollment is not None,
        "hub_url": enrollment.hub_url if enrollment else None,
        "device_id": device.device_id if device else None,
        "clinic_code": enrollment.clinic_code if enrollment else None,
        "township": enrollment.township if enrollment else None,
        "county_name": enrollment.county_name if enrollment else None,
        "county_key_fingerprint": key_fingerprint(enrollment.county_public_key)
        if enrollment
        else None,
        "enrolled_at": enrollment.enrolled_at if enrollment else None,
        "clock_offset_s": enrollment.clock_offset_s if enrollment else None,
        "last_sync_at": device.last_sync_at if device else None,
        "last_success_at": max(successes, default=None),
        "last_attempt_at": latest.last_attempt_at if latest else None,
        "last_error": None
        if last_failure is None
        else {
            "job": last_failure.job,
            "code": last_failure.last_error_code,
            "message": last_failure.last_error,
            "at": last_failure.last_attempt_at,
        },
        "synced_seq": device.synced_seq if device else 0,
        "records_waiting": store.outbox_count(),
        "unsynced_fund": device.unsynced_fund if device else 0,
        "jobs": {
            job: {
                "last_attempt_at": state.last_attempt_at,
                "last_success_at": state.last_success_at,
                "last_error_code": state.last_error_code,
                "last_error": state.last_error,
                "failures": state.failures,
                "next_attempt_at": state.next_attempt_at,
            }
            for job, state in sorted(jobs.items())
        },
        "installed": versions,
        "refused_updates": [
            {
                "kind": r.kind,
                "version": r.version,
                "code": r.code,
                "message": r.message,
                "message_zh": r.message_zh,
                "refused_at": r.refused_at,
                "repeats": r.repeats,
            }
            for r in agent_state.refusals(store)
        ],
    }


# ---- the scheduler -------------------------------------------------------------------------------


def job_is_due(state: agent_state.JobState | None, now: datetime) -> bool:
    """False while a failed job waits out its backoff."""
    if state is None or state.next_attempt_at is None:
        return True
    return now >= datetime.fromisoformat(state.next_attempt_at)


def run_scheduled_job(
    data_dir: Path,
    job: str,
    clock: Clock,
    rng: Callable[[], float] = random.random,
) -> dict | None:
    """One scheduled run of `job`: skipped when the device is not enrolled, while the job
    backs off after a failure, and while the same job is still running."""
    now = clock()
    lock = _job_lock(data_dir, job)
    if not lock.acquire(blocking=False):
        return None
    try:
        store = SqliteDeviceStore.open(Path(data_dir))
        try:
            agent_state.ensure_tables(store)
            enrollment = agent_state.enrollment(store)
            if enrollment is None or not job_is_due(agent_state.job_states(store).get(job), now):
                return None
            identity = services.load_identity(store, Path(data_dir))
            client = _client_for(enrollment, identity, None)
            report = _new_report(now, client.base_url)
            _run_job(store, identity, Path(data_dir), client, enrollment, job, now, report, rng)
            if client.clock_offset_s != enrollment.clock_offset_s:
                agent_state.save_clock_offset(store, client.clock_offset_s)
            report["ok"] = not report["errors"]
            return report
        finally:
            store.close()
    except Exception:  # a scheduled job must never take the terminal down
        log.exception("sync job %s failed", job)
        return None
    finally:
        lock.release()


def start_scheduler(
    data_dir: Path,
    clock: Clock,
    intervals_s: dict[str, float] | None = None,
    first_run_after_s: float = 5.0,
) -> BackgroundScheduler:
    """Start the agent's jobs in background threads (for `clinic serve`), each reading
    `clock`; the caller stops it with `scheduler.shutdown()`."""
    intervals = {**JOB_INTERVALS_S, **(intervals_s or {})}
    scheduler = BackgroundScheduler(timezone=services.CLINIC_TZ)
    start = datetime.now(services.CLINIC_TZ)  # APScheduler runs on the real clock
    for index, job in enumerate(JOBS):
        scheduler.add_job(
            run_scheduled_job,
            "interval",
            seconds=intervals[job],
            args=[Path(data_dir), job, clock],
            id=f"sync-{job}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=60,
            next_run_time=start + timedelta(seconds=first_run_after_s * (1 + index)),
        )
    scheduler.start()
    return scheduler
