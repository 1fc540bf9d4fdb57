"""The county's recomputation of a device's settlements, and what differs. Pure.

The hub settles every uploaded visit again with the same engine (`edge.domain.settlement.settle`),
the catalog and policy versions the record names, the person as the county's roster has
them, and the county's own running accumulators, which know about visits at every
clinic: the year's deductible and fund, the fund paid on the visit's date (the day cap),
the year's critical-illness and supplement figures, the person's account and the balance
of the family member whose account pays. Each difference becomes a reconciliation item
with both sides' amounts. A record made under rules version 1 has none of version 2's
members and is compared on version 1's alone.
"""

from dataclasses import replace
from datetime import date
from typing import Any

from edge.domain.documents import catalog_item_from_json, person_from_json, visit_from_json
from edge.domain.model import Accumulators, Policy, Settlement
from edge.domain.records import (
    ACCUMULATOR_FIELDS,
    VERSION_1_MONEY_FIELDS,
    daily_close_body,
    restored_accumulators,
)
from edge.domain.service_point import premium_totals
from edge.domain.settlement import settle
from sync.hub.model import Balances

# What must agree between the device's settlement and the county's.
VERSION_1_COMPARED = (
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
# Rules version 2's members: compared when the device's result has them (a version 1
# result has none). `supplements` is compared by supplement name (`supplements.NAME`).
VERSION_2_COMPARED = (
    "fund_fixed_total",
    "fund_limited_by",
    "critical_illness",
    "supplements",
    "family_account",
)
COMPARED_FIELDS = VERSION_1_COMPARED + VERSION_2_COMPARED
# The figures a visit reads and moves (`Balances`); a version 1 record names the first four.
BALANCE_FIELDS = ACCUMULATOR_FIELDS

# Reconciliation item codes.
SETTLEMENT_DIFFERS = "SETTLEMENT_DIFFERS"
NOT_RECOMPUTABLE = "NOT_RECOMPUTABLE"  # the hub lacks a version or the person
REFUSED_BY_COUNTY = "REFUSED_BY_COUNTY"  # the engine rejects the visit with county data
REVERSAL_UNKNOWN = "REVERSAL_OF_UNKNOWN_SETTLEMENT"
# a premium reversal that names no premium of its device it may undo (not that premium's
# amount, method or account, or the premium was reversed already): it gives nothing back
PREMIUM_REVERSAL_REFUSED = "PREMIUM_REVERSAL_REFUSED"
DAILY_CLOSE_DIFFERS = "DAILY_CLOSE_DIFFERS"
NEEDS_REVIEW = "NEEDS_REVIEW"  # the device flagged it (offline limits)


def visit_date_and_type(body: dict) -> tuple[date, str]:
    """The visit's date and type; raises KeyError, TypeError or ValueError when the
    record holds no readable visit."""
    visit = body["visit"]
    visit_type = visit["visit_type"]
    if not isinstance(visit_type, str):
        raise TypeError("visit_type is not text")
    return date.fromisoformat(visit["date"]), visit_type


def family_account_holder(body: dict) -> str | None:
    """Whose shared employee account the device let pay: the holder the record's visit
    names when it uses the family account (a version 1 record names none)."""
    visit = body.get("visit") or {}
    holder = visit.get("family_account_holder")
    if visit.get("use_family_account") is True and isinstance(holder, str):
        return holder
    return None


def shares_account(person: dict, holder_id: str, holder: dict) -> bool:
    """Whether, by the county's roster, `holder` shares an employee account with `person`."""
    holders = person.get("family_account_holders") or []
    return holder_id in holders and holder.get("insurance_type") == "employee"


def accumulators_of(balances: Balances) -> Accumulators:
    return Accumulators(
        deductible_used=balances.deductible_used,
        fund_paid=balances.fund_paid,
        assistance_paid=balances.assistance_paid,
        day_fund_paid=balances.day_fund_paid,
        ci_selfpay=balances.ci_selfpay,
        ci_paid=balances.ci_paid,
        supplements_paid=dict(balances.supplements_paid),
        family_account_balance=balances.family_account_balance,
    )


def recompute(
    body: dict, policy: Policy, catalog_items: dict[str, dict], person: dict, balances: Balances
) -> Settlement:
    """Settle the record's visit again with county data; raises `Rejection` as the engine
    does (and `BAD_INPUT` for a body that is not a settlement)."""
    visit = visit_from_json(body["visit"])
    catalog = {code: catalog_item_from_json(doc, code) for code, doc in catalog_items.items()}
    insured = replace(person_from_json(person), account_balance=balances.account_balance)
    return settle(policy, catalog, insured, accumulators_of(balances), visit)


def supplement_amounts(value: Any) -> dict[Any, Any]:
    """A result's `supplements` list as {name: amount}."""
    if not isinstance(value, list):
        return {}
    return {s.get("name"): s.get("amount") for s in value if isinstance(s, dict)}


def differences(device_result: dict, hub_result: dict) -> dict[str, dict]:
    """{field: {"device": …, "hub": …}} for every compared field that differs; version 2's
    only when the device's result has them, each supplement as `supplements.NAME`."""
    result = {}
    for name in COMPARED_FIELDS:
        if name in VERSION_2_COMPARED and name not in device_result:
            continue
        if name == "supplements":
            device = supplement_amounts(device_result.get(name))
            hub = supplement_amounts(hub_result.get(name))
            for supplement in sorted(device.keys() | hub.keys(), key=str):
                if device.get(supplement) != hub.get(supplement):
                    result[f"supplements.{supplement}"] = {
                        "device": device.get(supplement),
                        "hub": hub.get(supplement),
                    }
        elif device_result.get(name) != hub_result.get(name):
            result[name] = {"device": device_result.get(name), "hub": hub_result.get(name)}
    return result


def balances_as_json(balances: Balances) -> dict[str, Any]:
    """The figures as records name them (ACCUMULATOR_FIELDS)."""
    figures = {name: getattr(balances, name) for name in BALANCE_FIELDS}
    figures["supplements_paid"] = dict(balances.supplements_paid)
    return figures


def balances_from_json(figures: dict[str, Any]) -> Balances:
    return Balances(**{name: figures[name] for name in BALANCE_FIELDS})


def _paid(value: Any) -> Any:
    """`supplements_paid` without the names that paid nothing (absent or 0 are alike)."""
    return {k: v for k, v in value.items() if v} if isinstance(value, dict) else value


def balance_differences(device_before: dict, hub_before: Balances) -> dict[str, dict]:
    """Where the device's accumulators before the visit differ from the county's: the usual
    cause of a difference (a deductible used at another clinic while both were offline, or
    the fund paid the same day elsewhere). Only the figures the device's record names."""
    hub = balances_as_json(hub_before)
    result = {}
    for name in BALANCE_FIELDS:
        if name not in device_before:  # a version 1 record names four
            continue
        device = device_before[name]
        if _paid(device) != _paid(hub[name]):
            result[name] = {"device": device, "hub": hub[name]}
    return result


def balances_after(settlement: Settlement) -> Balances:
    after = settlement.accumulators_after
    return Balances(
        deductible_used=after.deductible_used,
        fund_paid=after.fund_paid,
        assistance_paid=after.assistance_paid,
        account_balance=after.account_balance,
        day_fund_paid=after.day_fund_paid,
        ci_selfpay=after.ci_selfpay,
        ci_paid=after.ci_paid,
        supplements_paid=dict(after.supplements_paid),
        family_account_balance=after.family_account_balance,
    )


def balances_after_reversal(current: Balances, original_hub_result: dict) -> Balances:
    """The county's balances with its own figures of the cancelled settlement taken back:
    every figure moves back by what the county's recomputation moved it (the family
    holder's balance included; a hub result of version 1 names four figures)."""
    restored = restored_accumulators(
        original_hub_result.get("accumulators_before") or {},
        original_hub_result.get("accumulators_after") or {},
        balances_as_json(current),
    )
    return balances_from_json(restored)


def device_movement(body: dict) -> dict[str, Any]:
    """How a settlement moves each figure by the device's own result, for a settlement the
    county could not settle itself: counters grow by what was paid or counted, balances
    shrink by what the accounts paid. A version 1 result moves version 2's by nothing but
    the fund of the day."""
    result = body.get("result") or {}
    before = body.get("accumulators_before") or {}
    after = result.get("accumulators_after") or {}

    def amount(name: str) -> int:
        value = result.get(name)
        return value if type(value) is int else 0

    def moved(name: str) -> int:
        was, now = before.get(name), after.get(name)
        return now - was if type(was) is int and type(now) is int else 0

    return {
        "deductible_used": amount("deductible_applied"),
        "fund_paid": amount("fund"),
        "assistance_paid": amount("assistance"),
        "account_balance": -amount("personal_account"),
        "day_fund_paid": amount("fund"),
        "ci_selfpay": moved("ci_selfpay"),
        "ci_paid": amount("critical_illness"),
        "supplements_paid": {
            name: paid
            for name, paid in supplement_amounts(result.get("supplements")).items()
            if isinstance(name, str) and type(paid) is int and paid
        },
        "family_account_balance": -amount("family_account"),
    }


def balances_moved(current: Balances, movement: dict[str, Any]) -> Balances:
    """`current` moved by `movement` (`device_movement`); no figure goes below zero."""
    figures = balances_as_json(current)
    for name in BALANCE_FIELDS:
        if name == "supplements_paid":
            for supplement, paid in movement[name].items():
                figures[name][supplement] = figures[name].get(supplement, 0) + paid
        else:
            figures[name] = max(0, figures[name] + movement[name])
    return balances_from_json(figures)


def balances_unmoved(current: Balances, movement: dict[str, Any]) -> Balances:
    """`current` with `movement` taken back (the reversal of a settlement the county
    could not settle itself)."""
    return balances_from_json(restored_accumulators({}, movement, balances_as_json(current)))


def daily_close_differences(
    close_body: dict, records_in_range: list[dict], originals: dict[str, dict] | None = None
) -> dict[str, dict]:
    """Compare a device's signed daily close with the totals of the records it covers, as
    the hub holds them: {"settlements.fund": {"device": …, "hub": …}, …}. A version 1
    close totals five payers: a payer it does not name counts as 0. Its premiums too
    (`premiums.net.cash` …), when either side has any; `originals`: the premiums, by
    tx_id, that premium reversals in the range undo."""
    expected = daily_close_body(
        records_in_range,
        business_day=close_body.get("business_day", ""),
        operator=close_body.get("operator", ""),
        originals=originals,
    )
    result = {}
    for section in ("settlements", "reversals", "net"):
        claimed, held = close_body.get(section) or {}, expected[section]
        for name, value in held.items():
            named_by_version_1 = name == "count" or name in VERSION_1_MONEY_FIELDS
            device = claimed.get(name) if named_by_version_1 else claimed.get(name, 0)
            if device != value:
                result[f"{section}.{name}"] = {"device": device, "hub": value}
    claimed_premiums, held_premiums = close_body.get("premiums"), expected.get("premiums")
    if claimed_premiums is not None or held_premiums is not None:
        for section, held in (held_premiums or premium_totals([])).items():
            claimed = (claimed_premiums or {}).get(section) or {}
            for name, value in held.items():
                if claimed.get(name) != value:
                    device = claimed.get(name)
                    result[f"premiums.{section}.{name}"] = {"device": device, "hub": value}
    if close_body.get("needs_review") != expected["needs_review"]:
        result["needs_review"] = {
            "device": close_body.get("needs_review"),
            "hub": expected["needs_review"],
        }
    return result
