"""Printable layouts of ledger records (the text the command line prints and the UI shows)."""

import unicodedata
from typing import Any

from edge.domain.money import format_yuan
from edge.domain.records import MONEY_FIELDS

# The report's columns, by the payers of records.MONEY_FIELDS: the total and the cash are
# always there, every other payer only when the close has an amount for it (the width of a
# version 2 close would otherwise be too much for a page). A version 1 close names five.
COLUMNS = {
    "total": "总额", "fund": "统筹", "critical_illness": "大病", "assistance": "救助",
    "cvlserv_pay": "公务员", "oth_pay": "优抚", "personal_account": "个账",
    "family_account": "共济", "cash": "现金",
}  # fmt: skip
ALWAYS = ("total", "cash")
WIDTH = 14  # display columns per amount


def daily_close_report(record: dict[str, Any]) -> str:
    """The printable 日结 report."""
    body = record["body"]
    rows = [("结算 settlements", body["settlements"]), ("冲销 reversals", body["reversals"])]
    totals = [body["settlements"], body["reversals"], body["net"]]
    shown = [name for name in MONEY_FIELDS
             if name in ALWAYS or any(t.get(name, 0) for t in totals)]  # fmt: skip
    header = "".join(_right(COLUMNS[name], WIDTH) for name in shown)
    lines = [
        f"日结报表 Daily close  {body['business_day']}",
        f"设备 {record['device_id']}  操作员 {body['operator']}  记录 #{record['seq']}",
        f"范围 records {body['from_seq']} .. {body['to_seq']}",
        "",
        f"{'':<20}{_right('笔数', 6)}{header}",
    ]
    for label, t in [*rows, ("净额 net", {"count": "", **body["net"]})]:
        amounts = "".join(f"{format_yuan(t.get(name, 0)):>{WIDTH}}" for name in shown)
        lines.append(f"{label:<18}{t['count']!s:>6}{amounts}")
    if body["needs_review"]:
        lines.append(f"待县级复核 needs county review: {body['needs_review']}")
    lines.append(f"签名哈希 hash {record['hash'][:16]}")
    return "\n".join(lines)


def _right(text: str, width: int) -> str:
    """`text` right-aligned in `width` display columns (a Chinese character takes two)."""
    shown = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return " " * max(0, width - shown) + text
