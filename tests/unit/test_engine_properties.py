"""Property-based tests of `quote_document` against `settlement-rules.md`, version 1.

The strategies build valid quote documents across the whole input space; the properties
check the rules' invariants on every settlement and compare the engine, field for field,
with a reference settlement written here from the rules alone (exact `decimal`
arithmetic, half up to the fen). Invalid documents are built by mutating valid ones so
that one or several rejections apply, and the rejection code and line must agree.

One file past 500 lines because the reference settlement, the strategies and the
properties are one proof: each property leans on the same generators and reference.
"""

import copy
import functools
import re
from collections.abc import Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.domain.quote import quote_document

T = TypeVar("T")

# ---- the reference settlement, from settlement-rules.md alone ---------------------------

MAX_LINES = 200
MAX_QUANTITY = Decimal(100000)
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.([0-9]+))?")


class RefRejection(Exception):
    def __init__(self, code: str, line: int | None = None):
        super().__init__(code)
        self.code = code
        self.line = line


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _valid_on(entry: dict, day: date) -> bool:
    start, end = _day(entry.get("valid_from")), _day(entry.get("valid_to"))
    return (start is None or start <= day) and (end is None or day <= end)


def _round_fen(value: Decimal) -> int:
    """Half up to a whole fen (every rounded value in the rules is non-negative)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _yuan_times(price: Decimal, quantity: Decimal) -> int:
    return _round_fen(price * 100 * quantity)


def _fen_times(amount: int, ratio: Decimal) -> int:
    return _round_fen(Decimal(amount) * ratio)


def _completed_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _quantity(raw: Any, index: int) -> Decimal:
    """A line's quantity, or BAD_QUANTITY as the rules' table words it."""
    match = _PLAIN_DECIMAL.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise RefRejection("BAD_QUANTITY", index)
    value = Decimal(raw)
    if len(match.group(1) or "") > 3 or value <= 0 or value > MAX_QUANTITY:
        raise RefRejection("BAD_QUANTITY", index)
    return value


def _reference_line(policy, item, quantity, person, age, visit, certified) -> dict:
    price = Decimal(item["price"])
    amount = _yuan_times(price, quantity)
    reasons = []
    if item["class"] == "C":
        reasons.append("NOT_COVERED")
    if item.get("gender") is not None and item["gender"] != person["gender"]:
        reasons.append("GENDER_RESTRICTED")
    if (item.get("min_age") is not None and age < item["min_age"]) or (
        item.get("max_age") is not None and age > item["max_age"]
    ):
        reasons.append("AGE_RESTRICTED")
    chronic_only = item.get("chronic_only") or []
    if chronic_only and (
        visit["visit_type"] != "chronic" or not any(d in chronic_only for d in certified)
    ):
        reasons.append("CHRONIC_ONLY")
    line = {"code": item["code"], "amount": amount}
    if reasons:
        line.update(fulamt_ownpay=amount, overlmt_selfpay=0, preselfpay=0, inscp=0)
        line["reasons"] = reasons
        return line

    covered_qty = quantity
    if item.get("max_qty") is not None:
        covered_qty = min(quantity, Decimal(str(item["max_qty"])))
    covered_amount = _yuan_times(price, covered_qty)
    fulamt_ownpay = amount - covered_amount
    if fulamt_ownpay > 0:
        reasons.append("QTY_OVER_LIMIT")
    standard = item.get("payment_standard")
    if standard is not None and price > Decimal(standard):
        eligible = _yuan_times(Decimal(standard), covered_qty)
        overlmt_selfpay = covered_amount - eligible
        reasons.append("OVER_PAYMENT_STANDARD")
    else:
        eligible, overlmt_selfpay = covered_amount, 0
    if item["class"] == "B":
        ratio = item.get("self_prepay_ratio")
        if ratio is None:
            ratio = policy["class_b_prepay_ratio"]
        preselfpay = _fen_times(eligible, Decimal(ratio))
    else:
        preselfpay = 0
    line.update(
        fulamt_ownpay=fulamt_ownpay,
        overlmt_selfpay=overlmt_selfpay,
        preselfpay=preselfpay,
        inscp=eligible - preselfpay,
        reasons=reasons,
    )
    return line


def best_assistance_category(policy: dict, person: dict) -> dict | None:
    """Highest ratio, then higher cap, then the alphabetically first name."""
    schemes = policy.get("assistance", {})
    names = sorted({c for c in person.get("categories", []) if c in schemes})
    best = None
    for name in names:  # alphabetical, so only a strictly better one replaces
        scheme = schemes[name]
        key = (Decimal(scheme["ratio"]), scheme["annual_cap"])
        if best is None or key > best[0]:
            best = (key, name)
    if best is None:
        return None
    return {"name": best[1], **schemes[best[1]]}


def reference_quote(doc: dict) -> dict:
    """The rules' output document for `doc`; warnings are given as their codes only."""
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.rounding = ROUND_HALF_UP
        try:
            return _reference_settle(doc)
        except RefRejection as rejection:
            error: dict = {"code": rejection.code}
            if rejection.line is not None:
                error["line"] = rejection.line
            return {"error": error}


def _reference_settle(doc: dict) -> dict:
    policy, person, acc, visit = doc["policy"], doc["person"], doc["accumulators"], doc["visit"]
    catalog = {item["code"]: item for item in doc["catalog"]}
    day = date.fromisoformat(visit["date"])
    lines = visit["lines"]
    diagnoses = visit.get("diagnoses", [])
    certs = person.get("chronic_certs", [])
    certified = [
        d for d in diagnoses if any(c["disease_code"] == d and _valid_on(c, day) for c in certs)
    ]

    if not lines:
        raise RefRejection("EMPTY_VISIT")
    if len(lines) > MAX_LINES:
        raise RefRejection("TOO_MANY_LINES")
    if visit["visit_type"] == "chronic" and not certified:
        raise RefRejection("CHRONIC_NOT_CERTIFIED")
    checked = []
    for index, line in enumerate(lines):
        item = catalog.get(line["code"])
        if item is None:
            raise RefRejection("UNKNOWN_ITEM", index)
        if not _valid_on(item, day):
            raise RefRejection("ITEM_NOT_VALID", index)
        checked.append((item, _quantity(line.get("quantity"), index)))

    age = _completed_years(date.fromisoformat(person["birth_date"]), day)
    out_lines = [
        _reference_line(policy, item, qty, person, age, visit, certified) for item, qty in checked
    ]
    total = sum(line["amount"] for line in out_lines)
    inscp_total = sum(line["inscp"] for line in out_lines)
    result = {
        "total": total,
        "inscp_total": inscp_total,
        "fulamt_total": sum(line["fulamt_ownpay"] for line in out_lines),
        "overlmt_total": sum(line["overlmt_selfpay"] for line in out_lines),
        "preselfpay_total": sum(line["preselfpay"] for line in out_lines),
        "lines": out_lines,
    }
    balance = person.get("account_balance", 0)
    waiting = _day(person.get("waiting_until"))
    eligible = person["status"] == "active" and (waiting is None or day > waiting)
    if not eligible:
        result.update(
            eligible=False,
            fund=0,
            assistance=0,
            personal_account=0,
            cash=total,
            deductible_applied=0,
            policy_selfpay=inscp_total,
            warnings=["NOT_ELIGIBLE"],
            accumulators_after={
                "deductible_used": acc["deductible_used"],
                "fund_paid": acc["fund_paid"],
                "assistance_paid": acc["assistance_paid"],
                "account_balance": balance,
            },
        )
        return result

    b = policy["benefits"][person["insurance_type"]][visit["visit_type"]]
    deductible_applied = min(max(0, b["deductible"] - acc["deductible_used"]), inscp_total)
    fund_raw = _fen_times(inscp_total - deductible_applied, Decimal(b["ratio"]))
    fund = min(fund_raw, max(0, b["annual_cap"] - acc["fund_paid"]))
    policy_selfpay = inscp_total - fund
    scheme = best_assistance_category(policy, person)
    assistance = 0
    if scheme is not None:
        assistance = min(
            _fen_times(policy_selfpay, Decimal(scheme["ratio"])),
            max(0, scheme["annual_cap"] - acc["assistance_paid"]),
        )
    personal_account = 0
    if visit.get("use_personal_account", False) and person["insurance_type"] == "employee":
        personal_account = min(balance, total - fund - assistance)
    result.update(
        eligible=True,
        fund=fund,
        assistance=assistance,
        personal_account=personal_account,
        cash=total - fund - assistance - personal_account,
        deductible_applied=deductible_applied,
        policy_selfpay=policy_selfpay,
        warnings=[],
        accumulators_after={
            "deductible_used": acc["deductible_used"] + deductible_applied,
            "fund_paid": acc["fund_paid"] + fund,
            "assistance_paid": acc["assistance_paid"] + assistance,
            "account_balance": balance - personal_account,
        },
    )
    return result


# ---- strategies ------------------------------------------------------------------------

DIAGNOSES = ["I10", "E11.9", "J06.900", "N18.5", "F20.0"]
CATEGORIES = ["extreme_poverty", "low_income_guarantee", "low_income", "severe_disability"]
FIRST_DAY, LAST_DAY = date(2023, 1, 1), date(2028, 12, 31)


def scaled_text(units: int, scale: int, places: int) -> str:
    """units / 10**scale as a plain decimal string with `places` decimals (at least as many
    as the value needs, at most `scale`)."""
    whole, frac = divmod(units, 10**scale)
    digits = f"{frac:0{scale}d}" if scale else ""
    needed = len(digits.rstrip("0"))
    places = min(max(places, needed), scale)
    return f"{whole}.{digits[:places]}" if places else str(whole)


def _shift(day: date, days: int) -> str:
    return (day + timedelta(days=days)).isoformat()


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a common year
        return day.replace(year=day.year - years, day=28)


# Strategies are built once: building them inside a draw makes Hypothesis validate each
# new one, which is most of the generation time.
@functools.cache
def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


def between(draw, low: int, high: int) -> int:
    return draw(_ints(low, high))


def pick(draw, options: Sequence[T]) -> T:
    return options[between(draw, 0, len(options) - 1)]


def chance(draw, one_in: int) -> bool:
    """True once in `one_in` draws (shrinking towards False, the plainer document)."""
    return between(draw, 1, one_in) == one_in


def scaled(draw, units: int, scale: int) -> str:
    return scaled_text(units, scale, between(draw, 0, scale))


def a_ratio(draw) -> str:
    if chance(draw, 2):
        return pick(draw, ["0", "1", "0.5", "0.10", "1.00", "0.55", "0.7", "0.70", "0.0005"])
    return scaled(draw, between(draw, 0, 10**4), 4)


def fen_amount(draw) -> int:
    if chance(draw, 2):
        return pick(draw, [0, 1, 99, 100, 30000, 40000, 200000, 1000000])
    return between(draw, 0, 10**7)


# The engine refuses prices of 10**8 yuan and more (an overflow bound, not in the rules).
MAX_PRICE_UNITS = 10**12 - 1  # ten-thousandths of a yuan


def price_units(draw) -> int:
    return pick(
        draw,
        [
            lambda: pick(draw, [350, 0, 1, 50, 125000, 10000, 5, 250, MAX_PRICE_UNITS]),
            lambda: between(draw, 100, 10**6),
            lambda: between(draw, 0, 10**10),
        ],
    )()


def quantity_text(draw) -> str:
    thousandths = pick(
        draw,
        [
            lambda: pick(draw, [1, 500, 1000, 1500, 2000, 3000, 10**8]),
            lambda: between(draw, 1, 5000),
            lambda: between(draw, 1, 10**8),
        ],
    )()
    return scaled(draw, thousandths, 3)


def offset_near(draw) -> int:
    return pick(draw, [-1, 0, 1]) if chance(draw, 2) else between(draw, -400, 400)


def near(draw, target: int) -> int:
    return pick(
        draw,
        [
            lambda: 0,
            lambda: 0,
            lambda: between(draw, 0, target),
            lambda: pick(draw, [max(0, target - 1), target, target + 1, target + 5000]),
            lambda: between(draw, 0, max(target * 2, 1000)),
        ],
    )()


def subset(draw, options: Sequence[T], max_size: int, unique: bool = False) -> list[T]:
    chosen: list[T] = []
    for _ in range(between(draw, 0, max_size)):
        option = pick(draw, options)
        if not (unique and option in chosen):
            chosen.append(option)
    return chosen


def draw_policy(draw) -> dict:
    benefits = {
        insurance_type: {
            visit_type: {
                "deductible": fen_amount(draw) if chance(draw, 2) else 0,
                "ratio": a_ratio(draw),
                "annual_cap": fen_amount(draw),
            }
            for visit_type in ("general", "chronic")
        }
        for insurance_type in ("resident", "employee")
    }
    # Few distinct ratios and caps so that ties between categories are common;
    # "0.7" and "0.70" are the same ratio written twice.
    assistance = {
        name: {
            "ratio": a_ratio(draw) if chance(draw, 4) else pick(draw, ["0.7", "0.70", "1", "1.00"]),
            "annual_cap": fen_amount(draw) if chance(draw, 2) else pick(draw, [500000, 1000000]),
        }
        for name in subset(draw, CATEGORIES, 4, unique=True)
    }
    policy = {
        "version": pick(draw, ["2026.1", "2027.2"]),
        "class_b_prepay_ratio": a_ratio(draw),
        "benefits": benefits,
    }
    if assistance or chance(draw, 2):
        policy["assistance"] = assistance
    return policy


def draw_person(draw, day: date, schemes: list[str]) -> dict:
    if chance(draw, 8):
        birth = pick(draw, [date(2000, 2, 29), date(2020, 2, 29), date(1960, 3, 1)])
    else:
        birth = _years_before(day, between(draw, 0, 100)) + timedelta(days=offset_near(draw))
    birth = min(birth, day)
    insurance_type = pick(draw, ["resident", "employee"])
    person: dict = {
        "insurance_type": insurance_type,
        "gender": pick(draw, ["M", "F"]),
        "birth_date": birth.isoformat(),
        "status": pick(draw, ["active"] * 8 + ["suspended", "terminated"]),
    }
    if chance(draw, 4):
        waiting = pick(draw, [-1, 0, 1]) if chance(draw, 2) else between(draw, -400, 30)
        person["waiting_until"] = _shift(day, waiting)
    categories = subset(draw, [*schemes, *schemes, *CATEGORIES, "veteran"], 4)
    if categories or chance(draw, 2):
        person["categories"] = categories
    offsets = [-30, -1, 0, 1, 30]
    certs = [
        {
            "disease_code": pick(draw, DIAGNOSES),
            "valid_from": _shift(day, pick(draw, offsets)),
            "valid_to": _shift(day, pick(draw, offsets)),
        }
        for _ in range(between(draw, 0, 3))
    ]
    if certs or chance(draw, 2):
        person["chronic_certs"] = certs
    balance = 0 if chance(draw, 3) else fen_amount(draw)
    if insurance_type == "resident" and not chance(draw, 4):
        balance = 0
    if balance or chance(draw, 2):
        person["account_balance"] = balance
    return person


def age_bound(draw, age: int) -> int:
    return pick(draw, [max(0, age - 1), age, age + 1]) if chance(draw, 2) else between(draw, 0, 120)


def draw_item(draw, code: str, day: date, age: int, valid: bool) -> dict:
    item_class = pick(draw, ["A", "A", "B", "B", "C"])
    price = price_units(draw)
    item: dict = {
        "code": code,
        "name": f"item {code}",
        "kind": pick(draw, ["drug", "service", "material"]),
        "class": item_class,
        "price": scaled(draw, price, 4),
    }
    standard = pick(
        draw,
        [
            lambda: None,
            lambda: None,
            lambda: price,
            lambda: max(0, price - between(draw, 1, 50)),
            lambda: min(price + between(draw, 1, 50), MAX_PRICE_UNITS),
            lambda: between(draw, 0, 10**7),
        ],
    )()
    if standard is not None:
        item["payment_standard"] = scaled(draw, standard, 4)
    if item_class == "B" and chance(draw, 2):
        item["self_prepay_ratio"] = a_ratio(draw)
    if chance(draw, 6):
        item["gender"] = pick(draw, ["M", "F"])
    min_age = age_bound(draw, age) if chance(draw, 6) else None
    max_age = age_bound(draw, age) if chance(draw, 6) else None
    if min_age is not None and max_age is not None and min_age > max_age:
        min_age, max_age = max_age, min_age
    if min_age is not None:
        item["min_age"] = min_age
    if max_age is not None:
        item["max_age"] = max_age
    if chance(draw, 3):
        item["max_qty"] = pick(
            draw,
            [
                lambda: between(draw, 1, 5),
                lambda: scaled(draw, between(draw, 1, 5000), 3),
                lambda: "100000",
            ],
        )()
    if chance(draw, 5):
        item["chronic_only"] = subset(draw, DIAGNOSES, 3, unique=True)
    if valid:
        start = pick(draw, [None, -365, -1, 0])
        end = pick(draw, [None, 0, 1, 365])
    elif chance(draw, 2):
        start, end = pick(draw, [None, -365]), -between(draw, 1, 400)
    else:
        start, end = between(draw, 1, 400), pick(draw, [None, 400, 800])
    if start is not None:
        item["valid_from"] = _shift(day, start)
    if end is not None:
        item["valid_to"] = _shift(day, end)
    return item


def line_for(draw, item: dict) -> dict:
    """A line for `item`, its quantity sometimes one step either side of max_qty."""
    limit = item.get("max_qty")
    if limit is None or not chance(draw, 2):
        return {"code": item["code"], "quantity": quantity_text(draw)}
    thousandths = int(Decimal(str(limit)) * 1000) + pick(draw, [1, 0, -1, 1000])
    return {"code": item["code"], "quantity": scaled(draw, min(max(1, thousandths), 10**8), 3)}


def _certified(person: dict, visit: dict, day: date) -> list[str]:
    certs = person.get("chronic_certs", [])
    return [
        d
        for d in visit.get("diagnoses", [])
        if any(c["disease_code"] == d and _valid_on(c, day) for c in certs)
    ]


DAYS = st.dates(FIRST_DAY, LAST_DAY)


@st.composite
def valid_documents(draw, max_lines: int = 12) -> dict:
    day = date(2024, 2, 29) if chance(draw, 10) else draw(DAYS)
    policy = draw_policy(draw)
    person = draw_person(draw, day, list(policy.get("assistance", {})))
    age = _completed_years(date.fromisoformat(person["birth_date"]), day)

    size = between(draw, 1, 15)
    validity = [True] + [not chance(draw, 5) for _ in range(size - 1)]
    first = between(draw, 0, 50)
    codes = [pick(draw, ["XJ", "X", "ZB"]) + f"{first + i:03d}" for i in range(size)]
    catalog = [
        draw_item(draw, code, day, age, valid) for code, valid in zip(codes, validity, strict=True)
    ]
    usable = [code for code, valid in zip(codes, validity, strict=True) if valid]

    visit_type = pick(draw, ["general", "chronic"])
    visit: dict = {"date": day.isoformat(), "visit_type": visit_type}
    diagnoses = subset(draw, DIAGNOSES, 3, unique=True)
    if diagnoses or chance(draw, 2):
        visit["diagnoses"] = diagnoses
    if visit_type == "chronic" and not _certified(person, visit, day):
        # Certify one of the visit's diagnoses so that most chronic visits settle.
        if not diagnoses:
            visit["diagnoses"] = diagnoses = [pick(draw, DIAGNOSES)]
        person.setdefault("chronic_certs", []).append(
            {
                "disease_code": pick(draw, diagnoses),
                "valid_from": _shift(day, -between(draw, 0, 400)),
                "valid_to": _shift(day, between(draw, 0, 400)),
            }
        )
    by_code = {item["code"]: item for item in catalog}
    visit["lines"] = [
        line_for(draw, by_code[pick(draw, usable)]) for _ in range(between(draw, 1, max_lines))
    ]
    use_account = chance(draw, 2)
    if use_account or chance(draw, 2):
        visit["use_personal_account"] = use_account

    b = policy["benefits"][person["insurance_type"]][visit_type]
    caps = [s["annual_cap"] for s in policy.get("assistance", {}).values()] or [0]
    accumulators = {
        "deductible_used": near(draw, b["deductible"]),
        "fund_paid": near(draw, b["annual_cap"]),
        "assistance_paid": near(draw, pick(draw, caps)),
    }
    return {
        "policy": policy,
        "catalog": catalog,
        "person": person,
        "accumulators": accumulators,
        "visit": visit,
    }


LINE_REJECTIONS = ["UNKNOWN_ITEM", "ITEM_NOT_VALID", "BAD_QUANTITY"]
BAD_QUANTITIES = ["0", "-1", "1.2345", "100000.001", 2, None, "0.000", "-0.5", "abc", "", 1.5]
documents = valid_documents()


@st.composite
def invalid_documents(draw) -> dict:
    """A valid document mutated so that one or several rejections of the rules apply."""
    doc = copy.deepcopy(draw(documents))
    visit, person, catalog = doc["visit"], doc["person"], doc["catalog"]
    day = date.fromisoformat(visit["date"])
    visit_level = {
        code
        for code in ("EMPTY_VISIT", "TOO_MANY_LINES", "CHRONIC_NOT_CERTIFIED")
        if chance(draw, 6)
    }
    line_level = subset(draw, LINE_REJECTIONS, 3)
    if not visit_level and not line_level:
        line_level = [pick(draw, LINE_REJECTIONS)]

    if "TOO_MANY_LINES" in visit_level:
        lines = visit["lines"]
        visit["lines"] = [dict(lines[i % len(lines)]) for i in range(MAX_LINES + 1)]
    if "EMPTY_VISIT" in visit_level:
        visit["lines"] = []
    if "CHRONIC_NOT_CERTIFIED" in visit_level:
        visit["visit_type"] = "chronic"
        how = pick(draw, ["no certs", "expired", "not yet", "other diagnosis", "no diagnosis"])
        certs = person.get("chronic_certs", [])
        if how == "no certs":
            person["chronic_certs"] = []
        elif how == "expired":
            for cert in certs:
                cert["valid_from"], cert["valid_to"] = _shift(day, -100), _shift(day, -1)
        elif how == "not yet":
            for cert in certs:
                cert["valid_from"], cert["valid_to"] = _shift(day, 1), _shift(day, 100)
        elif how == "other diagnosis":
            visit["diagnoses"] = ["Z00.000"]
        else:
            visit.pop("diagnoses", None)

    lines = visit["lines"]
    for n, mutation in enumerate(line_level if lines else []):
        index = between(draw, 0, len(lines) - 1)
        if mutation == "UNKNOWN_ITEM":
            code = lines[index]["code"]
            lines[index]["code"] = pick(draw, [code.lower(), code + " ", "NOPE", ""])
        elif mutation == "ITEM_NOT_VALID":
            stale = {"code": f"STALE{n}", "name": "stale", "kind": "drug", "class": "A"}
            stale["price"] = "1.00"
            if chance(draw, 2):
                stale["valid_to"] = _shift(day, -between(draw, 1, 400))
            else:
                stale["valid_from"] = _shift(day, between(draw, 1, 400))
            catalog.append(stale)
            lines[index]["code"] = stale["code"]
        else:
            bad = pick(draw, BAD_QUANTITIES)
            if bad is None:
                lines[index].pop("quantity", None)
            else:
                lines[index]["quantity"] = bad
    return doc


VALID = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# The version 1 output fields: version 2 (settlement-rules-v2.md) adds others, checked in
# test_engine_v2_properties.py; these tests compare and check only version 1's.
V1_FIELDS = (
    "eligible", "total", "fund", "assistance", "personal_account", "cash", "inscp_total",
    "deductible_applied", "fulamt_total", "overlmt_total", "preselfpay_total",
    "policy_selfpay", "lines", "accumulators_after", "warnings",
)  # fmt: skip
V1_LINE_FIELDS = ("code", "amount", "fulamt_ownpay", "overlmt_selfpay", "preselfpay", "inscp",
                  "reasons")  # fmt: skip


def v1_fields(result: dict) -> dict:
    """A settlement's version 1 fields (those present, so that a missing one shows)."""
    if "error" in result:
        return result
    part = {key: result[key] for key in V1_FIELDS if key in result}
    part["lines"] = [{k: line[k] for k in V1_LINE_FIELDS if k in line} for line in result["lines"]]
    after = result["accumulators_after"]
    part["accumulators_after"] = {k: after[k] for k in ACCUMULATORS if k in after}
    return part


def settled(doc: dict) -> dict:
    result = quote_document(copy.deepcopy(doc))
    assert "error" not in result, (result, doc)
    return v1_fields(result)


# ---- invariants on every settlement ------------------------------------------------------

AMOUNTS = (
    "total",
    "fund",
    "assistance",
    "personal_account",
    "cash",
    "inscp_total",
    "deductible_applied",
    "fulamt_total",
    "overlmt_total",
    "preselfpay_total",
    "policy_selfpay",
)
LINE_AMOUNTS = ("amount", "fulamt_ownpay", "overlmt_selfpay", "preselfpay", "inscp")
ACCUMULATORS = ("deductible_used", "fund_paid", "assistance_paid", "account_balance")


def _is_fen(value: Any) -> bool:
    return type(value) is int and value >= 0


def _non_json_leaves(value: Any) -> list:
    """Every leaf that is not a str, int or bool: floats, Decimals, None, anything else."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _non_json_leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _non_json_leaves(v)]
    return [] if type(value) in (str, int, bool) else [value]


@VALID
@given(documents)
def test_every_valid_document_settles_and_its_payers_add_up_to_the_total(doc):
    result = settled(doc)
    parts = result["fund"] + result["assistance"] + result["personal_account"] + result["cash"]
    assert parts == result["total"]


@VALID
@given(documents)
def test_every_amount_is_a_non_negative_integer_and_no_float_appears_anywhere(doc):
    result = settled(doc)
    for key in AMOUNTS:
        assert _is_fen(result[key]), (key, result[key])
    for line in result["lines"]:
        for key in LINE_AMOUNTS:
            assert _is_fen(line[key]), (key, line)
    assert set(result["accumulators_after"]) == set(ACCUMULATORS)
    for key in ACCUMULATORS:
        assert _is_fen(result["accumulators_after"][key]), key
    assert type(result["eligible"]) is bool
    for warning in result["warnings"]:
        assert set(warning) == {"code", "message"}, warning
    assert _non_json_leaves(result) == []


@VALID
@given(documents)
def test_each_line_splits_its_amount_exactly_and_the_totals_are_the_sums_of_the_lines(doc):
    result = settled(doc)
    lines = result["lines"]
    assert [line["code"] for line in lines] == [line["code"] for line in doc["visit"]["lines"]]
    for line in lines:
        split = line["fulamt_ownpay"] + line["overlmt_selfpay"] + line["preselfpay"] + line["inscp"]
        assert split == line["amount"], line
    assert result["total"] == sum(line["amount"] for line in lines)
    assert result["inscp_total"] == sum(line["inscp"] for line in lines)
    assert result["fulamt_total"] == sum(line["fulamt_ownpay"] for line in lines)
    assert result["overlmt_total"] == sum(line["overlmt_selfpay"] for line in lines)
    assert result["preselfpay_total"] == sum(line["preselfpay"] for line in lines)
    assert result["policy_selfpay"] == result["inscp_total"] - result["fund"]


@VALID
@given(documents)
def test_accumulators_never_pass_the_deductible_or_the_annual_caps(doc):
    result = settled(doc)
    before, after = doc["accumulators"], result["accumulators_after"]
    b = doc["policy"]["benefits"][doc["person"]["insurance_type"]][doc["visit"]["visit_type"]]
    assert after["deductible_used"] <= max(b["deductible"], before["deductible_used"])
    assert after["fund_paid"] <= max(b["annual_cap"], before["fund_paid"])
    scheme = best_assistance_category(doc["policy"], doc["person"])
    if scheme is None:
        assert result["assistance"] == 0
        assert after["assistance_paid"] == before["assistance_paid"]
    else:
        assert after["assistance_paid"] <= max(scheme["annual_cap"], before["assistance_paid"])
    assert after["deductible_used"] == before["deductible_used"] + result["deductible_applied"]
    assert after["fund_paid"] == before["fund_paid"] + result["fund"]
    assert after["assistance_paid"] == before["assistance_paid"] + result["assistance"]


@VALID
@given(documents)
def test_an_ineligible_person_pays_in_cash_changes_no_accumulator_and_is_warned(doc):
    result = settled(doc)
    person, day = doc["person"], doc["visit"]["date"]
    waiting = person.get("waiting_until")
    eligible = person["status"] == "active" and (waiting is None or day > waiting)
    assert result["eligible"] is eligible
    codes = [w["code"] for w in result["warnings"]]
    if eligible:
        assert "NOT_ELIGIBLE" not in codes
        return
    assert result["fund"] == result["assistance"] == result["personal_account"] == 0
    assert result["cash"] == result["total"]
    assert result["deductible_applied"] == 0
    assert result["policy_selfpay"] == result["inscp_total"]
    after = result["accumulators_after"]
    assert after == {**doc["accumulators"], "account_balance": person.get("account_balance", 0)}
    warning = next(w for w in result["warnings"] if w["code"] == "NOT_ELIGIBLE")
    assert isinstance(warning["message"], str)
    if person["status"] != "active":
        assert person["status"] in warning["message"]
    else:
        assert "wait" in warning["message"].lower() or waiting in warning["message"]


@VALID
@given(documents)
def test_the_personal_account_never_exceeds_the_balance_and_residents_never_use_it(doc):
    result = settled(doc)
    balance = doc["person"].get("account_balance", 0)
    assert result["personal_account"] <= balance
    assert result["accumulators_after"]["account_balance"] == balance - result["personal_account"]
    if doc["person"]["insurance_type"] == "resident":
        assert result["personal_account"] == 0
    if not doc["visit"].get("use_personal_account", False):
        assert result["personal_account"] == 0


# ---- the engine against the reference ----------------------------------------------------


def comparable(result: dict) -> dict:
    """The engine's version 1 fields with warnings reduced to their codes (messages are
    free text)."""
    if "error" in result:
        error = result["error"]
        assert isinstance(error.get("message"), str) and error["message"], error
        return {"error": {k: v for k, v in error.items() if k != "message"}}
    result = v1_fields(result)
    return {**result, "warnings": [w["code"] for w in result["warnings"]]}


@settings(VALID, max_examples=400)
@given(documents)
def test_the_engine_settles_every_valid_document_exactly_as_the_reference_does(doc):
    expected = reference_quote(doc)
    assert "error" not in expected, expected
    actual = comparable(quote_document(copy.deepcopy(doc)))
    assert set(actual) == set(expected)
    for key in expected:
        assert actual[key] == expected[key], (key, actual[key], expected[key])


@settings(VALID, max_examples=400)
@given(invalid_documents())
def test_the_engine_rejects_every_invalid_document_with_the_references_code_and_line(doc):
    expected = reference_quote(doc)
    assert "error" in expected, "the mutation should have made the document invalid"
    assert comparable(quote_document(copy.deepcopy(doc))) == expected


@settings(VALID, max_examples=25)
@given(documents, st.data())
def test_two_hundred_lines_settle_and_two_hundred_and_one_are_too_many(doc, data):
    lines = doc["visit"]["lines"]
    doc["visit"]["lines"] = [dict(lines[i % len(lines)]) for i in range(MAX_LINES)]
    expected = reference_quote(doc)
    assert comparable(quote_document(copy.deepcopy(doc))) == expected
    assert "error" not in expected
    doc["visit"]["lines"].append(dict(data.draw(st.sampled_from(lines))))
    assert comparable(quote_document(copy.deepcopy(doc))) == {"error": {"code": "TOO_MANY_LINES"}}


# ---- the reference itself, on numbers worked by hand -------------------------------------


def _hand_document(**visit_extra) -> dict:
    return {
        "policy": {
            "version": "2026.1",
            "class_b_prepay_ratio": "0.10",
            "benefits": {
                t: {
                    v: {"deductible": 0, "ratio": "0.55", "annual_cap": 40000}
                    for v in ("general", "chronic")
                }
                for t in ("resident", "employee")
            },
            "assistance": {"low_income": {"ratio": "0.5", "annual_cap": 100000}},
        },
        "catalog": [
            {
                "code": "T",
                "name": "tablet",
                "kind": "drug",
                "class": "B",
                "price": "0.0350",
                "payment_standard": "0.0300",
            },
        ],
        "person": {
            "insurance_type": "resident",
            "gender": "F",
            "birth_date": "1990-01-01",
            "status": "active",
            "categories": ["low_income"],
        },
        "accumulators": {"deductible_used": 0, "fund_paid": 0, "assistance_paid": 0},
        "visit": {
            "date": "2026-11-22",
            "visit_type": "general",
            "lines": [{"code": "T", "quantity": "30"}],
            **visit_extra,
        },
    }


def test_the_reference_rounds_half_up_at_each_named_step_on_a_hand_worked_visit():
    # amount = 0.035 × 30 yuan = 105 fen; eligible = 0.03 × 30 = 90 fen, overlmt 15;
    # preselfpay = round(9.0) = 9; inscp = 81; fund = round(44.55) = 45;
    # policy_selfpay = 36; assistance = round(18.0) = 18; cash = 105 − 45 − 18 = 42.
    result = reference_quote(_hand_document())
    assert result["lines"] == [
        {
            "code": "T",
            "amount": 105,
            "fulamt_ownpay": 0,
            "overlmt_selfpay": 15,
            "preselfpay": 9,
            "inscp": 81,
            "reasons": ["OVER_PAYMENT_STANDARD"],
        }
    ]
    assert (result["fund"], result["assistance"], result["cash"]) == (45, 18, 42)
    assert comparable(quote_document(_hand_document())) == result


def test_the_reference_rounds_a_half_fen_up_not_to_even():
    doc = _hand_document()
    doc["catalog"][0] = {"code": "T", "name": "t", "kind": "drug", "class": "A", "price": "0.0250"}
    doc["visit"]["lines"] = [{"code": "T", "quantity": "1"}]  # 2.5 fen
    assert reference_quote(doc)["lines"][0]["amount"] == 3
    assert comparable(quote_document(doc)) == reference_quote(doc)
