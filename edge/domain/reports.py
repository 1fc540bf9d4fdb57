"""The 日结 (daily close) report: a layout computed from the signed close record (or the
body a close would sign now, for the preview) and the settlements and reversals it
covers. Pure: the caller hands in the records, the patients' names and insurance types,
and the settlements that reversals undo.

The close record itself keeps its format (`docs/ledger.md`); this module only arranges
what it and its records say: the transaction list, the totals by insurance type, visit
type and payer (each adds up to the close's net), the cash the doctor hands over, the
reversals, and the lines for the doctor's and the reviewer's signatures. `report_lines`
lays it out for the receipt printer's paper (32 columns on 58 mm, 48 on 80 mm)."""

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge.domain.money import format_yuan
from edge.domain.records import MONEY_FIELDS, payer_amounts

INSURANCE_TYPES = {"employee": "职工医保", "resident": "居民医保"}
VISIT_TYPES = {"general": "普通门诊", "chronic": "慢特病门诊", "two_diseases": "两病门诊"}
# Every payer of the chain (records.MONEY_FIELDS), as the 日结 and the 结算单 name them.
PAYERS = {
    "total": "医疗费总额", "fund": "统筹基金", "critical_illness": "大病保险",
    "assistance": "医疗救助", "cvlserv_pay": "公务员医疗补助", "oth_pay": "优抚医疗补助",
    "personal_account": "个人账户", "family_account": "家庭共济", "cash": "现金",
}  # fmt: skip
KINDS = {"settlement": "结算", "reversal": "冲销"}
UNKNOWN = "未知"


@dataclass(frozen=True)
class Person:
    """What the report shows of a patient (from the roster)."""

    name: str
    insurance_type: str = ""  # "employee" | "resident" | "" when unknown


@dataclass(frozen=True)
class Transaction:
    seq: int
    tx_id: str
    kind: str  # "settlement" | "reversal"
    time: str  # HH:MM, China time
    insured_id: str
    name: str
    insurance_type: str  # Chinese label
    visit_type: str  # Chinese label
    amounts: dict[str, int]  # per MONEY_FIELDS; a reversal's are negative
    reverses_seq: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Group:
    """Totals of the transactions of one insurance type or visit type, reversals netted."""

    label: str
    settlements: int
    reversals: int
    total: int
    cash: int


@dataclass(frozen=True)
class CloseReport:
    business_day: str
    device_id: str
    operator: str
    operator_name: str
    signed: bool  # False: a preview of what a close would sign now
    listed: bool  # the records were given: the transaction list and groups are there
    seq: int | None
    created_at: str  # the close's own time (the preview's: now)
    from_seq: int | None
    to_seq: int | None
    settlements: dict[str, int]  # count and MONEY_FIELDS, as in the close body
    reversals: dict[str, int]
    net: dict[str, int]
    needs_review: int
    transactions: tuple[Transaction, ...]
    by_insurance_type: tuple[Group, ...]
    by_visit_type: tuple[Group, ...]
    by_payer: tuple[tuple[str, str, int], ...]  # (payer, label, net fen), every payer that paid
    hash: str = ""
    warnings: tuple[str, ...] = field(default=())
    # the close's `premiums` member (docs/service-point.md), None when it has none
    premiums: Mapping[str, Mapping[str, int]] | None = None

    @property
    def cash_to_hand(self) -> int:
        """现金合计: the cash the doctor hands over (reversals' refunds taken off)."""
        return self.net["cash"]


def close_report(
    body: Mapping[str, Any],
    records: Iterable[Mapping[str, Any]] | None,
    *,
    device_id: str,
    created_at: str,
    people: Mapping[str, Person] | None = None,
    originals: Mapping[str, Mapping[str, Any]] | None = None,
    operator_name: str = "",
    seq: int | None = None,
    record_hash: str = "",
    signed: bool = True,
) -> CloseReport:
    """The report of a close `body` (a signed record's, or `records.daily_close_body` of
    what a close would cover now). `records`: the device's records; those in the close's
    range that are settlements or reversals are listed. `people`: names and insurance
    types by insured id; `originals`: the settlements reversals undo, by tx_id (for the
    visit type of a reversal whose settlement an earlier close covered)."""
    people, originals = people or {}, originals or {}
    low, high = body.get("from_seq"), body.get("to_seq")
    covered = [
        r for r in records or ()
        if low is not None and high is not None and low <= r["seq"] <= high
        and r["kind"] in KINDS
    ]  # fmt: skip
    by_tx = {r["tx_id"]: r for r in covered if r["kind"] == "settlement"}
    transactions = tuple(_transaction(r, people, {**originals, **by_tx}) for r in covered)
    net = {name: body["net"].get(name, 0) for name in MONEY_FIELDS}
    warnings = []
    listed = {name: sum(t.amounts[name] for t in transactions) for name in MONEY_FIELDS}
    if records is not None and (listed != net or len(transactions) != _count(body)):
        warnings.append("交易明细与日结记录不一致，请联系县医保局")
    return CloseReport(
        business_day=body["business_day"],
        device_id=device_id,
        operator=body.get("operator", ""),
        operator_name=operator_name,
        signed=signed,
        listed=records is not None,
        seq=seq,
        created_at=created_at,
        from_seq=low,
        to_seq=high,
        settlements=_totals(body["settlements"]),
        reversals=_totals(body["reversals"]),
        net=net,
        needs_review=body.get("needs_review", 0),
        transactions=transactions,
        by_insurance_type=_groups(transactions, lambda t: t.insurance_type),
        by_visit_type=_groups(transactions, lambda t: t.visit_type),
        by_payer=tuple(
            (name, PAYERS[name], net[name])
            for name in MONEY_FIELDS
            if name != "total" and (net[name] or name == "cash")
        ),
        hash=record_hash,
        warnings=tuple(warnings),
        premiums=body.get("premiums"),
    )


def _totals(totals: Mapping[str, Any]) -> dict[str, int]:
    return {"count": totals["count"], **{name: totals.get(name, 0) for name in MONEY_FIELDS}}


def _count(body: Mapping[str, Any]) -> int:
    return int(body["settlements"]["count"]) + int(body["reversals"]["count"])


def _transaction(
    record: Mapping[str, Any], people: Mapping[str, Person], settlements: Mapping[str, Any]
) -> Transaction:
    body = record["body"]
    person = people.get(body["insured_id"], Person(""))
    if record["kind"] == "settlement":
        amounts = payer_amounts(body["result"])
        visit_type = body["visit"]["visit_type"]
        reverses_seq, reason = None, ""
    else:
        amounts = {name: -body["amounts"].get(name, 0) for name in MONEY_FIELDS}
        original = settlements.get(body["reverses"])
        visit_type = original["body"]["visit"]["visit_type"] if original else ""
        reverses_seq, reason = body["reverses_seq"], body["reason"]
    return Transaction(
        seq=record["seq"],
        tx_id=record["tx_id"],
        kind=record["kind"],
        time=record["created_at"][11:16],
        insured_id=body["insured_id"],
        name=person.name or body["insured_id"],
        insurance_type=INSURANCE_TYPES.get(person.insurance_type, UNKNOWN),
        visit_type=VISIT_TYPES.get(visit_type, visit_type or UNKNOWN),
        amounts=amounts,
        reverses_seq=reverses_seq,
        reason=reason,
    )


def _groups(transactions: Iterable[Transaction], key: Any) -> tuple[Group, ...]:
    groups: dict[str, list[Transaction]] = {}
    for t in transactions:
        groups.setdefault(key(t), []).append(t)
    return tuple(
        Group(
            label=label,
            settlements=sum(t.kind == "settlement" for t in ts),
            reversals=sum(t.kind == "reversal" for t in ts),
            total=sum(t.amounts["total"] for t in ts),
            cash=sum(t.amounts["cash"] for t in ts),
        )
        for label, ts in groups.items()
    )


# ---- the paper layout ---------------------------------------------------------------------


@dataclass(frozen=True)
class PaperLine:
    text: str
    bold: bool = False
    align: str = "left"


def chinese_time(iso: str) -> str:
    """`2026-11-26T14:05:09+08:00` → `2026年11月26日 14:05` (the record's own wall clock)."""
    moment = datetime.fromisoformat(iso)
    return f"{moment.year}年{moment.month}月{moment.day}日 {moment:%H:%M}"


def chinese_day(day: str) -> str:
    """`2026-11-26` → `2026年11月26日`."""
    year, month, dom = (int(part) for part in day.split("-"))
    return f"{year}年{month}月{dom}日"


def report_lines(report: CloseReport, width: int = 32) -> list[PaperLine]:
    """The 日结 on the receipt printer's paper, `width` display columns wide (the title
    and the QR code are the receipt layout's)."""
    rule = PaperLine("-" * width)
    operator = report.operator_name or report.operator
    lines = [
        PaperLine(f"营业日 {chinese_day(report.business_day)}"),
        PaperLine(f"设备 {report.device_id}"),
        PaperLine(f"操作员 {operator}"),
        PaperLine(
            ("签名时间 " if report.signed else "预览时间 ") + chinese_time(report.created_at)
        ),
    ]
    if report.from_seq is not None:
        lines.append(PaperLine(f"流水范围 {report.from_seq} 至 {report.to_seq}"))
    if not report.signed:
        lines.append(PaperLine("预览：尚未签名，不是日结单", bold=True))
    if report.listed:
        lines += [rule, PaperLine("交易明细", bold=True)]
    for t in report.transactions:
        lines.append(columns(f"{t.seq} {t.time} {t.name}", KINDS[t.kind], width))
        lines.append(columns(f"  {t.insurance_type} {t.visit_type}", "", width))
        lines.append(columns(f"  合计 {format_yuan(t.amounts['total'])}",
                             f"现金 {format_yuan(t.amounts['cash'])}", width))  # fmt: skip
    if report.listed and not report.transactions:
        lines.append(PaperLine("无"))
    lines += [
        rule,
        columns(
            f"结算 {report.settlements['count']}笔", format_yuan(report.settlements["total"]), width
        ),
        columns(
            f"冲销 {report.reversals['count']}笔", format_yuan(-report.reversals["total"]), width
        ),
        columns("净额", format_yuan(report.net["total"]), width, bold=True),
        rule,
    ]
    if report.listed:
        lines += [
            PaperLine("按险种", bold=True),
            *_group_lines(report.by_insurance_type, width),
            PaperLine("按门诊类别", bold=True),
            *_group_lines(report.by_visit_type, width),
        ]
    lines += [
        PaperLine("按支付方", bold=True),
        *(columns(f"  {label}", format_yuan(fen), width) for _, label, fen in report.by_payer),
        rule,
        columns("现金合计（应交）", format_yuan(report.cash_to_hand), width, bold=True),
    ]  # fmt: skip
    lines += premium_lines(report.premiums, width, report.cash_to_hand)
    reversals = [t for t in report.transactions if t.kind == "reversal"]
    if reversals:
        lines += [rule, PaperLine("冲销明细", bold=True)]
        for t in reversals:
            lines.append(columns(f"{t.seq} 冲销 {t.reverses_seq} {t.name}",
                                 format_yuan(t.amounts["total"]), width))  # fmt: skip
            lines += wrapped("  原因 ", t.reason, width)
    if report.needs_review:
        lines.append(PaperLine(f"待县级复核 {report.needs_review}笔"))
    lines += [PaperLine(w, bold=True) for w in report.warnings]
    if report.signed:
        lines += [rule, PaperLine(""), PaperLine("医生签字：" + "_" * max(4, width - 10)),
                  PaperLine(""), PaperLine("复核人签字：" + "_" * max(4, width - 12)),
                  PaperLine(""), PaperLine("日期：" + "_" * max(4, width - 6))]  # fmt: skip
    return [piece for line in lines for piece in _fit(line, width)]


PREMIUM_METHODS = {"cash": "现金", "mobile": "移动支付", "family_account": "家庭共济"}


def premium_lines(
    premiums: Mapping[str, Any] | None, width: int, settlement_cash: int = 0
) -> list[PaperLine]:
    """The premiums (参保缴费) of a close: collected by method, reversed, the cash to hand
    over for them (`net.cash`) and, with the settlements' cash, all the cash the doctor
    hands over; nothing for a close without premiums."""
    if not premiums:
        return []
    collected, reversed_, net = premiums["collected"], premiums["reversed"], premiums["net"]
    lines = [
        PaperLine("-" * width),
        PaperLine("参保缴费", bold=True),
        columns(f"收取保费 {collected['count']}笔 {collected['persons']}人",
                format_yuan(collected["amount"]), width),
        *(columns(f"  其中{label}", format_yuan(collected[name]), width)
          for name, label in PREMIUM_METHODS.items() if collected.get(name)),
    ]  # fmt: skip
    if reversed_["count"]:
        lines.append(
            columns(f"冲正 {reversed_['count']}笔", format_yuan(-reversed_["amount"]), width)
        )
    lines += [
        columns("保费净额", format_yuan(net["amount"]), width, bold=True),
        columns("  政府资助", format_yuan(net["state_paid"]), width),
        columns("保费应上缴现金", format_yuan(net["cash"]), width, bold=True),
        columns(
            "现金总计（结算+保费）", format_yuan(settlement_cash + net["cash"]), width, bold=True
        ),
    ]
    return lines


def _group_lines(groups: Iterable[Group], width: int) -> list[PaperLine]:
    rows = []
    for group in groups:
        count = f"{group.settlements}笔" + (f" 冲{group.reversals}" if group.reversals else "")
        rows.append(columns(f"  {group.label} {count}", format_yuan(group.total), width))
    return rows or [PaperLine("  无")]


def daily_close_report(
    record: Mapping[str, Any],
    records: Iterable[Mapping[str, Any]] | None = None,
    *,
    people: Mapping[str, Person] | None = None,
    originals: Mapping[str, Mapping[str, Any]] | None = None,
    operator_name: str = "",
    width: int = 48,
) -> str:
    """The printable 日结 of a signed close record, as text (what `clinic close-day`
    prints), with its title and hash."""
    report = close_report(
        record["body"], records, device_id=record["device_id"],
        created_at=record.get("created_at", f"{record['body']['business_day']}T00:00:00+08:00"),
        people=people, originals=originals, operator_name=operator_name, seq=record["seq"],
        record_hash=record.get("hash", ""),
    )  # fmt: skip
    return report_text(report, width)


def report_text(report: CloseReport, width: int = 48) -> str:
    """The report as plain text with its title (and, once signed, its record and hash)."""
    lines = [PaperLine("日结单" if report.signed else "日结预览", align="center"),
             *report_lines(report, width)]  # fmt: skip
    if report.hash:
        lines.append(PaperLine(f"记录 {report.seq} 校验码 {report.hash[:16]}"))
    return "\n".join(place(line.text, width, line.align) for line in lines)


def display_width(text: str) -> int:
    """Display columns: a Chinese character (or a full-width sign) takes two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def place(text: str, width: int, align: str = "left") -> str:
    gap = max(0, width - display_width(text))
    if align == "center":
        return " " * (gap // 2) + text
    if align == "right":
        return " " * gap + text
    return text


def columns(left: str, right: str, width: int, bold: bool = False) -> PaperLine:
    """`left` and `right` on one line, `right` against the right edge (two lines when
    both do not fit)."""
    gap = width - display_width(left) - display_width(right)
    if gap < 1 and right:
        return PaperLine(left + "\n" + " " * max(0, width - display_width(right)) + right, bold)
    return PaperLine(left + " " * max(0, gap) + right if right else left, bold)


def wrapped(label: str, value: str, width: int) -> list[PaperLine]:
    """`label value`, continued on indented lines when it is wider than the paper."""
    lines, current = [], label
    for ch in value:
        if display_width(current + ch) > width:
            lines.append(PaperLine(current))
            current = "    "
        current += ch
    return [*lines, PaperLine(current)]


def _fit(line: PaperLine, width: int) -> list[PaperLine]:
    out = []
    for text in line.text.split("\n"):
        if display_width(text) <= width:
            out.append(PaperLine(text, line.bold, line.align))
        else:
            out += [PaperLine(p.text, line.bold, line.align) for p in wrapped("", text, width)]
    return out


# ---- the month and year closes (月结单, 年结单) ------------------------------------------------

PERIOD_INSURANCE = {**INSURANCE_TYPES, "unknown": UNKNOWN}
PERIOD_VISIT_TYPES = {**VISIT_TYPES, "unknown": UNKNOWN}


def period_title(body: Mapping[str, Any], signed: bool = True) -> str:
    if "year" in body:
        return "年结单" if signed else "年结预览"
    return "月结单" if signed else "月结预览"


def chinese_period(body: Mapping[str, Any]) -> str:
    """`2026-11` → `2026年11月`; `2026` → `2026年`."""
    if "year" in body:
        return f"{body['year']}年"
    year, month = body["month"].split("-")
    return f"{year}年{int(month)}月"


def period_lines(
    body: Mapping[str, Any],
    width: int = 32,
    *,
    device_id: str = "",
    operator_name: str = "",
    created_at: str = "",
    signed: bool = True,
) -> list[PaperLine]:
    """A month or year close body (signed, or what one would sign now) on the paper:
    the period, the seqs and closes it covers, the totals, reversals netted, by insurance
    type, visit type and payer, the cash, and the lines for signatures."""
    rule = PaperLine("-" * width)
    closes = body.get("daily_closes") or body.get("monthly_closes") or {}
    closes_label = "日结" if "daily_closes" in body else "月结"
    lines = [PaperLine(("月份 " if "month" in body else "年度 ") + chinese_period(body))]
    if device_id:
        lines.append(PaperLine(f"设备 {device_id}"))
    lines.append(PaperLine(f"操作员 {operator_name or body.get('operator', '')}"))
    if created_at:
        lines.append(PaperLine(("签名时间 " if signed else "预览时间 ") + chinese_time(created_at)))
    if body.get("from_seq") is not None:
        lines.append(PaperLine(f"流水范围 {body['from_seq']} 至 {body['to_seq']}"))
    if closes.get("count"):
        covered = f"(记录 {closes['first_seq']} 至 {closes['last_seq']})"
        lines.append(PaperLine(f"{closes_label} {closes['count']}次 {covered}"))
    if not signed:
        lines.append(PaperLine("预览：尚未签名", bold=True))
    settlements, reversals, net = body["settlements"], body["reversals"], body["net"]
    lines += [
        rule,
        columns(f"结算 {settlements['count']}笔", format_yuan(settlements["total"]), width),
        columns(f"冲销 {reversals['count']}笔", format_yuan(-reversals["total"]), width),
        columns("净额", format_yuan(net["total"]), width, bold=True),
        rule,
        PaperLine("按险种", bold=True),
        *_period_groups(body["by_insurance"], PERIOD_INSURANCE, width),
        PaperLine("按门诊类别", bold=True),
        *_period_groups(body["by_visit_type"], PERIOD_VISIT_TYPES, width),
        PaperLine("按支付方", bold=True),
        *(columns(f"  {PAYERS[name]}", format_yuan(net.get(name, 0)), width)
          for name in MONEY_FIELDS if name != "total" and (net.get(name) or name == "cash")),
        rule,
        columns("现金合计", format_yuan(net.get("cash", 0)), width, bold=True),
    ]  # fmt: skip
    lines += premium_lines(body.get("premiums"), width, net.get("cash", 0))
    if body.get("needs_review"):
        lines.append(PaperLine(f"待县级复核 {body['needs_review']}笔"))
    if signed:
        lines += [rule, PaperLine(""), PaperLine("负责人签字：" + "_" * max(4, width - 12)),
                  PaperLine(""), PaperLine("日期：" + "_" * max(4, width - 6))]  # fmt: skip
    return [piece for line in lines for piece in _fit(line, width)]


def _period_groups(
    groups: Mapping[str, Mapping[str, int]], labels: Mapping[str, str], width: int
) -> list[PaperLine]:
    rows = [
        columns(
            f"  {labels.get(name, name)} {group['count']}笔", format_yuan(group["total"]), width
        )
        for name, group in groups.items()
    ]
    return rows or [PaperLine("  无")]


def period_text(record: Mapping[str, Any], width: int = 48) -> str:
    """A signed month or year close as text with its title and hash (what `clinic
    close-month` prints)."""
    body = record["body"]
    lines = [
        PaperLine(period_title(body), align="center"),
        *period_lines(body, width, device_id=record["device_id"], created_at=record["created_at"]),
        PaperLine(f"记录 {record['seq']} 校验码 {record['hash'][:16]}"),
    ]
    return "\n".join(place(line.text, width, line.align) for line in lines)
