"""The console's month reports on the demo month (sync/demo_month.py: three clinics' real
terminals, a month of visits with reversals, an offline week and a late upload, all
through the real sync path): the report's figures are the sums of the raw settlements and
reversals, per payer in integer fen, by clinic, township and day; coordinators see their
township only; the CSV and .xlsx hold the page's figures. A record belongs to the
China-time month of its `created_at`; a reversal counts in the month it was made. On each
hub store (`hub_backend`)."""

import csv
import io
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from clock import NOW, FakeClock
from openpyxl import load_workbook
from sync_helpers import enroll, hub_store

from edge import services
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.console import main
from edge.domain.records import NATIONAL_NAMES, payer_amounts
from sync import agent
from sync.demo_month import CLINICS, LATE_CLINIC, make_demo_month, previous_month
from sync.hub import console_auth
from sync.hub.app import create_app
from sync.hub.services import month_reports, reconciliation
from sync.hub.services.month_reports import PAYERS

CHINA = ZoneInfo("Asia/Shanghai")
MONTH = previous_month(NOW)
TOWNSHIP = CLINICS[0][1]  # the demo coordinator's


def national(amounts: dict) -> dict:
    return {NATIONAL_NAMES[name]: value for name, value in payer_amounts(amounts).items()}


def device_ledger_sums(data_dir: Path, month: str) -> tuple[Counter, dict]:
    """Straight from a terminal's own ledger: (counts, {payer: net fen}) of the month's
    settlements and reversals (China-time month of created_at)."""
    counts, net = Counter(), defaultdict(int)
    store = SqliteDeviceStore.open(data_dir)
    try:
        for record in store.records():
            at = datetime.fromisoformat(record["created_at"]).astimezone(CHINA)
            if at.strftime("%Y-%m") != month or record["kind"] not in ("settlement", "reversal"):
                continue
            counts[record["kind"]] += 1
            if record["kind"] == "settlement":
                amounts, sign = national(record["body"]["result"]), 1
            else:
                amounts, sign = national(record["body"]["amounts"]), -1
            for payer in PAYERS:
                net[payer] += sign * amounts[payer]
    finally:
        store.close()
    return counts, dict(net)


@pytest.fixture
def demo_month(tmp_path, hub_backend) -> dict:
    return make_demo_month(tmp_path / "demo", MONTH, visits_per_day=2)


def console(hub_dir: str, username: str, password: str):
    app = create_app({"HUB_DATA_DIR": hub_dir, "CLOCK": FakeClock(NOW), "WTF_CSRF_ENABLED": False})
    client = app.test_client()
    answer = client.post("/console/login", data={"username": username, "password": password})
    assert answer.status_code == 302
    return client


def test_the_demo_month_report_is_the_sum_of_the_raw_records_and_coordinators_see_their_own(
    demo_month,
):
    made = {c["clinic_code"]: c for c in demo_month["clinics"]}
    assert all(c["settlements"] > 20 and c["reversals"] >= 3 for c in made.values())
    late = demo_month["clinics"][LATE_CLINIC]
    assert late["late_from_seq"] is not None  # its last days came after the month closed
    with hub_store(Path(demo_month["hub_dir"])) as store:
        held = {r["seq"] for r in store.records(late["device_id"])}
        assert late["late_from_seq"] in held
        report = month_reports.month_report(store, store.slots(), MONTH)

    expected_total, expected_counts = defaultdict(int), Counter()
    by_clinic = {row.clinic_code: row for row in report.clinics}
    for code, clinic in made.items():
        counts, net = device_ledger_sums(Path(clinic["data_dir"]), MONTH)
        figures = by_clinic[code].figures
        assert (figures.settlements, figures.reversals) == (
            counts["settlement"],
            counts["reversal"],
        )
        assert figures.net == net  # every payer, integer fen
        assert all(type(v) is int for v in figures.net.values())
        expected_counts.update(counts)
        for payer in PAYERS:
            expected_total[payer] += net[payer]
    assert report.total.net == dict(expected_total)
    assert report.total.settlements == expected_counts["settlement"]
    assert report.total.visits == expected_counts["settlement"] - expected_counts["reversal"]
    # The days, the townships and the last month of the year's series add up to the month.
    for payer in PAYERS:
        assert sum(f.net[payer] for _, f in report.days) == expected_total[payer]
        assert sum(f.net[payer] for f in report.townships.values()) == expected_total[payer]
    assert report.months[-1] == (MONTH, report.total)
    assert report.total.differences == 0 and report.total.pending == 0  # the county agrees
    assert report.total.needs_review > 0  # the offline week's visits
    assert report.total.average == month_reports.round_half_up(
        expected_total["medfee_sumamt"], report.total.visits
    )
    assert sum(item.amount for item in report.items) == expected_total["medfee_sumamt"]
    assert {row.clearing for row in report.clinics} == {month_reports.NO_STATEMENT}

    # The console: the county's administrator sees every clinic, the coordinator of
    # 秣陵街道 only its two, whatever township the address asks for.
    admin = console(demo_month["hub_dir"], "county-admin", "demo-admin-2026")
    page = admin.get(f"/console/reports?month={MONTH}").get_data(as_text=True)
    assert all(code in page for code in made)
    assert f'id="total-hifp_pay" data-fen="{expected_total["hifp_pay"]}"' in page
    assert page.count("<svg") == 3 and "<script" not in page
    coordinator = console(demo_month["hub_dir"], "molin-coord", "demo-coord-2026")
    for path in (
        f"/console/reports?month={MONTH}",
        f"/console/reports?month={MONTH}&township=湖熟街道",
        f"/console/reports?month={MONTH}&clinic={CLINICS[-1][0]}",
    ):
        page = coordinator.get(path).get_data(as_text=True)
        page = page[page.index('<table id="clinics">') :]  # the address itself is echoed above
        page = page[: page.index("</table>")]
        mine = [code for code, township in CLINICS if township == TOWNSHIP]
        others = [code for code, township in CLINICS if township != TOWNSHIP]
        assert all(code in page for code in mine) and not any(code in page for code in others)
    page = coordinator.get(f"/console/reports?month={MONTH}").get_data(as_text=True)
    theirs = sum(by_clinic[code].figures.net["hifp_pay"] for code in mine)
    assert theirs < expected_total["hifp_pay"]
    assert f'id="total-hifp_pay" data-fen="{theirs}"' in page
    answer = coordinator.get(f"/console/reports/clinics.csv?month={MONTH}&township=湖熟街道")
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert [row[2] for row in rows[1:]] == mine

    # The exports: yuan with two decimals under Chinese headers, the same figures.
    answer = admin.get(f"/console/reports/townships.csv?month={MONTH}")
    assert answer.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    header, total_row = rows[0], rows[-1]
    assert header[:3] == ["月份", "乡镇", "结算笔数"] and "统筹基金 hifp_pay" in header
    assert total_row[1] == "合计"
    for payer in PAYERS:
        cell = total_row[header.index(f"{month_reports.PAYER_HEADERS[payer]} {payer}")]
        assert cell == month_reports.yuan_cell(expected_total[payer])
        assert int(Decimal(cell) * 100) == expected_total[payer]
    answer = admin.get(f"/console/reports/report.xlsx?month={MONTH}")
    assert answer.mimetype.endswith("spreadsheetml.sheet")
    book = load_workbook(io.BytesIO(answer.data))
    assert book.sheetnames == ["卫生室", "乡镇", "每日", "项目"]
    sheet = book["乡镇"]
    header = [cell.value for cell in sheet[1]]
    last = [cell for cell in sheet[sheet.max_row]]
    assert last[1].value == "合计"
    fund = last[header.index("统筹基金 hifp_pay")]
    assert fund.number_format == "#,##0.00"
    assert round(Decimal(str(fund.value)) * 100) == expected_total["hifp_pay"]
    # The command line gives the same tables.
    hub_dir = demo_month["hub_dir"]
    run = CliRunner().invoke(
        main,
        ["hub", "month-report", "--data-dir", hub_dir, "--month", MONTH, "--table", "townships"],
    )
    assert run.exit_code == 0, run.output
    assert list(csv.reader(io.StringIO(run.output)))[-1] == total_row
    xlsx = Path(hub_dir).parent / "report.xlsx"
    run = CliRunner().invoke(
        main, ["hub", "month-report", "--data-dir", hub_dir, "--month", MONTH, "--xlsx", str(xlsx)]
    )
    assert run.exit_code == 0, run.output
    assert load_workbook(xlsx).sheetnames == book.sheetnames
    clinics_sheet = book["卫生室"]
    assert sorted(row[2] for row in clinics_sheet.iter_rows(min_row=2, values_only=True)) == sorted(
        made
    )


def test_a_record_belongs_to_its_china_time_month_and_a_reversal_to_the_month_it_was_made(
    hub, hub_dir, hub_clock, make_device
):
    """A settlement at 23:50 China time on the last day of a month (15:50 UTC) is that
    month's; its reversal a few minutes later, in the next month, is netted there."""
    device = make_device("device")
    enroll(device, hub_dir, hub.url, NOW, clinic_code="ML-09", township=TOWNSHIP)
    first = (NOW.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
    evening = first - timedelta(minutes=10)
    settled = device.settle(evening.astimezone(ZoneInfo("UTC")))
    services.reverse_settlement(device.store, device.identity, tx_id=settled["tx_id"],
                                reason="wrong person", operator="doc01",
                                now=first + timedelta(minutes=1))  # fmt: skip
    hub_clock.now = first + timedelta(minutes=5)
    assert agent.sync_once(device.store, device.identity, device.data_dir, hub_clock.now)["ok"]
    fund = national(settled["body"]["result"])["hifp_pay"]
    assert fund > 0
    with hub_store(hub_dir) as store:
        slots = store.slots(TOWNSHIP)
        before = month_reports.month_report(store, slots, evening.strftime("%Y-%m"))
        after = month_reports.month_report(store, slots, first.strftime("%Y-%m"))
    assert (before.total.settlements, before.total.reversals) == (1, 0)
    assert before.total.net["hifp_pay"] == fund
    assert before.days[-1][1].net["hifp_pay"] == fund  # the last day of that month
    assert (after.total.settlements, after.total.reversals) == (0, 1)
    assert after.total.net["hifp_pay"] == -fund
    assert after.months[-2][1].net["hifp_pay"] == fund  # the year's series has both
    assert after.total.visits == -1 and after.total.average == 0


def test_amounts_are_the_county_s_and_a_differing_or_unrecomputed_settlement_is_counted(
    hub, hub_dir, make_device
):
    """Where the county's recomputation differs, the report carries the county's figures
    (a reversal too: the county's figures of what it reverses) and counts the difference;
    a settlement not yet recomputed carries the device's and is counted as pending."""
    device = make_device("device")
    enroll(device, hub_dir, hub.url, NOW, clinic_code="ML-07", township=TOWNSHIP)
    first, second = device.settle(NOW), device.settle(NOW + timedelta(minutes=5))
    services.reverse_settlement(device.store, device.identity, tx_id=second["tx_id"],
                                reason="wrong person", operator="doc01",
                                now=NOW + timedelta(minutes=9))  # fmt: skip
    assert agent.sync_once(device.store, device.identity, device.data_dir, NOW)["ok"]
    month = NOW.strftime("%Y-%m")
    with hub_store(hub_dir) as store:
        pending = month_reports.month_report(store, store.slots(), month)
        reconciliation.reconcile_pending(store, NOW)
        with store.unit_of_work():
            # The county pays one fen less from the fund on both, and the cash one more.
            for record in (first, second):
                status, result = store.recomputation_of(record["device_id"], record["tx_id"])
                assert status == "ok"
                altered = {**result, "fund": result["fund"] - 1, "cash": result["cash"] + 1}
                store.save_recomputation(
                    record["device_id"], record["seq"], record["tx_id"], "differs", altered
                )
        county = month_reports.month_report(store, store.slots(), month)
    device_fund = national(first["body"]["result"])["hifp_pay"]
    assert (pending.total.pending, pending.total.differences) == (2, 0)
    assert pending.total.net["hifp_pay"] == device_fund  # the second reversed, netted
    assert (county.total.pending, county.total.differences) == (0, 2)
    assert county.total.net["hifp_pay"] == device_fund - 1
    assert county.total.net["psn_cash_pay"] == national(first["body"]["result"])["psn_cash_pay"] + 1
    (row,) = county.clinics
    assert row.figures.differences == 2 and row.clearing == month_reports.NO_STATEMENT


def test_the_demo_month_command_wants_a_month_that_is_over_and_a_new_folder(tmp_path):
    env = {"CLINIC_CLOCK": NOW.isoformat()}
    this_month = NOW.strftime("%Y-%m")
    run = CliRunner().invoke(
        main, ["demo-month", "--data-dir", str(tmp_path / "new"), "--month", this_month], env=env
    )
    assert run.exit_code == 2 and "is not over yet" in run.output
    run = CliRunner().invoke(main, ["demo-month", "--month", "2026-13"], env=env)
    assert run.exit_code == 2 and "YYYY-MM" in run.output
    (tmp_path / "used" / "something").mkdir(parents=True)
    run = CliRunner().invoke(main, ["demo-month", "--data-dir", str(tmp_path / "used")], env=env)
    assert run.exit_code == 1 and "is not empty" in run.output
    assert not (tmp_path / "new").exists()


def test_the_report_page_in_english_a_bad_month_and_exports_that_need_signing_in(hub, hub_dir):
    with hub_store(hub_dir) as store:
        console_auth.add_user(store, "admin", "correct horse 42", "admin", None, NOW)
    anonymous = hub.app.test_client()
    for path in ("/console/reports", "/console/reports/days.csv", "/console/reports/report.xlsx"):
        answer = anonymous.get(path)
        assert answer.status_code == 302 and "/console/login" in answer.headers["Location"]
    client = console(str(hub_dir), "admin", "correct horse 42")
    this_month = NOW.strftime("%Y-%m")
    for month in ("2026-13", "x", "0000-01", ""):
        page = client.get(f"/console/reports?month={month}").get_data(as_text=True)
        assert f'value="{this_month}"' in page  # the hub's month, China time
    assert client.get("/console/reports/secrets.csv").status_code == 404
    client.post("/console/lang", data={"lang": "en"})
    page = client.get(f"/console/reports?month={this_month}").get_data(as_text=True)
    assert "Fund spending by day" in page and "Month reports" in page
    assert "统筹基金支出" not in page
