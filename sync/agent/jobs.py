"""The agent's jobs and running them now: enrollment, and

- `upload`: the outbox, in bounded gzip batches, until the hub has acknowledged it all;
  nothing leaves the outbox before the hub's acknowledgement, and the ledger itself is
  never touched;
- `updates`: signed county versions (`county_updates.py`);
- `attachments`, `decisions`: the service point's (`service_point.py`);
- `heartbeat`: versions, records waiting, disk free, the device clock, the software.

The `release` job (`releases.py`) runs apart, on the scheduler only. Each job runs once
at a time (a lock per data directory and job); after a failure it records when to try
again (`sync.planner.backoff_delay`). `sync_once` runs all five now.
"""

import random
import shutil
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from edge import services
from edge.adapters.identity import DeviceIdentity, IdentityError
from edge.adapters.sealing import key_id
from edge.adapters.sqlite_store import SqliteDeviceStore, StoreError
from edge.domain.ledger import genesis_hash
from edge.ports import DeviceRow
from sync.agent import service_point, state
from sync.agent.client import HubClient, HubRefusal
from sync.agent.county_updates import pull_updates
from sync.agent.releases import heartbeat_member
from sync.planner import backoff_delay, plan_batch
from sync.protocol import (
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    SyncError,
    certificate_fingerprint,
    encode_batch,
    iso,
    key_fingerprint,
    load_public_key,
)
from sync.updates import KINDS

# `attachments` after `upload`: the hub takes a request's photos once it holds the record.
JOBS = ("upload", "attachments", "updates", "decisions", "heartbeat")
AGENT = "clinic-sync-agent/1"
LOCK_WAIT_S = 120.0
# The heartbeat is how the terminal knows it is online: after a failure it tries again
# within half a minute (not the other jobs' growing backoff), so that the status strip
# says 在线 within a minute of the hub coming back; and it gives up on a silent network
# sooner than the other requests do.
HEARTBEAT_RETRY_CAP_S = 30.0
HEARTBEAT_TIMEOUT_S = 10.0
# Answers that do not come from the county hub, or acknowledge what this ledger does not
# hold: nothing of them counts, and each is signed as an event (once in a row per job).
UNTRUSTED = ("ANSWER_UNSIGNED", "BAD_ANSWER_SIGNATURE", "ACK_MISMATCH")
# Errors that mean the hub was not reached (or failed): the terminal is offline.
# An answer not signed by the county is no answer.
UNREACHED = ("HUB_UNREACHABLE", "HUB_ERROR", "BAD_RESPONSE", *UNTRUSTED[:2])

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def job_lock(data_dir: Path, job: str) -> threading.Lock:
    key = (str(Path(data_dir).resolve()), job)
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


# ---- enrollment ------------------------------------------------------------------------------


def enroll(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    data_dir: Path,
    hub_url: str,
    code: str,
    now: datetime,
    *,
    hub_certificate: str | None = None,
    plain_http_lab: bool = False,
) -> dict:
    """Join a county hub with a one-time code: send this device's existing id and public
    key, pin the county's public key and the hub's TLS certificate or CA
    (`hub_certificate`, PEM: every later request trusts only it), and return the clinic
    details. Plain http:// only to this machine, or with `plain_http_lab`."""
    existing = state.enrollment(store)
    if existing is not None:
        raise SyncError(
            "ALREADY_ENROLLED", f"with {existing.hub_url} as clinic {existing.clinic_code}"
        )
    certificate_fingerprint_ = pinned_fingerprint(hub_certificate, hub_url)
    client = HubClient(
        hub_url, identity, hub_certificate=hub_certificate, plain_http_lab=plain_http_lab
    )
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
    value = state.Enrollment(
        hub_url=client.base_url,
        device_id=identity.device_id,
        slot_id=answer.get("slot_id"),
        clinic_code=answer["clinic_code"],
        township=answer["township"],
        county_name=answer["county_name"],
        county_public_key=answer["county_public_key"],
        enrolled_at=answer["enrolled_at"],
        clock_offset_s=client.clock_offset_s,
        hub_certificate=hub_certificate,
        plain_http_lab=plain_http_lab,
        county_encryption_key=_encryption_key(answer),
    )
    try:
        with store.write_transaction():
            state.save_enrollment(store, value)
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
            "hub_certificate_fingerprint": certificate_fingerprint_,
            "plain_http_lab": plain_http_lab,
            # the county encryption key pinned with it (a later pin signs its own event)
            **(
                {"encryption_key_id": key_id(value.county_encryption_key)}
                if value.county_encryption_key
                else {}
            ),
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
        "hub_certificate_fingerprint": certificate_fingerprint_,
        "plain_http_lab": plain_http_lab,
    }


def _encryption_key(answer: dict) -> str | None:
    """The county encryption key of an enrollment answer, verified with the county key it
    names (the answer's own signature was checked with that key); None from a hub that
    sends none, or one that does not verify: the `decisions` job fetches it then."""
    statement = answer.get("county_encryption_key")
    if statement is None:
        return None
    try:
        return service_point.encryption_key_of(statement, answer["county_public_key"])
    except SyncError:
        return None


def pinned_fingerprint(hub_certificate: str | None, hub_url: str) -> str | None:
    """The SHA-256 fingerprint of a pinned certificate (PEM); refuses what is not one, and
    an https:// hub without one: the system's CAs would let any certificate they sign
    answer for the county."""
    if hub_certificate is None:
        if urllib.parse.urlsplit(hub_url).scheme == "https":
            raise SyncError("HUB_CERTIFICATE_REQUIRED", hub_url)
        return None
    if "-----BEGIN CERTIFICATE-----" not in hub_certificate:
        raise SyncError("BAD_CERTIFICATE", "no PEM certificate in the file")
    return certificate_fingerprint(hub_certificate)


def pin_hub(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    now: datetime,
    *,
    hub_certificate: str | None,
    hub_url: str | None = None,
    plain_http_lab: bool = False,
) -> dict:
    """Pin the hub again: its new certificate or CA (after a renewal), a new address, or
    plain http:// for a lab. An operator's local action, signed into the ledger."""
    enrollment = state.enrollment(store)
    if enrollment is None:
        raise SyncError("NOT_ENROLLED")
    url = hub_url or enrollment.hub_url
    fingerprint = pinned_fingerprint(hub_certificate, url)
    client = HubClient(
        url, identity, hub_certificate=hub_certificate, plain_http_lab=plain_http_lab
    )
    with store.write_transaction():
        state.save_hub_pin(store, client.base_url, hub_certificate, plain_http_lab)
    details = {
        "hub_url": client.base_url,
        "hub_certificate_fingerprint": fingerprint,
        "plain_http_lab": plain_http_lab,
    }
    services.record_event(store, identity, {"event": "hub_pinned", **details}, now)
    return details


# ---- the jobs --------------------------------------------------------------------------------


def new_report(now: datetime, hub_url: str | None) -> dict:
    return {
        "started_at": state.stamp(now),
        "hub_url": hub_url,
        "sent": 0,
        "uploaded": 0,
        "duplicates": 0,
        "batches": 0,
        "acked_seq": None,
        "records_waiting": None,
        "updates_applied": [],
        "updates_refused": [],
        "attachments_uploaded": 0,
        "decisions_applied": [],
        "decisions_refused": [],
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
    device = _device(store)
    genesis = genesis_hash(client.identity.public_key)
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
        refused = answer.get("refused") or []
        try:
            state.apply_ack(store, acked, answer.get("acked_hash"), genesis, state.stamp(now))
        except SyncError as mismatch:
            if not refused:
                raise
            # The hub said why it holds other records (this ledger went backwards, say):
            # that is the error to show; nothing was moved either way.
            first = refused[0]
            raise SyncError(
                str(first.get("code", "HUB_ERROR")),
                f"the hub refused record {first.get('seq')}: {first.get('detail', '')};"
                f" {mismatch.detail}",
            ) from None
        report["uploaded"] += int(answer.get("stored") or 0)
        report["duplicates"] += int(answer.get("duplicates") or 0)
        report["acked_seq"] = acked
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


def send_heartbeat(
    store: SqliteDeviceStore, client: HubClient, data_dir: Path, now: datetime, report: dict
) -> None:
    device, head = _device(store), store.ledger_head()
    installed = state.installed_updates(store)
    versions = {kind: state.installed_version(store, kind) for kind in KINDS}
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
    software = heartbeat_member(data_dir)
    if software is not None:  # the running software and its latest release's state
        document["software"] = software
    answer = client.heartbeat(document, now)
    acked = answer.get("acked_seq")
    if type(acked) is int:
        genesis = genesis_hash(client.identity.public_key)
        state.apply_ack(store, acked, answer.get("acked_hash"), genesis, state.stamp(now))
    report["heartbeat"] = True


def run_job(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    data_dir: Path,
    client: HubClient,
    enrollment: state.Enrollment,
    job: str,
    now: datetime,
    report: dict,
    rng: Callable[[], float],
) -> None:
    """One job, with its outcome recorded (and, after a failure, when to try again)."""
    batches, photos = report["batches"], report["attachments_uploaded"]
    try:
        if job == "upload":
            upload_outbox(store, client, now, report)
        elif job == "updates":
            pull_updates(store, identity, client, enrollment.county_public_key, now, report)
        elif job == "attachments":
            service_point.upload_attachments(store, identity, client, data_dir, now, report)
        elif job == "decisions":
            service_point.pull_decisions(store, identity, client, enrollment, now, report)
        else:
            send_heartbeat(store, client, data_dir, now, report)
    except (SyncError, StoreError, IdentityError, sqlite3.Error) as error:
        if not isinstance(error, SyncError):
            error = SyncError("AGENT_ERROR", f"{type(error).__name__}: {error}")
        report["errors"].append({"job": job, **error.to_dict()})
        before = state.job_states(store).get(job, state.JobState(job))
        failures = before.failures
        if error.code in UNTRUSTED and before.last_error_code != error.code:
            services.record_event(
                store,
                identity,
                {
                    "event": "hub_answer_refused",
                    "job": job,
                    "code": error.code,
                    "detail": error.detail,
                    "hub_url": client.base_url,
                },
                now,
            )
        if job == "heartbeat" and error.code in UNREACHED:  # to see the hub come back
            delay = backoff_delay(failures + 1, rng, cap=HEARTBEAT_RETRY_CAP_S)
        else:
            delay = backoff_delay(failures + 1, rng)
        state.record_job_outcome(
            store,
            job,
            now,
            error_code=error.code,
            error=error.message_en,
            next_attempt_at=now + timedelta(seconds=delay),
        )
        if isinstance(error, HubRefusal) and error.code in state.REVOKED_CODES:
            _revoked(store, identity, client, error, now)
    else:
        was_failing = state.job_states(store).get(job, state.JobState(job)).failures > 0
        state.record_job_outcome(store, job, now)
        if job == "upload" and report["batches"] == batches:
            return  # nothing to send: the hub was not asked
        if job == "attachments" and report["attachments_uploaded"] == photos:
            return  # the same: no photo to send
        if state.clear_revoked(store, now):
            services.record_event(
                store, identity, {"event": "device_reinstated", "hub_url": client.base_url}, now
            )
        if was_failing:  # the hub answers again: the others need not wait out their backoff
            state.clear_backoff(store, tuple(j for j in JOBS if j != job))


def _revoked(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    client: HubClient,
    error: SyncError,
    now: datetime,
) -> None:
    """The county has withdrawn this device: remembered (settling stops, see
    `edge.services`) and, the first time, signed as an event."""
    if state.record_revoked(store, error.code, error.detail, now):
        services.record_event(
            store,
            identity,
            {"event": "device_revoked", "code": error.code, "hub_url": client.base_url},
            now,
        )


def client_for(
    enrollment: state.Enrollment, identity: DeviceIdentity, hub_url: str | None
) -> HubClient:
    return HubClient(
        hub_url or enrollment.hub_url,
        identity,
        county_key=enrollment.county_public_key,
        clock_offset_s=enrollment.clock_offset_s,
        hub_certificate=enrollment.hub_certificate,
        plain_http_lab=enrollment.plain_http_lab,
    )


def sync_once(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    data_dir: Path,
    now: datetime,
    hub_url: str | None = None,
    *,
    stop_when_unreached: bool = False,
) -> dict:
    """Run every job of `JOBS` now ("sync now"), whatever their backoff says.
    `hub_url` overrides the enrolled address for this run (diagnostics). With
    `stop_when_unreached`, a job that cannot reach the hub ends the run (the terminal's
    "sync now": one wait for a silent network, not three). Returns a report: records sent
    and acknowledged, updates applied and refused, errors."""
    enrollment = state.enrollment(store)
    report = new_report(now, hub_url or (enrollment.hub_url if enrollment else None))
    if enrollment is None:
        report["errors"].append({"job": None, **SyncError("NOT_ENROLLED").to_dict()})
        return report
    try:
        client = client_for(enrollment, identity, hub_url)
    except SyncError as error:
        report["errors"].append({"job": None, **error.to_dict()})
        return report
    rng = random.Random().random
    for job in JOBS:
        lock = job_lock(data_dir, job)
        if not lock.acquire(timeout=LOCK_WAIT_S):
            report["errors"].append({"job": job, **SyncError("BUSY").to_dict()})
            continue
        try:
            run_job(store, identity, data_dir, client, enrollment, job, now, report, rng)
        finally:
            lock.release()
        if stop_when_unreached and any(
            e["job"] == job and e["code"] in UNREACHED for e in report["errors"]
        ):
            break
    if client.clock_offset_s != enrollment.clock_offset_s:
        state.save_clock_offset(store, client.clock_offset_s)
    report["records_waiting"] = store.outbox_count()
    report["ok"] = not report["errors"]
    return report


def _device(store: SqliteDeviceStore) -> DeviceRow:
    device = store.device()
    if device is None:
        raise IdentityError("this device has no identity yet: run 'clinic device init'")
    return device
