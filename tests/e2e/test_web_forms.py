"""The 医保结算单 and the 日结 in a real headless Chromium at 800×480 with touch: a
settlement's form prints by itself after confirm on the emulated printer, today's list
opens a record from its whole row and totals the day, the 日结 is previewed with its
amounts, signed, shown with the same amounts and printed on the receipt printer with the
right message. Screenshots go to test-artifacts/web-e2e/forms/."""

from pathlib import Path

import pytest
from browser_support import Shots, wait_until
from web_support import FakeClock, app_config, make_demo_device, served

from drivers.printer import PrinterEmulator

LINES = [{"code": "XJ01CAA040A001", "quantity": "2"}, {"code": "110200005000000", "quantity": "1"}]


@pytest.fixture
def forms_terminal(tmp_path):
    from web_ui.app import create_app

    data_dir = tmp_path / "device"
    make_demo_device(data_dir)
    app = create_app(app_config(data_dir, FakeClock(), TESTING=False, CARD_WAIT_SECONDS=2.0,
                                CARD_POLL_MS=200))  # fmt: skip
    with served(app) as url:
        yield url, Path(app.config["PRINTER"].removeprefix("emulated://"))


def sign_in(page, url: str) -> None:
    page.goto(f"{url}/signin")
    page.locator("label.choice", has_text="王医生").tap()
    for key in "1111":
        page.locator(f'.keypad button[data-key="{key}"]').tap()
    page.locator("#signin-submit").tap()
    page.wait_for_url("**/settle")


def settle(page, url: str, card: str) -> dict:
    """A visit settled through the terminal's own endpoints (the settle page's part is
    tested in test_web_browser): the tester inserts the card, the page reads it, confirms."""
    token = page.get_attribute('meta[name="csrf-token"]', "content")
    page.request.post(f"{url}/tester/insert", form={"card": card, "csrf_token": token})
    page.request.post(f"{url}/settle/card", form={"csrf_token": token})
    answer = page.request.post(
        f"{url}/api/settle", headers={"X-CSRFToken": token},
        data={"visit_type": "general", "diagnoses": ["J06.900"], "lines": LINES},
    ).json()  # fmt: skip
    assert answer["ok"], answer
    return answer


def no_sideways_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def small_targets(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(
        selector,
        "els => els.filter(e => e.offsetParent !== null).map(e => [e.id || e.textContent.trim(),"
        " e.getBoundingClientRect()]).filter(([, r]) => r.height < 44 || r.width < 44)"
        ".map(([name, r]) => `${name} ${r.width}x${r.height}`)",
    )


def test_the_form_prints_itself_and_the_day_is_previewed_signed_and_printed(forms_terminal, page):
    url, printer = forms_terminal
    shot = Shots(page, "forms")
    sign_in(page, url)
    page.goto(f"{url}/records")  # not the settle page, whose card poller would reload it

    # Confirmed: the receipt opens (as settle.js opens it), the form prints by itself once,
    # and a reload prints nothing more.
    first = settle(page, url, "A32011501")
    page.goto(url + first["receipt_url"])
    wait_until(page, "document.getElementById('auto-print').dataset.state === 'printed'")
    assert page.text_content("#auto-print") == "结算单已打印。"
    wait_until(page, "document.getElementById('receipt-text').textContent.includes('医保结算单')")
    paper = page.text_content("#receipt-text")
    for field in ("姓名 张建国", "身份证号", "险种 居民医保", "门诊类别 普通门诊", "诊断 J06.900",
                  "自付", "自费", "统筹基金", "现金支付", "本年统筹剩余"):  # fmt: skip
        assert field in paper, field
    assert "甲类" in page.text_content("#receipt-split ~ table.split-lines")
    assert no_sideways_scroll(page)
    shot("receipt-printed-by-itself")
    page.reload()
    page.wait_for_selector("#receipt-title")
    assert PrinterEmulator(printer).text().count("医保结算单") == 1

    second = settle(page, url, "A32011505")
    settle(page, url, "A32011502")

    # Today's list: tap anywhere on a row (not the number) to open it; the day's totals.
    page.goto(f"{url}/records")
    assert page.is_visible("#day-totals") and "结算 3 笔" in page.text_content("#day-totals")
    assert small_targets(page, "#records tbody tr.record-row") == []
    assert no_sideways_scroll(page)
    shot("today-with-totals")
    cash = page.locator(f'#records tr[data-seq="{second["seq"]}"] td').nth(5).bounding_box()
    with page.expect_navigation():  # the row's link covers the whole row
        page.touchscreen.tap(cash["x"] + cash["width"] / 2, cash["y"] + cash["height"] / 2)
    assert page.url.endswith(f"/records/{second['tx_id']}")

    # The 日结 preview: amounts before anything is signed.
    page.goto(f"{url}/close")
    assert "尚未签名" in page.text_content("#close-preview-note")
    preview = {
        name: page.text_content(f'#close-totals [data-amount="{name}"]')
        for name in ("settlements", "reversals", "net", "cash-to-hand")
    }
    assert (
        preview["settlements"] != "¥0.00"
        and page.locator("#close-transactions tbody tr").count() == 3
    )
    assert small_targets(page, "#close-now") == [] and no_sideways_scroll(page)
    shot("close-preview")

    # Sign (the confirmation is accepted): the report shows the previewed amounts.
    with page.expect_navigation():
        page.locator("#close-now").tap()
    page.wait_for_url("**/close/**")
    assert "日结已签名" in page.text_content(".flashes")
    signed = {
        name: page.text_content(f'#close-totals [data-amount="{name}"]')
        for name in ("settlements", "reversals", "net", "cash-to-hand")
    }
    assert signed == preview
    assert "医生签字" in page.text_content(".signatures")
    assert "复核人签字" in page.text_content(".signatures")
    assert no_sideways_scroll(page)
    shot("close-signed")

    # On the receipt printer: the page says the 日结单 was printed (not 结算单).
    with page.expect_navigation():
        page.locator("#print-receipt").tap()
    page.wait_for_selector(".flash")
    assert page.text_content(".flashes").strip() == "日结单已打印。"
    assert "现金合计（应交）" in PrinterEmulator(printer).text()
    shot("close-printed")
    assert page.problems == []
