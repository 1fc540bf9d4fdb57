"""What every browser test shares: Debian's chromium driven by Playwright at the kiosk's
800×480 with touch and zh-CN (the `browser` and `page` fixtures, a plugin of
tests/conftest.py), waiting on the page's own state, and numbered screenshots in
test-artifacts/web-e2e/."""

import shutil
import time
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "web-e2e"


@pytest.fixture(scope="session")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh kiosk page; `page.problems` collects the page's console errors."""
    context = browser.new_context(
        viewport={"width": 800, "height": 480}, has_touch=True, locale="zh-CN"
    )
    page = context.new_page()
    page.set_default_timeout(30_000)  # generous: CI machines are slow, not the UI
    page.problems = []
    page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()


def wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll a JavaScript expression from outside the page (the page's CSP forbids eval)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expression})"):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(50)


class Shots:
    """Numbered screenshots of a test's steps, in test-artifacts/web-e2e/NAME/."""

    def __init__(self, page, name: str) -> None:
        self.page, self.folder, self.count = page, ARTIFACTS / name, 0
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)

    def __call__(self, step: str) -> None:
        self.count += 1
        self.page.screenshot(path=self.folder / f"{self.count:02d}-{step}.png")


def tap_keys(page, text: str) -> None:
    """Type by tapping the on-screen keyboard, key by key."""
    for ch in text:
        page.locator(f'#osk button[data-osk-key="{ch}"]').tap()


CANDIDATES = '#osk [role="group"][aria-label="候选汉字"]'


def candidates_for(page, pinyin: str) -> str:
    """The candidate row once it answers these letters (not a shorter start of them),
    waited for: a slow answer to "x" must not pass for the answer to "xi"."""
    row = f'{CANDIDATES}[data-pinyin="{pinyin}"]'
    page.wait_for_selector(f"{row} button")
    return row


def tap_chinese(page, pinyin: str, character: str) -> None:
    """A character typed as the doctor types it: its pinyin, then its candidate."""
    tap_keys(page, pinyin)
    page.locator(f'{candidates_for(page, pinyin)} button[data-osk-char="{character}"]').tap()


def patient_ready(page) -> None:
    """The settle page of a patient, its script ready. `#settle[data-ready]` alone is met by
    the page before the card was read too (it reloads to the patient's page after), whose
    script would be gone by the next tap."""
    page.wait_for_selector('#settle[data-has-patient="1"][data-ready]')


def draft_kept_and_quoted(page) -> None:
    """The terminal holds the visit as it is now, and the split shown answers it (not an
    earlier quote: the confirm button stays enabled while a new one is asked)."""
    wait_until(page, "document.getElementById('settle').dataset.draftPending === '0'")
    wait_until(page, "document.getElementById('settle').dataset.quotePending !== '1'")
    wait_until(page, "!document.getElementById('confirm').disabled")


def receipt_shown(page) -> None:
    """The receipt page with its text (fetched after the page is shown)."""
    wait_until(page, "document.getElementById('receipt-text')?.textContent.trim()")


def tap_pin(page, pin: str) -> None:
    """Enter a password on the sign-in or lock screen's number pad."""
    for key in pin:
        page.locator(f'.keypad button[data-key="{key}"]').tap()


def no_sideways_scroll(page) -> None:
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 800
