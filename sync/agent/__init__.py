"""The device's sync agent: enrollment, and five jobs run by APScheduler 3.x —

- `upload`: the outbox, in bounded gzip batches, until the hub has acknowledged it all;
  nothing leaves the outbox before the hub's acknowledgement, and the ledger itself is
  never touched;
- `updates`: signed policy, catalog and roster versions from the county, verified
  against the county key pinned at enrollment before anything is applied;
- `attachments` and `decisions`: the service point's photos up, the county's decisions
  (and its encryption key) down (`service_point.py`, docs/service-point.md);
- `heartbeat`: versions, records waiting, disk free, the device clock.

Each job runs once at a time (a lock per data directory and job) and backs off
exponentially, with jitter, after failures. `sync_once` runs all five now (the UI's
"sync now", `clinic sync once`); `sync_status` is what the status page shows.

The terminal UI calls exactly: `enroll`, `sync_once`, `sync_status`, `start_scheduler`.

| module | holds |
| --- | --- |
| `jobs.py` | enrollment, the upload and heartbeat jobs, running a job, `sync_once` |
| `county_updates.py` | the updates job: fetch, verify, install or refuse |
| `service_point.py` | the attachments and decisions jobs, the county encryption key |
| `status.py` | `sync_status` |
| `scheduler.py` | `start_scheduler`, one scheduled run of a job |
| `state.py` | the agent's tables in `clinic.db` |
| `client.py` | the HTTP client for the hub |
"""

from sync.agent.county_updates import pull_updates
from sync.agent.jobs import JOBS, enroll, pin_hub, send_heartbeat, sync_once, upload_outbox
from sync.agent.scheduler import (
    JOB_INTERVALS_S,
    job_is_due,
    run_scheduled_job,
    start_scheduler,
)
from sync.agent.status import sync_status

__all__ = [
    "JOBS",
    "JOB_INTERVALS_S",
    "enroll",
    "job_is_due",
    "pin_hub",
    "pull_updates",
    "run_scheduled_job",
    "send_heartbeat",
    "start_scheduler",
    "sync_once",
    "sync_status",
    "upload_outbox",
]
