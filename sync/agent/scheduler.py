"""The agent's jobs in the background (APScheduler 3.x), for `clinic serve`: each job on
its interval, once at a time, skipped while it backs off after a failure. The release
download (`releases.py`) is one more job here, in a thread of its own."""

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from edge import services
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.clock import CLINIC_TZ, Clock
from sync.agent import state
from sync.agent.jobs import (
    HEARTBEAT_TIMEOUT_S,
    JOBS,
    client_for,
    job_lock,
    new_report,
    run_job,
)
from sync.agent.releases import RELEASE_JOB, run_release_job
from sync.protocol import SyncError

log = logging.getLogger(__name__)

# The heartbeat every half minute: the status strip says whether the hub answered within
# the last minute (`sync.agent.status.ONLINE_FOR_S`).
JOB_INTERVALS_S = {
    "upload": 60, "attachments": 60, "updates": 15 * 60, "decisions": 5 * 60, "heartbeat": 30,
    RELEASE_JOB: 30 * 60,
}  # fmt: skip


def job_is_due(job_state: state.JobState | None, now: datetime) -> bool:
    """False while a failed job waits out its backoff."""
    if job_state is None or job_state.next_attempt_at is None:
        return True
    return now >= datetime.fromisoformat(job_state.next_attempt_at)


def run_scheduled_job(
    data_dir: Path,
    job: str,
    clock: Clock,
    rng: Callable[[], float] = random.random,
) -> dict | None:
    """One scheduled run of `job`: skipped when the device is not enrolled, while the job
    backs off after a failure, and while the same job is still running."""
    now = clock()
    lock = job_lock(data_dir, job)
    if not lock.acquire(blocking=False):
        return None
    try:
        store = SqliteDeviceStore.open(Path(data_dir))
        try:
            enrollment = state.enrollment(store)
            if enrollment is None or not job_is_due(state.job_states(store).get(job), now):
                return None
            identity = services.load_identity(store, Path(data_dir))
            try:
                client = client_for(enrollment, identity, None)
            except SyncError as error:  # e.g. plain http:// refused: shown on the status page
                state.record_job_outcome(
                    store, job, now, error_code=error.code, error=error.message_en,
                    next_attempt_at=now + timedelta(seconds=JOB_INTERVALS_S[job]),
                )  # fmt: skip
                return None
            if job == "heartbeat":
                client.timeout_s = HEARTBEAT_TIMEOUT_S
            if job == RELEASE_JOB:  # a download of its own, never in the uploads' way
                return run_release_job(store, client, Path(data_dir), enrollment, now, rng)
            report = new_report(now, client.base_url)
            run_job(store, identity, Path(data_dir), client, enrollment, job, now, report, rng)
            if client.clock_offset_s != enrollment.clock_offset_s:
                state.save_clock_offset(store, client.clock_offset_s)
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
    scheduler = BackgroundScheduler(timezone=CLINIC_TZ)
    start = datetime.now(CLINIC_TZ)  # APScheduler runs on the real clock
    # The heartbeat first: until the hub has answered, the status strip cannot say 在线;
    # the release download last, on its own (a thread of its own, a lock of its own).
    order = [*sorted(JOBS, key=lambda j: j != "heartbeat"), RELEASE_JOB]
    for index, job in enumerate(order):
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
