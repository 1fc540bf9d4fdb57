"""Premium collection on a real device store (edge/premiums.py): quotes, family payments,
the state's share, refusals that write nothing, 家庭共济 debits and give-backs, reversals
once, the 日结's premiums, and the 收费凭证 printed over a real pseudo-terminal with a QR
code that verifies."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from clock import NOW

from drivers import escpos
from drivers.cli import _what_it_proves
from drivers.printer import PrinterEmulator
from drivers.receipt import layout_receipt, receipt_escpos, receipt_qr_payload, verify_receipt_qr
from edge import premiums, services
from edge.domain.ledger import verify_chain
from edge.domain.model import Rejection
from edge.domain.reports import report_text

ZHANG, LI = "32011500000001", "32011500000002"  # residents, no category
CHEN = "32011500000005"  # 特困: the state pays in full
YANG = "32011500000006"  # 低保: the state pays in full
HUANG = "32011500000008"  # 重度残疾: a fixed subsidy
KONG_MOTHER, KONG_DAUGHTER = "32011500000027", "32011500000511"  # 家庭共济
TANG = "32011500000502"  # an employee
NEXT_YEAR = NOW.year + 1  # collection for next year has opened on the demo day (09-01)
RESIDENT = 40000  # the demo policy's premium, fen


@pytest.fixture
def device(demo_store, data_dir):
    identity = services.init_device(demo_store, data_dir, NOW - timedelta(hours=1))
    return demo_store, identity


def collect(store, identity, insured_ids, *, method="cash", reference=None, holder=None,
            year=None, payer="张建国", now=NOW):  # fmt: skip
    return premiums.collect_premium(
        store, identity, operator="doc01", payer_name=payer, payer_insured_id=None,
        insured_ids=insured_ids, year=year, method=method, reference=reference,
        account_holder=holder, now=now,
    )  # fmt: skip


def refused(code: str, call, *args, **kwargs) -> Rejection:
    with pytest.raises(Rejection) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


def balance(store, insured_id: str) -> int:
    return store.insured_person(insured_id, with_accumulators=False).person.account_balance


def test_a_family_of_three_pays_for_two_and_the_state_for_the_one_in_extreme_poverty(device):
    store, identity = device
    quote = premiums.premium_quote(store, [ZHANG, CHEN, LI], None, NOW.date())
    assert quote.year == NEXT_YEAR and quote.year_choices == (NEXT_YEAR, NOW.year)
    assert [(p.due, p.state_pays, p.amount) for p in quote.persons] == [
        (RESIDENT, 0, RESIDENT), (RESIDENT, RESIDENT, 0), (RESIDENT, 0, RESIDENT),
    ]  # fmt: skip
    assert quote.persons[1].categories == ("extreme_poverty",) and not quote.all_state_paid
    record = collect(store, identity, [ZHANG, CHEN, LI]).record
    body = record["body"]
    assert record["kind"] == "premium" and body["year"] == NEXT_YEAR
    assert body["amount"] == 2 * RESIDENT and body["state_paid"] == RESIDENT
    assert body["payer"] == {"name": "张建国", "insured_id": None}
    assert body["method"] == "cash" and body["account_balance_after"] is None
    assert [p["insured_id"] for p in body["persons"]] == [ZHANG, CHEN, LI]
    assert verify_chain(store.records(), identity.public_key).count == 1
    [row] = premiums.premiums(store, year=NEXT_YEAR)
    assert row["tx_id"] == record["tx_id"] and row["amount"] == 2 * RESIDENT
    assert premiums.premium(store, record["tx_id"])["record"] == record
    assert premiums.premiums(store, day=NOW.date().isoformat())[0]["seq"] == record["seq"]
    assert premiums.premiums(store, year=NOW.year) == []


def test_severe_disability_gets_the_fixed_subsidy(device):
    store, identity = device
    body = collect(store, identity, [HUANG]).record["body"]
    assert body["persons"][0]["state_pays"] == 20000 and body["amount"] == RESIDENT - 20000


def test_all_paid_by_the_state_is_refused_and_nothing_is_written(device):
    store, identity = device
    assert premiums.premium_quote(store, [CHEN, YANG], None, NOW.date()).all_state_paid
    error = refused("ALL_STATE_PAID", collect, store, identity, [CHEN, YANG])
    assert error.message.startswith("由政府全额资助，无需缴费")
    assert list(store.records()) == [] and premiums.premiums(store) == []


def test_refusals_write_nothing(device):
    store, identity = device
    refused("NOT_RESIDENT", collect, store, identity, [ZHANG, TANG])
    refused("UNKNOWN_PERSON", collect, store, identity, ["32011599999999"])
    refused("YEAR_NOT_OFFERED", collect, store, identity, [ZHANG], year=NOW.year - 1)
    refused("REFERENCE_REQUIRED", collect, store, identity, [ZHANG], method="mobile")
    refused("BAD_INPUT", collect, store, identity, [ZHANG, ZHANG])
    refused("BAD_INPUT", collect, store, identity, [ZHANG], payer=" ")
    refused("TOO_MANY_PERSONS", collect, store, identity, [f"3201150000{n:04d}" for n in range(21)])
    refused("FAMILY_ACCOUNT_NOT_SHARED", collect, store, identity, [ZHANG], method="family_account")
    refused("FAMILY_ACCOUNT_NOT_SHARED", collect, store, identity, [KONG_MOTHER, ZHANG],
            method="family_account", holder=KONG_DAUGHTER)  # fmt: skip
    assert list(store.records()) == []


def test_a_person_paid_for_is_refused_for_the_same_year_until_the_payment_is_reversed(device):
    store, identity = device
    first = collect(store, identity, [ZHANG], method="mobile", reference="WX4200001").record
    assert first["body"]["reference"] == "WX4200001"
    refused("ALREADY_PAID", collect, store, identity, [LI, ZHANG])
    this_year = collect(store, identity, [ZHANG], year=NOW.year).record  # the other year is open
    assert this_year["body"]["year"] == NOW.year
    reversal = premiums.reverse_premium(
        store, identity, str(first["seq"]), operator="doc01", reason="重复收费", now=NOW
    ).record
    assert reversal["kind"] == "premium_reversal"
    assert reversal["body"]["reverses"] == first["tx_id"]
    assert reversal["body"]["reverses_seq"] == first["seq"]
    assert reversal["body"]["amount"] == RESIDENT and reversal["body"]["method"] == "mobile"
    refused("ALREADY_REVERSED", premiums.reverse_premium, store, identity, first["tx_id"],
            operator="doc01", reason="again", now=NOW)  # fmt: skip
    refused("UNKNOWN_PREMIUM", premiums.reverse_premium, store, identity, str(reversal["seq"]),
            operator="doc01", reason="not a premium", now=NOW)  # fmt: skip
    refused("BAD_INPUT", premiums.reverse_premium, store, identity, this_year["tx_id"],
            operator="doc01", reason=" ", now=NOW)  # fmt: skip
    row = premiums.premium(store, first["tx_id"])
    assert row["reversed_by"] == reversal["tx_id"] and row["reversal_seq"] == reversal["seq"]
    again = collect(store, identity, [ZHANG]).record  # paid again after the reversal
    assert again["body"]["year"] == NEXT_YEAR


def test_the_family_account_pays_and_gets_its_money_back(device):
    store, identity = device
    before = balance(store, KONG_DAUGHTER)
    assert before >= RESIDENT
    holders = premiums.shared_account_holders(store, [KONG_MOTHER])
    assert [h.insured_id for h in holders] == [KONG_DAUGHTER]
    assert premiums.shared_account_holders(store, [KONG_MOTHER, ZHANG]) == []
    record = collect(store, identity, [KONG_MOTHER], method="family_account", payer="孔丽").record
    assert record["body"]["account_holder"] == KONG_DAUGHTER  # the one who shared it
    assert record["body"]["account_balance_after"] == before - RESIDENT
    assert balance(store, KONG_DAUGHTER) == before - RESIDENT
    reversal = premiums.reverse_premium(
        store, identity, record["tx_id"], operator="doc01", reason="家属改用现金", now=NOW
    ).record
    assert reversal["body"]["account_holder"] == KONG_DAUGHTER
    assert reversal["body"]["account_balance_after"] == before
    assert balance(store, KONG_DAUGHTER) == before
    store.set_account_balance(KONG_DAUGHTER, RESIDENT - 1)
    refused("INSUFFICIENT_BALANCE", collect, store, identity, [KONG_MOTHER],
            method="family_account", holder=KONG_DAUGHTER)  # fmt: skip
    assert balance(store, KONG_DAUGHTER) == RESIDENT - 1 and len(list(store.records())) == 2


def test_the_daily_close_counts_premiums_and_the_cash_to_hand_over(device):
    store, identity = device
    cash = collect(store, identity, [ZHANG, CHEN]).record
    collect(store, identity, [LI], method="mobile", reference="ZFB77")
    collect(store, identity, [KONG_MOTHER], method="family_account", payer="孔丽")
    premiums.reverse_premium(store, identity, cash["tx_id"], operator="doc01", reason="退费",
                             now=NOW)  # fmt: skip
    close = services.close_day(store, identity, operator="doc01", now=NOW + timedelta(hours=8))
    totals = close.record["body"]["premiums"]
    assert totals["collected"]["count"] == 3 and totals["collected"]["amount"] == 3 * RESIDENT
    assert totals["collected"]["cash"] == RESIDENT and totals["collected"]["mobile"] == RESIDENT
    assert totals["reversed"]["count"] == 1 and totals["net"]["cash"] == 0
    assert totals["net"]["amount"] == 2 * RESIDENT and totals["net"]["family_account"] == RESIDENT
    from drivers.receipt import close_report_of

    text = report_text(close_report_of(store, close.record))
    assert "收取保费 3笔" in text and "其中移动支付" in text and "其中家庭共济" in text
    assert "冲正 1笔" in text and "保费应上缴现金" in text and "现金总计（结算+保费）" in text


def test_the_premium_receipt_prints_over_a_pty_and_its_qr_verifies(device, tmp_path):
    store, identity = device
    record = collect(store, identity, [ZHANG, CHEN, HUANG], method="mobile",
                     reference="WX-20261122-01").record  # fmt: skip
    receipt = layout_receipt(record, clinic="张村卫生室", operator_name="王医生")
    master, slave = os.openpty()
    emulator = PrinterEmulator(tmp_path / "printed.bin").serve_fd(master)
    try:
        from drivers.printer import printer_for_url

        with printer_for_url(os.ttyname(slave)) as printer:
            printer.print_bytes(receipt_escpos(receipt))
    finally:
        emulator.stop()
        os.close(slave)
        os.close(master)
    printed = (tmp_path / "printed.bin").read_bytes()
    text = escpos.render_text(printed)
    for expected in ("收费凭证", "张村卫生室", "操作员 王医生", f"{NEXT_YEAR}年度保费",
                     "缴费人 张建国", "特困人员", "重度残疾", "政府资助", "移动支付",
                     "WX-20261122-01", f"流水号 {record['seq']}"):  # fmt: skip
        assert expected in text, expected
    assert "实收金额" in text and "¥600.00" in text  # 400 + 0 + 200 yuan
    payload = escpos.qr_payloads(printed)[0].decode()
    assert payload == receipt_qr_payload(record)
    verified = verify_receipt_qr(payload, identity.public_key)
    assert verified.record == store.record_by_tx(record["tx_id"])
    proof = "\n".join(_what_it_proves(verified.record))
    assert "张建国" in proof and "¥600.00" in proof and str(NEXT_YEAR) in proof


def test_the_reversal_receipt_names_the_family_account(device):
    store, identity = device
    record = collect(store, identity, [KONG_MOTHER], method="family_account", payer="孔丽").record
    reversal = premiums.reverse_premium(
        store, identity, record["tx_id"], operator="doc01", reason="录入错误", now=NOW
    ).record
    text = layout_receipt(reversal, clinic="张村卫生室", family_holder_name="孔丽").text()
    assert "收费冲正凭证" in text and "孔丽的个人账户" in text and "-¥400.00" in text
    assert (
        verify_receipt_qr(receipt_qr_payload(reversal), identity.public_key).hash
        == (reversal["hash"])
    )


def test_the_month_close_shows_the_months_premiums(device):
    store, identity = device
    collect(store, identity, [ZHANG, HUANG])
    later = NOW + timedelta(days=12)  # the next month: the demo day's month has ended
    month = services.close_month(store, identity, operator="doc01", now=later,
                                 month=NOW.strftime("%Y-%m")).record  # fmt: skip
    assert month["body"]["premiums"]["net"]["cash"] == RESIDENT + 20000
    from edge.domain.reports import period_text

    text = period_text(month)
    assert "参保缴费" in text and "收取保费 1笔 2人" in text and "¥600.00" in text


def test_m015_indexes_the_premiums_a_ledger_already_holds(device, data_dir):
    """A device restored from a ledger written before its index (or by a release that
    indexed nothing) gets its premiums indexed by the migration."""
    store, identity = device
    first = collect(store, identity, [ZHANG]).record
    premiums.reverse_premium(store, identity, first["tx_id"], operator="doc01", reason="退",
                             now=NOW)  # fmt: skip
    collect(store, identity, [LI])
    with store.write_transaction():
        store.db.execute("DROP TABLE premium_person")
        store.db.execute("DROP TABLE premium")
        store.db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm015_premiums'")
    store.close()
    from edge.adapters.sqlite_store import SqliteDeviceStore

    again = SqliteDeviceStore.open(data_dir)
    try:
        rows = premiums.premiums(again)
        assert [row["persons"][0]["insured_id"] for row in rows] == [LI, ZHANG]
        assert rows[1]["reversal_seq"] == first["seq"] + 1
        assert again.premium_paid(LI, NEXT_YEAR) and again.premium_paid(ZHANG, NEXT_YEAR) is None
    finally:
        again.close()


def test_a_family_account_premium_whose_holder_left_the_roster_is_not_reversed_here(
    device, monkeypatch
):
    store, identity = device
    record = collect(store, identity, [KONG_MOTHER], method="family_account", payer="孔丽").record
    roster = store.insured_person

    def without_the_holder(insured_id, with_accumulators=True):
        return None if insured_id == KONG_DAUGHTER else roster(insured_id, with_accumulators)

    monkeypatch.setattr(store, "insured_person", without_the_holder)
    refused("FAMILY_ACCOUNT_HOLDER_UNKNOWN", premiums.reverse_premium, store, identity,
            record["tx_id"], operator="doc01", reason="退", now=NOW)  # fmt: skip
    assert len(list(store.records())) == 1
