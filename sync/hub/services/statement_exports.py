"""A clearing statement as the county office opens it: CSV and `.xlsx` (openpyxl), with
Chinese headers, amounts in yuan with two decimals, and every text cell made safe from
spreadsheet formulas (`edge.domain.spreadsheet.safe_cell`). The signed JSON document is
the statement; these are its printouts.
"""

import csv
import io
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.styles import Font

from edge.domain.records import CHINESE_NAMES, MONEY_FIELDS, NATIONAL_NAMES
from edge.domain.spreadsheet import safe_cell
from sync.statements import PAYERS

PAYER_HEADERS = {NATIONAL_NAMES[name]: CHINESE_NAMES[name] for name in MONEY_FIELDS}
KIND_NAMES = {"settlement": "结算", "reversal": "冲正"}
STATUS_NAMES = {"draft": "草稿", "agreed": "已确认", "paid": "已支付"}
COUNTY_STATUS_NAMES = {
    "ok": "一致",
    "differs": "有差异",
    "not_recomputable": "县级无法核算（按设备金额）",
    "refused": "县级拒绝（按设备金额）",
    "pending": "县级尚未核算（按设备金额）",
}
CHANGE_NAMES = {"added": "新增", "removed": "删除", "changed": "金额变更"}
DETAIL_HEADERS = (
    "交易流水号",
    "设备",
    "序号",
    "类型",
    "结算时间",
    "人员编号",
    "险种",
    "就诊类型",
    *(PAYER_HEADERS[p] for p in PAYERS),
    "县级核算",
    "设备金额（与县级不同时）",
    "冲正原交易",
)
YUAN_FORMAT = "#,##0.00"


def yuan_text(fen: int) -> str:
    """12.34 for 1234 fen, -0.50 for -50: two decimals, no currency sign."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"


def _yuan(fen: int) -> Decimal:
    """Exact yuan for a spreadsheet cell (shown with two decimals)."""
    return Decimal(fen) / 100


def device_amounts_text(amounts: dict | None) -> str:
    """The device's own figures where they differ from the county's, in words."""
    if not amounts:
        return ""
    return "; ".join(f"{PAYER_HEADERS[p]} {yuan_text(amounts.get(p, 0))}" for p in PAYERS)


def _detail_cells(row: dict, money) -> list:
    return [
        safe_cell(row["tx_id"]),
        safe_cell(row["device_id"]),
        row["seq"],
        KIND_NAMES.get(row["kind"], safe_cell(row["kind"])),
        safe_cell(row["setl_time"]),
        safe_cell(row["psn_no"] or ""),
        safe_cell(row["insutype"] or ""),
        safe_cell(row["med_type"] or ""),
        *(money(row[p]) for p in PAYERS),
        COUNTY_STATUS_NAMES.get(row["county_status"], safe_cell(row["county_status"])),
        device_amounts_text(row["device_amounts"]),
        safe_cell(row["reversal_of"] or ""),
    ]


def _summary_rows(statement: dict) -> list[tuple[str, object]]:
    total, payment = statement["total"], statement.get("payment") or {}
    return [
        ("县", safe_cell(statement.get("county", ""))),
        ("卫生室", safe_cell(statement["clinic"])),
        ("月份", statement["month"]),
        ("版本", statement["revision"]),
        ("状态", STATUS_NAMES.get(statement["status"], statement["status"])),
        ("支付凭证号", safe_cell(payment.get("reference") or "")),
        ("支付日期", payment.get("paid_on") or ""),
        ("生成时间", statement["built_at"]),
        ("结算笔数（净）", total["count"]),
        ("结算笔数", total["settlement_count"]),
        ("冲正笔数", total["reversal_count"]),
    ]


def statement_csv(statement: dict) -> str:
    """The detail, one row per settlement and reversal, then the total row (UTF-8; the
    caller adds the BOM spreadsheets want)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(DETAIL_HEADERS)
    for row in statement["detail"]:
        writer.writerow(_detail_cells(row, yuan_text))
    total = statement["total"]
    writer.writerow(
        ["合计", "", total["count"], "", "", "", "", "", *(yuan_text(total[p]) for p in PAYERS)]
    )
    return out.getvalue()


def statement_xlsx(statement: dict) -> bytes:
    """Three sheets: 汇总 (the statement and its total by payer), 明细 (the detail) and
    更正 (what changed since the previous revision)."""
    book = Workbook()
    bold = Font(bold=True)
    summary = book.active
    summary.title = "汇总"
    summary.append([f"{statement['month']} 卫生室结算单 {statement['clinic']}"])
    summary["A1"].font = bold
    for label, value in _summary_rows(statement):
        summary.append([label, value])
    summary.append([])
    summary.append(["支付方", "金额（元）"])
    for payer in PAYERS:
        summary.append([PAYER_HEADERS[payer], _yuan(statement["total"][payer])])
        summary.cell(summary.max_row, 2).number_format = YUAN_FORMAT
    summary.column_dimensions["A"].width = 18
    summary.column_dimensions["B"].width = 28

    detail = book.create_sheet("明细")
    detail.append(list(DETAIL_HEADERS))
    for row in statement["detail"]:
        detail.append(_detail_cells(row, _yuan))
    total = statement["total"]
    detail.append(
        ["合计", "", total["count"], "", "", "", "", ""] + [_yuan(total[p]) for p in PAYERS]
    )
    first_payer = 9  # column I
    for cells in detail.iter_rows(
        min_row=2, min_col=first_payer, max_col=first_payer + len(PAYERS) - 1
    ):
        for cell in cells:
            cell.number_format = YUAN_FORMAT
    for cell in detail[1]:
        cell.font = bold
    detail.freeze_panes = "A2"

    changes = book.create_sheet("更正")
    changes.append(["交易流水号", "变更", *(f"原{PAYER_HEADERS[p]}" for p in PAYERS),
                    *(f"现{PAYER_HEADERS[p]}" for p in PAYERS)])  # fmt: skip
    for change in statement.get("changes", []):
        before, after = change.get("before") or {}, change.get("after") or {}
        changes.append(
            [safe_cell(change["tx_id"]), CHANGE_NAMES.get(change["what"], change["what"])]
            + [_yuan(before[p]) if p in before else None for p in PAYERS]
            + [_yuan(after[p]) if p in after else None for p in PAYERS]
        )
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


CLEARING_HEADERS = (
    "乡镇", "卫生室", "月份", "版本", "状态", "支付凭证号", "支付日期", "结算笔数（净）",
    *(PAYER_HEADERS[p] for p in PAYERS), "县级核算差异笔数", "卫生室对账",
)  # fmt: skip


def _agree_text(value: bool | None) -> str:
    return "未上报" if value is None else "一致" if value else "不一致"


def clearing_csv(rows: list[dict]) -> str:
    """Every clinic's statement of a month, one row each (`statements.clearing`)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CLEARING_HEADERS)
    for row in rows:
        writer.writerow(
            [
                safe_cell(row["township"]),
                safe_cell(row["clinic_code"]),
                row["month"],
                row["revision"],
                STATUS_NAMES.get(row["status"], row["status"]),
                safe_cell(row["payment_reference"] or ""),
                row["paid_on"] or "",
                row["total"]["count"],
                *(yuan_text(row["total"][p]) for p in PAYERS),
                row["differing"],
                _agree_text(row["devices_agree"]),
            ]
        )
    return out.getvalue()
