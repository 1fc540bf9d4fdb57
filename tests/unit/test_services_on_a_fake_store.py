"""The device's use cases run on any `DeviceStore`: on the in-memory fake they settle,
refuse, reverse and close the day exactly as on SQLite, record for record."""

from datetime import timedelta

import pytest
from clock import NOW, TODAY
from fake_store import FakeDeviceStore

from edge import demo, services
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.documents import policy_from_json, roster_from_json, visit_from_json
from edge.domain.model import Rejection

OPERATORS = {name: (full, role) for name, full, role in demo.DEMO_OPERATORS}
SIGNED = ("hash", "sig", "tx_id", "device_id", "prev_hash")  # differ between two devices


def fake_device(data_dir) -> FakeDeviceStore:
    data_dir.mkdir(parents=True, exist_ok=True)  # for the device key only
    store = FakeDeviceStore(
        policy_from_json(demo.policy_document()),
        demo.catalog_items(TODAY),
        roster_from_json(demo.roster_document(TODAY))[1],
        OPERATORS,
        catalog_version=demo.DEMO_CATALOG_VERSION,
    )
    return store


def sqlite_device(data_dir) -> SqliteDeviceStore:
    store = SqliteDeviceStore.open(data_dir, create=True)
    list(demo.install(store, NOW))
    return store


def visit(*lines, visit_type="general", diagnoses=("J06.900",)):
    return visit_from_json({"date": TODAY.isoformat(), "visit_type": visit_type,
                            "diagnoses": list(diagnoses),
                            "lines": [{"code": c, "quantity": q} for c, q in lines]})  # fmt: skip


def a_day(store, data_dir) -> list[dict]:
    """Settlements, a refusal, a reversal and the daily close; the records, unsigned."""
    identity = services.init_device(store, data_dir, NOW - timedelta(hours=1))
    moment = NOW

    def settle(insured_id, the_visit):
        nonlocal moment
        moment += timedelta(minutes=7)
        return services.settle_visit(store, identity, insured_id=insured_id, visit=the_visit,
                                     operator="doc01", now=moment)  # fmt: skip

    first = settle("32011500000005", visit(("XJ01CAA040A001", "2"), ("110200005000000", "1")))
    settle("32011500000002", visit(("XC08CAB128A001", "1"), visit_type="chronic",
                                   diagnoses=("I10.x00",)))  # fmt: skip
    with pytest.raises(Rejection) as refused:
        settle("32011500000022", visit(("XC08CAB128A001", "1"), visit_type="chronic",
                                       diagnoses=("I10.x00",)))  # fmt: skip
    assert refused.value.code == "CHRONIC_NOT_CERTIFIED"
    services.reverse_settlement(store, identity, tx_id=first.record["tx_id"], reason="录入错误",
                                operator="doc01", now=moment + timedelta(minutes=1))  # fmt: skip
    settle("32011500000502", visit(("XJ01CAA040A001", "1")))
    services.close_day(store, identity, operator="doc01", now=moment + timedelta(hours=1))
    assert services.verify_ledger(store).ok
    return [unsigned(r) for r in store.records()]


def unsigned(record: dict) -> dict:
    """What two devices recording the same day share (a reversal names its settlement by
    tx_id, which differs; it names it by seq too)."""
    body = {k: v for k, v in record["body"].items() if k != "reverses"}
    return {**{k: v for k, v in record.items() if k not in SIGNED}, "body": body}


def test_the_use_cases_record_the_same_day_on_the_fake_as_on_sqlite(tmp_path):
    on_fake = a_day(fake_device(tmp_path / "fake"), tmp_path / "fake")
    sqlite = sqlite_device(tmp_path / "sqlite")
    try:
        on_sqlite = a_day(sqlite, tmp_path / "sqlite")
    finally:
        sqlite.close()
    assert [r["kind"] for r in on_fake] == [
        "settlement", "settlement", "reversal", "settlement", "daily_close",
    ]  # fmt: skip
    assert on_fake == on_sqlite


def test_a_refused_settlement_leaves_the_fake_untouched(tmp_path):
    store = fake_device(tmp_path)
    identity = services.init_device(store, tmp_path, NOW - timedelta(hours=1))
    before = (list(store.ledger), dict(store.sums), store.persons["32011500000503"])
    with pytest.raises(Rejection):
        services.settle_visit(store, identity, insured_id="32011500000503",
                              visit=visit(("NO-SUCH", "1")), operator="doc01", now=NOW)  # fmt: skip
    assert (store.ledger, store.sums, store.persons["32011500000503"]) == before


def premium_day(store, data_dir) -> list[dict]:
    """Premiums: a family in cash (one 特困 pays nothing), 家庭共济, a reversal, the close."""
    from edge import premiums

    identity = services.init_device(store, data_dir, NOW - timedelta(hours=1))

    def collect(insured_ids, **how):
        return premiums.collect_premium(
            store, identity, operator="doc01", payer_name="付款人", payer_insured_id=None,
            insured_ids=insured_ids, year=None, reference=None, account_holder=None, now=NOW,
            **{"method": "cash", **how},
        )  # fmt: skip

    family = collect(["32011500000001", "32011500000005", "32011500000008"])
    collect(["32011500000027"], method="family_account")
    with pytest.raises(Rejection):
        collect(["32011500000001"])  # already paid
    premiums.reverse_premium(store, identity, family.record["tx_id"], operator="doc01",
                             reason="退费", now=NOW)  # fmt: skip
    assert premiums.premiums(store)[1]["reversal_seq"] == 3
    assert store.premium_paid("32011500000001", NOW.year + 1) is None
    services.close_day(store, identity, operator="doc01", now=NOW + timedelta(hours=1))
    balance = store.insured_person("32011500000511", with_accumulators=False).person
    return [*(unsigned(r) for r in store.records()), {"holder_balance": balance.account_balance}]


def test_premiums_are_recorded_the_same_on_the_fake_as_on_sqlite(tmp_path):
    on_fake = premium_day(fake_device(tmp_path / "fake"), tmp_path / "fake")
    sqlite = sqlite_device(tmp_path / "sqlite")
    try:
        on_sqlite = premium_day(sqlite, tmp_path / "sqlite")
    finally:
        sqlite.close()
    assert [r.get("kind") for r in on_fake] == [
        "premium", "premium", "premium_reversal", "daily_close", None,
    ]  # fmt: skip
    assert on_fake == on_sqlite
    assert on_fake[-1] == {"holder_balance": 80000 - 40000}
