"""The county console's month report in a real headless Chromium (zh-CN, a desk
screen) against a real hub holding the demo month (sync/demo_month.py): the county's
administrator signs in, opens the month, and the server-drawn SVG charts are there, with
their titles, and add up to the figures of the page's tables; the page's totals are the
sum of the clinics' clearing statements, and each clinic's clearing status (draft, agreed,
paid) is the one its statement has. A screenshot of the page
goes to test-artifacts/web-e2e/hub-month-report/; axe-core finds no serious or critical
accessibility problem on it."""

from types import SimpleNamespace

import pytest
from axe import describe, violations
from browser_support import Shots
from clock import NOW, FakeClock

from edge.domain.money import format_yuan
from sync.demo_month import CLINICS, previous_month, run_demo_month
from sync.hub.bootstrap import open_hub_store
from sync.hub.server import serve_in_background
from sync.hub.services import statements
from sync.statements import PAYERS

MONTH = previous_month(NOW)


@pytest.fixture
def month_hub(tmp_path, monkeypatch):
    monkeypatch.delenv("CLINIC_HUB_DATABASE", raising=False)  # the hub's own SQLite
    made = run_demo_month(tmp_path / "demo", MONTH, visits_per_day=2)
    # The county agrees the first clinic's statement and pays the second's; the third's
    # (revised by the late upload) stays a draft.
    (first, _), (second, _), (third, _) = CLINICS
    store = open_hub_store(made["hub_dir"])
    try:
        for code, steps in ((first, ["agreed"]), (second, ["agreed", "paid"])):
            for status in steps:
                statements.set_status(
                    store, clinic_code=code, month=MONTH, revision=1, status=status,
                    by="county-admin", now=NOW, reference="GK-DEMO-01", paid_on=str(NOW.date()),
                )  # fmt: skip
        stated = {code: store.latest_statement(code, MONTH) for code, _ in CLINICS}
    finally:
        store.close()
    hub = serve_in_background(made["hub_dir"], config={"CLOCK": FakeClock(NOW)})
    yield SimpleNamespace(
        url=hub.url,
        statements={code: s.content["total"] for code, s in stated.items()},
        clearing={first: "agreed", second: "paid", third: "draft"},
    )
    hub.stop()


@pytest.fixture
def desk_page(browser):
    """The county office's screen, not the kiosk's."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.problems = []
    # Failed loads by their address (the browser's own favicon.ico is no page's), and
    # any other console error.
    page.on("response", lambda r: page.problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)  # fmt: skip
    page.on("console", lambda m: page.problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load") else None)  # fmt: skip
    yield page
    context.close()


def bars(page, chart: str) -> list[int]:
    return page.eval_on_selector_all(
        f"#{chart} rect.bar", "rects => rects.map(r => Number(r.dataset.value))"
    )


def cell_fen(page, selector: str) -> int:
    return int(page.get_attribute(selector, "data-fen"))


def test_the_month_charts_render_and_add_up_to_the_page_s_tables(month_hub, desk_page):
    page, shot = desk_page, Shots(desk_page, "hub-month-report")
    page.goto(f"{month_hub.url}/console/login")
    page.fill('input[name="username"]', "county-admin")
    page.fill('input[name="password"]', "demo-admin-2026")
    with page.expect_navigation():
        page.locator('button[type="submit"]').last.click()
    with page.expect_navigation():
        page.locator("header nav a", has_text="月报").click()
    page.fill('input[name="month"]', MONTH)
    with page.expect_navigation():
        page.locator("form.filters button[type=submit]").click()
    assert page.locator("h1").inner_text().startswith(f"{MONTH} 月报")

    fund, total = cell_fen(page, "#total-hifp_pay"), cell_fen(page, "#total-medfee_sumamt")
    assert fund > 0 and total > fund
    assert page.inner_text("#total-hifp_pay") == format_yuan(fund)

    by_day = bars(page, "chart-fund-by-day")
    assert (
        sum(by_day) == fund and int(page.get_attribute("#chart-fund-by-day", "data-total")) == fund
    )
    day_cells = page.eval_on_selector_all(
        "#days td[data-fen]", "cells => cells.map(c => Number(c.dataset.fen))"
    )
    assert sorted(v for v in by_day if v) == sorted(v for v in day_cells if v)
    assert bars(page, "chart-fund-by-month")[-1] == fund
    assert sum(bars(page, "chart-payers")) == total  # the payers make the medical cost
    clinic_cells = page.eval_on_selector_all(
        "#clinics td[data-fen]", "cells => cells.map(c => Number(c.dataset.fen))"
    )
    assert sum(clinic_cells) == fund

    # The page's totals are the clinics' statements' totals; each clinic's clearing
    # status is its statement's, in Chinese.
    for payer in PAYERS:
        stated = sum(total[payer] for total in month_hub.statements.values())
        assert cell_fen(page, f"#total-{payer}") == stated, payer
    shown = page.eval_on_selector_all(
        "#clinics td.clearing",
        "cells => cells.map(c => [c.closest('tr').querySelector('a').textContent.trim(),"
        " c.dataset.clearing, c.textContent.trim()])",
    )
    assert {code: status for code, status, _ in shown} == month_hub.clearing
    names = {status: text for _, status, text in shown}
    assert names == {"draft": "结算单草稿", "agreed": "结算单已确认", "paid": "已支付"}

    # What a person sees: Chinese titles, the total in yuan, an accessible name.
    chart = page.locator("#chart-fund-by-day")
    assert chart.get_attribute("role") == "img"
    assert page.text_content("#chart-fund-by-day-title").startswith("统筹基金支出（按日")
    assert format_yuan(fund) in page.text_content("#chart-fund-by-day")
    assert format_yuan(fund) in page.text_content("#chart-fund-by-day-desc")
    box = chart.bounding_box()
    assert box is not None and box["height"] > 150 and box["width"] > 600
    heights = page.eval_on_selector_all(
        "#chart-fund-by-day rect.bar", "rects => rects.map(r => r.getBBox().height)"
    )
    assert max(heights) > 50  # the tallest day is drawn tall, not flattened
    chart.scroll_into_view_if_needed()
    shot("charts")
    page.screenshot(path=shot.folder / "full-page.png", full_page=True)
    assert page.problems == []
    found = violations(page)  # axe-core: no serious or critical accessibility problem
    assert found == [], describe(found)
