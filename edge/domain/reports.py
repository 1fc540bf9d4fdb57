"""Printable layouts of ledger records (the text the command line prints and the UI shows)."""

from typing import Any

from edge.domain.money import format_yuan


def daily_close_report(record: dict[str, Any]) -> str:
    """The printable 日结 report."""
    body = record["body"]
    rows = [("结算 settlements", body["settlements"]), ("冲销 reversals", body["reversals"])]
    lines = [
        f"日结报表 Daily close  {body['business_day']}",
        f"设备 {record['device_id']}  操作员 {body['operator']}  记录 #{record['seq']}",
        f"范围 records {body['from_seq']} .. {body['to_seq']}",
        "",
        f"{'':<18}{'笔数':>6}{'总额':>14}{'统筹':>14}{'救助':>14}{'个账':>14}{'现金':>14}",
    ]
    for label, t in [*rows, ("净额 net", {"count": "", **body["net"]})]:
        amounts = "".join(f"{format_yuan(t[k]):>14}" for k in
                          ("total", "fund", "assistance", "personal_account", "cash"))  # fmt: skip
        lines.append(f"{label:<18}{t['count']!s:>6}{amounts}")
    if body["needs_review"]:
        lines.append(f"待县级复核 needs county review: {body['needs_review']}")
    lines.append(f"签名哈希 hash {record['hash'][:16]}")
    return "\n".join(lines)
