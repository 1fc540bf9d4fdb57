"""End to end in a real headless browser (Debian's chromium, driven by Playwright) against
the app behind a real server on a loopback port: sign in, read an emulated card, add items
by pinyin, check the live split against the quote engine, confirm, reverse, close the day.
Screenshots of every step at 800×480 go to test-artifacts/web-e2e/."""

import json

import pytest
from browser_support import Shots, patient_ready, wait_until
from web_support import NOW, FakeClock, app_config, make_demo_device, served

from edge.demo import load_json
from edge.domain.documents import catalog_row_from_csv
from edge.domain.money import format_yuan
from edge.domain.quote import quote_document

POOR = "32011500000005"  # 陈志强, extreme poverty: the assistance pays what the fund leaves


@pytest.fixture
def terminal(tmp_path):
    from web_ui.app import create_app

    data_dir = tmp_path / "device"
    make_demo_device(data_dir)
    app = create_app(app_config(data_dir, FakeClock(), TESTING=False, CARD_WAIT_SECONDS=2.0,
                                CARD_POLL_MS=200))  # fmt: skip
    with served(app) as url:
        yield url


def engine_split(codes_and_quantities: list[tuple[str, str]], diagnoses: list[str]) -> dict:
    """What `clinic quote` gives for the same visit, from the demo county's own files."""
    import csv
    from importlib import resources

    wanted = {code for code, _ in codes_and_quantities}
    source = resources.files("edge.demo") / "catalog.csv"
    with resources.as_file(source) as path, open(path, encoding="utf-8") as handle:
        catalog = [catalog_row_from_csv(r) for r in csv.DictReader(handle) if r["code"] in wanted]
    person = next(p for p in load_json("roster.json")["persons"] if p["insured_id"] == POOR)
    year = person["accumulators"]["2026"]
    document = {
        "policy": load_json("policy.json"),
        "catalog": catalog,
        "person": person,
        "accumulators": {**year["general"], "assistance_paid": year["assistance_paid"]},
        "visit": {"date": NOW.date().isoformat(), "visit_type": "general",
                  "diagnoses": diagnoses,
                  "lines": [{"code": c, "quantity": q} for c, q in codes_and_quantities],
                  "use_personal_account": False},
    }  # fmt: skip
    return quote_document(json.loads(json.dumps(document)))


def test_a_doctor_settles_reverses_and_closes_the_day_in_the_browser(terminal, page):
    shot = Shots(page, "settle-reverse-close")

    # Sign in on the touch keypad.
    page.goto(f"{terminal}/signin")
    page.locator("label.choice", has_text="王医生").tap()
    for key in "1111":
        page.locator(f'.keypad button[data-key="{key}"]').tap()
    shot("signin")
    page.locator("#signin-submit").tap()
    page.wait_for_url("**/settle")
    shot("settle-waiting-for-card")

    # The tester's hands insert 陈志强's card; the settle page reads it by itself.
    page.goto(f"{terminal}/tester")
    with page.expect_navigation():
        page.locator('button[data-card="A32011505"]').tap()
    shot("tester-card-inserted")
    page.goto(f"{terminal}/settle")
    page.wait_for_selector("#patient-name")
    patient_ready(page)
    assert page.text_content("#patient-name") == "陈志强"
    assert "320115********5999" in page.text_content(".patient")
    shot("patient-read")

    # Diagnosis and items by pinyin initials; the quantity on the touch keypad.
    page.fill("#diagnosis-search", "jxsh")
    page.wait_for_selector('#diagnosis-results li[data-code="J06.900"]').tap()
    page.fill("#item-search", "amxl")
    page.wait_for_selector('#item-results li[data-code="XJ01CAA040A001"]')
    shot("item-search-by-pinyin")
    page.locator('#item-results li[data-code="XJ01CAA040A001"]').tap()
    page.locator('#lines tr[data-code="XJ01CAA040A001"] input.qty').tap()
    page.wait_for_selector("#keypad:not([hidden])")
    page.locator('#keypad button[data-key="5"]').tap()
    shot("quantity-keypad")
    page.locator("#keypad-ok").tap()
    page.fill("#item-search", "ybzlf")
    page.wait_for_selector("#item-results li[role=option]")
    page.keyboard.press("Enter")  # the first hit, by keyboard
    wait_until(
        page,
        "document.querySelectorAll('#lines tbody tr').length === 2"
        " && !document.getElementById('confirm').disabled",
    )
    wait_until(
        page, "[...document.querySelectorAll('#lines .line-amount')].every(c => c.textContent)"
    )
    codes = page.eval_on_selector_all("#lines tbody tr", "rows => rows.map(r => r.dataset.code)")

    # The live split is exactly what the quote engine gives for the same visit.
    expected = engine_split([(codes[0], "5"), (codes[1], "1")], ["J06.900"])
    assert "error" not in expected
    for name in ("total", "cash"):
        shown = page.text_content(f'#split [data-amount="{name}"]')
        assert shown == format_yuan(expected[name]), name
    # every payer that paid, in the chain's order, and none that did not
    payers = page.eval_on_selector_all(
        "#payers dd[data-payer]", "cells => cells.map(c => [c.dataset.payer, c.textContent])"
    )
    assert payers == [[name, format_yuan(expected[name])] for name in ("fund", "assistance")]
    assert expected["personal_account"] == 0 and expected["fund"] and expected["assistance"]
    assert page.text_content('#payers dt[data-payer="assistance"]') == "医疗救助"
    amounts = page.eval_on_selector_all(
        "#lines tbody .line-amount", "cells => cells.map(c => c.textContent)"
    )
    assert amounts == [format_yuan(line["amount"]) for line in expected["lines"]]
    reasons = page.text_content('#lines tr[data-code="XJ01CAA040A001"] .reasons')
    assert "超过单次限量" in reasons  # 5 boxes, at most 3 covered per visit
    shot("live-split")

    # Confirm: the receipt is shown; its QR code on screen.
    page.locator("#confirm").tap()
    page.wait_for_url("**/receipt/**")
    assert "结算完成" in page.text_content("#receipt-title")
    assert page.text_content('#receipt-split [data-amount="cash"]') == format_yuan(expected["cash"])
    shot("receipt")
    with page.expect_navigation():
        page.locator("#print").tap()
    page.wait_for_selector(".flash")
    assert "结算单已打印" in page.text_content(".flashes")
    with page.expect_navigation():
        page.locator("#show-qr").tap()
    wait_until(page, "document.getElementById('receipt-qr').naturalWidth > 0")
    shot("receipt-qr")

    # Today's settlements, the detail, the reversal with a reason.
    page.goto(f"{terminal}/records")
    shot("today")
    page.locator("#records tbody a").first.tap()
    assert "已核验" in page.text_content("#verified")
    page.locator("#reversal-reasons label.choice", has_text="录入错误").tap()
    page.fill("#reason", "患者要求取消")
    shot("reverse")
    page.locator("#reverse").tap()
    page.wait_for_url("**/receipt/**")
    assert "结算已冲销" in page.text_content("#receipt-title")
    shot("reversed")

    # The daily close, printable.
    page.goto(f"{terminal}/close")
    page.locator("#close-now").tap()
    page.wait_for_url("**/close/**")
    report = page.text_content("#close-report")
    assert "日结单" in report and "结算 1 笔" in report and "冲销 1 笔" in report
    shot("daily-close")
    assert page.problems == []


def test_a_rejection_appears_next_to_its_line_and_a_broken_card_in_plain_words(terminal, page):
    shot = Shots(page, "errors")
    page.goto(f"{terminal}/signin")
    page.locator("label.choice", has_text="测试员").click()
    page.fill("#pin", "4444")
    page.keyboard.press("Enter")
    page.wait_for_url("**/settle")

    page.goto(f"{terminal}/tester")
    with page.expect_navigation():
        page.locator('button[data-card="malformed-tlv"]').click()
    page.goto(f"{terminal}/settle")
    page.wait_for_selector(".flash.error")
    assert "读卡失败：卡内数据格式损坏（TLV）" in page.text_content(".flashes")
    shot("broken-card")

    page.goto(f"{terminal}/tester")
    with page.expect_navigation():
        page.locator('button[data-card="A32011517"]').click()  # suspended
    page.goto(f"{terminal}/settle")
    page.wait_for_selector("#patient-name")
    patient_ready(page)
    assert "今日不享受医保待遇" in page.text_content("#eligibility")
    page.fill("#item-search", "NOSUCHCODE")
    page.wait_for_selector("#item-results li.none")
    page.keyboard.press("Enter")  # a code typed by hand
    page.wait_for_selector("#lines tr.has-error")
    assert page.text_content("#lines tr.has-error .line-error") == "目录中没有这个项目。"
    assert page.locator("#confirm").is_disabled()
    shot("unknown-item")

    page.locator("#lines tr.has-error button.remove").click()
    page.fill("#item-search", "amxl")
    page.wait_for_selector("#item-results li[role=option]")
    page.keyboard.press("Enter")
    page.wait_for_selector('#warnings li[data-code="NOT_ELIGIBLE"]')
    assert page.text_content('#split [data-amount="cash"]') == page.text_content(
        '#split [data-amount="total"]'
    )
    shot("suspended-all-cash")
    assert page.problems == ["Failed to load resource: the server responded with a status of"
                             " 422 (UNPROCESSABLE ENTITY)"]  # fmt: skip


def test_a_patient_whose_daughter_shares_her_account_pays_from_it(terminal, page):
    """孔凤英 (resident) may use her daughter 孔丽's employee account (家庭共济): the page
    offers it with the daughter's name and balance, the split shows whose account pays,
    and the receipt and the next visit show it paid."""
    shot = Shots(page, "family-account")
    page.goto(f"{terminal}/signin")
    page.locator("label.choice", has_text="王医生").click()
    page.fill("#pin", "1111")
    page.keyboard.press("Enter")
    page.wait_for_url("**/settle")

    page.goto(f"{terminal}/tester")
    with page.expect_navigation():
        page.locator('button[data-card="A32011527"]').click()
    page.goto(f"{terminal}/settle")
    page.wait_for_selector("#patient-name")
    patient_ready(page)
    assert page.text_content("#patient-name") == "孔凤英"
    offer = page.text_content('[data-field="family_account"] label')
    assert "使用家庭共济账户：孔丽的个人账户，余额 ¥800.00" in offer

    page.fill("#item-search", "amxl")
    page.wait_for_selector('#item-results li[data-code="XJ01CAA040A001"]').click()
    wait_until(page, "!document.getElementById('confirm').disabled")
    assert page.locator('#payers [data-payer="family_account"]').count() == 0
    cash_before = page.text_content('#split [data-amount="cash"]')
    assert cash_before != "¥0.00"
    page.locator("#use-family-account").check()
    page.wait_for_selector('#payers dd[data-payer="family_account"]')
    wait_until(page, "document.querySelector('#split [data-amount=\"cash\"]').textContent"
                     " === '¥0.00'")  # fmt: skip
    label = page.text_content('#payers dt[data-payer="family_account"]')
    assert "家庭共济账户" in label and "孔丽的个人账户" in label
    paid = page.text_content('#payers dd[data-payer="family_account"]')
    assert paid == cash_before  # the daughter's account pays what was cash
    shot("family-account-split")

    page.locator("#confirm").click()
    page.wait_for_url("**/receipt/**")
    assert "家庭共济" in page.text_content("#receipt-split")
    assert page.text_content('#receipt-split dd[data-payer="family_account"]') == paid
    wait_until(page, "document.getElementById('receipt-text').textContent.includes('家庭共济')")
    assert "孔丽的个人账户" in page.text_content("#receipt-text")
    shot("family-account-receipt")

    # Her next visit offers what is left of the daughter's account.
    page.goto(f"{terminal}/tester")
    with page.expect_navigation():
        page.locator('button[data-card="A32011527"]').click()
    page.goto(f"{terminal}/settle")
    patient_ready(page)
    left = format_yuan(80000 - int(paid.removeprefix("¥").replace(".", "").replace(",", "")))
    assert f"余额 {left}" in page.text_content('[data-field="family_account"] label')
    assert page.problems == []
