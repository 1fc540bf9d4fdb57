"""The 日结 report: a layout of the close record and the records it covers. Its totals by
insurance type, visit type and payer add up to the close's net; the cash to hand is the
net cash; the paper layout fits 58 and 80 mm paper and has the signature lines."""

import pytest

from edge.domain.records import MONEY_FIELDS, daily_close_body
from edge.domain.reports import (
    Person,
    close_report,
    daily_close_report,
    display_width,
    report_lines,
)


def result(total: int, fund: int, cash: int, **others: int) -> dict:
    return {"total": total, "fund": fund, "cash": cash, "assistance": 0, "personal_account": 0,
            "critical_illness": 0, "family_account": 0, "supplements": [], **others}  # fmt: skip


def settlement(seq: int, insured_id: str, visit_type: str, res: dict) -> dict:
    return {"seq": seq, "tx_id": f"tx-{seq}", "kind": "settlement",
            "created_at": f"2026-11-22T09:{seq:02d}:00+08:00",
            "body": {"insured_id": insured_id, "operator": "doc01", "needs_review": [],
                     "visit": {"visit_type": visit_type}, "result": res}}  # fmt: skip


def reversal(seq: int, of: dict, reason: str = "录入错误") -> dict:
    amounts = {name: of["body"]["result"].get(name, 0) for name in MONEY_FIELDS}
    amounts["oth_pay"] = sum(s["amount"] for s in of["body"]["result"]["supplements"])
    return {"seq": seq, "tx_id": f"tx-{seq}", "kind": "reversal",
            "created_at": f"2026-11-22T10:{seq:02d}:00+08:00",
            "body": {"insured_id": of["body"]["insured_id"], "operator": "doc01",
                     "reverses": of["tx_id"], "reverses_seq": of["seq"], "reason": reason,
                     "amounts": amounts}}  # fmt: skip


PEOPLE = {"A": Person("张三", "resident"), "B": Person("李四", "employee"),
          "C": Person("王五", "resident")}  # fmt: skip
RECORDS = [
    settlement(1, "A", "general", result(2000, 1000, 1000)),
    settlement(2, "B", "chronic", result(5000, 3000, 500, personal_account=1500)),
    settlement(
        3,
        "C",
        "general",
        result(
            3000,
            1500,
            700,
            assistance=300,
            supplements=[
                {"name": "veterans_second_compensation", "pays_as": "oth_pay", "amount": 500}
            ],
        ),
    ),
]
RECORDS.append(reversal(4, RECORDS[0]))
BODY = daily_close_body(RECORDS, business_day="2026-11-22", operator="doc01")


def report(**kwargs):
    return close_report(BODY, RECORDS, device_id="dev-1", created_at="2026-11-22T18:05:00+08:00",
                        people=PEOPLE, operator_name="王医生", **kwargs)  # fmt: skip


def test_every_grouping_adds_up_to_the_closes_net():
    r = report()
    assert sum(g.total for g in r.by_insurance_type) == BODY["net"]["total"] == 8000
    assert sum(g.total for g in r.by_visit_type) == BODY["net"]["total"]
    assert sum(g.cash for g in r.by_insurance_type) == BODY["net"]["cash"]
    assert sum(fen for _, _, fen in r.by_payer) == BODY["net"]["total"]
    assert dict((p, fen) for p, _, fen in r.by_payer) == {
        "fund": 4500,
        "assistance": 300,
        "oth_pay": 500,
        "personal_account": 1500,
        "cash": 1200,
    }
    assert r.cash_to_hand == BODY["net"]["cash"] == 1200 and r.warnings == ()


def test_the_groups_name_insurance_and_visit_types_in_chinese_with_reversals_netted():
    r = report()
    groups = {g.label: (g.settlements, g.reversals, g.total) for g in r.by_insurance_type}
    assert groups == {"居民医保": (2, 1, 3000), "职工医保": (1, 0, 5000)}
    visits = {g.label: (g.settlements, g.reversals, g.total) for g in r.by_visit_type}
    assert visits == {"普通门诊": (2, 1, 3000), "慢特病门诊": (1, 0, 5000)}


def test_the_transaction_list_has_every_record_and_a_reversal_is_negative():
    r = report()
    assert [(t.seq, t.kind, t.name) for t in r.transactions] == [
        (1, "settlement", "张三"), (2, "settlement", "李四"), (3, "settlement", "王五"),
        (4, "reversal", "张三")]  # fmt: skip
    assert r.transactions[3].amounts["total"] == -2000 and r.transactions[3].reverses_seq == 1


def test_a_reversal_of_a_settlement_closed_before_finds_its_visit_type_in_the_originals():
    body = daily_close_body(RECORDS[3:], business_day="2026-11-22", operator="doc01")
    r = close_report(body, RECORDS[3:], device_id="d", created_at="2026-11-22T18:00:00+08:00",
                     people=PEOPLE, originals={"tx-1": RECORDS[0]})  # fmt: skip
    assert r.transactions[0].visit_type == "普通门诊" and r.net["total"] == -2000
    assert r.cash_to_hand == -1000  # the doctor gave cash back


def test_records_that_do_not_add_up_to_the_close_are_flagged():
    r = close_report(BODY, RECORDS[:2], device_id="d", created_at="2026-11-22T18:00:00+08:00")
    assert r.warnings and "不一致" in r.warnings[0]


@pytest.mark.parametrize("width", [32, 48])
def test_the_paper_layout_fits_and_has_every_part(width):
    lines = report_lines(report(seq=5, record_hash="ab" * 32), width)
    text = "\n".join(line.text for line in lines)
    assert max(display_width(line.text) for line in lines) <= width
    for expected in ("营业日 2026年11月22日", "操作员 王医生", "签名时间 2026年11月22日 18:05",
                     "交易明细", "按险种", "按门诊类别", "按支付方", "现金合计（应交）",
                     "冲销明细", "原因 录入错误", "医生签字：", "复核人签字："):  # fmt: skip
        assert expected in text, expected
    cash = next(line for line in lines if line.text.startswith("现金合计"))
    assert cash.bold and cash.text.endswith("¥12.00") and display_width(cash.text) == width


def test_a_preview_says_it_is_not_signed_and_has_no_signature_lines():
    text = "\n".join(line.text for line in report_lines(report(signed=False)))
    assert "预览：尚未签名" in text and "预览时间" in text and "医生签字" not in text


def test_the_command_lines_report_of_a_close_record_alone_has_its_totals():
    record = {"device_id": "dev-1", "seq": 5, "hash": "ab" * 32, "body": BODY,
              "created_at": "2026-11-22T18:05:00+08:00"}  # fmt: skip
    text = daily_close_report(record)
    assert text.splitlines()[0].strip() == "日结单" and "结算 3笔" in text
    assert "现金合计（应交）" in text and "交易明细" not in text and "abababab" in text
    assert "交易明细" in daily_close_report(record, RECORDS, people=PEOPLE)
