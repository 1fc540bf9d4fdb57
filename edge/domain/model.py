"""The settlement domain: the inputs and results of `settlement-rules.md` (version 1) and
`settlement-rules-v2.md` (the one-stop chain), as plain values.

Nothing here does I/O. Parsing untrusted documents into these types is `edge.domain.documents`;
the arithmetic is `edge.domain.settlement`.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

INSURANCE_TYPES = ("resident", "employee")
# Version 1's visit types; under version 2 the policy names its own.
VISIT_TYPES = ("general", "chronic")
CERTIFIED_VISIT_TYPE = "chronic"  # requires a certificate unless the policy says otherwise
SUPPLEMENT_PAYS_AS = ("oth_pay", "cvlserv_pay")
SUPPLEMENT_BASES = ("in_scope", "all")
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
    visit_cap: int | None = None  # fen the basic fund pays at most for one visit
    day_cap: int | None = None  # fen it pays one person on one date, this visit type
    requires_certificate: bool = False
    diseases: tuple[str, ...] | None = None  # certified diseases it accepts; None: any


@dataclass(frozen=True, slots=True)
class CriticalIllness:
    """大病保险: a share of the year's in-scope self-pay above a threshold."""

    visit_types: tuple[str, ...]
    insurance_types: tuple[str, ...]
    threshold: int  # fen
    ratio: Decimal
    annual_cap: int  # fen


@dataclass(frozen=True, slots=True)
class Supplement:
    """An ordered payer after assistance (优抚二次补偿, 公务员医疗补助 …)."""

    name: str
    pays_as: str  # the setlinfo field it is counted in: oth_pay | cvlserv_pay
    categories: tuple[str, ...]
    base: str  # in_scope: pays on the in-scope remainder; all: on everything left
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
class PremiumRule:
    """The policy's resident premium (`premiums` member; edge.domain.service_point)."""

    resident: int  # fen per person per year
    collection_opens: str  # "MM-DD": from this day on, the premium collected is next year's
    due_by: str  # "MM-DD": the day next year's premium is due by
    full: tuple[str, ...] = ()  # categories whose premium the state pays in full
    fixed: Mapping[str, int] = field(default_factory=dict)  # category -> fen subsidy


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    class_b_prepay_ratio: Decimal
    benefits: dict[tuple[str, str], Benefit]  # (insurance_type, visit_type) -> Benefit
    assistance: dict[str, AssistanceScheme]
    offline_limits: OfflineLimits = OfflineLimits()
    rules: int = 1  # a label only: every version 2 field applies wherever it is present
    critical_illness: CriticalIllness | None = None
    supplements: tuple[Supplement, ...] = ()
    premiums: PremiumRule | None = None  # the village service point's premium collection

    def visit_types(self, insurance_type: str) -> list[str]:
        return [v for (i, v) in self.benefits if i == insurance_type]


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
    fund_fixed: Decimal | None = None  # yuan per unit the fund pays instead of a ratio

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
class Category:
    """An assistance or supplement category, valid from..to (inclusive; None: open)."""

    name: str
    valid_from: date | None = None
    valid_to: date | None = None

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
    categories: tuple[Category, ...] = ()
    chronic_certs: tuple[ChronicCert, ...] = ()
    account_balance: int = 0  # fen

    def categories_on(self, day: date) -> frozenset[str]:
        return frozenset(c.name for c in self.categories if c.valid_on(day))


@dataclass(frozen=True, slots=True)
class Accumulators:
    """One person's year so far, for the visit's visit type (assistance, critical illness
    and supplements are year-wide), the visit's date, and the family account that may pay."""

    deductible_used: int = 0
    fund_paid: int = 0
    assistance_paid: int = 0
    day_fund_paid: int = 0
    ci_selfpay: int = 0
    ci_paid: int = 0
    supplements_paid: Mapping[str, int] = field(default_factory=dict)
    family_account_balance: int = 0


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
    use_family_account: bool = False


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
    fund_fixed: int = 0


@dataclass(frozen=True, slots=True)
class AccumulatorsAfter:
    deductible_used: int
    fund_paid: int
    assistance_paid: int
    account_balance: int
    day_fund_paid: int = 0
    ci_selfpay: int = 0
    ci_paid: int = 0
    supplements_paid: Mapping[str, int] = field(default_factory=dict)
    family_account_balance: int = 0


@dataclass(frozen=True, slots=True)
class SupplementPaid:
    name: str
    pays_as: str
    amount: int


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
    fund_fixed_total: int = 0
    fund_limited_by: str | None = None  # visit_cap | day_cap | annual_cap
    critical_illness: int = 0
    supplements: tuple[SupplementPaid, ...] = ()
    family_account: int = 0

    def supplements_as(self, pays_as: str) -> int:
        return sum(s.amount for s in self.supplements if s.pays_as == pays_as)

    def setlinfo(self) -> dict[str, int]:
        """The settlement in the national platform's names (2207 `setlinfo`), in fen."""
        fund_pay = (
            self.fund + self.critical_illness + self.assistance
            + self.supplements_as("cvlserv_pay") + self.supplements_as("oth_pay")
        )  # fmt: skip
        return {
            "medfee_sumamt": self.total,
            "fulamt_ownpay_amt": self.fulamt_total,
            "overlmt_selfpay": self.overlmt_total,
            "preselfpay_amt": self.preselfpay_total,
            "inscp_scp_amt": self.inscp_total,
            "act_pay_dedc": self.deductible_applied,
            "hifp_pay": self.fund,
            "hifmi_pay": self.critical_illness,
            "maf_pay": self.assistance,
            "cvlserv_pay": self.supplements_as("cvlserv_pay"),
            "oth_pay": self.supplements_as("oth_pay"),
            "fund_pay_sumamt": fund_pay,
            "acct_pay": self.personal_account,
            "acct_mulaid_pay": self.family_account,
            "psn_cash_pay": self.cash,
        }

    def to_dict(self) -> dict[str, Any]:
        """The `quote` output document, field for field."""
        after = self.accumulators_after
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
                    "fund_fixed": line.fund_fixed,
                }
                for line in self.lines
            ],
            "accumulators_after": {
                "deductible_used": after.deductible_used,
                "fund_paid": after.fund_paid,
                "assistance_paid": after.assistance_paid,
                "account_balance": after.account_balance,
                "day_fund_paid": after.day_fund_paid,
                "ci_selfpay": after.ci_selfpay,
                "ci_paid": after.ci_paid,
                "supplements_paid": dict(after.supplements_paid),
                "family_account_balance": after.family_account_balance,
            },
            "warnings": [{"code": w.code, "message": w.message} for w in self.warnings],
            "fund_fixed_total": self.fund_fixed_total,
            "fund_limited_by": self.fund_limited_by,
            "critical_illness": self.critical_illness,
            "supplements": [
                {"name": s.name, "pays_as": s.pays_as, "amount": s.amount} for s in self.supplements
            ],
            "family_account": self.family_account,
            "setlinfo": self.setlinfo(),
        }
