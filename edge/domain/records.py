"""What goes into ledger record bodies, and the bookkeeping rules around them. Pure.

Settlement bodies carry everything needed to recompute them later (visit, versions,
accumulators before, full result); reversals carry what they undo; a daily close sums
everything since the previous close, like a cash register's Z report.
"""

from typing import Any

from edge.domain.model import Accumulators, Settlement, Visit

MONEY_FIELDS = ("total", "fund", "assistance", "personal_account", "cash")


def visit_to_json(visit: Visit, catalog_lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "date": visit.date.isoformat(),
        "visit_type": visit.visit_type,
        "diagnoses": list(visit.diagnoses),
        "lines": catalog_lines,
        "use_personal_account": visit.use_personal_account,
    }


def accumulators_to_json(accumulators: Accumulators, account_balance: int) -> dict[str, Any]:
    return {
        "deductible_used": accumulators.deductible_used,
        "fund_paid": accumulators.fund_paid,
        "assistance_paid": accumulators.assistance_paid,
        "account_balance": account_balance,
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
        "rules_version": 1,
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
        "amounts": {name: result[name] for name in MONEY_FIELDS},
        "accumulators_after": accumulators_after,
    }


def restored_accumulators(original_body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Accumulators with a settlement's effect taken back (never below zero)."""
    result = original_body["result"]
    return {
        "deductible_used": max(0, current["deductible_used"] - result["deductible_applied"]),
        "fund_paid": max(0, current["fund_paid"] - result["fund"]),
        "assistance_paid": max(0, current["assistance_paid"] - result["assistance"]),
        "account_balance": current["account_balance"] + result["personal_account"],
    }


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
            amounts, bucket = record["body"]["result"], settlements
            needs_review += bool(record["body"]["needs_review"])
        elif record["kind"] == "reversal":
            amounts, bucket = record["body"]["amounts"], reversals
        else:
            continue
        bucket["count"] += 1
        for name in MONEY_FIELDS:
            bucket[name] += amounts[name]
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
