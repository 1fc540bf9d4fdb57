"""The terminal's premium pages (收缴保费, web_ui/service_point.py) on a real device store:
the quote per person, the collection, the 收费凭证 with its QR, the reversal, the 日结;
forms refused with a clear message change nothing."""

import re
from pathlib import Path

from web_support import store_of

from drivers.printer import PrinterEmulator
from drivers.receipt import verify_receipt_qr
from edge import services

pytest_plugins = ["web_fixtures"]  # the web UI fixtures

ZHANG, LI, CHEN = "32011500000001", "32011500000002", "32011500000005"  # CHEN: 特困
HUANG = "32011500000008"  # 重度残疾: a fixed subsidy
EMPLOYEE = "32011500000501"
KONG, KONG_HOLDER = "32011500000027", "32011500000511"  # 家庭共济


def ledger_count(app) -> int:
    store = store_of(app)
    try:
        return store.db.execute("SELECT count(*) FROM ledger").fetchone()[0]
    finally:
        store.close()


def page_of(auth, *ids, year=None) -> str:
    query = "&".join(f"ids={i}" for i in ids) + (f"&year={year}" if year else "")
    response = auth.client.get(f"/service/premium?{query}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def collect(auth, *ids, **form):
    data = {"ids": list(ids), "method": "cash", **form}
    return auth.post("/service/premium", data)


def test_the_page_quotes_each_person_and_says_who_the_state_pays_for(doctor):
    page = page_of(doctor, ZHANG, CHEN, HUANG)
    assert "张建国" in page and "陈志强" in page and "黄大伟" in page
    assert "由政府全额资助" in page  # 陈志强, 特困: nothing to pay
    # ¥400 each for 张建国; 黄大伟 pays ¥400 - ¥200 subsidy; the total is ¥600.00
    assert 'id="premium-total" data-amount="total">¥600.00<' in page
    assert 'id="year-2027"' in page and 'id="year-2026"' in page


def test_an_employee_or_a_state_paid_person_alone_says_why(doctor):
    page = page_of(doctor, EMPLOYEE)
    assert "职工医保参保人不缴纳居民医保保费" in page
    assert 'id="collect"' not in page
    page = page_of(doctor, CHEN)
    assert 'id="nothing-due"' in page and 'id="collect"' not in page


def test_search_by_name_offers_the_person_to_add(doctor):
    page = doctor.client.get(f"/service/premium?ids={ZHANG}&q=李秀").get_data(as_text=True)
    assert f'data-insured="{LI}"' in page


def test_a_family_payment_is_recorded_its_receipt_verifies_and_it_is_reversed(doctor, app):
    answer = collect(doctor, ZHANG, CHEN, year="2027")
    assert answer.status_code == 302, answer.get_data(as_text=True)
    receipt = doctor.client.get(answer.location).get_data(as_text=True)
    assert "收费凭证" in receipt and "¥400.00" in receipt
    payload = re.search(r'data-payload="([^"]+)"', receipt).group(1)
    store = store_of(app)
    try:
        key = services.public_key_of(store)
        verified = verify_receipt_qr(payload.replace("&#43;", "+"), key)
    finally:
        store.close()
    assert verified.record["kind"] == "premium" and verified.record["body"]["amount"] == 40000
    tx_id = verified.record["tx_id"]
    text = doctor.client.get(f"/receipt/{tx_id}/text").get_data(as_text=True)
    assert "收费凭证" in text and "实收金额" in text

    # the same person again: already paid, nothing written
    before = ledger_count(app)
    again = collect(doctor, ZHANG, year="2027")
    assert "已缴费" in doctor.client.get(again.location).get_data(as_text=True)
    assert ledger_count(app) == before

    reversed_ = doctor.post(f"/service/premium/{tx_id}/reverse", {"preset": "duplicate"})
    assert reversed_.status_code == 302
    shown = doctor.client.get(reversed_.location).get_data(as_text=True)
    assert "收费冲正" in shown or "已冲正" in shown or "冲正" in shown
    original = doctor.client.get(f"/service/premium/{tx_id}").get_data(as_text=True)
    assert 'id="reversed-note"' in original and 'id="reverse"' not in original

    close = doctor.client.get("/close").get_data(as_text=True)
    assert 'id="premium-totals"' in close
    assert 'data-amount="premiums-collected">¥400.00<' in close
    assert 'id="premiums-cash">¥0.00<' in close


def test_mobile_needs_its_reference_and_a_bad_method_changes_nothing(doctor, app):
    before = ledger_count(app)
    answer = collect(doctor, ZHANG, method="mobile")
    assert "请输入移动支付的交易单号" in doctor.client.get(answer.location).get_data(as_text=True)
    assert ledger_count(app) == before
    answer = collect(doctor, ZHANG, method="gold")
    page = doctor.client.get(answer.location).get_data(as_text=True)
    assert "请选择缴费方式" in page
    assert ledger_count(app) == before
    answer = collect(doctor, ZHANG, method="mobile", reference="WX2026112200001")
    assert "/service/premium/" in answer.location
    assert ledger_count(app) == before + 1


def test_family_account_pays_a_relative_s_premium(doctor, app):
    page = page_of(doctor, KONG)
    assert f'value="{KONG_HOLDER}"' in page
    answer = collect(doctor, KONG, method="family_account", account_holder=KONG_HOLDER)
    receipt = doctor.client.get(answer.location).get_data(as_text=True)
    assert "孔丽" in receipt and "家庭共济" in receipt


def test_the_receipt_prints(doctor, app):
    answer = collect(doctor, ZHANG)
    tx_id = answer.location.rsplit("/", 1)[1]
    printed = doctor.post(f"/receipt/{tx_id}/print", {"next": f"/service/premium/{tx_id}"})
    assert printed.location.endswith(f"/service/premium/{tx_id}")
    paper = PrinterEmulator(Path(app.config["PRINTER"].removeprefix("emulated://"))).text()
    assert "收费凭证" in paper


def test_the_signed_close_and_the_month_show_the_premiums(doctor, app):
    collect(doctor, ZHANG, HUANG)  # ¥400 + ¥200, cash
    closed = doctor.post("/close", {})
    assert "/close/" in closed.location
    signed = doctor.client.get(closed.location).get_data(as_text=True)
    assert 'data-amount="premiums-collected">¥600.00<' in signed
    assert 'id="premiums-cash">¥600.00<' in signed and "保费现金应上缴" in signed
    month = doctor.client.get("/month").get_data(as_text=True)
    assert 'id="premiums-cash">¥600.00<' in month


def test_a_close_without_premiums_shows_none(doctor):
    assert 'id="premium-totals"' not in doctor.client.get("/close").get_data(as_text=True)


def test_the_pages_read_in_english_too(doctor):
    doctor.post("/lang", {"lang": "en", "next": "/service"})
    page = page_of(doctor, ZHANG, CHEN, EMPLOYEE)
    assert "Collect premiums" in page and "Paid in full by the state" in page
    assert "an employee pays no resident premium" in page  # the use case's own words
    kinds = ("enrolment", "chronic_certificate", "cross_region_filing", "renewal")
    paths = ["/service", "/service/requests", "/service/requests/new"]
    for path in paths + [f"/service/requests/new/{kind}" for kind in kinds]:
        assert doctor.client.get(path).status_code == 200, path
