"""The month page in real headless Chromium at the kiosk's 800×480: November's figures
after the month has ended, the month close signed by a tap; screenshots in
test-artifacts/web-e2e/month-close/."""

from datetime import timedelta

import pytest
from browser_support import Shots, no_sideways_scroll, tap_pin
from web_support import NOW, FakeClock, app_config, make_demo_device, served

from edge import services
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.documents import visit_from_json


def a_visit(day):
    return visit_from_json({"date": day.isoformat(), "visit_type": "general",
                            "diagnoses": ["J06.900"],
                            "lines": [{"code": "XJ01CAA040A001", "quantity": "2"}],
                            "use_personal_account": False})  # fmt: skip


@pytest.fixture
def terminal(tmp_path):
    """A demo terminal with three November visits (one reversed), on 2 December."""
    from web_ui.app import create_app

    data_dir = tmp_path / "device"
    make_demo_device(data_dir)
    store = SqliteDeviceStore.open(data_dir)
    try:
        identity = services.load_identity(store, data_dir)
        settled = [
            services.settle_visit(store, identity, insured_id=person, visit=a_visit(NOW.date()),
                                  operator="doc01", now=NOW + timedelta(minutes=m)).record
            for m, person in ((0, "32011500000001"), (5, "32011500000005"), (9, "32011500000502"))
        ]  # fmt: skip
        services.reverse_settlement(store, identity, tx_id=settled[1]["tx_id"], reason="录入错误",
                                    operator="doc01", now=NOW + timedelta(minutes=20))  # fmt: skip
    finally:
        store.close()
    app = create_app(app_config(data_dir, FakeClock(NOW + timedelta(days=10)), TESTING=False))
    with served(app) as url:
        yield url


def test_the_month_page_fits_the_kiosk_and_signs_the_month_close(terminal, page):
    shot = Shots(page, "month-close")
    page.goto(f"{terminal}/signin")
    page.locator("label.choice", has_text="王医生").tap()
    tap_pin(page, "1111")
    with page.expect_navigation():
        page.locator("#signin-submit").tap()
    page.goto(f"{terminal}/month?month=2026-11")
    assert "2026年11月" in page.locator("#month-label").inner_text()
    assert "结算 3 笔" in page.locator("#month-totals").inner_text()
    assert "冲销 1 笔" in page.locator("#month-totals").inner_text()
    no_sideways_scroll(page)
    shot("november")
    with page.expect_navigation():
        page.locator("#close-month").tap()
    assert "月结已签名" in page.content()
    assert page.locator(".month-close").count() == 1
    assert page.locator("#close-month").count() == 0
    no_sideways_scroll(page)
    shot("signed")
    assert page.problems == []
