"""A second settlement, written from settlement-rules.md and settlement-rules-v2.md alone.

It imports nothing of the project: only the standard library. `reference_quote(doc)`
returns the quote output document for a version 1 or version 2 quote document, or
`{"error": {"code": ..., "line": ...}}` (`line` only where a line is at fault). Warnings
are given as their codes only; error messages are not produced.

The parts of a document that version 1 already had are assumed well-formed (the version 1
reference in tests/unit/test_engine_properties.py makes the same assumption); the fields
version 2 adds are checked as "Where version 2 could be read two ways" lists, and each
malformed one is BAD_INPUT, before every other rejection, naming no line.

Every amount is an integer number of fen; every product is computed exactly with
`decimal` and rounded half up to the fen once, at the step the rules name.

Past 500 lines because it is one settlement, read top to bottom like the pages: the new
members' checks, one line, then the chain of payers.
"""

import re
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

MAX_LINES = 200
MAX_QUANTITY = Decimal(100000)
INSURANCE_TYPES = ("resident", "employee")
PAYS_AS = ("oth_pay", "cvlserv_pay")
BASES = ("in_scope", "all")
# The new accumulators, version 1's four being deductible_used, fund_paid,
# assistance_paid and account_balance.
NEW_FEN_ACCUMULATORS = ("day_fund_paid", "ci_selfpay", "ci_paid", "family_account_balance")
CAP_ORDER = ("visit_cap", "day_cap", "annual_cap")
# Version 1's value types (docs/settlement-rules.md, section 2), which version 2's new
# members share: fen up to 10^13, ratios with at most 18 places, amounts in yuan (prices,
# and so fund_fixed) below 10^8.
MAX_FEN = 10**13
MAX_RATIO_PLACES = 18
MAX_YUAN = Decimal(10**8)

_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.([0-9]+))?")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class RefRejection(Exception):
    def __init__(self, code: str, line: int | None = None, field: str | None = None):
        super().__init__(code)
        self.code = code
        self.line = line
        self.field = field  # for a BAD_INPUT: which field (not part of the output)


def _bad(field: str) -> RefRejection:
    return RefRejection("BAD_INPUT", field=field)


# ---- arithmetic ------------------------------------------------------------------------


def _round_fen(value: Decimal) -> int:
    """Half up to a whole fen (every rounded value in the rules is non-negative)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _yuan_times(yuan: Decimal, quantity: Decimal) -> int:
    return _round_fen(yuan * 100 * quantity)


def _fen_times(amount: int, ratio: Decimal) -> int:
    return _round_fen(Decimal(amount) * ratio)


# ---- dates -----------------------------------------------------------------------------


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _valid_on(entry: dict, day: date) -> bool:
    """Inclusive bounds, either optional (`null` is absent); from > to is never valid."""
    start, end = _day(entry.get("valid_from")), _day(entry.get("valid_to"))
    return (start is None or start <= day) and (end is None or day <= end)


def _completed_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


# ---- the version 2 fields' BAD_INPUT checks ------------------------------------------


def _is_fen(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_FEN


def _is_ratio(value: Any) -> bool:
    match = _PLAIN_DECIMAL.fullmatch(value) if isinstance(value, str) else None
    if match is None or len(match.group(1) or "") > MAX_RATIO_PLACES:
        return False
    return Decimal(0) <= Decimal(value) <= Decimal(1)


def _is_iso_date(value: Any) -> bool:
    if not isinstance(value, str) or _ISO_DATE.fullmatch(value) is None:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_text(v) for v in value)


def _is_fund_fixed(value: Any) -> bool:
    match = _PLAIN_DECIMAL.fullmatch(value) if isinstance(value, str) else None
    if match is None or len(match.group(1) or "") > 4:
        return False
    return Decimal(0) <= Decimal(value) < MAX_YUAN


def _check_optional(container: dict, key: str, ok, where: str) -> None:
    value = container.get(key)
    if value is not None and not ok(value):
        raise _bad(f"{where}.{key}")


def _check_required(container: dict, key: str, ok, where: str) -> None:
    value = container.get(key)
    if value is None or not ok(value):
        raise _bad(f"{where}.{key}")


def _check_policy(policy: dict) -> None:
    rules = policy.get("rules")
    if rules is not None and not (type(rules) is int and rules in (1, 2)):
        raise _bad("policy.rules")
    for insurance_type in INSURANCE_TYPES:  # both required, each with its visit types
        by_visit = policy["benefits"].get(insurance_type)
        if not isinstance(by_visit, dict):
            raise _bad(f"policy.benefits.{insurance_type}")
        for visit_type, b in by_visit.items():
            where = f"policy.benefits.{insurance_type}.{visit_type}"
            if not _is_text(visit_type) or not isinstance(b, dict):
                raise _bad(where)
            _check_optional(b, "visit_cap", _is_fen, where)
            _check_optional(b, "day_cap", _is_fen, where)
            _check_optional(b, "requires_certificate", lambda v: isinstance(v, bool), where)
            _check_optional(b, "diseases", _is_text_list, where)
    ci = policy.get("critical_illness")
    if ci is not None:
        where = "policy.critical_illness"
        if not isinstance(ci, dict):
            raise _bad(where)
        _check_required(ci, "visit_types", _is_text_list, where)
        _check_required(
            ci,
            "insurance_types",
            lambda v: isinstance(v, list) and all(t in INSURANCE_TYPES for t in v),
            where,
        )
        _check_required(ci, "threshold", _is_fen, where)
        _check_required(ci, "ratio", _is_ratio, where)
        _check_required(ci, "annual_cap", _is_fen, where)
    supplements = policy.get("supplements")
    if supplements is not None:
        if not isinstance(supplements, list):
            raise _bad("policy.supplements")
        names = set()
        for index, supplement in enumerate(supplements):
            where = f"policy.supplements[{index}]"
            if not isinstance(supplement, dict):
                raise _bad(where)
            _check_required(supplement, "name", _is_text, where)
            if supplement["name"] in names:
                raise _bad(f"{where}.name")
            names.add(supplement["name"])
            _check_required(supplement, "pays_as", lambda v: v in PAYS_AS, where)
            _check_required(supplement, "categories", _is_text_list, where)
            _check_required(supplement, "base", lambda v: v in BASES, where)
            _check_required(supplement, "ratio", _is_ratio, where)
            _check_required(supplement, "annual_cap", _is_fen, where)


def _check_catalog(catalog: list) -> None:
    for index, item in enumerate(catalog):
        fixed = item.get("fund_fixed")
        if fixed is not None and (item["class"] != "A" or not _is_fund_fixed(fixed)):
            raise _bad(f"catalog[{index}].fund_fixed")


def _check_categories(person: dict) -> None:
    for index, entry in enumerate(person.get("categories") or []):
        where = f"person.categories[{index}]"
        if isinstance(entry, str):
            if not _is_text(entry):
                raise _bad(where)
            continue
        if not isinstance(entry, dict):
            raise _bad(where)
        _check_required(entry, "name", _is_text, where)
        _check_optional(entry, "valid_from", _is_iso_date, where)
        _check_optional(entry, "valid_to", _is_iso_date, where)


def _check_accumulators(acc: dict) -> None:
    for key in NEW_FEN_ACCUMULATORS:
        _check_optional(acc, key, _is_fen, "accumulators")
    paid = acc.get("supplements_paid")
    if paid is not None and not (isinstance(paid, dict) and all(_is_fen(v) for v in paid.values())):
        raise _bad("accumulators.supplements_paid")


def check_version_2_fields(doc: dict) -> None:
    """BAD_INPUT for a malformed version 2 field, whether the visit uses it or not."""
    policy, person, visit = doc["policy"], doc["person"], doc["visit"]
    _check_policy(policy)
    _check_catalog(doc["catalog"])
    _check_categories(person)
    _check_accumulators(doc["accumulators"])
    _check_optional(visit, "use_family_account", lambda v: isinstance(v, bool), "visit")
    if visit["visit_type"] not in policy["benefits"].get(person["insurance_type"], {}):
        raise _bad("visit.visit_type")


# ---- per line --------------------------------------------------------------------------


def _quantity(raw: Any, index: int) -> Decimal:
    """A line's quantity, or BAD_QUANTITY as the rules' table words it."""
    match = _PLAIN_DECIMAL.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise RefRejection("BAD_QUANTITY", index)
    value = Decimal(raw)
    if len(match.group(1) or "") > 3 or value <= 0 or value > MAX_QUANTITY:
        raise RefRejection("BAD_QUANTITY", index)
    return value


def _line(policy: dict, item: dict, quantity: Decimal, person: dict, age: int, certified):
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
    if chronic_only and not any(d in chronic_only for d in certified):
        reasons.append("CHRONIC_ONLY")
    line = {"code": item["code"], "amount": amount}
    if reasons:
        line.update(
            fulamt_ownpay=amount,
            overlmt_selfpay=0,
            preselfpay=0,
            inscp=0,
            fund_fixed=0,
            reasons=reasons,
        )
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
    inscp = eligible - preselfpay
    fund_fixed = 0
    if item.get("fund_fixed") is not None:
        fund_fixed = min(_yuan_times(Decimal(item["fund_fixed"]), covered_qty), inscp)
        reasons.append("FIXED_PAYMENT")
    line.update(
        fulamt_ownpay=fulamt_ownpay,
        overlmt_selfpay=overlmt_selfpay,
        preselfpay=preselfpay,
        inscp=inscp,
        fund_fixed=fund_fixed,
        reasons=reasons,
    )
    return line


# ---- per visit -------------------------------------------------------------------------


def valid_categories(person: dict, day: date) -> set[str]:
    """The names of the person's categories valid on `day`."""
    names = set()
    for entry in person.get("categories") or []:
        if isinstance(entry, str):
            names.add(entry)
        elif _valid_on(entry, day):
            names.add(entry["name"])
    return names


def best_assistance_category(policy: dict, categories: set[str]) -> dict | None:
    """Highest ratio, then higher cap, then the alphabetically first name."""
    schemes = policy.get("assistance") or {}
    best = None
    for name in sorted(c for c in categories if c in schemes):
        scheme = schemes[name]
        key = (Decimal(scheme["ratio"]), scheme["annual_cap"])
        if best is None or key > best[0]:  # alphabetical, so only a strictly better one
            best = (key, name)
    return None if best is None else {"name": best[1], **schemes[best[1]]}


def certified_diagnoses(benefit: dict, visit_type: str, person: dict, visit: dict, day):
    """The visit's certified diagnoses (none where no certificate is required)."""
    requires = benefit.get("requires_certificate")
    if requires is None:
        requires = visit_type == "chronic"
    if not requires:
        return False, []
    diseases = benefit.get("diseases")
    certs = person.get("chronic_certs") or []
    certified = [
        d
        for d in visit.get("diagnoses") or []
        if (diseases is None or d in diseases)
        and any(c["disease_code"] == d and _valid_on(c, day) for c in certs)
    ]
    return True, certified


def reference_quote(doc: dict) -> dict:
    """The rules' output document for `doc`; warnings are given as their codes only."""
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.rounding = ROUND_HALF_UP
        try:
            return _settle(doc)
        except RefRejection as rejection:
            error: dict = {"code": rejection.code}
            if rejection.line is not None:
                error["line"] = rejection.line
            return {"error": error}


def bad_input_field(doc: dict) -> str | None:
    """The field the version 2 checks refuse first, or None (for test messages)."""
    try:
        check_version_2_fields(doc)
    except RefRejection as rejection:
        return rejection.field
    return None


def _settle(doc: dict) -> dict:
    check_version_2_fields(doc)
    policy, person, visit = doc["policy"], doc["person"], doc["visit"]
    acc = doc["accumulators"]
    catalog = {item["code"]: item for item in doc["catalog"]}
    day = date.fromisoformat(visit["date"])
    visit_type = visit["visit_type"]
    b = policy["benefits"][person["insurance_type"]][visit_type]
    requires, certified = certified_diagnoses(b, visit_type, person, visit, day)

    lines = visit["lines"]
    if not lines:
        raise RefRejection("EMPTY_VISIT")
    if len(lines) > MAX_LINES:
        raise RefRejection("TOO_MANY_LINES")
    if requires and not certified:
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
    out_lines = [_line(policy, item, qty, person, age, certified) for item, qty in checked]
    total = sum(line["amount"] for line in out_lines)
    inscp_total = sum(line["inscp"] for line in out_lines)
    fixed_total = sum(line["fund_fixed"] for line in out_lines)
    pool = sum(
        line["inscp"]
        for line, (item, _) in zip(out_lines, checked, strict=True)
        if item.get("fund_fixed") is None
    )
    supplements = policy.get("supplements") or []
    before = {
        "deductible_used": acc["deductible_used"],
        "fund_paid": acc["fund_paid"],
        "assistance_paid": acc["assistance_paid"],
        "account_balance": person.get("account_balance") or 0,
        **{key: acc.get(key) or 0 for key in NEW_FEN_ACCUMULATORS},
        "supplements_paid": dict(acc.get("supplements_paid") or {}),
    }
    result = {
        "total": total,
        "inscp_total": inscp_total,
        "fulamt_total": sum(line["fulamt_ownpay"] for line in out_lines),
        "overlmt_total": sum(line["overlmt_selfpay"] for line in out_lines),
        "preselfpay_total": sum(line["preselfpay"] for line in out_lines),
        "fund_fixed_total": fixed_total,
        "lines": out_lines,
    }
    waiting = _day(person.get("waiting_until"))
    eligible = person["status"] == "active" and (waiting is None or day > waiting)
    if not eligible:
        result.update(
            eligible=False,
            fund=0,
            fund_limited_by=None,
            critical_illness=0,
            assistance=0,
            supplements=[
                {"name": s["name"], "pays_as": s["pays_as"], "amount": 0} for s in supplements
            ],
            personal_account=0,
            family_account=0,
            cash=total,
            deductible_applied=0,
            policy_selfpay=inscp_total,
            warnings=["NOT_ELIGIBLE"],
            accumulators_after=before,
        )
        result["setlinfo"] = setlinfo(result)
        return result

    # 1. the basic fund
    deductible_applied = min(max(0, b["deductible"] - acc["deductible_used"]), pool)
    ratio_pay = _fen_times(pool - deductible_applied, Decimal(b["ratio"]))
    wanted = fixed_total + ratio_pay
    limits = {}
    if b.get("visit_cap") is not None:
        limits["visit_cap"] = b["visit_cap"]
    if b.get("day_cap") is not None:
        limits["day_cap"] = max(0, b["day_cap"] - before["day_fund_paid"])
    limits["annual_cap"] = max(0, b["annual_cap"] - acc["fund_paid"])
    fund = min(wanted, *limits.values())
    limited_by = None
    if fund != wanted:
        limited_by = next(name for name in CAP_ORDER if limits.get(name) == fund)
    policy_selfpay = inscp_total - fund

    # 2. critical illness
    ci = policy.get("critical_illness")
    ci_base = critical_illness = 0
    if (
        ci is not None
        and person["insurance_type"] in ci["insurance_types"]
        and visit_type in ci["visit_types"]
    ):
        ci_base = policy_selfpay
        selfpay, threshold = before["ci_selfpay"], ci["threshold"]
        over = max(0, selfpay + ci_base - threshold) - max(0, selfpay - threshold)
        critical_illness = min(
            _fen_times(over, Decimal(ci["ratio"])), max(0, ci["annual_cap"] - before["ci_paid"])
        )

    # 3. medical assistance, among the categories valid on the visit date
    categories = valid_categories(person, day)
    scheme = best_assistance_category(policy, categories)
    assistance = 0
    if scheme is not None:
        assistance = min(
            _fen_times(policy_selfpay - critical_illness, Decimal(scheme["ratio"])),
            max(0, scheme["annual_cap"] - acc["assistance_paid"]),
        )

    # 4. supplements, in the policy's order
    in_scope_left = policy_selfpay - critical_illness - assistance
    all_left = total - fund - critical_illness - assistance
    paid_before = before["supplements_paid"]
    out_supplements = []
    for supplement in supplements:
        pay = 0
        if categories & set(supplement["categories"]):
            remaining = in_scope_left if supplement["base"] == "in_scope" else all_left
            pay = min(
                _fen_times(remaining, Decimal(supplement["ratio"])),
                max(0, supplement["annual_cap"] - paid_before.get(supplement["name"], 0)),
            )
        in_scope_left -= min(pay, in_scope_left)
        all_left -= pay
        out_supplements.append(
            {"name": supplement["name"], "pays_as": supplement["pays_as"], "amount": pay}
        )
    supplements_total = sum(s["amount"] for s in out_supplements)

    # 5. personal account, 6. family account, 7. cash
    left = total - fund - critical_illness - assistance - supplements_total
    personal_account = 0
    if visit.get("use_personal_account") and person["insurance_type"] == "employee":
        personal_account = min(before["account_balance"], left)
    family_account = 0
    if visit.get("use_family_account"):
        family_account = min(before["family_account_balance"], left - personal_account)
    cash = left - personal_account - family_account

    supplements_after = dict(paid_before)
    for supplement in out_supplements:
        if supplement["amount"] > 0:
            name = supplement["name"]
            supplements_after[name] = supplements_after.get(name, 0) + supplement["amount"]
    result.update(
        eligible=True,
        fund=fund,
        fund_limited_by=limited_by,
        critical_illness=critical_illness,
        assistance=assistance,
        supplements=out_supplements,
        personal_account=personal_account,
        family_account=family_account,
        cash=cash,
        deductible_applied=deductible_applied,
        policy_selfpay=policy_selfpay,
        warnings=[],
        accumulators_after={
            "deductible_used": before["deductible_used"] + deductible_applied,
            "fund_paid": before["fund_paid"] + fund,
            "assistance_paid": before["assistance_paid"] + assistance,
            "account_balance": before["account_balance"] - personal_account,
            "day_fund_paid": before["day_fund_paid"] + fund,
            "ci_selfpay": before["ci_selfpay"] + ci_base,
            "ci_paid": before["ci_paid"] + critical_illness,
            "supplements_paid": supplements_after,
            "family_account_balance": before["family_account_balance"] - family_account,
        },
    )
    result["setlinfo"] = setlinfo(result)
    return result


def setlinfo(result: dict) -> dict:
    """The settlement in the national platform's 2207 field names."""
    by_payer = {pays_as: 0 for pays_as in PAYS_AS}
    for supplement in result["supplements"]:
        by_payer[supplement["pays_as"]] += supplement["amount"]
    info = {
        "medfee_sumamt": result["total"],
        "fulamt_ownpay_amt": result["fulamt_total"],
        "overlmt_selfpay": result["overlmt_total"],
        "preselfpay_amt": result["preselfpay_total"],
        "inscp_scp_amt": result["inscp_total"],
        "act_pay_dedc": result["deductible_applied"],
        "hifp_pay": result["fund"],
        "hifmi_pay": result["critical_illness"],
        "maf_pay": result["assistance"],
        "cvlserv_pay": by_payer["cvlserv_pay"],
        "oth_pay": by_payer["oth_pay"],
        "acct_pay": result["personal_account"],
        "acct_mulaid_pay": result["family_account"],
        "psn_cash_pay": result["cash"],
    }
    info["fund_pay_sumamt"] = (
        info["hifp_pay"]
        + info["hifmi_pay"]
        + info["maf_pay"]
        + info["cvlserv_pay"]
        + info["oth_pay"]
    )
    return info
