"""The console's clearing statements: the month's clearing list, a clinic's printable
statement with its signature lines, the admins' status form (CSRF), the device's
reconciliation shown with both sides' figures, exports; coordinators see their own
township only. On each hub store (`hub_backend`)."""

import io
from datetime import datetime, timedelta

import openpyxl
import pytest
from console_support import PASSWORD, page, signed_in, token
from hub_server import serve_in_background
from sync_helpers import NOW, hub_store

from edge.clock import CLINIC_TZ
from edge.domain.money import format_yuan
from sync import agent
from sync.agent import state
from sync.agent.jobs import client_for
from sync.hub import console_auth
from sync.hub.services import reconciliation

MONTH = NOW.strftime("%Y-%m")
CLINIC, OTHER = "ML-01", "GL-01"
NEXT_MONTH = datetime(NOW.year + NOW.month // 12, NOW.month % 12 + 1, 2, 9, tzinfo=CLINIC_TZ)


@pytest.fixture
def county(hub, hub_dir, hub_clock, make_enrolled_device):
    """ML-01 in 秣陵街道 and GL-01 in 谷里街道, each with a month's visits uploaded; an
    admin and a coordinator of each township; the hub's clock in the next month."""
    with hub_store(hub_dir) as store:
        console_auth.add_user(store, "admin", PASSWORD, "admin", None, NOW)
        console_auth.add_user(store, "li", PASSWORD, "coordinator", "秣陵街道", NOW)
        console_auth.add_user(store, "wang", PASSWORD, "coordinator", "谷里街道", NOW)
    devices = {
        CLINIC: make_enrolled_device("ml", clinic_code=CLINIC, township="秣陵街道"),
        OTHER: make_enrolled_device("gl", clinic_code=OTHER, township="谷里街道"),
    }
    for device in devices.values():
        device.settle(NOW)
        device.settle(NOW + timedelta(hours=1))
        assert agent.sync_once(device.store, device.identity, device.data_dir, NOW)["ok"]
    with hub_store(hub_dir) as store:
        reconciliation.reconcile_pending(store, NOW)
    hub_clock.now = NEXT_MONTH
    return devices


STATEMENT = f"/console/statements/{CLINIC}/{MONTH}"


def test_the_statement_page_is_printable_with_signature_lines_and_its_totals(county, hub):
    admin = signed_in(hub.app, "admin")
    shown = page(admin, STATEMENT)
    for label in ("经办人", "审核人", "卫生室负责人", "村卫生室医保结算单", "草稿", "第 1 版"):
        assert label in shown
    device = county[CLINIC]
    totals = [r["body"]["result"]["total"] for r in device.records() if r["kind"] == "settlement"]
    assert format_yuan(sum(totals)) in shown
    assert all(r["tx_id"] in shown for r in device.records() if r["kind"] == "settlement")
    assert county[OTHER].records()[-1]["tx_id"] not in shown
    with admin.get("/console/static/console.css") as stylesheet:
        assert "@media print" in stylesheet.get_data(as_text=True)


def test_coordinators_see_their_own_township_only(county, hub):
    li, wang = signed_in(hub.app, "li"), signed_in(hub.app, "wang")
    assert CLINIC in page(li, f"/console/clearing?month={MONTH}")
    listing = page(wang, f"/console/clearing?month={MONTH}&township=秣陵街道")
    assert OTHER in listing and CLINIC not in listing
    assert wang.get(STATEMENT).status_code == 404
    assert wang.get(f"{STATEMENT}/statement.xlsx").status_code == 404
    assert wang.get(f"{STATEMENT}/statement.csv").status_code == 404
    assert li.get(f"/console/statements/NOPE/{MONTH}").status_code == 404
    # A coordinator sees the statement but sets no status.
    form = page(li, STATEMENT)
    assert "登记支付" not in form and "县级确认" not in form
    answer = li.post(
        f"/console/admin/statements/{CLINIC}/{MONTH}/status",
        data={"status": "agreed", "revision": "1", "csrf_token": token(form)},
    )
    assert answer.status_code == 403


def test_an_admin_agrees_and_records_the_payment_which_survives_a_restart(county, hub, hub_dir):
    admin = signed_in(hub.app, "admin")
    action = f"/console/admin/statements/{CLINIC}/{MONTH}/status"
    shown = page(admin, STATEMENT)
    # Without the form's token nothing changes.
    assert admin.post(action, data={"status": "agreed", "revision": "1"}).status_code == 400
    answer = admin.post(
        action, data={"status": "agreed", "revision": "1", "csrf_token": token(shown)}
    )
    assert answer.status_code == 302
    shown = page(admin, STATEMENT)
    assert "已确认" in shown and "登记支付" in shown
    refused = admin.post(
        action,
        data={"status": "paid", "revision": "1", "reference": "", "csrf_token": token(shown)},
    )
    assert refused.status_code == 400 and "请填写支付凭证号" in refused.get_data(as_text=True)
    paid = admin.post(
        action,
        data={
            "status": "paid",
            "revision": "1",
            "reference": "GK-2026-1201",
            "paid_on": "2026-12-01",
            "csrf_token": token(shown),
        },
    )
    assert paid.status_code == 302

    hub.stop()  # a new hub over the same database
    restarted = serve_in_background(hub_dir, config={"CLOCK": lambda: NEXT_MONTH})
    try:
        again = signed_in(restarted.app, "li")
        shown = page(again, STATEMENT)
        listing = page(again, f"/console/clearing?month={MONTH}")
    finally:
        restarted.stop()
    assert "已于 2026-12-01 支付，凭证号 GK-2026-1201" in shown
    assert "已支付" in listing and "GK-2026-1201" in listing
    history = shown[shown.rindex("记录") :]
    for action_name in ("生成", "已确认", "已支付"):
        assert action_name in history


def test_the_clinics_disagreement_is_shown_with_both_sides_figures(county, hub):
    device = county[CLINIC]
    client = client_for(state.enrollment(device.store), device.identity, None)
    statement = client.statement(MONTH, NEXT_MONTH)["statement"]
    row = statement["detail"][0]
    client.report_reconciliation(
        {
            "month": MONTH,
            "revision": statement["revision"],
            "agrees": False,
            "differences": [
                {
                    "tx_id": row["tx_id"],
                    "field": "hifp_pay",
                    "device": row["hifp_pay"] + 150,
                    "county": row["hifp_pay"],
                }
            ],
            "missing_at_county": [],
            "missing_on_device": [],
        },
        NEXT_MONTH,
    )
    li = signed_in(hub.app, "li")
    shown = page(li, STATEMENT)
    assert "与县级不一致" in shown and row["tx_id"] in shown
    assert format_yuan(row["hifp_pay"] + 150) in shown and format_yuan(150) in shown
    assert "不一致" in page(li, f"/console/clearing?month={MONTH}")


def test_the_exports_open_in_a_spreadsheet_with_chinese_headers_and_yuan(county, hub):
    admin = signed_in(hub.app, "admin")
    answer = admin.get(f"{STATEMENT}/statement.xlsx")
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"].endswith(f"statement-{CLINIC}-{MONTH}-r1.xlsx")
    book = openpyxl.load_workbook(io.BytesIO(answer.get_data()))
    rows = list(book["明细"].iter_rows(values_only=True))
    assert rows[0][0] == "交易流水号" and "统筹基金" in rows[0] and len(rows) == 4
    csv_text = admin.get(f"{STATEMENT}/statement.csv").get_data(as_text=True)
    assert csv_text.startswith("\ufeff交易流水号")
    listing = admin.get(f"/console/clearing/{MONTH}.csv").get_data(as_text=True)
    assert CLINIC in listing and OTHER in listing and "乡镇" in listing
