"""The embedded demo county: policy, a village-clinic catalog, an insured roster.

`install` loads whatever the device does not have yet, so it is safe to run twice.
"""

import json
from collections.abc import Iterator
from datetime import datetime
from importlib import resources

from edge import services
from edge.catalog_files import open_catalog_file
from edge.identity import DeviceIdentity
from edge.money import format_yuan
from edge.rules import Rejection, Visit, VisitLine
from edge.store import SqliteDeviceStore

DEMO_CATALOG_VERSION = "2026.11.1"
DEMO_OPERATORS = [
    ("doc01", "王医生", "doctor"),
    ("coord01", "李协管员", "coordinator"),
    ("admin01", "县医保管理员", "admin"),
    ("test01", "测试员", "tester"),
]


def _data(name: str):
    return resources.files(__package__).joinpath(name)


def load_json(name: str) -> dict:
    return json.loads(_data(name).read_text(encoding="utf-8"))


def install(store: SqliteDeviceStore) -> Iterator[str]:
    if store.policy_version() is None:
        policy = store.import_policy(load_json("policy.json"))
        yield f"policy {policy.version} installed"
    if store.catalog_version() is None:
        with resources.as_file(_data("catalog.csv")) as path:
            count = store.import_catalog(
                open_catalog_file(path).items, DEMO_CATALOG_VERSION, source="demo catalog.csv"
            )
        yield f"catalog {DEMO_CATALOG_VERSION}: {count} items installed"
    if store.roster_version() is None:
        count = store.import_roster(load_json("roster.json"))
        yield f"roster: {count} insured persons installed"
    for operator_id, name, role in DEMO_OPERATORS:
        store.add_operator(operator_id, name, role)


# (insured_id, visit type, diagnoses, [(code, quantity)], use personal account)
SAMPLE_VISITS = [
    ("32011500000001", "general", ["J06.900"],
     [("110200005000000", "1"), ("XJ01CAA040A001", "2"), ("XR05XAA202A001", "1")], False),
    ("32011500000005", "general", ["J06.900"],
     [("110200005000000", "1"), ("XJ01CAA040A001", "2"), ("XR05XAA202A001", "1")], False),
    ("32011500000502", "general", ["J06.900"],
     [("110200005000000", "1"), ("XJ01CAA040A001", "2")], True),
    ("32011500000002", "chronic", ["I10.x00"],
     [("XC08CAB128A001", "2"), ("XC08CAB129A001", "1"), ("250302002000000", "1")], False),
    ("32011500000017", "general", ["J06.900"], [("110200005000000", "1")], False),
    ("32011500000022", "chronic", ["I10.x00"], [("XC08CAB128A001", "1")], False),
]  # fmt: skip


def walkthrough(store: SqliteDeviceStore, identity: DeviceIdentity, now: datetime) -> Iterator[str]:
    """Search the catalog, settle sample visits, verify the ledger, close the day."""
    yield ""
    yield "catalog search 'amxl' (pinyin initials of 阿莫西林):"
    for hit in store.search_catalog("amxl", limit=5):
        yield f"  {hit.code}  {hit.name} {hit.spec}  ¥{hit.price}/{hit.unit}"
    operator = DEMO_OPERATORS[0][0]
    for insured_id, visit_type, diagnoses, lines, use_account in SAMPLE_VISITS:
        entry = store.insured_person(insured_id)
        visit = Visit(now.date(), visit_type, tuple(diagnoses),
                      tuple(VisitLine(code, qty) for code, qty in lines), use_account)  # fmt: skip
        yield ""
        yield f"{entry.name} ({insured_id}, {entry.person.insurance_type}), {visit_type} visit:"
        try:
            recorded = services.settle_visit(store, identity, insured_id=insured_id,
                                             visit=visit, operator=operator, now=now)  # fmt: skip
        except Rejection as rejection:
            yield f"  refused, nothing recorded: {rejection.code}: {rejection.message}"
            continue
        result = recorded.settlement
        yield (
            f"  total {format_yuan(result.total)} = fund {format_yuan(result.fund)}"
            f" + assistance {format_yuan(result.assistance)}"
            f" + account {format_yuan(result.personal_account)} + cash {format_yuan(result.cash)}"
        )
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
