"""The month and year closes on a real device store and from the command line: what they
cover, when they are allowed, the daily close made first, printing on a serial printer."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from clock import NOW

from edge import services
from edge.domain import reports
from edge.domain.documents import visit_from_json
from edge.domain.ledger import verify_chain
from edge.domain.model import Rejection
from edge.domain.records import MONEY_FIELDS, body_problem

RESIDENT = "32011500000001"
EMPLOYEE = "32011500000502"
CLINIC = Path(sys.executable).with_name("clinic")
DEC_2 = NOW + timedelta(days=10)  # 2026-12-02 09:30 China time
JAN_3 = NOW + timedelta(days=42)  # 2027-01-03


def a_visit(day, visit_type="general"):
    return visit_from_json(
        {
            "date": day.isoformat(),
            "visit_type": visit_type,
            "diagnoses": ["J06.900"],
            "lines": [{"code": "XJ01CAA040A001", "quantity": "2"}],
            "use_personal_account": False,
        }
    )


@pytest.fixture
def device(demo_store, data_dir):
    identity = services.init_device(demo_store, data_dir, NOW - timedelta(hours=1))
    return demo_store, identity


def settle(device, when, insured_id=RESIDENT, operator="doc01"):
    store, identity = device
    return services.settle_visit(
        store, identity, insured_id=insured_id, visit=a_visit(when.date()),
        operator=operator, now=when,
    ).record  # fmt: skip


def reverse(device, record, when):
    store, identity = device
    return services.reverse_settlement(
        store, identity, tx_id=record["tx_id"], reason="录入错误", operator="doc01", now=when
    ).record


@pytest.fixture
def november(device):
    """Three November visits (one an employee's), a daily close, one visit left unclosed
    on the 30th, and on 2 December a reversal of a November settlement."""
    first = settle(device, NOW)
    settle(device, NOW + timedelta(hours=1), EMPLOYEE)
    services.close_day(device[0], device[1], operator="doc01", now=NOW + timedelta(hours=9))
    late = settle(device, NOW + timedelta(days=8))  # 30 November, no daily close yet
    return first, late


class TestMonthClose:
    def test_the_month_is_refused_before_it_ends(self, device, november):
        with pytest.raises(Rejection) as refused:
            services.close_month(
                device[0], device[1], operator="doc01", now=NOW + timedelta(days=8), month="2026-11"
            )
        assert refused.value.code == "PERIOD_NOT_ENDED"

    def test_closing_the_month_signs_the_missing_daily_close_first(self, device, november):
        store, identity = device
        _, late = november
        close = services.close_month(store, identity, operator="doc01", now=DEC_2).record
        body = close["body"]
        assert close["kind"] == "monthly_close" and body["month"] == "2026-11"
        daily = store.records_of_kind("daily_close")
        assert len(daily) == 2 and daily[-1]["seq"] == close["seq"] - 1  # made first
        assert body["daily_closes"] == {
            "count": 2, "first_seq": daily[0]["seq"], "last_seq": daily[1]["seq"]
        }  # fmt: skip
        assert body["from_seq"] == 1 and body["to_seq"] == late["seq"]
        assert body["settlements"]["count"] == 3 and body["reversals"]["count"] == 0
        assert body["by_insurance"]["resident"]["count"] == 2
        assert body["by_insurance"]["employee"]["count"] == 1
        assert body["by_visit_type"]["general"]["count"] == 3
        for name in MONEY_FIELDS:
            assert sum(g[name] for g in body["by_insurance"].values()) == body["net"][name]
        assert body_problem("monthly_close", body) is None
        assert verify_chain(store.records(), identity.public_key).ok

    def test_a_month_is_closed_once(self, device, november):
        services.close_month(device[0], device[1], operator="doc01", now=DEC_2)
        with pytest.raises(Rejection) as refused:
            services.close_month(device[0], device[1], operator="doc01", now=DEC_2)
        assert refused.value.code == "ALREADY_CLOSED"

    def test_a_reversal_counts_in_the_month_it_was_made(self, device, november):
        store, identity = device
        first, _ = november
        services.close_month(store, identity, operator="doc01", now=DEC_2)
        reversal = reverse(device, first, DEC_2 + timedelta(minutes=5))
        services.close_day(store, identity, operator="doc01", now=DEC_2 + timedelta(hours=8))
        december = services.close_month(store, identity, operator="doc01", now=JAN_3,
                                        month="2026-12").record["body"]  # fmt: skip
        total = reversal["body"]["amounts"]["total"]
        assert december["settlements"]["count"] == 0 and december["reversals"]["count"] == 1
        assert december["net"]["total"] == -total
        # its visit type is its November settlement's
        assert december["by_visit_type"] == {
            "general": {"count": 1, **{n: -reversal["body"]["amounts"][n] for n in MONEY_FIELDS}}
        }

    def test_an_empty_month_is_signed_with_zeros(self, device):
        body = services.close_month(device[0], device[1], operator="doc01", now=DEC_2).record[
            "body"
        ]
        assert body["from_seq"] is None and body["settlements"]["count"] == 0
        assert body["net"] == dict.fromkeys(MONEY_FIELDS, 0) and body["by_insurance"] == {}

    def test_the_year_close_closes_its_months_first(self, device, november):
        store, identity = device
        close = services.close_year(store, identity, operator="doc01", now=JAN_3).record
        body = close["body"]
        monthly = store.records_of_kind("monthly_close")
        assert body["year"] == "2026" and body["months"] == ["2026-11"]
        assert body["monthly_closes"]["count"] == 1 and monthly[0]["seq"] < close["seq"]
        assert body["net"] == monthly[0]["body"]["net"]
        assert body_problem("yearly_close", body) is None
        with pytest.raises(Rejection):
            services.close_year(store, identity, operator="doc01", now=JAN_3)

    def test_the_month_preview_is_month_to_date(self, device, november):
        preview = services.month_preview(device[0], "2026-11")
        assert preview["settlements"]["count"] == 3


class TestPrinting:
    def test_the_month_close_prints_on_a_serial_printer(self, device, november, tmp_path):
        from drivers.escpos import render_text
        from drivers.printer import PrinterEmulator, printer_for_url
        from drivers.receipt import layout_receipt, receipt_escpos

        close = services.close_month(device[0], device[1], operator="doc01", now=DEC_2).record
        receipt = layout_receipt(close, clinic="秣陵村卫生室", operator_name="王医生")
        emulator = PrinterEmulator(tmp_path / "printed.bin")
        master, slave = os.openpty()
        emulator.serve_fd(master)
        try:
            with printer_for_url(os.ttyname(slave)) as printer:
                printer.print_bytes(receipt_escpos(receipt))
            assert emulator.wait_for_cuts(1, timeout=10)
        finally:
            emulator.stop()
            os.close(slave)
        text = render_text(emulator.printed(), 32)
        assert "月结单" in text and "2026年11月" in text and "居民医保" in text
        assert reports.format_yuan(close["body"]["net"]["total"]) in text
        assert "负责人签字" in text

    def test_the_year_close_receipt(self, device, november):
        from drivers.receipt import layout_receipt

        close = services.close_year(device[0], device[1], operator="doc01", now=JAN_3).record
        text = layout_receipt(close, clinic="秣陵村卫生室", width=48).text()
        assert "年结单" in text and "年度 2026年" in text and "月结 1次" in text
        assert reports.format_yuan(close["body"]["net"]["cash"]) in text


class TestCommandLine:
    def clinic(self, data_dir, *args, when=DEC_2):
        env = {**os.environ, "CLINIC_CLOCK": when.isoformat()}
        return subprocess.run([str(CLINIC), *args, "--data-dir", str(data_dir)],
                              capture_output=True, timeout=60, env=env)  # fmt: skip

    def test_close_month_and_close_year(self, device, november, data_dir):
        early = self.clinic(data_dir, "close-month", "--operator", "doc01", "--month", "2026-12")
        assert early.returncode == 1 and b"PERIOD_NOT_ENDED" in early.stderr
        bad = self.clinic(data_dir, "close-month", "--operator", "doc01", "--month", "2026-13")
        assert bad.returncode == 1 and b"YYYY-MM" in bad.stderr
        done = self.clinic(data_dir, "close-month", "--operator", "doc01", "--json")
        assert done.returncode == 0, done.stderr
        close = json.loads(done.stdout)
        assert close["kind"] == "monthly_close" and close["month"] == "2026-11"
        assert close["settlements"]["count"] == 3
        text = self.clinic(data_dir, "close-year", "--operator", "doc01", when=JAN_3)
        assert text.returncode == 0, text.stderr
        assert "年结单" in text.stdout.decode() and "2026年" in text.stdout.decode()

    def test_a_statement_needs_an_enrolled_device(self, device, data_dir):
        done = self.clinic(data_dir, "statement", "--month", "2026-11")
        assert done.returncode == 1 and "未" in done.stderr.decode()
