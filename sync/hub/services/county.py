"""The county and its device slots: the county's row and public key, provisioning a slot
with a one-time enrollment code, revoking a device or an unused slot.

Device ids: a device's id is derived from its key when the terminal is initialised
(`edge.adapters.identity.device_id_for`) and is in every ledger record from seq 1.
Enrollment (`enrollment.py`) registers that existing id and public key into a slot
provisioned here; the hub never renames a device.
"""

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.domain.ledger import b64url, raw_public_key
from sync.hub.model import HubError, Slot
from sync.hub.ports import HubStore
from sync.protocol import iso, key_fingerprint, sha256_hex

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read out over a phone
CODE_LENGTH = 8
DEFAULT_CODE_LIFETIME = timedelta(hours=72)


def refuse_a_second_county(store: HubStore, where: str) -> None:
    county = store.county()
    if county is not None:
        raise HubError(f"{where} already holds the hub of {county.name}")


def create_county(
    store: HubStore, county_name: str, public_key: Ed25519PublicKey, now: datetime
) -> dict:
    """The county's row in a new hub, with the public half of its signing key."""
    encoded = b64url(raw_public_key(public_key))
    with store.unit_of_work():
        store.create_county(county_name, encoded, iso(now))
    return _described(county_name, encoded)


def county_of(store: HubStore) -> dict:
    county = store.county()
    if county is None:
        raise HubError("this hub has no county yet: run 'clinic hub init'")
    return _described(county.name, county.public_key)


def _described(name: str, public_key: str) -> dict:
    return {"county": name, "public_key": public_key, "fingerprint": key_fingerprint(public_key)}


# ---- provisioning ---------------------------------------------------------------------------


def new_enrollment_code(choice: Callable[[str], str] = secrets.choice) -> str:
    """Eight characters from an alphabet without look-alikes, as XXXX-XXXX."""
    raw = "".join(choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_code(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalnum())


def code_hash(code: str) -> str:
    return sha256_hex(normalize_code(code).encode())


@dataclass(frozen=True)
class Provisioned:
    slot_id: int
    clinic_code: str
    township: str
    code: str
    expires_at: str
    county_fingerprint: str

    def to_dict(self) -> dict:
        return asdict(self)


def provision(
    store: HubStore,
    *,
    clinic_code: str,
    township: str,
    now: datetime,
    lifetime: timedelta = DEFAULT_CODE_LIFETIME,
    make_code: Callable[[], str] = new_enrollment_code,
) -> Provisioned:
    """Register a device slot and hand out its one-time enrollment code (shown only once:
    the hub keeps its hash)."""
    clinic_code, township = clinic_code.strip(), township.strip()
    if not clinic_code or not township:
        raise HubError("a device slot needs a clinic code and a township")
    county = county_of(store)
    code = make_code()
    expires_at = iso(now + lifetime)
    with store.unit_of_work():
        slot_id = store.add_slot(clinic_code, township, code_hash(code), expires_at, iso(now))
    return Provisioned(slot_id, clinic_code, township, code, expires_at, county["fingerprint"])


def find_slot(store: HubStore, target: str) -> Slot:
    """A slot by its device id, or by its number (`12` or `slot-12`) before enrollment."""
    slot = store.slot_by_device(target)
    number = target.removeprefix("slot-")
    if slot is None and number.isdigit():
        slot = store.slot_by_id(int(number))
    if slot is None:
        raise HubError(f"no device or slot {target!r} at this hub")
    return slot


def reread_slot(store: HubStore, slot_id: int) -> Slot:
    """A slot read again after a change to it; one that is gone is a broken store."""
    slot = store.slot_by_id(slot_id)
    if slot is None:
        raise HubError(f"slot {slot_id} vanished from this hub")
    return slot


def revoke(store: HubStore, target: str, now: datetime, reason: str = "") -> Slot:
    """Stop a device (or an unused slot): its uploads and code are refused from now on;
    what it uploaded stays."""
    with store.unit_of_work():
        slot = find_slot(store, target)
        if slot.revoked_at is not None:
            raise HubError(f"{target} was already revoked at {slot.revoked_at}")
        store.revoke_slot(slot.slot_id, iso(now), reason)
    return reread_slot(store, slot.slot_id)
