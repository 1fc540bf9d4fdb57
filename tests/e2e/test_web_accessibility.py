"""Every terminal page, as each role that can see it, in a real headless Chromium at 800×480
with touch and zh-CN: axe-core (tests/axe.py) finds no serious or critical violation, every
visible control is at least 44 px in both directions, and nothing scrolls sideways.
Screenshots of every page checked go to test-artifacts/web-e2e/accessibility/."""

import re

import pytest
from axe import describe, violations
from browser_support import Shots, draft_kept_and_quoted, patient_ready, receipt_shown
from web_service_support import png
from web_support import FakeClock, app_config, make_demo_device, served

AMOXICILLIN = "XJ01CAA040A001"
CONSULTATION_SEARCH = "ybzlf"

# Controls measured: every visible one must be at least 44×44 px. A row of today's list is
# one target (its link's ::after covers the row).
TARGETS = ", ".join([
    "button", "a[href]", "input:not([type=hidden])", "select", "textarea", "summary",
    "label.choice", "label.check", "[role=option]", "table.tappable tr.record-row",
])  # fmt: skip
# What is not measured by itself, kept explicit and short:
NOT_TARGETS = ", ".join([
    "p a[href]",  # WCAG 2.5.8's inline exception: a link inside a sentence
    "label input[type=radio]", "label input[type=checkbox]",  # the label around is the target
    "table.tappable a.row-link",  # its row is the target
])  # fmt: skip

ISO_TIME = re.compile(r"\d{4}-\d\d-\d\d")  # days and times as the terminal says them
JARGON = re.compile(r"哈希|PIN|doc01|所选文件")

MEASURE = """([targets, exceptions]) => [...document.querySelectorAll(targets)]
  .filter(n => n.getClientRects().length && getComputedStyle(n).visibility !== 'hidden'
               && !n.closest('[hidden]') && !n.matches(exceptions))
  .map(n => { const r = n.getBoundingClientRect();
              return {what: n.outerHTML.slice(0, 120), width: Math.round(r.width * 10) / 10,
                      height: Math.round(r.height * 10) / 10}; })
  .filter(b => b.width < 44 || b.height < 44)"""


@pytest.fixture
def terminal(tmp_path):
    from web_ui.app import create_app

    data_dir = tmp_path / "device"
    make_demo_device(data_dir)
    app = create_app(app_config(data_dir, FakeClock(), TESTING=False, CARD_WAIT_SECONDS=2.0,
                                CARD_POLL_MS=200))  # fmt: skip
    with served(app) as url:
        yield url


class Checker:
    """Checks the page as it is now; collects every problem, so that one run lists them all."""

    def __init__(self, page) -> None:
        self.page, self.shot, self.problems = page, Shots(page, "accessibility"), []

    def __call__(self, name: str, plain: bool = True) -> None:
        """`plain`: no jargon either (the administrator's page names operators by id)."""
        page = self.page
        self.shot(name)
        found = violations(page)
        if found:
            self.problems.append(f"[{name}] axe:\n{describe(found)}")
        small = page.evaluate(MEASURE, [TARGETS, NOT_TARGETS])
        if small:
            self.problems.append(f"[{name}] smaller than 44 px: {small}")
        text = page.inner_text("body")
        for word in ISO_TIME.findall(text) + (JARGON.findall(text) if plain else []):
            self.problems.append(f"[{name}] not in plain words: {word!r}")
        wide = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        if wide[0] > wide[1]:
            self.problems.append(f"[{name}] scrolls sideways: {wide}")


def sign_in(page, terminal: str, name: str, pin: str) -> None:
    page.goto(f"{terminal}/signin")
    page.locator("label.choice", has_text=name).tap()
    for key in pin:
        page.locator(f'.keypad button[data-key="{key}"]').tap()
    page.locator("#signin-submit").tap()
    page.wait_for_load_state()
    page.wait_for_function("() => !location.pathname.startsWith('/signin')")


def insert_card(page, terminal: str, card: str) -> None:
    page.goto(f"{terminal}/tester")
    with page.expect_navigation():
        page.locator(f'button[data-card="{card}"]').tap()


def test_every_terminal_page_has_no_serious_accessibility_finding_and_big_targets(terminal, page):
    check = Checker(page)

    page.goto(f"{terminal}/signin")
    check("signin")

    # The doctor: settle without and with a patient, the lists, the keyboards.
    sign_in(page, terminal, "王医生", "1111")
    page.goto(f"{terminal}/settle")
    page.wait_for_selector("#settle")
    check("settle-no-patient")
    insert_card(page, terminal, "A32011505")
    page.goto(f"{terminal}/settle")
    patient_ready(page)
    check("settle-patient")
    page.locator("#item-search").tap()
    page.wait_for_selector("#osk:not([hidden])")
    check("settle-keyboard")
    page.fill("#item-search", "amxl")
    page.wait_for_selector(f'#item-results li[data-code="{AMOXICILLIN}"]')
    check("settle-item-results")
    page.fill("#item-search", "NOSUCHCODE")
    page.wait_for_selector("#item-results li.none")
    check("settle-nothing-found")
    page.fill("#diagnosis-search", "gm")
    page.wait_for_selector("#diagnosis-results li[role=option]")
    check("settle-diagnosis-results")
    page.locator("#diagnosis-results li[role=option]").first.tap()
    page.fill("#item-search", "amxl")
    page.locator(f'#item-results li[data-code="{AMOXICILLIN}"]').tap()
    page.locator("#lines input.qty").first.tap()
    page.wait_for_selector("#keypad:not([hidden])")
    check("settle-quantity-keypad")
    page.locator("#keypad-ok").tap()
    draft_kept_and_quoted(page)
    check("settle-split")
    page.locator("#confirm").tap()
    page.wait_for_url("**/receipt/**")
    receipt_shown(page)
    check("receipt")
    page.goto(f"{terminal}/records")
    check("records")
    page.locator("#records tbody a").first.tap()
    page.wait_for_selector("#reverse")
    check("record-with-reversal")
    page.locator("#reversal-reasons label.choice").first.tap()
    page.locator("#reverse").tap()
    page.wait_for_url("**/receipt/**")
    receipt_shown(page)
    check("receipt-reversed")
    page.goto(f"{terminal}/close")
    check("close-preview")
    page.locator("#close-now").tap()
    page.wait_for_url("**/close/**")
    check("close-signed")

    # The service point: premiums (a family, its receipt) and a request with a photo.
    page.goto(f"{terminal}/service")
    check("service-menu")
    page.goto(
        f"{terminal}/service/premium?ids=32011500000001&ids=32011500000005&ids=32011500000501"
    )
    check("premium-family")
    page.goto(f"{terminal}/service/premium?ids=32011500000001")
    with page.expect_navigation():
        page.locator("#collect").tap()
    page.wait_for_selector("#receipt-qr")
    receipt_shown(page)
    check("premium-receipt")
    page.goto(f"{terminal}/service/requests/new")
    check("request-kinds")
    page.goto(f"{terminal}/service/requests/new/chronic_certificate")
    check("request-form")
    page.locator("#insured_id").fill("32011500000001")
    page.fill("#disease-q", "gxy")
    page.locator('#disease-results li[data-code="I10.x00"]').tap()
    page.set_input_files("#photo-files", files=[{"name": "a.png", "mimeType": "image/png",
                                                 "buffer": png()}])  # fmt: skip
    with page.expect_navigation():
        page.locator("#submit-request").tap()
    check("request-page")
    page.goto(f"{terminal}/service/requests")
    check("request-list")

    # An expired card: the look-up by insured number; a patient sharing a family account.
    insert_card(page, terminal, "expired")
    page.goto(f"{terminal}/settle")
    page.wait_for_selector("#lookup-form")
    check("settle-expired-card")
    page.locator("#lookup-id").tap()
    page.wait_for_selector('#osk[data-kind="numbers"]:not([hidden])')
    check("settle-number-keyboard")
    page.locator("#osk button[data-osk-key=done]").tap()
    insert_card(page, terminal, "locked")
    page.goto(f"{terminal}/settle")
    page.wait_for_selector(".flash.error")
    check("settle-locked-card")
    insert_card(page, terminal, "A32011527")
    page.goto(f"{terminal}/settle")
    page.wait_for_selector('#settle[data-ready] [data-field="family_account"]')
    check("settle-family-account")

    # The lock screen, as the page's idle timer leaves it.
    page.evaluate(
        """() => { const f = document.createElement('form'); f.method = 'post';
        f.action = '/lock'; const t = document.createElement('input'); t.type = 'hidden';
        t.name = 'csrf_token';
        t.value = document.querySelector('meta[name=csrf-token]').content;
        f.append(t); document.body.append(f); f.submit(); }"""
    )
    page.wait_for_url("**/signin**")
    page.wait_for_selector("#signin-reason")
    check("lock-screen")
    page.context.clear_cookies()

    # The coordinator: the records, a record, the close, the status page.
    sign_in(page, terminal, "李协管员", "2222")
    for name, path in (("records-coordinator", "/records"), ("status-coordinator", "/status"),
                       ("close-coordinator", "/close"),
                       ("requests-coordinator", "/service/requests")):  # fmt: skip
        page.goto(f"{terminal}{path}")
        check(name)
    page.goto(f"{terminal}/records")
    with page.expect_navigation():  # the record's page, not the list still being left
        page.locator("#records tbody a").first.tap()
    check("record-coordinator")
    page.goto(f"{terminal}/records/no-such-record")
    check("not-found")
    page.context.clear_cookies()

    # The administrator and the tester.
    sign_in(page, terminal, "县医保管理员", "3333")
    for name, path in (("admin", "/admin"), ("status-admin", "/status")):
        page.goto(f"{terminal}{path}")
        check(name, plain=name != "admin")
    page.context.clear_cookies()
    sign_in(page, terminal, "测试员", "4444")
    insert_card(page, terminal, "A32011505")
    check("tester")
    with page.expect_navigation():
        page.locator("#mint-voucher").tap()
    page.wait_for_selector("#voucher-token-text")
    check("tester-voucher")
    page.goto(f"{terminal}/status")
    check("status-tester")

    assert check.problems == [], "\n\n".join(check.problems)
