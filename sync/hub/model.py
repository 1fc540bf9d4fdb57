"""The county hub's rows and refusals: what the use cases (`sync.hub.services`) and the
stores (`sync.hub.adapters`) hand each other. Plain frozen dataclasses, no behaviour
beyond reading a stored document.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field


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
class PublishedRelease:
    """A software release the county published for one architecture (`sync.releases`)."""

    version: str
    arch: str
    python: str
    manifest: dict
    signature: str
    published_at: str
    withdrawn_at: str | None

    @property
    def document(self) -> dict:
        """What devices get: the manifest and the county's signature over it."""
        return {"manifest": self.manifest, "signature": self.signature}


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
class RecordSummary:
    """A stored record's outline, for listing a device's records (without its body)."""

    seq: int
    kind: str
    tx_id: str
    created_at: str
    received_at: str
    hash: str


@dataclass(frozen=True)
class StoredRecord:
    position: int  # order of arrival at the hub
    device_id: str
    seq: int
    record: dict
    malformed: bool = False  # flagged: kept as evidence, never computed with


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
    """The county's running figures that one visit reads and moves, by the names of
    `edge.domain.records.ACCUMULATOR_FIELDS`: the person's year so far for the visit's
    type (`deductible_used`, `fund_paid`), the year-wide figures (`assistance_paid`,
    `ci_selfpay`, `ci_paid`, `supplements_paid` by supplement name), what the fund paid
    the person on the visit's date for its type (`day_fund_paid`), the person's account
    balance, and the balance of the family holder's account (0 when there is none)."""

    deductible_used: int = 0
    fund_paid: int = 0
    assistance_paid: int = 0
    account_balance: int = 0
    day_fund_paid: int = 0
    ci_selfpay: int = 0
    ci_paid: int = 0
    supplements_paid: Mapping[str, int] = field(default_factory=dict)
    family_account_balance: int = 0


@dataclass(frozen=True)
class ConsoleUser:
    username: str
    password_hash: str
    role: str
    township: str | None
    failures: int
    locked_until: str | None


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in console session, with its user's current role and township."""

    session_hash: str
    username: str
    role: str
    township: str | None
    created_at: str
    last_seen_at: str
    expires_at: str


@dataclass(frozen=True)
class StatementRevision:
    """One revision of a clinic's clearing statement for a month (`docs/statements.md`):
    what the county built (`content`: total, detail, changes, …) and the status the county
    set on it, with who set it and when."""

    clinic_code: str
    month: str
    revision: int
    built_at: str
    device_ids: list
    content: dict
    status: str
    payment_reference: str | None
    paid_on: str | None
    status_by: str | None
    status_at: str | None


@dataclass(frozen=True)
class StatementEvent:
    """Something that happened to a clinic's statement: built, revised, agreed, paid, a
    device's reconciliation report; who and when."""

    event_id: int
    clinic_code: str
    month: str
    revision: int
    action: str
    actor: str
    at: str
    detail: dict


@dataclass(frozen=True)
class StatementReport:
    """A device's reconciliation of a statement revision against its own ledger."""

    clinic_code: str
    month: str
    revision: int
    device_id: str
    received_at: str
    agrees: bool
    report: dict
