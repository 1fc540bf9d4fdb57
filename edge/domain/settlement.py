"""The settlement engine: `settlement-rules.md` and its version 2, the one-stop chain
(`settlement-rules-v2.md`), as one pure function. A version 1 policy uses none of
version 2's fields, so it settles exactly as version 1 says.

Inputs in, result out: no I/O, no clock. The device settles with it, the county hub
recomputes with it, and `clinic quote` exposes it to auditors.
"""

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from functools import partial

from edge.domain.model import (
    MAX_LINES,
    MAX_QUANTITY,
    QUANTITY_PLACES,
    Accumulators,
    AccumulatorsAfter,
    AssistanceScheme,
    Benefit,
    CatalogItem,
    LineResult,
    Person,
    Policy,
    Rejection,
    Settlement,
    SettlementWarning,
    SupplementPaid,
    Visit,
)
from edge.domain.money import fen_times_ratio, parse_decimal_string, yuan_times_quantity_in_fen

FIXED_PAYMENT = "FIXED_PAYMENT"


def settle(
    policy: Policy,
    catalog: Mapping[str, CatalogItem],
    person: Person,
    accumulators: Accumulators,
    visit: Visit,
) -> Settlement:
    """Settle one visit, or raise `Rejection` naming the first rule that refuses it."""
    benefit = policy.benefits.get((person.insurance_type, visit.visit_type))
    if benefit is None:
        raise Rejection(
            "BAD_INPUT",
            f"visit.visit_type {visit.visit_type!r} is not one of the policy's visit types for"
            f" {person.insurance_type}: {', '.join(policy.visit_types(person.insurance_type))}",
        )
    certified = certified_diagnoses(person, visit, benefit)
    check_visit(visit, benefit, certified)
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
        lines.append(settle_line(policy, item, quantity, person, age, certified))

    return settle_totals(policy, benefit, person, accumulators, visit, tuple(lines))


def check_visit(visit: Visit, benefit: Benefit, certified: frozenset[str]) -> None:
    """The visit-level rejections, in the rules' order."""
    if not visit.lines:
        raise Rejection("EMPTY_VISIT", "the visit has no lines")
    if len(visit.lines) > MAX_LINES:
        raise Rejection(
            "TOO_MANY_LINES", f"the visit has {len(visit.lines)} lines; at most {MAX_LINES}"
        )
    if benefit.requires_certificate and not certified:
        accepted = ""
        if benefit.diseases is not None:
            accepted = f" among the visit type's diseases ({', '.join(benefit.diseases)})"
        raise Rejection(
            "CHRONIC_NOT_CERTIFIED",
            f"no chronic disease certificate valid on {visit.date} for any of the "
            f"visit's diagnoses ({', '.join(visit.diagnoses) or 'none'}){accepted}",
        )


def certified_diagnoses(person: Person, visit: Visit, benefit: Benefit) -> frozenset[str]:
    """The visit's certified diagnoses: under a benefit that requires a certificate, the
    diagnoses with one valid that day (and among the benefit's diseases, when it lists
    them); none under a benefit that requires no certificate."""
    if not benefit.requires_certificate:
        return frozenset()
    return frozenset(
        cert.disease_code
        for cert in person.chronic_certs
        if cert.disease_code in visit.diagnoses
        and cert.valid_on(visit.date)
        and (benefit.diseases is None or cert.disease_code in benefit.diseases)
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
    item: CatalogItem, person: Person, age: int, certified: frozenset[str]
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
    if item.chronic_only and certified.isdisjoint(item.chronic_only):
        reasons.append("CHRONIC_ONLY")
    return reasons


def settle_line(
    policy: Policy,
    item: CatalogItem,
    quantity: Decimal,
    person: Person,
    age: int,
    certified: frozenset[str],
) -> LineResult:
    amount = yuan_times_quantity_in_fen(item.price, quantity)
    reasons = self_paid_reasons(item, person, age, certified)
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
    fund_fixed = 0
    if item.fund_fixed is not None:  # class A only: preselfpay is 0
        fund_fixed = min(yuan_times_quantity_in_fen(item.fund_fixed, covered_qty), inscp)
        reasons.append(FIXED_PAYMENT)
    return LineResult(
        item.code, quantity, amount, fulamt_ownpay, overlmt_selfpay, preselfpay, inscp,
        tuple(reasons), fund_fixed,
    )  # fmt: skip


def not_eligible_reason(person: Person, on: date) -> str | None:
    if person.status != "active":
        return f"insurance status is {person.status}"
    if person.waiting_until is not None and on <= person.waiting_until:
        return f"in the waiting period until {person.waiting_until}"
    return None


def assistance_scheme(policy: Policy, categories: frozenset[str]) -> AssistanceScheme | None:
    """The best assistance category: highest ratio, then cap, then first name."""
    schemes = [policy.assistance[c] for c in categories if c in policy.assistance]
    if not schemes:
        return None
    return min(schemes, key=lambda s: (-s.ratio, -s.annual_cap, s.name))


def capped_fund(
    benefit: Benefit, accumulators: Accumulators, uncapped: int
) -> tuple[int, str | None]:
    """The basic fund after its caps, and the cap that bound it (the first, on a tie)."""
    limits = []
    if benefit.visit_cap is not None:
        limits.append(("visit_cap", benefit.visit_cap))
    if benefit.day_cap is not None:
        limits.append(("day_cap", max(0, benefit.day_cap - accumulators.day_fund_paid)))
    limits.append(("annual_cap", max(0, benefit.annual_cap - accumulators.fund_paid)))
    fund = min([uncapped, *(limit for _, limit in limits)])
    if fund == uncapped:
        return fund, None
    return fund, next(name for name, limit in limits if limit == fund)


def critical_illness_pay(
    policy: Policy, person: Person, visit: Visit, accumulators: Accumulators,
    policy_selfpay: int,
) -> tuple[int, int]:  # fmt: skip
    """(the self-pay counted towards the threshold, what critical illness pays)."""
    ci = policy.critical_illness
    if ci is None or (
        person.insurance_type not in ci.insurance_types or visit.visit_type not in ci.visit_types
    ):
        return 0, 0
    counted = accumulators.ci_selfpay
    over = max(0, counted + policy_selfpay - ci.threshold) - max(0, counted - ci.threshold)
    pay = min(fen_times_ratio(over, ci.ratio), max(0, ci.annual_cap - accumulators.ci_paid))
    return policy_selfpay, pay


def supplements_pay(
    policy: Policy, categories: frozenset[str], accumulators: Accumulators,
    in_scope_left: int, all_left: int,
) -> tuple[SupplementPaid, ...]:  # fmt: skip
    """Each supplement in the policy's order, on what the payers before it left."""
    paid = []
    for supplement in policy.supplements:
        pay = 0
        if categories.intersection(supplement.categories):
            remaining = in_scope_left if supplement.base == "in_scope" else all_left
            cap_left = supplement.annual_cap - accumulators.supplements_paid.get(supplement.name, 0)
            pay = min(fen_times_ratio(remaining, supplement.ratio), max(0, cap_left))
            # What an "all" supplement pays comes out of the in-scope remainder first.
            in_scope_left -= min(pay, in_scope_left)
            all_left -= pay
        paid.append(SupplementPaid(supplement.name, supplement.pays_as, pay))
    return tuple(paid)


def settle_totals(
    policy: Policy,
    benefit: Benefit,
    person: Person,
    accumulators: Accumulators,
    visit: Visit,
    lines: tuple[LineResult, ...],
) -> Settlement:
    total = sum(line.amount for line in lines)
    inscp_total = sum(line.inscp for line in lines)
    fund_fixed_total = sum(line.fund_fixed for line in lines)
    classified = partial(
        Settlement,
        total=total,
        inscp_total=inscp_total,
        fulamt_total=sum(line.fulamt_ownpay for line in lines),
        overlmt_total=sum(line.overlmt_selfpay for line in lines),
        preselfpay_total=sum(line.preselfpay for line in lines),
        fund_fixed_total=fund_fixed_total,
        lines=lines,
    )

    reason = not_eligible_reason(person, visit.date)
    if reason is not None:
        a = accumulators
        return classified(
            eligible=False, fund=0, assistance=0, personal_account=0, cash=total,
            deductible_applied=0, policy_selfpay=inscp_total,
            accumulators_after=AccumulatorsAfter(
                a.deductible_used, a.fund_paid, a.assistance_paid, person.account_balance,
                a.day_fund_paid, a.ci_selfpay, a.ci_paid, dict(a.supplements_paid),
                a.family_account_balance,
            ),
            warnings=(SettlementWarning("NOT_ELIGIBLE", reason),),
            supplements=tuple(
                SupplementPaid(s.name, s.pays_as, 0) for s in policy.supplements
            ),
        )  # fmt: skip

    # 1. The basic fund: fixed payments, then the ratio on the rest of the scope.
    pool = sum(line.inscp for line in lines if FIXED_PAYMENT not in line.reasons)
    deductible_left = max(0, benefit.deductible - accumulators.deductible_used)
    deductible_applied = min(deductible_left, pool)
    ratio_pay = fen_times_ratio(pool - deductible_applied, benefit.ratio)
    fund, fund_limited_by = capped_fund(benefit, accumulators, fund_fixed_total + ratio_pay)
    policy_selfpay = inscp_total - fund

    # 2. Critical illness, 3. assistance, 4. supplements: each on what is left.
    ci_base, critical_illness = critical_illness_pay(
        policy, person, visit, accumulators, policy_selfpay
    )
    categories = person.categories_on(visit.date)
    scheme = assistance_scheme(policy, categories)
    assistance = 0
    if scheme is not None:
        assistance = min(
            fen_times_ratio(policy_selfpay - critical_illness, scheme.ratio),
            max(0, scheme.annual_cap - accumulators.assistance_paid),
        )
    supplements = supplements_pay(
        policy, categories, accumulators,
        in_scope_left=policy_selfpay - critical_illness - assistance,
        all_left=total - fund - critical_illness - assistance,
    )  # fmt: skip
    left = total - fund - critical_illness - assistance - sum(s.amount for s in supplements)

    # 5. The personal account, 6. the family account, 7. cash.
    personal_account = 0
    if visit.use_personal_account and person.insurance_type == "employee":
        personal_account = min(person.account_balance, left)
    family_account = 0
    if visit.use_family_account:
        family_account = min(accumulators.family_account_balance, left - personal_account)
    cash = left - personal_account - family_account

    supplements_paid = dict(accumulators.supplements_paid)
    for paid in supplements:
        if paid.amount > 0 or paid.name in supplements_paid:
            supplements_paid[paid.name] = supplements_paid.get(paid.name, 0) + paid.amount
    return classified(
        eligible=True, fund=fund, assistance=assistance,
        personal_account=personal_account, cash=cash,
        deductible_applied=deductible_applied, policy_selfpay=policy_selfpay,
        accumulators_after=AccumulatorsAfter(
            accumulators.deductible_used + deductible_applied,
            accumulators.fund_paid + fund,
            accumulators.assistance_paid + assistance,
            person.account_balance - personal_account,
            day_fund_paid=accumulators.day_fund_paid + fund,
            ci_selfpay=accumulators.ci_selfpay + ci_base,
            ci_paid=accumulators.ci_paid + critical_illness,
            supplements_paid=supplements_paid,
            family_account_balance=accumulators.family_account_balance - family_account,
        ),
        fund_limited_by=fund_limited_by,
        critical_illness=critical_illness,
        supplements=supplements,
        family_account=family_account,
    )  # fmt: skip
