"""The village service point's rules (docs/service-point.md). Pure.

Besides settling visits, the clinic takes requests for the county (enrolment, renewal,
chronic-disease certificates, cross-region filing, complaints) and collects the yearly
resident premium. Both are signed ledger records; this module holds what they may say
(`details_problem`, `decision_problem`), the premium arithmetic (`premium_due`), the ID
number check and mask, the close totals of premiums and the bounds of photos.
"""

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from edge.domain import shapes as sh
from edge.domain.model import Person, PremiumRule, Rejection

REQUEST_KINDS = ("enrolment", "renewal", "chronic_certificate", "cross_region_filing", "complaint")
# Requests whose approval publishes a roster version holding the changed person.
ROSTER_KINDS = ("enrolment", "renewal", "chronic_certificate")
FILING_TYPES = (
    "long_term_residence",
    "retiree_relocated",
    "referral",
    "posted_worker",
    "temporary",
)
CERTIFICATE_SCHEMES = ("chronic", "two_diseases")
OUTCOMES = ("approved", "rejected", "more_info")
PAYMENT_METHODS = ("cash", "mobile", "family_account")
ATTACHMENT_TYPES = ("image/jpeg", "image/png")

MAX_ATTACHMENTS = 6  # photos of one request
MAX_ATTACHMENT_BYTES = 3 * 1024 * 1024  # one photo: 3 MiB
MAX_REQUEST_BYTES = 12 * 1024 * 1024  # all photos of one request: 12 MiB
MAX_PREMIUM_PERSONS = 20  # persons one premium pays for (a family)

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MONTH_DAY = re.compile(r"(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])")


def is_sha256_hex(value: object) -> bool:
    """A SHA-256 as photos are named: 64 lower-case hex digits (the one check of it)."""
    return isinstance(value, str) and SHA256_HEX.fullmatch(value) is not None


# ---- ID numbers (GB 11643) --------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"  # by the weighted sum mod 11
_ID_NUMBER = re.compile(r"[1-9][0-9]{16}[0-9X]")
MASKED_ID_NUMBER = re.compile(r"[0-9]{6}\*{8}[0-9]{3}[0-9X]")  # as rosters and records show it


def id_number_problem(text: Any) -> str | None:
    """Why `text` is not a citizen ID number (18 characters, birth date, GB 11643 check
    character), or None. The message never repeats the number (it must not be logged)."""
    if not isinstance(text, str) or len(text) != 18:
        return "身份证号码应为18位 / an ID number has 18 characters"
    if not _ID_NUMBER.fullmatch(text):
        return "身份证号码应为17位数字加1位数字或X / an ID number is 17 digits and a digit or X"
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        born = None
    if born is None or born.year < 1900:
        return "身份证号码中的出生日期无效 / the birth date in the ID number is not a date"
    total = sum(int(digit) * weight for digit, weight in zip(text[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != text[17]:
        return "身份证号码校验位不对，请核对 / the ID number's check character is wrong"
    return None


def clean_id_number(text: str) -> str:
    """What the doctor typed as the check wants it: no spaces, a capital X."""
    return "".join(text.split()).upper()


def mask_id_number(text: str) -> str:
    """The form the roster and records show: first 6, eight `*`, last 4."""
    return text[:6] + "*" * 8 + text[-4:]


# ---- premiums --------------------------------------------------------------------------


def premium_for(rule: PremiumRule, categories: Iterable[str]) -> tuple[int, int, int]:
    """(due, state_pays, amount) of one resident of `categories`: the state pays it all
    for a `full` category, else the largest `fixed` subsidy of the person's categories
    (never more than due); the person pays the rest."""
    names = set(categories)
    due = rule.resident
    if names & set(rule.full):
        state_pays = due
    else:
        state_pays = min(due, max((rule.fixed.get(name, 0) for name in names), default=0))
    return due, state_pays, due - state_pays


def premium_due(rule: PremiumRule, person: Person, on: date | None = None) -> tuple[int, int, int]:
    """(due, state_pays, amount) of `person` (their categories valid `on`, default: every
    one they hold). Employees pay no resident premium: refused."""
    if person.insurance_type != "resident":
        raise Rejection(
            "NOT_RESIDENT",
            "职工医保参保人不缴纳居民医保保费 / an employee pays no resident premium",
        )
    names = person.categories_on(on) if on else {c.name for c in person.categories}
    return premium_for(rule, names)


def collection_opens_on(rule: PremiumRule, year: int) -> date:
    return date(year, int(rule.collection_opens[:2]), int(rule.collection_opens[3:]))


def premium_year_choices(rule: PremiumRule, today: date) -> list[int]:
    """The insurance years the clinic may collect for on `today`, the default first: next
    year's from `collection_opens` on, else this year's; the other of the two second."""
    this, following = today.year, today.year + 1
    if today >= collection_opens_on(rule, this):
        return [following, this]
    return [this, following]


PREMIUM_KINDS = ("premium", "premium_reversal")
_BY_METHOD = ("cash", "mobile", "family_account")


def _zero_premiums() -> dict[str, int]:
    return {"count": 0, "persons": 0, "amount": 0, **dict.fromkeys(_BY_METHOD, 0), "state_paid": 0}


def premium_totals(
    records: Iterable[dict[str, Any]], originals: Mapping[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The `premiums` member of a close: the premiums collected and reversed among
    `records`, and the net (`net.cash` is the cash the clinic hands over). A reversal
    takes back its premium's persons and state share, found among `records` or in
    `originals` (premium records by tx_id); one whose premium is in neither counts its
    amount only."""
    records = list(records)
    known = {**(originals or {}), **{r["tx_id"]: r for r in records if r["kind"] == "premium"}}
    collected, reversed_ = _zero_premiums(), _zero_premiums()
    for record in records:
        body = record["body"]
        if record["kind"] == "premium":
            bucket, premium = collected, body
        elif record["kind"] == "premium_reversal":
            original = known.get(body["reverses"])
            bucket, premium = reversed_, original["body"] if original else None
        else:
            continue
        bucket["count"] += 1
        bucket["amount"] += body["amount"]
        if body["method"] in _BY_METHOD:
            bucket[body["method"]] += body["amount"]
        if premium is not None:
            bucket["persons"] += len(premium["persons"])
            bucket["state_paid"] += premium["state_paid"]
    net = {
        name: collected[name] - reversed_[name]
        for name in ("amount", *_BY_METHOD, "state_paid")
    }  # fmt: skip
    return {"collected": collected, "reversed": reversed_, "net": net}


# ---- photos ----------------------------------------------------------------------------


def attachment_type(data: bytes) -> str | None:
    """The photo's type by its first bytes (JPEG or PNG), or None: the name or the
    browser's word for it is not trusted."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None


# ---- request details and decisions -----------------------------------------------------

_ID = sh.text(64)
_NAME = sh.text(200)
_DAY = sh.day
_DETAILS: dict[str, sh.Check] = {
    "enrolment": sh.object(
        {
            "insurance_type": sh.one_of(("resident",)),
            "category": sh.text(64, nullable=True),
            "village": sh.text(200, nullable=True),
        }
    ),
    "renewal": sh.object({"year": sh.year, "premium_tx_id": sh.text(64, nullable=True)}),
    "chronic_certificate": sh.object(
        {
            "disease_code": sh.text(32),
            "disease_name": _NAME,
            "scheme": sh.one_of(CERTIFICATE_SCHEMES),
            "hospital": sh.text(200, nullable=True),
            "diagnosed_on": sh.optional(_DAY),
        }
    ),
    "cross_region_filing": sh.object(
        {
            "filing_type": sh.one_of(FILING_TYPES),
            "destination": _NAME,
            "valid_from": _DAY,
            "valid_to": sh.optional(_DAY),
            "reason": sh.text(sh.MAX_TEXT),
        }
    ),
    "complaint": sh.object(
        {"settlement_tx_id": _ID, "settlement_seq": sh.count, "grounds": sh.text(sh.MAX_TEXT)}
    ),
}


def details_problem(kind: Any, details: Any) -> str | None:
    """Why `details` are not those of a request of `kind`, or None."""
    if kind not in _DETAILS:
        return f"body.kind must be one of {', '.join(REQUEST_KINDS)}, not {sh.shown(kind)}"
    problem = _DETAILS[kind](details, "body.details")
    if problem is not None or kind != "cross_region_filing":
        return problem
    if details["valid_to"] is not None and details["valid_to"] < details["valid_from"]:
        return "body.details.valid_to is before valid_from"
    return None


_PAYERS = sh.map_of(sh.fen, 16)
_RESULTS: dict[str, sh.Check] = {
    "enrolment": sh.object({"insured_id": _ID, "roster_version": _ID}),
    "renewal": sh.object({"year": sh.year, "roster_version": _ID}),
    "chronic_certificate": sh.object(
        {
            "disease_code": sh.text(32),
            "valid_from": _DAY,
            "valid_to": sh.optional(_DAY),
            "roster_version": _ID,
        }
    ),
    "cross_region_filing": sh.object(
        {"filing_no": _ID, "valid_from": _DAY, "valid_to": sh.optional(_DAY)}
    ),
    "complaint": sh.object(
        {
            "answer": sh.text(sh.MAX_TEXT),
            "recomputed": sh.optional(_PAYERS),
            "device": sh.optional(_PAYERS),
            "correction": sh.flag,
        }
    ),
}


def _moment(value: Any, where: str) -> str | None:
    if isinstance(value, str) and len(value) <= 40:
        try:
            if datetime.fromisoformat(value).tzinfo is not None:
                return None
        except ValueError:
            pass
    return f"{where} must be an ISO time with its offset, not {sh.shown(value)}"


# A decision's members, its result any object (decision_problem checks it by kind).
_DECISION_MEMBERS = sh.object(
    {
        "v": sh.one_of((1,)),
        "kind": sh.one_of(("request_decision",)),
        "serial": sh.count,
        "device_id": _ID,
        "clinic": _NAME,
        "request_tx_id": _ID,
        "request_kind": sh.one_of(REQUEST_KINDS),
        "outcome": sh.one_of(OUTCOMES),
        "reason": sh.text(sh.MAX_TEXT, nullable=True),
        "decided_by": _ID,
        "decided_at": _moment,
        "result": sh.optional(sh.map_of(lambda value, where: None)),
    }
)


def decision_problem(decision: Any) -> str | None:
    """Why `decision` (the signed "decision" object of a county decision) is not one, or
    None: its members, a reason unless approved, the result its kind and outcome carry
    (approved: the kind's result; a complaint's answer either way; otherwise none)."""
    problem = _DECISION_MEMBERS(decision, "decision")
    if problem is not None:
        return problem
    kind, outcome, result = decision["request_kind"], decision["outcome"], decision["result"]
    if outcome != "approved" and not (decision["reason"] or "").strip():
        return "decision.reason is required unless the request is approved"
    carries = outcome == "approved" or (kind == "complaint" and outcome == "rejected")
    if not carries:
        return None if result is None else f"decision.result must be null when {outcome}"
    if result is None:
        return f"decision.result is required for an {outcome} {kind}"
    return _RESULTS[kind](result, "decision.result")


# ---- roster versions -------------------------------------------------------------------


def next_roster_version(latest: str) -> str:
    """The roster version an approval publishes after `latest`: `latest` + ".1", or its
    last part + 1 once it has three parts or more (2026.11 → 2026.11.1 → 2026.11.2)."""
    parts = latest.split(".")
    if len(parts) >= 3 and parts[-1].isdigit():
        return ".".join([*parts[:-1], str(int(parts[-1]) + 1)])
    return f"{latest}.1"
