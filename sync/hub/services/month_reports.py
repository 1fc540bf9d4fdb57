"""The county console's month reports: for the clinics a viewer may see, a month's visits,
what each payer paid (the fund's spending, `hifp_pay`, above all), by township, clinic and
day, the fund by month over the past year, the items that cost most and are used most,
the settlements flagged for review or differing from the county's recomputation, and each
clinic's clearing status; and the same tables as CSV and `.xlsx` for the county office.

Which month a record belongs to: the China-time calendar month of its `created_at`; a
reversal counts, netted, in the month it was made, whatever the month of the settlement
it reverses. Amounts are the county's: a settlement's as the county recomputed it, a
reversal's as the county recomputed the settlement it reverses (the clearing statement's
figures); where the county has no figure of its own (not recomputed yet, refused, not
recomputable) the device's. Integer fen throughout; yuan only in the exports' cells.
"""

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Font

from edge.domain.money import round_half_up
from edge.domain.records import CHINESE_NAMES, MONEY_FIELDS, NATIONAL_NAMES, payer_amounts
from edge.domain.spreadsheet import safe_cell
from sync.hub.model import Slot
from sync.hub.ports import HubStore
from sync.hub.services.reports import PAYERS

CHINA = ZoneInfo("Asia/Shanghai")
TOTAL, FUND = "medfee_sumamt", "hifp_pay"
TOP_ITEMS = 10  # rows of each top-items table on the page (the export has every item)
MONTHS_SHOWN = 12  # months of the fund-by-month chart, the chosen one last
# The records' created_at texts are read with a day's margin either side of the months
# wanted, then placed by their instant in China time (a text's offset may be another).
MARGIN = timedelta(days=1)
CLEARING_STATUSES = ("draft", "agreed", "paid")
NO_STATEMENT = "none"
PAYER_HEADERS = {NATIONAL_NAMES[name]: CHINESE_NAMES[name] for name in MONEY_FIELDS}
STATUS_HEADERS = {"draft": "草稿", "agreed": "已确认", "paid": "已支付", NO_STATEMENT: "无结算单"}
CHECK_HEADERS = {"agrees": "一致", "disagrees": "不一致", "unchecked": "未核对"}


def month_start(month: str) -> datetime:
    """The first instant of "YYYY-MM" in China time; ValueError when it is not a month."""
    if len(month) != 7 or month[4] != "-" or not (month[:4] + month[5:]).isdigit():
        raise ValueError(f"not a month (YYYY-MM): {month!r}")
    return datetime(int(month[:4]), int(month[5:]), 1, tzinfo=CHINA)


def next_month(month: str) -> str:
    start = month_start(month)
    return f"{start.year + start.month // 12:04d}-{start.month % 12 + 1:02d}"


def months_back(month: str, count: int) -> list[str]:
    """`count` months ending with `month`, oldest first."""
    start = month_start(month)
    index = start.year * 12 + start.month - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - count + 1, index + 1)]


def month_of(now: datetime) -> str:
    return now.astimezone(CHINA).strftime("%Y-%m")


@dataclass
class Figures:
    """Counts and net amounts (national payer names, fen) of some settlements and reversals."""

    settlements: int = 0
    reversals: int = 0
    net: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PAYERS, 0))
    needs_review: int = 0  # settlements the device flagged for the county's review
    differences: int = 0  # settlements the county's recomputation differs from or refused
    pending: int = 0  # settlements the county has not recomputed yet

    @property
    def visits(self) -> int:
        """Visits that stand: settlements less reversals."""
        return self.settlements - self.reversals

    @property
    def average(self) -> int:
        """Medical cost per visit that stands, fen, rounded half up (0 without visits)."""
        total = self.net[TOTAL]
        if self.visits <= 0 or total <= 0:
            return 0
        return round_half_up(total, self.visits)

    def share(self, payer: str) -> int:
        """`payer`'s share of the medical cost, in hundredths of a percent (basis points)."""
        total, paid = self.net[TOTAL], self.net[payer]
        if total <= 0 or paid < 0:
            return 0
        return round_half_up(paid * 10_000, total)

    def add(self, entry: "Entry") -> None:
        if entry.sign > 0:
            self.settlements += 1
            self.needs_review += entry.needs_review
            self.differences += entry.differs
            self.pending += entry.pending
        else:
            self.reversals += 1
        for payer in PAYERS:
            self.net[payer] += entry.sign * entry.amounts[payer]


@dataclass(frozen=True)
class Entry:
    """One settlement (+1) or reversal (−1) placed in its China-time day."""

    device_id: str
    day: date
    sign: int
    amounts: dict[str, int]  # national payer names
    lines: tuple[tuple[str, str, int], ...]  # (code, name, amount fen) of the visit
    needs_review: bool = False
    differs: bool = False
    pending: bool = False


@dataclass
class ItemRow:
    code: str
    name: str
    amount: int = 0  # fen, reversed visits netted
    times: int = 0  # visits it was on, reversed visits netted


@dataclass
class ClinicRow:
    township: str
    clinic_code: str
    device_ids: list[str]
    figures: Figures
    clearing: str  # draft, agreed, paid, or "none"
    clinic_check: str = "unchecked"  # the clinic's check of its statement: "agrees", "disagrees"


@dataclass
class MonthReport:
    month: str
    township: str | None  # the scope: a township, or None for the county
    clinic: str | None  # the scope narrowed to one clinic
    total: Figures
    townships: dict[str, Figures]
    clinics: list[ClinicRow]
    days: list[tuple[date, Figures]]  # every day of the month, in order
    months: list[tuple[str, Figures]]  # MONTHS_SHOWN months, the report's last
    items: list[ItemRow]  # every item used, by amount (largest first)

    @property
    def items_by_amount(self) -> list[ItemRow]:
        return self.items[:TOP_ITEMS]

    @property
    def items_by_times(self) -> list[ItemRow]:
        return sorted(self.items, key=lambda i: (-i.times, -i.amount, i.code))[:TOP_ITEMS]


def _national(amounts: dict) -> dict[str, int]:
    """{national payer name: fen} of amounts by MONEY_FIELDS (a version 1 record's
    missing payers are 0)."""
    return {NATIONAL_NAMES[name]: amounts.get(name, 0) for name in MONEY_FIELDS}


def _lines(record: dict) -> tuple[tuple[str, str, int], ...]:
    """(code, name, amount) of a settlement's lines: amounts from its result, names from
    the visit's lines (same order and codes)."""
    body = record["body"]
    names = {line.get("code"): line.get("name", "") for line in body["visit"].get("lines", [])}
    return tuple(
        (line["code"], names.get(line["code"]) or "", line.get("amount", 0))
        for line in body["result"].get("lines", [])
    )


def entries(
    store: HubStore, device_ids: Sequence[str], first_month: str, last_month: str
) -> Iterator[tuple[str, Entry]]:
    """(month, entry) of every well-formed settlement and reversal of `device_ids` made
    from `first_month` to `last_month` (China time), with the county's amounts."""
    start, end = month_start(first_month), month_start(next_month(last_month))
    rows = store.activity_between(
        device_ids, (start - MARGIN).isoformat(), (end + MARGIN).isoformat()
    )
    for record, status, hub_result in rows:
        at = datetime.fromisoformat(record["created_at"]).astimezone(CHINA)
        if not start <= at < end:
            continue
        device_id, body = record["device_id"], record["body"]
        if record["kind"] == "settlement":
            entry = Entry(
                device_id,
                at.date(),
                +1,
                _national(payer_amounts(hub_result or body["result"])),
                _lines(record),
                needs_review=bool(body.get("needs_review")),
                differs=status not in (None, "ok"),
                pending=status is None,
            )
        else:
            original = store.record_by_tx(device_id, body["reverses"])
            county = store.recomputation_of(device_id, body["reverses"])
            county_result = county[1] if county else None
            amounts = payer_amounts(county_result) if county_result else body["amounts"]
            lines = _lines(original) if original and original["kind"] == "settlement" else ()
            entry = Entry(device_id, at.date(), -1, _national(amounts), lines)
        yield at.strftime("%Y-%m"), entry


def month_report(
    store: HubStore,
    slots: Sequence[Slot],
    month: str,
    *,
    township: str | None = None,
    clinic: str | None = None,
) -> MonthReport:
    """The month's report over the clinics of `slots` (the viewer's: a coordinator's
    township), narrowed to `clinic` when given."""
    slots = [s for s in slots if clinic is None or s.clinic_code == clinic]
    clinic_of = {s.device_id: (s.township, s.clinic_code) for s in slots if s.device_id}
    clinics: dict[tuple[str, str], ClinicRow] = {}
    for slot in sorted(slots, key=lambda s: (s.township, s.clinic_code, s.slot_id)):
        row = clinics.setdefault(
            (slot.township, slot.clinic_code),
            ClinicRow(slot.township, slot.clinic_code, [], Figures(), NO_STATEMENT),
        )
        if slot.device_id:
            row.device_ids.append(slot.device_id)
    first = month_start(month)
    days = [(first + timedelta(days=n)).date() for n in range(31)]
    days = [d for d in days if d.month == first.month]
    by_day = {d: Figures() for d in days}
    months = months_back(month, MONTHS_SHOWN)
    by_month = {m: Figures() for m in months}
    total, townships = Figures(), {key[0]: Figures() for key in clinics}
    items: dict[str, ItemRow] = {}
    for entry_month, entry in entries(store, sorted(clinic_of), months[0], month):
        by_month[entry_month].add(entry)
        if entry_month != month:
            continue
        place = clinic_of[entry.device_id]
        for figures in (total, townships[place[0]], clinics[place].figures, by_day[entry.day]):
            figures.add(entry)
        for code, name, amount in entry.lines:
            item = items.setdefault(code, ItemRow(code, name))
            item.name = item.name or name
            item.amount += entry.sign * amount
            item.times += entry.sign
    codes = sorted({code for _, code in clinics})
    statuses = store.statement_statuses(month, codes)
    checks = store.statement_checks(month, codes)
    for (_, code), row in clinics.items():
        status = statuses.get(code)
        row.clearing = status if status in CLEARING_STATUSES else NO_STATEMENT
        if code in checks:
            row.clinic_check = "agrees" if checks[code] else "disagrees"
    return MonthReport(
        month=month,
        township=township,
        clinic=clinic,
        total=total,
        townships=dict(sorted(townships.items())),
        clinics=list(clinics.values()),
        days=[(d, by_day[d]) for d in days],
        months=[(m, by_month[m]) for m in months],
        items=sorted(
            (i for i in items.values() if i.times or i.amount),
            key=lambda i: (-i.amount, -i.times, i.code),
        ),
    )


# ---- the tables, for CSV and .xlsx ------------------------------------------------------
#
# Headers in Chinese (the county office's), the payers also by their national names.
# Column kinds: "text", "count", "fen" (written as yuan with two decimals), "percent"
# (basis points, written as a percentage with two decimals).

Column = tuple[str, str]
Table = tuple[str, list[Column], list[list[object]]]

PAYER_COLUMNS: list[Column] = [(f"{PAYER_HEADERS[p]} {p}", "fen") for p in PAYERS]
FIGURE_COLUMNS: list[Column] = [
    ("结算笔数", "count"),
    ("冲正笔数", "count"),
    ("就诊人次", "count"),
    *PAYER_COLUMNS,
    ("次均费用", "fen"),
    ("统筹基金占比", "percent"),
    ("待审核笔数", "count"),
    ("对账差异笔数", "count"),
    ("待重算笔数", "count"),
]


def _figure_cells(f: Figures) -> list[object]:
    return [
        f.settlements,
        f.reversals,
        f.visits,
        *(f.net[p] for p in PAYERS),
        f.average,
        f.share(FUND),
        f.needs_review,
        f.differences,
        f.pending,
    ]


def tables(report: MonthReport) -> dict[str, Table]:
    """The report's tables by export name: (sheet title, columns, rows)."""
    return {
        "clinics": (
            "卫生室",
            [
                ("月份", "text"),
                ("乡镇", "text"),
                ("卫生室编码", "text"),
                *FIGURE_COLUMNS,
                ("清算状态", "text"),
                ("卫生室核对", "text"),
            ],
            [
                [
                    report.month,
                    row.township,
                    row.clinic_code,
                    *_figure_cells(row.figures),
                    STATUS_HEADERS[row.clearing],
                    CHECK_HEADERS[row.clinic_check],
                ]
                for row in report.clinics
            ],
        ),
        "townships": (
            "乡镇",
            [("月份", "text"), ("乡镇", "text"), *FIGURE_COLUMNS],
            [
                [report.month, name, *_figure_cells(figures)]
                for name, figures in report.townships.items()
            ]
            + [[report.month, "合计", *_figure_cells(report.total)]],
        ),
        "days": (
            "每日",
            [("日期", "text"), *FIGURE_COLUMNS],
            [[day.isoformat(), *_figure_cells(figures)] for day, figures in report.days],
        ),
        "items": (
            "项目",
            [("项目编码", "text"), ("项目名称", "text"), ("金额", "fen"), ("使用次数", "count")],
            [[item.code, item.name, item.amount, item.times] for item in report.items],
        ),
    }


def yuan_cell(fen: int) -> str:
    """1234 fen as "12.34": yuan with two decimals, no sign of currency, for a cell."""
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}{yuan}.{cents:02d}"


def _csv_value(kind: str, value: object) -> object:
    if kind == "fen":
        return yuan_cell(value)  # type: ignore[arg-type]
    if kind == "percent":
        return yuan_cell(value) + "%"  # type: ignore[arg-type]  # basis points: same digits
    return safe_cell(value)  # text from devices and the county: never a formula


def table_csv(table: Table) -> str:
    _, columns, rows = table
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([header for header, _ in columns])
    for row in rows:
        writer.writerow([_csv_value(kind, v) for (_, kind), v in zip(columns, row, strict=True)])
    return out.getvalue()


def tables_xlsx(sheets: Iterable[Table]) -> bytes:
    """A workbook with a sheet per table: amounts as numbers in yuan shown with two
    decimals, shares as percentages, headers bold, texts never formulas."""
    book = Workbook()
    book.remove(book.active)
    for title, columns, rows in sheets:
        sheet = book.create_sheet(title)
        sheet.append([header for header, _ in columns])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in rows:
            sheet.append(
                [
                    Decimal(v) / 100 if kind == "fen"  # type: ignore[arg-type]
                    else Decimal(v) / 10_000 if kind == "percent"  # type: ignore[arg-type]
                    else safe_cell(v)
                    for (_, kind), v in zip(columns, row, strict=True)
                ]
            )  # fmt: skip
        for index, (header, kind) in enumerate(columns, start=1):
            letter = sheet.cell(row=1, column=index).column_letter
            sheet.column_dimensions[letter].width = max(10, len(header) * 2 + 2)
            if kind in ("fen", "percent"):
                for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                    cell.number_format = "#,##0.00" if kind == "fen" else "0.00%"
        sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
