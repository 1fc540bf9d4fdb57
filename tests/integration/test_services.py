"""Settle, reverse and close the day on a real device store, with a fixed clock (the
use cases of edge/services.py, one class each, past 500 lines because there are many)."""

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from clock import NOW, TODAY

from edge import demo, services
from edge.adapters.identity import KEY_FILE, IdentityError
from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore, connect, migrations
from edge.domain import records
from edge.domain.documents import visit_from_json
from edge.domain.model import Rejection
from edge.domain.records import MONEY_FIELDS

RESIDENT = "32011500000001"
POOR = "32011500000005"  # extreme poverty: assistance pays the policy self-pay
EMPLOYEE_RICH = "32011500000502"  # account balance 230000
CLINIC = Path(sys.executable).with_name("clinic")


def visit(*lines, visit_type="general", diagnoses=("J06.900",), day=TODAY, account=False):
    return visit_from_json(
        {
            "date": day.isoformat(),
            "visit_type": visit_type,
            "diagnoses": list(diagnoses),
            "lines": [{"code": c, "quantity": q} for c, q in lines or [("XJ01CAA040A001", "2")]],
            "use_personal_account": account,
        }
    )


@pytest.fixture
def device(demo_store, data_dir):
    identity = services.init_device(demo_store, data_dir, NOW - timedelta(hours=1))
    return demo_store, identity


def settle(device, insured_id=RESIDENT, the_visit=None, now=NOW, operator="doc01"):
    store, identity = device
    return services.settle_visit(
        store,
        identity,
        insured_id=insured_id,
        visit=the_visit or visit(),
        operator=operator,
        now=now,
    )


def ledger_size(store) -> int:
    return store.db.execute("SELECT count(*) FROM ledger").fetchone()[0]


class TestIdentity:
    def test_the_private_key_file_is_readable_only_by_its_owner(self, device, data_dir):
        assert oct((data_dir / KEY_FILE).stat().st_mode & 0o777) == "0o600"
        key_text = (data_dir / KEY_FILE).read_bytes()
        assert key_text not in (data_dir / "clinic.db").read_bytes()

    def test_a_second_identity_is_refused(self, device, data_dir):
        with pytest.raises(IdentityError, match="already"):
            services.init_device(device[0], data_dir, NOW)

    def test_a_missing_key_stops_settlement_with_advice(self, device, data_dir):
        (data_dir / KEY_FILE).unlink()
        with pytest.raises(IdentityError, match="missing"):
            services.load_identity(device[0], data_dir)

    def test_a_key_readable_by_others_is_refused(self, device, data_dir):
        os.chmod(data_dir / KEY_FILE, 0o644)
        with pytest.raises(IdentityError, match="chmod 600"):
            services.load_identity(device[0], data_dir)

    def test_a_key_from_another_device_is_refused(self, device, data_dir, tmp_path):
        other = tmp_path / "other"
        other.mkdir()
        other_store = SqliteDeviceStore.open(other, create=True)
        services.init_device(other_store, other, NOW)
        other_store.close()
        (data_dir / KEY_FILE).write_bytes((other / KEY_FILE).read_bytes())
        with pytest.raises(IdentityError, match="does not belong"):
            services.load_identity(device[0], data_dir)

    def test_a_damaged_key_is_refused(self, device, data_dir):
        (data_dir / KEY_FILE).write_bytes(b"not a key")
        with pytest.raises(IdentityError, match="damaged"):
            services.load_identity(device[0], data_dir)


class TestSettle:
    def test_a_settlement_is_one_signed_record_with_accumulators_and_outbox(self, device):
        store, _ = device
        before = store.accumulators(POOR, TODAY, "general")
        recorded = settle(device, POOR)
        record = recorded.record
        assert (record["seq"], record["kind"], record["created_at"]) == (
            1,
            "settlement",
            "2026-11-22T09:30:00+08:00",
        )
        body = record["body"]
        assert body["insured_id"] == POOR and body["operator"] == "doc01"
        assert body["catalog_version"] == demo.DEMO_CATALOG_VERSION
        assert body["policy_version"] == "2026.2"
        assert body["visit"]["lines"][0] == {
            "code": "XJ01CAA040A001",
            "name": "阿莫西林胶囊",
            "price": "6.80",
            "unit": "盒",
            "quantity": "2",
        }
        assert body["result"]["cash"] == 0 and body["result"]["assistance"] > 0
        after = store.accumulators(POOR, TODAY, "general")
        assert after.fund_paid == before.fund_paid + recorded.settlement.fund
        assert after.assistance_paid == before.assistance_paid + recorded.settlement.assistance
        assert store.outbox_count() == 1
        assert services.verify_ledger(store).ok

    def test_the_record_is_exactly_what_quote_would_compute(self, device):
        store, _ = device
        quoted = services.quote_visit(store, RESIDENT, visit())
        assert settle(device).settlement == quoted

    def test_a_record_never_holds_a_floating_point_number_or_an_id_number(self, device):
        record = settle(device, EMPLOYEE_RICH, visit(account=True)).record
        text = json.dumps(record, ensure_ascii=False)

        def walk(value):
            assert not isinstance(value, float)
            for child in (
                value.values()
                if isinstance(value, dict)
                else (value if isinstance(value, list) else [])
            ):
                walk(child)

        walk(record)
        masked_id = device[0].insured_person(EMPLOYEE_RICH).id_number_masked
        assert masked_id[:6] not in text.replace(EMPLOYEE_RICH, "")

    def test_the_personal_account_balance_goes_down(self, device):
        store, _ = device
        recorded = settle(device, EMPLOYEE_RICH, visit(account=True))
        assert recorded.settlement.personal_account > 0
        balance = store.insured_person(EMPLOYEE_RICH).person.account_balance
        assert balance == 230000 - recorded.settlement.personal_account

    @pytest.mark.parametrize(
        ("kwargs", "code"),
        [
            ({"insured_id": "99999"}, "UNKNOWN_PERSON"),
            ({"operator": "nobody"}, "UNKNOWN_OPERATOR"),
            ({"the_visit": visit(("NOPE", "1"))}, "UNKNOWN_ITEM"),
            ({"the_visit": visit(("XJ01CAA040A001", "0"))}, "BAD_QUANTITY"),
            (
                {"the_visit": visit(visit_type="chronic", diagnoses=["I10.x00"])},
                "CHRONIC_NOT_CERTIFIED",
            ),
            ({"the_visit": visit(day=NOW.date() + timedelta(days=1))}, "BAD_INPUT"),
            (
                {
                    "the_visit": visit(
                        ("110200005000000", "100000"),
                        ("XJ01CAA040A001", "100000"),
                        ("XJ01CAA040A002", "100000"),
                    )
                },
                "AMOUNT_TOO_LARGE",
            ),
        ],
    )
    def test_bad_input_never_becomes_a_record(self, device, kwargs, code):
        store, _ = device
        accumulators = store.accumulators(RESIDENT, TODAY, "general")
        with pytest.raises(Rejection) as caught:
            settle(device, **kwargs)
        assert caught.value.code == code
        assert ledger_size(store) == 0 and store.outbox_count() == 0
        assert store.accumulators(RESIDENT, TODAY, "general") == accumulators

    def test_a_suspended_person_is_settled_in_cash_and_nothing_accumulates(self, device):
        store, _ = device
        suspended = "32011500000017"
        before = store.accumulators(suspended, TODAY, "general")
        recorded = settle(device, suspended)
        assert recorded.settlement.cash == recorded.settlement.total
        assert store.accumulators(suspended, TODAY, "general") == before


def test_a_card_must_be_the_one_on_the_roster(device):
    store, _ = device
    assert services.card_holder(store, POOR, "A32011505") == POOR
    with pytest.raises(Rejection) as caught:
        services.card_holder(store, POOR, "A99999999")
    assert caught.value.code == "CARD_NOT_IN_ROSTER"
    with pytest.raises(Rejection) as caught:
        services.card_holder(store, "nobody", "A32011505")
    assert caught.value.code == "UNKNOWN_PERSON"


class TestReverse:
    def test_a_reversal_restores_the_accumulators_and_the_account(self, device):
        store, identity = device
        before = store.accumulators(EMPLOYEE_RICH, TODAY, "general")
        original = settle(device, EMPLOYEE_RICH, visit(account=True)).record
        reversal = services.reverse_settlement(
            store, identity, tx_id=original["tx_id"], reason="录入错误", operator="doc01", now=NOW
        ).record
        assert reversal["kind"] == "reversal" and reversal["seq"] == 2
        assert reversal["body"]["reverses"] == original["tx_id"]
        assert reversal["body"]["amounts"]["total"] == original["body"]["result"]["total"]
        assert store.accumulators(EMPLOYEE_RICH, TODAY, "general") == before
        assert store.insured_person(EMPLOYEE_RICH).person.account_balance == 230000
        assert store.record_by_tx(original["tx_id"]) == original  # never edited
        assert services.verify_ledger(store).ok

    def test_a_settlement_can_be_reversed_only_once(self, device):
        store, identity = device
        tx_id = settle(device).record["tx_id"]
        reverse = dict(tx_id=tx_id, reason="重复", operator="doc01", now=NOW)
        services.reverse_settlement(store, identity, **reverse)
        with pytest.raises(Rejection, match="already reversed") as caught:
            services.reverse_settlement(store, identity, **reverse)
        assert caught.value.code == "ALREADY_REVERSED"
        assert ledger_size(store) == 2

    @pytest.mark.parametrize(
        ("tx", "reason", "code"),
        [
            ("no-such-tx", "x", "UNKNOWN_SETTLEMENT"),
            (None, "  ", "BAD_INPUT"),
        ],
    )
    def test_reversing_the_unknown_or_without_a_reason_is_refused(self, device, tx, reason, code):
        store, identity = device
        tx_id = tx or settle(device).record["tx_id"]
        with pytest.raises(Rejection) as caught:
            services.reverse_settlement(
                store, identity, tx_id=tx_id, reason=reason, operator="doc01", now=NOW
            )
        assert caught.value.code == code

    def test_a_daily_close_cannot_be_reversed(self, device):
        store, identity = device
        close = services.close_day(store, identity, operator="doc01", now=NOW).record
        with pytest.raises(Rejection, match="no settlement"):
            services.reverse_settlement(
                store, identity, tx_id=close["tx_id"], reason="x", operator="doc01", now=NOW
            )


class TestDailyClose:
    def test_the_close_totals_everything_since_the_last_close_reversals_netted(self, device):
        store, identity = device
        first = settle(device, POOR).settlement
        second = settle(device, RESIDENT)
        services.reverse_settlement(
            store, identity, tx_id=second.record["tx_id"], reason="x", operator="doc01", now=NOW
        )
        body = services.close_day(store, identity, operator="doc01", now=NOW).record["body"]
        assert body["business_day"] == "2026-11-22"
        assert (body["from_seq"], body["to_seq"]) == (1, 3)
        assert body["settlements"]["count"] == 2 and body["reversals"]["count"] == 1
        assert body["net"] == {
            **dict.fromkeys(MONEY_FIELDS, 0),
            "total": first.total,
            "fund": first.fund,
            "assistance": first.assistance,
        }

        third = settle(device, RESIDENT, now=NOW + timedelta(hours=1)).settlement
        later = services.close_day(store, identity, operator="doc01", now=NOW + timedelta(hours=2))
        assert later.record["body"]["from_seq"] == 5
        assert later.record["body"]["net"]["total"] == third.total

    def test_an_empty_close_is_still_signed(self, device):
        store, identity = device
        body = services.close_day(store, identity, operator="doc01", now=NOW).record["body"]
        assert body["settlements"]["count"] == 0 and body["from_seq"] is None
        assert body["business_day"] == TODAY.isoformat()

    def test_a_close_made_after_midnight_belongs_to_the_day_it_closes(self, device):
        store, identity = device
        evening = NOW.replace(hour=21)
        settle(device, the_visit=visit(day=TODAY), now=evening)
        after_midnight = evening + timedelta(hours=3, minutes=30)
        body = services.close_day(store, identity, operator="doc01", now=after_midnight)
        assert body.record["created_at"].startswith((TODAY + timedelta(days=1)).isoformat())
        assert body.record["body"]["business_day"] == TODAY.isoformat()
        # a visit settled after midnight makes the next close the new day's
        settle(device, the_visit=visit(day=TODAY + timedelta(days=1)), now=after_midnight)
        night = services.close_day(store, identity, operator="doc01", now=after_midnight)
        assert night.record["body"]["business_day"] == (TODAY + timedelta(days=1)).isoformat()


class TestOfflineLimits:
    def test_too_many_visits_a_day_are_settled_and_flagged(self, device):
        # the demo policy allows 3 visits per person per day before review
        flags = [settle(device).needs_review for _ in range(4)]
        assert flags == [[], [], [], ["VISITS_PER_DAY_LIMIT"]]

    def test_too_long_offline_is_settled_and_flagged(self, device):
        late = NOW + timedelta(hours=73)
        assert settle(device, now=late).needs_review == ["OFFLINE_TOO_LONG"]

    def test_too_much_fund_since_the_last_sync_is_flagged(self, device):
        store, _ = device
        policy = demo.load_json("policy.json")
        policy["version"] = "2026.3"
        policy["offline_limits"]["max_fund_since_sync"] = 1000
        store.import_policy(policy, now=NOW)
        # each visit: 2 × ¥6.80 = 1360 fen, fund 748 fen; the second passes 1000 fen
        first, second = (settle(device, insured_id) for insured_id in (RESIDENT, POOR))
        assert first.needs_review == []
        assert second.needs_review == ["OFFLINE_FUND_LIMIT"]
        assert second.record["body"]["needs_review"] == ["OFFLINE_FUND_LIMIT"]

    def test_the_running_offline_fund_total_nets_reversals(self, device):
        store, identity = device
        first = settle(device, POOR)
        second = settle(device, RESIDENT)
        assert store.device().unsynced_fund == first.settlement.fund + second.settlement.fund
        services.reverse_settlement(
            store, identity, tx_id=first.record["tx_id"], reason="x", operator="doc01", now=NOW
        )
        assert store.device().unsynced_fund == second.settlement.fund
        services.close_day(store, identity, operator="doc01", now=NOW)  # no fund of its own
        assert store.device().unsynced_fund == second.settlement.fund

    def test_the_running_total_counts_from_the_sync_mark(self, device):
        store, _ = device
        first, second = settle(device, POOR), settle(device, RESIDENT)
        store.db.execute("UPDATE device SET synced_seq = ?", [first.record["seq"]])
        assert store.device().unsynced_fund == second.settlement.fund
        store.db.execute("UPDATE device SET synced_seq = ?", [second.record["seq"]])
        assert store.device().unsynced_fund == 0


def test_the_running_fund_total_is_backfilled_for_a_ledger_from_before_it(tmp_path):
    """A device whose ledger predates `fund_total` (migration m003) gets every row's
    running total, and keeps refusing edits to the ledger."""
    db = connect(tmp_path / DATABASE_FILE)
    migrations.apply(db, stop_before="m003_running_fund_total")
    db.execute(
        "INSERT INTO device (id, device_id, public_key, created_at, synced_seq, unsynced_fund)"
        " VALUES (1, 'dev', 'key', '2026-11-01T08:00:00+08:00', 1, 0)"
    )
    rows = [("settlement", 100), ("event", None), ("settlement", 50), ("reversal", 100)]
    for seq, (kind, fund) in enumerate(rows, start=1):
        db.execute(
            "INSERT INTO ledger VALUES (?, ?, ?, '2026-11-02T08:00:00+08:00', '2026-11-02',"
            " NULL, ?, NULL, '{}')",
            [seq, kind, f"tx{seq}", fund],
        )
    db.close()
    store = SqliteDeviceStore.open(tmp_path)
    try:
        totals = [t for (t,) in store.db.execute("SELECT fund_total FROM ledger ORDER BY seq")]
        assert totals == [100, 100, 150, 50]
        assert store.device().unsynced_fund == 50 - 100  # settled after the sync mark (seq 1)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.db.execute("UPDATE ledger SET fund = 0 WHERE seq = 1")
    finally:
        store.close()


class TestClock:
    def test_a_clock_jumping_back_is_signed_and_time_stays_monotonic(self, device):
        store, _ = device
        settle(device, now=NOW)
        behind = settle(device, now=NOW - timedelta(days=3)).record
        assert behind["created_at"] == "2026-11-22T09:30:00+08:00"
        event = next(r for r in store.records() if r["kind"] == "event")
        assert event["body"]["event"] == "clock_behind"
        assert event["body"]["device_clock"] == "2026-11-19T09:30:00+08:00"
        # still behind: no second event; back in step: time moves on again
        settle(device, now=NOW - timedelta(days=3))
        caught_up = settle(device, now=NOW + timedelta(minutes=5)).record
        assert caught_up["created_at"] == "2026-11-22T09:35:00+08:00"
        kinds = [r["kind"] for r in store.records()]
        assert kinds == ["settlement", "event", "settlement", "settlement", "settlement"]
        times = [r["created_at"] for r in store.records()]
        assert times == sorted(times)
        assert services.verify_ledger(store).ok


class TestCommandLine:
    @pytest.fixture
    def cli_device(self, tmp_path):
        data_dir = tmp_path / "dev"
        done = subprocess.run(
            [str(CLINIC), "init", "--demo", "--data-dir", str(data_dir)],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return str(data_dir)

    def clinic(self, *args, stdin=""):
        return subprocess.run(
            [str(CLINIC), *args], input=stdin.encode(), capture_output=True, timeout=60
        )

    def test_settle_reverse_close_and_verify_from_the_command_line(self, cli_device):
        request = {
            "insured_id": POOR,
            "operator": "doc01",
            "visit": {
                "visit_type": "general",
                "diagnoses": ["J06.900"],
                "lines": [{"code": "XJ01CAA040A001", "quantity": "1"}],
            },
        }
        done = self.clinic("settle", "--data-dir", cli_device, stdin=json.dumps(request))
        assert done.returncode == 0, done.stderr
        settled = json.loads(done.stdout)
        assert settled["seq"] == 1 and len(settled["hash"]) == 64
        assert settled["settlement"]["total"] == 680

        reversed_ = self.clinic(
            "reverse",
            settled["tx_id"],
            "--reason",
            "录入错误",
            "--operator",
            "doc01",
            "--data-dir",
            cli_device,
        )
        assert reversed_.returncode == 0, reversed_.stderr
        again = self.clinic(
            "reverse",
            settled["tx_id"],
            "--reason",
            "x",
            "--operator",
            "doc01",
            "--data-dir",
            cli_device,
        )
        assert again.returncode == 1 and b"ALREADY_REVERSED" in again.stderr

        report = self.clinic("close-day", "--operator", "doc01", "--data-dir", cli_device)
        assert report.returncode == 0
        assert "日结" in report.stdout.decode() and "¥0.00" in report.stdout.decode()

        verified = self.clinic("ledger", "verify", "--json", "--data-dir", cli_device)
        assert json.loads(verified.stdout) == {
            "ok": True,
            "records": 3,
            "first_bad_seq": None,
            "reason": None,
        }
        exported = self.clinic("ledger", "export", "--data-dir", cli_device).stdout.splitlines()
        assert [json.loads(line)["seq"] for line in exported] == [1, 2, 3]
        shown = json.loads(self.clinic("device", "show", "--json", "--data-dir", cli_device).stdout)
        assert shown["device_id"] == json.loads(exported[0])["device_id"]
        assert shown["records_waiting"] == 3

    @pytest.mark.parametrize(
        "stdin",
        [
            "",
            "[1]",
            '{"insured_id": "x"}',
            '{"insured_id": "32011500000001", "operator": "doc01",'
            ' "visit": {"visit_type": "general", "lines": []}}',
        ],
    )
    def test_bad_settle_input_is_one_clear_line_and_no_record(self, cli_device, stdin):
        done = self.clinic("settle", "--data-dir", cli_device, stdin=stdin)
        assert done.returncode == 1
        assert done.stderr.startswith(b"Error: ") and b"Traceback" not in done.stderr
        verified = json.loads(
            self.clinic("ledger", "verify", "--json", "--data-dir", cli_device).stdout
        )
        assert verified["records"] == 0

    def test_settle_reads_the_patient_from_an_emulated_card(self, cli_device):
        request = {
            "card": "emulated://A32011505",
            "operator": "doc01",
            "visit": {
                "visit_type": "general",
                "lines": [{"code": "XJ01CAA040A001", "quantity": "1"}],
            },
        }
        done = self.clinic("settle", "--data-dir", cli_device, stdin=json.dumps(request))
        assert done.returncode == 0, done.stderr
        record = json.loads(self.clinic("ledger", "export", "--data-dir", cli_device).stdout)
        assert record["body"]["insured_id"] == POOR

    def test_an_unreadable_card_records_nothing(self, cli_device):
        request = {
            "card": "emulated://",
            "operator": "doc01",
            "visit": {
                "visit_type": "general",
                "lines": [{"code": "XJ01CAA040A001", "quantity": "1"}],
            },
        }
        done = self.clinic("settle", "--data-dir", cli_device, stdin=json.dumps(request))
        assert done.returncode == 1 and b"card not read" in done.stderr
        assert self.clinic("ledger", "export", "--data-dir", cli_device).stdout == b""

    def test_settling_without_the_key_says_so(self, cli_device):
        (Path(cli_device) / KEY_FILE).unlink()
        request = {
            "insured_id": RESIDENT,
            "operator": "doc01",
            "visit": {
                "visit_type": "general",
                "lines": [{"code": "XJ01CAA040A001", "quantity": "1"}],
            },
        }
        done = self.clinic("settle", "--data-dir", cli_device, stdin=json.dumps(request))
        assert done.returncode == 1 and b"device key" in done.stderr


def test_record_times_and_days_are_china_time_whatever_the_system_zone(device):
    store, _ = device
    just_after_midnight_in_china = datetime(2026, 11, 21, 16, 30, tzinfo=UTC)
    recorded = settle(
        device, the_visit=visit(day=date(2026, 11, 22)), now=just_after_midnight_in_china
    )
    assert recorded.record["created_at"] == "2026-11-22T00:30:00+08:00"
    assert store.settlements_on(RESIDENT, "2026-11-22") == 1


# ---- settlement rules version 2: every payer, every accumulator -------------------------------

VETERAN, MOTHER, DAUGHTER, CIVIL_SERVANT = (
    "32011500000026", "32011500000027", "32011500000511", "32011500000510",
)  # fmt: skip
NEAR_CI_THRESHOLD = "32011500000028"  # 14998 yuan of the 15000 threshold counted
CONSULTATION, AMOXICILLIN = "110200005000000", "XJ01CAA040A001"


def chain_visit(**pays_with):
    return visit_from_json(
        {
            "date": TODAY.isoformat(), "visit_type": "general", "diagnoses": ["J06.900"],
            "lines": [{"code": CONSULTATION, "quantity": "1"},
                      {"code": AMOXICILLIN, "quantity": "2"}],
            **pays_with,
        }
    )  # fmt: skip


def figures(store, insured_id, visit_type="general", holder=None) -> dict:
    entry = store.insured_person(insured_id, with_accumulators=False)
    return records.accumulators_to_json(
        store.accumulators(insured_id, TODAY, visit_type, holder), entry.person.account_balance
    )


class TestOneStopChain:
    def test_the_family_account_debits_the_holder_and_a_reversal_gives_it_back(self, device):
        store, identity = device
        before = figures(store, MOTHER, holder=DAUGHTER)
        daughter_before = store.insured_person(DAUGHTER).person.account_balance
        settled = settle(device, MOTHER, chain_visit(use_family_account=True))
        paid = settled.settlement.family_account
        assert paid > 0 and settled.settlement.cash == 0
        body = settled.record["body"]
        assert body["visit"]["family_account_holder"] == DAUGHTER
        assert body["accumulators_before"]["family_account_balance"] == daughter_before
        assert store.insured_person(DAUGHTER).person.account_balance == daughter_before - paid
        services.reverse_settlement(
            store, identity, tx_id=settled.record["tx_id"], reason="x", operator="doc01", now=NOW
        )
        assert store.insured_person(DAUGHTER).person.account_balance == daughter_before
        assert figures(store, MOTHER, holder=DAUGHTER) == before

    def test_a_family_account_nobody_shared_is_refused_and_nothing_is_written(self, device):
        store, _ = device
        size = ledger_size(store)
        with pytest.raises(Rejection) as refused:
            settle(device, RESIDENT, chain_visit(use_family_account=True))
        assert refused.value.code == "FAMILY_ACCOUNT_NOT_SHARED"
        with pytest.raises(Rejection):
            services.settle_visit(
                store, device[1], insured_id=MOTHER, visit=chain_visit(use_family_account=True),
                operator="doc01", now=NOW, family_account_holder=EMPLOYEE_RICH,
            )  # fmt: skip
        assert ledger_size(store) == size

    @pytest.mark.parametrize(
        ("insured_id", "visit_type", "lines", "pays_with"),
        [
            (VETERAN, "general", [(CONSULTATION, "1"), ("XR05XAA202A001", "1")], {}),
            (CIVIL_SERVANT, "general", [(CONSULTATION, "1"), (AMOXICILLIN, "2")],
             {"use_personal_account": True}),
            (NEAR_CI_THRESHOLD, "chronic", [("XC08CAB128A001", "5")], {}),
        ],
        ids=["veteran", "civil servant", "critical illness"],
    )  # fmt: skip
    def test_a_reversal_gives_every_payer_and_every_figure_back(
        self, device, insured_id, visit_type, lines, pays_with
    ):
        store, identity = device
        the_visit = visit_from_json(
            {"date": TODAY.isoformat(), "visit_type": visit_type,
             "diagnoses": ["I10.x00" if visit_type == "chronic" else "J06.900"],
             "lines": [{"code": c, "quantity": q} for c, q in lines], **pays_with}
        )  # fmt: skip
        before = figures(store, insured_id, visit_type)
        settled = settle(device, insured_id, the_visit)
        after = figures(store, insured_id, visit_type)
        assert after == settled.record["body"]["result"]["accumulators_after"]
        assert after != before
        reversal = services.reverse_settlement(
            store, identity, tx_id=settled.record["tx_id"], reason="x", operator="doc01", now=NOW
        )
        assert figures(store, insured_id, visit_type) == before
        assert reversal.record["body"]["amounts"] == records.payer_amounts(
            settled.settlement.to_dict()
        )

    def test_the_day_cap_counts_the_days_visits_and_the_close_totals_every_payer(self, device):
        store, identity = device
        big = visit_from_json(
            {"date": TODAY.isoformat(), "visit_type": "general", "diagnoses": ["J06.900"],
             "lines": [{"code": CONSULTATION, "quantity": "1"},
                       {"code": AMOXICILLIN, "quantity": "3"},
                       {"code": "XJ01CAA040A002", "quantity": "2"}]}
        )  # fmt: skip
        first = settle(device, RESIDENT, big).settlement
        second = settle(device, RESIDENT, big).settlement
        # the demo's general visits: ¥20 a visit, ¥30 a day
        assert (first.fund, first.fund_limited_by) == (2000, "visit_cap")
        assert (second.fund, second.fund_limited_by) == (1000, "day_cap")
        assert figures(store, RESIDENT)["day_fund_paid"] == 3000
        veteran = settle(device, VETERAN, chain_visit()).settlement
        close = services.close_day(store, identity, operator="doc01", now=NOW).record["body"]
        assert close["net"]["fund"] == first.fund + second.fund + veteran.fund
        assert close["net"]["oth_pay"] == veteran.supplements_as("oth_pay") > 0
        paid = sum(close["net"][name] for name in MONEY_FIELDS if name != "total")
        assert paid == close["net"]["total"]
