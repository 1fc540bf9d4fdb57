"""The agent's share of the village service point (docs/service-point.md, "The agent"):

- the county's encryption key: pinned from the enrollment answer, or for a device
  enrolled before, fetched (`GET /encryption-key`) by the `decisions` job until pinned;
  always verified with the pinned county key, and never replaced by another;
- `attachments`: the photos of requests the hub already holds, a bounded number a run,
  each marked uploaded once the hub says it stored it; one the hub refuses for good is
  set aside, as a missing one is;
- `decisions`: the county's signed decisions after the last one kept, each checked and
  applied (`edge.service_requests.apply_decision`); a refused one is remembered as a
  refused update and signed as an event once.
"""

from datetime import datetime
from pathlib import Path

from edge import service_requests, services
from edge.adapters.attachments import AttachmentError, AttachmentFiles
from edge.adapters.identity import DeviceIdentity
from edge.adapters.sealing import key_id, verified_encryption_key
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.model import Rejection
from edge.service_requests import apply_decision
from sync.agent import state
from sync.agent.client import HubClient
from sync.protocol import MESSAGES, SyncError

ATTACHMENTS_PER_RUN = 12  # photos a run uploads at most (two requests' worth)
DECISION_PAGES_PER_RUN = 10  # pages of at most 200 decisions
# The hub's refusals of one photo (docs/sync-protocol.md): final for that photo.
REFUSED_FOR_GOOD = frozenset(
    {"ATTACHMENT_UNKNOWN", "ATTACHMENT_TYPE", "ATTACHMENT_TOO_LARGE", "ATTACHMENT_HASH_MISMATCH"}
)


def encryption_key_of(statement: object, county_public_key: str) -> str:
    """The county encryption key a signed statement carries, verified with the county
    signing key (SyncError BAD_ENCRYPTION_KEY otherwise)."""
    try:
        return verified_encryption_key(statement, county_public_key)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise SyncError("BAD_ENCRYPTION_KEY", str(error)) from None


def pin_encryption_key(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    statement: object,
    county_public_key: str,
    now: datetime,
) -> str:
    """Verify and pin the key of `statement`; signed as an event the first time."""
    public_key = encryption_key_of(statement, county_public_key)
    if state.pin_encryption_key(store, public_key):
        event = {"event": "encryption_key_pinned", "key_id": key_id(public_key)}
        services.record_event(store, identity, event, now)
    return public_key


def fetch_encryption_key(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    client: HubClient,
    enrollment: state.Enrollment,
    now: datetime,
    report: dict,
) -> None:
    if store.county_encryption_key() is not None:
        return
    statement = client.encryption_key(now)
    if statement is not None:
        pin_encryption_key(store, identity, statement, enrollment.county_public_key, now)
        report["encryption_key_pinned"] = True


def upload_attachments(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    client: HubClient,
    data_dir: Path,
    now: datetime,
    report: dict,
    *,
    limit: int = ATTACHMENTS_PER_RUN,
) -> None:
    """PUT the photos of uploaded requests the hub does not have yet, oldest first; first
    remove the files a crash left that no request names."""
    swept = service_requests.sweep_unnamed_photos(store, data_dir)
    if swept:
        report["attachments_swept"] = swept
    files = AttachmentFiles(data_dir)
    for sha256, content_type in store.attachments_to_upload(limit):
        try:
            data = files.read(sha256)
        except AttachmentError as error:
            # Gone or damaged (a disk fault, a restore without the photos): no sync brings
            # it back, so it is set aside, remembered and signed once, and the photos after
            # it still go.
            store.mark_attachment_missing(sha256, state.stamp(now))
            zh, en = MESSAGES["ATTACHMENT_MISSING"]
            if state.record_refusal(store, "attachment", sha256, error.code, en, zh, now):
                event = {"event": "attachment_missing", "sha256": sha256, "code": error.code}
                services.record_event(store, identity, event, now)
            report.setdefault("attachments_missing", []).append(sha256)
            continue
        try:
            client.put_attachment(sha256, data, content_type, now)
        except SyncError as error:
            if error.code not in REFUSED_FOR_GOOD:
                raise  # the hub is down or failed: the job retries with its backoff
            # The hub said no to this very photo (it flagged the request naming it, say, or
            # the photo is not what the request names): asking again brings the same answer,
            # so it is set aside like a missing file, and the photos after it still go.
            store.mark_attachment_missing(sha256, state.stamp(now))
            if state.record_refusal(
                store, "attachment", sha256, error.code, error.message_en, error.message_zh, now
            ):
                event = {"event": "attachment_refused", "sha256": sha256, "code": error.code}
                services.record_event(store, identity, event, now)
            report.setdefault("attachments_refused", []).append(
                {"sha256": sha256, "code": error.code}
            )
            continue
        store.mark_attachment_uploaded(sha256, state.stamp(now))
        report["attachments_uploaded"] = report.get("attachments_uploaded", 0) + 1


def pull_decisions(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    client: HubClient,
    enrollment: state.Enrollment,
    now: datetime,
    report: dict,
) -> None:
    """Fetch and apply the decisions after the last one kept, page after page."""
    fetch_encryption_key(store, identity, client, enrollment, now, report)
    after = store.last_decision_serial()
    for _ in range(DECISION_PAGES_PER_RUN):
        page = client.decisions(after, now)
        serials = []
        for document in page["decisions"]:
            serial = _serial(document)
            if serial is None or serial <= after:
                raise SyncError(
                    "BAD_RESPONSE", f"the decisions are not in serial order after {after}"
                )
            serials.append(serial)
            try:
                outcome = apply_decision(
                    store, identity, document, enrollment.county_public_key, now
                )
            except Rejection as refusal:
                _refused(store, identity, serial, refusal, now, report)
                continue
            if outcome == "applied":
                report.setdefault("decisions_applied", []).append(serial)
        if not page["more"] or not serials:
            return
        after = max(serials)


def _serial(document: object) -> int | None:
    decision = document.get("decision") if isinstance(document, dict) else None
    serial = decision.get("serial") if isinstance(decision, dict) else None
    return serial if type(serial) is int else None


def _refused(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    serial: int,
    refusal: Rejection,
    now: datetime,
    report: dict,
) -> None:
    """A decision that does not verify is kept out; remembered once (and signed)."""
    zh, _, en = refusal.message.partition(" / ")
    report.setdefault("decisions_refused", []).append({"serial": serial, "code": refusal.code})
    if state.record_refusal(store, "decision", str(serial), refusal.code, en or zh, zh, now):
        services.record_event(
            store,
            identity,
            {"event": "decision_refused", "serial": serial, "code": refusal.code},
            now,
        )
