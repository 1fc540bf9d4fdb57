"""The service point's enrolment end to end in a real headless Chromium: on the terminal
(800×480, touch, zh-CN, a real county hub on loopback and the sync agent running) a
doctor enrols a resident by tapping while the hub is down; the hub comes back and the
agent uploads the request by itself; the township's coordinator approves it in the county
console (a desktop page of the same browser); the terminal syncs, the roster update and
the decision arrive, and the new resident's visit settles on the terminal, looked up by
the insured number the county gave. The ID number typed is never shown again, in no page
and no file. Screenshots in test-artifacts/web-e2e/service-point-enrolment/."""

import time
from datetime import timedelta

import pytest
from browser_support import (
    Shots,
    no_sideways_scroll,
    patient_ready,
    tap_chinese,
    tap_keys,
    tap_pin,
    wait_until,
)
from console_support import console_sign_in
from sync_helpers import hub_store
from web_support import NOW, enrolled_terminal

from edge.adapters.sqlite_store import SqliteDeviceStore
from sync.hub.services import service_requests as hub_requests

SPEED = 4  # the product's clock runs four times faster than the wall clock
ID_NUMBER = "320115198503080067"  # a demo number: born 1985-03-08, a woman, check digit 7
NAME = "王玉兰"  # the pinyin keyboard offers characters of the catalog and diagnoses
COORDINATOR = ("molin-coord", "demo-coord-2026")  # the demo county's, of 秣陵街道


class FastClock:
    """China time from NOW, running SPEED times faster than real time (the agent's backoff
    after the hub was down passes in seconds); the hub and the terminal read it alike."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self):
        return NOW + timedelta(seconds=(time.monotonic() - self.start) * SPEED)


@pytest.fixture
def terminal(tmp_path):
    with enrolled_terminal(
        tmp_path, FastClock(), STATUS_POLL_MS=300, SESSION_IDLE_MINUTES=600
    ) as terminal:
        yield terminal


def hub_request(hub_dir, tx_id: str) -> dict | None:
    with hub_store(hub_dir) as store:
        rows = hub_requests.list_requests(store, township=None, kind="enrolment", state=None)
    return next((row for row in rows if row["tx_id"] == tx_id), None)


def wait_for(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {check}"
        time.sleep(0.2)
    return found


def test_a_resident_enrolled_offline_is_approved_and_then_settles(terminal, page, desk):
    shot = Shots(page, "service-point-enrolment")
    url, data_dir, hub_dir = terminal["url"], terminal["data_dir"], terminal["hub_dir"]
    page.goto(f"{url}/signin")
    page.locator("label.choice", has_text="王医生").tap()
    tap_pin(page, "1111")
    page.locator("#signin-submit").tap()
    page.wait_for_url("**/settle")
    wait_until(page, "document.querySelector('#status-strip[data-state=\"online\"]')")

    # Offline: the hub is down; the doctor enrols the resident by tapping.
    terminal["stop_hub"]()
    wait_until(page, "document.querySelector('#status-strip[data-state=\"offline\"]')", 30)
    with page.expect_navigation():
        page.locator("nav a", has_text="医保服务").tap()
    with page.expect_navigation():
        page.locator("#go-new-request").tap()
    with page.expect_navigation():
        page.locator("#new-enrolment").tap()
    assert page.get_attribute("#request-form", "autocomplete") == "off"
    assert page.get_attribute("#id_number", "autocomplete") == "off"
    page.locator("#name").tap()
    page.wait_for_selector("#osk:not([hidden])")
    tap_chinese(page, "wang", "王")
    tap_chinese(page, "yu", "玉")
    tap_chinese(page, "lan", "兰")
    assert page.input_value("#name") == NAME
    page.locator('label.choice:has(input[name="gender"][value="F"])').tap()
    page.locator("#birth_date").tap()
    page.wait_for_selector('#osk[data-kind="numbers"]:not([hidden])')
    tap_keys(page, "19850308")
    page.locator("#id_number").tap()
    page.wait_for_selector('#osk[data-kind="letters"]:not([hidden])')
    tap_keys(page, ID_NUMBER)
    page.locator("#osk button[data-osk-key=done]").tap()
    page.wait_for_selector("#osk", state="hidden")
    no_sideways_scroll(page)
    shot("enrolment-form")
    with page.expect_navigation():
        page.locator("#submit-request").tap()
    page.wait_for_selector('#request-state[data-state="pending"]')
    masked = ID_NUMBER[:6] + "*" * 8 + ID_NUMBER[-4:]
    assert page.text_content("#id-masked").strip() == masked
    assert ID_NUMBER not in page.content()
    shot("recorded-offline")
    tx_id = page.url.rstrip("/").rsplit("/", 1)[1]
    assert hub_request(hub_dir, tx_id) is None  # nothing reached the county yet

    # The hub is back: the agent uploads the request by itself.
    terminal["start_hub"]()
    row = wait_for(lambda: hub_request(hub_dir, tx_id))
    assert row["state"] == "pending" and row["applicant"]["name"] == NAME
    assert row["applicant"]["id_number_masked"] == masked

    # The coordinator of the clinic's township approves it in the county console.
    console_sign_in(desk, terminal["hub_url"], *COORDINATOR)
    desk.goto(f"{terminal['hub_url']}/console/requests?kind=enrolment")
    with desk.expect_navigation():
        desk.click(f'tr[data-tx="{tx_id}"] a')
    assert masked in desk.content() and ID_NUMBER not in desk.content()
    desk_shot(shot, desk, "console-request")
    with desk.expect_navigation():
        desk.click('button[name="outcome"][value="approved"]')
    desk.wait_for_selector('p.notice[data-outcome="approved"]')
    desk_shot(shot, desk, "console-approved")
    decided = hub_request(hub_dir, tx_id)
    assert decided["state"] == "approved"

    # The terminal syncs: the decision and the roster update arrive.
    page.goto(f"{url}/service/requests/{tx_id}")
    page.locator("#strip-sync").tap()
    wait_for(lambda: _device_state(data_dir, tx_id) == "approved")
    with hub_store(hub_dir) as store:
        published = store.latest_publication("roster").version
    assert _roster_version(data_dir) == published  # the roster update holding her
    page.reload()
    page.wait_for_selector('#request-state[data-state="approved"]')
    insured_id = _device_request(data_dir, tx_id).result["insured_id"]
    assert insured_id in page.text_content("#new-insured")
    assert ID_NUMBER not in page.content()
    shot("approved")

    # The resident's visit settles, looked up by the insured number the county gave.
    with page.expect_navigation():
        page.locator("#settle-new-insured").tap()
    patient_ready(page)
    assert page.text_content("#patient-name").strip() == NAME
    assert page.locator("#looked-up").count() == 1
    page.wait_for_selector("#bundle-list button.bundle")
    page.locator("#bundle-list button", has_text="感冒").tap()
    wait_until(page, "document.querySelectorAll('#lines tbody tr').length >= 1")
    wait_until(page, "!document.getElementById('confirm').disabled")
    shot("visit")
    page.locator("#confirm").tap()
    page.wait_for_url("**/receipt/**")
    assert "结算完成" in page.text_content("#receipt-title")
    shot("settled")
    store = SqliteDeviceStore.open(data_dir)
    try:
        settled = [r for r in store.records() if r["kind"] == "settlement"]
        assert [r["body"]["insured_id"] for r in settled] == [insured_id]
        assert settled[0]["body"]["result"]["fund"] > 0  # insured now: the fund pays
    finally:
        store.close()
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert ID_NUMBER.encode() not in path.read_bytes(), path
    assert page.problems == []


def desk_shot(shot: Shots, desk, step: str) -> None:
    """A screenshot of the county console, numbered with the terminal's in one folder."""
    shot.count += 1
    desk.screenshot(path=shot.folder / f"{shot.count:02d}-{step}.png")


def _roster_version(data_dir) -> str | None:
    store = SqliteDeviceStore.open(data_dir)
    try:
        return store.roster_version()
    finally:
        store.close()


def _device_request(data_dir, tx_id: str):
    from edge import service_requests

    store = SqliteDeviceStore.open(data_dir)
    try:
        return service_requests.request(store, tx_id)
    finally:
        store.close()


def _device_state(data_dir, tx_id: str) -> str:
    return _device_request(data_dir, tx_id).state
