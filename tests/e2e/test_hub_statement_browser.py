"""The county's printable clearing statement in real Chromium: a coordinator signs in,
opens the clearing list and a clinic's statement; its totals are the signed statement's,
and printed it keeps the statement and its signature lines without the console around
it. Screenshots in test-artifacts/web-e2e/hub-statement/."""

from datetime import datetime, timedelta

import pytest
from browser_support import Shots
from console_support import PASSWORD, console_sign_in
from sync_helpers import NOW, hub_store

from edge.clock import CLINIC_TZ
from edge.domain.money import format_yuan
from sync import agent
from sync.hub import console_auth
from sync.hub.adapters.county_key import load_county_key
from sync.hub.services import reconciliation, statements
from sync.statements import PAYERS

MONTH = NOW.strftime("%Y-%m")
NEXT_MONTH = datetime(NOW.year + NOW.month // 12, NOW.month % 12 + 1, 2, 9, tzinfo=CLINIC_TZ)


@pytest.mark.parametrize("hub_backend", ["sqlite"], indirect=True)
def test_a_coordinator_prints_the_statement_and_its_totals_are_the_signed_ones(
    hub, hub_dir, hub_clock, make_enrolled_device, desk
):
    with hub_store(hub_dir) as store:
        console_auth.add_user(store, "li", PASSWORD, "coordinator", "秣陵街道", NOW)
    device = make_enrolled_device("ml", clinic_code="ML-01", township="秣陵街道")
    for hour in range(4):
        device.settle(NOW + timedelta(hours=hour))
    assert agent.sync_once(device.store, device.identity, device.data_dir, NOW)["ok"]
    with hub_store(hub_dir) as store:
        reconciliation.reconcile_pending(store, NOW)
    hub_clock.now = NEXT_MONTH
    shots = Shots(desk, "hub-statement")

    console_sign_in(desk, hub.url, "li")
    desk.goto(f"{hub.url}/console/clearing?month={MONTH}")
    shots("clearing")
    with desk.expect_navigation():
        desk.click("text=ML-01")
    shots("statement")

    with hub_store(hub_dir) as store:
        latest = store.latest_statement("ML-01", MONTH)
        signed = statements.signed(store, latest, load_county_key(hub_dir))["statement"]
    for payer in PAYERS:
        shown = desk.locator(f'table.total td[data-payer="{payer}"]').inner_text()
        assert shown == format_yuan(signed["total"][payer])
    assert desk.locator("table.detail tr").count() == 1 + len(signed["detail"])
    assert "卫生室负责人" in desk.locator(".signatures").inner_text()

    desk.emulate_media(media="print")
    shots("printed")
    assert not desk.locator("header").is_visible()
    assert desk.locator(".signatures").is_visible()
    assert desk.locator("table.total").is_visible()
