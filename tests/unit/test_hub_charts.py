"""The console's SVG bar charts (sync/hub/charts.py): round yuan on the axis, a bar per
value with its exact value, an accessible name and description, no script or style
attribute, and text from outside escaped; the month arithmetic of the reports."""

import xml.etree.ElementTree as ET

import pytest

from sync.hub.charts import Bar, bar_chart, nice_step, yuan_text
from sync.hub.services import month_reports

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    ("top", "step"), [(0, 1), (1, 1), (4, 1), (5, 2), (9, 5), (40, 10), (41, 20), (399, 100)]
)
def test_a_step_is_one_two_or_five_times_a_power_of_ten_and_four_reach_the_top(top, step):
    assert nice_step(top) == step
    assert 4 * nice_step(top) >= top


def test_yuan_text_is_two_decimals_with_thousands_and_a_sign():
    assert yuan_text(0) == "¥0.00"
    assert yuan_text(123456) == "¥1,234.56"
    assert yuan_text(-5) == "-¥0.05"


def chart(bars, **options) -> ET.Element:
    text = bar_chart(
        bars, chart_id="c", title="统筹基金支出", description="每日", total_label="合计", **options
    )
    assert "<script" not in text and "style=" not in text
    return ET.fromstring(text)


def test_a_chart_has_a_bar_per_value_its_total_and_an_accessible_name():
    svg = chart([Bar("01", 6402, "2026-10-01"), Bar("02", 0, "2026-10-02"), Bar("03", 3306, "x")])
    assert svg.get("role") == "img" and svg.get("aria-labelledby") == "c-title c-desc"
    assert svg.find(f"{SVG}title").text == "统筹基金支出"
    desc = svg.find(f"{SVG}desc").text
    assert "合计 ¥97.08" in desc and "2026-10-01: ¥64.02" in desc
    rects = svg.findall(f"{SVG}rect")
    assert [int(r.get("data-value")) for r in rects] == [6402, 0, 3306]
    assert int(svg.get("data-total")) == 9708
    heights = [float(r.get("height")) for r in rects]
    assert heights[1] == 0 and heights[0] > heights[2] > 0
    labels = [t.text for t in svg.findall(f"{SVG}text")]
    ticks = [label for label in labels if label.startswith("¥")]
    assert ticks == ["¥0.00", "¥20.00", "¥40.00", "¥60.00", "¥80.00"]  # round yuan
    assert "合计 ¥97.08" in labels


def test_a_chart_of_counts_and_an_empty_chart_and_text_from_outside_is_escaped():
    svg = chart([Bar('<b>"x"</b>', 7, "&")], money=False)
    assert svg.get("data-unit") == "count"
    assert [t.text for t in svg.findall(f"{SVG}text")][-1] == '<b>"x"</b>'
    empty = chart([])
    assert empty.findall(f"{SVG}rect") == [] and empty.get("data-total") == "0"


def test_negative_values_are_drawn_flat_but_kept_in_their_value():
    svg = chart([Bar("01", -500, "a reversal only")])
    (rect,) = svg.findall(f"{SVG}rect")
    assert rect.get("data-value") == "-500" and float(rect.get("height")) == 0


def test_months_and_their_bounds_in_china_time():
    assert month_reports.next_month("2026-12") == "2027-01"
    assert month_reports.months_back("2027-02", 3) == ["2026-12", "2027-01", "2027-02"]
    assert month_reports.month_start("2026-11").isoformat() == "2026-11-01T00:00:00+08:00"
    for bad in ("2026-13", "2026-1", "26-11-01", "abcd-ef", "0000-01"):
        with pytest.raises(ValueError):
            month_reports.month_start(bad)
    assert month_reports.yuan_cell(-123) == "-1.23"
