"""What a well-formed record body is (`edge.domain.records.body_problem`, docs/ledger.md):
every body a device really writes passes (version 1's from the ledger's worked example
and an old hub, version 2's from real settlements with every payer, reversals, daily
closes and events), and each malformed one is named."""

import copy
import gzip
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sync_helpers import NOW, new_device
from test_hub_reconcile_v2 import (
    CI_EMPLOYEE,
    HOLDER,
    INSULIN_X5,
    OFFICE_VISIT,
    PATIENT,
    RESIDENT,
    policy_document,
    roster_document,
    settle,
)

from edge import services
from edge.domain.records import MAX_LINES, body_problem

ROOT = Path(__file__).parents[2]


def version_1_records(tmp_path) -> list[dict]:
    """The ledger's worked example and the records of a hub made by version 1 code."""
    records = [
        json.loads(line)
        for line in (ROOT / "docs" / "ledger.md").read_text().splitlines()
        if line.startswith('{"body"')
    ]
    hub_db = tmp_path / "hub.db"
    packed = ROOT / "tests" / "fixtures" / "hub-2026-11" / "hub.db.gz"
    hub_db.write_bytes(gzip.decompress(packed.read_bytes()))
    with sqlite3.connect(hub_db) as db:
        records += [json.loads(text) for (text,) in db.execute("SELECT record FROM record")]
    return records


@pytest.fixture(scope="module")
def device_records(tmp_path_factory) -> list[dict]:
    """A device's ledger after real settlements under the demo policy and under rules
    version 2 with every payer (fund, critical illness, assistance, both supplements, the
    person's and the family holder's accounts, the day cap), a reversal, daily closes."""
    device = new_device(tmp_path_factory.mktemp("bodies") / "device")
    try:
        for person in ("32011500000001", "32011500000501", "32011600000009"):
            device.settle(NOW, person)
        services.close_day(device.store, device.identity, operator="doc01", now=NOW)
        device.store.import_policy(policy_document(), now=NOW)
        device.store.import_roster(roster_document(), now=NOW)
        later = NOW + timedelta(minutes=5)
        settle(device, later, PATIENT, INSULIN_X5, accounts=True)
        settle(device, later, CI_EMPLOYEE, INSULIN_X5)
        first = settle(device, later, RESIDENT, OFFICE_VISIT)
        settle(device, later, RESIDENT, OFFICE_VISIT)  # past the day cap
        settle(device, later, HOLDER, OFFICE_VISIT, accounts=False)
        services.reverse_settlement(
            device.store, device.identity, tx_id=first["tx_id"], reason="患者取消 wrong patient",
            operator="doc01", now=later,
        )  # fmt: skip
        services.close_day(device.store, device.identity, operator="doc01", now=later)
        return device.records()
    finally:
        device.store.close()


def test_every_body_a_device_writes_is_well_formed(device_records, tmp_path):
    records = device_records + version_1_records(tmp_path)
    kinds = {(r["kind"], r["body"].get("rules_version")) for r in records}
    assert {("settlement", 1), ("settlement", 2), ("reversal", None)} <= kinds
    assert {("daily_close", None), ("event", None)} <= kinds
    v2 = [r["body"]["result"] for r in device_records if r["kind"] == "settlement"]
    assert any(result["supplements"] for result in v2)  # every payer was exercised
    assert any(result["family_account"] for result in v2)
    assert any(result["critical_illness"] for result in v2)
    assert any(result.get("fund_limited_by") for result in v2)
    for record in records:
        assert body_problem(record["kind"], record["body"]) is None, record


def with_change(record: dict, path: str, value, *, delete: bool = False) -> dict:
    body = copy.deepcopy(record["body"])
    *parents, last = path.split(".")
    target = body
    for name in parents:
        target = target[int(name)] if isinstance(target, list) else target[name]
    if delete:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return body


MALFORMED_SETTLEMENTS = [
    ("visit", [], "body.visit must be an object"),
    ("result", None, "body.result must be an object"),
    ("result.total", "=3+3", "body.result.total must be a whole number of fen"),
    ("result.fund", 10.5, "a record never holds"),
    ("result.cash", True, "body.result.cash must be a whole number of fen"),
    ("result.cash", 10**15, "out of range"),
    ("result.cash", 2**64, "does not fit in 64 bits"),
    ("insured_id", "3" * 100_000, "too long"),
    ("operator", "x" * 65, "longer than 64"),
    ("visit.lines", [{"code": "X"}] * (MAX_LINES + 1), "more than"),
    ("visit.lines.0.price", "six", "decimal number"),
    ("visit.lines.0.quantity", "NaN", "decimal number"),
    ("visit.date", "yesterday", "must be a date"),
    ("visit.diagnoses", "J06.900", "must be a list"),
    ("result.lines.0.reasons", [1], "must be text"),
    ("result.accumulators_after", {"fund_paid": 1}, "lacks"),
    ("result.supplements.0", {"name": "x", "pays_as": "oth_pay", "amount": "1"}, "fen"),
    ("accumulators_before.supplements_paid", {"x": []}, "fen"),
    ("needs_review", None, "must be a list"),
    ("extra", 1, "unknown members"),
    ("visit.extra", 1, "unknown members"),
]


@pytest.mark.parametrize("path, value, why", MALFORMED_SETTLEMENTS)
def test_a_malformed_settlement_body_is_named(device_records, path, value, why):
    settlement = next(
        r
        for r in device_records
        if r["kind"] == "settlement" and r["body"]["result"]["supplements"]
    )
    problem = body_problem("settlement", with_change(settlement, path, value))
    assert problem is not None and why in problem, problem


@pytest.mark.parametrize(
    "kind, path", [("settlement", "result"), ("settlement", "visit.date"),
                   ("reversal", "amounts.total"), ("reversal", "reverses"),
                   ("daily_close", "net"), ("daily_close", "settlements.count")],
)  # fmt: skip
def test_a_body_missing_a_member_is_named(device_records, kind, path):
    record = next(r for r in device_records if r["kind"] == kind)
    problem = body_problem(kind, with_change(record, path, None, delete=True))
    assert problem is not None and "lacks" in problem and path.split(".")[-1] in problem


@pytest.mark.parametrize(
    "kind, body, why",
    [
        ("reversal", {"reverses": 5}, "lacks"),
        ("daily_close", [], "body must be an object"),
        ("event", {"event": None}, "body.event must be text"),
        ("event", {"event": "x", "deep": [[[[[[[[[[1]]]]]]]]]]}, "nested deeper"),
        ("future_kind", {"n": 1.5}, "a record never holds"),
        ("future_kind", {"n": list(range(30_000))}, "more than"),
    ],
)
def test_other_kinds_keep_their_shape_and_every_body_its_bounds(kind, body, why):
    problem = body_problem(kind, body)
    assert problem is not None and why in problem, problem


def test_a_kind_this_code_does_not_know_passes_within_the_bounds():
    assert body_problem("future_kind", {"anything": ["within", {"the": 1}]}) is None


def test_malformed_daily_close_and_reversal_members_are_named(device_records):
    close = next(r for r in device_records if r["kind"] == "daily_close")
    reversal = next(r for r in device_records if r["kind"] == "reversal")
    for kind, record, path, value in [
        ("daily_close", close, "net.total", "=1+1"),
        ("daily_close", close, "from_seq", -1),
        ("daily_close", close, "business_day", "2026-13-01"),
        ("reversal", reversal, "amounts.fund", 1.0),
        ("reversal", reversal, "reverses_seq", "1"),
        ("reversal", reversal, "accumulators_after", []),
    ]:
        assert body_problem(kind, with_change(record, path, value)) is not None, path
