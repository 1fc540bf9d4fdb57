"""Receipts: the pure layout of a ledger record, its ESC/POS bytes, the QR code anyone can
verify with the device's public key; one contract for the printer over an in-process
emulator, a real pseudo-terminal and loop://; and `clinic receipt`."""

from __future__ import annotations

import copy
import json
import os
import re
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
import segno
from click.testing import CliRunner
from clock import NOW
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers import escpos
from drivers.base45 import b45decode, b45encode
from drivers.escpos import PrinterStatus
from drivers.printer import EscposPrinter, PrinterEmulator, PrinterError, printer_for_url
from drivers.receipt import (
    QR_PREFIX,
    ZDICT_V1,
    QrCode,
    ReceiptError,
    ReceiptFacts,
    layout_receipt,
    receipt_escpos,
    receipt_qr_payload,
    verify_receipt_qr,
)
from edge import services
from edge.console import main
from edge.domain.documents import visit_from_json
from edge.domain.ledger import b64url, canonical, new_record, raw_public_key, verify_chain

DEVICE_KEY = Ed25519PrivateKey.generate()

SETTLEMENT_BODY = {
    "insured_id": "32011500000002",
    "operator": "doc01",
    "visit": {
        "date": "2026-11-22", "visit_type": "chronic", "diagnoses": ["I10.x00"],
        "use_personal_account": False,
        "lines": [
            {"code": "XC08CAB128A001", "name": "硝苯地平缓释片", "price": "6.80", "quantity": "2",
             "unit": "盒"},
            {"code": "250302002000000", "name": "血糖测定", "price": "6.00", "quantity": "1",
             "unit": "次"},
        ],
    },
    "catalog_version": "2026.11.1", "policy_version": "2026.1", "rules_version": 1,
    "accumulators_before": {"deductible_used": 0, "fund_paid": 0, "assistance_paid": 0,
                            "account_balance": 0},
    "result": {
        "eligible": True, "total": 1960, "fund": 1372, "assistance": 300,
        "personal_account": 0, "cash": 288, "inscp_total": 1960, "deductible_applied": 0,
        "fulamt_total": 0, "overlmt_total": 0, "preselfpay_total": 0, "policy_selfpay": 588,
        "lines": [
            {"code": "XC08CAB128A001", "amount": 1360, "fulamt_ownpay": 0, "overlmt_selfpay": 0,
             "preselfpay": 0, "inscp": 1360, "reasons": []},
            {"code": "250302002000000", "amount": 600, "fulamt_ownpay": 0,
             "overlmt_selfpay": 0, "preselfpay": 0, "inscp": 600, "reasons": []},
        ],
        "accumulators_after": {"deductible_used": 0, "fund_paid": 1372, "assistance_paid": 300,
                               "account_balance": 0},
        "warnings": [],
    },
    "needs_review": [],
}  # fmt: skip


def sealed(kind: str = "settlement", body: dict | None = None, seq: int = 7) -> dict:
    return new_record(
        device_id="dev-0123456789ab", seq=seq, kind=kind,
        tx_id="0193d0c4-5a6b-7c8d-9e0f-a1b2c3d4e5f6", created_at="2026-11-22T09:41:07+08:00",
        prev_hash="9f" * 32, body=copy.deepcopy(body or SETTLEMENT_BODY), private_key=DEVICE_KEY,
    )  # fmt: skip


SETTLEMENT = sealed()


FACTS = ReceiptFacts(
    patient_name="孔丽", id_number_masked="320115********1234", insurance_type="employee",
    diagnoses=(("I10.x00", "原发性高血压"),),
    item_classes={"XC08CAB128A001": "A", "250302002000000": "B"}, annual_cap=300000,
)  # fmt: skip


def layout(record=SETTLEMENT, **kwargs):
    return layout_receipt(record, clinic="张村卫生室", operator_name="王医生", **kwargs)


def paper(receipt) -> list[str]:
    return [line for line in receipt.text().splitlines() if not line.startswith("[QR")]


class TestReceiptLayout:
    @pytest.mark.parametrize("width", [32, 48])
    def test_a_settlement_receipt_is_a_chinese_settlement_form_with_every_field(self, width):
        text = layout(facts=FACTS, width=width).text()
        for expected in [
            "医保结算单", "张村卫生室", "设备 dev-0123456789ab", "流水号 7",
            "时间 2026年11月22日 09:41", "操作员 王医生", "姓名 孔丽",
            "身份证号 320115********1234", "医保编号 32011500000002", "险种 职工医保",
            "门诊类别 慢特病门诊", "就诊日期 2026年11月22日", "诊断 I10.x00 原发性高血压",
            "硝苯地平缓释片", "血糖测定", f"校验码 {SETTLEMENT['hash'][:16]}", "扫码验签",
        ]:  # fmt: skip
            assert expected in text, expected
        rows = [" ".join(line.split()) for line in paper(layout(facts=FACTS, width=width))]
        assert "甲类 ¥6.80×2盒 ¥13.60" in rows and "乙类 ¥6.00×1次 ¥6.00" in rows
        assert rows.count("自付 ¥0.00 自费 ¥0.00") == 2  # each line its own split
        assert "个人账户余额 ¥0.00" in rows  # an employee: the balance after the visit
        assert "本年慢特病门诊统筹已用 ¥13.72" in rows and "本年统筹剩余 ¥2,986.28" in rows

    @pytest.mark.parametrize("width", [32, 48])
    def test_the_receipt_is_chinese_only(self, width):
        for record in (SETTLEMENT, v2_settlement()):
            text = "\n".join(paper(layout(record, facts=FACTS, width=width)))
            for code in ("dev-0123456789ab", "I10.x00", record["hash"][:16], record["tx_id"]):
                text = text.replace(code, "")  # codes, not words
            words = [w for w in re.findall(r"[A-Za-z]+", text) if not re.fullmatch("[a-f]+", w)]
            assert words == [], words

    def test_each_lines_own_and_self_paid_parts_and_the_totals(self):
        body = copy.deepcopy(SETTLEMENT_BODY)
        body["result"]["lines"][0].update(preselfpay=136, overlmt_selfpay=100, inscp=1124)
        body["result"]["lines"][1].update(fulamt_ownpay=600, inscp=0)
        body["result"].update(preselfpay_total=136, overlmt_total=100, fulamt_total=600,
                              deductible_applied=200, policy_selfpay=500)  # fmt: skip
        rows = [" ".join(line.split()) for line in paper(layout(sealed(body=body), facts=FACTS))]
        assert rows.count("自付 ¥2.36 自费 ¥0.00") == 1 and "自付 ¥0.00 自费 ¥6.00" in rows
        assert "其中 自付 ¥2.36" in rows and "自费 ¥6.00" in rows
        assert "政策内个人负担 ¥5.00" in rows and "含起付线 ¥2.00" in rows

    def test_amounts_come_from_integer_fen_and_line_up_at_the_right_edge(self):
        lines = layout().text().splitlines()
        rows = {line.split()[0]: line for line in lines if "¥" in line and not line.startswith(" ")}
        assert rows["医疗费总额"].endswith("¥19.60") and rows["统筹基金"].endswith("¥13.72")
        assert rows["医疗救助"].endswith("¥3.00") and "个人账户" not in rows  # paid nothing
        assert rows["现金支付"].endswith("¥2.88")
        assert "  ¥6.80×2盒" in layout().text()  # no class known without the catalog
        assert {escpos.display_width(row) for row in rows.values()} == {32}

    def test_no_line_is_wider_than_the_paper(self):
        body = copy.deepcopy(SETTLEMENT_BODY)
        body["visit"]["lines"][0]["name"] = "复方甘草酸苷注射液（规格二十毫升每支，十支每盒）"
        record = sealed(body=body)
        for width in (32, 48):
            receipt = layout_receipt(record, clinic="江宁区谷里街道张村村卫生室（第二服务点）",
                                     operator_name="王医生", width=width, facts=FACTS)  # fmt: skip
            assert max(escpos.display_width(line) for line in paper(receipt)) <= width

    def test_the_layout_is_a_pure_function_of_the_record_and_the_names(self):
        assert layout(facts=FACTS) == layout(facts=FACTS)
        assert layout().blocks != layout_receipt(SETTLEMENT, clinic="李村卫生室").blocks

    def test_without_an_operator_name_the_operator_id_is_shown(self):
        assert "操作员 doc01" in layout_receipt(SETTLEMENT, clinic="X").text()

    def test_a_settlement_needing_review_says_so(self):
        body = {**copy.deepcopy(SETTLEMENT_BODY), "needs_review": ["OFFLINE_TOO_LONG"]}
        assert "待县级复核" in layout(sealed(body=body)).text()

    def test_a_reversal_receipt_shows_what_is_given_back(self):
        body = {"reverses": SETTLEMENT["tx_id"], "reverses_seq": 7, "insured_id": "32011500000002",
                "operator": "doc01", "reason": "录入错误",
                "amounts": {"total": 1960, "fund": 1372, "assistance": 300,
                            "personal_account": 0, "cash": 288},
                "accumulators_after": {}}  # fmt: skip
        text = layout(sealed("reversal", body, seq=8), facts=FACTS).text()
        assert "医保结算冲销单" in text and "冲销原流水号 7" in text and "姓名 孔丽" in text
        assert "冲销原因 录入错误" in text and "-¥19.60" in text and "-¥2.88" in text

    @pytest.mark.parametrize("width", [32, 48])
    def test_a_daily_close_receipt_shows_counts_totals_cash_to_hand_and_signatures(self, width):
        totals = {"count": 2, "total": 3920, "fund": 2744, "assistance": 600,
                  "personal_account": 0, "cash": 576}  # fmt: skip
        body = {"business_day": "2026-11-22", "operator": "doc01", "from_seq": 1, "to_seq": 9,
                "settlements": totals, "reversals": {**totals, "count": 0},
                "net": {k: 0 for k in totals if k != "count"}, "needs_review": 0}  # fmt: skip
        receipt = layout(sealed("daily_close", body, seq=10), width=width)
        text = receipt.text()
        assert "日结单" in text and "营业日 2026年11月22日" in text and "结算 2笔" in text
        assert "现金合计（应交）" in text and "医生签字" in text and "复核人签字" in text
        assert max(escpos.display_width(line) for line in paper(receipt)) <= width

    def test_an_event_record_has_no_receipt(self):
        with pytest.raises(ReceiptError, match="NOT_PRINTABLE"):
            layout(sealed("event", {"event": "catalog_applied"}))

    def test_a_record_whose_result_lines_do_not_match_its_visit_is_refused(self):
        body = copy.deepcopy(SETTLEMENT_BODY)
        body["result"]["lines"].reverse()
        with pytest.raises(ReceiptError, match="BAD_RECORD"):
            layout(sealed(body=body))

    def test_a_record_too_large_for_a_qr_code_says_how_to_verify_instead(self):
        body = copy.deepcopy(SETTLEMENT_BODY)
        body["note"] = os.urandom(3000).hex()  # incompressible
        receipt = layout(sealed(body=body))
        assert not any(isinstance(block, QrCode) for block in receipt.blocks)
        assert "请用台账导出核验" in receipt.text()


# A version 2 settlement that goes down the whole chain (the numbers only need to add up).
V2_RESULT_PAYERS = {
    "total": 20000, "fund": 3000, "critical_illness": 1200, "assistance": 2500,
    "personal_account": 4000, "family_account": 1500, "cash": 2900,
    "supplements": [
        {"name": "veterans_second_compensation", "pays_as": "oth_pay", "amount": 4100},
        {"name": "civil_servant_subsidy", "pays_as": "cvlserv_pay", "amount": 800},
        {"name": "county_top_up", "pays_as": "oth_pay", "amount": 0},
    ],
    "fund_limited_by": "visit_cap", "fund_fixed_total": 800,
}  # fmt: skip


def v2_settlement(holder: str | None = "32011500000511", **result) -> dict:
    body = copy.deepcopy(SETTLEMENT_BODY)
    body["rules_version"] = 2
    body["visit"]["use_family_account"] = holder is not None
    body["visit"]["family_account_holder"] = holder
    body["result"].update(copy.deepcopy(V2_RESULT_PAYERS), **result)
    return sealed(body=body)


def amount_rows(text: str) -> list[str]:
    """The lines between the total and the cash, the total and the cash included."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "合计" in line or "总额" in line)
    end = next(i for i, line in enumerate(lines) if line.startswith(("现金支付", "退还现金")))
    return [" ".join(line.split()) for line in lines[start : end + 1]]


class TestVersion2Receipts:
    def test_every_payer_that_paid_is_printed_in_the_chains_order(self):
        text = layout(v2_settlement(), family_holder_name="孔丽").text()
        assert amount_rows(text) == [
            "医疗费总额 ¥200.00",
            "其中 自付 ¥0.00",
            "自费 ¥0.00",
            "政策内个人负担 ¥5.88",
            "统筹基金 ¥30.00",
            "本次统筹支付已达单次限额",
            "大病保险 ¥12.00",
            "医疗救助 ¥25.00",
            "优抚医疗补助 ¥41.00",
            "优抚二次补偿",
            "公务员医疗补助 ¥8.00",
            "公务员医疗补助",
            "个人账户 ¥40.00",
            "家庭共济 ¥15.00",
            "孔丽的个人账户",
            "现金支付 ¥29.00",
        ]

    def test_without_the_holders_name_the_family_account_names_the_holders_id(self):
        text = layout(v2_settlement()).text()
        assert "  32011500000511的个人账户" in text.splitlines()

    def test_a_supplement_the_receipt_does_not_know_is_printed_by_its_own_name(self):
        supplements = [
            {"name": "county_top_up", "pays_as": "oth_pay", "amount": 4100},
            {"name": "civil_servant_subsidy", "pays_as": "cvlserv_pay", "amount": 800},
        ]
        text = layout(v2_settlement(supplements=supplements)).text()
        assert "优抚医疗补助 ¥41.00" in amount_rows(text)
        assert "  county_top_up" in text.splitlines()

    @pytest.mark.parametrize("width", [32, 48])
    def test_every_row_fits_the_paper_and_amounts_line_up_at_the_right(self, width):
        receipt = layout_receipt(v2_settlement(), clinic="张村卫生室", width=width,
                                 family_holder_name="欧阳娜娜")  # fmt: skip
        lines = [line for line in receipt.text().splitlines() if not line.startswith("[QR")]
        assert max(escpos.display_width(line) for line in lines) <= width
        rows = [line for line in lines if "¥" in line]  # items and amounts, right-aligned
        assert len(rows) == 17 and {escpos.display_width(row) for row in rows} == {width}

    def test_a_reversal_gives_back_every_payer_of_a_version_2_settlement(self):
        amounts = {"total": 20000, "fund": 3000, "critical_illness": 1200, "assistance": 2500,
                   "cvlserv_pay": 800, "oth_pay": 4100, "personal_account": 4000,
                   "family_account": 1500, "cash": 2900}  # fmt: skip
        body = {"reverses": SETTLEMENT["tx_id"], "reverses_seq": 7, "insured_id": "32011500000027",
                "operator": "doc01", "reason": "录入错误", "amounts": amounts,
                "accumulators_after": {}}  # fmt: skip
        text = layout(sealed("reversal", body, seq=8), family_holder_name="孔丽").text()
        assert amount_rows(text) == [
            "退还合计 -¥200.00", "统筹基金 -¥30.00", "大病保险 -¥12.00", "医疗救助 -¥25.00",
            "公务员医疗补助 -¥8.00", "优抚医疗补助 -¥41.00", "个人账户 -¥40.00",
            "家庭共济 -¥15.00", "孔丽的个人账户", "退还现金 -¥29.00",
        ]  # fmt: skip

    def test_a_daily_close_prints_the_payers_the_close_has_amounts_for(self):
        paid = {"count": 2, "total": 5000, "fund": 2000, "critical_illness": 0, "assistance": 0,
                "cvlserv_pay": 0, "oth_pay": 1000, "personal_account": 0,
                "family_account": 700, "cash": 1300}  # fmt: skip
        body = {"business_day": "2026-11-22", "operator": "doc01", "from_seq": 1, "to_seq": 2,
                "settlements": paid, "reversals": dict.fromkeys(paid, 0),
                "net": {k: v for k, v in paid.items() if k != "count"},
                "needs_review": 0}  # fmt: skip
        text = layout(sealed("daily_close", body, seq=3)).text()
        lines = text.splitlines()
        payers = lines[lines.index("按支付方") + 1 : lines.index("按支付方") + 5]
        assert [line.split() for line in payers] == [
            ["统筹基金", "¥20.00"],
            ["优抚医疗补助", "¥10.00"],
            ["家庭共济", "¥7.00"],
            ["现金", "¥13.00"],
        ]
        assert "救助" not in text and "个人账户" not in text


class TestReceiptQr:
    def test_the_qr_code_carries_the_signed_record_for_anyone_with_the_public_key(self):
        verified = verify_receipt_qr(receipt_qr_payload(SETTLEMENT), DEVICE_KEY.public_key())
        assert verified.record == SETTLEMENT and verified.hash == SETTLEMENT["hash"]

    def test_the_qr_text_uses_only_qr_alphanumeric_characters(self):
        payload = receipt_qr_payload(SETTLEMENT)
        assert payload.startswith(QR_PREFIX)
        assert set(payload) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
        assert segno.make_qr(payload, error="M").mode == "alphanumeric"

    def test_a_typical_settlement_fits_a_qr_code_a_58_mm_printer_prints_at_4_dots(self):
        code = segno.make_qr(receipt_qr_payload(SETTLEMENT), error="M")
        assert 384 // code.symbol_size(border=4)[0] >= 4

    def test_another_devices_key_does_not_verify_it(self):
        with pytest.raises(ReceiptError, match="BAD_SIGNATURE"):
            verify_receipt_qr(
                receipt_qr_payload(SETTLEMENT), Ed25519PrivateKey.generate().public_key()
            )

    def test_an_altered_record_does_not_verify(self):
        signature = b45decode(receipt_qr_payload(SETTLEMENT)[len(QR_PREFIX) :])[:64]
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=ZDICT_V1)
        altered = deflate.compress(canonical({**SETTLEMENT, "seq": 8})) + deflate.flush()
        with pytest.raises(ReceiptError, match="BAD_SIGNATURE"):
            verify_receipt_qr(QR_PREFIX + b45encode(signature + altered), DEVICE_KEY.public_key())

    @pytest.mark.parametrize(
        "payload",
        ["", "https://example.com", "YBR1:", "YBR1:abc", "YBR1:" + b45encode(bytes(80)),
         "YBR1:" + b45encode(os.urandom(64) + b"\x03\x00")],
    )  # fmt: skip
    def test_text_that_is_not_a_receipt_qr_code_is_bad_qr(self, payload):
        with pytest.raises(ReceiptError, match="BAD_QR"):
            verify_receipt_qr(payload, DEVICE_KEY.public_key())

    def test_a_cut_qr_text_is_bad_qr(self):
        payload = receipt_qr_payload(SETTLEMENT)
        with pytest.raises(ReceiptError, match="BAD_QR"):
            verify_receipt_qr(payload[:-30], DEVICE_KEY.public_key())

    def test_base45_matches_rfc_9285(self):
        assert b45encode(b"AB") == "BB8" and b45encode(b"Hello!!") == "%69 VD92EX0"
        assert b45decode("QED8WEX0") == b"ietf!"
        for bad in ("GGW", "A", "ab"):
            with pytest.raises(ValueError):
                b45decode(bad)


class TestEscpos:
    def test_the_bytes_start_with_initialise_and_gb18030_mode_and_end_with_a_cut(self):
        data = receipt_escpos(layout())
        assert data.startswith(bytes.fromhex("1B40 1C26"))
        assert data.endswith(bytes.fromhex("1D564203"))
        assert "医保结算单".encode("gb18030") in data

    def test_the_printed_text_is_exactly_the_layout(self):
        receipt = layout()
        printed = escpos.render_text(receipt_escpos(receipt))
        assert printed.startswith(receipt.text() + "\n")
        assert printed.splitlines()[-1].endswith("✂")

    def test_the_printers_qr_generator_gets_the_receipt_qr_text(self):
        data = receipt_escpos(layout())
        assert escpos.qr_payloads(data) == [receipt_qr_payload(SETTLEMENT).encode()]
        assert bytes.fromhex("1D286B0300314304") in data  # module size 4 on 58 mm paper

    def test_a_raster_qr_code_is_the_segno_matrix_scaled_to_the_module_size(self):
        data = receipt_escpos(layout(), qr="raster")
        raster = next(c for c in escpos.parse(data) if c.name == "raster")
        code = segno.make_qr(receipt_qr_payload(SETTLEMENT), error="M")
        size = code.symbol_size(border=4)[0]
        scale = 384 // size
        width_bytes = raster.arg
        assert width_bytes == (size * scale + 7) // 8
        rows = [list(row) for row in code.matrix_iter(scale=scale, border=4)]
        row = rows[4 * scale + 1]  # inside the finder pattern's top edge
        bits = [(raster.data[(4 * scale + 1) * width_bytes + i // 8] >> (7 - i % 8)) & 1
                for i in range(len(row))]  # fmt: skip
        assert bits == [int(bool(b)) for b in row]
        assert "[image" in escpos.render_text(data) and not escpos.qr_payloads(data)

    def test_status_bytes_round_trip_and_odd_answers_are_not_status(self):
        for status in (PrinterStatus(), PrinterStatus(paper_out=True),
                       PrinterStatus(cover_open=True), PrinterStatus(paper_near_end=True),
                       PrinterStatus(error=True)):  # fmt: skip
            answers = [escpos.encode_status(status, n) for n in (1, 2, 4)]
            assert all(escpos.valid_status_byte(a) for a in answers)
            assert escpos.decode_status(*answers).problem == status.problem
        assert escpos.decode_status(0x12, 0x12, 0x12).problem is None
        assert escpos.decode_status(0x1A, 0x32, 0x72).problem == "PAPER_OUT"
        assert not escpos.valid_status_byte(0x10) and not escpos.valid_status_byte(0x93)

    def test_the_stream_parser_waits_for_whole_commands(self):
        qr = escpos.qr_code(b"ABC", module_size=4)
        assert escpos.next_command(qr[:6]) is None
        assert escpos.next_command(bytes.fromhex("1004")) is None
        command, length = escpos.next_command(bytes.fromhex("100401 41"))
        assert (command.name, command.arg, length) == ("status", 1, 3)

    def test_a_character_gb18030_cannot_hold_is_an_error_not_a_question_mark(self):
        with pytest.raises(UnicodeEncodeError):
            escpos.text_line("\ud800")


# ---- the printer, over every kind of line ------------------------------------------------------


class EmulatedLine:
    """emulated:///FILE: the printer emulator wired straight to the driver."""

    answers_status = True

    def __init__(self, tmp_path: Path) -> None:
        self.printer = printer_for_url(f"emulated://{tmp_path / 'printed.bin'}")
        self.emulator = self.printer.port.emulator

    def printed_text(self) -> str:
        return self.emulator.text()

    def close(self) -> None:
        self.printer.close()


class PtyLine:
    """A real pseudo-terminal: the driver opens /dev/pts/N with pyserial, the emulator
    serves the master side as the printer at the end of a serial cable."""

    answers_status = True

    def __init__(self, tmp_path: Path) -> None:
        self.master, self.slave = os.openpty()
        self.emulator = PrinterEmulator(tmp_path / "printed.bin").serve_fd(self.master)
        self.printer = printer_for_url(os.ttyname(self.slave))

    def printed_text(self) -> str:
        assert self.emulator.wait_for_cuts(1, 5)
        return self.emulator.text()

    def close(self) -> None:
        self.printer.close()
        self.emulator.stop()
        os.close(self.slave)
        os.close(self.master)


class LoopLine:
    """loop://: what the driver writes comes straight back; a line with no printer on it
    to answer status, so this printer is used as a TX-only one."""

    answers_status = False

    def __init__(self, tmp_path: Path) -> None:
        self.printer = printer_for_url("loop://", check_status=False)

    def printed_text(self) -> str:
        port = self.printer.port
        return escpos.render_text(port.read(port.in_waiting))

    def close(self) -> None:
        self.printer.close()


LINES = {"emulated": EmulatedLine, "pty": PtyLine, "loop": LoopLine}


@pytest.fixture(params=sorted(LINES))
def line(request, tmp_path):
    made = LINES[request.param](tmp_path)
    yield made
    made.close()


@pytest.fixture(params=["emulated", "pty"])
def answering_line(request, tmp_path):
    made = LINES[request.param](tmp_path)
    yield made
    made.close()


class TestEveryPrinterLine:
    def test_a_printed_receipt_arrives_intact(self, line):
        receipt = layout()
        line.printer.print_bytes(receipt_escpos(receipt))
        assert line.printed_text().startswith(receipt.text())

    def test_a_ready_printer_reports_ready(self, answering_line):
        assert answering_line.printer.status() == PrinterStatus()

    @pytest.mark.parametrize(
        ("status", "code"),
        [(PrinterStatus(paper_out=True), "PAPER_OUT"),
         (PrinterStatus(cover_open=True), "COVER_OPEN"),
         (PrinterStatus(error=True), "PRINTER_FAULT"),
         (PrinterStatus(online=False), "OFFLINE")],
    )  # fmt: skip
    def test_a_printer_that_cannot_print_raises_and_prints_nothing(
        self, answering_line, status, code
    ):
        answering_line.emulator.status = status
        with pytest.raises(PrinterError) as caught:
            answering_line.printer.print_bytes(receipt_escpos(layout()))
        assert caught.value.code == code
        assert "结算已保存" in str(caught.value) and "settlement is saved" in str(caught.value)
        assert answering_line.emulator.printed() == b""

    def test_after_loading_paper_the_receipt_prints_again(self, answering_line):
        answering_line.emulator.status = PrinterStatus(paper_out=True)
        with pytest.raises(PrinterError):
            answering_line.printer.print_bytes(receipt_escpos(layout()))
        answering_line.emulator.status = PrinterStatus()
        answering_line.printer.print_bytes(receipt_escpos(layout()))
        assert "医保结算单" in answering_line.printed_text()

    def test_paper_running_low_prints_and_says_so(self, answering_line):
        answering_line.emulator.status = PrinterStatus(paper_near_end=True)
        status = answering_line.printer.print_bytes(receipt_escpos(layout()))
        assert status.paper_near_end and status.problem is None

    def test_a_printer_that_does_not_answer_is_no_answer(self, answering_line):
        answering_line.emulator.answers = False
        with pytest.raises(PrinterError, match="NO_ANSWER"):
            answering_line.printer.print_bytes(receipt_escpos(layout()))


def test_a_line_that_echoes_instead_of_answering_is_not_a_printer():
    with printer_for_url("loop://") as printer, pytest.raises(PrinterError, match="BAD_ANSWER"):
        printer.status()


@pytest.mark.parametrize("url", ["/dev/does-not-exist", "emulated://", "emulated:///x?status=wet"])
def test_printer_urls_that_cannot_work_are_refused(url):
    with pytest.raises(PrinterError):
        printer_for_url(url)


def test_an_escpos_printer_takes_any_pyserial_like_port(tmp_path):
    emulator = PrinterEmulator(tmp_path / "out.bin")
    from drivers.printer import EmulatorPort

    printer = EscposPrinter(EmulatorPort(emulator))
    printer.print_bytes(escpos.initialise() + escpos.text_line("你好") + escpos.cut())
    assert emulator.text().splitlines()[0] == "你好"


# ---- a real device's ledger, and the command line ----------------------------------------------


@pytest.fixture
def device(demo_store, data_dir):
    identity = services.init_device(demo_store, data_dir, NOW - timedelta(hours=1))
    visit = visit_from_json({"date": "2026-11-22", "visit_type": "general",
                             "diagnoses": ["J06.900"], "use_personal_account": False,
                             "lines": [{"code": "XJ01CAA040A001", "quantity": "2"},
                                       {"code": "110200005000000", "quantity": "1"}]})  # fmt: skip
    recorded = services.settle_visit(demo_store, identity, insured_id="32011500000001",
                                     visit=visit, operator="doc01", now=NOW)  # fmt: skip
    return demo_store, identity, recorded.record


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


class TestReceiptCommands:
    def test_a_real_settlements_receipt_verifies_with_the_devices_public_key(self, device):
        store, identity, record = device
        verified = verify_receipt_qr(receipt_qr_payload(record), identity.public_key)
        assert verified.record == store.record_by_tx(record["tx_id"])

    def test_receipt_print_prints_the_settlement_by_seq(self, device, data_dir, tmp_path):
        out = tmp_path / "printed.bin"
        result = run("receipt", "print", "1", "--printer", f"emulated://{out}",
                     "--data-dir", str(data_dir), "--clinic", "张村卫生室")  # fmt: skip
        assert result.exit_code == 0, result.output
        text = escpos.render_text(out.read_bytes())
        assert "张村卫生室" in text and "操作员 王医生" in text and "姓名 " in text
        assert "甲类" in text or "乙类" in text or "丙类" in text
        payload = escpos.qr_payloads(out.read_bytes())[0].decode()
        assert verify_receipt_qr(payload, device[1].public_key).record["seq"] == 1

    def test_out_of_paper_fails_clearly_keeps_the_settlement_and_reprints_by_tx(
        self, device, data_dir, tmp_path
    ):
        store, identity, record = device
        out = tmp_path / "printed.bin"
        failed = run("receipt", "print", "1", "--printer", f"emulated://{out}?status=paper_out",
                     "--data-dir", str(data_dir))  # fmt: skip
        assert failed.exit_code == 1
        assert "PAPER_OUT" in failed.output and "settlement is saved" in failed.output
        assert not out.exists()
        assert verify_chain(store.records(), identity.public_key).count == 1
        again = run("receipt", "print", record["tx_id"], "--printer", f"emulated://{out}",
                    "--data-dir", str(data_dir))  # fmt: skip
        assert again.exit_code == 0 and "医保结算单" in escpos.render_text(out.read_bytes())

    def test_receipt_print_over_a_serial_line(self, device, data_dir, tmp_path):
        master, slave = os.openpty()
        emulator = PrinterEmulator(tmp_path / "printed.bin").serve_fd(master)
        try:
            result = run("receipt", "print", "1", "--printer", os.ttyname(slave), "--paper", "80",
                         "--qr", "raster", "--data-dir", str(data_dir))  # fmt: skip
        finally:
            emulator.stop()
            os.close(slave)
            os.close(master)
        assert result.exit_code == 0, result.output
        text = emulator.text(width=48)
        assert "[image" in text and "-" * 48 in text

    def test_receipt_show_previews_the_text(self, device, data_dir):
        result = run("receipt", "show", "1", "--data-dir", str(data_dir))
        assert (
            result.exit_code == 0 and "医保结算单" in result.output and "[QR YBR1:" in result.output
        )

    def test_the_family_accounts_holder_is_named_on_the_settlement_and_its_reversal(
        self, device, data_dir
    ):
        store, identity, _ = device
        lines = [{"code": "XJ01CAA040A001", "quantity": "2"}]
        visit = visit_from_json({"date": "2026-11-22", "visit_type": "general",
                                 "diagnoses": ["J06.900"], "use_family_account": True,
                                 "lines": lines})  # fmt: skip
        settled = services.settle_visit(store, identity, insured_id="32011500000027",
                                        visit=visit, operator="doc01", now=NOW)  # fmt: skip
        reversed_ = services.reverse_settlement(
            store, identity, tx_id=settled.record["tx_id"], reason="录入错误", operator="doc01",
            now=NOW,
        )  # fmt: skip
        for seq in (settled.record["seq"], reversed_.record["seq"]):
            shown = run("receipt", "show", str(seq), "--data-dir", str(data_dir)).output
            assert "家庭共济" in shown and "孔丽的个人账户" in shown

    def test_a_record_that_does_not_exist_is_named(self, device, data_dir):
        result = CliRunner().invoke(main, ["receipt", "show", "42", "--data-dir", str(data_dir)])
        assert result.exit_code == 1 and "no record '42'" in result.output

    def test_receipt_verify_checks_a_scanned_qr_text_against_the_device_key(self, device):
        _, identity, record = device
        key = b64url(raw_public_key(identity.public_key))
        result = run("receipt", "verify", receipt_qr_payload(record), "--public-key", key, "--json")
        assert result.exit_code == 0 and json.loads(result.output)["tx_id"] == record["tx_id"]
        other = b64url(raw_public_key(Ed25519PrivateKey.generate().public_key()))
        refused = CliRunner().invoke(main, ["receipt", "verify", receipt_qr_payload(record),
                                            "--public-key", other])  # fmt: skip
        assert refused.exit_code == 1 and "BAD_SIGNATURE" in refused.output
