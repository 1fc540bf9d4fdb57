"""The embedded demo county: its documents as of a day (`edge.demo.county`), installed on
a device (`install`, safe to run twice), and a scripted walkthrough of sample visits.
"""

import dataclasses
from collections.abc import Iterator
from datetime import date, datetime
from importlib import resources

from edge import services
from edge.adapters.catalog_files import open_catalog_file
from edge.adapters.identity import DeviceIdentity
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.demo.county import (
    DEMO_DAY,
    data_file,
    demo_date,
    diagnoses_file,
    load_json,
    policy_document,
    roster_document,
)
from edge.domain.model import CatalogItem, Rejection, Visit, VisitLine
from edge.domain.money import format_yuan
from edge.domain.records import CHINESE_NAMES, MONEY_FIELDS, NATIONAL_NAMES, payer_amounts
from edge.domain.search_keys import aliases_from_csv

__all__ = [  # the documents, re-exported for the callers that install and test the demo
    "DEMO_ALIAS_VERSION",
    "DEMO_CATALOG_VERSION",
    "DEMO_DAY",
    "DEMO_OPERATORS",
    "SAMPLE_VISITS",
    "alias_rows",
    "catalog_items",
    "demo_date",
    "diagnoses_file",
    "install",
    "load_json",
    "policy_document",
    "roster_document",
    "walkthrough",
]

DEMO_CATALOG_VERSION = "2026.11.2"  # 2026.11.2: the ¥10 general consultation fee, ¥8 fixed
DEMO_ALIAS_VERSION = "2026.11.1"
DEMO_OPERATORS = [
    ("doc01", "王医生", "doctor"),
    ("coord01", "李协管员", "coordinator"),
    ("admin01", "县医保管理员", "admin"),
    ("test01", "测试员", "tester"),
]


def catalog_items(today: date) -> Iterator[CatalogItem]:
    """The demo catalog as of `today` (validity dates moved), read lazily."""
    with resources.as_file(data_file("catalog.csv")) as path:
        for item in open_catalog_file(path).items:
            if item.valid_from is None and item.valid_to is None:
                yield item
                continue
            yield dataclasses.replace(
                item,
                valid_from=item.valid_from and demo_date(item.valid_from, today),
                valid_to=item.valid_to and demo_date(item.valid_to, today),
            )


def install(store: SqliteDeviceStore, now: datetime) -> Iterator[str]:
    """The demo county's data as of `now`'s day, whatever the device lacks of it."""
    today = now.date()
    if store.policy_version() is None:
        policy = store.import_policy(policy_document(), now=now)
        yield f"policy {policy.version} installed"
    if store.catalog_version() is None:
        count = store.import_catalog(
            catalog_items(today), DEMO_CATALOG_VERSION, source="demo catalog.csv", now=now
        )
        yield f"catalog {DEMO_CATALOG_VERSION}: {count} items installed"
    if store.roster_version() is None:
        count = store.import_roster(roster_document(today), now=now)
        yield f"roster: {count} insured persons installed"
    if store.alias_version() is None:
        count = store.import_aliases(
            alias_rows(), DEMO_ALIAS_VERSION, source="demo aliases.csv", now=now
        )
        yield f"search aliases {DEMO_ALIAS_VERSION}: {count} installed"
    if not any(bundle.source == "county" for bundle in store.bundles()):
        count = store.install_county_bundles(load_json("bundles.json")["bundles"], now=now)
        yield f"bundles: {count} installed"
    for operator_id, name, role in DEMO_OPERATORS:
        store.add_operator(operator_id, name, role)


def alias_rows() -> list[tuple[str, str, str]]:
    """The demo county's search aliases, (list, alias, code) each."""
    return aliases_from_csv(data_file("aliases.csv").read_text(encoding="utf-8"))


# (insured_id, visit type, diagnoses, [(code, quantity)], what the visit pays with)
SAMPLE_VISITS = [
    ("32011500000001", "general", ["J06.900"],
     [("110200005000000", "1"), ("XJ01CAA040A001", "2"), ("XR05XAA202A001", "1")], {}),
    ("32011500000005", "general", ["J06.900"],
     [("110200005000000", "1"), ("XJ01CAA040A001", "2"), ("XR05XAA202A001", "1")], {}),
    ("32011500000502", "general", ["J06.900"],
     [("110200005000000", "1"), ("XJ01CAA040A001", "2")], {"use_personal_account": True}),
    ("32011500000002", "chronic", ["I10.x00"],
     [("XC08CAB128A001", "2"), ("XC08CAB129A001", "1"), ("250302002000000", "1")], {}),
    ("32011500000017", "general", ["J06.900"], [("110200005000000", "1")], {}),
    ("32011500000022", "chronic", ["I10.x00"], [("XC08CAB128A001", "1")], {}),
    # version 2's chain: a visit cap, 两病, critical illness, the veterans' compensation,
    # the civil servants' subsidy, a daughter's shared account
    ("32011600000020", "general", ["J06.900"],
     [("110200005000000", "1"), ("XJ01CAA040A001", "3"), ("XJ01CAA040A002", "2")], {}),
    ("32011500000003", "two_diseases", ["I10.x00"], [("XC08CAB128A001", "2")], {}),
    ("32011500000028", "chronic", ["I10.x00"], [("XC08CAB128A001", "5")], {}),
    ("32011500000026", "general", ["J06.900"],
     [("110200005000000", "1"), ("XJ01CAA040A001", "1"), ("XR05XAA202A001", "1")], {}),
    ("32011500000510", "general", ["J06.900"],
     [("110200005000000", "1"), ("XJ01CAA040A001", "2")], {"use_personal_account": True}),
    ("32011500000027", "general", ["J06.900"],
     [("110200005000000", "1"), ("XJ01CAA040A001", "2")], {"use_family_account": True}),
]  # fmt: skip

CAPS = {"visit_cap": "单次限额", "day_cap": "当日限额", "annual_cap": "年度限额"}


def walkthrough(store: SqliteDeviceStore, identity: DeviceIdentity, now: datetime) -> Iterator[str]:
    """Search the catalog, settle sample visits, verify the ledger, close the day."""
    yield ""
    yield "catalog search 'amxl' (pinyin initials of 阿莫西林):"
    for hit in store.search_catalog("amxl", limit=5):
        yield f"  {hit.code}  {hit.name} {hit.spec}  ¥{hit.price}/{hit.unit}"
    operator = DEMO_OPERATORS[0][0]
    for insured_id, visit_type, diagnoses, lines, pays_with in SAMPLE_VISITS:
        entry = store.insured_person(insured_id)
        if entry is None:  # a device whose roster is not the demo county's
            yield f"{insured_id}: not in this device's roster, skipped"
            continue
        visit = Visit(now.date(), visit_type, tuple(diagnoses),
                      tuple(VisitLine(code, qty) for code, qty in lines), **pays_with)  # fmt: skip
        yield ""
        yield f"{entry.name} ({insured_id}, {entry.person.insurance_type}), {visit_type} visit:"
        try:
            recorded = services.settle_visit(store, identity, insured_id=insured_id,
                                             visit=visit, operator=operator, now=now)  # fmt: skip
        except Rejection as rejection:
            yield f"  refused, nothing recorded: {rejection.code}: {rejection.message}"
            continue
        result = recorded.settlement
        paid = payer_amounts(result.to_dict())
        yield f"  total {format_yuan(result.total)} = " + " + ".join(
            f"{CHINESE_NAMES[payer]} {NATIONAL_NAMES[payer]} {format_yuan(paid[payer])}"
            for payer in MONEY_FIELDS[1:]
            if paid[payer]
        )
        if result.fund_limited_by:
            yield f"  统筹基金已达{CAPS[result.fund_limited_by]} ({result.fund_limited_by})"
        holder_id = recorded.record["body"]["visit"]["family_account_holder"]
        holder = holder_id and store.insured_person(holder_id, with_accumulators=False)
        if holder:
            yield f"  家庭共济: {holder.name} ({holder_id}) 的个人账户 the personal account paid"
        for line in result.lines:
            if line.reasons:
                yield f"  {line.code}: {', '.join(line.reasons)}"
        for warning in result.warnings:
            yield f"  {warning.code}: {warning.message}"
        for reason in recorded.needs_review:
            yield f"  needs county review: {reason}"
        yield f"  recorded as seq {recorded.record['seq']}, hash {recorded.record['hash'][:16]}…"
    verification = services.verify_ledger(store)
    yield ""
    yield f"ledger verified: {verification.count} records, intact: {verification.ok}"
    close = services.close_day(store, identity, operator=operator, now=now).record
    net = close["body"]["net"]
    yield (
        f"daily close #{close['seq']}: {close['body']['settlements']['count']} settlements,"
        f" net {format_yuan(net['total'])} (fund {format_yuan(net['fund'])},"
        f" cash {format_yuan(net['cash'])})"
    )
