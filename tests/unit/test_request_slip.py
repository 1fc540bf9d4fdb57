"""The resident's slip of a request (drivers/receipt.py `layout_request_slip`): what it
says for each state, masked data only, and every line within the paper."""

import pytest

from drivers import escpos
from drivers.receipt import layout_request_slip

ENROLMENT = {
    "tx_id": "5b0f9d1e-0000-4000-8000-00000000abcd",
    "seq": 42,
    "kind": "enrolment",
    "created_at": "2026-11-22T09:30:00+08:00",
    "insured_id": None,
    "name": "王小梅",
    "state": "pending",
    "reason": None,
    "result": None,
    "decided_at": None,
    "attachments": [],
    "details": {"insurance_type": "resident", "category": None, "village": "东村"},
    "applicant": {
        "name": "王小梅",
        "gender": "F",
        "birth_date": "1990-03-07",
        "id_number_masked": "320115********0027",
    },
}


def slip(view: dict, width: int = 32) -> str:
    return layout_request_slip(view, clinic="张村卫生室", device_id="dev-0123", width=width).text()


@pytest.mark.parametrize("width", [32, 48])
def test_a_pending_enrolment_shows_the_masked_applicant_and_fits_the_paper(width):
    text = slip(ENROLMENT, width)
    for expected in (
        "业务申请回执",
        "张村卫生室",
        "参保登记",
        "2026年11月22日 09:30",
        "流水号 42",
        "姓名 王小梅",
        "性别 女",
        "身份证号 320115********0027",
        "状态 待上传",
    ):
        assert expected in text, text
    assert all(escpos.display_width(line) <= width for line in text.splitlines())
    assert ENROLMENT["tx_id"][:20] in text.replace("\n", "").replace(" ", "")


def test_an_approved_enrolment_names_the_new_insured_id():
    approved = {
        **ENROLMENT,
        "state": "approved",
        "decided_at": "2026-11-23T10:00:00+08:00",
        "result": {"insured_id": "32011500009001", "roster_version": "2026.11.1"},
    }
    text = slip(approved)
    assert "状态 已批准" in text and "医保编号 32011500009001" in text
    assert "名册更新后即可就医结算" in text and "审核时间 2026年11月23日 10:00" in text


def test_a_rejected_chronic_application_says_why():
    rejected = {
        **ENROLMENT,
        "kind": "chronic_certificate",
        "insured_id": "32011500000002",
        "applicant": None,
        "state": "rejected",
        "reason": "诊断证明不清晰，请到县医院重新开具",
        "attachments": [{"sha256": "0" * 64}],
        "details": {
            "disease_code": "I10",
            "disease_name": "高血压",
            "scheme": "two_diseases",
            "hospital": None,
            "diagnosed_on": None,
        },
    }
    text = slip(rejected)
    for expected in (
        "门诊慢特病申请",
        "医保编号 32011500000002",
        "病种 I10 高血压",
        "类别 两病",
        "附件照片 1 张",
        "状态 已退回",
        "原因 诊断证明不清晰",
    ):
        assert expected in text, text
    assert "身份证号" not in text


def test_a_complaints_answer_and_a_filing_number_are_printed():
    complaint = {
        **ENROLMENT,
        "kind": "complaint",
        "applicant": None,
        "insured_id": "32011500000001",
        "state": "rejected",
        "reason": "结算无误",
        "details": {"settlement_tx_id": "t", "settlement_seq": 7, "grounds": "自付太多"},
        "result": {
            "answer": "按政策报销比例计算无误",
            "recomputed": None,
            "device": None,
            "correction": False,
        },
    }
    text = slip(complaint)
    assert "申诉结算 流水号 7" in text and "答复 按政策报销比例计算无误" in text
    filing = {
        **ENROLMENT,
        "kind": "cross_region_filing",
        "applicant": None,
        "state": "approved",
        "insured_id": "32011500000003",
        "details": {
            "filing_type": "referral",
            "destination": "南京市",
            "valid_from": "2026-12-01",
            "valid_to": None,
            "reason": "转诊",
        },
        "result": {"filing_no": "YD2026-0001", "valid_from": "2026-12-01", "valid_to": None},
    }
    text = slip(filing)
    assert "备案类型 转诊转院" in text and "备案号 YD2026-0001" in text
    assert "有效期 2026-12-01 至 长期" in text
