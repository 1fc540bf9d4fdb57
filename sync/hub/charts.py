"""Bar charts as SVG text, drawn on the server for the county console's reports.

Pure: values in, markup out; no script, no style attribute (the console's Content
Security Policy allows neither), only presentation attributes and the console's
stylesheet classes. Amounts are integer fen; the axis is labelled in yuan. Each chart is
an image to assistive technology (`role="img"`, `<title>` and `<desc>` with every bar's
value), and every bar carries its exact value (`data-value`, fen for money) and its own `<title>`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 760
HEIGHT = 260
LEFT = 92  # room for the yuan labels of the axis
RIGHT = 12
TOP = 34
BOTTOM = 46  # room for the bars' labels
TICKS = 4  # gridlines above zero
MAX_LABELS = 16  # bar labels shown at most; the others are in each bar's <title>


@dataclass(frozen=True)
class Bar:
    label: str  # under the bar (a day "03", a month "2026-11")
    value: int  # fen, or a count when the chart is not of money
    title: str  # the bar's full name, for its tooltip and the description


def yuan_text(fen: int) -> str:
    """1234 fen as "¥12.34" (two decimals, thousands separated)."""
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}¥{yuan:,}.{cents:02d}"


def nice_step(top: int, ticks: int = TICKS) -> int:
    """A round step (1, 2 or 5 × a power of ten) such that `ticks` steps reach `top`."""
    if top <= 0:
        return 1
    raw = -(-top // ticks)  # ceiling division: whole units
    magnitude = 1
    while magnitude * 10 <= raw:
        magnitude *= 10
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def bar_chart(
    bars: Sequence[Bar],
    *,
    chart_id: str,
    title: str,
    description: str,
    money: bool = True,
    total_label: str = "",
) -> str:
    """An SVG bar chart of `bars`: a y axis from zero with round gridlines labelled in yuan
    (or in plain numbers when not `money`), a bar per value, the chart's total in
    `data-total` on the root. Negative values (a month of reversals only) are drawn as
    zero-height bars; their value is still in the bar's title and data."""
    values = [bar.value for bar in bars]
    total = sum(values)
    highest = max([0, *values])
    # Money: round yuan on the axis, never fractions of a yuan.
    step = nice_step(-(-highest // 100)) * 100 if money else nice_step(highest)
    top = step * TICKS
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    label = yuan_text if money else (lambda v: f"{v:,}")
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    listed = "; ".join(f"{bar.title}: {label(bar.value)}" for bar in bars)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img"'
        f' aria-labelledby="{title_id} {desc_id}" data-total="{total}"'
        f' data-unit="{"fen" if money else "count"}">',
        f'<title id="{title_id}">{escape(title)}</title>',
        f'<desc id="{desc_id}">{escape(description)} {escape(total_label)}'
        f" {escape(label(total))}. {escape(listed)}</desc>",
        f'<text x="{LEFT}" y="20" font-size="15" font-weight="bold" fill="#222">'
        f"{escape(title)}</text>",
        f'<text x="{WIDTH - RIGHT}" y="20" font-size="13" text-anchor="end" fill="#222">'
        f"{escape(total_label)} {escape(label(total))}</text>",
    ]
    for tick in range(TICKS + 1):
        value = step * tick
        y = TOP + plot_h - plot_h * tick / TICKS
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"'
            f' stroke="{"#444" if tick == 0 else "#ddd"}" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="12" text-anchor="end"'
            f' fill="#333">{escape(label(value))}</text>'
        )
    if bars:
        slot = plot_w / len(bars)
        width = max(1.0, slot * 0.7)
        every = -(-len(bars) // MAX_LABELS)  # label every n-th bar so the labels fit
        for index, bar in enumerate(bars):
            x = LEFT + slot * index + (slot - width) / 2
            height = plot_h * max(0, bar.value) / top if top else 0
            y = TOP + plot_h - height
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}"'
                f' height="{height:.1f}" fill="#2f6f9f" data-value="{bar.value}"'
                f' data-label="{escape(bar.label)}">'
                f"<title>{escape(bar.title)}: {escape(label(bar.value))}</title></rect>"
            )
            if index % every == 0:
                parts.append(
                    f'<text x="{x + width / 2:.1f}" y="{TOP + plot_h + 16}" font-size="12"'
                    f' text-anchor="middle" fill="#333">{escape(bar.label)}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)
