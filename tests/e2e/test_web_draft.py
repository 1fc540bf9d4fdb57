"""A doctor with no physical keyboard, in a real headless Chromium at 800×480 with touch:
builds a visit by tapping the on-screen keyboard, reloads mid-visit and finds it intact,
lets the screen lock (a short idle time), unlocks on the PIN pad, settles, and reverses
with a preset reason. Nothing is typed but by tapping. Screenshots go to
test-artifacts/web-e2e/draft-lock-keyboard/."""

import pytest
from browser_support import (
    Shots,
    draft_kept_and_quoted,
    no_sideways_scroll,
    patient_ready,
    tap_keys,
    tap_pin,
    wait_until,
)
from web_support import FakeClock, app_config, make_demo_device, served

IDLE_SECONDS = 8  # the lock step's idle time: long enough for a tap or two, short to wait for
WORKING_IDLE_MINUTES = 60  # the rest of the test: a slow machine never locks it mid-step
AMOXICILLIN = "XJ01CAA040A001"  # 阿莫西林胶囊, by the box
CONSULTATION = "110200005000000"  # 一般诊疗费


@pytest.fixture
def terminal_app(tmp_path):
    """The terminal served (its URL) and its app (the test shortens the idle time)."""
    from web_ui.app import create_app

    data_dir = tmp_path / "device"
    make_demo_device(data_dir)
    app = create_app(app_config(data_dir, FakeClock(), TESTING=False, CARD_WAIT_SECONDS=2.0,
                                CARD_POLL_MS=200,
                                SESSION_IDLE_MINUTES=WORKING_IDLE_MINUTES))  # fmt: skip
    with served(app) as url:
        yield url, app


@pytest.fixture
def terminal(terminal_app) -> str:
    return terminal_app[0]


def small_targets(page, selector: str) -> list:
    boxes = page.eval_on_selector_all(
        selector,
        "nodes => nodes.filter(n => n.offsetParent !== null).map(n => {"
        " const r = n.getBoundingClientRect(); return [n.textContent, r.width, r.height]; })",
    )
    return [box for box in boxes if box[1] < 44 or box[2] < 44]


def lines_on(page) -> list:
    return page.eval_on_selector_all(
        "#lines tbody tr",
        "rows => rows.map(r => [r.dataset.code, r.querySelector('input.qty').value])",
    )


def test_a_visit_built_by_tapping_survives_a_reload_and_the_lock_then_settles_and_reverses(
    terminal_app, page
):
    terminal, app = terminal_app
    shot = Shots(page, "draft-lock-keyboard")

    # Sign in: the first operator offered is a doctor, not the administrator; PIN pad only.
    page.goto(f"{terminal}/signin")
    assert page.locator('input[name="operator"]:checked').get_attribute("value") != "admin01"
    page.locator("label.choice", has_text="王医生").tap()
    tap_pin(page, "1111")
    page.locator("#signin-submit").tap()
    page.wait_for_url("**/settle")

    page.goto(f"{terminal}/tester")
    with page.expect_navigation():
        page.locator('button[data-card="A32011505"]').tap()
    page.goto(f"{terminal}/settle")
    page.wait_for_selector("#patient-name")
    patient_ready(page)

    # The diagnosis by pinyin initials on the on-screen keyboard.
    page.locator("#diagnosis-search").tap()
    page.wait_for_selector("#osk:not([hidden])")
    assert page.locator("#osk").get_attribute("data-kind") == "letters"
    assert small_targets(page, "#osk button") == []
    no_sideways_scroll(page)
    tap_keys(page, "jxsh")
    assert page.input_value("#diagnosis-search") == "jxsh"
    shot("keyboard-diagnosis")
    page.locator('#diagnosis-results[data-query="jxsh"] li[data-code="J06.900"]').tap()

    # Two items, each by tapping its initials; a mistake corrected with the delete key.
    page.locator("#item-search").tap()
    tap_keys(page, "amxx")
    page.locator('#osk button[data-osk-key="back"]').tap()
    tap_keys(page, "l")
    assert page.input_value("#item-search") == "amxl"
    page.wait_for_selector(f'#item-results[data-query="amxl"] li[data-code="{AMOXICILLIN}"]')
    shot("keyboard-items")
    page.locator(f'#item-results li[data-code="{AMOXICILLIN}"]').tap()
    page.locator("#item-search").tap()
    tap_keys(page, "ybzlf")
    page.locator(f'#item-results li[data-code="{CONSULTATION}"]').tap()
    page.locator("#osk button[data-osk-key=done]").tap()
    page.wait_for_selector("#osk", state="hidden")

    # The quantity on the number pad: boxes take no decimal point.
    page.locator(f'#lines tr[data-code="{AMOXICILLIN}"] input.qty').tap()
    page.wait_for_selector("#keypad:not([hidden])")
    assert page.locator('#keypad button[data-key="."]').is_disabled()
    page.locator('#keypad button[data-key="2"]').tap()
    shot("quantity-whole-boxes")
    page.locator("#keypad-ok").tap()
    wait_until(page, "document.querySelector('#lines input.qty').value === '2'")
    draft_kept_and_quoted(page)
    built = lines_on(page)
    assert len(built) == 2 and built[0] == [AMOXICILLIN, "2"]
    cash = page.text_content('#split [data-amount="cash"]')

    # A reload mid-visit: everything is still there, the split too.
    page.reload()
    patient_ready(page)
    wait_until(page, "!document.getElementById('confirm').disabled")
    assert lines_on(page) == built
    assert page.locator('#diagnoses .chip[data-code="J06.900"]').count() == 1
    assert page.text_content('#split [data-amount="cash"]') == cash
    shot("after-reload")

    # Left alone (the idle time short from here), the screen locks; the lock screen says
    # why and offers the same doctor.
    app.config["SESSION_IDLE_MINUTES"] = IDLE_SECONDS / 60
    page.reload()
    patient_ready(page)
    page.wait_for_url("**/signin**", timeout=(IDLE_SECONDS + 20) * 1000)
    reason = page.text_content("#signin-reason")
    assert "屏幕已锁定" in reason and "王医生" in reason and "未完成的就诊已保留" in reason
    assert page.locator('input[name="operator"]:checked').get_attribute("value") == "doc01"
    visible = page.inner_text("body")
    assert "PIN" not in visible and "doc01" not in visible
    shot("locked")
    app.config["SESSION_IDLE_MINUTES"] = WORKING_IDLE_MINUTES
    tap_pin(page, "1111")
    page.locator("#signin-submit").tap()
    page.wait_for_url("**/settle")
    patient_ready(page)
    wait_until(page, "!document.getElementById('confirm').disabled")
    assert lines_on(page) == built
    assert page.text_content('#split [data-amount="cash"]') == cash
    shot("back-after-unlock")

    page.locator("#confirm").tap()
    page.wait_for_url("**/receipt/**")
    assert "结算完成" in page.text_content("#receipt-title")
    shot("settled")

    # The reversal: a preset reason tapped, a short note on the on-screen keyboard.
    page.goto(f"{terminal}/records")
    page.locator("#records tbody a").first.tap()
    page.locator("#reversal-reasons label.choice", has_text="患者退药").tap()
    assert small_targets(page, "#reversal-reasons label.choice span") == []
    page.locator("#reason").tap()
    page.wait_for_selector("#osk:not([hidden])")
    tap_keys(page, "2")
    page.locator('#osk button[data-osk-key="space"]').tap()
    tap_keys(page, "he")
    no_sideways_scroll(page)
    shot("reverse-with-preset")
    page.locator("#osk button[data-osk-key=done]").tap()
    page.locator("#reverse").tap()
    page.wait_for_url("**/receipt/**")
    assert "结算已冲销" in page.text_content("#receipt-title")
    page.goto(f"{terminal}/records")
    page.locator("#records tbody a").first.tap()  # the newest: the reversal
    assert "患者退药：2 he" in page.text_content(".facts-list")
    shot("reversed")
    assert page.problems == []


def test_an_expired_card_leads_to_a_look_up_by_insured_number_by_tapping(terminal, page):
    shot = Shots(page, "expired-card-look-up")
    page.goto(f"{terminal}/signin")
    page.locator("label.choice", has_text="王医生").tap()
    tap_pin(page, "1111")
    page.locator("#signin-submit").tap()
    page.wait_for_url("**/settle")
    page.goto(f"{terminal}/tester")
    with page.expect_navigation():
        page.locator('button[data-card="expired"]').tap()
    page.goto(f"{terminal}/settle")
    page.wait_for_selector("#lookup-form")
    assert "医保仍有效" in page.text_content("#expired-card")
    assert page.input_value("#lookup-id") == "32011500000001"
    # the number as the patient says it: cleared and tapped in on the number pad
    page.locator("#lookup-id").tap()
    page.wait_for_selector('#osk[data-kind="numbers"]:not([hidden])')
    page.locator('#osk button[data-osk-key="clear"]').tap()
    tap_keys(page, "32011500000001")
    assert small_targets(page, "#osk button") == []
    no_sideways_scroll(page)
    shot("number-pad")
    page.locator("#osk button[data-osk-key=done]").tap()
    page.locator("#lookup-form label.choice", has_text="卡片过期").tap()
    assert small_targets(page, "#lookup-form label.choice span, #lookup-submit") == []
    shot("look-up")
    page.locator("#lookup-submit").tap()
    page.wait_for_selector("#patient-name")
    assert page.text_content("#patient-name") == "张建国"
    assert page.text_content("#looked-up") == "按医保编号查找"
    shot("patient-looked-up")
    assert page.problems == []
