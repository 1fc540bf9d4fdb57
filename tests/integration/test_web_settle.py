"""Settling a visit through the UI: card and e-voucher, search, live quote, rejections
in plain Chinese next to their field, confirmation."""

from datetime import timedelta

import pytest
from web_support import NOW, store_of

from drivers.cards.errors import MESSAGES as CARD_MESSAGES
from drivers.demo_county_key import DEMO_COUNTY_CODE, demo_county_private_key
from drivers.vouchers import mint_voucher
from edge import services
from edge.domain import offline_risk
from edge.domain.documents import visit_from_json
from edge.domain.money import format_yuan
from web_ui import messages

pytest_plugins = ["web_fixtures"]  # the web UI fixtures

RESIDENT_CARD, RESIDENT = "A32011501", "32011500000001"  # 张建国, 58, male
POOR_CARD = "A32011505"  # 陈志强, extreme poverty
SUSPENDED_CARD = "A32011517"  # 林淑芬, suspended
EMPLOYEE_CARD = "B32011552"  # 唐晓燕, account 2300.00
CHRONIC_CARD = "A32011502"  # 李秀英, hypertension certificate
AMOXICILLIN = "XJ01CAA040A001"
CONSULTATION = "110200005000000"


def read(auth, card: str):
    auth.post("/tester/insert", {"card": card})
    return auth.post("/settle/card")


def put_draft_back(app, rows) -> None:
    store = store_of(app)
    try:
        with store.write_transaction():
            for row in rows:
                store.db.execute(
                    f"INSERT OR REPLACE INTO visit_draft VALUES ({', '.join('?' * len(row))})",
                    list(row),
                )
    finally:
        store.close()


def visit(*lines, visit_type="general", diagnoses=("J06.900",), account=False) -> dict:
    return {
        "visit_type": visit_type,
        "diagnoses": list(diagnoses),
        "lines": [{"code": c, "quantity": q} for c, q in lines],
        "use_personal_account": account,
    }


def floats_in(value) -> list:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in floats_in(v)]
    if isinstance(value, list):
        return [f for v in value for f in floats_in(v)]
    return []


class TestIdentifyingThePatient:
    def test_reading_the_inserted_card_shows_the_patient_panel(self, doctor):
        assert read(doctor, POOR_CARD).headers["Location"] == "/settle"
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "陈志强" in page and "320115********5999" in page
        assert "城乡居民医保" in page and "特困人员" in page and "享受待遇" in page
        assert "本年医疗救助（特困人员）剩余：" in page and "¥10,000.00" in page
        assert "¥400.00" in page  # what is left of the general outpatient fund cap

    def test_an_employee_panel_shows_the_account_balance_and_deductible_left(self, doctor):
        read(doctor, EMPLOYEE_CARD)
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "个人账户：" in page and "¥2,300.00" in page
        assert "¥300.00" in page  # the employee general deductible, none used yet

    def test_the_full_id_number_never_reaches_the_page(self, doctor):
        read(doctor, RESIDENT_CARD)
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "320115********1113" in page and "3201151968" not in page

    def test_reading_with_no_card_in_the_reader_says_so(self, doctor):
        doctor.post("/tester/remove")
        doctor.post("/settle/card")
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "读卡失败：等待插卡超时" in page and "[NO_CARD]" not in page  # no codes

    @pytest.mark.parametrize(
        ("card", "code"),
        [
            ("malformed-tlv", "BAD_TLV"),
            ("bad-gbk", "BAD_GBK"),
            ("locked", "SECURITY_STATUS"),
            ("invalidated", "FILE_INVALIDATED"),
            ("unknown-aid", "FILE_NOT_FOUND"),
            ("pulled", "CARD_REMOVED"),
            ("wrong-length", "BAD_LENGTH"),
            ("unknown-tag", "UNKNOWN_TAG"),
        ],
    )
    def test_a_broken_card_is_explained_in_chinese_and_loads_no_patient(self, doctor, card, code):
        read(doctor, card)
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert CARD_MESSAGES[code][0] in page and code not in page
        assert 'id="patient-name"' not in page and "Traceback" not in page
        assert 'id="lookup-form"' not in page  # an expired card only: test_web_drafts.py

    def test_the_card_endpoint_reports_an_inserted_card(self, doctor):
        assert doctor.client.get("/api/card").json == {
            "present": False, "insertions": 0, "patient": False,
        }  # fmt: skip
        doctor.post("/tester/insert", {"card": RESIDENT_CARD})
        doctor.post("/tester/insert", {"card": POOR_CARD})
        state = doctor.client.get("/api/card").json
        assert state["present"] is True and state["insertions"] == 2

    def test_the_card_endpoint_reports_a_reader_that_is_not_there(self, web_dir, clock):
        from web_support import Auth, app_config

        from web_ui.app import create_app

        app = create_app(app_config(web_dir, clock, CARD_READER="nosuch://"))
        auth = Auth(app.test_client())
        auth.sign_in("doc01")
        state = auth.client.get("/api/card").json
        assert state["present"] is False and state["error"]["code"] == "BAD_URL"
        assert state["error"]["message"] == "读卡器地址无法识别"

    def test_an_e_voucher_identifies_the_patient_once(self, doctor):
        token = mint_voucher(demo_county_private_key(), insured_id=RESIDENT,
                             county=DEMO_COUNTY_CODE, now=NOW)  # fmt: skip
        doctor.post("/settle/voucher", {"token": token})
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "张建国" in page and "电子凭证" in page
        # cleared before settling: the voucher is not used up
        doctor.post("/settle/clear")
        doctor.post("/settle/voucher", {"token": token})
        assert 'id="patient-name"' in doctor.client.get("/settle").get_data(as_text=True)
        assert doctor.post_json("/api/settle", visit((AMOXICILLIN, "1"))).json["ok"] is True
        doctor.post("/settle/voucher", {"token": token})
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "此电子凭证已使用过" in page and 'id="patient-name"' not in page

    @pytest.mark.parametrize(
        ("token", "message"),
        [
            ("hello", "不是医保电子凭证二维码"),
            ("YBV1.", "二维码内容不完整，请重新扫描"),
            ("expired", "电子凭证已过期，请刷新后重新出示"),
        ],
    )
    def test_a_bad_e_voucher_is_refused_in_chinese(self, doctor, token, message):
        if token == "expired":
            token = mint_voucher(demo_county_private_key(), insured_id=RESIDENT,
                                 county=DEMO_COUNTY_CODE, now=NOW - timedelta(hours=1))  # fmt: skip
        doctor.post("/settle/voucher", {"token": token})
        assert message in doctor.client.get("/settle").get_data(as_text=True)

    def test_an_e_voucher_for_someone_not_in_the_roster_is_refused(self, doctor):
        token = mint_voucher(demo_county_private_key(), insured_id="99999999999999",
                             county=DEMO_COUNTY_CODE, now=NOW)  # fmt: skip
        doctor.post("/settle/voucher", {"token": token})
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "本终端的参保名册中没有此参保人" in page

    def test_next_patient_clears_the_panel(self, doctor):
        read(doctor, RESIDENT_CARD)
        doctor.post("/settle/clear")
        assert 'id="patient-name"' not in doctor.client.get("/settle").get_data(as_text=True)


class TestSearch:
    def test_items_are_found_by_pinyin_initials(self, doctor):
        hits = doctor.client.get("/api/catalog?q=amxl").json
        assert hits[0]["name"].startswith("阿莫西林") and hits[0]["matched"] == "initials"
        assert hits[0]["price"] == "¥6.80"

    def test_items_are_found_by_code_and_by_chinese_name(self, doctor):
        assert doctor.client.get(f"/api/catalog?q={AMOXICILLIN}").json[0]["code"] == AMOXICILLIN
        assert doctor.client.get("/api/catalog?q=阿莫西林").json[0]["matched"] == "name"

    def test_diagnoses_are_found_by_code_name_and_initials(self, doctor):
        assert doctor.client.get("/api/diagnoses?q=J06").json[0]["code"] == "J06.900"
        assert doctor.client.get("/api/diagnoses?q=急性上").json[0]["code"] == "J06.900"
        found = doctor.client.get("/api/diagnoses?q=gxy").json
        assert {"code": "I10.x00", "name": "高血压"} in found

    def test_an_empty_search_finds_nothing(self, doctor):
        assert doctor.client.get("/api/catalog?q=").json == []
        assert doctor.client.get("/api/diagnoses?q=%20").json == []


class TestLiveQuote:
    def test_the_quote_is_the_engine_s_split_formatted_from_fen(self, doctor, app):
        read(doctor, POOR_CARD)
        body = visit((AMOXICILLIN, "2"), (CONSULTATION, "1"))
        answer = doctor.post_json("/api/quote", body).json
        store = store_of(app)
        try:
            expected = services.quote_visit(
                store, "32011500000005", visit_from_json({"date": "2026-11-22", **body})
            )
        finally:
            store.close()
        assert answer["ok"] is True
        for name in ("total", "fund", "assistance", "personal_account", "cash"):
            assert answer["split"][name] == format_yuan(getattr(expected, name))
        assert [line["amount"] for line in answer["lines"]] == ["¥13.60", "¥10.00"]
        assert floats_in(answer) == []

    def test_quoting_records_nothing(self, doctor, app):
        read(doctor, RESIDENT_CARD)
        doctor.post_json("/api/quote", visit((AMOXICILLIN, "2")))
        store = store_of(app)
        try:
            assert list(store.records()) == []
        finally:
            store.close()

    @pytest.mark.parametrize(
        ("card", "lines", "visit_type", "code", "text"),
        [
            (RESIDENT_CARD, [("XR05XAA202A001", "1")], "general", "NOT_COVERED", "丙类项目"),
            (RESIDENT_CARD, [("XB03BBA272A001", "1")], "general", "GENDER_RESTRICTED",
             "限另一性别"),
            (RESIDENT_CARD, [("XJ01FAC109A001", "1")], "general", "AGE_RESTRICTED", "限定年龄"),
            (RESIDENT_CARD, [("XC08CAB128A001", "1")], "general", "CHRONIC_ONLY", "限慢特病门诊"),
            (RESIDENT_CARD, [(AMOXICILLIN, "5")], "general", "QTY_OVER_LIMIT", "超过单次限量"),
            (RESIDENT_CARD, [("XJ01DCA106A001", "1")], "general", "OVER_PAYMENT_STANDARD",
             "超过医保支付标准"),
            (RESIDENT_CARD, [("XJ01DCA106A001", "1")], "general", "CLASS_B_PREPAY", "乙类项目"),
        ],
    )  # fmt: skip
    def test_each_line_says_why_it_is_self_paid(self, doctor, card, lines, visit_type, code, text):
        read(doctor, card)
        answer = doctor.post_json("/api/quote", visit(*lines, visit_type=visit_type)).json
        reasons = answer["lines"][0]["reasons"]
        assert any(r["code"] == code and text in r["message"] for r in reasons), reasons

    def test_a_suspended_patient_is_told_plainly_and_settled_in_cash(self, doctor):
        read(doctor, SUSPENDED_CARD)
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "今日不享受医保待遇：本次全部现金结算。" in page and "参保状态：暂停参保" in page
        answer = doctor.post_json("/api/quote", visit((AMOXICILLIN, "2"))).json
        assert answer["eligible"] is False
        assert answer["split"]["cash"] == answer["split"]["total"] == "¥13.60"
        assert answer["warnings"][0]["code"] == "NOT_ELIGIBLE"
        assert answer["warnings"][0]["message"].startswith("今日不享受医保待遇")

    def test_the_quote_without_a_patient_asks_for_the_card(self, doctor):
        answer = doctor.post_json("/api/quote", visit((AMOXICILLIN, "1")))
        assert answer.status_code == 422
        assert answer.json["errors"][0] == {
            "code": "NO_PATIENT", "field": "patient",
            "message": "请先读取患者医保卡或扫描电子凭证。",
        }  # fmt: skip


class TestRejectionsNextToTheirField:
    def test_an_unknown_item_typed_into_the_form_is_named_next_to_its_line(self, doctor):
        read(doctor, RESIDENT_CARD)
        answer = doctor.post_json("/api/quote", visit((AMOXICILLIN, "1"), ("NOSUCHITEM", "1")))
        assert answer.status_code == 422
        (error,) = answer.json["errors"]
        assert (error["code"], error["field"], error["line"]) == ("UNKNOWN_ITEM", "line", 1)
        assert error["message"] == "目录中没有这个项目。"

    @pytest.mark.parametrize(
        ("body", "code", "field", "text"),
        [
            (visit(), "EMPTY_VISIT", "lines", "请至少添加一个项目"),
            (visit(*[(AMOXICILLIN, "1")] * 201), "TOO_MANY_LINES", "lines", "最多200个项目"),
            (visit((AMOXICILLIN, "1"), visit_type="chronic", diagnoses=["J06.900"]),
             "CHRONIC_NOT_CERTIFIED", "diagnoses", "不能按慢特病门诊结算"),
            (visit(("XR05DAD195A001", "1")), "ITEM_NOT_VALID", "line", "不在目录有效期内"),
            (visit((AMOXICILLIN, "0")), "BAD_QUANTITY", "line", "数量须大于0"),
            (visit((AMOXICILLIN, "abc")), "BAD_QUANTITY", "line", "数量须大于0"),
            (visit((AMOXICILLIN, "1.2345")), "BAD_QUANTITY", "line", "最多3位小数"),
            (visit((AMOXICILLIN, "100001")), "BAD_QUANTITY", "line", "不超过100000"),
            (visit((AMOXICILLIN, "1"), visit_type="emergency"), "BAD_INPUT", "visit_type",
             "就诊信息填写有误"),
            ({"visit_type": "general", "lines": [{"code": 7, "quantity": "1"}]}, "BAD_INPUT",
             "line", "就诊信息填写有误"),
            ({"visit_type": "general", "lines": "x"}, "BAD_INPUT", "lines", "就诊信息填写有误"),
            ({"visit_type": "general", "diagnoses": [1], "lines": []}, "BAD_INPUT", "diagnoses",
             "就诊信息填写有误"),
        ],
    )  # fmt: skip
    def test_each_rejection_is_plain_chinese_next_to_its_field(
        self, doctor, body, code, field, text
    ):
        read(doctor, RESIDENT_CARD)
        for endpoint in ("/api/quote", "/api/settle"):
            answer = doctor.post_json(endpoint, body)
            assert answer.status_code == 422
            (error,) = answer.json["errors"]
            assert (error["code"], error["field"]) == (code, field)
            assert text in error["message"]

    def test_a_body_that_is_not_a_visit_is_bad_input(self, doctor):
        read(doctor, RESIDENT_CARD)
        answer = doctor.post_json("/api/quote", ["not", "a", "visit"])
        assert answer.json["errors"][0]["code"] == "BAD_INPUT"

    def test_an_amount_beyond_a_clinic_is_refused_at_the_total(self, doctor, app):
        read(doctor, RESIDENT_CARD)
        body = visit(("ZA08EAL0154010", "100000"), (AMOXICILLIN, "99999"))
        quoted = doctor.post_json("/api/quote", body).json
        assert quoted["errors"][0]["field"] == "total"
        settled = doctor.post_json("/api/settle", body)
        assert settled.status_code == 422
        assert settled.json["errors"][0]["code"] == "AMOUNT_TOO_LARGE"
        assert "远超村卫生室" in settled.json["errors"][0]["message"]

    def test_a_visit_is_settled_once_however_often_confirm_arrives(self, doctor, app):
        read(doctor, RESIDENT_CARD)
        store = store_of(app)
        try:
            chosen = store.db.execute("SELECT * FROM visit_draft").fetchall()
        finally:
            store.close()
        assert doctor.post_json("/api/settle", visit((AMOXICILLIN, "1"))).json["ok"] is True
        put_draft_back(app, chosen)  # as if a second tab held the same visit
        again = doctor.post_json("/api/settle", visit((AMOXICILLIN, "1")))
        assert again.status_code == 422
        assert again.json["errors"][0]["code"] == "ALREADY_SETTLED"
        store = store_of(app)
        try:
            assert store.ledger_head().seq == 1
        finally:
            store.close()

    def test_a_patient_removed_from_the_roster_is_refused(self, doctor, app):
        read(doctor, RESIDENT_CARD)
        store = store_of(app)
        try:
            with store.write_transaction():
                store.db.execute(
                    "UPDATE visit_draft SET patient = ?",
                    ['{"insured_id": "00000000000000", "via": "card", "visit_token": "t-r"}'],
                )
        finally:
            store.close()
        answer = doctor.post_json("/api/settle", visit((AMOXICILLIN, "1")))
        assert answer.json["errors"][0]["code"] == "UNKNOWN_PERSON"
        assert answer.json["errors"][0]["field"] == "patient"

    def test_every_code_of_the_rules_has_a_plain_message(self):
        rejections = ["BAD_INPUT", "EMPTY_VISIT", "TOO_MANY_LINES", "CHRONIC_NOT_CERTIFIED",
                      "UNKNOWN_ITEM", "ITEM_NOT_VALID", "BAD_QUANTITY", "UNKNOWN_PERSON",
                      "UNKNOWN_OPERATOR", "AMOUNT_TOO_LARGE", "UNKNOWN_SETTLEMENT",
                      "ALREADY_REVERSED"]  # fmt: skip
        assert set(rejections) <= set(messages.REJECTIONS)
        reasons = ["NOT_COVERED", "GENDER_RESTRICTED", "AGE_RESTRICTED", "CHRONIC_ONLY",
                   "QTY_OVER_LIMIT", "OVER_PAYMENT_STANDARD"]  # fmt: skip
        assert set(reasons) <= set(messages.LINE_REASONS)
        assert set(messages.WARNINGS) == {"NOT_ELIGIBLE"}
        review = {
            offline_risk.OFFLINE_TOO_LONG,
            offline_risk.OFFLINE_FUND_LIMIT,
            offline_risk.VISITS_PER_DAY_LIMIT,
        }
        assert review <= set(messages.NEEDS_REVIEW)

    def test_an_unknown_operator_rejection_belongs_to_the_whole_form(self, app):
        from edge.domain.model import Rejection

        with app.test_request_context("/"):
            error = messages.rejection_json(Rejection("UNKNOWN_OPERATOR", "operator 'x'"))
        assert error["field"] == "form" and "请重新登录" in error["message"]


class TestConfirm:
    def test_confirming_records_a_signed_settlement_and_opens_the_receipt(self, doctor, app):
        read(doctor, POOR_CARD)
        answer = doctor.post_json("/api/settle", visit((AMOXICILLIN, "2"), (CONSULTATION, "1")))
        assert answer.status_code == 200 and answer.json["ok"] is True
        assert answer.json["receipt_url"] == f"/receipt/{answer.json['tx_id']}"
        store = store_of(app)
        try:
            record = store.record_by_tx(answer.json["tx_id"])
            assert services.verify_ledger(store).ok
        finally:
            store.close()
        assert record["body"]["operator"] == "doc01"
        assert record["body"]["visit"]["date"] == "2026-11-22"
        assert record["body"]["result"]["cash"] == 0
        receipt = doctor.client.get(answer.json["receipt_url"]).get_data(as_text=True)
        assert "结算完成" in receipt and "统筹基金" in receipt
        paper = doctor.client.get(answer.json["receipt_url"] + "/text")
        assert paper.mimetype == "text/plain" and "医保结算单" in paper.get_data(as_text=True)
        assert "YBR1:" not in paper.get_data(as_text=True)

    def test_after_confirming_the_next_patient_starts_afresh(self, doctor):
        read(doctor, RESIDENT_CARD)
        doctor.post_json("/api/settle", visit((AMOXICILLIN, "1")))
        assert 'id="patient-name"' not in doctor.client.get("/settle").get_data(as_text=True)
        assert doctor.post_json("/api/settle", visit((AMOXICILLIN, "1"))).status_code == 422

    def test_an_employee_may_pay_the_rest_from_the_personal_account(self, doctor):
        read(doctor, EMPLOYEE_CARD)
        answer = doctor.post_json("/api/quote", visit((AMOXICILLIN, "2"), account=True)).json
        assert answer["split"]["personal_account"] == "¥13.60"
        assert answer["split"]["cash"] == "¥0.00"

    def test_a_fourth_visit_in_a_day_is_settled_and_marked_for_review(self, doctor):
        for _ in range(3):
            read(doctor, RESIDENT_CARD)
            assert doctor.post_json("/api/settle", visit((AMOXICILLIN, "1"))).json["ok"]
        read(doctor, RESIDENT_CARD)
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "该患者今日就诊次数已达上限" in page
        answer = doctor.post_json("/api/settle", visit((AMOXICILLIN, "1"))).json
        assert answer["needs_review"][0]["code"] == "VISITS_PER_DAY_LIMIT"
        receipt = doctor.client.get(answer["receipt_url"]).get_data(as_text=True)
        assert "待县级复核" in receipt

    def test_offline_too_long_is_announced_before_and_recorded_with_the_settlement(
        self, doctor, clock
    ):
        clock.advance(hours=73)
        doctor.sign_in("doc01")
        read(doctor, RESIDENT_CARD)
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "本终端与县级平台未同步时间过长" in page
        answer = doctor.post_json("/api/settle", visit((AMOXICILLIN, "1"))).json
        assert [r["code"] for r in answer["needs_review"]] == ["OFFLINE_TOO_LONG"]

    def test_a_missing_device_key_stops_settlement_with_a_plain_message(self, doctor, web_dir):
        read(doctor, RESIDENT_CARD)
        (web_dir / "device.key").unlink()
        answer = doctor.post_json("/api/settle", visit((AMOXICILLIN, "1")))
        assert answer.status_code == 503
        assert "设备密钥缺失或不匹配" in answer.json["error"]["message"]
