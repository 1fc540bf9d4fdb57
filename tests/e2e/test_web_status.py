"""The status strip in a real headless Chromium (800×480, touch, zh-CN) against a real hub:
the sync agent's scheduler runs in the background on short intervals, the hub stops and
starts again, and the strip on the doctor's page goes 在线 → 离线 · N笔待上传 · 上次同步 →
在线 by itself, nobody pressing anything. Screenshots go to test-artifacts/web-e2e/."""

import time
from datetime import timedelta

import pytest
from browser_support import Shots, patient_ready, wait_until
from sync_helpers import hub_store
from web_support import NOW, enrolled_terminal

from edge import services
from edge.adapters.sqlite_store import SqliteDeviceStore
from sync.hub.services import county

# Chromium and its page, launched as the other browser tests launch them.

SPEED = 10  # the product's clock runs ten times faster than the wall clock here


class FastClock:
    """China time from NOW, running SPEED times faster than real time: the agent's backoff
    (up to 30 s after a heartbeat fails) and the strip's one minute pass in seconds. The
    hub and the terminal read the same clock, so signed requests stay fresh."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self):
        return NOW + timedelta(seconds=(time.monotonic() - self.start) * SPEED)


@pytest.fixture
def county_and_terminal(tmp_path):
    with enrolled_terminal(tmp_path, FastClock(), STATUS_POLL_MS=300) as terminal:
        yield terminal


def test_the_strip_goes_offline_and_back_online_as_the_hub_stops_and_starts(
    county_and_terminal, page
):
    terminal = county_and_terminal
    shot = Shots(page, "status-strip")

    page.goto(f"{terminal['url']}/signin")
    page.locator("label.choice", has_text="王医生").tap()
    for key in "1111":
        page.locator(f'.keypad button[data-key="{key}"]').tap()
    page.locator("#signin-submit").tap()
    page.wait_for_url("**/settle")

    wait_until(page, "document.querySelector('#status-strip[data-state=\"online\"]')")
    assert page.text_content("#status-strip .strip-label") == "在线"
    box = page.locator("#strip-sync").bounding_box()
    assert box is not None and box["height"] >= 44 and box["width"] >= 44
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 800
    shot("online")

    # The hub goes away, a record waits (in this order: the agent uploads every half
    # second, so a record made first could be gone before the hub is): within the strip's
    # minute it says so by itself.
    terminal["stop_hub"]()
    data_dir = terminal["data_dir"]
    store = SqliteDeviceStore.open(data_dir)
    try:
        services.record_event(
            store,
            services.load_identity(store, data_dir),
            {"event": "test_marker"},
            terminal["clock"](),
        )
    finally:
        store.close()
    wait_until(page, "document.querySelector('#status-strip[data-state=\"offline\"]')", 20)
    wait_until(page, "document.querySelector('#status-strip').textContent.includes('笔待上传')", 20)
    text = page.text_content("#status-strip")
    assert "离线" in text and "笔待上传" in text and "上次同步" in text
    assert "Errno" not in text and "[" not in text
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 800
    shot("offline")

    # The hub is back: 在线 again, and the waiting record goes up, nobody pressing anything.
    terminal["start_hub"]()
    wait_until(page, "document.querySelector('#status-strip[data-state=\"online\"]')", 20)
    wait_until(page, "!document.querySelector('#status-strip').textContent.includes('待上传')", 20)
    assert page.text_content("#status-strip .strip-label") == "在线"
    shot("online-again")

    # A patient's visit ready to confirm when the county withdraws the device.
    page.goto(f"{terminal['url']}/tester")
    with page.expect_navigation():
        page.locator('button[data-card="A32011505"]').tap()
    page.goto(f"{terminal['url']}/settle")
    patient_ready(page)
    page.fill("#item-search", "amxl")
    page.locator('#item-results li[data-code="XJ01CAA040A001"]').tap()
    wait_until(page, "!document.getElementById('confirm').disabled")
    assert page.is_hidden("#confirm-withdrawn")

    # The county withdraws the device: the strip turns red with the reason.
    store = SqliteDeviceStore.open(data_dir)
    try:
        device_id = store.device().device_id
    finally:
        store.close()
    with hub_store(terminal["hub_dir"]) as hub_db:
        county.revoke(hub_db, device_id, terminal["clock"](), "test")
    wait_until(page, "document.querySelector('#status-strip[data-state=\"revoked\"]')", 20)
    assert "设备已停用" in page.text_content("#status-strip")
    assert page.is_hidden("#strip-sync")
    # 确认结算 greys out by itself, the reason beside it; after a reload too.
    wait_until(page, "document.getElementById('confirm').disabled")
    assert "县医保局已停用本终端：不能结算" in page.text_content("#confirm-withdrawn")
    shot("revoked")
    page.reload()
    patient_ready(page)
    page.wait_for_selector("#confirm-withdrawn:not([hidden])")
    wait_until(page, "document.getElementById('settle').dataset.quoted")  # the kept visit
    assert page.locator("#confirm").is_disabled()
    assert page.problems == []
