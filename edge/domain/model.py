"""The settlement domain: the inputs and results of `settlement-rules.md`, as plain values.

Nothing here does I/O. Parsing untrusted documents into these types is `edge.domain.documents`;
the arithmetic is `edge.domain.settlement`.
"""

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

INSURANCE_TYPES = ("resident", "employee")
VISIT_TYPES = ("general", "chronic")
ITEM_KINDS = ("drug", "service", "material")
ITEM_CLASSES = ("A", "B", "C")
GENDERS = ("M", "F")
STATUSES = ("active", "suspended", "terminated")

MAX_LINES = 200
MAX_QUANTITY = Decimal(100000)
QUANTITY_PLACES = 3
PRICE_PLACES = 4


class Rejection(Exception):
    """A visit that cannot be settled; `code` is one of the rules' rejection codes."""

    def __init__(self, code: str, message: str, line: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.line is not None:
            error["line"] = self.line
        return {"error": error}


@dataclass(frozen=True, slots=True)
class Benefit:
    deductible: int  # fen
    ratio: Decimal
    annual_cap: int  # fen


@dataclass(frozen=True, slots=True)
class AssistanceScheme:
    name: str
    ratio: Decimal
    annual_cap: int  # fen


@dataclass(frozen=True, slots=True)
class OfflineLimits:
    """Past any of these the device still settles, but marks the record for county review."""

    max_hours_since_sync: int | None = None
    max_fund_since_sync: int | None = None  # fen
    max_visits_per_person_per_day: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    class_b_prepay_ratio: Decimal
    benefits: dict[tuple[str, str], Benefit]  # (insurance_type, visit_type) -> Benefit
    assistance: dict[str, AssistanceScheme]
    offline_limits: OfflineLimits = OfflineLimits()


@dataclass(frozen=True, slots=True)
class CatalogItem:
    code: str
    name: str
    kind: str
    item_class: str
    price: Decimal  # yuan
    payment_standard: Decimal | None = None  # yuan
    self_prepay_ratio: Decimal | None = None
    gender: str | None = None
    min_age: int | None = None
    max_age: int | None = None
    max_qty: Decimal | None = None
    chronic_only: tuple[str, ...] = ()
    valid_from: date | None = None
    valid_to: date | None = None
    spec: str = ""
    unit: str = ""

    def valid_on(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day <= self.valid_to
        )


@dataclass(frozen=True, slots=True)
class ChronicCert:
    disease_code: str
    valid_from: date | None
    valid_to: date | None

    def valid_on(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day <= self.valid_to
        )


@dataclass(frozen=True, slots=True)
class Person:
    insurance_type: str
    gender: str
    birth_date: date
    status: str
    waiting_until: date | None = None
    categories: tuple[str, ...] = ()
    chronic_certs: tuple[ChronicCert, ...] = ()
    account_balance: int = 0  # fen


@dataclass(frozen=True, slots=True)
class Accumulators:
    """One person's year so far, for the visit's visit type (assistance is year-wide)."""

    deductible_used: int = 0
    fund_paid: int = 0
    assistance_paid: int = 0


@dataclass(frozen=True, slots=True)
class VisitLine:
    code: str
    quantity: object  # checked by the engine: BAD_QUANTITY comes after UNKNOWN_ITEM


@dataclass(frozen=True, slots=True)
class Visit:
    date: date
    visit_type: str
    diagnoses: tuple[str, ...]
    lines: tuple[VisitLine, ...]
    use_personal_account: bool = False


@dataclass(frozen=True, slots=True)
class LineResult:
    code: str
    quantity: Decimal
    amount: int
    fulamt_ownpay: int
    overlmt_selfpay: int
    preselfpay: int
    inscp: int
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AccumulatorsAfter:
    deductible_used: int
    fund_paid: int
    assistance_paid: int
    account_balance: int


@dataclass(frozen=True, slots=True)
class SettlementWarning:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Settlement:
    eligible: bool
    total: int
    fund: int
    assistance: int
    personal_account: int
    cash: int
    inscp_total: int
    deductible_applied: int
    fulamt_total: int
    overlmt_total: int
    preselfpay_total: int
    policy_selfpay: int
    lines: tuple[LineResult, ...]
    accumulators_after: AccumulatorsAfter
    warnings: tuple[SettlementWarning, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The `quote` output document, field for field."""
        return {
            "eligible": self.eligible,
            "total": self.total,
            "fund": self.fund,
            "assistance": self.assistance,
            "personal_account": self.personal_account,
            "cash": self.cash,
            "inscp_total": self.inscp_total,
            "deductible_applied": self.deductible_applied,
            "fulamt_total": self.fulamt_total,
            "overlmt_total": self.overlmt_total,
            "preselfpay_total": self.preselfpay_total,
            "policy_selfpay": self.policy_selfpay,
            "lines": [
                {
                    "code": line.code,
                    "amount": line.amount,
                    "fulamt_ownpay": line.fulamt_ownpay,
                    "overlmt_selfpay": line.overlmt_selfpay,
                    "preselfpay": line.preselfpay,
                    "inscp": line.inscp,
                    "reasons": list(line.reasons),
                }
                for line in self.lines
            ],
            "accumulators_after": {
                "deductible_used": self.accumulators_after.deductible_used,
                "fund_paid": self.accumulators_after.fund_paid,
                "assistance_paid": self.accumulators_after.assistance_paid,
                "account_balance": self.accumulators_after.account_balance,
            },
            "warnings": [{"code": w.code, "message": w.message} for w in self.warnings],
        }
