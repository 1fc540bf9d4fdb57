"""What the terminal's status page and status strip show of the agent: enrollment,
whether the hub answers, whether the county revoked this device, the sync mark, each
job's last outcome and backoff, the installed county versions and the refused ones."""

from datetime import datetime, timedelta

from edge.adapters.sqlite_store import SqliteDeviceStore
from sync.agent import state
from sync.agent.jobs import UNREACHED
from sync.agent.releases import RELEASE_JOB, software_status
from sync.protocol import certificate_fingerprint, key_fingerprint
from sync.updates import KINDS

# The hub counts as answering when its latest answer is this recent: the heartbeat runs
# every 30 s (and retries within 30 s after a failure), so a running agent always has one.
ONLINE_FOR = timedelta(seconds=90)


def sync_status(store: SqliteDeviceStore, now: datetime | None = None) -> dict:
    """What the terminal's status page shows. With `now`, installed versions say whether
    they have expired (stale data is shown as stale)."""
    enrollment = state.enrollment(store)
    device = store.device()
    jobs = state.job_states(store)
    installed = state.installed_updates(store)
    versions = {}
    for kind in KINDS:
        version = state.installed_version(store, kind)
        info = installed.get(kind)
        expires_at = info.expires_at if info is not None and info.version == version else None
        from_county = expires_at is not None
        versions[kind] = {
            "version": version,
            "source": "county" if from_county else ("local" if version else None),
            "expires_at": expires_at,
            "expired": None
            if now is None or expires_at is None
            else now >= datetime.fromisoformat(expires_at),
        }
    attempts = [j for j in jobs.values() if j.last_attempt_at]
    latest = max(attempts, key=lambda j: j.last_attempt_at or "", default=None)
    successes = [j.last_success_at for j in jobs.values() if j.last_success_at]
    failing = [j for j in jobs.values() if j.last_error_code]
    last_failure = max(failing, key=lambda j: j.last_attempt_at or "", default=None)
    revoked = state.revocation(store)
    return {
        "enrolled": enrollment is not None,
        "connection": connection(jobs, now),
        "revoked": None
        if revoked is None
        else {"code": revoked.code, "detail": revoked.detail, "since": revoked.since},
        "hub_url": enrollment.hub_url if enrollment else None,
        "device_id": device.device_id if device else None,
        "clinic_code": enrollment.clinic_code if enrollment else None,
        "township": enrollment.township if enrollment else None,
        "county_name": enrollment.county_name if enrollment else None,
        "county_key_fingerprint": key_fingerprint(enrollment.county_public_key)
        if enrollment
        else None,
        "enrolled_at": enrollment.enrolled_at if enrollment else None,
        # TLS to the hub: the pinned certificate's fingerprint, and a lab's plain http://.
        "hub_certificate_fingerprint": certificate_fingerprint(enrollment.hub_certificate)
        if enrollment and enrollment.hub_certificate
        else None,
        "plain_http_lab": bool(enrollment and enrollment.plain_http_lab),
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
        "software": software_status(store),
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
            for r in state.refusals(store)
        ],
    }


def connection(jobs: dict[str, state.JobState], now: datetime | None) -> dict:
    """Whether the hub answered the agent's latest request: "online" (recently, when `now`
    is given), "offline" (not reached, with the error), "refused" (the hub answered no),
    or "unknown" (never asked, or not lately: the
    agent is not running). A heartbeat, an updates or a decisions check always asks the
    hub; an upload or a photo upload that succeeds may have had nothing to send, so only
    their failures count."""
    outcomes = []
    for job in jobs.values():
        if job.last_attempt_at is None or job.job == RELEASE_JOB:
            continue  # a release download's trouble is shown apart (`software`)
        failed = job.last_error_code is not None
        if failed or job.job not in ("upload", "attachments"):  # may have had nothing to send
            outcomes.append((datetime.fromisoformat(job.last_attempt_at), failed, job))
    if not outcomes:
        return {"state": "unknown", "checked_at": None, "error": None}
    at, failed, job = max(outcomes, key=lambda o: (o[0], o[1]))
    if failed:
        error = {"job": job.job, "code": job.last_error_code, "message": job.last_error}
        # The hub not reached is being offline; a hub that answers but refuses is a problem
        # to show (revocation is told apart by `sync_status`'s "revoked").
        unreached = job.last_error_code in UNREACHED or job.last_error_code == "AGENT_ERROR"
        return {
            "state": "offline" if unreached else "refused",
            "checked_at": job.last_attempt_at,
            "error": error,
        }
    fresh = now is None or now - at <= ONLINE_FOR
    return {
        "state": "online" if fresh else "unknown",
        "checked_at": job.last_attempt_at,
        "error": None,
    }
