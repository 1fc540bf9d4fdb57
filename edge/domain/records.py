"""What goes into ledger record bodies, and the bookkeeping rules around them. Pure.

Settlement bodies carry everything needed to recompute them later (visit, versions,
accumulators before, full result); reversals carry what they undo; a daily close sums
everything since the previous close, like a cash register's Z report.
"""

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from edge.domain import service_point as sp
from edge.domain import shapes as sh
from edge.domain.model import Accumulators, Settlement, Visit
from edge.domain.shapes import MAX_TEXT, Check

RULES_VERSION = 2  # the result follows settlement-rules-v2.md (version 1 results lack its fields)

# What a visit's payers paid, as daily closes and reversals total them: the total, then
# each payer of the chain in its order. `cvlserv_pay` and `oth_pay` are the supplements
# paying as each; a version 1 result has none of the payers after `assistance` but the
# personal account and cash, which count as 0.
MONEY_FIELDS = (
    "total", "fund", "critical_illness", "assistance", "cvlserv_pay", "oth_pay",
    "personal_account", "family_account", "cash",
)  # fmt: skip
VERSION_1_MONEY_FIELDS = ("total", "fund", "assistance", "personal_account", "cash")
# Each of MONEY_FIELDS by the national platform's name for it (2207 `setlinfo`) and as
# clinics call it.
NATIONAL_NAMES = {
    "total": "medfee_sumamt", "fund": "hifp_pay", "critical_illness": "hifmi_pay",
    "assistance": "maf_pay", "cvlserv_pay": "cvlserv_pay", "oth_pay": "oth_pay",
    "personal_account": "acct_pay", "family_account": "acct_mulaid_pay", "cash": "psn_cash_pay",
}  # fmt: skip
CHINESE_NAMES = {
    "total": "医疗费总额", "fund": "统筹基金", "critical_illness": "大病保险",
    "assistance": "医疗救助", "cvlserv_pay": "公务员补助", "oth_pay": "优抚补助",
    "personal_account": "个人账户", "family_account": "家庭共济账户", "cash": "现金",
}  # fmt: skip
# The accumulators a settlement reads and moves, as records and `clinic quote` name them.
ACCUMULATOR_FIELDS = (
    "deductible_used", "fund_paid", "assistance_paid", "account_balance", "day_fund_paid",
    "ci_selfpay", "ci_paid", "supplements_paid", "family_account_balance",
)  # fmt: skip


def payer_amounts(result: dict[str, Any]) -> dict[str, int]:
    """A settlement result's amounts per payer (MONEY_FIELDS), version 1 results included."""
    amounts = {name: result.get(name, 0) for name in MONEY_FIELDS}
    for pays_as in ("cvlserv_pay", "oth_pay"):
        amounts[pays_as] = sum(
            s["amount"] for s in result.get("supplements", []) if s["pays_as"] == pays_as
        )
    return amounts


def visit_to_json(
    visit: Visit, catalog_lines: list[dict[str, Any]], family_account_holder: str | None = None
) -> dict[str, Any]:
    return {
        "date": visit.date.isoformat(),
        "visit_type": visit.visit_type,
        "diagnoses": list(visit.diagnoses),
        "lines": catalog_lines,
        "use_personal_account": visit.use_personal_account,
        "use_family_account": visit.use_family_account,
        # whose employee account the family account is: its balance is in the accumulators
        "family_account_holder": family_account_holder,
    }


def accumulators_to_json(accumulators: Accumulators, account_balance: int) -> dict[str, Any]:
    return {
        "deductible_used": accumulators.deductible_used,
        "fund_paid": accumulators.fund_paid,
        "assistance_paid": accumulators.assistance_paid,
        "account_balance": account_balance,
        "day_fund_paid": accumulators.day_fund_paid,
        "ci_selfpay": accumulators.ci_selfpay,
        "ci_paid": accumulators.ci_paid,
        "supplements_paid": dict(accumulators.supplements_paid),
        "family_account_balance": accumulators.family_account_balance,
    }


def settlement_body(
    *,
    insured_id: str,
    operator: str,
    visit: dict[str, Any],
    catalog_version: str | None,
    policy_version: str,
    accumulators_before: dict[str, Any],
    result: Settlement,
    needs_review: list[str],
) -> dict[str, Any]:
    return {
        "insured_id": insured_id,
        "operator": operator,
        "visit": visit,
        "catalog_version": catalog_version,
        "policy_version": policy_version,
        "rules_version": RULES_VERSION,
        "accumulators_before": accumulators_before,
        "result": result.to_dict(),
        "needs_review": needs_review,
    }


def reversal_body(
    original: dict[str, Any], *, reason: str, operator: str, accumulators_after: dict[str, Any]
) -> dict[str, Any]:
    result = original["body"]["result"]
    return {
        "reverses": original["tx_id"],
        "reverses_seq": original["seq"],
        "insured_id": original["body"]["insured_id"],
        "operator": operator,
        "reason": reason,
        "amounts": payer_amounts(result),
        "accumulators_after": accumulators_after,
    }


def restored_accumulators(
    before: dict[str, Any], after: dict[str, Any], current: dict[str, Any]
) -> dict[str, Any]:
    """`current` with one settlement's effect taken back: every figure moves back by what
    the settlement moved it (`after` − `before`, its accumulators after and before), so
    counters give back what the visit counted and balances get back what they paid (the
    family holder's included). Counters never go below zero. A figure a version 1 record
    does not name moved by nothing."""
    restored: dict[str, Any] = {}
    for name in ACCUMULATOR_FIELDS:
        if name == "supplements_paid":
            continue
        moved = after.get(name, 0) - before.get(name, 0)
        restored[name] = current[name] - moved
        if not name.endswith("balance"):
            restored[name] = max(0, restored[name])
    supplements = dict(current["supplements_paid"])
    before_paid, after_paid = before.get("supplements_paid", {}), after.get("supplements_paid", {})
    for name, paid in after_paid.items():
        if name in supplements:
            supplements[name] = max(0, supplements[name] - (paid - before_paid.get(name, 0)))
    restored["supplements_paid"] = supplements
    return restored


# The kinds that move a personal account's balance (`account_movements`).
ACCOUNT_KINDS = ("settlement", "reversal", *sp.PREMIUM_KINDS)


def account_persons(kind: str, body: dict[str, Any]) -> set[str]:
    """Whose personal account a record may move (`account_movements` names no one else,
    a reversal's family account holder being its original settlement's)."""
    if kind == "settlement":
        visit = body.get("visit")
        holder = visit.get("family_account_holder") if isinstance(visit, dict) else None
        names = [body.get("insured_id"), holder]
    elif kind == "reversal":
        names = [body.get("insured_id")]
    elif kind in sp.PREMIUM_KINDS:
        names = [body.get("account_holder")]
    else:
        names = []
    return {name for name in names if isinstance(name, str) and name}


def account_movements(
    kind: str, body: dict[str, Any], reversed_body: dict[str, Any] | None = None
) -> dict[str, int]:
    """What one record moved personal-account balances by, per insured number (fen,
    negative when paid from the account): a settlement its person's account and the family
    account holder's (家庭共济, its accumulators after − before, as the terminal applied
    them), a premium paid from a family account its holder's, a reversal the opposite of
    what its original settlement (`reversed_body`) moved."""
    if kind == "reversal":
        if not isinstance(reversed_body, dict):
            return {}
        original = account_movements("settlement", reversed_body)
        return {insured_id: -amount for insured_id, amount in original.items()}
    if kind in sp.PREMIUM_KINDS:
        holder, amount = body.get("account_holder"), body.get("amount")
        if body.get("method") != "family_account" or not isinstance(holder, str) or not holder:
            return {}
        if type(amount) is not int:
            return {}
        return {holder: -amount if kind == "premium" else amount}
    if kind != "settlement":
        return {}
    result, before = body.get("result"), body.get("accumulators_before")
    after = result.get("accumulators_after") if isinstance(result, dict) else None

    def moved(name: str) -> int:
        was = before.get(name) if isinstance(before, dict) else None
        now = after.get(name) if isinstance(after, dict) else None
        return now - was if type(was) is int and type(now) is int else 0

    insured_id, visit = body.get("insured_id"), body.get("visit")
    holder = visit.get("family_account_holder") if isinstance(visit, dict) else None
    moves: dict[str, int] = {}
    if isinstance(insured_id, str):
        moves[insured_id] = moved("account_balance")
    if isinstance(holder, str) and holder:
        moves[holder] = moves.get(holder, 0) + moved("family_account_balance")
    return {insured_id: amount for insured_id, amount in moves.items() if amount}


# The kinds whose money a close totals.
CLOSED_KINDS = ("settlement", "reversal", *sp.PREMIUM_KINDS)


def with_premiums(
    body: dict[str, Any],
    records: list[dict[str, Any]],
    originals: Mapping[str, dict[str, Any]] | None,
) -> dict[str, Any]:
    """`body` with its `premiums` member when `records` hold premiums or their reversals;
    without, the body is the one it was before premiums existed, byte for byte."""
    if any(r["kind"] in sp.PREMIUM_KINDS for r in records):
        body["premiums"] = sp.premium_totals(records, originals)
    return body


def _zero_totals() -> dict[str, Any]:
    return {"count": 0, **dict.fromkeys(MONEY_FIELDS, 0)}


def closed_business_day(records: list[dict[str, Any]], closed_on: str) -> str:
    """The business day a daily close belongs to: the day of the latest settlement,
    reversal, premium or premium reversal it covers (a close made after midnight closes
    the day before), else the day it was made (`created_at` is China time, so its first
    ten characters are the day)."""
    days = [r["created_at"][:10] for r in records if r["kind"] in CLOSED_KINDS]
    return max(days, default=closed_on)


def period_totals(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts and totals of the settlements and reversals in `records`, reversals netted
    (other kinds ignored): what a daily close, a month close and a year close all sum."""
    settlements, reversals = _zero_totals(), _zero_totals()
    needs_review = 0
    for record in records:
        if record["kind"] == "settlement":
            amounts, bucket = payer_amounts(record["body"]["result"]), settlements
            needs_review += bool(record["body"]["needs_review"])
        elif record["kind"] == "reversal":
            amounts, bucket = record["body"]["amounts"], reversals
        else:
            continue
        bucket["count"] += 1
        for name in MONEY_FIELDS:
            bucket[name] += amounts.get(name, 0)  # a version 1 reversal names five
    net = {name: settlements[name] - reversals[name] for name in MONEY_FIELDS}
    return {"settlements": settlements, "reversals": reversals, "net": net,
            "needs_review": needs_review}  # fmt: skip


def daily_close_body(
    records: list[dict[str, Any]],
    *,
    business_day: str,
    operator: str,
    originals: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Counts and totals of the settlements and reversals in `records`, reversals netted,
    and of the premiums when there are any (`originals`: the premiums, by tx_id, that
    premium reversals among `records` undo when those are not among them)."""
    totals = period_totals(records)
    body = {
        "business_day": business_day,
        "operator": operator,
        "from_seq": records[0]["seq"] if records else None,
        "to_seq": records[-1]["seq"] if records else None,
        "settlements": totals["settlements"],
        "reversals": totals["reversals"],
        "net": totals["net"],
        "needs_review": totals["needs_review"],
    }
    return with_premiums(body, records, originals)


# ---- month and year closes ---------------------------------------------------------------

CHINA_TIME = timezone(timedelta(hours=8))  # Asia/Shanghai keeps no summer time
UNKNOWN_GROUP = "unknown"  # an insured person no longer in the roster, a reversal's lost visit
MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
YEAR = re.compile(r"[0-9]{4}")


def month_of(created_at: str) -> str:
    """The China-time calendar month (`YYYY-MM`) a record belongs to, by its `created_at`.
    A reversal belongs to the month it was made in, whatever its settlement's month."""
    return datetime.fromisoformat(created_at).astimezone(CHINA_TIME).strftime("%Y-%m")


def previous_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


def grouped_totals(
    records: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], str]
) -> dict[str, dict[str, int]]:
    """{group: {"count", each MONEY_FIELDS net}} of the settlements and reversals in
    `records` by `key(record)`; `count` is how many settlements and reversals."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["kind"] in ("settlement", "reversal"):
            groups.setdefault(key(record), []).append(record)
    out = {}
    for name in sorted(groups):
        totals = period_totals(groups[name])
        count = totals["settlements"]["count"] + totals["reversals"]["count"]
        out[name] = {"count": count, **totals["net"]}
    return out


def visit_type_of(record: dict[str, Any], originals: Mapping[str, dict[str, Any]]) -> str:
    """A settlement's visit type, or a reversal's (its settlement's, from `originals` by
    tx_id when that settlement is not among the records)."""
    if record["kind"] == "settlement":
        return str(record["body"]["visit"]["visit_type"])
    original = originals.get(record["body"]["reverses"])
    return str(original["body"]["visit"]["visit_type"]) if original else UNKNOWN_GROUP


def period_close_body(
    records: list[dict[str, Any]],
    *,
    operator: str,
    insurance_types: Mapping[str, str],
    originals: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """What a month close and a year close share: the seq range of `records` (every
    record of the period, in seq order), the totals reversals netted, and the net by
    insurance type (`insurance_types`: by insured id, from the roster) and visit type.
    `originals` are the settlements and premiums, by tx_id, that reversals among
    `records` undo. With the premiums' totals when there are any."""
    totals = period_totals(records)
    settlements = {r["tx_id"]: r for r in records if r["kind"] == "settlement"}
    known = {**originals, **settlements}
    body = {
        "from_seq": records[0]["seq"] if records else None,
        "to_seq": records[-1]["seq"] if records else None,
        **totals,
        "by_insurance": grouped_totals(
            records, lambda r: insurance_types.get(r["body"]["insured_id"]) or UNKNOWN_GROUP
        ),
        "by_visit_type": grouped_totals(records, lambda r: visit_type_of(r, known)),
        "operator": operator,
    }
    return with_premiums(body, records, originals)


def close_range(closes: list[dict[str, Any]]) -> dict[str, Any]:
    """{"count", "first_seq", "last_seq"} of the close records `closes` (seq order)."""
    return {
        "count": len(closes),
        "first_seq": closes[0]["seq"] if closes else None,
        "last_seq": closes[-1]["seq"] if closes else None,
    }


def monthly_close_body(
    records: list[dict[str, Any]],
    *,
    month: str,
    operator: str,
    daily_closes: list[dict[str, Any]],
    insurance_types: Mapping[str, str],
    originals: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """The body of a `monthly_close` of `month`: `records` are every record created in
    that month (China time), `daily_closes` the daily closes that cover its settlements
    and reversals."""
    body = period_close_body(
        records, operator=operator, insurance_types=insurance_types, originals=originals
    )
    return {"month": month, "daily_closes": close_range(daily_closes), **body}


def yearly_close_body(
    records: list[dict[str, Any]],
    *,
    year: str,
    operator: str,
    monthly_closes: list[dict[str, Any]],
    insurance_types: Mapping[str, str],
    originals: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """The body of a `yearly_close`: like a month close's over every record of the year,
    with the month closes it covers and their months."""
    body = period_close_body(
        records, operator=operator, insurance_types=insurance_types, originals=originals
    )
    return {
        "year": year,
        "monthly_closes": close_range(monthly_closes),
        "months": [close["body"]["month"] for close in monthly_closes],
        **body,
    }


# ---- well-formed bodies ----------------------------------------------------------------
#
# What a well-formed body of each kind holds (docs/ledger.md, "Well-formed bodies"): its
# known members only, each of its type, amounts in whole fen, texts and lists bounded.
# The hub stores a signed record whose body is not (it is evidence) but never computes
# with it. Members a version 1 record lacks are optional; version 1's are required.

MAX_LINES = 500  # lines of one visit
MAX_BODY_NODES = 20_000  # values in one body, all levels
MAX_DEPTH = 8

_ID = sh.text(64)
_ACCUMULATORS = sh.object(
    {
        name: sh.fen
        for name in ("deductible_used", "fund_paid", "assistance_paid", "account_balance")
    },
    {
        **{name: sh.fen for name in ("day_fund_paid", "ci_selfpay", "ci_paid")},
        "supplements_paid": sh.map_of(sh.fen),
        "family_account_balance": sh.fen,
    },
)
_AMOUNTS = sh.object(
    dict.fromkeys(VERSION_1_MONEY_FIELDS, sh.fen),
    {name: sh.fen for name in MONEY_FIELDS if name not in VERSION_1_MONEY_FIELDS},
)
_VISIT = sh.object(
    {
        "date": sh.day,
        "visit_type": sh.text(32),
        "diagnoses": sh.list_of(sh.text(32), 50),
        "lines": sh.list_of(
            sh.object(
                {
                    "code": _ID,
                    "name": sh.text(200),
                    "price": sh.decimal,
                    "unit": sh.text(32),
                    "quantity": sh.decimal,
                }
            ),
            MAX_LINES,
        ),
        "use_personal_account": sh.flag,
    },
    {"use_family_account": sh.flag, "family_account_holder": sh.text(nullable=True)},
)
RESULT_AMOUNTS = (
    "total", "fund", "assistance", "personal_account", "cash", "inscp_total",
    "deductible_applied", "fulamt_total", "overlmt_total", "preselfpay_total", "policy_selfpay",
)  # fmt: skip
_RESULT_LINE = sh.object(
    {
        "code": _ID,
        **{
            name: sh.fen
            for name in ("amount", "fulamt_ownpay", "overlmt_selfpay", "preselfpay", "inscp")
        },
        "reasons": sh.list_of(sh.text(MAX_TEXT), 20),
    },
    {"fund_fixed": sh.fen},
)
_RESULT = sh.object(
    {
        "eligible": sh.flag,
        **dict.fromkeys(RESULT_AMOUNTS, sh.fen),
        "lines": sh.list_of(_RESULT_LINE, MAX_LINES),
        "accumulators_after": _ACCUMULATORS,
        "warnings": sh.list_of(sh.object({"code": _ID, "message": sh.text(MAX_TEXT)}), 50),
    },
    {
        "fund_fixed_total": sh.fen,
        "fund_limited_by": sh.text(32, nullable=True),
        "critical_illness": sh.fen,
        "supplements": sh.list_of(
            sh.object({"name": sh.text(), "pays_as": sh.text(32), "amount": sh.fen}), 32
        ),
        "family_account": sh.fen,
        "setlinfo": sh.map_of(sh.fen),
    },
)
_TOTALS = sh.object(
    {"count": sh.count, **dict.fromkeys(VERSION_1_MONEY_FIELDS, sh.fen)},
    {name: sh.fen for name in MONEY_FIELDS if name not in VERSION_1_MONEY_FIELDS},
)
_PREMIUM_SUMS = ("amount", "cash", "mobile", "family_account", "state_paid")
_PREMIUM_TOTALS = sh.object(
    {"count": sh.count, "persons": sh.count, **dict.fromkeys(_PREMIUM_SUMS, sh.fen)}
)
# A close's premiums (optional: a close of a ledger without premiums has none).
_CLOSE_PREMIUMS = {
    "premiums": sh.object(
        {
            "collected": _PREMIUM_TOTALS,
            "reversed": _PREMIUM_TOTALS,
            "net": sh.object(dict.fromkeys(_PREMIUM_SUMS, sh.fen)),
        }
    )
}
BODY_SCHEMAS: dict[str, Check] = {
    "settlement": sh.object(
        {
            "insured_id": _ID,
            "operator": _ID,
            "visit": _VISIT,
            "catalog_version": sh.text(nullable=True),
            "policy_version": _ID,
            "accumulators_before": _ACCUMULATORS,
            "result": _RESULT,
            "needs_review": sh.list_of(_ID, 10),
        },
        {"rules_version": sh.count},
    ),
    "reversal": sh.object(
        {
            "reverses": _ID,
            "reverses_seq": sh.count,
            "insured_id": _ID,
            "operator": _ID,
            "reason": sh.text(MAX_TEXT),
            "amounts": _AMOUNTS,
            "accumulators_after": _ACCUMULATORS,
        }
    ),
    "daily_close": sh.object(
        {
            "business_day": sh.day,
            "operator": _ID,
            "from_seq": sh.optional(sh.count),
            "to_seq": sh.optional(sh.count),
            "settlements": _TOTALS,
            "reversals": _TOTALS,
            "net": _AMOUNTS,
            "needs_review": sh.count,
        },
        _CLOSE_PREMIUMS,
    ),
}
_GROUPS = sh.map_of(sh.object({"count": sh.count, **dict.fromkeys(MONEY_FIELDS, sh.fen)}), 64)
_CLOSES = sh.object(
    {"count": sh.count, "first_seq": sh.optional(sh.count), "last_seq": sh.optional(sh.count)}
)
_PERIOD = {
    "from_seq": sh.optional(sh.count),
    "to_seq": sh.optional(sh.count),
    "settlements": _TOTALS,
    "reversals": _TOTALS,
    "net": _AMOUNTS,
    "by_insurance": _GROUPS,
    "by_visit_type": _GROUPS,
    "needs_review": sh.count,
    "operator": _ID,
}
BODY_SCHEMAS["monthly_close"] = sh.object(
    {"month": sh.pattern(MONTH, "YYYY-MM"), "daily_closes": _CLOSES, **_PERIOD}, _CLOSE_PREMIUMS
)
BODY_SCHEMAS["yearly_close"] = sh.object(
    {
        "year": sh.pattern(YEAR, "YYYY"),
        "monthly_closes": _CLOSES,
        "months": sh.list_of(sh.pattern(MONTH, "YYYY-MM"), 12),
        **_PERIOD,
    },
    _CLOSE_PREMIUMS,
)


# ---- the village service point (edge.domain.service_point, docs/service-point.md) -------


def _money(value: Any, where: str) -> str | None:
    """An amount paid: whole fen, never below zero."""
    problem = sh.fen(value, where)
    if problem is None and value < 0:
        return f"{where} must not be below 0 fen"
    return problem


def _sha256(value: Any, where: str) -> str | None:
    return sh.pattern(sp.SHA256_HEX, "a SHA-256 as 64 lowercase hex digits")(value, where)


_SEALED = sh.object(
    {
        "alg": sh.one_of(("X25519-HKDF-SHA256-AES256GCM",)),
        "key_id": sh.pattern(re.compile(r"[0-9a-f]{16}"), "16 lowercase hex digits"),
        "epk": sh.pattern(re.compile(r"[A-Za-z0-9_-]{43}"), "32 bytes as base64url"),
        "ct": sh.pattern(re.compile(r"[A-Za-z0-9_-]{24,200}"), "base64url"),
    }
)
_APPLICANT = sh.object(
    {
        "name": sh.text(64),
        "gender": sh.one_of(("M", "F")),
        "birth_date": sh.day,
        "id_number_masked": sh.pattern(sp.MASKED_ID_NUMBER, "masked as 320115********1234"),
    }
)
_ATTACHMENT = sh.object(
    {
        "sha256": _sha256,
        "type": sh.one_of(sp.ATTACHMENT_TYPES),
        "bytes": sh.count,
        "label": sh.text(200),
    }
)
_SERVICE_REQUEST = sh.object(
    {
        "kind": sh.one_of(sp.REQUEST_KINDS),
        "operator": _ID,
        "insured_id": sh.text(64, nullable=True),
        "applicant": sh.optional(_APPLICANT),
        "sealed_id_number": sh.optional(_SEALED),
        "details": lambda value, where: None,  # by the request's kind, below
        "attachments": sh.list_of(_ATTACHMENT, sp.MAX_ATTACHMENTS),
        "note": sh.text(MAX_TEXT, nullable=True),
        "follow_up_of": sh.text(64, nullable=True),
    }
)


def _service_request(body: Any, where: str) -> str | None:
    problem = _SERVICE_REQUEST(body, where)
    if problem is not None:
        return problem
    kind, attachments = body["kind"], body["attachments"]
    problem = sp.details_problem(kind, body["details"])
    if problem is not None:
        return problem
    if kind == "enrolment":
        if body["applicant"] is None or body["sealed_id_number"] is None:
            return f"{where}: an enrolment needs the applicant and the sealed ID number"
    else:
        if body["insured_id"] is None:
            return f"{where}.insured_id is required for a {kind}"
        if body["applicant"] is not None or body["sealed_id_number"] is not None:
            return f"{where}: only an enrolment carries an applicant and an ID number"
    if kind == "chronic_certificate" and not attachments:
        return f"{where}.attachments: a chronic certificate request needs a photo"
    for number, attachment in enumerate(attachments):
        if attachment["bytes"] > sp.MAX_ATTACHMENT_BYTES:
            return f"{where}.attachments[{number}] is larger than {sp.MAX_ATTACHMENT_BYTES} bytes"
    if sum(a["bytes"] for a in attachments) > sp.MAX_REQUEST_BYTES:
        return f"{where}.attachments are larger than {sp.MAX_REQUEST_BYTES} bytes together"
    if len({a["sha256"] for a in attachments}) != len(attachments):
        return f"{where}.attachments name one photo twice"
    return None


_PREMIUM_PERSON = sh.object(
    {
        "insured_id": _ID,
        "name": sh.text(64),
        "categories": sh.list_of(_ID, 16),
        "due": _money,
        "state_pays": _money,
        "amount": _money,
    }
)
_PREMIUM = sh.object(
    {
        "operator": _ID,
        "year": sh.year,
        "payer": sh.object({"name": sh.text(64), "insured_id": sh.text(64, nullable=True)}),
        "method": sh.one_of(sp.PAYMENT_METHODS),
        "reference": sh.text(64, nullable=True),
        "account_holder": sh.text(64, nullable=True),
        "persons": sh.list_of(_PREMIUM_PERSON, sp.MAX_PREMIUM_PERSONS),
        "amount": _money,
        "state_paid": _money,
        "account_balance_after": sh.optional(_money),
    }
)


def _payment_problem(body: dict[str, Any], where: str) -> str | None:
    """What a premium and its reversal share: a family account's holder and balance
    after are named exactly when the family account pays."""
    by_account = body["method"] == "family_account"
    for name in ("account_holder", "account_balance_after"):
        if by_account != (body[name] is not None):
            return f"{where}.{name} is {'required' if by_account else 'only'} for family_account"
    return None


def _premium(body: Any, where: str) -> str | None:
    problem = _PREMIUM(body, where)
    if problem is not None:
        return problem
    persons = body["persons"]
    if not persons:
        return f"{where}.persons names nobody"
    if len({p["insured_id"] for p in persons}) != len(persons):
        return f"{where}.persons names someone twice"
    for number, person in enumerate(persons):
        if person["state_pays"] > person["due"]:
            return f"{where}.persons[{number}].state_pays is more than due"
        if person["amount"] != person["due"] - person["state_pays"]:
            return f"{where}.persons[{number}].amount is not due − state_pays"
    if body["amount"] != sum(p["amount"] for p in persons):
        return f"{where}.amount is not the sum of the persons' amounts"
    if body["state_paid"] != sum(p["state_pays"] for p in persons):
        return f"{where}.state_paid is not the sum of the persons' state_pays"
    if body["amount"] == 0:
        return f"{where}: the state pays all of it, so there is no premium to record"
    if body["method"] == "mobile" and not (body["reference"] or "").strip():
        return f"{where}.reference is required for a mobile payment"
    return _payment_problem(body, where)


_PREMIUM_REVERSAL = sh.object(
    {
        "reverses": _ID,
        "reverses_seq": sh.count,
        "operator": _ID,
        "reason": sh.text(MAX_TEXT),
        "amount": _money,
        "method": sh.one_of(sp.PAYMENT_METHODS),
        "account_holder": sh.text(64, nullable=True),
        "account_balance_after": sh.optional(_money),
    }
)


def _premium_reversal(body: Any, where: str) -> str | None:
    return _PREMIUM_REVERSAL(body, where) or _payment_problem(body, where)


BODY_SCHEMAS["service_request"] = _service_request
BODY_SCHEMAS["premium"] = _premium
BODY_SCHEMAS["premium_reversal"] = _premium_reversal


def _json_problem(value: Any, where: str, budget: list[int], depth: int = 0) -> str | None:
    """What no body may hold at any level: a fraction, an integer beyond 64 bits, a text
    beyond MAX_TEXT × 4, nesting beyond MAX_DEPTH or more than MAX_BODY_NODES values."""
    budget[0] -= 1
    if budget[0] < 0:
        return f"the body holds more than {MAX_BODY_NODES} values"
    if depth > MAX_DEPTH:
        return f"{where} is nested deeper than {MAX_DEPTH} levels"
    if value is None or type(value) is bool:
        return None
    if type(value) is int:
        return None if -(2**63) <= value < 2**63 else f"{where} does not fit in 64 bits"
    if isinstance(value, str):
        return None if len(value) <= 4 * MAX_TEXT else f"{where} is too long"
    if isinstance(value, list):
        entries = enumerate(value)
    elif isinstance(value, dict):
        entries = value.items()  # type: ignore[assignment]
    else:
        return f"{where} holds {sh.shown(value)}, which a record never holds (amounts are fen)"
    for key, entry in entries:
        problem = _json_problem(entry, f"{where}.{key}", budget, depth + 1)
        if problem is not None:
            return problem
    return None


def body_problem(kind: str, body: Any) -> str | None:
    """Why a record's body is not well-formed for its kind, or None when it is. An
    `event` needs its `event` name; a kind this code does not know only the bounds every
    body keeps (a later version's verifier may know it)."""
    if not isinstance(body, dict):
        return f"body must be an object, not {sh.shown(body)}"
    problem = _json_problem(body, "body", [MAX_BODY_NODES])
    if problem is not None:
        return problem
    if kind == "event":
        return sh.text()(body.get("event"), "body.event")
    schema = BODY_SCHEMAS.get(kind)
    return None if schema is None else schema(body, "body")
