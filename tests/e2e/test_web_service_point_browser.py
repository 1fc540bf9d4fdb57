"""The service point on the terminal (医保服务), in a real headless Chromium at 800×480
with touch and zh-CN, every character tapped on the on-screen keyboard: a family's
premium collected (one 特困 member pays nothing), its 收费凭证 whose QR code verifies,
its reversal, and both in the 日结; a chronic-disease application with a photo, listed
as waiting to upload; an enrolment whose ID number is shown masked only, kept by neither
the page nor the ledger. Screenshots go to test-artifacts/web-e2e/service-*/."""

import pytest
from browser_support import Shots, no_sideways_scroll, tap_chinese, tap_keys, tap_pin, wait_until
from web_service_support import ID_NUMBER, County, png
from web_support import FakeClock, app_config, make_demo_device, served, store_of

from drivers.receipt import verify_receipt_qr
from edge import services
from edge.domain.service_point import mask_id_number

ZHANG_CARD, ZHANG = "A32011501", "32011500000001"
CHEN = "32011500000005"  # 特困: the state pays his premium in full


@pytest.fixture
def terminal(tmp_path):
    from web_ui.app import create_app

    data_dir = tmp_path / "device"
    make_demo_device(data_dir)
    app = create_app(app_config(data_dir, FakeClock(), TESTING=False, CARD_WAIT_SECONDS=2.0,
                                CARD_POLL_MS=200, SESSION_IDLE_MINUTES=60))  # fmt: skip
    with served(app) as url:
        yield url, app


@pytest.fixture
def county_pinned(terminal):
    """The county's encryption key pinned, as the first sync does."""
    store = store_of(terminal[1])
    try:
        County().pin_on(store, store.device().device_id)
    finally:
        store.close()
    return terminal


def tap_to(page, selector: str) -> None:
    """A tap that opens another page."""
    with page.expect_navigation():
        page.locator(selector).tap()


def sign_in(page, url: str) -> None:
    page.goto(f"{url}/signin")
    page.locator("label.choice", has_text="王医生").tap()
    tap_pin(page, "1111")
    tap_to(page, "#signin-submit")


def small_targets(page, selector: str) -> list:
    boxes = page.eval_on_selector_all(
        selector,
        "els => els.filter(e => e.offsetParent).map(e => [e.id || e.textContent.trim(),"
        " e.getBoundingClientRect().width, e.getBoundingClientRect().height])",
    )
    return [b for b in boxes if b[1] < 44 or b[2] < 44]


def test_a_family_premium_collected_by_tapping_verifies_reverses_and_closes(terminal, page):
    url, app = terminal
    shot = Shots(page, "service-premium")
    sign_in(page, url)
    tap_to(page, 'nav a[href="/service"]')
    no_sideways_scroll(page)
    shot("service-menu")
    tap_to(page, "#go-premium")

    # 张建国's card goes in; the doctor taps 读卡.
    token = page.get_attribute('meta[name="csrf-token"]', "content")
    assert page.request.post(
        f"{url}/tester/insert", form={"card": ZHANG_CARD, "csrf_token": token}
    ).ok
    tap_to(page, "#read-card")
    page.wait_for_selector(f'#premium-lines tr[data-insured="{ZHANG}"]')

    # His father 陈志强 is found by his insured number, typed on the keyboard.
    page.locator("#person-q").tap()
    page.wait_for_selector("#osk:not([hidden])")
    tap_keys(page, CHEN)
    page.locator("#osk button[data-osk-key=done]").tap()
    tap_to(page, "#person-search")
    tap_to(page, f'#found-persons a[data-insured="{CHEN}"]')
    chen = page.locator(f'#premium-lines tr[data-insured="{CHEN}"]')
    assert "由政府全额资助" in chen.text_content()
    assert page.text_content("#premium-total") == "¥400.00"
    assert page.locator("#year-2027").get_attribute("aria-pressed") == "true"
    assert small_targets(page, "#premium-persons a.button, #premium-persons button, #collect") == []
    no_sideways_scroll(page)
    shot("family-quoted")

    page.locator("#method-choice label.choice", has_text="现金").tap()
    tap_to(page, "#collect")  # its confirmation is accepted
    page.wait_for_selector("#receipt-qr")
    assert page.text_content("#receipt-amount") == "¥400.00"
    wait_until(page, "document.getElementById('receipt-text').textContent.includes('收费凭证')")
    no_sideways_scroll(page)
    shot("receipt")

    # The QR code the page shows is the signed record, verified with the device's key.
    payload = page.get_attribute("#receipt-qr", "data-payload")
    store = store_of(app)
    try:
        verified = verify_receipt_qr(payload, services.public_key_of(store))
    finally:
        store.close()
    body = verified.record["body"]
    assert verified.record["kind"] == "premium" and body["amount"] == 40000
    assert [p["amount"] for p in body["persons"]] == [40000, 0]
    qr_image = page.request.get(url + page.get_attribute("#receipt-qr", "src"))
    assert qr_image.ok and qr_image.headers["content-type"].startswith("image/svg")

    # Paid twice by mistake: reversed with a tapped reason.
    page.locator("#reversal-reasons label.choice", has_text="重复缴费").tap()
    tap_to(page, "#reverse")
    assert "保费已冲正" in page.text_content("#receipt-title")
    shot("reversed")

    tap_to(page, 'nav a[href="/close"]')
    totals = page.locator("#premium-totals")
    assert totals.locator('[data-amount="premiums-collected"]').text_content() == "¥400.00"
    assert totals.locator('[data-amount="premiums-reversed"]').text_content() == "-¥400.00"
    assert page.text_content("#premiums-cash") == "¥0.00"
    no_sideways_scroll(page)
    shot("daily-close")
    assert page.problems == []


def test_a_chronic_application_with_a_photo_by_tapping_is_listed_waiting(terminal, page, tmp_path):
    url, _app = terminal
    shot = Shots(page, "service-chronic")
    sign_in(page, url)
    tap_to(page, 'nav a[href="/service"]')
    tap_to(page, "#go-new-request")
    tap_to(page, "#new-chronic_certificate")
    no_sideways_scroll(page)
    shot("form")

    page.locator("#insured_id").tap()
    page.wait_for_selector('#osk[data-kind="numbers"]:not([hidden])')
    tap_keys(page, ZHANG)
    page.locator("#osk button[data-osk-key=done]").tap()
    page.locator("#disease label.choice", has_text="两病").tap()

    # The disease by the pinyin initials of 高血压.
    page.locator("#disease-q").tap()
    tap_keys(page, "gxy")
    page.locator("#osk button[data-osk-key=done]").tap()
    option = page.locator('#disease-results[data-query="gxy"] li[data-code="I10.x00"]')
    option.wait_for()
    option.tap()
    assert "高血压" in page.text_content("#disease-chosen")

    # A photo of the diagnosis, as the USB camera's picker gives it.
    photo = tmp_path / "diagnosis.png"
    photo.write_bytes(png(64, 48))
    with page.expect_file_chooser() as chooser:
        page.locator("#photo-pick").tap()
    chooser.value.set_files(str(photo))
    wait_until(page, "document.getElementById('photo-count').textContent.includes('1')")
    no_sideways_scroll(page)
    shot("filled")

    tap_to(page, "#submit-request")
    assert page.get_attribute("#request-state", "data-state") == "pending"
    assert page.text_content("#request-state") == "待上传"
    page.wait_for_selector(".photo img")
    wait_until(page, "document.querySelector('.photo img').naturalWidth === 64")
    shot("request")

    tap_to(page, 'a[href="/service/requests"]')
    row = page.locator("#request-list tbody tr").first
    assert row.get_attribute("data-state") == "pending"
    assert "门诊慢特病申报" in row.text_content() and "张建国" in row.text_content()
    no_sideways_scroll(page)
    shot("list")
    assert page.problems == []


def test_an_enrolment_typed_by_tapping_shows_the_id_number_masked_only(county_pinned, page):
    url, app = county_pinned
    shot = Shots(page, "service-enrolment")
    sign_in(page, url)
    tap_to(page, 'nav a[href="/service"]')
    tap_to(page, "#go-new-request")
    tap_to(page, "#new-enrolment")

    page.locator("#name").tap()
    for pinyin, character in (("wang", "王"), ("xiao", "小"), ("ming", "明")):
        tap_chinese(page, pinyin, character)
    assert page.input_value("#name") == "王小明"
    page.locator("#osk button[data-osk-key=done]").tap()
    page.locator("#applicant label.choice", has_text="男").tap()
    page.locator("#birth_date").tap()
    tap_keys(page, "19900101")
    page.locator("#osk button[data-osk-key=done]").tap()
    page.locator("#id_number").tap()
    tap_keys(page, ID_NUMBER.lower())
    page.locator("#osk button[data-osk-key=done]").tap()
    no_sideways_scroll(page)
    shot("filled")

    tap_to(page, "#submit-request")
    masked = mask_id_number(ID_NUMBER)
    assert page.text_content("#id-masked") == masked
    assert page.text_content("#request-state") == "待上传"
    assert ID_NUMBER not in page.content()
    # Nothing of it kept by the page's own storage, and the form comes back empty.
    assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
    shot("request")
    page.go_back()
    page.wait_for_selector("#id_number")
    assert page.input_value("#id_number") == ""
    store = store_of(app)
    try:
        ledger = [row[0] for row in store.db.execute("SELECT record FROM ledger")]
    finally:
        store.close()
    assert ledger and not any(ID_NUMBER in text for text in ledger)
    assert page.problems == []
