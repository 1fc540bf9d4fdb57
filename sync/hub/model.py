"""The county hub's rows and refusals: what the use cases (`sync.hub.services`) and the
stores (`sync.hub.adapters`) hand each other. Plain frozen dataclasses, no behaviour
beyond reading a stored document.
"""

import json
from dataclasses import dataclass


class HubError(Exception):
    """A refused admin operation; the message says why and changes nothing."""


class HubStoreError(Exception):
    """A refused storage operation; the message is for the operator."""


@dataclass(frozen=True)
class County:
    name: str
    public_key: str
    created_at: str


@dataclass(frozen=True)
class Slot:
    """A provisioned device slot (clinic, township); a device fills it at enrollment."""

    slot_id: int
    clinic_code: str
    township: str
    provisioned_at: str
    code_hash: str
    code_expires_at: str
    enrolled_at: str | None
    device_id: str | None
    public_key: str | None
    revoked_at: str | None
    revoked_reason: str | None
    head_seq: int
    head_hash: str | None
    last_contact_at: str | None
    heartbeat: str | None
    clock_skew_s: int | None

    @property
    def heartbeat_doc(self) -> dict:
        return json.loads(self.heartbeat) if self.heartbeat else {}


@dataclass(frozen=True)
class Publication:
    kind: str
    version: str
    published_at: str
    expires_at: str
    manifest: dict
    signature: str
    content: dict


@dataclass(frozen=True)
class Alarm:
    alarm_id: int
    device_id: str
    code: str
    seq: int | None
    detail: str
    raised_at: str
    repeats: int
    cleared_at: str | None


@dataclass(frozen=True)
class StoredRecord:
    position: int  # order of arrival at the hub
    device_id: str
    seq: int
    record: dict


@dataclass(frozen=True)
class ReconciliationItem:
    item_id: int
    device_id: str
    seq: int | None
    tx_id: str | None
    code: str
    business_day: str | None
    details: dict
    created_at: str


@dataclass(frozen=True)
class Balances:
    """The county's running figures for one person, year and visit type."""

    deductible_used: int
    fund_paid: int
    assistance_paid: int
    account_balance: int


@dataclass(frozen=True)
class ConsoleUser:
    username: str
    password_hash: str
    role: str
    township: str | None
    failures: int
    locked_until: str | None
