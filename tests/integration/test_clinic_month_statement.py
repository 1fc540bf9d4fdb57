"""The clinic's month end to end, through the real HTTP hub on each hub store: a month of
visits with reversals uploaded, the month close signed and uploaded, the county's
statement fetched and agreeing; then a figure altered on the county's side, and the
disagreement named — settlement by settlement — on the device (command line and month
page) and at the hub for the coordinator."""

import json
import re
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from clock import FakeClock
from sync_helpers import NOW, hub_records, hub_store
from web_support import Auth, app_config

from edge import services
from edge.clock import CLINIC_TZ
from edge.console import main
from edge.domain.money import format_yuan
from sync import agent
from sync.hub import console_auth
from sync.hub.services import reconciliation, statements

CLINIC = "320115-001"
MONTH = NOW.strftime("%Y-%m")
PASSWORD = "correct horse 42"
NEXT_MONTH = datetime(NOW.year + NOW.month // 12, NOW.month % 12 + 1, 2, 9, tzinfo=CLINIC_TZ)


def upload(hub_dir, device, now) -> None:
    report = agent.sync_once(device.store, device.identity, device.data_dir, now)
    assert report["ok"], report["errors"]
    with hub_store(hub_dir) as store:
        reconciliation.reconcile_pending(store, now)


def clinic_statement(device, now, *args, month=MONTH):
    return CliRunner().invoke(
        main,
        ["statement", "--month", month, "--data-dir", str(device.data_dir), *args],
        env={"CLINIC_CLOCK": now.isoformat()},
    )


@pytest.fixture
def month(make_enrolled_device, hub, hub_dir, hub_clock):
    """A month of visits on a clinic's device: settlements over several days, two
    reversals (one days after its settlement), daily closes, an offline stretch uploaded
    late; then the month closed on the 2nd of the next month and uploaded."""
    device = make_enrolled_device("clinic", clinic_code=CLINIC, township="秣陵街道")
    settled = [device.settle(NOW + timedelta(hours=h)) for h in range(4)]
    services.reverse_settlement(
        device.store, device.identity, tx_id=settled[1]["tx_id"], reason="录入错误",
        operator="doc01", now=NOW + timedelta(hours=5),
    )  # fmt: skip
    services.close_day(
        device.store, device.identity, operator="doc01", now=NOW + timedelta(hours=9)
    )
    upload(hub_dir, device, NOW + timedelta(hours=9))
    later = NOW + timedelta(days=3)  # offline for days: uploaded only at the month's end
    settled += [device.settle(later + timedelta(hours=h)) for h in range(3)]
    services.reverse_settlement(
        device.store, device.identity, tx_id=settled[0]["tx_id"], reason="患者退药",
        operator="doc01", now=later + timedelta(hours=4),
    )  # fmt: skip
    hub_clock.now = NEXT_MONTH
    close = services.close_month(device.store, device.identity, operator="doc01", now=NEXT_MONTH)
    upload(hub_dir, device, NEXT_MONTH)
    return device, settled, close.record


def test_a_month_closed_uploaded_and_agreed_then_a_county_figure_differs(month, hub, hub_dir):
    device, settled, close = month
    body = close["body"]
    assert body["settlements"]["count"] == 7 and body["reversals"]["count"] == 2
    assert body["daily_closes"]["count"] == 2  # the last day closed by the month close
    # The hub keeps the month close as a record, well-formed, and never recomputes it.
    stored = {r["seq"]: r for r in hub_records(hub_dir, device.identity.device_id)}
    assert stored[close["seq"]]["kind"] == "monthly_close"
    with hub_store(hub_dir) as store:
        assert store.recomputation_of(device.identity.device_id, close["tx_id"]) in (
            None, ("not_a_settlement", None),
        )  # fmt: skip

    # The month the hub is in has no statement yet.
    none_yet = clinic_statement(device, NEXT_MONTH, month=NEXT_MONTH.strftime("%Y-%m"))
    assert none_yet.exit_code == 2 and "县级尚未出具结算单" in none_yet.output

    agreed = clinic_statement(device, NEXT_MONTH, "--json")
    assert agreed.exit_code == 0, agreed.output
    result = json.loads(agreed.output)
    assert result["agrees"] and result["count"] == 9 and result["reported_at"]
    assert result["device_total"]["medfee_sumamt"] == body["net"]["total"]
    assert result["county_total"] == result["device_total"]

    # The county's side of one settlement changes (its recomputation gives the fund 1.00
    # less and the patient's cash 1.00 more): the next statement revision differs.
    target = settled[2]
    with hub_store(hub_dir) as store, store.unit_of_work():
        _, result_at_hub = store.recomputation_of(device.identity.device_id, target["tx_id"])
        result_at_hub = {**result_at_hub, "fund": result_at_hub["fund"] - 100,
                         "cash": result_at_hub["cash"] + 100}  # fmt: skip
        store.conn.execute(
            "UPDATE recomputation SET hub_result = ? WHERE device_id = ? AND tx_id = ?",
            [json.dumps(result_at_hub), device.identity.device_id, target["tx_id"]],
        )
    differs = clinic_statement(device, NEXT_MONTH + timedelta(hours=1))
    assert differs.exit_code == 1, differs.output
    text = differs.output
    assert "不一致" in text and f"流水 {target['seq']}" in text and target["tx_id"] in text
    assert "统筹基金" in text and "相差 -¥1.00" in text and "相差 ¥1.00" in text

    # The coordinator at the hub sees the device's disagreement, naming the settlement,
    # with both sides' figures.
    with hub_store(hub_dir) as store:
        revision = statements.refresh(store, CLINIC, MONTH, NEXT_MONTH + timedelta(hours=1))
        views = statements.reconciliation_view(store, revision)
        clearing = statements.clearing(store, MONTH, NEXT_MONTH + timedelta(hours=1))
    assert revision.revision == 2
    (view,) = views
    assert view["device_id"] == device.identity.device_id and view["agrees"] is False
    assert view["current"] and {d["tx_id"] for d in view["differences"]} == {target["tx_id"]}
    fund = next(d for d in view["differences"] if d["field"] == "hifp_pay")
    assert fund["county"] == fund["device"] - 100 and fund["row"]["seq"] == target["seq"]
    assert next(r for r in clearing if r["clinic_code"] == CLINIC)["devices_agree"] is False
    # ... and on the console, signed in as the township's coordinator.
    with hub_store(hub_dir) as store:
        console_auth.add_user(store, "li", PASSWORD, "coordinator", "秣陵街道", NOW)
    console = hub.app.test_client()
    login = console.get("/console/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    console.post("/console/login", data={"username": "li", "password": PASSWORD,
                                         "csrf_token": csrf})  # fmt: skip
    shown = console.get(f"/console/statements/{CLINIC}/{MONTH}").get_data(as_text=True)
    assert "与县级不一致" in shown and target["tx_id"] in shown
    assert format_yuan(fund["device"]) in shown and format_yuan(fund["county"]) in shown

    # The terminal's month page shows the same, by seq, patient and payer.
    clock = FakeClock(NEXT_MONTH + timedelta(hours=2))
    from web_ui.app import create_app

    app = create_app(app_config(device.data_dir, clock))
    auth = Auth(app.test_client())
    auth.sign_in("doc01")
    answer = auth.post("/month/statement", {"month": MONTH})
    assert answer.status_code == 302
    page = auth.client.get(f"/month?month={MONTH}").get_data(as_text=True)
    assert "县级结算单与本机不一致" in page
    differences = page.split('id="statement-differences"', 1)[1].split("</table>", 1)[0]
    assert f'data-tx="{target["tx_id"]}"' in differences and "统筹基金" in differences
    assert "-¥1.00" in differences
