"""The county recomputes every uploaded settlement with its own accumulators and reports
every difference with both sides' amounts; daily closes are checked against their records.
On each hub store (`hub_backend`, tests/hub_fixtures.py)."""

import copy
from datetime import timedelta

import pytest
from sync_helpers import NOW, hub_store

from edge import services
from edge.demo import DEMO_CATALOG_VERSION
from sync import agent
from sync.hub import reconcile
from sync.hub.services import reconciliation, reports
from sync.protocol import iso

EMPLOYEE = "32011500000501"  # employee: 30000 fen deductible on general visits
INSULIN_X5 = [("XA10ACE168A001", "5")]  # 5 × ¥42.80 = 21400 fen, class A, no limits


@pytest.fixture
def clinics(make_enrolled_device):
    """Two clinics' devices, both enrolled."""
    return [
        make_enrolled_device(f"device-{index}", clinic_code=clinic)
        for index, clinic in enumerate(("320115-001", "320115-002"))
    ]


def upload_and_reconcile(hub_dir, *devices) -> dict:
    for device in devices:
        report = agent.sync_once(device.store, device.identity, device.data_dir, NOW)
        assert report["ok"], report["errors"]
    with hub_store(hub_dir) as store:
        return reconciliation.reconcile_pending(store, NOW)


def items(hub_dir, code=None):
    with hub_store(hub_dir) as store:
        return [i for i in store.reconciliation_items() if code is None or i.code == code]


def test_a_settlement_the_county_agrees_with_makes_no_difference(clinics, hub_dir):
    clinics[0].settle(NOW, EMPLOYEE, INSULIN_X5)
    assert upload_and_reconcile(hub_dir, clinics[0]) == {"not_a_settlement": 1, "ok": 1}
    assert items(hub_dir) == []


def test_a_deductible_used_at_two_clinics_while_offline_is_a_difference_with_both_amounts(
    clinics, hub_dir
):
    first = clinics[0].settle(NOW, EMPLOYEE, INSULIN_X5)
    second = clinics[1].settle(NOW + timedelta(hours=1), EMPLOYEE, INSULIN_X5)
    # Offline, each clinic applied the whole visit to the deductible and the fund paid 0.
    assert first["body"]["result"]["deductible_applied"] == 21400
    assert second["body"]["result"]["fund"] == 0
    counts = upload_and_reconcile(hub_dir, *clinics)
    assert counts == {"not_a_settlement": 2, "ok": 1, "differs": 1}
    (item,) = items(hub_dir, reconcile.SETTLEMENT_DIFFERS)
    assert (item.device_id, item.seq, item.tx_id, item.business_day, item.created_at) == (
        clinics[1].identity.device_id,
        second["seq"],
        second["tx_id"],
        second["created_at"][:10],
        iso(NOW),
    )
    fields = item.details["fields"]
    assert fields["deductible_applied"] == {"device": 21400, "hub": 8600}
    assert fields["fund"] == {"device": 0, "hub": 6400}
    assert item.details["accumulators_before"]["deductible_used"] == {"device": 0, "hub": 21400}
    with hub_store(hub_dir) as store:
        balances = store.balances(EMPLOYEE, NOW.date(), "general")
    assert (balances.deductible_used, balances.fund_paid) == (30000, 6400)


def test_a_reversal_gives_the_county_accumulators_back(clinics, hub_dir):
    settled = clinics[0].settle(NOW, EMPLOYEE, INSULIN_X5)
    services.reverse_settlement(
        clinics[0].store,
        clinics[0].identity,
        tx_id=settled["tx_id"],
        reason="录入错误",
        operator="doc01",
        now=NOW,
    )
    clinics[1].settle(NOW + timedelta(hours=1), EMPLOYEE, INSULIN_X5)
    upload_and_reconcile(hub_dir, *clinics)
    assert items(hub_dir, reconcile.SETTLEMENT_DIFFERS) == []


def test_daily_closes_that_match_their_records_make_no_difference(clinics, hub_dir):
    clinics[0].settle(NOW, EMPLOYEE, INSULIN_X5)
    services.close_day(clinics[0].store, clinics[0].identity, operator="doc01", now=NOW)
    clinics[0].settle(NOW + timedelta(days=1))
    services.close_day(
        clinics[0].store, clinics[0].identity, operator="doc01", now=NOW + timedelta(days=1)
    )
    counts = upload_and_reconcile(hub_dir, clinics[0])
    assert counts["ok"] == 4 and items(hub_dir, reconcile.DAILY_CLOSE_DIFFERS) == []


def test_a_daily_close_whose_totals_differ_from_its_records_is_a_difference(clinics):
    records = [clinics[0].settle(NOW + timedelta(seconds=s)) for s in range(3)]
    close = services.close_day(
        clinics[0].store, clinics[0].identity, operator="doc01", now=NOW
    ).record["body"]
    assert reconcile.daily_close_differences(close, records[1:]) == {
        "settlements.count": {"device": 3, "hub": 2},
        **{
            f"settlements.{k}": {
                "device": close["settlements"][k],
                "hub": close["settlements"][k] - records[0]["body"]["result"][k],
            }
            for k in ("total", "fund", "cash")
            if records[0]["body"]["result"][k]
        },
        **{
            f"net.{k}": {
                "device": close["net"][k],
                "hub": close["net"][k] - records[0]["body"]["result"][k],
            }
            for k in ("total", "fund", "cash")
            if records[0]["body"]["result"][k]
        },
    }


def test_a_settlement_on_a_catalog_the_county_never_published_is_reported(clinics, hub_dir):
    device = clinics[0]
    local = copy.deepcopy(
        {code: item for code, item in device.store.catalog_items(["XA10ACE168A001"]).items()}
    )
    device.store.import_catalog(local.values(), "2026.11.9", source="installed on site", now=NOW)
    device.settle(NOW, EMPLOYEE, INSULIN_X5)
    assert upload_and_reconcile(hub_dir, device)["not_recomputable"] == 1
    (item,) = items(hub_dir, reconcile.NOT_RECOMPUTABLE)
    assert "catalog 2026.11.9" in item.details["reason"]
    assert item.details["device"]["fund"] == 0
    with hub_store(hub_dir) as store:  # the county's figures follow the device's
        assert store.balances(EMPLOYEE, NOW.date(), "general").deductible_used == 21400
    assert DEMO_CATALOG_VERSION != "2026.11.9"


def test_the_reconciliation_csv_has_one_row_per_differing_field(clinics, hub_dir):
    clinics[0].settle(NOW, EMPLOYEE, INSULIN_X5)
    clinics[1].settle(NOW, EMPLOYEE, INSULIN_X5)
    upload_and_reconcile(hub_dir, *clinics)
    with hub_store(hub_dir) as store:
        lines = reports.reconciliation_csv(store).splitlines()
    assert lines[0] == ",".join(reports.RECONCILIATION_CSV_COLUMNS)
    fund_row = next(line for line in lines if ",hifp_pay," in line)  # the fund
    assert "SETTLEMENT_DIFFERS" in fund_row and fund_row.split(",")[7:9] == ["0", "6400"]


class TestBackgroundReconciliation:
    @pytest.fixture
    def hub_config(self):
        return {"RECONCILE_INTERVAL_S": 60}  # woken by each upload, long before the minute is up

    def test_a_serving_hub_recomputes_uploads_in_the_background(self, hub_dir, enrolled_device):
        import time

        device = enrolled_device
        device.settle(NOW, EMPLOYEE, INSULIN_X5)
        assert agent.sync_once(device.store, device.identity, device.data_dir, NOW)["ok"]
        deadline = time.monotonic() + 10
        status = None
        while status is None and time.monotonic() < deadline:
            time.sleep(0.05)
            with hub_store(hub_dir) as store:
                found = store.recomputation_of(
                    device.identity.device_id, device.records()[-1]["tx_id"]
                )
            status = found[0] if found else None
        assert status == "ok"
