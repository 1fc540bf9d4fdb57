"""Random quote documents for settlement rules version 2, valid and deliberately broken.

The same generators feed Hypothesis (tests/unit/test_engine_v2_properties.py) and a
seeded `random.Random` (tests/e2e/test_quote_v2_batch.py): every choice goes through a
`source` with one method, `int(low, high)` (both inclusive), so that one strategy is
written once. Nothing of the project is imported; the generators only aim for coverage
(caps that tie, critical-illness thresholds crossed inside one visit, supplements in both
orders...), the comparison with the reference is what checks the engine.

Past 500 lines because the valid documents and the broken ones are built by the same
choices, and both the unit properties and the command line's batch use them all.
"""

import copy
import random
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from settlement_reference_v2 import (
    MAX_LINES,
    certified_diagnoses,
    reference_quote,
)

T = TypeVar("T")

DIAGNOSES = ["I10", "I10.x00", "E11.900", "E11.9", "J06.900", "N18.5", "F20.0"]
CATEGORIES = ["extreme_poverty", "low_income_guarantee", "low_income", "severe_disability"]
SUPPLEMENT_CATEGORIES = ["disabled_veteran", "civil_servant", "retired_cadre"]
EXTRA_VISIT_TYPES = ["two_diseases", "tuberculosis", "special_drugs"]
SUPPLEMENT_NAMES = [
    "veterans_second_compensation",
    "civil_servant_subsidy",
    "enterprise_supplement",
    "charity_fund",
]
FIRST_DAY, LAST_DAY = date(2023, 1, 1), date(2028, 12, 31)
# The engine refuses prices of 10**8 yuan and more (an overflow bound, not in the rules).
MAX_PRICE_UNITS = 10**12 - 1  # ten-thousandths of a yuan


class Source(Protocol):
    def int(self, low: int, high: int) -> int: ...


class RandomSource:
    def __init__(self, rng: random.Random):
        self.rng = rng

    def int(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)


# ---- choices ---------------------------------------------------------------------------


def between(s: Source, low: int, high: int) -> int:
    return s.int(low, high)


def pick(s: Source, options: Sequence[T]) -> T:
    return options[between(s, 0, len(options) - 1)]


def pick_call(s: Source, options: Sequence[Callable[[], T]]) -> T:
    return pick(s, options)()


def chance(s: Source, one_in: int) -> bool:
    """True once in `one_in` draws (shrinking towards False, the plainer document)."""
    return between(s, 1, one_in) == one_in


def subset(s: Source, options: Sequence[T], max_size: int, unique: bool = False) -> list[T]:
    chosen: list[T] = []
    for _ in range(between(s, 0, max_size)):
        option = pick(s, options)
        if not (unique and option in chosen):
            chosen.append(option)
    return chosen


def scaled_text(units: int, scale: int, places: int) -> str:
    """units / 10**scale as a plain decimal string with `places` decimals (at least as many
    as the value needs, at most `scale`)."""
    whole, frac = divmod(units, 10**scale)
    digits = f"{frac:0{scale}d}" if scale else ""
    needed = len(digits.rstrip("0"))
    places = min(max(places, needed), scale)
    return f"{whole}.{digits[:places]}" if places else str(whole)


def scaled(s: Source, units: int, scale: int) -> str:
    return scaled_text(units, scale, between(s, 0, scale))


def a_ratio(s: Source) -> str:
    if chance(s, 2):
        return pick(s, ["0", "1", "0.5", "0.10", "1.00", "0.55", "0.6", "0.70", "0.0005"])
    return scaled(s, between(s, 0, 10**4), 4)


def fen_amount(s: Source) -> int:
    if chance(s, 2):
        return pick(s, [0, 1, 99, 100, 3000, 5000, 30000, 40000, 200000, 1000000])
    return between(s, 0, 10**7)


def small_fen(s: Source) -> int:
    """Amounts of the size of one village visit, so that caps bind often."""
    return pick_call(s, [lambda: pick(s, [0, 1, 800, 3000, 5000]), lambda: between(s, 0, 20000)])


def near(s: Source, target: int) -> int:
    return pick_call(
        s,
        [
            lambda: 0,
            lambda: 0,
            lambda: between(s, 0, target),
            lambda: pick(s, [max(0, target - 1), target, target + 1, target + 5000]),
            lambda: between(s, 0, max(target * 2, 1000)),
        ],
    )


def shift(day: date, days: int) -> str:
    return (day + timedelta(days=days)).isoformat()


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a common year
        return day.replace(year=day.year - years, day=28)


def completed_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def maybe_null(s: Source, container: dict, key: str, one_in: int = 8) -> None:
    """Sometimes write an absent optional field as `null` (the page: null is absent)."""
    if key not in container and chance(s, one_in):
        container[key] = None


# ---- policy ----------------------------------------------------------------------------


def draw_benefit(s: Source, visit_type: str, v2: bool) -> dict:
    b: dict = {
        "deductible": fen_amount(s) if chance(s, 2) else 0,
        "ratio": a_ratio(s),
        "annual_cap": fen_amount(s),
    }
    if not v2:
        return b
    for cap in ("visit_cap", "day_cap"):
        if chance(s, 3):
            b[cap] = small_fen(s) if chance(s, 2) else fen_amount(s)
        maybe_null(s, b, cap)
    requires = pick(s, ["absent", "absent", True, False, None])
    if requires != "absent":
        b["requires_certificate"] = requires
    diseases = pick(s, ["absent", "absent", None, "list", "list", "empty"])
    if diseases == "list":
        b["diseases"] = subset(s, DIAGNOSES, 3, unique=True) or [pick(s, DIAGNOSES)]
    elif diseases == "empty":
        b["diseases"] = []
    elif diseases is None:
        b["diseases"] = None
    return b


def draw_benefits(s: Source, v2: bool) -> dict:
    benefits = {}
    for insurance_type in ("resident", "employee"):
        types = ["general", "chronic"]
        if v2:
            types += subset(s, EXTRA_VISIT_TYPES, 2, unique=True)
            if chance(s, 10):  # "visit types are the policy's": general may be missing
                types.remove(pick(s, ["general", "chronic"]))
        benefits[insurance_type] = {t: draw_benefit(s, t, v2) for t in types}
    return benefits


def draw_supplements(s: Source) -> list[dict]:
    supplements = []
    for name in subset(s, SUPPLEMENT_NAMES, 3, unique=True):
        categories = subset(s, [*SUPPLEMENT_CATEGORIES, *CATEGORIES], 2, unique=True)
        supplements.append(
            {
                "name": name,
                "pays_as": pick(s, ["oth_pay", "cvlserv_pay"]),
                "categories": categories or [pick(s, SUPPLEMENT_CATEGORIES)],
                "base": pick(s, ["all", "in_scope"]),
                "ratio": a_ratio(s) if chance(s, 3) else pick(s, ["0.80", "0.5", "1"]),
                "annual_cap": small_fen(s) if chance(s, 2) else fen_amount(s),
            }
        )
    return supplements


def draw_policy(s: Source, v2: bool) -> dict:
    assistance = {
        name: {
            "ratio": a_ratio(s) if chance(s, 4) else pick(s, ["0.7", "0.70", "1", "1.00"]),
            "annual_cap": fen_amount(s) if chance(s, 2) else pick(s, [500000, 1000000]),
        }
        for name in subset(s, CATEGORIES, 4, unique=True)
    }
    policy: dict = {
        "version": pick(s, ["2026.1", "2027.1"]),
        "class_b_prepay_ratio": a_ratio(s),
        "benefits": draw_benefits(s, v2),
    }
    if assistance or chance(s, 2):
        policy["assistance"] = assistance
    if not v2:
        return policy
    rules = pick(s, ["absent", 1, 2, 2, None])
    if rules != "absent":
        policy["rules"] = rules
    if chance(s, 3) or not chance(s, 4):
        policy["critical_illness"] = None if chance(s, 10) else "later"  # drawn with the visit
    supplements = pick(s, ["absent", None, "none", "some", "some", "some"])
    if supplements == "none":
        policy["supplements"] = []
    elif supplements == "some":
        policy["supplements"] = draw_supplements(s)
    elif supplements is None:
        policy["supplements"] = None
    return policy


# ---- person ----------------------------------------------------------------------------


def draw_category(s: Source, name: str, day: date, v2: bool) -> Any:
    if not v2 or chance(s, 2):
        return name
    entry: dict = {"name": name}
    offsets = [-400, -30, -1, 0, 1, 30, 400]
    start, end = pick(s, [None, *offsets]), pick(s, [None, *offsets])
    if start is not None:
        entry["valid_from"] = shift(day, start)
    if end is not None:
        entry["valid_to"] = shift(day, end)
    maybe_null(s, entry, "valid_from")
    maybe_null(s, entry, "valid_to")
    return entry


def draw_person(s: Source, day: date, policy: dict, v2: bool) -> dict:
    if chance(s, 8):
        birth = pick(s, [date(2000, 2, 29), date(2020, 2, 29), date(1960, 3, 1)])
    else:
        offset = pick(s, [-1, 0, 1]) if chance(s, 2) else between(s, -400, 400)
        birth = _years_before(day, between(s, 0, 100)) + timedelta(days=offset)
    birth = min(birth, day)
    insurance_type = pick(s, ["resident", "employee"])
    person: dict = {
        "insurance_type": insurance_type,
        "gender": pick(s, ["M", "F"]),
        "birth_date": birth.isoformat(),
        "status": pick(s, ["active"] * 8 + ["suspended", "terminated"]),
    }
    if chance(s, 4):
        waiting = pick(s, [-1, 0, 1]) if chance(s, 2) else between(s, -400, 30)
        person["waiting_until"] = shift(day, waiting)
    schemes = list(policy.get("assistance") or {})
    names = [*schemes, *schemes, *CATEGORIES, "veteran"]
    if v2:
        names += SUPPLEMENT_CATEGORIES * 2
    chosen = subset(s, names, 4)
    for supplement in policy.get("supplements") or [] if v2 else []:
        if chance(s, 2):  # so that supplements pay often
            chosen.insert(between(s, 0, len(chosen)), pick(s, supplement["categories"]))
    categories = [draw_category(s, name, day, v2) for name in chosen]
    if categories or chance(s, 2):
        person["categories"] = categories
    offsets = [-30, -1, 0, 1, 30]
    certs = [
        {
            "disease_code": pick(s, DIAGNOSES),
            "valid_from": shift(day, pick(s, offsets)),
            "valid_to": shift(day, pick(s, offsets)),
        }
        for _ in range(between(s, 0, 3))
    ]
    if certs or chance(s, 2):
        person["chronic_certs"] = certs
    balance = 0 if chance(s, 3) else fen_amount(s)
    if insurance_type == "resident" and not chance(s, 4):
        balance = 0
    if balance or chance(s, 2):
        person["account_balance"] = balance
    return person


# ---- catalog ---------------------------------------------------------------------------


def price_units(s: Source) -> int:
    return pick_call(
        s,
        [
            lambda: pick(s, [350, 0, 1, 50, 100000, 125000, 10000, 5, 250, MAX_PRICE_UNITS]),
            lambda: between(s, 100, 10**6),
            lambda: between(s, 0, 10**10),
        ],
    )


def quantity_text(s: Source) -> str:
    thousandths = pick_call(
        s,
        [
            lambda: pick(s, [1, 500, 1000, 1500, 2000, 3000, 10**8]),
            lambda: between(s, 1, 5000),
            lambda: between(s, 1, 10**8),
        ],
    )
    return scaled(s, thousandths, 3)


def age_bound(s: Source, age: int) -> int:
    return pick(s, [max(0, age - 1), age, age + 1]) if chance(s, 2) else between(s, 0, 120)


def draw_item(s: Source, code: str, day: date, age: int, valid: bool, v2: bool) -> dict:
    item_class = pick(s, ["A", "A", "A", "B", "B", "C"] if v2 else ["A", "A", "B", "B", "C"])
    price = price_units(s)
    item: dict = {
        "code": code,
        "name": f"item {code}",
        "kind": pick(s, ["drug", "service", "material"]),
        "class": item_class,
        "price": scaled(s, price, 4),
    }
    standard = pick_call(
        s,
        [
            lambda: None,
            lambda: None,
            lambda: price,
            lambda: max(0, price - between(s, 1, 50)),
            lambda: min(price + between(s, 1, 50), MAX_PRICE_UNITS),
            lambda: between(s, 0, 10**7),
        ],
    )
    if standard is not None:
        item["payment_standard"] = scaled(s, standard, 4)
    if item_class == "B" and chance(s, 2):
        item["self_prepay_ratio"] = a_ratio(s)
    if chance(s, 6):
        item["gender"] = pick(s, ["M", "F"])
    min_age = age_bound(s, age) if chance(s, 6) else None
    max_age = age_bound(s, age) if chance(s, 6) else None
    if min_age is not None and max_age is not None and min_age > max_age:
        min_age, max_age = max_age, min_age
    if min_age is not None:
        item["min_age"] = min_age
    if max_age is not None:
        item["max_age"] = max_age
    if chance(s, 3):
        item["max_qty"] = pick_call(
            s,
            [
                lambda: between(s, 1, 5),
                lambda: scaled(s, between(s, 1, 5000), 3),
                lambda: "100000",
            ],
        )
    if chance(s, 5):
        item["chronic_only"] = subset(s, DIAGNOSES, 3, unique=True)
    if valid:
        start = pick(s, [None, -365, -1, 0])
        end = pick(s, [None, 0, 1, 365])
    elif chance(s, 2):
        start, end = pick(s, [None, -365]), -between(s, 1, 400)
    else:
        start, end = between(s, 1, 400), pick(s, [None, 400, 800])
    if start is not None:
        item["valid_from"] = shift(day, start)
    if end is not None:
        item["valid_to"] = shift(day, end)
    if v2:
        if item_class == "A" and chance(s, 2):
            fixed = pick_call(
                s,
                [
                    lambda: pick(s, [0, 80000, price, max(0, price - 1), price + 1]),
                    lambda: between(s, 0, price),
                    lambda: between(s, 0, 10**6),
                ],
            )
            item["fund_fixed"] = scaled(s, min(fixed, MAX_PRICE_UNITS), 4)
        maybe_null(s, item, "fund_fixed")
    return item


def consultation_fee(s: Source, code: str) -> dict:
    """The general consultation fee: ¥10, of which the fund pays ¥8 (or so)."""
    return {
        "code": code,
        "name": "general consultation fee",
        "kind": "service",
        "class": "A",
        "price": pick(s, ["10", "10.00", "6", "12.5"]),
        "fund_fixed": pick(s, ["8", "8.00", "5", "0", "10", "12.3456"]),
        "max_qty": pick(s, [1, 1, 2, "1.5"]),
    }


def line_for(s: Source, item: dict) -> dict:
    """A line for `item`, its quantity sometimes one step either side of max_qty."""
    limit = item.get("max_qty")
    if limit is None or not chance(s, 2):
        return {"code": item["code"], "quantity": quantity_text(s)}
    thousandths = int(Decimal(str(limit)) * 1000) + pick(s, [1, 0, -1, 1000])
    return {"code": item["code"], "quantity": scaled(s, min(max(1, thousandths), 10**8), 3)}


# ---- the document ----------------------------------------------------------------------


def draw_critical_illness(s: Source, policy: dict, person: dict, visit_type: str) -> dict:
    all_types = sorted({t for by in policy["benefits"].values() for t in by} | {"other"})
    visit_types = subset(s, all_types, 2, unique=True)
    if chance(s, 2) and visit_type not in visit_types:
        visit_types.append(visit_type)
    insurance_types = subset(s, ["resident", "employee"], 2, unique=True)
    if chance(s, 2) and person["insurance_type"] not in insurance_types:
        insurance_types.append(person["insurance_type"])
    return {
        "visit_types": visit_types,
        "insurance_types": insurance_types,
        "threshold": pick_call(s, [lambda: 0, lambda: small_fen(s), lambda: fen_amount(s)]),
        "ratio": a_ratio(s) if chance(s, 2) else "0.60",
        "annual_cap": small_fen(s) if chance(s, 2) else fen_amount(s),
    }


def draw_accumulators(s: Source, policy: dict, b: dict, v2: bool) -> dict:
    caps = [c["annual_cap"] for c in (policy.get("assistance") or {}).values()] or [0]
    acc: dict = {
        "deductible_used": near(s, b["deductible"]),
        "fund_paid": near(s, b["annual_cap"]),
        "assistance_paid": near(s, pick(s, caps)),
    }
    if not v2:
        return acc
    if b.get("day_cap") is not None or chance(s, 3):
        acc["day_fund_paid"] = near(s, b.get("day_cap") or 0)
    ci = policy.get("critical_illness")
    if ci is not None:
        threshold = ci["threshold"]
        acc["ci_selfpay"] = pick_call(
            s,
            [
                lambda: 0,
                lambda: threshold,
                lambda: max(0, threshold - between(s, 1, 20000)),  # crossed in this visit
                lambda: max(0, threshold - between(s, 1, 2000)),
                lambda: threshold + between(s, 1, 20000),  # already over
                lambda: near(s, threshold),
            ],
        )
        acc["ci_paid"] = near(s, ci["annual_cap"])
    elif chance(s, 3):
        acc["ci_selfpay"], acc["ci_paid"] = fen_amount(s), fen_amount(s)
    supplements = policy.get("supplements") or []
    if supplements or chance(s, 3):
        names = [sup["name"] for sup in supplements]
        paid = {}
        for name in subset(s, [*names, *names, "retired_supplement"], 3, unique=True):
            cap = next((sup["annual_cap"] for sup in supplements if sup["name"] == name), 5000)
            paid[name] = near(s, cap)
        acc["supplements_paid"] = paid
    if chance(s, 2):
        acc["family_account_balance"] = fen_amount(s)
    for key in ("day_fund_paid", "ci_selfpay", "ci_paid", "supplements_paid"):
        maybe_null(s, acc, key, 10)
    maybe_null(s, acc, "family_account_balance", 10)
    return acc


def _ensure_certified(s: Source, doc: dict, day: date) -> None:
    """Most visits under a benefit that requires a certificate hold one, so they settle."""
    person, visit = doc["person"], doc["visit"]
    b = doc["policy"]["benefits"][person["insurance_type"]][visit["visit_type"]]
    requires, certified = certified_diagnoses(b, visit["visit_type"], person, visit, day)
    if not requires or certified:
        return
    diseases = b.get("diseases")
    if diseases == []:
        b["diseases"] = diseases = [pick(s, DIAGNOSES)]
    pool = diseases if diseases is not None else DIAGNOSES
    diagnoses = [d for d in visit.get("diagnoses") or [] if d in pool]
    if not diagnoses:
        diagnoses = [pick(s, pool)]
        visit["diagnoses"] = [*(visit.get("diagnoses") or []), *diagnoses]
    person.setdefault("chronic_certs", []).append(
        {
            "disease_code": pick(s, diagnoses),
            "valid_from": shift(day, -between(s, 0, 400)),
            "valid_to": shift(day, between(s, 0, 400)),
        }
    )


def _tie_the_caps(s: Source, doc: dict) -> None:
    """Set visit_cap, day_cap and annual_cap so that they bind, often at the same amount.

    The amount the fund would pay without caps comes from the reference (the generator
    only uses it to aim; the comparison with the engine is the test)."""
    b = doc["policy"]["benefits"][doc["person"]["insurance_type"]][doc["visit"]["visit_type"]]
    acc = doc["accumulators"]
    uncapped = copy.deepcopy(doc)
    ub = uncapped["policy"]["benefits"][doc["person"]["insurance_type"]]
    ub = ub[doc["visit"]["visit_type"]]
    ub.pop("visit_cap", None)
    ub.pop("day_cap", None)
    ub["annual_cap"] = acc["fund_paid"] + 10**12
    result = reference_quote(uncapped)
    if "error" in result or not result["eligible"]:
        return
    wanted = result["fund"]
    target = pick_call(
        s,
        [
            lambda: wanted,
            lambda: max(0, wanted - 1),
            lambda: between(s, 0, wanted),
            lambda: 0,
        ],
    )

    def remainder() -> int | None:
        mode = pick(s, ["tie", "tie", "above", "absent"])
        if mode == "absent":
            return None
        return target if mode == "tie" else target + between(s, 1, 1000)

    visit_rest, day_rest, year_rest = remainder(), remainder(), remainder()
    b.pop("visit_cap", None)
    b.pop("day_cap", None)
    if visit_rest is not None:
        b["visit_cap"] = visit_rest
    if day_rest is not None:
        paid = acc.get("day_fund_paid") or 0
        # a remainder of 0 may also come from a day cap already passed
        b["day_cap"] = paid + day_rest if day_rest or not chance(s, 2) else max(0, paid - 1)
    year_rest = wanted + between(s, 0, 1000) if year_rest is None else year_rest
    if year_rest == 0 and acc["fund_paid"] and chance(s, 2):
        b["annual_cap"] = acc["fund_paid"] - 1
    else:
        b["annual_cap"] = acc["fund_paid"] + year_rest


def draw_document(s: Source, v2: bool = True, max_lines: int = 12) -> dict:
    """A valid quote document (version 1 only when `v2` is false)."""
    day = date(2024, 2, 29) if chance(s, 10) else FIRST_DAY + timedelta(days=between(s, 0, 2191))
    policy = draw_policy(s, v2)
    person = draw_person(s, day, policy, v2)
    age = completed_years(date.fromisoformat(person["birth_date"]), day)

    size = between(s, 1, 12)
    validity = [True] + [not chance(s, 5) for _ in range(size - 1)]
    first = between(s, 0, 50)
    codes = [pick(s, ["XJ", "X", "ZB"]) + f"{first + i:03d}" for i in range(size)]
    catalog = [
        draw_item(s, code, day, age, valid, v2) for code, valid in zip(codes, validity, strict=True)
    ]
    usable = [code for code, valid in zip(codes, validity, strict=True) if valid]
    if v2 and chance(s, 2):
        catalog.insert(between(s, 0, len(catalog)), consultation_fee(s, "GF001"))
        usable += ["GF001"] * 3

    visit_type = pick(s, list(policy["benefits"][person["insurance_type"]]))
    visit: dict = {"date": day.isoformat(), "visit_type": visit_type}
    diagnoses = subset(s, DIAGNOSES, 3, unique=True)
    if diagnoses or chance(s, 2):
        visit["diagnoses"] = diagnoses
    by_code = {item["code"]: item for item in catalog}
    visit["lines"] = [
        line_for(s, by_code[pick(s, usable)]) for _ in range(between(s, 1, max_lines))
    ]
    use_account = chance(s, 2)
    if use_account or chance(s, 2):
        visit["use_personal_account"] = use_account
    if v2:
        family = pick(s, ["absent", None, True, True, False])
        if family != "absent":
            visit["use_family_account"] = family
        if policy.get("critical_illness") == "later":
            policy["critical_illness"] = draw_critical_illness(s, policy, person, visit_type)

    b = policy["benefits"][person["insurance_type"]][visit_type]
    doc = {
        "policy": policy,
        "catalog": catalog,
        "person": person,
        "accumulators": draw_accumulators(s, policy, b, v2),
        "visit": visit,
    }
    _ensure_certified(s, doc, day)
    if v2 and chance(s, 3):
        _tie_the_caps(s, doc)
    return doc


# ---- broken documents ------------------------------------------------------------------

LINE_REJECTIONS = ["UNKNOWN_ITEM", "ITEM_NOT_VALID", "BAD_QUANTITY"]
BAD_QUANTITIES = ["0", "-1", "1.2345", "100000.001", 2, None, "0.000", "-0.5", "abc", "", 1.5]


def break_visit(s: Source, doc: dict) -> None:
    """Make one or several of the version 1 rejections (or the refusal of a benefit whose
    certificates the person lacks) apply, as the version 1 property tests do."""
    visit, person, catalog = doc["visit"], doc["person"], doc["catalog"]
    day = date.fromisoformat(visit["date"])
    visit_level = {
        code for code in ("EMPTY_VISIT", "TOO_MANY_LINES", "CHRONIC_NOT_CERTIFIED") if chance(s, 6)
    }
    line_level = subset(s, LINE_REJECTIONS, 3)
    if not visit_level and not line_level:
        line_level = [pick(s, LINE_REJECTIONS)]
    if "TOO_MANY_LINES" in visit_level:
        lines = visit["lines"]
        visit["lines"] = [dict(lines[i % len(lines)]) for i in range(MAX_LINES + 1)]
    if "EMPTY_VISIT" in visit_level:
        visit["lines"] = []
    if "CHRONIC_NOT_CERTIFIED" in visit_level:
        benefits = doc["policy"]["benefits"][person["insurance_type"]]
        visit["visit_type"] = pick(s, list(benefits))
        b = benefits[visit["visit_type"]]
        requires = b.get("requires_certificate")
        if not (requires or (requires is None and visit["visit_type"] == "chronic")):
            b["requires_certificate"] = True
        how = pick(s, ["no certs", "expired", "not yet", "other diagnosis", "no diagnosis"])
        if "diseases" in b and how != "no certs":
            how = pick(s, [how, "no disease"])
        certs = person.get("chronic_certs") or []
        if how == "no certs":
            person["chronic_certs"] = []
        elif how == "expired":
            for cert in certs:
                cert["valid_from"], cert["valid_to"] = shift(day, -100), shift(day, -1)
        elif how == "not yet":
            for cert in certs:
                cert["valid_from"], cert["valid_to"] = shift(day, 1), shift(day, 100)
        elif how == "other diagnosis":
            visit["diagnoses"] = ["Z00.000"]
        elif how == "no disease":
            b["diseases"] = pick(s, [[], ["Z99.999"]])
        else:
            visit.pop("diagnoses", None)
    lines = visit["lines"]
    for n, mutation in enumerate(line_level if lines else []):
        index = between(s, 0, len(lines) - 1)
        if mutation == "UNKNOWN_ITEM":
            code = lines[index]["code"]
            lines[index]["code"] = pick(s, [code.lower(), code + " ", "NOPE", ""])
        elif mutation == "ITEM_NOT_VALID":
            stale = {"code": f"STALE{n}", "name": "stale", "kind": "drug", "class": "A"}
            stale["price"] = "1.00"
            if chance(s, 2):
                stale["valid_to"] = shift(day, -between(s, 1, 400))
            else:
                stale["valid_from"] = shift(day, between(s, 1, 400))
            catalog.append(stale)
            lines[index]["code"] = stale["code"]
        else:
            bad = pick(s, BAD_QUANTITIES)
            if bad is None:
                lines[index].pop("quantity", None)
            else:
                lines[index]["quantity"] = bad


BAD_FEN = [-1, -5000, "100", "0", 1.5, True, False, [], {}, 10**13 + 1]
BAD_RATIO = ["1.01", "-0.1", "2", 0.5, 1, "abc", "", "0,5", True, "0." + "1" * 19]
BAD_DATE = ["2026-13-01", "2026-02-30", "20260101", 20260101, "2026/01/01", "", True, "next week"]
BAD_BOOL = ["true", 1, 0, "yes", [], "false"]
BAD_TEXT_LIST = ["I10", [1], [None], [["I10"]], {"I10": True}, 5, True]
BAD_FUND_FIXED = ["-1", "1.23456", "8.00001", 8, 0, "abc", "", "1e2", "¥8", True, "8 ", "100000000"]


def _some_benefit(s: Source, doc: dict) -> dict:
    by_visit = doc["policy"]["benefits"][pick(s, ["resident", "employee"])]
    return by_visit[pick(s, list(by_visit))]


def _mutate_benefit(s: Source, doc: dict) -> str:
    b = _some_benefit(s, doc)
    key = pick(s, ["visit_cap", "day_cap", "requires_certificate", "diseases"])
    if key in ("visit_cap", "day_cap"):
        b[key] = pick(s, BAD_FEN)
    elif key == "requires_certificate":
        b[key] = pick(s, BAD_BOOL)
    else:
        b[key] = pick(s, BAD_TEXT_LIST)
    return f"benefit {key}"


def _mutate_critical_illness(s: Source, doc: dict) -> str:
    policy = doc["policy"]
    ci = policy.get("critical_illness")
    if not isinstance(ci, dict) or chance(s, 5):
        if chance(s, 3):
            policy["critical_illness"] = pick(s, [[], "yes", 1, True])
            return "critical_illness not an object"
        ci = policy["critical_illness"] = {
            "visit_types": ["chronic"],
            "insurance_types": ["resident"],
            "threshold": 0,
            "ratio": "0.5",
            "annual_cap": 100,
        }
    key = pick(s, ["visit_types", "insurance_types", "threshold", "ratio", "annual_cap"])
    how = pick(s, ["missing", "null", "bad"])
    if how == "missing":
        ci.pop(key, None)
    elif how == "null":
        ci[key] = None
    elif key == "visit_types":
        ci[key] = pick(s, BAD_TEXT_LIST)
    elif key == "insurance_types":
        ci[key] = pick(s, ["resident", ["farmer"], ["resident", "Employee"], [1], {"x": 1}])
    elif key == "ratio":
        ci[key] = pick(s, BAD_RATIO)
    else:
        ci[key] = pick(s, BAD_FEN)
    return f"critical_illness.{key} {how}"


def _a_supplement(name: str) -> dict:
    return {
        "name": name,
        "pays_as": "oth_pay",
        "categories": ["disabled_veteran"],
        "base": "all",
        "ratio": "0.8",
        "annual_cap": 1000,
    }


def _mutate_supplements(s: Source, doc: dict) -> str:
    policy = doc["policy"]
    supplements = policy.get("supplements")
    if not isinstance(supplements, list) or not supplements or chance(s, 5):
        if chance(s, 3):
            policy["supplements"] = pick(s, [{}, {"a": _a_supplement("a")}, "x", 3, True])
            return "supplements not a list"
        supplements = policy["supplements"] = [
            *(supplements if isinstance(supplements, list) else []),
            _a_supplement("extra"),
        ]
    index = between(s, 0, len(supplements) - 1)
    if chance(s, 8):
        supplements[index] = pick(s, ["oth_pay", 3, [], True])
        return "supplement not an object"
    supplement = supplements[index]
    key = pick(s, ["name", "pays_as", "categories", "base", "ratio", "annual_cap", "unique"])
    if key == "unique":
        twin = copy.deepcopy(supplements[between(s, 0, len(supplements) - 1)])
        supplements.insert(between(s, 0, len(supplements)), twin)
        return "supplement name repeated"
    how = pick(s, ["missing", "null", "bad", "bad"])
    if how == "missing":
        supplement.pop(key)
    elif how == "null":
        supplement[key] = None
    elif key == "name":
        supplement[key] = pick(s, ["", "   ", 5, ["a"], True])
    elif key == "pays_as":
        supplement[key] = pick(s, ["hifp_pay", "maf_pay", "OTH_PAY", "", 1, ["oth_pay"]])
    elif key == "categories":
        supplement[key] = pick(s, ["disabled_veteran", [1], {"a": 1}, 7, [None]])
    elif key == "base":
        supplement[key] = pick(s, ["scope", "ALL", "", "inscope", 1, ["all"]])
    elif key == "ratio":
        supplement[key] = pick(s, BAD_RATIO)
    else:
        supplement[key] = pick(s, BAD_FEN)
    return f"supplement {key} {how}"


def _mutate_fund_fixed(s: Source, doc: dict) -> str:
    catalog = doc["catalog"]
    item = catalog[between(s, 0, len(catalog) - 1)]
    if item["class"] != "A" and chance(s, 2):
        item["fund_fixed"] = pick(s, ["8", "0", "1.5"])
        return f"fund_fixed on class {item['class']}"
    if item["class"] != "A" and chance(s, 2):
        item["class"] = "A"  # a class A item with a malformed fund_fixed
    if item["class"] == "A" and chance(s, 3):
        item["fund_fixed"] = pick(s, ["8", "0", "1.5"])
        item["class"] = pick(s, ["B", "C"])
        item.pop("self_prepay_ratio", None)
        return "fund_fixed on class B or C"
    item["fund_fixed"] = pick(s, BAD_FUND_FIXED)
    return "fund_fixed malformed"


def _mutate_category(s: Source, doc: dict) -> str:
    person = doc["person"]
    categories = person.get("categories")
    if not isinstance(categories, list):
        categories = person["categories"] = []
    index = between(s, 0, len(categories))
    how = pick(s, ["no name", "null name", "bad name", "bad from", "bad to", "not an object"])
    entry: Any = {"name": "low_income"}
    if how == "no name":
        entry = {"valid_from": "2026-01-01"}
    elif how == "null name":
        entry = {"name": None, "valid_to": "2026-01-01"}
    elif how == "bad name":
        entry = {"name": pick(s, [5, ["low_income"], "", True])}
    elif how == "bad from":
        entry["valid_from"] = pick(s, BAD_DATE)
    elif how == "bad to":
        entry["valid_to"] = pick(s, BAD_DATE)
    else:
        entry = pick(s, [5, ["low_income"], True, 1.5])
    categories.insert(index, entry)
    return f"category {how}"


def _mutate_accumulators(s: Source, doc: dict) -> str:
    acc = doc["accumulators"]
    key = pick(
        s,
        ["day_fund_paid", "ci_selfpay", "ci_paid", "family_account_balance", "supplements_paid"],
    )
    if key != "supplements_paid":
        acc[key] = pick(s, BAD_FEN)
    elif chance(s, 2):
        acc[key] = pick(s, [[], "x", 5, [["a", 1]], True])
    else:
        paid = acc[key] if isinstance(acc.get(key), dict) else {}
        paid[pick(s, [*SUPPLEMENT_NAMES, "other"])] = pick(s, [-1, "5", 1.5, True, [], {}])
        acc[key] = paid
    return f"accumulators.{key}"


def _mutate_visit_type(s: Source, doc: dict) -> str:
    benefits = doc["policy"]["benefits"][doc["person"]["insurance_type"]]
    missing = [
        t for t in ["general", "chronic", *EXTRA_VISIT_TYPES, "General"] if t not in benefits
    ]
    doc["visit"]["visit_type"] = pick(s, missing)
    return "visit_type not the policy's"


def _mutate_misc(s: Source, doc: dict) -> str:
    if chance(s, 4):
        by_visit = doc["policy"]["benefits"][pick(s, ["resident", "employee"])]
        by_visit[pick(s, ["", " "])] = copy.deepcopy(next(iter(by_visit.values())))
        return "a visit type named by blanks"
    if chance(s, 2):
        doc["visit"]["use_family_account"] = pick(s, BAD_BOOL)
        return "use_family_account"
    doc["policy"]["rules"] = pick(s, [0, 3, "2", "1", 1.5, True, [2], -1])
    return "rules"


NEW_FIELD_MUTATIONS: list[Callable[[Source, dict], str]] = [
    _mutate_benefit,
    _mutate_critical_illness,
    _mutate_supplements,
    _mutate_fund_fixed,
    _mutate_category,
    _mutate_accumulators,
    _mutate_visit_type,
    _mutate_misc,
]


def break_new_field(s: Source, doc: dict) -> str:
    """Make one version 2 field malformed (BAD_INPUT whether used or not); says which."""
    return pick(s, NEW_FIELD_MUTATIONS)(s, doc)


def draw_batch_document(s: Source) -> dict:
    """A document for the command line's batch: v1 or v2, mostly valid, some broken."""
    doc = draw_document(s, v2=not chance(s, 3))
    if chance(s, 8):
        break_visit(s, doc)
    if chance(s, 10):
        break_new_field(s, doc)
    return doc
