"""What goes into ledger record bodies, and the bookkeeping rules around them. Pure.

Settlement bodies carry everything needed to recompute them later (visit, versions,
accumulators before, full result); reversals carry what they undo; a daily close sums
everything since the previous close, like a cash register's Z report.
"""

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from edge.domain.model import Accumulators, Settlement, Visit

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


def _zero_totals() -> dict[str, Any]:
    return {"count": 0, **dict.fromkeys(MONEY_FIELDS, 0)}


def closed_business_day(records: list[dict[str, Any]], closed_on: str) -> str:
    """The business day a daily close belongs to: the day of the latest settlement or
    reversal it covers (a close made after midnight closes the day before), else the day
    it was made (`created_at` is China time, so its first ten characters are the day)."""
    days = [r["created_at"][:10] for r in records if r["kind"] in ("settlement", "reversal")]
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
    records: list[dict[str, Any]], *, business_day: str, operator: str
) -> dict[str, Any]:
    """Counts and totals of the settlements and reversals in `records`, reversals netted."""
    totals = period_totals(records)
    return {
        "business_day": business_day,
        "operator": operator,
        "from_seq": records[0]["seq"] if records else None,
        "to_seq": records[-1]["seq"] if records else None,
        "settlements": totals["settlements"],
        "reversals": totals["reversals"],
        "net": totals["net"],
        "needs_review": totals["needs_review"],
    }


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
    insurance type (`insurance_types`: by insured id, from the roster) and visit type."""
    totals = period_totals(records)
    settlements = {r["tx_id"]: r for r in records if r["kind"] == "settlement"}
    known = {**originals, **settlements}
    return {
        "from_seq": records[0]["seq"] if records else None,
        "to_seq": records[-1]["seq"] if records else None,
        **totals,
        "by_insurance": grouped_totals(
            records, lambda r: insurance_types.get(r["body"]["insured_id"]) or UNKNOWN_GROUP
        ),
        "by_visit_type": grouped_totals(records, lambda r: visit_type_of(r, known)),
        "operator": operator,
    }


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

MAX_FEN = 10**12  # ten billion yuan: far above any visit, day or year of a clinic
MAX_LINES = 500  # lines of one visit
MAX_TEXT = 1000  # a free text (a reason, a warning's message)
MAX_BODY_NODES = 20_000  # values in one body, all levels
MAX_DEPTH = 8

Check = Callable[[Any, str], str | None]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fen(value: Any, where: str) -> str | None:
    if type(value) is not int:
        return f"{where} must be a whole number of fen, not {_shown(value)}"
    if abs(value) > MAX_FEN:
        return f"{where} is out of range ({value})"
    return None


def _count(value: Any, where: str) -> str | None:
    if type(value) is not int or not 0 <= value <= 2**63 - 1:
        return f"{where} must be a whole number from 0, not {_shown(value)}"
    return None


def _flag(value: Any, where: str) -> str | None:
    return None if type(value) is bool else f"{where} must be true or false"


def _text(limit: int = 64, *, nullable: bool = False) -> Check:
    def check(value: Any, where: str) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            return f"{where} must be text, not {_shown(value)}"
        if len(value) > limit:
            return f"{where} is longer than {limit} characters"
        return None

    return check


def _decimal(value: Any, where: str) -> str | None:
    """A price or quantity: a finite decimal number as text ("6.80", "2")."""
    problem = _text(32)(value, where)
    if problem is not None:
        return problem
    try:
        finite = Decimal(value).is_finite()
    except ArithmeticError:
        finite = False
    return None if finite else f"{where} must be a decimal number as text, not {_shown(value)}"


def _day(value: Any, where: str) -> str | None:
    problem = _text(10)(value, where)
    if problem is not None:
        return problem
    try:
        date.fromisoformat(value)
    except ValueError:
        return f"{where} must be a date (YYYY-MM-DD), not {_shown(value)}"
    return None


def _pattern(pattern: re.Pattern[str], shape: str) -> Check:
    def check(value: Any, where: str) -> str | None:
        if isinstance(value, str) and pattern.fullmatch(value):
            return None
        return f"{where} must be {shape}, not {_shown(value)}"

    return check


def _optional(check: Check) -> Check:
    return lambda value, where: None if value is None else check(value, where)


def _list_of(check: Check, limit: int) -> Check:
    def list_check(value: Any, where: str) -> str | None:
        if not isinstance(value, list):
            return f"{where} must be a list, not {_shown(value)}"
        if len(value) > limit:
            return f"{where} has more than {limit} entries"
        for number, entry in enumerate(value):
            problem = check(entry, f"{where}[{number}]")
            if problem is not None:
                return problem
        return None

    return list_check


def _map_of(check: Check, limit: int = 32) -> Check:
    """{name: value}: names are short texts."""

    def map_check(value: Any, where: str) -> str | None:
        if not isinstance(value, dict):
            return f"{where} must be an object, not {_shown(value)}"
        if len(value) > limit:
            return f"{where} has more than {limit} members"
        for name, entry in value.items():
            problem = _text()(name, f"a name in {where}") or check(entry, f"{where}.{name}")
            if problem is not None:
                return problem
        return None

    return map_check


def _object(required: dict[str, Check], optional: dict[str, Check] | None = None) -> Check:
    optional = optional or {}

    def object_check(value: Any, where: str) -> str | None:
        if not isinstance(value, dict):
            return f"{where} must be an object, not {_shown(value)}"
        missing = [name for name in required if name not in value]
        if missing:
            return f"{where} lacks {', '.join(missing)}"
        unknown = [name for name in value if name not in required and name not in optional]
        if unknown:
            return f"{where} has unknown members {_shown(sorted(map(str, unknown)))}"
        for name, entry in value.items():
            problem = (required.get(name) or optional[name])(entry, f"{where}.{name}")
            if problem is not None:
                return problem
        return None

    return object_check


_ID = _text(64)
_ACCUMULATORS = _object(
    {name: _fen for name in ("deductible_used", "fund_paid", "assistance_paid", "account_balance")},
    {
        **{name: _fen for name in ("day_fund_paid", "ci_selfpay", "ci_paid")},
        "supplements_paid": _map_of(_fen),
        "family_account_balance": _fen,
    },
)
_AMOUNTS = _object(
    dict.fromkeys(VERSION_1_MONEY_FIELDS, _fen),
    {name: _fen for name in MONEY_FIELDS if name not in VERSION_1_MONEY_FIELDS},
)
_VISIT = _object(
    {
        "date": _day,
        "visit_type": _text(32),
        "diagnoses": _list_of(_text(32), 50),
        "lines": _list_of(
            _object(
                {
                    "code": _ID,
                    "name": _text(200),
                    "price": _decimal,
                    "unit": _text(32),
                    "quantity": _decimal,
                }
            ),
            MAX_LINES,
        ),
        "use_personal_account": _flag,
    },
    {"use_family_account": _flag, "family_account_holder": _text(nullable=True)},
)
RESULT_AMOUNTS = (
    "total", "fund", "assistance", "personal_account", "cash", "inscp_total",
    "deductible_applied", "fulamt_total", "overlmt_total", "preselfpay_total", "policy_selfpay",
)  # fmt: skip
_RESULT_LINE = _object(
    {
        "code": _ID,
        **{
            name: _fen
            for name in ("amount", "fulamt_ownpay", "overlmt_selfpay", "preselfpay", "inscp")
        },
        "reasons": _list_of(_text(MAX_TEXT), 20),
    },
    {"fund_fixed": _fen},
)
_RESULT = _object(
    {
        "eligible": _flag,
        **dict.fromkeys(RESULT_AMOUNTS, _fen),
        "lines": _list_of(_RESULT_LINE, MAX_LINES),
        "accumulators_after": _ACCUMULATORS,
        "warnings": _list_of(_object({"code": _ID, "message": _text(MAX_TEXT)}), 50),
    },
    {
        "fund_fixed_total": _fen,
        "fund_limited_by": _text(32, nullable=True),
        "critical_illness": _fen,
        "supplements": _list_of(
            _object({"name": _text(), "pays_as": _text(32), "amount": _fen}), 32
        ),
        "family_account": _fen,
        "setlinfo": _map_of(_fen),
    },
)
_TOTALS = _object(
    {"count": _count, **dict.fromkeys(VERSION_1_MONEY_FIELDS, _fen)},
    {name: _fen for name in MONEY_FIELDS if name not in VERSION_1_MONEY_FIELDS},
)
BODY_SCHEMAS: dict[str, Check] = {
    "settlement": _object(
        {
            "insured_id": _ID,
            "operator": _ID,
            "visit": _VISIT,
            "catalog_version": _text(nullable=True),
            "policy_version": _ID,
            "accumulators_before": _ACCUMULATORS,
            "result": _RESULT,
            "needs_review": _list_of(_ID, 10),
        },
        {"rules_version": _count},
    ),
    "reversal": _object(
        {
            "reverses": _ID,
            "reverses_seq": _count,
            "insured_id": _ID,
            "operator": _ID,
            "reason": _text(MAX_TEXT),
            "amounts": _AMOUNTS,
            "accumulators_after": _ACCUMULATORS,
        }
    ),
    "daily_close": _object(
        {
            "business_day": _day,
            "operator": _ID,
            "from_seq": _optional(_count),
            "to_seq": _optional(_count),
            "settlements": _TOTALS,
            "reversals": _TOTALS,
            "net": _AMOUNTS,
            "needs_review": _count,
        }
    ),
}
_GROUPS = _map_of(_object({"count": _count, **dict.fromkeys(MONEY_FIELDS, _fen)}), 64)
_CLOSES = _object({"count": _count, "first_seq": _optional(_count), "last_seq": _optional(_count)})
_PERIOD = {
    "from_seq": _optional(_count),
    "to_seq": _optional(_count),
    "settlements": _TOTALS,
    "reversals": _TOTALS,
    "net": _AMOUNTS,
    "by_insurance": _GROUPS,
    "by_visit_type": _GROUPS,
    "needs_review": _count,
    "operator": _ID,
}
BODY_SCHEMAS["monthly_close"] = _object(
    {"month": _pattern(MONTH, "YYYY-MM"), "daily_closes": _CLOSES, **_PERIOD}
)
BODY_SCHEMAS["yearly_close"] = _object(
    {
        "year": _pattern(YEAR, "YYYY"),
        "monthly_closes": _CLOSES,
        "months": _list_of(_pattern(MONTH, "YYYY-MM"), 12),
        **_PERIOD,
    }
)


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
        return f"{where} holds {_shown(value)}, which a record never holds (amounts are fen)"
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
        return f"body must be an object, not {_shown(body)}"
    problem = _json_problem(body, "body", [MAX_BODY_NODES])
    if problem is not None:
        return problem
    if kind == "event":
        return _text()(body.get("event"), "body.event")
    schema = BODY_SCHEMAS.get(kind)
    return None if schema is None else schema(body, "body")
