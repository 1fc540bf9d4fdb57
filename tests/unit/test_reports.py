"""The printable daily close report (日结报表): a column per payer the close has amounts
for, the total and the cash always; version 1 closes as before."""

from edge.domain.reports import daily_close_report

V1_TOTALS = {"total": 3920, "fund": 2744, "assistance": 600, "personal_account": 0, "cash": 576}


def close(settlements: dict, reversals: dict, net: dict) -> dict:
    return {
        "device_id": "dev-0123456789ab", "seq": 10, "hash": "ab" * 32,
        "body": {"business_day": "2026-11-22", "operator": "doc01", "from_seq": 1, "to_seq": 9,
                 "settlements": settlements, "reversals": reversals, "net": net,
                 "needs_review": 0},
    }  # fmt: skip


def table(report: str) -> list[list[str]]:
    return [line.split() for line in report.splitlines()[4:8]]


def test_a_version_1_close_shows_its_payers_that_paid_and_always_the_total_and_cash():
    report = daily_close_report(
        close({"count": 2, **V1_TOTALS}, {"count": 0, **dict.fromkeys(V1_TOTALS, 0)}, V1_TOTALS)
    )
    assert table(report) == [
        ["笔数", "总额", "统筹", "救助", "现金"],
        ["结算", "settlements", "2", "¥39.20", "¥27.44", "¥6.00", "¥5.76"],
        ["冲销", "reversals", "0", "¥0.00", "¥0.00", "¥0.00", "¥0.00"],
        ["净额", "net", "¥39.20", "¥27.44", "¥6.00", "¥5.76"],
    ]


def test_a_version_2_close_has_a_column_for_every_payer_with_an_amount():
    settled = {"count": 3, "total": 10000, "fund": 3000, "critical_illness": 1000,
               "assistance": 0, "cvlserv_pay": 500, "oth_pay": 1500, "personal_account": 0,
               "family_account": 1000, "cash": 3000}  # fmt: skip
    reversed_ = {**dict.fromkeys(settled, 0), "count": 1, "total": 2000, "fund": 1000,
                 "cash": 1000}  # fmt: skip
    net = {k: settled[k] - reversed_[k] for k in settled if k != "count"}
    report = daily_close_report(close(settled, reversed_, net))
    assert table(report)[0] == ["笔数", "总额", "统筹", "大病", "公务员", "优抚", "共济", "现金"]
    assert table(report)[1][-1] == "¥30.00" and table(report)[3][-1] == "¥20.00"


def test_the_columns_line_up_under_their_chinese_headings():
    settled = {"count": 1, "total": 1000, "fund": 400, "oth_pay": 600, "cash": 0}
    report = daily_close_report(close(settled, dict.fromkeys(settled, 0), settled))
    header, row = report.splitlines()[4], report.splitlines()[5]

    def width(text: str) -> int:
        return sum(2 if "\u4e00" <= ch <= "\u9fff" else 1 for ch in text)

    assert width(header) == width(row)  # both end at the last column's right edge
    assert width(header[: header.index("优抚") + 2]) == width(row[: row.index("¥6.00") + 5])
