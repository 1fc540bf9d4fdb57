"""The county's recomputation of a device's settlements, and what differs. Pure.

The hub settles every uploaded visit again with the same engine (`edge.domain.settlement.settle`),
the catalog and policy versions the record names, the person as the county's roster has
them, and the county's own running accumulators, which know about visits at every
clinic. Each difference becomes a reconciliation item with both sides' amounts.
"""

from dataclasses import replace
from datetime import date

from edge.domain.documents import catalog_item_from_json, person_from_json, visit_from_json
from edge.domain.model import Accumulators, Policy, Settlement
from edge.domain.records import daily_close_body, restored_accumulators
from edge.domain.settlement import settle
from sync.hub.model import Balances

# What must agree between the device's settlement and the county's.
COMPARED_FIELDS = (
    "eligible",
    "total",
    "fund",
    "assistance",
    "personal_account",
    "cash",
    "deductible_applied",
    "inscp_total",
    "policy_selfpay",
)
BALANCE_FIELDS = ("deductible_used", "fund_paid", "assistance_paid", "account_balance")

# Reconciliation item codes.
SETTLEMENT_DIFFERS = "SETTLEMENT_DIFFERS"
NOT_RECOMPUTABLE = "NOT_RECOMPUTABLE"  # the hub lacks a version or the person
REFUSED_BY_COUNTY = "REFUSED_BY_COUNTY"  # the engine rejects the visit with county data
REVERSAL_UNKNOWN = "REVERSAL_OF_UNKNOWN_SETTLEMENT"
DAILY_CLOSE_DIFFERS = "DAILY_CLOSE_DIFFERS"
NEEDS_REVIEW = "NEEDS_REVIEW"  # the device flagged it (offline limits)


def visit_year_and_type(body: dict) -> tuple[int, str]:
    visit = body["visit"]
    return date.fromisoformat(visit["date"]).year, visit["visit_type"]


def recompute(
    body: dict, policy: Policy, catalog_items: dict[str, dict], person: dict, balances: Balances
) -> Settlement:
    """Settle the record's visit again with county data; raises `Rejection` as the engine
    does (and `BAD_INPUT` for a body that is not a settlement)."""
    visit = visit_from_json(body["visit"])
    catalog = {code: catalog_item_from_json(doc, code) for code, doc in catalog_items.items()}
    insured = replace(person_from_json(person), account_balance=balances.account_balance)
    before = Accumulators(balances.deductible_used, balances.fund_paid, balances.assistance_paid)
    return settle(policy, catalog, insured, before, visit)


def differences(device_result: dict, hub_result: dict) -> dict[str, dict]:
    """{field: {"device": …, "hub": …}} for every compared field that differs."""
    return {
        name: {"device": device_result.get(name), "hub": hub_result.get(name)}
        for name in COMPARED_FIELDS
        if device_result.get(name) != hub_result.get(name)
    }


def balances_as_json(balances: Balances) -> dict:
    return {name: getattr(balances, name) for name in BALANCE_FIELDS}


def balance_differences(device_before: dict, hub_before: Balances) -> dict[str, dict]:
    """Where the device's accumulators before the visit differ from the county's: the usual
    cause of a difference (a deductible used at another clinic while both were offline)."""
    hub = balances_as_json(hub_before)
    return {
        name: {"device": device_before.get(name), "hub": hub[name]}
        for name in BALANCE_FIELDS
        if device_before.get(name) != hub[name]
    }


def balances_after(settlement: Settlement) -> Balances:
    after = settlement.accumulators_after
    return Balances(
        after.deductible_used, after.fund_paid, after.assistance_paid, after.account_balance
    )


def balances_after_reversal(current: Balances, original_hub_result: dict) -> Balances:
    """The county's balances with its own figures of the cancelled settlement taken back."""
    restored = restored_accumulators({"result": original_hub_result}, balances_as_json(current))
    return Balances(**restored)


def daily_close_differences(close_body: dict, records_in_range: list[dict]) -> dict[str, dict]:
    """Compare a device's signed daily close with the totals of the records it covers, as
    the hub holds them: {"settlements.fund": {"device": …, "hub": …}, …}."""
    expected = daily_close_body(
        records_in_range,
        business_day=close_body.get("business_day", ""),
        operator=close_body.get("operator", ""),
    )
    result = {}
    for section in ("settlements", "reversals", "net"):
        claimed, held = close_body.get(section) or {}, expected[section]
        for name, value in held.items():
            if claimed.get(name) != value:
                result[f"{section}.{name}"] = {"device": claimed.get(name), "hub": value}
    if close_body.get("needs_review") != expected["needs_review"]:
        result["needs_review"] = {
            "device": close_body.get("needs_review"),
            "hub": expected["needs_review"],
        }
    return result
