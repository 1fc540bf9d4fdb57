"""What goes into ledger record bodies, and the bookkeeping rules around them. Pure.

Settlement bodies carry everything needed to recompute them later (visit, versions,
accumulators before, full result); reversals carry what they undo; a daily close sums
everything since the previous close, like a cash register's Z report.
"""

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


def daily_close_body(
    records: list[dict[str, Any]], *, business_day: str, operator: str
) -> dict[str, Any]:
    """Counts and totals of the settlements and reversals in `records`, reversals netted."""
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
    return {
        "business_day": business_day,
        "operator": operator,
        "from_seq": records[0]["seq"] if records else None,
        "to_seq": records[-1]["seq"] if records else None,
        "settlements": settlements,
        "reversals": reversals,
        "net": net,
        "needs_review": needs_review,
    }
