"""The one-stop chain on the screen and on paper (settlement rules version 2): every payer
that paid, in the chain's order and in Chinese; one sentence when a cap held the fund
back; the family account (家庭共济) offered only when an employee shares one, with whose
account it is and its balance, and the holder's balance debited. On the demo county's
version 2 persons, through the Flask test client on a real SQLite store."""

import re

import pytest
from web_support import NOW, store_of

from edge import services
from edge.demo import roster_document
from edge.domain.documents import visit_from_json
from edge.domain.money import format_yuan
from web_ui import presenters

pytest_plugins = ["web_fixtures"]  # the web UI fixtures

VETERAN_CARD, VETERAN = "A32011526", "32011500000026"  # 钱振国, 优抚二次补偿 on everything
CIVIL_SERVANT_CARD, CIVIL_SERVANT = "B320115510", "32011500000510"  # 魏建华, 公务员医疗补助
MOTHER_CARD, MOTHER = "A32011527", "32011500000027"  # 孔凤英, her daughter shares her account
DAUGHTER = "32011500000511"  # 孔丽, employee, account ¥800.00
RESIDENT_CARD = "A32011501"  # 张建国: general visits capped at ¥20.00 a visit, ¥30.00 a day
EMPLOYEE, EMPLOYEE_NAME = "32011500000502", "唐晓燕"  # an employee, account ¥2,300.00
CONSULTATION = "110200005000000"  # ¥10.00, the fund pays a fixed ¥8.00
AMOXICILLIN = "XJ01CAA040A001"  # ¥6.80, class A
COLD_TABLETS = "XR05XAA202A001"  # ¥12.80, class C: not covered
NASAL_SPRAY = "XR01ADG286A001"  # ¥58.60, class B


def read(auth, card: str) -> None:
    auth.post("/tester/insert", {"card": card})
    auth.post("/settle/card")


def visit(*lines, **choices) -> dict:
    return {
        "visit_type": "general",
        "diagnoses": ["J06.900"],
        "lines": [{"code": c, "quantity": q} for c, q in lines],
        **choices,
    }


def engine(app, insured_id: str, body: dict, holder: str | None = None) -> dict:
    """What the services quote for the same visit now."""
    fields = ("visit_type", "diagnoses", "lines", "use_personal_account", "use_family_account")
    document = {"date": NOW.date().isoformat(), **{k: body[k] for k in fields if k in body}}
    store = store_of(app)
    try:
        quoted = services.quote_visit(store, insured_id, visit_from_json(document), holder)
    finally:
        store.close()
    return quoted.to_dict()


def shown(answer: dict) -> list[tuple[str, str, str, str]]:
    return [(p["payer"], p["label"], p["detail"], p["amount"]) for p in answer["payers"]]


def balance(app, insured_id: str) -> int:
    store = store_of(app)
    try:
        return store.insured_person(insured_id, with_accumulators=False).person.account_balance
    finally:
        store.close()


class TestEveryPayerThatPaid:
    def test_a_disabled_veteran_sees_the_fund_and_the_veterans_compensation(self, doctor, app):
        read(doctor, VETERAN_CARD)
        body = visit((CONSULTATION, "1"), (AMOXICILLIN, "1"), (COLD_TABLETS, "1"))
        answer = doctor.post_json("/api/quote", body).json
        expected = engine(app, VETERAN, body)
        (supplement,) = [s for s in expected["supplements"] if s["amount"]]
        assert expected["fund"] and supplement["pays_as"] == "oth_pay" and expected["cash"]
        assert shown(answer) == [
            ("fund", "统筹基金", "", format_yuan(expected["fund"])),
            ("oth_pay", "优抚补助", "优抚二次补偿", format_yuan(supplement["amount"])),
        ]
        assert answer["payers"][1]["name"] == "veterans_second_compensation"
        assert answer["split"]["cash"] == format_yuan(expected["cash"])
        assert answer["split"]["oth_pay"] == format_yuan(supplement["amount"])
        assert answer["fund_limit"] is None

    def test_a_civil_servant_sees_the_subsidy_before_the_personal_account(self, doctor, app):
        read(doctor, CIVIL_SERVANT_CARD)
        body = visit((CONSULTATION, "1"), (AMOXICILLIN, "2"), use_personal_account=True)
        answer = doctor.post_json("/api/quote", body).json
        expected = engine(app, CIVIL_SERVANT, body)
        (supplement,) = [s for s in expected["supplements"] if s["amount"]]
        assert supplement["pays_as"] == "cvlserv_pay"
        assert shown(answer) == [
            ("fund", "统筹基金", "", format_yuan(expected["fund"])),
            ("cvlserv_pay", "公务员补助", "公务员医疗补助", format_yuan(supplement["amount"])),
            ("personal_account", "个人账户", "", format_yuan(expected["personal_account"])),
        ]
        assert answer["split"]["cash"] == "¥0.00"

    def test_a_payer_that_pays_nothing_is_not_listed(self, doctor):
        read(doctor, "A32011501")  # 张建国: no category, no account
        answer = doctor.post_json("/api/quote", visit((AMOXICILLIN, "1"))).json
        assert [p["payer"] for p in answer["payers"]] == ["fund"]
        assert answer["split"]["assistance"] == answer["split"]["family_account"] == "¥0.00"

    def test_not_eligible_lists_no_payer_and_no_fixed_payment(self, doctor):
        read(doctor, "A32011517")  # suspended
        answer = doctor.post_json("/api/quote", visit((CONSULTATION, "1"))).json
        assert answer["payers"] == [] and answer["split"]["cash"] == "¥10.00"
        assert answer["lines"][0]["reasons"] == []  # the fund pays no fixed amount either

    def test_a_fixed_payment_line_says_what_the_fund_pays(self, doctor):
        read(doctor, RESIDENT_CARD)
        answer = doctor.post_json("/api/quote", visit((CONSULTATION, "1"))).json
        (reason,) = answer["lines"][0]["reasons"]
        assert reason == {"code": "FIXED_PAYMENT", "message": "此项目由统筹基金定额支付 ¥8.00。"}
        assert answer["split"]["fund_fixed_total"] == "¥8.00"

    def test_the_labels_follow_the_language(self, auth):
        auth.post("/lang", {"lang": "en"})
        auth.sign_in("doc01")
        read(auth, VETERAN_CARD)
        answer = auth.post_json("/api/quote", visit((AMOXICILLIN, "1"), (COLD_TABLETS, "1"))).json
        assert [(p["label"], p["detail"]) for p in answer["payers"]] == [
            ("Insurance fund", ""), ("Special care subsidy", "Veterans' second compensation"),
        ]  # fmt: skip


class TestWhyTheFundPaidNoMore:
    BIG = ((CONSULTATION, "1"), (AMOXICILLIN, "3"), (NASAL_SPRAY, "1"))

    def test_the_visit_cap_then_the_day_cap_are_each_told_in_one_sentence(self, doctor):
        sentences = []
        for _ in range(3):
            read(doctor, RESIDENT_CARD)
            quoted = doctor.post_json("/api/quote", visit(*self.BIG)).json
            settled = doctor.post_json("/api/settle", visit(*self.BIG)).json
            receipt = doctor.client.get(settled["receipt_url"]).get_data(as_text=True)
            sentence = quoted["fund_limit"]
            assert sentence["message"] in receipt and f'data-code="{sentence["code"]}"' in receipt
            sentences.append((sentence["code"], sentence["message"], quoted["split"]["fund"]))
        assert sentences == [
            ("visit_cap", "本次统筹支付已达单次限额 ¥20.00。", "¥20.00"),
            ("day_cap", "本次统筹支付已达当日限额 ¥30.00（今日已支付 ¥20.00）。", "¥10.00"),
            ("day_cap", "本次统筹支付已达当日限额（今日已支付 ¥30.00）。", "¥0.00"),
        ]

    def test_the_printed_receipt_says_which_cap_held_the_fund_back(self, doctor):
        read(doctor, RESIDENT_CARD)
        settled = doctor.post_json("/api/settle", visit(*self.BIG)).json
        paper = doctor.client.get(settled["receipt_url"] + "/text").get_data(as_text=True)
        fund = paper.index("统筹基金 ")
        assert paper.index("本次统筹支付已达单次限额") > fund

    def test_a_visit_under_every_cap_has_no_sentence(self, doctor):
        read(doctor, RESIDENT_CARD)
        answer = doctor.post_json("/api/quote", visit((AMOXICILLIN, "1"))).json
        assert answer["fund_limit"] is None

    @pytest.mark.parametrize(
        ("fund", "fund_paid", "message"),
        [(500, 40000, "本次统筹支付已达年度限额 ¥400.00（本年已支付 ¥395.00）。"),
         (0, 40000, "本次统筹支付已达年度限额（本年已支付 ¥400.00）。")],
    )  # fmt: skip
    def test_the_annual_cap(self, app, fund, fund_paid, message):
        after = {"fund_paid": fund_paid, "day_fund_paid": fund}
        result = {"fund": fund, "fund_limited_by": "annual_cap", "accumulators_after": after}
        with app.test_request_context("/"):
            assert presenters.fund_limit(result) == {"code": "annual_cap", "message": message}

    def test_a_version_1_result_has_no_sentence_and_its_missing_payers_are_zero(self, app):
        result = {"eligible": True, "total": 1960, "fund": 1372, "assistance": 300,
                  "personal_account": 0, "cash": 288, "lines": [], "warnings": []}  # fmt: skip
        with app.test_request_context("/"):
            view = presenters.settlement_view(result, [])
        assert view["fund_limit"] is None
        assert [(p["payer"], p["amount"]) for p in view["payers"]] == [
            ("fund", "¥13.72"), ("assistance", "¥3.00"),
        ]  # fmt: skip
        assert view["split"]["critical_illness"] == view["split"]["oth_pay"] == "¥0.00"


class TestFamilyAccount:
    def test_it_is_offered_with_the_holders_name_and_balance(self, doctor):
        read(doctor, MOTHER_CARD)
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert 'id="use-family-account"' in page and f'data-holder="{DAUGHTER}"' in page
        assert "使用家庭共济账户：孔丽的个人账户，余额 ¥800.00" in page
        assert 'name="family_holder"' not in page  # one holder: nothing to choose

    @pytest.mark.parametrize("card", [RESIDENT_CARD, CIVIL_SERVANT_CARD, "B32011552"])
    def test_it_is_not_offered_when_nobody_shares_an_account(self, doctor, card):
        read(doctor, card)
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert 'id="patient-name"' in page
        assert "use-family-account" not in page and "家庭共济" not in page

    def test_the_split_names_whose_account_pays(self, doctor, app):
        read(doctor, MOTHER_CARD)
        body = visit((CONSULTATION, "1"), (AMOXICILLIN, "2"))
        without = doctor.post_json("/api/quote", body).json
        assert "family_account" not in [p["payer"] for p in without["payers"]]
        body["use_family_account"] = True
        answer = doctor.post_json("/api/quote", body).json
        expected = engine(app, MOTHER, body, DAUGHTER)
        assert expected["family_account"] == int(without["split"]["cash"][1:].replace(".", ""))
        assert shown(answer)[-1] == (
            "family_account", "家庭共济账户", "孔丽的个人账户",
            format_yuan(expected["family_account"]),
        )  # fmt: skip
        assert answer["split"]["cash"] == "¥0.00"

    def test_settling_with_it_debits_the_holders_balance_and_the_receipt_names_her(
        self, doctor, app
    ):
        read(doctor, MOTHER_CARD)
        body = visit((CONSULTATION, "1"), (AMOXICILLIN, "2"), use_family_account=True,
                     family_account_holder=DAUGHTER)  # fmt: skip
        settled = doctor.post_json("/api/settle", body).json
        assert settled["ok"] is True
        store = store_of(app)
        try:
            record = store.record_by_tx(settled["tx_id"])
        finally:
            store.close()
        paid = record["body"]["result"]["family_account"]
        assert paid > 0 and record["body"]["visit"]["family_account_holder"] == DAUGHTER
        assert balance(app, DAUGHTER) == 80000 - paid
        assert balance(app, MOTHER) == 0
        receipt = doctor.client.get(settled["receipt_url"]).get_data(as_text=True)
        assert "家庭共济账户" in receipt and "孔丽的个人账户" in receipt
        paper = doctor.client.get(settled["receipt_url"] + "/text").get_data(as_text=True)
        family = re.search(r"家庭共济 +(¥\S+)\n  孔丽的个人账户", paper)
        assert family and family.group(1) == format_yuan(paid)
        detail = doctor.client.get(f"/records/{settled['tx_id']}").get_data(as_text=True)
        assert "孔丽的个人账户" in detail and format_yuan(paid) in detail
        read(doctor, MOTHER_CARD)  # her next visit offers what is left
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert f"孔丽的个人账户，余额 {format_yuan(80000 - paid)}" in page

    def test_reversing_it_shows_and_gives_back_the_family_account(self, doctor, app):
        read(doctor, MOTHER_CARD)
        body = visit((CONSULTATION, "1"), (AMOXICILLIN, "2"), use_family_account=True)
        settled = doctor.post_json("/api/settle", body).json
        response = doctor.post(f"/records/{settled['tx_id']}/reverse", {"reason": "录入错误"})
        reversal = response.headers["Location"].split("/")[-1]
        assert balance(app, DAUGHTER) == 80000
        detail = doctor.client.get(f"/records/{reversal}").get_data(as_text=True)
        split = re.search(r'<dl class="amounts" id="reversal-split">(.*?)</dl>', detail, re.S)
        assert split and "家庭共济账户" in split.group(1) and "孔丽的个人账户" in split.group(1)
        assert 'data-payer="personal_account"' not in split.group(1)  # it paid nothing
        paper = doctor.client.get(f"/receipt/{reversal}/text").get_data(as_text=True)
        assert re.search(r"家庭共济 +-¥\S+\n  孔丽的个人账户", paper)

    def test_a_patient_nobody_shares_with_is_refused_next_to_the_checkbox(self, doctor, app):
        read(doctor, RESIDENT_CARD)
        for endpoint in ("/api/quote", "/api/settle"):
            answer = doctor.post_json(endpoint, visit((AMOXICILLIN, "1"), use_family_account=True))
            assert answer.status_code == 422
            (error,) = answer.json["errors"]
            assert error["code"] == "FAMILY_ACCOUNT_NOT_SHARED"
            assert error["field"] == "family_account"
            assert error["message"].startswith("不能使用家庭共济账户")
        store = store_of(app)
        try:
            assert list(store.records()) == []
        finally:
            store.close()

    def test_an_account_that_was_not_shared_is_refused(self, doctor):
        read(doctor, MOTHER_CARD)
        body = visit((AMOXICILLIN, "1"), use_family_account=True,
                     family_account_holder=EMPLOYEE)  # fmt: skip
        answer = doctor.post_json("/api/settle", body)
        assert answer.json["errors"][0]["code"] == "FAMILY_ACCOUNT_NOT_SHARED"
        assert balance(app=doctor.client.application, insured_id=EMPLOYEE) == 230000

    def test_with_two_holders_the_doctor_chooses_whose_account_pays(self, doctor, app):
        mother = next(p for p in roster_document(NOW.date())["persons"]
                      if p["insured_id"] == MOTHER)  # fmt: skip
        mother["family_account_holders"] = [DAUGHTER, EMPLOYEE]
        store = store_of(app)
        try:
            store.import_roster({"version": "2026.11.99", "persons": [mother]}, now=NOW)
        finally:
            store.close()
        read(doctor, MOTHER_CARD)
        page = doctor.client.get("/settle").get_data(as_text=True)
        choices = re.findall(r'name="family_holder" value="(\d+)"', page)
        assert choices == [DAUGHTER, EMPLOYEE]
        assert f"{EMPLOYEE_NAME}的个人账户，余额 ¥2,300.00" in page
        body = visit((AMOXICILLIN, "2"), use_family_account=True, family_account_holder=EMPLOYEE)
        answer = doctor.post_json("/api/quote", body).json
        assert answer["payers"][-1]["detail"] == f"{EMPLOYEE_NAME}的个人账户"
        settled = doctor.post_json("/api/settle", body).json
        assert balance(app, EMPLOYEE) < 230000 and balance(app, DAUGHTER) == 80000
        paper = doctor.client.get(settled["receipt_url"] + "/text").get_data(as_text=True)
        assert f"{EMPLOYEE_NAME}的个人账户" in paper
        del body["family_account_holder"]  # two holders: the services will not guess
        read(doctor, MOTHER_CARD)
        refused = doctor.post_json("/api/quote", body).json
        assert refused["errors"][0]["code"] == "FAMILY_ACCOUNT_NOT_SHARED"

    def test_a_holder_that_is_not_an_insured_id_is_bad_input(self, doctor):
        read(doctor, MOTHER_CARD)
        body = visit((AMOXICILLIN, "1"), use_family_account=True, family_account_holder=7)
        (error,) = doctor.post_json("/api/quote", body).json["errors"]
        assert (error["code"], error["field"]) == ("BAD_INPUT", "family_account")


class TestRecordsAndTheDailyClose:
    def test_the_record_page_and_the_days_close_show_every_payer(self, doctor):
        read(doctor, VETERAN_CARD)
        veteran = doctor.post_json("/api/settle", visit((AMOXICILLIN, "1"), (COLD_TABLETS, "1")))
        read(doctor, MOTHER_CARD)
        doctor.post_json("/api/settle", visit((AMOXICILLIN, "2"), use_family_account=True))
        detail = doctor.client.get(f"/records/{veteran.json['tx_id']}").get_data(as_text=True)
        assert "优抚补助" in detail and "优抚二次补偿" in detail
        response = doctor.post("/close")
        page = doctor.client.get(response.headers["Location"]).get_data(as_text=True)
        by_payer = page.split('id="by-payer"')[1].split("</table>")[0]
        payers = re.findall(r'data-payer="(\w+)"', by_payer)
        assert payers == ["fund", "oth_pay", "family_account", "cash"]  # only what was paid
        paper = doctor.client.get(response.headers["Location"].replace("/close/", "/receipt/")
                                  + "/text").get_data(as_text=True)  # fmt: skip
        assert "优抚医疗补助" in paper and "家庭共济" in paper and "救助" not in paper

    def test_the_visit_types_start_with_general_and_name_two_diseases(self, doctor):
        read(doctor, RESIDENT_CARD)
        page = doctor.client.get("/settle").get_data(as_text=True)
        radios = re.findall(r'name="visit_type" value="(\w+)" ?(checked)?', page)
        assert radios == [("general", "checked"), ("chronic", ""), ("two_diseases", "")]
        assert "两病门诊" in page
