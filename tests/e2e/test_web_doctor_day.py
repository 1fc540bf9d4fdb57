"""A village doctor's whole day on the terminal, in a real headless Chromium at 800×480 with
touch and zh-CN, with no physical keyboard: every character is typed by tapping the
on-screen keyboard or a keypad. The terminal is enrolled with a real county hub on
loopback, its sync agent runs in the background, the card reader and the receipt printer
are the emulated ones.

Sign in on the PIN pad → a card goes in and the page reads it by itself → a bundle (组套)
with one tap → items by pinyin inside a name (`aldp` → 苯磺酸氨氯地平片, `xl` → …西林…) and
by characters inside a name (西林, typed with the keyboard's pinyin candidates) → a reload
mid-visit finds it intact → the screen locks when left alone and the PIN pad returns the
doctor to the same visit → settle, and the 医保结算单 prints by itself → the status strip
goes 离线 when the hub stops → a reversal with a preset reason, made offline, waits to go
up → the strip goes 在线 when the hub starts again on the same port and data, and the
reversal goes up → the 日结 previewed with its amounts, signed and printed, with the right
message. A screenshot of every step
goes to test-artifacts/web-e2e/doctor-day/."""

import re
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from browser_support import (
    Shots,
    draft_kept_and_quoted,
    no_sideways_scroll,
    patient_ready,
    tap_chinese,
    tap_keys,
    tap_pin,
    wait_until,
)
from web_support import NOW, enrolled_terminal

from drivers.printer import PrinterEmulator

# Chromium and its page (800×480, touch, zh-CN; dialogs accepted), as the other browser
# tests launch them.

PATIENT, PATIENT_NAME = "A32011501", "张建国"
AMLODIPINE = "XC08CAA130A001"  # 苯磺酸氨氯地平片 5mg*28片
COLD = ["110200005000000", "XJ01CAA040A001", "XR05XAA202A001"]  # the county's 感冒 bundle
IDLE_SECONDS = 6  # the lock step's idle time
WORKING_IDLE_MINUTES = 60  # the rest of the day: no lock while the test waits on the hub
FAST = 10  # how much faster than the wall clock the product's clock runs while the hub is down


class GearClock:
    """China time from NOW for the terminal, its agent and the hub alike (signed requests
    stay fresh). It stands still while the doctor builds and settles the visit and signs
    the day, so nothing depends on how fast the machine taps, and runs FAST times faster
    than the wall clock from the hub's stop to its return, so the agent's backoff and the
    strip's minute pass in seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base, self._since, self._speed = NOW, time.monotonic(), 0.0

    def __call__(self):
        with self._lock:
            return self._base + timedelta(seconds=(time.monotonic() - self._since) * self._speed)

    def gear(self, speed: float) -> None:
        now = self()
        with self._lock:
            self._base, self._since, self._speed = now, time.monotonic(), speed


@pytest.fixture
def day(tmp_path):
    config = dict(CARD_WAIT_SECONDS=2.0, CARD_POLL_MS=200, STATUS_POLL_MS=300,
                  SESSION_IDLE_MINUTES=WORKING_IDLE_MINUTES)  # fmt: skip
    with enrolled_terminal(tmp_path, GearClock(), **config) as terminal:
        printer = terminal["app"].config["PRINTER"].removeprefix("emulated://")
        yield {**terminal, "printer": PrinterEmulator(Path(printer))}


# ---- tapping, never typing ------------------------------------------------------------------


def tap_nav(page, path: str) -> None:
    with page.expect_navigation():
        page.locator(f'nav a[href="{path}"]').tap()


def lines_on(page) -> list:
    return page.eval_on_selector_all(
        "#lines tbody tr",
        "rows => rows.map(r => [r.dataset.code, r.querySelector('input.qty').value])",
    )


def result_names(page) -> list[str]:
    return page.eval_on_selector_all(
        "#item-results li[role=option]", "items => items.map(i => i.textContent)"
    )


def strip_is(page, state: str, timeout: float = 20) -> None:
    wait_until(page, f"document.querySelector('#status-strip[data-state=\"{state}\"]')", timeout)


# ---- the day --------------------------------------------------------------------------------


def test_a_doctors_whole_day_by_touch_alone(day, page):
    url, app, clock, printer = day["url"], day["app"], day["clock"], day["printer"]
    shot = Shots(page, "doctor-day")

    # Morning: the doctor signs in on the PIN pad; the strip says the terminal is online.
    page.goto(f"{url}/signin")
    page.locator("label.choice", has_text="王医生").tap()
    tap_pin(page, "1111")
    shot("signin-pin-pad")
    page.locator("#signin-submit").tap()
    page.wait_for_url("**/settle")
    strip_is(page, "online")
    assert page.text_content("#status-strip .strip-label") == "在线"
    no_sideways_scroll(page)
    shot("waiting-for-a-card")

    # The patient's card goes into the reader: the page reads it by itself.
    token = page.get_attribute('meta[name="csrf-token"]', "content")
    inserted = page.request.post(
        f"{url}/tester/insert", form={"card": PATIENT, "csrf_token": token}
    )
    assert inserted.ok
    page.wait_for_selector("#patient-name")
    patient_ready(page)
    assert page.text_content("#patient-name") == PATIENT_NAME
    shot("card-read-by-itself")

    # A cold: the county's 感冒 bundle, one tap, brings the lines and the diagnosis.
    page.wait_for_selector("#bundle-list button.bundle")
    page.locator("#bundle-list button", has_text="感冒").tap()
    wait_until(page, "document.querySelectorAll('#lines tbody tr').length === 3")
    assert [code for code, _ in lines_on(page)] == COLD
    assert page.locator('#diagnoses .chip[data-code="J06.900"]').count() == 1
    shot("bundle-applied")

    # Her blood pressure tablets by the pinyin inside the name: `aldp` → 苯磺酸氨氯地平片.
    page.locator("#item-search").tap()
    page.wait_for_selector("#osk:not([hidden])")
    tap_keys(page, "aldp")
    assert page.input_value("#item-search") == "aldp"
    first = page.wait_for_selector('#item-results[data-query="aldp"] li[role=option]')
    assert first.get_attribute("data-code") == AMLODIPINE
    assert "苯磺酸氨氯地平片" in first.text_content()
    no_sideways_scroll(page)
    shot("found-by-aldp")
    page.locator(f'#item-results li[data-code="{AMLODIPINE}"]').tap()
    wait_until(page, "document.querySelectorAll('#lines tbody tr').length === 4")

    # `xl` anywhere in the initials: the penicillins (阿莫西林…) are offered.
    page.locator("#item-search").tap()
    page.wait_for_selector("#osk:not([hidden])")
    tap_keys(page, "xl")
    assert page.input_value("#item-search") == "xl"
    page.wait_for_selector('#item-results[data-query="xl"] li[role=option]')
    assert any("西林" in name for name in result_names(page))
    assert "甲类" in page.text_content("#item-results")  # the class as doctors say it
    page.eval_on_selector_all(  # swipe the list to the first of them, for the screenshot
        "#item-results li[role=option]",
        "items => items.find(li => li.textContent.includes('西林'))"
        ".scrollIntoView({block: 'nearest'})",
    )
    shot("found-by-xl")
    page.locator('#osk button[data-osk-key="back"]').tap()
    page.locator('#osk button[data-osk-key="back"]').tap()
    assert page.input_value("#item-search") == ""
    page.locator("#osk button[data-osk-key=done]").tap()
    page.wait_for_selector("#osk", state="hidden")

    # By characters inside a name: 西林, typed with the keyboard's pinyin candidates
    # (x i → 西, l i n → 林); the search finds 阿莫西林胶囊 by the characters inside it.
    page.locator("#item-search").tap()
    page.wait_for_selector("#osk:not([hidden])")
    tap_chinese(page, "xi", "西")
    tap_chinese(page, "lin", "林")
    assert page.input_value("#item-search") == "西林"
    page.wait_for_selector('#item-results[data-query="西林"] li[role=option]')
    assert any(name.startswith("阿莫西林") for name in result_names(page))
    shot("found-by-xilin")
    page.locator('#osk button[data-osk-key="clear"]').tap()
    page.locator("#osk button[data-osk-key=done]").tap()
    page.wait_for_selector("#osk", state="hidden")

    draft_kept_and_quoted(page)
    built = lines_on(page)
    assert len(built) == 4 and built[-1][0] == AMLODIPINE
    cash = page.text_content('#split [data-amount="cash"]')

    # A reload mid-visit: all of it is there.
    page.reload()
    patient_ready(page)
    wait_until(page, "!document.getElementById('confirm').disabled")
    assert lines_on(page) == built
    assert page.locator('#diagnoses .chip[data-code="J06.900"]').count() == 1
    assert page.text_content('#split [data-amount="cash"]') == cash
    assert page.text_content("#patient-name") == PATIENT_NAME
    shot("after-reload")

    # The doctor steps away (the idle time short from here): the screen locks by itself
    # and says why.
    app.config["SESSION_IDLE_MINUTES"] = IDLE_SECONDS / 60
    page.reload()
    patient_ready(page)
    page.wait_for_url("**/signin**", timeout=(IDLE_SECONDS + 20) * 1000)
    reason = page.text_content("#signin-reason")
    assert "屏幕已锁定" in reason and "王医生" in reason and "未完成的就诊已保留" in reason
    assert page.locator('input[name="operator"]:checked').get_attribute("value") == "doc01"
    shot("screen-locked")

    # Back on the PIN pad: the same visit, the same split.
    app.config["SESSION_IDLE_MINUTES"] = WORKING_IDLE_MINUTES
    tap_pin(page, "1111")
    page.locator("#signin-submit").tap()
    page.wait_for_url("**/settle")
    patient_ready(page)
    wait_until(page, "!document.getElementById('confirm').disabled")
    assert lines_on(page) == built
    assert page.text_content('#split [data-amount="cash"]') == cash
    shot("back-to-the-same-visit")

    # Settle: the 医保结算单 prints by itself, with the patient's name on it.
    page.locator("#confirm").tap()
    page.wait_for_url("**/receipt/**")
    assert "结算完成" in page.text_content("#receipt-title")
    wait_until(page, "document.getElementById('auto-print').dataset.state === 'printed'")
    assert page.text_content("#auto-print") == "结算单已打印。"
    paper = printer.text()
    assert paper.count("医保结算单") == 1 and PATIENT_NAME in paper
    assert "苯磺酸氨氯地平片" in paper
    no_sideways_scroll(page)
    shot("settled-and-printed")

    # Noon: the hub goes down. The strip says so by itself, nobody pressing anything.
    clock.gear(FAST)
    strip_is(page, "online")
    day["stop_hub"]()
    strip_is(page, "offline")
    text = page.text_content("#status-strip")
    assert "离线" in text and "上次同步" in text
    assert "Errno" not in text and "[" not in text
    no_sideways_scroll(page)
    shot("strip-offline")

    # A mistake: the settlement is reversed with a preset reason, nothing typed, while the
    # hub is down; the reversal waits on the terminal to go up.
    tap_nav(page, "/records")
    with page.expect_navigation():
        page.locator("#records tbody tr.record-row a").first.tap()
    page.locator("#reversal-reasons label.choice", has_text="录入错误").tap()
    shot("reversal-reason")
    page.locator("#reverse").tap()
    page.wait_for_url("**/receipt/**")
    assert "结算已冲销" in page.text_content("#receipt-title")
    strip_is(page, "offline")
    wait_until(page, "document.querySelector('#status-strip').textContent.includes('1笔待上传')")
    shot("reversed-offline")
    tap_nav(page, "/records")
    with page.expect_navigation():
        page.locator("#records tbody tr.record-row a").first.tap()  # the newest: the reversal
    facts = page.text_content(".facts-list")
    assert "录入错误" in facts
    assert re.search(r"\d\d:\d\d", facts) and not re.search(r"\d{4}-\d\d-\d\dT", facts)
    shot("reversal-recorded")

    # The hub is back on the same port with the same data: 在线, the reversal goes up.
    day["start_hub"]()
    strip_is(page, "online")
    wait_until(page, "!document.querySelector('#status-strip').textContent.includes('待上传')", 20)
    assert page.text_content("#status-strip .strip-label") == "在线"
    clock.gear(0)
    shot("strip-online-again")

    # Evening: the 日结, its amounts before signing, signed, printed, the right message.
    tap_nav(page, "/records")
    with page.expect_navigation():
        page.locator("#close-day").tap()
    assert "尚未签名" in page.text_content("#close-preview-note")
    preview = {
        name: page.text_content(f'#close-totals [data-amount="{name}"]')
        for name in ("settlements", "reversals", "net", "cash-to-hand")
    }
    assert preview["settlements"] != "¥0.00" and preview["reversals"] != "¥0.00"
    assert page.locator("#close-transactions tbody tr").count() == 2
    no_sideways_scroll(page)
    shot("close-preview")
    with page.expect_navigation():
        page.locator("#close-now").tap()  # its confirmation is accepted
    page.wait_for_url("**/close/**")
    assert "日结已签名" in page.text_content(".flashes")
    signed = {
        name: page.text_content(f'#close-totals [data-amount="{name}"]')
        for name in ("settlements", "reversals", "net", "cash-to-hand")
    }
    assert signed == preview
    assert "医生签字" in page.text_content(".signatures")
    shot("close-signed")
    with page.expect_navigation():
        page.locator("#print-receipt").tap()
    page.wait_for_selector(".flash")
    assert page.text_content(".flashes").strip() == "日结单已打印。"
    assert "现金合计（应交）" in printer.text()
    shot("close-printed")
    assert page.problems == []
