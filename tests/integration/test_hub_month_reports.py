"""The console's month reports on the demo month (sync/demo_month.py: three clinics' real
terminals, a month of visits with reversals, an offline week and a late upload, all
through the real sync path): the report's figures are the sums of the raw settlements and
reversals, per payer in integer fen, by clinic, township and day; coordinators see their
township only; the CSV and .xlsx hold the page's figures. A record belongs to the
China-time month of its `created_at`; a reversal counts in the month it was made. On each
hub store (`hub_backend`). The demo month runs with its month closes, statements and the
devices' checks wired in (`run_demo_month`): the statements' totals are the report's
clinic rows, every device agrees, and a settlement altered on the county's side is named
to the clinic and shown to the coordinator with both figures."""

import csv
import io
import json
import re
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
from edge.domain.money import format_yuan
from edge.domain.records import MONEY_FIELDS, NATIONAL_NAMES, payer_amounts
from sync import agent
from sync.agent.statements import difference_names
from sync.cli import demo_month_lines
from sync.demo_month import CLINICS, LATE_CLINIC, previous_month, run_demo_month
from sync.hub import console_auth
from sync.hub.app import create_app
from sync.hub.services import month_reports, reconciliation, statements
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
    return run_demo_month(tmp_path / "demo", MONTH, visits_per_day=2)


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
    assert {row.clearing for row in report.clinics} == {"draft"}  # stated, not yet agreed

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


def month_tx_ids(data_dir: str, from_seq: int = 1) -> set[str]:
    """The tx_ids of a terminal's settlements and reversals of the month, from a seq on."""
    store = SqliteDeviceStore.open(Path(data_dir))
    try:
        return {
            r["tx_id"] for r in store.records()
            if r["seq"] >= from_seq and r["kind"] in ("settlement", "reversal")
            and datetime.fromisoformat(r["created_at"]).astimezone(CHINA).strftime("%Y-%m") == MONTH
        }  # fmt: skip
    finally:
        store.close()


def test_the_demo_month_s_closes_statements_and_checks_agree_and_match_the_report(demo_month):
    """Each terminal closed its month and uploaded the close; the county's statements are
    the report's clinic rows, per payer in integer fen, and the devices' month closes;
    the late upload made the third clinic's revision 2, naming exactly the late records;
    every device checked its statement, agrees, and told the hub so."""
    assert demo_month["altered"] is None
    with hub_store(Path(demo_month["hub_dir"])) as store:
        report = month_reports.month_report(store, store.slots(), MONTH)
        rows = {row.clinic_code: row for row in report.clinics}
        clearing = {r["clinic_code"]: r for r in statements.clearing(store, MONTH, NOW)}
        held = {
            c["clinic_code"]: Counter(r["kind"] for r in store.records(c["device_id"]))
            for c in demo_month["clinics"]
        }
        first_revisions = {
            c["clinic_code"]: store.statement_revision(c["clinic_code"], MONTH, 1)
            for c in demo_month["clinics"]
        }
    summed = dict.fromkeys(PAYERS, 0)
    for index, clinic in enumerate(demo_month["clinics"]):
        code, statement = clinic["clinic_code"], clinic["statement"]
        total, figures = statement["total"], rows[code].figures
        assert {payer: total[payer] for payer in PAYERS} == figures.net
        assert all(type(total[payer]) is int for payer in PAYERS)
        assert (total["settlement_count"], total["reversal_count"]) == (
            figures.settlements,
            figures.reversals,
        )
        close = clinic["monthly_close"]["net"]
        assert {NATIONAL_NAMES[n]: close[n] for n in MONEY_FIELDS} == {p: total[p] for p in PAYERS}
        assert held[code]["monthly_close"] == 1  # uploaded, kept, never stated as a settlement
        assert clinic["agrees"] and clinic["reported"]
        assert clinic["differences"] == clinic["missing_at_county"] == []
        assert clearing[code]["devices_agree"] is True and clearing[code]["status"] == "draft"
        assert rows[code].clearing == "draft" and rows[code].clinic_check == "agrees"
        for payer in PAYERS:
            summed[payer] += total[payer]
        if index == LATE_CLINIC:
            late = month_tx_ids(clinic["data_dir"], clinic["late_from_seq"])
            assert late and statement["revisions"] == [1, 2]
            assert {c["tx_id"] for c in statement["changes"]} == late
            assert {c["what"] for c in statement["changes"]} == {"added"}
            stated_first = {r["tx_id"] for r in first_revisions[code].content["detail"]}
            assert not stated_first & late
            assert stated_first | late == month_tx_ids(clinic["data_dir"])
        else:
            assert statement["revisions"] == [1, 1] and statement["changes"] == []
    assert summed == report.total.net


def test_a_settlement_altered_at_the_county_is_named_to_the_clinic_and_to_the_coordinator(
    tmp_path, monkeypatch
):
    """`clinic demo-month --alter-one`: the county's recomputation of one settlement of
    the first clinic pays 1 yuan less from the fund; that clinic's check disagrees and
    names the settlement with both figures, the others agree, and the township's
    coordinator sees the disagreement and both figures on the statement page (and not
    the other township's statement)."""
    monkeypatch.delenv("CLINIC_HUB_DATABASE", raising=False)  # the hub's own SQLite
    base = tmp_path / "demo"
    run = CliRunner().invoke(
        main,
        ["demo-month", "--data-dir", str(base), "--month", MONTH, "--visits-per-day", "1",
         "--alter-one", "--json"],
        env={"CLINIC_CLOCK": NOW.isoformat()},
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    made = json.loads(run.stdout)
    altered, (first, *others) = made["altered"], made["clinics"]
    tx_id, fund, cash = altered["tx_id"], altered["hifp_pay"], altered["psn_cash_pay"]
    assert altered["clinic_code"] == first["clinic_code"] == CLINICS[0][0]
    assert fund["county"] == fund["device"] - 100 and cash["county"] == cash["device"] + 100
    assert not first["agrees"] and first["reported"]
    assert {(d["tx_id"], d["field"], d["device"], d["county"]) for d in first["differences"]} == {
        (tx_id, "hifp_pay", fund["device"], fund["county"]),
        (tx_id, "psn_cash_pay", cash["device"], cash["county"]),
    }
    assert first["statement"]["total"]["hifp_pay"] == first["monthly_close"]["net"]["fund"] - 100
    assert all(c["agrees"] and not c["differences"] for c in others)
    # What the command prints without --json, in English and Chinese.
    lines = demo_month_lines(made)
    (line,) = [line for line in lines if line.startswith(f"  {first['clinic_code']} ")]
    assert "NO 不一致" in line and "revision 第 1 版" in line
    assert f"fund 统筹基金 {format_yuan(first['statement']['total']['hifp_pay'])}" in line
    assert sum("yes 一致" in line for line in lines) == 2
    differs = f"    differs 不一致 {tx_id} hifp_pay: clinic 卫生室 {format_yuan(fund['device'])},"
    assert any(line.startswith(differs) for line in lines)
    late = made["clinics"][LATE_CLINIC]["statement"]["changes"]
    assert any(f"{late[0]['tx_id']} (added 新增)" in line for line in lines)

    # The clinic: the check kept on its terminal (its month page and `clinic statement`).
    store = SqliteDeviceStore.open(Path(first["data_dir"]))
    try:
        check = store.statement_check(MONTH)
        names = difference_names(store, check["comparison"])
    finally:
        store.close()
    assert check["comparison"]["agrees"] is False and check["reported_at"] is not None
    assert {d["tx_id"] for d in check["comparison"]["differences"]} == {tx_id}
    assert names[tx_id]  # the patient, by name

    # The coordinator of 秣陵街道: the disagreement and both figures.
    coordinator = console(made["hub_dir"], "molin-coord", "demo-coord-2026")
    page = coordinator.get(f"/console/clearing?month={MONTH}").get_data(as_text=True)
    assert "不一致" in page
    page = coordinator.get(f"/console/statements/{first['clinic_code']}/{MONTH}")
    page = page.get_data(as_text=True)
    reconciliation_part = page[page.index("与县级不一致") :]
    assert tx_id in reconciliation_part
    assert format_yuan(fund["device"]) in reconciliation_part
    assert format_yuan(fund["county"]) in reconciliation_part
    assert "卫生室金额" in page and "县级金额" in page
    other_township = made["clinics"][-1]["clinic_code"]
    assert coordinator.get(f"/console/statements/{other_township}/{MONTH}").status_code == 404
    # The month report says which clinic disagrees, on the page and in the export.
    page = coordinator.get(f"/console/reports?month={MONTH}").get_data(as_text=True)
    checks = re.findall(r'<td class="check[^"]*" data-check="(\w+)">', page)
    assert checks[0] == "disagrees" and set(checks[1:]) == {"agrees"}
    answer = coordinator.get(f"/console/reports/clinics.csv?month={MONTH}")
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    checked = {row[2]: row[rows[0].index("卫生室核对")] for row in rows[1:]}
    assert checked[first["clinic_code"]] == "不一致"
    assert set(checked.values()) == {"不一致", "一致"}


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
