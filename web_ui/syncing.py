"""The sync agent as the UI uses it: `sync.agent`'s enroll, sync_once and sync_status.

When `sync.agent` cannot be imported (a build without it) every call answers
`SyncUnavailable`, which the pages show as "sync not available"; nothing else changes.
"""

from datetime import datetime
from pathlib import Path

from edge.adapters.identity import DeviceIdentity
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.clock import Clock


class SyncUnavailable(Exception):
    """The sync agent is not part of this build."""


def _agent():
    try:
        from sync import agent
    except ImportError as error:
        raise SyncUnavailable(str(error)) from None
    return agent


def available() -> bool:
    try:
        _agent()
    except SyncUnavailable:
        return False
    return True


def status(store: SqliteDeviceStore, now: datetime) -> dict:
    return _agent().sync_status(store, now)


def county_public_key(store: SqliteDeviceStore) -> str | None:
    """The county key the device pinned at enrollment (base64url), None before that."""
    try:
        from sync.agent import state

        enrollment = state.enrollment(store)
    except (ImportError, AttributeError):
        return None
    return enrollment.county_public_key if enrollment is not None else None


def error_message(error, locale_is_english: bool) -> str:
    """A sync error (an exception or an error dict of a report) in the operator's language:
    the plain message, without its code."""
    if isinstance(error, dict):
        zh, en = error.get("message_zh"), error.get("message")
    else:
        zh, en = getattr(error, "message_zh", None), getattr(error, "message_en", None)
    return (en if locale_is_english else zh) or en or zh or str(error)


def sync_now(
    store: SqliteDeviceStore, identity: DeviceIdentity, data_dir: Path, now: datetime
) -> dict:
    """Sync now; a hub that cannot be reached ends the run at the first job that tries."""
    return _agent().sync_once(store, identity, data_dir, now, stop_when_unreached=True)


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
    return _agent().enroll(
        store,
        identity,
        data_dir,
        hub_url,
        code,
        now,
        hub_certificate=hub_certificate,
        plain_http_lab=plain_http_lab,
    )


def start_scheduler(data_dir: Path, clock: Clock):
    """Start the background sync job; None when the agent is not available."""
    try:
        agent = _agent()
    except SyncUnavailable:
        return None
    return agent.start_scheduler(data_dir, clock)


def check_statement(
    store: SqliteDeviceStore, identity: DeviceIdentity, month: str, now: datetime
) -> dict | None:
    """Fetch, verify and compare the county's statement of `month` (`sync.agent.statements`)."""
    try:
        from sync.agent.statements import check_statement as check
    except ImportError as error:
        raise SyncUnavailable(str(error)) from None
    return check(store, identity, month, now)
