"""Enrollment and request authentication: a device registers its existing id and public
key into a provisioned slot with a one-time code, then signs every request; the hub
checks the signature, the time and that the nonce is new.
"""

from datetime import UTC, datetime, timedelta
from typing import TypeGuard

from edge.adapters.identity import device_id_for
from sync.hub.model import Slot
from sync.hub.ports import HubStore
from sync.hub.services.county import code_hash, county_of, reread_slot
from sync.protocol import (
    MAX_CLOCK_DIFFERENCE,
    RequestHeaders,
    SyncError,
    iso,
    load_public_key,
    signed_request_of,
    verify_request,
)

NONCE_MEMORY = 3 * MAX_CLOCK_DIFFERENCE  # longer than any timestamp stays acceptable


def _remember_nonce(store: HubStore, device_id: str, nonce: str, now: datetime) -> None:
    utc = now.astimezone(UTC)
    if not store.remember_nonce(device_id, nonce, utc.isoformat()):
        raise SyncError("NONCE_REUSED")
    store.forget_nonces_before((utc - NONCE_MEMORY).isoformat())


def authenticate(
    store: HubStore,
    headers: RequestHeaders,
    *,
    method: str,
    path: str,
    body: bytes,
    now: datetime,
) -> str:
    """The id of the enrolled, unrevoked device that signed this fresh, never-seen
    request."""
    claimed = signed_request_of(headers)
    slot = store.slot_by_device(claimed.device_id)
    if slot is None or slot.public_key is None:
        raise SyncError("UNKNOWN_DEVICE", claimed.device_id)
    if slot.revoked_at is not None:
        raise SyncError("DEVICE_REVOKED", f"{claimed.device_id} since {slot.revoked_at}")
    verify_request(
        load_public_key(slot.public_key), claimed, method=method, path=path, body=body, now=now
    )
    with store.unit_of_work():
        _remember_nonce(store, claimed.device_id, claimed.nonce, now)
    return claimed.device_id


# Enrollment codes are short enough to read over a phone, so guessing is throttled: each
# attempt is counted before its code is looked at (atomically, so parallel guesses each
# take one count), and only a successful enrollment gives its count back. Beyond the
# budget of one client, or of all clients together (the code space), attempts are refused
# until the window ends.
ENROLL_WINDOW = timedelta(minutes=10)
ENROLL_CLIENT_BUDGET = 10  # failed attempts of one client address per window
ENROLL_GLOBAL_BUDGET = 100  # failed attempts of all clients together per window
ENROLL_ALARM_AFTER = 5  # failed attempts of one client that raise an alarm
# Alarms about enrollment carry this prefix and the client's address instead of a device
# id ("enrollment:*": the budget of all clients).
ENROLLMENT_ALARM = "enrollment:"


def enroll(
    store: HubStore,
    headers: RequestHeaders,
    *,
    method: str,
    path: str,
    body: dict,
    raw_body: bytes,
    now: datetime,
    client: str,
    encryption_key: dict | None = None,
) -> dict:
    """Register a device's existing id and public key into the slot its one-time code
    names. The request is signed by that key (proof of possession). A retry by the same
    device after a lost answer gets the same answer; any other second use is refused.
    `client` is the address the request came from, which the throttle counts;
    `encryption_key`, the county's signed encryption key statement, goes in the answer."""
    window = iso(_window_start(now))
    counted = [f"enroll-client:{client}"]
    over_all = False
    with store.unit_of_work():
        store.forget_failures_before(iso(_window_start(now) - ENROLL_WINDOW))
        over_client = store.count_failure(counted[0], window) > ENROLL_CLIENT_BUDGET
        if not over_client:
            counted.append("enroll-all")
            over_all = store.count_failure(counted[1], window) > ENROLL_GLOBAL_BUDGET
    if over_client or over_all:
        _failed(store, client, now, everyone=over_all)
        retry_at = iso((_window_start(now) + ENROLL_WINDOW).astimezone(now.tzinfo))
        raise SyncError("ENROLL_THROTTLED", f"until {retry_at}")
    try:
        answer = _enroll(
            store, headers, method=method, path=path, body=body, raw_body=raw_body, now=now
        )
        if encryption_key is not None:
            answer["county_encryption_key"] = encryption_key
    except SyncError:
        _failed(store, client, now)
        raise
    with store.unit_of_work():  # a success is not a failed attempt
        for scope in counted:
            store.uncount_failure(scope, window)
    return answer


def _window_start(now: datetime) -> datetime:
    utc = now.astimezone(UTC)
    seconds = int(ENROLL_WINDOW.total_seconds())
    return datetime.fromtimestamp(int(utc.timestamp()) // seconds * seconds, UTC)


def _failed(store: HubStore, client: str, now: datetime, everyone: bool = False) -> None:
    """Count a failed attempt of `client` and raise the alarms it calls for: one open
    alarm per client address (each later failure adds a repeat), one when the budget of
    all clients is spent. Counting first locks the counter's row, so that parallel
    failures raise one alarm, not several."""
    window = _window_start(now)
    since = iso(window.astimezone(now.tzinfo))
    with store.unit_of_work():
        failed = store.count_failure(f"enroll-failed:{client}", iso(window))
        if failed >= ENROLL_ALARM_AFTER:
            detail = f"{failed} failed enrollment attempts from {client} since {since}"
            store.raise_alarm(
                f"{ENROLLMENT_ALARM}{client}", "ENROLL_GUESSING", None, detail, iso(now)
            )
        if everyone:
            store.count_failure("enroll-failed:*", iso(window))
            detail = (
                f"more than {ENROLL_GLOBAL_BUDGET} failed enrollment attempts from all"
                f" clients since {since}: enrollment refused until the window ends"
            )
            store.raise_alarm(f"{ENROLLMENT_ALARM}*", "ENROLL_THROTTLED", None, detail, iso(now))


def _enroll(
    store: HubStore,
    headers: RequestHeaders,
    *,
    method: str,
    path: str,
    body: dict,
    raw_body: bytes,
    now: datetime,
) -> dict:
    claimed = signed_request_of(headers)
    code, device_id, public_key_b64 = (body.get(k) for k in ("code", "device_id", "public_key"))
    if not (_text(code) and _text(device_id) and _text(public_key_b64)):
        raise SyncError("BAD_REQUEST", "enrollment needs code, device_id and public_key")
    if claimed.device_id != device_id:
        raise SyncError("BAD_REQUEST", "the signing device is not the one enrolling")
    public_key = load_public_key(public_key_b64)
    verify_request(public_key, claimed, method=method, path=path, body=raw_body, now=now)
    if device_id_for(public_key) != device_id:
        raise SyncError("DEVICE_ID_MISMATCH", device_id)
    with store.unit_of_work():
        _remember_nonce(store, device_id, claimed.nonce, now)
        slot = store.slot_by_code_hash(code_hash(code))
        if slot is None:
            raise SyncError("CODE_UNKNOWN")
        if slot.device_id is not None:
            if slot.device_id == device_id and slot.public_key == public_key_b64:
                if slot.revoked_at is not None:
                    raise SyncError("DEVICE_REVOKED", device_id)
                return _enrollment_answer(store, slot, now)
            raise SyncError("CODE_USED")
        if slot.revoked_at is not None:
            raise SyncError("SLOT_REVOKED")
        if now >= datetime.fromisoformat(slot.code_expires_at):
            raise SyncError("CODE_EXPIRED", f"at {slot.code_expires_at}")
        existing = store.slot_by_device(device_id)
        if existing is not None:
            if existing.revoked_at is not None:
                raise SyncError("DEVICE_REVOKED", f"{device_id} cannot enroll again")
            raise SyncError("ALREADY_ENROLLED", f"as clinic {existing.clinic_code}")
        store.enroll_slot(slot.slot_id, device_id, public_key_b64, iso(now))
        slot = reread_slot(store, slot.slot_id)
    return _enrollment_answer(store, slot, now)


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def _enrollment_answer(store: HubStore, slot: Slot, now: datetime) -> dict:
    county = county_of(store)
    return {
        "device_id": slot.device_id,
        "slot_id": slot.slot_id,
        "clinic_code": slot.clinic_code,
        "township": slot.township,
        "county_name": county["county"],
        "county_public_key": county["public_key"],
        "county_key_fingerprint": county["fingerprint"],
        "enrolled_at": slot.enrolled_at,
        "hub_time": iso(now),
    }
