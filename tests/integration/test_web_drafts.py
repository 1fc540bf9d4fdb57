"""A visit is never lost: the visit being built lives on the terminal (web_ui/drafts.py),
per operator, and survives a reload, a language switch, a restart of the service and the
idle lock; another operator starts clean. Also the sign-in page (the last operator, the
reason a session ended, no ids or "PIN"), whole units for counted items, visit types
that need a certificate, and preset reversal reasons."""

import json
import re

from web_support import Auth, app_config, store_of

pytest_plugins = ["web_fixtures"]  # the web UI fixtures

RESIDENT_CARD = "A32011501"  # 张建国: no chronic certificate
CHRONIC_CARD = "A32011502"  # 李秀英: a hypertension certificate
POOR_CARD = "A32011505"  # 陈志强
AMOXICILLIN = "XJ01CAA040A001"  # 盒
OXYGEN = "121000001000000"  # 氧气吸入, by the hour
CONSULTATION = "110200005000000"


def read(auth: Auth, card: str) -> None:
    auth.post("/tester/insert", {"card": card})
    auth.post("/settle/card")


def draft_on(page: str) -> dict | None:
    match = re.search(r"data-draft='([^']*)'", page)
    assert match, "the settle page carries its draft"
    return json.loads(match.group(1).replace("&#34;", '"').replace("&#39;", "'"))


def settle_page(auth: Auth) -> tuple[str, dict | None]:
    page = auth.client.get("/settle").get_data(as_text=True)
    return page, draft_on(page)


def keep(auth: Auth, draft: dict, rev: int = 1, **visit) -> object:
    body = {
        "visit_type": "general",
        "diagnoses": ["J06.900"],
        "lines": [{"code": AMOXICILLIN, "quantity": "2"}, {"code": CONSULTATION, "quantity": "1"}],
        **visit,
    }
    return auth.post_json("/api/draft", {"draft_id": draft["draft_id"], "rev": rev, "visit": body})


def started(auth: Auth, card: str = POOR_CARD) -> dict:
    read(auth, card)
    _page, draft = settle_page(auth)
    assert draft is not None and draft["lines"] == []
    assert keep(auth, draft).json == {"ok": True, "kept": True}
    return draft


def assert_intact(auth: Auth, name: str = "陈志强") -> dict:
    page, draft = settle_page(auth)
    assert name in page
    assert draft is not None
    assert [(line["code"], line["quantity"]) for line in draft["lines"]] == [
        (AMOXICILLIN, "2"),
        (CONSULTATION, "1"),
    ]
    assert draft["lines"][0]["name"] == "阿莫西林胶囊" and draft["lines"][0]["whole"] is True
    assert draft["diagnoses"] == [{"code": "J06.900", "name": "急性上呼吸道感染"}]
    return draft


class TestTheVisitIsKept:
    def test_a_reload_finds_the_visit_as_it_was(self, doctor):
        started(doctor)
        assert_intact(doctor)
        assert_intact(doctor)  # and again: reading it changes nothing

    def test_another_page_and_back_and_a_language_switch_keep_it(self, doctor):
        started(doctor)
        assert doctor.client.get("/records").status_code == 200
        doctor.post("/lang", {"lang": "en", "next": "/settle"})
        page, draft = settle_page(doctor)
        assert "Confirm settlement" in page and draft["lines"][0]["code"] == AMOXICILLIN
        doctor.post("/lang", {"lang": "zh", "next": "/settle"})
        assert_intact(doctor)

    def test_a_restart_of_the_service_keeps_it(self, doctor, web_dir, clock):
        from web_ui.app import create_app

        started(doctor)
        restarted = create_app(app_config(web_dir, clock, SECRET_KEY="another-key"))
        again = Auth(restarted.test_client())  # a new process: the old cookie means nothing
        again.sign_in("doc01")
        assert_intact(again)

    def test_an_older_save_arriving_late_does_not_undo_a_newer_one(self, doctor):
        draft = started(doctor)
        assert keep(doctor, draft, rev=5, lines=[{"code": OXYGEN, "quantity": "1.5"}]).json["ok"]
        assert keep(doctor, draft, rev=3).json["ok"]  # late, not an error, and not kept
        _page, kept = settle_page(doctor)
        assert [(x["code"], x["quantity"]) for x in kept["lines"]] == [(OXYGEN, "1.5")]
        assert kept["lines"][0]["whole"] is False

    def test_settling_ends_the_draft_and_a_late_save_cannot_bring_it_back(self, doctor):
        draft = started(doctor)
        body = {"visit_type": "general", "diagnoses": ["J06.900"],
                "lines": [{"code": AMOXICILLIN, "quantity": "2"}]}  # fmt: skip
        assert doctor.post_json("/api/settle", body).json["ok"] is True
        late = keep(doctor, draft, rev=99)
        assert late.status_code == 409 and late.json["kept"] is False
        page, restored = settle_page(doctor)
        assert restored is None and 'id="read-card"' in page

    def test_next_patient_ends_it(self, doctor):
        started(doctor)
        doctor.post("/settle/clear")
        assert settle_page(doctor)[1] is None

    def test_a_malformed_draft_is_refused_and_the_kept_one_stays(self, doctor):
        draft = started(doctor)
        for bad in ({"lines": "x"}, {"lines": [{"code": 7}]}, {"diagnoses": [1]},
                    {"lines": [{"code": "A", "quantity": "1" * 40}]}):  # fmt: skip
            answer = doctor.post_json(
                "/api/draft", {"draft_id": draft["draft_id"], "rev": 9, "visit": bad}
            )
            assert answer.status_code == 400
        assert_intact(doctor)

    def test_with_no_patient_there_is_nothing_to_keep(self, doctor):
        answer = doctor.post_json("/api/draft", {"draft_id": "x", "rev": 1, "visit": {}})
        assert answer.status_code == 409


class TestTheIdleLock:
    def test_the_lock_says_why_and_returns_the_same_operator_to_the_same_visit(self, doctor, clock):
        started(doctor)
        clock.advance(minutes=16)
        response = doctor.client.get("/settle")
        assert response.status_code == 302
        assert response.headers["Location"] == "/signin?next=/settle?"
        page = doctor.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "已15分钟未操作，屏幕已锁定。王医生，请输入密码回到刚才的页面" in page
        assert re.search(r'value="doc01"\s+checked', page)  # the lock screen's owner
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        response = doctor.client.post(
            "/signin?next=/settle",
            data={"operator": "doc01", "pin": "1111", "csrf_token": token},
        )
        assert response.headers["Location"] == "/settle"
        assert_intact(doctor)

    def test_confirming_after_the_timeout_says_the_session_ended_not_a_network_error(
        self, doctor, clock
    ):
        started(doctor)
        clock.advance(minutes=16)
        body = {"visit_type": "general", "lines": [{"code": AMOXICILLIN, "quantity": "2"}]}
        answer = doctor.post_json("/api/settle", body)
        assert answer.status_code == 401
        error = answer.json["error"]
        assert error["code"] == "SESSION_ENDED"
        assert error["message"] == (
            "长时间未操作，屏幕已锁定，本次未结算。就诊内容已保留：请重新登录后继续。"
        )
        assert "终端没有响应" not in error["message"]
        store = store_of(doctor.client.application)
        try:
            assert store.ledger_head() is None or store.ledger_head().seq == 0
        finally:
            store.close()
        doctor.sign_in("doc01")
        assert_intact(doctor)

    def test_the_page_locks_the_screen_by_itself(self, doctor):
        started(doctor)
        response = doctor.post("/lock", {"next": "/settle"})
        assert response.headers["Location"] == "/signin?next=/settle"
        assert doctor.client.get("/settle").status_code == 302  # signed out
        page = doctor.client.get("/signin?next=/settle").get_data(as_text=True)
        assert "屏幕已锁定" in page and re.search(r'value="doc01"\s+checked', page)
        doctor.sign_in("doc01")
        assert_intact(doctor)

    def test_another_operator_starts_clean_and_the_draft_is_kept_for_its_owner(self, doctor, clock):
        started(doctor)
        clock.advance(minutes=16)
        doctor.client.get("/settle")
        doctor.sign_in("test01")
        page, draft = settle_page(doctor)
        assert draft is None and "陈志强" not in page and 'id="read-card"' in page
        read(doctor, RESIDENT_CARD)  # the tester's own visit
        assert "张建国" in settle_page(doctor)[0]
        doctor.sign_out()
        doctor.sign_in("doc01")
        assert_intact(doctor)
        doctor.sign_out()
        doctor.sign_in("test01")
        assert "张建国" in settle_page(doctor)[0]

    def test_the_session_cookie_outlives_the_idle_time(self, app):
        assert app.config["PERMANENT_SESSION_LIFETIME"].total_seconds() >= 8 * 3600


class TestTheSignInPage:
    def test_a_new_terminal_offers_a_doctor_first_not_the_administrator(self, client):
        page = client.get("/signin").get_data(as_text=True)
        checked = re.search(r'value="(\w+)"\s+checked', page).group(1)
        assert checked != "admin01"

    def test_it_remembers_the_last_operator(self, auth):
        auth.sign_in("test01")
        auth.sign_out()
        page = auth.client.get("/signin").get_data(as_text=True)
        assert re.search(r'value="test01"\s+checked', page)
        assert "signin-reason" not in page  # signed out by hand: no lock message

    def test_doctors_never_read_pin_or_operator_ids(self, client):
        page = client.get("/signin").get_data(as_text=True)
        visible = re.sub(r"<[^>]+>", " ", page)
        assert "PIN" not in visible and "doc01" not in visible and "密码" in visible


class TestWholeUnits:
    def test_a_box_and_a_half_is_refused_next_to_its_line(self, doctor):
        read(doctor, POOR_CARD)
        body = {"visit_type": "general", "diagnoses": ["J06.900"],
                "lines": [{"code": CONSULTATION, "quantity": "1"},
                          {"code": AMOXICILLIN, "quantity": "1.5"}]}  # fmt: skip
        for endpoint in ("/api/quote", "/api/settle"):
            answer = doctor.post_json(endpoint, body)
            assert answer.status_code == 422
            (error,) = answer.json["errors"]
            assert (error["code"], error["field"], error["line"]) == ("WHOLE_UNITS_ONLY", "line", 1)
            assert error["message"] == "此项目按整盒计数：请填写整数（1、2、3……），不能填小数。"

    def test_an_item_measured_by_time_keeps_decimals(self, doctor):
        read(doctor, POOR_CARD)
        body = {"visit_type": "general", "diagnoses": ["J06.900"],
                "lines": [{"code": OXYGEN, "quantity": "1.5"},
                          {"code": AMOXICILLIN, "quantity": "2.000"}]}  # fmt: skip
        assert doctor.post_json("/api/quote", body).json["ok"] is True


class TestVisitTypes:
    def test_a_certificate_visit_type_is_not_offered_without_a_certificate(self, doctor):
        read(doctor, RESIDENT_CARD)
        page = settle_page(doctor)[0]
        radios = re.findall(r'name="visit_type" value="(\w+)"', page)
        assert radios == ["general"] and "慢特病门诊" not in page.split('class="panel visit"')[1]

    def test_the_year_table_lists_only_the_visit_types_the_patient_may_use(self, doctor):
        read(doctor, RESIDENT_CARD)  # no certificate: 普通门诊 only
        page = settle_page(doctor)[0]
        year = page.split('<table class="year">')[1].split("</table>")[0]
        assert "普通门诊" in year and "慢特病门诊" not in year and "两病门诊" not in year
        read(doctor, CHRONIC_CARD)  # a hypertension certificate: every visit type
        year = settle_page(doctor)[0].split('<table class="year">')[1].split("</table>")[0]
        assert "慢特病门诊" in year and "两病门诊" in year

    def test_the_certificate_s_days_read_as_chinese_dates(self, doctor):
        read(doctor, CHRONIC_CARD)
        panel = settle_page(doctor)[0].split('class="panel visit"')[0]
        assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日–\d{4}年\d{1,2}月\d{1,2}日", panel)
        assert re.search(r"\d{4}-\d\d-\d\d", panel) is None

    def test_a_certificate_holder_is_offered_them(self, doctor):
        read(doctor, CHRONIC_CARD)
        radios = re.findall(r'name="visit_type" value="(\w+)"', settle_page(doctor)[0])
        assert "chronic" in radios


class TestPresetReversalReasons:
    def settled(self, doctor) -> str:
        read(doctor, POOR_CARD)
        body = {"visit_type": "general", "diagnoses": ["J06.900"],
                "lines": [{"code": AMOXICILLIN, "quantity": "2"}]}  # fmt: skip
        return doctor.post_json("/api/settle", body).json["tx_id"]

    def reason_of(self, app, seq: int) -> str:
        store = store_of(app)
        try:
            return next(r for r in store.records() if r["seq"] == seq)["body"]["reason"]
        finally:
            store.close()

    def test_the_detail_offers_the_preset_reasons_and_a_keyboard_for_the_note(self, doctor):
        page = doctor.client.get(f"/records/{self.settled(doctor)}").get_data(as_text=True)
        for label in ("录入错误", "患者退药", "重复结算", "其他"):
            assert f"<span>{label}</span>" in page
        assert 'data-osk="letters"' in page and "js/keyboard.js" in page

    def test_a_preset_alone_is_a_reason_and_a_note_is_added_to_it(self, doctor, app):
        doctor.post(f"/records/{self.settled(doctor)}/reverse", {"preset": "returned"})
        assert self.reason_of(app, 2) == "患者退药"
        doctor.post(f"/records/{self.settled(doctor)}/reverse",
                    {"preset": "entry_error", "reason": " 2 he  "})  # fmt: skip
        assert self.reason_of(app, 4) == "录入错误：2 he"

    def test_an_english_screen_still_records_the_chinese_words(self, doctor, app):
        tx_id = self.settled(doctor)
        doctor.post("/lang", {"lang": "en", "next": "/settle"})
        page = doctor.client.get(f"/records/{tx_id}").get_data(as_text=True)
        assert "<span>Settled twice</span>" in page
        doctor.post(f"/records/{tx_id}/reverse", {"preset": "duplicate"})
        assert self.reason_of(app, 2) == "重复结算"


class TestAnExpiredCard:
    """The demo's `expired` card is 张建国's, whose insurance is active."""

    def test_it_offers_the_e_voucher_and_a_look_up_by_insured_number(self, doctor):
        read(doctor, "expired")
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "张建国的医保卡已过有效期，但医保仍有效" in page and "医保电子凭证" in page
        assert 'id="lookup-form"' in page and 'value="32011500000001"' in page
        assert "CARD_EXPIRED" not in page and "读卡失败" not in page
        assert 'id="voucher-token"' in page

    def test_the_look_up_needs_a_reason_and_is_a_signed_event(self, doctor, app):
        read(doctor, "expired")
        form = {"insured_id": "32011500000001"}
        doctor.post("/settle/lookup", form)
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "请选择未用医保卡查找患者的原因。" in page and 'id="patient-name"' not in page
        doctor.post("/settle/lookup", {**form, "reason": "card_expired"})
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "张建国" in page and "按医保编号查找" in page
        store = store_of(app)
        try:
            (event,) = [r["body"] for r in store.records() if r["kind"] == "event"]
        finally:
            store.close()
        assert event == {"event": "patient_looked_up", "operator": "doc01",
                         "insured_id": "32011500000001", "reason": "卡片过期"}  # fmt: skip
        body = {"visit_type": "general", "diagnoses": ["J06.900"],
                "lines": [{"code": AMOXICILLIN, "quantity": "1"}]}  # fmt: skip
        assert doctor.post_json("/api/settle", body).json["ok"] is True

    def test_an_unknown_insured_number_is_refused(self, doctor, app):
        doctor.post("/settle/lookup", {"insured_id": "99999999999999", "reason": "other"})
        page = doctor.client.get("/settle").get_data(as_text=True)
        assert "本终端的参保名册中没有此参保人。" in page and 'id="patient-name"' not in page


def test_a_record_names_its_operator_not_their_id(doctor):
    read(doctor, POOR_CARD)
    body = {"visit_type": "general", "diagnoses": ["J06.900"],
            "lines": [{"code": AMOXICILLIN, "quantity": "1"}]}  # fmt: skip
    tx_id = doctor.post_json("/api/settle", body).json["tx_id"]
    page = doctor.client.get(f"/records/{tx_id}").get_data(as_text=True)
    facts = page.split('class="facts-list"')[1].split("</dl>")[0]
    assert "王医生" in facts and "doc01" not in facts


def test_the_page_can_lock_a_session_the_server_already_locked(doctor, clock):
    started(doctor)
    token = doctor.token
    clock.advance(minutes=16)
    doctor.client.get("/api/card")  # the card poll finds the session idle: locked
    response = doctor.client.post("/lock", data={"next": "/settle", "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/signin?next=/settle"
    page = doctor.client.get("/signin?next=/settle").get_data(as_text=True)
    assert "屏幕已锁定" in page
    doctor.sign_in("doc01")
    assert_intact(doctor)


def test_a_visit_left_unfinished_yesterday_is_set_aside(doctor, clock):
    started(doctor)
    clock.advance(days=1)
    doctor.sign_in("doc01")
    page, draft = settle_page(doctor)
    assert draft is None and "往日未完成的就诊已作废：请重新读卡。" in page
