"""The county's clearing statements (`docs/statements.md`), through the real HTTP hub on
each hub store (`hub_backend`): built from the county's recomputation, signed by the
county key, revised by a late upload, agreed and paid by an admin, the device's
reconciliation report kept; all of it surviving a hub restart."""

import csv
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal

import openpyxl
import pytest
from click.testing import CliRunner
from hub_server import serve_in_background
from sync_helpers import NOW, hub_store

from edge import services
from edge.clock import CLINIC_TZ
from edge.console import main
from edge.domain.ledger import new_record
from edge.domain.records import MONEY_FIELDS, payer_amounts
from sync import agent
from sync.agent import state
from sync.agent.jobs import client_for
from sync.hub.bootstrap import open_hub_store
from sync.hub.model import HubError
from sync.hub.services import reconciliation, statements
from sync.hub.services.statement_exports import yuan_text
from sync.protocol import SyncError, iso, load_public_key
from sync.statements import PAYERS, month_of, verify_statement

EMPLOYEE = "32011500000501"
INSULIN_X5 = [("XA10ACE168A001", "5")]  # 21400 fen, class A
MONTH = NOW.strftime("%Y-%m")
CLINIC, OTHER = "320115-001", "320116-001"
# The first day of the next month, when the month's statement can be made.
NEXT_MONTH = datetime(NOW.year + NOW.month // 12, NOW.month % 12 + 1, 2, 9, tzinfo=CLINIC_TZ)
LAST_DAY = NEXT_MONTH - timedelta(days=2)  # the month's last day, 09:00


@pytest.fixture
def clinics(make_enrolled_device):
    return (
        make_enrolled_device("a", clinic_code=CLINIC, township="秣陵街道"),
        make_enrolled_device("b", clinic_code=OTHER, township="谷里街道"),
    )


def upload(hub_dir, device, now) -> None:
    report = agent.sync_once(device.store, device.identity, device.data_dir, now)
    assert report["ok"], report["errors"]
    with hub_store(hub_dir) as store:
        reconciliation.reconcile_pending(store, now)


def client(device, hub_url: str | None = None):
    return client_for(state.enrollment(device.store), device.identity, hub_url)


def a_month(hub_dir, clinic):
    """Three visits and the reversal of one, uploaded and recomputed."""
    first = clinic.settle(NOW, EMPLOYEE, INSULIN_X5)
    second = clinic.settle(NOW + timedelta(hours=1))
    clinic.settle(NOW + timedelta(hours=2))
    services.reverse_settlement(
        clinic.store,
        clinic.identity,
        tx_id=second["tx_id"],
        reason="录入错误",
        operator="doc01",
        now=NOW + timedelta(hours=3),
    )
    upload(hub_dir, clinic, NOW + timedelta(hours=4))
    return first, second


def test_a_statement_is_signed_and_its_total_is_the_sum_of_its_detail(
    clinics, hub, hub_dir, hub_clock
):
    clinic, other = clinics
    first, second = a_month(hub_dir, clinic)
    other.settle(NOW)
    upload(hub_dir, other, NOW)
    hub_clock.now = NOW + timedelta(hours=5)
    # The month is not over: nothing to state yet.
    assert client(clinic).statement(MONTH, hub_clock.now) is None

    hub_clock.now = NEXT_MONTH
    document = client(clinic).statement(MONTH, NEXT_MONTH)
    with hub_store(hub_dir) as store:
        county_key = store.county().public_key
    statement = verify_statement(document, load_public_key(county_key), month=MONTH)
    assert (statement["clinic"], statement["revision"], statement["supersedes"]) == (
        CLINIC,
        1,
        None,
    )
    assert statement["status"] == "draft" and statement["payment"] is None
    assert statement["device_ids"] == [clinic.identity.device_id]
    detail, total = statement["detail"], statement["total"]
    assert [r["kind"] for r in detail] == ["settlement"] * 3 + ["reversal"]
    for payer in PAYERS:
        assert total[payer] == sum(r[payer] for r in detail)
    assert (total["count"], total["settlement_count"], total["reversal_count"]) == (2, 3, 1)
    reversal = detail[-1]
    assert reversal["reversal_of"] == second["tx_id"]
    cancelled = next(r for r in detail if r["tx_id"] == second["tx_id"])
    assert reversal["medfee_sumamt"] == -cancelled["medfee_sumamt"] < 0
    row = next(r for r in detail if r["tx_id"] == first["tx_id"])
    assert row["medfee_sumamt"] == 21400 and row["psn_no"] == EMPLOYEE
    assert row["insutype"] == "employee" and row["med_type"] == "general"
    assert row["device_amounts"] is None and row["county_status"] == "ok"
    # Asked again, nothing changed: the same revision, the same signature.
    assert client(clinic).statement(MONTH, NEXT_MONTH) == document
    # Another clinic's records are not in it.
    assert all(r["device_id"] == clinic.identity.device_id for r in detail)


def test_a_late_upload_makes_a_revision_that_says_what_changed_and_everything_survives_a_restart(
    clinics, hub, hub_dir, hub_clock
):
    clinic, _other = clinics
    a_month(hub_dir, clinic)
    hub_clock.now = NEXT_MONTH
    assert client(clinic).statement(MONTH, NEXT_MONTH)["statement"]["revision"] == 1
    with hub_store(hub_dir) as store:
        statements.set_status(
            store, clinic_code=CLINIC, month=MONTH, revision=1, status="agreed",
            by="admin", now=NEXT_MONTH,
        )  # fmt: skip

    # Offline on the month's last day; uploaded after the first statement.
    late = clinic.settle(LAST_DAY)
    assert month_of(late["created_at"]) == MONTH
    upload(hub_dir, clinic, NEXT_MONTH)
    document = client(clinic).statement(MONTH, NEXT_MONTH)
    statement = document["statement"]
    assert (statement["revision"], statement["supersedes"]) == (2, 1)
    assert statement["status"] == "draft"  # the new figures are agreed afresh
    (change,) = statement["changes"]
    assert (change["tx_id"], change["what"], change["before"]) == (late["tx_id"], "added", None)
    assert change["after"]["medfee_sumamt"] == late["body"]["result"]["total"]

    with hub_store(hub_dir) as store:
        # An admin who looked at revision 1 is told to look at revision 2.
        with pytest.raises(HubError, match="revision 2"):
            statements.set_status(
                store, clinic_code=CLINIC, month=MONTH, revision=1, status="agreed",
                by="admin", now=NEXT_MONTH,
            )  # fmt: skip
        statements.set_status(
            store, clinic_code=CLINIC, month=MONTH, revision=2, status="agreed",
            by="admin", now=NEXT_MONTH,
        )  # fmt: skip
        statements.set_status(
            store, clinic_code=CLINIC, month=MONTH, revision=2, status="paid", by="admin",
            now=NEXT_MONTH, reference="GK-2026-1201", paid_on="2026-12-01",
        )  # fmt: skip
        # two admins at once: the one who comes second changes nothing
        with store.unit_of_work():
            moved = store.set_statement_status(
                CLINIC, MONTH, 2, status="paid", payment_reference="OTHER", paid_on="2026-12-02",
                by="other-admin", at=iso(NEXT_MONTH), expected="agreed",
            )  # fmt: skip
        assert moved is False
        assert store.latest_statement(CLINIC, MONTH).payment_reference == "GK-2026-1201"
    answer = client(clinic).report_reconciliation(
        {
            "month": MONTH,
            "revision": 2,
            "agrees": False,
            "differences": [
                {"tx_id": late["tx_id"], "field": "hifp_pay", "device": 1, "county": 2}
            ],
            "missing_at_county": [],
            "missing_on_device": [],
        },
        NEXT_MONTH,
    )
    assert answer == {"recorded": True}

    hub.stop()  # a new hub process over the same database
    restarted = serve_in_background(hub_dir, config={"CLOCK": hub_clock})
    try:
        again = client(clinic, restarted.url).statement(MONTH, NEXT_MONTH)["statement"]
    finally:
        restarted.stop()
    assert (again["revision"], again["status"]) == (2, "paid")
    assert again["payment"] == {"reference": "GK-2026-1201", "paid_on": "2026-12-01"}
    assert again["changes"] == statement["changes"]
    with hub_store(hub_dir) as store:
        events = [(e.revision, e.action, e.actor) for e in store.statement_events(CLINIC, MONTH)]
        latest = store.latest_statement(CLINIC, MONTH)
        assert store.statement_statuses(MONTH, [CLINIC, OTHER, "NOPE"]) == {CLINIC: "paid"}
        (view,) = statements.reconciliation_view(store, latest)
    assert events == [
        (1, "built", "hub"),
        (1, "agreed", "admin"),
        (2, "revised", "hub"),
        (2, "agreed", "admin"),
        (2, "paid", "admin"),
        (2, "device_disagrees", clinic.identity.device_id),
    ]
    assert view["agrees"] is False and view["current"]
    (difference,) = view["differences"]
    assert (difference["device"], difference["county"]) == (1, 2)
    assert difference["row"]["tx_id"] == late["tx_id"]


def test_a_malformed_report_or_an_unknown_revision_is_refused(clinics, hub, hub_dir, hub_clock):
    clinic, _other = clinics
    hub_clock.now = NEXT_MONTH
    client(clinic).statement(MONTH, NEXT_MONTH)
    report = {"month": MONTH, "revision": 1, "agrees": True}
    with pytest.raises(SyncError) as refused:
        client(clinic).report_reconciliation({**report, "revision": 9}, NEXT_MONTH)
    assert refused.value.code == "NOT_FOUND"
    with pytest.raises(SyncError) as refused:
        client(clinic).report_reconciliation(
            {**report, "missing_on_device": ["x"] * 5001}, NEXT_MONTH
        )
    assert refused.value.code == "BAD_REQUEST"
    for month in ("2026-13", "0000-01", "9999-12"):  # no year 0 or 10000 reaches datetime()
        with pytest.raises(SyncError) as refused:
            client(clinic).statement(month, NEXT_MONTH)
        assert refused.value.code == "BAD_REQUEST"
    # a month before the device was enrolled: nothing is built, nothing kept
    assert client(clinic).statement("2001-01", NEXT_MONTH) is None
    with hub_store(hub_dir) as store:
        assert store.latest_statement(CLINIC, "2001-01") is None


def test_the_commands_show_export_and_set_the_status(clinics, hub, hub_dir, tmp_path, monkeypatch):
    clinic, other = clinics
    a_month(hub_dir, clinic)
    other.settle(NOW)
    upload(hub_dir, other, NOW)
    monkeypatch.setenv("CLINIC_CLOCK", iso(NEXT_MONTH))
    runner = CliRunner()

    def run(*args):
        done = runner.invoke(main, ["hub", *args, "--data-dir", str(hub_dir)])
        assert done.exit_code == 0, done.output
        return done.output

    document = json.loads(run("statement", "--clinic", CLINIC, "--month", MONTH, "--json"))
    statement = document["statement"]
    assert statement["revision"] == 1 and len(statement["detail"]) == 4
    text = run("statement", "--clinic", CLINIC, "--month", MONTH)
    assert "结算单" in text and "草稿" in text and "统筹基金 hifp_pay" in text

    # CSV: Chinese headers, yuan with two decimals, the total row last.
    rows = list(csv.reader(io.StringIO(run(
        "statement", "--clinic", CLINIC, "--month", MONTH, "--csv"
    ).lstrip("\ufeff"))))  # fmt: skip
    assert rows[0][:3] == ["交易流水号", "设备", "序号"] and "统筹基金" in rows[0]
    fund = rows[0].index("统筹基金")
    assert rows[-1][0] == "合计"
    assert rows[-1][fund] == yuan_text(statement["total"]["hifp_pay"])
    assert all(re.fullmatch(r"-?\d+\.\d\d", r[fund]) for r in rows[1:])

    # xlsx, opened back with openpyxl: the detail sums to the total, in yuan.
    path = tmp_path / "statement.xlsx"
    run("statement", "--clinic", CLINIC, "--month", MONTH, "--xlsx", "-o", str(path))
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["汇总", "明细", "更正"]
    detail = list(book["明细"].iter_rows(values_only=True))
    header, body, total_row = detail[0], detail[1:-1], detail[-1]
    column = header.index("医疗费总额")
    assert len(body) == 4 and total_row[0] == "合计"
    assert sum(Decimal(str(r[column])) for r in body) == Decimal(str(total_row[column]))
    assert Decimal(str(total_row[column])) * 100 == statement["total"]["medfee_sumamt"]
    assert book["明细"].cell(2, column + 1).number_format == "#,##0.00"
    summary = {r[0]: r[1] for r in book["汇总"].iter_rows(values_only=True) if r[0]}
    assert summary["卫生室"] == CLINIC and summary["状态"] == "草稿"

    refused = runner.invoke(
        main, ["hub", "statement-status", "--data-dir", str(hub_dir), "--clinic", CLINIC,
               "--month", MONTH, "--paid", "--by", "admin"],
    )  # fmt: skip
    assert refused.exit_code == 1 and "须先确认" in refused.output
    run("statement-status", "--clinic", CLINIC, "--month", MONTH, "--agreed", "--by", "admin")
    paid = json.loads(run(
        "statement-status", "--clinic", CLINIC, "--month", MONTH, "--paid", "--by", "admin",
        "--reference", "=HYPERLINK(1)", "--paid-on", "2026-12-01", "--json",
    ))  # fmt: skip
    assert (paid["status"], paid["paid_on"], paid["by"]) == ("paid", "2026-12-01", "admin")

    clearing = json.loads(run("clearing", "--month", MONTH, "--json"))
    # By township, then clinic.
    assert [(r["township"], r["clinic_code"], r["status"]) for r in clearing] == sorted(
        [("秣陵街道", CLINIC, "paid"), ("谷里街道", OTHER, "draft")]
    )
    mine = next(r for r in clearing if r["clinic_code"] == CLINIC)
    assert mine["total"] == statement["total"] and mine["devices_agree"] is None
    only = json.loads(run("clearing", "--month", MONTH, "--township", "谷里街道", "--json"))
    assert [r["clinic_code"] for r in only] == [OTHER]
    # A formula typed as a payment reference stays text in the exports.
    listing = run("clearing", "--month", MONTH, "--csv")
    assert "'=HYPERLINK(1)" in listing
    run("statement", "--clinic", CLINIC, "--month", MONTH, "--xlsx", "-o", str(path))
    summary = {
        r[0]: r[1] for r in openpyxl.load_workbook(path)["汇总"].iter_rows(values_only=True) if r[0]
    }
    assert summary["支付凭证号"] == "'=HYPERLINK(1)" and summary["状态"] == "已支付"

    monkeypatch.setenv("CLINIC_CLOCK", iso(NOW))
    early = runner.invoke(main, ["hub", "clearing", "--data-dir", str(hub_dir), "--month", MONTH])
    assert early.exit_code == 1 and "尚未结束" in early.output


def test_the_countys_recomputation_differences_are_in_the_statement(
    clinics, hub, hub_dir, hub_clock
):
    clinic, other = clinics
    # The same person at both clinics while offline: each applied the deductible.
    clinic.settle(NOW, EMPLOYEE, INSULIN_X5)
    second = other.settle(NOW + timedelta(hours=1), EMPLOYEE, INSULIN_X5)
    upload(hub_dir, clinic, NOW + timedelta(hours=2))
    upload(hub_dir, other, NOW + timedelta(hours=2))
    hub_clock.now = NEXT_MONTH
    statement = client(other).statement(MONTH, NEXT_MONTH)["statement"]
    (row,) = statement["detail"]
    assert row["tx_id"] == second["tx_id"] and row["county_status"] == "differs"
    assert (row["hifp_pay"], row["device_amounts"]["hifp_pay"]) == (6400, 0)
    assert statement["total"]["hifp_pay"] == 6400  # the county pays by its own figures
    assert row["medfee_sumamt"] == row["device_amounts"]["medfee_sumamt"] == 21400
    with hub_store(hub_dir) as store:
        (listed,) = statements.clearing(store, MONTH, NEXT_MONTH, "谷里街道")
    assert listed["differing"] == 1


def test_a_reversal_counts_in_the_month_it_was_made(clinics, hub, hub_dir, hub_clock):
    clinic, _other = clinics
    settled = clinic.settle(NOW, EMPLOYEE, INSULIN_X5)
    next_month_day = NEXT_MONTH - timedelta(days=1) + timedelta(hours=1)  # the 1st, 10:00
    services.reverse_settlement(
        clinic.store,
        clinic.identity,
        tx_id=settled["tx_id"],
        reason="录入错误",
        operator="doc01",
        now=next_month_day,
    )
    upload(hub_dir, clinic, next_month_day)
    following = month_of(iso(next_month_day))
    hub_clock.now = datetime(
        next_month_day.year + next_month_day.month // 12,
        next_month_day.month % 12 + 1,
        2,
        tzinfo=CLINIC_TZ,
    )
    november = client(clinic).statement(MONTH, hub_clock.now)["statement"]
    december = client(clinic).statement(following, hub_clock.now)["statement"]
    assert [r["kind"] for r in november["detail"]] == ["settlement"]
    assert november["total"]["medfee_sumamt"] == 21400
    (reversal,) = december["detail"]
    assert (reversal["kind"], reversal["reversal_of"]) == ("reversal", settled["tx_id"])
    assert december["total"]["medfee_sumamt"] == -21400 and december["total"]["count"] == -1


def append_close(device, kind: str, body: dict, at: datetime) -> dict:
    """A month or year close record, signed and chained as the device makes them (its
    body as the month-close work shapes it: `docs/ledger.md`)."""
    store, identity = device.store, device.identity
    with store.write_transaction():
        head = store.ledger_head()
        record = new_record(
            device_id=identity.device_id,
            seq=head.seq + 1,
            kind=kind,
            tx_id=f"{kind}-{head.seq + 1}",
            created_at=at.isoformat(),
            prev_hash=head.hash,
            body=body,
            private_key=identity.private_key,
        )
        store.append_record(record, day=at.date().isoformat())
    return record


def test_month_and_year_closes_are_stored_and_never_stated_as_settlements(
    clinics, hub, hub_dir, hub_clock
):
    clinic, _other = clinics
    settled = clinic.settle(NOW, EMPLOYEE, INSULIN_X5)
    amounts = payer_amounts(settled["body"]["result"])
    totals = {"count": 1, **amounts}
    period = {
        "from_seq": settled["seq"],
        "to_seq": settled["seq"],
        "settlements": totals,
        "reversals": {"count": 0, **dict.fromkeys(MONEY_FIELDS, 0)},
        "net": amounts,
        "by_insurance": {"employee": totals},
        "by_visit_type": {"general": totals},
        "needs_review": 0,
        "operator": "doc01",
    }
    closes = {"count": 0, "first_seq": None, "last_seq": None}
    month_close = append_close(
        clinic, "monthly_close", {"month": MONTH, "daily_closes": closes, **period}, NEXT_MONTH
    )
    append_close(
        clinic,
        "yearly_close",
        {
            "year": MONTH[:4],
            "monthly_closes": {"count": 1, "first_seq": month_close["seq"],
                               "last_seq": month_close["seq"]},
            "months": [MONTH],
            **period,
        },
        NEXT_MONTH,
    )  # fmt: skip
    hub_clock.now = NEXT_MONTH
    report = agent.sync_once(clinic.store, clinic.identity, clinic.data_dir, NEXT_MONTH)
    assert report["ok"], report["errors"]
    with hub_store(hub_dir) as store:
        counts = reconciliation.reconcile_pending(store, NEXT_MONTH)
        kinds = [r["kind"] for r in store.records(clinic.identity.device_id)]
        assert store.malformed_records(clinic.identity.device_id) == {}
        assert store.reconciliation_items() == []
    assert kinds[-2:] == ["monthly_close", "yearly_close"]
    assert counts.get("differs", 0) == counts.get("failed", 0) == 0
    statement = client(clinic).statement(MONTH, NEXT_MONTH)["statement"]
    assert [r["tx_id"] for r in statement["detail"]] == [settled["tx_id"]]


def test_statements_built_at_once_by_two_workers_are_one_revision(clinics, hub, hub_dir, hub_clock):
    clinic, _other = clinics
    clinic.settle(NOW)
    upload(hub_dir, clinic, NOW)
    stores = [open_hub_store(hub_dir) for _ in range(4)]
    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            built = list(
                pool.map(lambda s: statements.refresh(s, CLINIC, MONTH, NEXT_MONTH), stores)
            )
    finally:
        for store in stores:
            store.close()
    assert {(s.revision, s.built_at) for s in built} == {(1, iso(NEXT_MONTH))}
    with hub_store(hub_dir) as store:
        assert [e.action for e in store.statement_events(CLINIC, MONTH)] == ["built"]


def test_the_same_report_sent_again_adds_no_event(clinics, hub, hub_dir, hub_clock):
    """A device retrying its report does not grow the statement's history without end."""
    clinic, _other = clinics
    hub_clock.now = NEXT_MONTH
    client(clinic).statement(MONTH, NEXT_MONTH)
    report = {"month": MONTH, "revision": 1, "agrees": True}
    for _ in range(3):
        client(clinic).report_reconciliation(report, NEXT_MONTH)
    client(clinic).report_reconciliation({**report, "agrees": False}, NEXT_MONTH)
    with hub_store(hub_dir) as store:
        actions = [e.action for e in store.statement_events(CLINIC, MONTH)]
    assert actions.count("device_agrees") == 1 and actions.count("device_disagrees") == 1
