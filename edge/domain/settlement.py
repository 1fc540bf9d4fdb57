"""The settlement engine: `settlement-rules.md`, version 1, as one pure function.

Inputs in, result out: no I/O, no clock. The device settles with it, the county hub
recomputes with it, and `clinic quote` exposes it to auditors.
"""

from collections.abc import Mapping
from datetime import date
from decimal import Decimal

from edge.domain.model import (
    MAX_LINES,
    MAX_QUANTITY,
    QUANTITY_PLACES,
    Accumulators,
    AccumulatorsAfter,
    AssistanceScheme,
    CatalogItem,
    LineResult,
    Person,
    Policy,
    Rejection,
    Settlement,
    SettlementWarning,
    Visit,
)
from edge.domain.money import fen_times_ratio, parse_decimal_string, yuan_times_quantity_in_fen


def settle(
    policy: Policy,
    catalog: Mapping[str, CatalogItem],
    person: Person,
    accumulators: Accumulators,
    visit: Visit,
) -> Settlement:
    """Settle one visit, or raise `Rejection` naming the first rule that refuses it."""
    certified = certified_diagnoses(person, visit)
    check_visit(visit, certified)
    age = age_in_years(person.birth_date, visit.date)

    lines = []
    for index, line in enumerate(visit.lines):
        item = catalog.get(line.code)
        if item is None:
            raise Rejection("UNKNOWN_ITEM", f"item {line.code!r} is not in the catalog", index)
        if not item.valid_on(visit.date):
            raise Rejection(
                "ITEM_NOT_VALID", f"item {line.code!r} is not valid on {visit.date}", index
            )
        quantity = parse_quantity(line.quantity, index)
        lines.append(settle_line(policy, item, quantity, person, age, visit, certified))

    return settle_totals(policy, person, accumulators, visit, tuple(lines))


def check_visit(visit: Visit, certified: frozenset[str]) -> None:
    """The visit-level rejections, in the rules' order."""
    if not visit.lines:
        raise Rejection("EMPTY_VISIT", "the visit has no lines")
    if len(visit.lines) > MAX_LINES:
        raise Rejection(
            "TOO_MANY_LINES", f"the visit has {len(visit.lines)} lines; at most {MAX_LINES}"
        )
    if visit.visit_type == "chronic" and not certified:
        raise Rejection(
            "CHRONIC_NOT_CERTIFIED",
            f"no chronic disease certificate valid on {visit.date} for any of the "
            f"visit's diagnoses ({', '.join(visit.diagnoses) or 'none'})",
        )


def certified_diagnoses(person: Person, visit: Visit) -> frozenset[str]:
    """The visit's diagnoses for which the person holds a certificate valid that day."""
    return frozenset(
        cert.disease_code
        for cert in person.chronic_certs
        if cert.disease_code in visit.diagnoses and cert.valid_on(visit.date)
    )


def parse_quantity(raw: object, index: int) -> Decimal:
    parsed = parse_decimal_string(raw)
    if parsed is None:
        raise Rejection("BAD_QUANTITY", f"quantity {raw!r} is not a decimal string", index)
    quantity, places = parsed
    if places > QUANTITY_PLACES:
        raise Rejection(
            "BAD_QUANTITY", f"quantity {raw} has more than {QUANTITY_PLACES} decimal places", index
        )
    if quantity <= 0:
        raise Rejection("BAD_QUANTITY", f"quantity {raw} must be greater than zero", index)
    if quantity > MAX_QUANTITY:
        raise Rejection("BAD_QUANTITY", f"quantity {raw} is above {MAX_QUANTITY}", index)
    return quantity


def age_in_years(birth_date: date, on: date) -> int:
    """Completed years on `on` (a 29 February birthday completes on 1 March)."""
    before_birthday = (on.month, on.day) < (birth_date.month, birth_date.day)
    return on.year - birth_date.year - before_birthday


def self_paid_reasons(
    item: CatalogItem, person: Person, age: int, visit: Visit, certified: frozenset[str]
) -> list[str]:
    """Why the whole line is self-paid, in the rules' order; empty when it is covered."""
    reasons = []
    if item.item_class == "C":
        reasons.append("NOT_COVERED")
    if item.gender is not None and item.gender != person.gender:
        reasons.append("GENDER_RESTRICTED")
    if (item.min_age is not None and age < item.min_age) or (
        item.max_age is not None and age > item.max_age
    ):
        reasons.append("AGE_RESTRICTED")
    if item.chronic_only and (
        visit.visit_type != "chronic" or certified.isdisjoint(item.chronic_only)
    ):
        reasons.append("CHRONIC_ONLY")
    return reasons


def settle_line(
    policy: Policy,
    item: CatalogItem,
    quantity: Decimal,
    person: Person,
    age: int,
    visit: Visit,
    certified: frozenset[str],
) -> LineResult:
    amount = yuan_times_quantity_in_fen(item.price, quantity)
    reasons = self_paid_reasons(item, person, age, visit, certified)
    if reasons:
        return LineResult(item.code, quantity, amount, amount, 0, 0, 0, tuple(reasons))

    covered_qty = quantity if item.max_qty is None else min(quantity, item.max_qty)
    covered_amount = yuan_times_quantity_in_fen(item.price, covered_qty)
    fulamt_ownpay = amount - covered_amount
    if fulamt_ownpay > 0:
        reasons.append("QTY_OVER_LIMIT")

    if item.payment_standard is not None and item.price > item.payment_standard:
        eligible = yuan_times_quantity_in_fen(item.payment_standard, covered_qty)
        reasons.append("OVER_PAYMENT_STANDARD")
    else:
        eligible = covered_amount
    overlmt_selfpay = covered_amount - eligible

    if item.item_class == "B":
        ratio = item.self_prepay_ratio
        if ratio is None:
            ratio = policy.class_b_prepay_ratio
        preselfpay = fen_times_ratio(eligible, ratio)
    else:
        preselfpay = 0
    inscp = eligible - preselfpay
    return LineResult(
        item.code, quantity, amount, fulamt_ownpay, overlmt_selfpay, preselfpay, inscp,
        tuple(reasons),
    )  # fmt: skip


def not_eligible_reason(person: Person, on: date) -> str | None:
    if person.status != "active":
        return f"insurance status is {person.status}"
    if person.waiting_until is not None and on <= person.waiting_until:
        return f"in the waiting period until {person.waiting_until}"
    return None


def assistance_scheme(policy: Policy, person: Person) -> AssistanceScheme | None:
    """The person's best assistance category: highest ratio, then cap, then first name."""
    schemes = [policy.assistance[c] for c in person.categories if c in policy.assistance]
    if not schemes:
        return None
    return min(schemes, key=lambda s: (-s.ratio, -s.annual_cap, s.name))


def settle_totals(
    policy: Policy,
    person: Person,
    accumulators: Accumulators,
    visit: Visit,
    lines: tuple[LineResult, ...],
) -> Settlement:
    total = sum(line.amount for line in lines)
    inscp_total = sum(line.inscp for line in lines)
    fulamt_total = sum(line.fulamt_ownpay for line in lines)
    overlmt_total = sum(line.overlmt_selfpay for line in lines)
    preselfpay_total = sum(line.preselfpay for line in lines)

    reason = not_eligible_reason(person, visit.date)
    if reason is not None:
        return Settlement(
            eligible=False, total=total, fund=0, assistance=0, personal_account=0, cash=total,
            inscp_total=inscp_total, deductible_applied=0, fulamt_total=fulamt_total,
            overlmt_total=overlmt_total, preselfpay_total=preselfpay_total,
            policy_selfpay=inscp_total, lines=lines,
            accumulators_after=AccumulatorsAfter(
                accumulators.deductible_used, accumulators.fund_paid,
                accumulators.assistance_paid, person.account_balance,
            ),
            warnings=(SettlementWarning("NOT_ELIGIBLE", reason),),
        )  # fmt: skip

    benefit = policy.benefits[(person.insurance_type, visit.visit_type)]
    deductible_left = max(0, benefit.deductible - accumulators.deductible_used)
    deductible_applied = min(deductible_left, inscp_total)
    fund_raw = fen_times_ratio(inscp_total - deductible_applied, benefit.ratio)
    fund = min(fund_raw, max(0, benefit.annual_cap - accumulators.fund_paid))
    policy_selfpay = inscp_total - fund

    scheme = assistance_scheme(policy, person)
    if scheme is None:
        assistance = 0
    else:
        assistance = min(
            fen_times_ratio(policy_selfpay, scheme.ratio),
            max(0, scheme.annual_cap - accumulators.assistance_paid),
        )

    if visit.use_personal_account and person.insurance_type == "employee":
        personal_account = min(person.account_balance, total - fund - assistance)
    else:
        personal_account = 0
    cash = total - fund - assistance - personal_account

    return Settlement(
        eligible=True, total=total, fund=fund, assistance=assistance,
        personal_account=personal_account, cash=cash, inscp_total=inscp_total,
        deductible_applied=deductible_applied, fulamt_total=fulamt_total,
        overlmt_total=overlmt_total, preselfpay_total=preselfpay_total,
        policy_selfpay=policy_selfpay, lines=lines,
        accumulators_after=AccumulatorsAfter(
            accumulators.deductible_used + deductible_applied,
            accumulators.fund_paid + fund,
            accumulators.assistance_paid + assistance,
            person.account_balance - personal_account,
        ),
    )  # fmt: skip
