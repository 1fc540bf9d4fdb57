"""Chinese by tapping, in a real headless Chromium at 800×480 with touch (zh-CN): a doctor
types x, i on the on-screen keyboard, picks 西 from the candidate row, then l, i, n and
林, and the item search finds 阿莫西林胶囊; letters not converted stay letters (pinyin
initials search as before). Nothing is typed but by tapping. Screenshots go to
test-artifacts/web-e2e/pinyin-input/."""

import pytest
from browser_support import (
    CANDIDATES,
    Shots,
    candidates_for,
    no_sideways_scroll,
    patient_ready,
    tap_chinese,
    tap_keys,
)
from web_support import FakeClock, app_config, make_demo_device, served

AMOXICILLIN = "XJ01CAA040A001"  # 阿莫西林胶囊


@pytest.fixture
def terminal(tmp_path):
    from web_ui.app import create_app

    data_dir = tmp_path / "device"
    make_demo_device(data_dir)
    app = create_app(app_config(data_dir, FakeClock(), TESTING=False, CARD_POLL_MS=200))
    with served(app) as url:
        yield url


def candidate_boxes(page, pinyin: str) -> list:
    return page.eval_on_selector_all(
        f"{candidates_for(page, pinyin)} button",
        "nodes => nodes.map(n => { const r = n.getBoundingClientRect();"
        " return [n.textContent, r.left, r.right, r.width, r.height]; })",
    )


def test_a_doctor_taps_pinyin_into_chinese_and_finds_amoxicillin(terminal, page):
    shot = Shots(page, "pinyin-input")
    page.goto(f"{terminal}/signin")
    page.locator("label.choice", has_text="王医生").tap()
    for key in "1111":
        page.locator(f'.keypad button[data-key="{key}"]').tap()
    page.locator("#signin-submit").tap()
    page.wait_for_url("**/settle")
    page.goto(f"{terminal}/tester")
    with page.expect_navigation():
        page.locator('button[data-card="A32011501"]').tap()  # 张建国
    page.goto(f"{terminal}/settle")
    patient_ready(page)

    page.locator("#item-search").tap()
    page.wait_for_selector("#osk:not([hidden])")
    assert page.locator(CANDIDATES).is_hidden()  # nothing typed, nothing offered

    tap_keys(page, "xi")
    offered = candidate_boxes(page, "xi")
    assert offered[0][0] == "西" and 1 < len(offered) <= 12
    for _, left, right, width, height in offered:
        assert left >= 0 and right <= 800 and width >= 44 and height >= 44
    no_sideways_scroll(page)
    # what `xi` finds as pinyin shows above the candidates, not under them
    page.wait_for_selector('#item-results[data-query="xi"] li')
    results = page.locator("#item-results").bounding_box()
    row = page.locator(CANDIDATES).bounding_box()
    assert results["height"] >= 44 and results["y"] + results["height"] <= row["y"] + 1
    shot("xi-candidates")
    page.locator(f'{CANDIDATES} button[data-osk-char="西"]').tap()
    assert page.input_value("#item-search") == "西"
    page.wait_for_selector(CANDIDATES, state="hidden")  # the letters are used up

    tap_keys(page, "lin")
    assert page.input_value("#item-search") == "西lin"
    page.locator(f'{candidates_for(page, "lin")} button[data-osk-char="林"]').tap()
    assert page.input_value("#item-search") == "西林"
    assert page.evaluate("() => document.activeElement.id") == "item-search"
    page.wait_for_selector(f'#item-results[data-query="西林"] li[data-code="{AMOXICILLIN}"]')
    found = page.locator(f'#item-results li[data-code="{AMOXICILLIN}"]').inner_text()
    assert "阿莫西林胶囊" in found
    no_sideways_scroll(page)
    shot("xilin-found")

    # Letters left as letters: pinyin initials search exactly as before.
    page.locator('#osk button[data-osk-key="clear"]').tap()
    tap_keys(page, "amxl")
    assert page.input_value("#item-search") == "amxl"
    page.wait_for_selector(f'#item-results[data-query="amxl"] li[data-code="{AMOXICILLIN}"]')
    shot("initials-still-search")

    # The diagnosis search takes Chinese too: 感 from gan.
    page.locator("#osk button[data-osk-key=done]").tap()
    page.locator("#diagnosis-search").tap()
    tap_chinese(page, "gan", "感")
    assert page.input_value("#diagnosis-search") == "感"
    page.wait_for_selector('#diagnosis-results[data-query="感"] li')
    assert page.problems == []
