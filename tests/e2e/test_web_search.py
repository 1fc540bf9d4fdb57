"""Search and bundles (组套) in a real headless Chromium at 800×480 with touch: a doctor
finds 苯磺酸氨氯地平片 by `aldp`, applies the county's cold bundle with one tap, saves the
visit as a bundle of the clinic's own, and the result list closes on a tap outside and
never covers the quantity fields. Screenshots to test-artifacts/web-e2e/search-bundles/."""

import pytest
from browser_support import Shots, patient_ready, wait_until
from web_support import FakeClock, app_config, make_demo_device, served

AMLODIPINE = "XC08CAA130A001"  # 苯磺酸氨氯地平片 5mg*28片
COLD = ["110200005000000", "XJ01CAA040A001", "XR05XAA202A001"]  # the county's 感冒 bundle


@pytest.fixture
def terminal(tmp_path):
    from web_ui.app import create_app

    data_dir = tmp_path / "device"
    make_demo_device(data_dir)
    app = create_app(app_config(data_dir, FakeClock(), TESTING=False, CARD_POLL_MS=200))
    with served(app) as url:
        yield url


def box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def overlaps(a: dict, b: dict) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"]
    )  # fmt: skip


def test_a_doctor_finds_by_initials_applies_a_bundle_and_saves_one(terminal, page):
    shot = Shots(page, "search-bundles")
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
    page.wait_for_selector("#bundle-list button.bundle")

    # The county's bundles, one tap each: 感冒 brings three lines and the diagnosis.
    names = page.eval_on_selector_all("#bundle-list button", "bs => bs.map(b => b.textContent)")
    assert names == ["感冒", "糖尿病复诊", "高血压复诊"]
    for selector in ("#bundle-list button", "#bundle-save"):
        sizes = page.eval_on_selector_all(
            selector, "bs => bs.map(b => [b.offsetWidth, b.offsetHeight])"
        )
        assert all(w >= 44 and h >= 44 for w, h in sizes), sizes
    page.locator("#bundle-list button", has_text="感冒").tap()
    wait_until(page, "document.querySelectorAll('#lines tbody tr').length === 3")
    wait_until(page, "!document.getElementById('confirm').disabled")
    codes = page.eval_on_selector_all("#lines tbody tr", "rows => rows.map(r => r.dataset.code)")
    assert codes == COLD
    assert page.locator('#diagnoses .chip[data-code="J06.900"]').count() == 1
    quantities = page.eval_on_selector_all("#lines input.qty", "qs => qs.map(q => q.value)")
    assert quantities == ["1", "2", "1"]
    shot("bundle-applied")

    # `aldp` finds 苯磺酸氨氯地平片 first; the list does not cover the quantity fields.
    page.locator("#item-search").tap()
    page.fill("#item-search", "aldp")
    first = page.wait_for_selector("#item-results li[role=option]")
    assert first.get_attribute("data-code") == AMLODIPINE
    assert "苯磺酸氨氯地平片" in first.text_content()
    assert page.get_attribute("#item-results", "aria-label") == "项目检索结果"
    results = box(page, "#item-results")
    for index in range(3):
        assert not overlaps(results, page.locator("#lines input.qty").nth(index).bounding_box())
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 800
    shot("found-by-initials")

    # A tap outside closes the list; back in the field, it opens again.
    page.locator("#split h2").tap()
    wait_until(page, "document.getElementById('item-results').hidden")
    shot("list-closed-by-tap-outside")
    page.locator("#item-search").tap()
    wait_until(page, "!document.getElementById('item-results').hidden")
    page.locator(f'#item-results li[data-code="{AMLODIPINE}"]').tap()
    wait_until(page, "document.querySelectorAll('#lines tbody tr').length === 4")
    assert page.locator("#item-results").is_hidden()

    # Characters inside a name find it too: 洛芬 → 布洛芬.
    page.fill("#item-search", "洛芬")
    page.wait_for_selector("#item-results li[role=option]")
    found = page.eval_on_selector_all(
        "#item-results .item-name", "ns => ns.map(n => n.textContent)"
    )
    assert "布洛芬片" in found
    page.locator("#split h2").tap()
    wait_until(page, "document.getElementById('item-results').hidden")

    # Save the visit as the clinic's own bundle: the name starts as the first diagnosis.
    page.locator("#bundle-save").tap()
    page.wait_for_selector("#bundle-dialog:not([hidden])")
    assert page.input_value("#bundle-name") == "急性上呼吸道感染"
    shot("save-bundle")
    page.locator("#bundle-ok").tap()
    page.wait_for_selector('#bundle-list button[data-source="clinic"]')
    assert page.text_content('#bundle-list button[data-source="clinic"]') == "急性上呼吸道感染"
    assert page.text_content("#bundle-note") == "组套已保存。"
    shot("bundle-saved")

    # Settled: the next search puts what the clinic settles first, marked 常用.
    page.locator("#confirm").tap()
    page.wait_for_url("**/receipt/**")
    page.goto(f"{terminal}/tester")
    with page.expect_navigation():
        page.locator('button[data-card="A32011505"]').tap()
    page.goto(f"{terminal}/settle")
    patient_ready(page)
    page.fill("#item-search", "pian")
    first = page.wait_for_selector("#item-results li[role=option]")
    assert first.get_attribute("data-code") in (AMLODIPINE, "XR05XAA202A001")
    assert "常用" in first.text_content()
    shot("frequent-first")
    assert page.problems == []
