"""The terminal's request pages (业务申请, 申请记录; web_ui/service_point.py) on a real
device store: a request per kind with its photos, the list and a request's page with
the county's decision; refused forms say why and change nothing; an enrolment's ID
number is never in a response after it was sent, nor in the session cookie or the
ledger or anywhere in the device's files."""

import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from clock import NOW
from web_service_support import ID_NUMBER, County, png
from web_support import store_of
from werkzeug.test import EnvironBuilder

from drivers.printer import PrinterEmulator
from edge import service_requests
from edge.domain import service_point as sp

pytest_plugins = ["web_fixtures"]  # the web UI fixtures

ZHANG = "32011500000001"
PHOTO = png()
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"photo" * 40


@pytest.fixture
def county(app) -> County:
    county = County()
    store = store_of(app)
    try:
        county.pin_on(store, store.device().device_id)
    finally:
        store.close()
    return county


def snapshot(app) -> tuple:
    store = store_of(app)
    try:
        ledger = store.db.execute("SELECT count(*) FROM ledger").fetchone()[0]
        indexed = store.db.execute("SELECT count(*) FROM service_request").fetchone()[0]
    finally:
        store.close()
    photos = app.config["DATA_DIR"] / "attachments"
    return ledger, indexed, sorted(p.name for p in photos.iterdir()) if photos.exists() else []


def chronic_form(**changes) -> dict:
    form = {"insured_id": ZHANG, "scheme": "two_diseases", "disease_code": "I10.x00",
            "hospital": "县人民医院", "diagnosed_on": "20260301", "note": "",
            "photos": [(io.BytesIO(PHOTO), "scan.png")]}  # fmt: skip
    form.update(changes)
    return form


def enrolment_form(**changes) -> dict:
    form = {"name": "王小明", "gender": "M", "birth_date": "19900101", "id_number": ID_NUMBER,
            "category": "", "village": "东村"}  # fmt: skip
    form.update(changes)
    return form


def post(auth, kind: str, form: dict):
    return post_multipart(auth, f"/service/requests/new/{kind}", form)


def post_multipart(auth, path: str, form: dict):
    """A multipart form as the page sends it; its encoded body (a temporary file once it
    is large) is closed here, whether the app read it or refused it unread."""
    builder = EnvironBuilder(path=path, method="POST", data={**form, "csrf_token": auth.token})
    environ = builder.get_environ()
    try:
        return auth.client.open(environ)
    finally:
        environ["wsgi.input"].close()
        builder.close()


def recorded(app, tx_id: str) -> dict:
    store = store_of(app)
    try:
        return store.record_by_tx(tx_id)
    finally:
        store.close()


class TestChronic:
    def test_a_certificate_application_with_a_photo_is_signed_and_listed_pending(self, doctor, app):
        answer = post(doctor, "chronic_certificate", chronic_form())
        assert answer.status_code == 302, answer.get_data(as_text=True)
        tx_id = answer.location.rsplit("/", 1)[1]
        page = doctor.client.get(answer.location).get_data(as_text=True)
        assert "门诊慢特病申报" in page and "待上传" in page and "I10.x00" in page
        body = recorded(app, tx_id)["body"]
        assert body["details"]["disease_name"] and body["details"]["diagnosed_on"] == "2026-03-01"
        [photo] = body["attachments"]
        assert photo["type"] == "image/png" and photo["bytes"] == len(PHOTO)
        shown = doctor.client.get(f"/service/requests/{tx_id}/photos/{photo['sha256']}")
        assert shown.status_code == 200 and shown.data == PHOTO
        assert shown.mimetype == "image/png"
        listed = doctor.client.get("/service/requests").get_data(as_text=True)
        assert f'data-tx="{tx_id}" data-state="pending"' in listed
        menu = doctor.client.get("/service").get_data(as_text=True)
        assert "医保服务" in menu and "待上传 · 1" in menu

    def test_a_photo_the_request_does_not_name_is_not_served(self, doctor, app):
        answer = post(doctor, "chronic_certificate", chronic_form())
        tx_id = answer.location.rsplit("/", 1)[1]
        other = "0" * 64
        assert doctor.client.get(f"/service/requests/{tx_id}/photos/{other}").status_code == 404

    @pytest.mark.parametrize(
        "photos, words",
        [
            ([], "至少需要一张"),
            ([(io.BytesIO(b"GIF89a" + b"x" * 50), "a.gif")], "不是 JPEG 或 PNG"),
            ([(io.BytesIO(b"\xff\xd8\xff" + b"x" * sp.MAX_ATTACHMENT_BYTES), "big.jpg")],
             "超过 3 MB"),
            ([(io.BytesIO(JPEG), f"{n}.jpg") for n in range(7)], "最多 6 张"),
        ],
    )  # fmt: skip
    def test_photos_out_of_bounds_are_refused_and_nothing_is_kept(self, doctor, app, photos, words):
        before = snapshot(app)
        answer = post(doctor, "chronic_certificate", chronic_form(photos=photos))
        assert answer.status_code == 400
        assert words in answer.get_data(as_text=True)
        assert snapshot(app) == before

    def test_a_body_over_the_photos_bound_is_a_clear_413(self, doctor, app):
        before = snapshot(app)
        big = b"\xff\xd8\xff" + b"x" * (sp.MAX_ATTACHMENT_BYTES - 10)
        photos = [(io.BytesIO(big), f"{n}.jpg") for n in range(5)]  # 15 MiB
        answer = post(doctor, "chronic_certificate", chronic_form(photos=photos))
        assert answer.status_code == 413
        assert "照片" in answer.get_data(as_text=True)
        assert snapshot(app) == before

    def test_a_disease_not_in_the_list_or_no_person_is_refused(self, doctor, app):
        before = snapshot(app)
        answer = post(doctor, "chronic_certificate", chronic_form(disease_code="ZZZ"))
        assert answer.status_code == 400 and "请从诊断搜索中选择病种" in answer.get_data(
            as_text=True
        )
        answer = post(doctor, "chronic_certificate", chronic_form(insured_id="999"))
        assert answer.status_code == 400 and "名册" in answer.get_data(as_text=True)
        assert snapshot(app) == before

    def test_a_coordinator_reads_the_list_but_files_nothing(self, auth, app):
        auth.sign_in("coord01")
        assert auth.client.get("/service/requests").status_code == 200
        assert post(auth, "chronic_certificate", chronic_form()).status_code == 403


class TestEnrolment:
    def test_the_id_number_is_sealed_and_never_shown_kept_or_echoed(self, doctor, app, county):
        answer = post(doctor, "enrolment", enrolment_form())
        assert answer.status_code == 302, answer.get_data(as_text=True)
        tx_id = answer.location.rsplit("/", 1)[1]
        responses = [
            answer,
            doctor.client.get(answer.location),
            doctor.client.get("/service/requests"),
            doctor.client.get("/service"),
            doctor.client.get(f"/records/{tx_id}", follow_redirects=True),
        ]
        masked = sp.mask_id_number(ID_NUMBER)
        assert masked in responses[1].get_data(as_text=True)
        for response in responses:
            assert ID_NUMBER not in response.get_data(as_text=True)
            assert ID_NUMBER not in str(response.headers)
        cookie = doctor.client.get_cookie("session")
        session = app.session_interface.get_signing_serializer(app).loads(cookie.value)
        assert ID_NUMBER not in repr(session)
        record = recorded(app, tx_id)
        assert ID_NUMBER not in repr(record)
        assert record["body"]["applicant"]["id_number_masked"] == masked
        assert record["body"]["sealed_id_number"]["alg"] == "X25519-HKDF-SHA256-AES256GCM"
        for path in app.config["DATA_DIR"].rglob("*"):
            if path.is_file():
                assert ID_NUMBER.encode() not in path.read_bytes(), path

    def test_the_id_field_keeps_nothing(self, doctor, county):
        form = doctor.client.get("/service/requests/new/enrolment").get_data(as_text=True)
        field = re.search(r'<input id="id_number"[^>]*>', form).group(0)
        assert 'autocomplete="off"' in field and 'value=""' in field
        assert 'autocomplete="off"' in re.search(r'<form [^>]*id="request-form"[^>]*>', form).group(
            0
        )

    def test_a_wrong_id_number_is_refused_not_echoed_and_changes_nothing(self, doctor, app, county):
        before = snapshot(app)
        wrong = ID_NUMBER[:17] + ("0" if ID_NUMBER[17] != "0" else "1")
        answer = post(doctor, "enrolment", enrolment_form(id_number=wrong))
        page = answer.get_data(as_text=True)
        assert answer.status_code == 400 and "校验位" in page and "请重新输入" in page
        assert wrong not in page and "王小明" in page  # the rest of the form stays
        assert snapshot(app) == before
        answer = post(doctor, "enrolment", enrolment_form(birth_date="19910101"))
        assert answer.status_code == 400 and "出生日期" in answer.get_data(as_text=True)
        assert ID_NUMBER not in answer.get_data(as_text=True)
        assert snapshot(app) == before

    def test_without_the_county_s_encryption_key_an_enrolment_is_refused(self, doctor, app):
        before = snapshot(app)
        answer = post(doctor, "enrolment", enrolment_form())
        assert answer.status_code == 400
        assert "先同步一次以取得县医保局的加密公钥" in answer.get_data(as_text=True)
        assert snapshot(app) == before


class TestDecisions:
    def decide(self, app, county, tx_id, outcome, result=None, serial=1):
        store = store_of(app)
        try:
            record = store.record_by_tx(tx_id)
            device_id = store.device().device_id
            store.db.execute("UPDATE device SET synced_seq = ?", [record["seq"]])
            identity = __import__("edge.services", fromlist=["x"]).load_identity(
                store, app.config["DATA_DIR"]
            )
            document = county.decision(device_id, record, outcome, result, serial)
            service_requests.apply_decision(
                store, identity, document, county.public_key, NOW + timedelta(hours=3)
            )
        finally:
            store.close()

    def test_an_approved_enrolment_shows_the_new_insured_number(self, doctor, app, county):
        tx_id = post(doctor, "enrolment", enrolment_form()).location.rsplit("/", 1)[1]
        self.decide(app, county, tx_id, "approved",
                    {"insured_id": "32011500009001", "roster_version": "2026.11.1"})  # fmt: skip
        page = doctor.client.get(f"/service/requests/{tx_id}").get_data(as_text=True)
        assert "已批准" in page, re.search(r"request-state.*", page).group(0)
        assert "32011500009001" in page and "名册更新后可结算" in page
        assert 'id="settle-new-insured"' not in page  # not in the installed roster yet

    def test_once_the_roster_holds_the_new_resident_the_page_offers_the_look_up(
        self, doctor, app, county
    ):
        tx_id = post(doctor, "enrolment", enrolment_form()).location.rsplit("/", 1)[1]
        # 32011500000001 stands for a number the roster update brought (the demo's 张建国)
        self.decide(app, county, tx_id, "approved",
                    {"insured_id": "32011500000001", "roster_version": "2026.11.3"})  # fmt: skip
        page = doctor.client.get(f"/service/requests/{tx_id}").get_data(as_text=True)
        assert 'id="settle-new-insured"' in page and "为其结算就诊" in page
        looked_up = doctor.post(
            "/settle/lookup", {"insured_id": "32011500000001", "reason": "other"}
        )
        assert looked_up.status_code == 302
        settle = doctor.client.get("/settle").get_data(as_text=True)
        assert "张建国" in settle and 'id="looked-up"' in settle

    def test_more_information_is_answered_by_a_follow_up(self, doctor, app, county):
        tx_id = post(doctor, "chronic_certificate", chronic_form()).location.rsplit("/", 1)[1]
        self.decide(app, county, tx_id, "more_info")
        page = doctor.client.get(f"/service/requests/{tx_id}").get_data(as_text=True)
        assert "需补充材料" in page and "诊断证明不清楚" in page and 'id="follow-up"' in page
        listed = doctor.client.get("/service/requests?state=more_info").get_data(as_text=True)
        assert tx_id in listed and "诊断证明不清楚" in listed
        link = re.search(r'id="follow-up" href="([^"]+)"', page).group(1).replace("&amp;", "&")
        form = doctor.client.get(link).get_data(as_text=True)
        assert f'value="{ZHANG}"' in form
        answer = post_multipart(doctor, link, chronic_form())
        assert answer.status_code == 302, answer.get_data(as_text=True)
        follow = recorded(app, answer.location.rsplit("/", 1)[1])
        assert follow["body"]["follow_up_of"] == tx_id

    def test_a_rejected_request_says_why(self, doctor, app, county):
        tx_id = post(doctor, "chronic_certificate", chronic_form()).location.rsplit("/", 1)[1]
        self.decide(app, county, tx_id, "rejected")
        page = doctor.client.get(f"/service/requests/{tx_id}").get_data(as_text=True)
        assert "已退回" in page and "诊断证明不清楚" in page and 'id="follow-up"' not in page


class TestOtherKinds:
    def test_a_complaint_starts_from_the_settlement_s_page(self, doctor, app):
        doctor.post("/tester/insert", {"card": "A32011501"})
        doctor.post("/settle/card")
        body = {"visit_type": "general", "diagnoses": ["J06.900"],
                "lines": [{"code": "XJ01CAA040A001", "quantity": "2"}]}  # fmt: skip
        settled = doctor.post_json("/api/settle", body).json
        record_page = doctor.client.get(f"/records/{settled['tx_id']}").get_data(as_text=True)
        link = re.search(r'id="complain" href="([^"]+)"', record_page).group(1)
        form = doctor.client.get(link.replace("&amp;", "&")).get_data(as_text=True)
        assert "张建国" in form
        answer = post_multipart(doctor, link.replace("&amp;", "&"), {"grounds": "药费算错"})
        assert answer.status_code == 302, answer.get_data(as_text=True)
        request = recorded(app, answer.location.rsplit("/", 1)[1])["body"]
        assert request["details"]["settlement_tx_id"] == settled["tx_id"]
        assert request["insured_id"] == ZHANG

    def test_a_complaint_without_a_settlement_goes_back(self, doctor):
        answer = doctor.client.get("/service/requests/new/complaint")
        assert answer.status_code == 302

    def test_a_cross_region_filing_and_a_renewal(self, doctor, app):
        form = {"insured_id": ZHANG, "filing_type": "long_term_residence",
                "destination": "上海市", "valid_from": "20261201", "valid_to": "",
                "reason": "随子女居住"}  # fmt: skip
        answer = post(doctor, "cross_region_filing", form)
        assert answer.status_code == 302, answer.get_data(as_text=True)
        page = doctor.client.get(answer.location).get_data(as_text=True)
        assert "异地就医备案" in page and "上海市" in page and "2026-12-01" in page
        answer = post(doctor, "renewal", {"insured_id": ZHANG, "year": "2027"})
        assert answer.status_code == 302, answer.get_data(as_text=True)
        bad = post(doctor, "cross_region_filing", {**form, "valid_from": "2026-13-01"})
        assert bad.status_code == 400 and "YYYYMMDD" in bad.get_data(as_text=True)


def test_the_slip_prints_for_the_resident(doctor, app):
    tx_id = post(doctor, "chronic_certificate", chronic_form()).location.rsplit("/", 1)[1]
    answer = doctor.post(f"/service/requests/{tx_id}/print")
    assert answer.location.endswith(f"/service/requests/{tx_id}")
    assert "申请回执已打印" in doctor.client.get(answer.location).get_data(as_text=True)
    paper = PrinterEmulator(Path(app.config["PRINTER"].removeprefix("emulated://"))).text()
    assert "业务申请回执" in paper and "张建国" in paper


def test_a_renewal_offers_the_persons_unreversed_premiums_to_link(doctor, app):
    def collect(insured_id):
        answer = doctor.post("/service/premium", {"ids": [insured_id], "method": "cash",
                                                  "year": "2027"})  # fmt: skip
        assert answer.status_code == 302, answer.get_data(as_text=True)
        return answer.location.rsplit("/", 1)[1]

    reversed_one = collect(ZHANG)
    answer = doctor.post(f"/service/premium/{reversed_one}/reverse",
                         {"reason": "duplicate"})  # fmt: skip
    assert answer.status_code == 302
    paid, other = collect(ZHANG), collect("32011500000002")

    page = doctor.client.get(f"/service/requests/new/renewal?insured_id={ZHANG}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="premium-choice"' in text
    offered = re.findall(r'name="premium_tx_id" value="([^"]*)"', text)
    assert offered == ["", paid]  # none (optional), and ZHANG's premium not reversed
    assert "所缴保费（可选）" in text and 'id="find-premiums"' in text

    before = snapshot(app)
    bad = post(doctor, "renewal", {"insured_id": ZHANG, "year": "2027", "premium_tx_id": other})
    assert bad.status_code == 400 and "这笔缴费" in bad.get_data(as_text=True)
    assert snapshot(app) == before

    answer = post(doctor, "renewal", {"insured_id": ZHANG, "year": "2027", "premium_tx_id": paid})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    body = recorded(app, answer.location.rsplit("/", 1)[1])["body"]
    assert body["details"] == {"year": 2027, "premium_tx_id": paid}
    # Someone with no premium: nothing to choose but "none", and the page says so.
    text = doctor.client.get("/service/requests/new/renewal?insured_id=32011500000003").get_data(
        as_text=True
    )
    assert re.findall(r'name="premium_tx_id" value="([^"]*)"', text) == [""]
    assert 'id="no-premiums"' in text
