"""The month on the terminal: month-to-date figures by payer, insurance type, visit type
and operator, the signed month closes (sign, show, print), and the county's clearing
statement checked against this device's ledger."""

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from edge import services
from edge.clock import CLINIC_TZ
from edge.domain import reports
from edge.domain.clearing import CHINESE_PAYERS, PAYERS
from edge.domain.model import Rejection
from edge.domain.money import format_yuan
from edge.domain.records import MONEY_FIELDS, MONTH, grouped_totals, previous_month
from web_ui import messages, syncing
from web_ui.auth import now, require
from web_ui.context import get_store
from web_ui.records import READERS, SETTLERS, _print, premiums_totals

bp = Blueprint("month", __name__)
# The county's statement's status (docs/statements.md).
STATUSES = {"draft": _l("Draft"), "agreed": _l("Agreed by the county"), "paid": _l("Paid")}


def _month_arg() -> str:
    current = now().astimezone(CLINIC_TZ).strftime("%Y-%m")
    month = request.values.get("month") or current
    if not MONTH.fullmatch(month):
        abort(404)
    return month


def _operators(store, records: list[dict]) -> list[dict]:
    totals = grouped_totals(records, lambda r: r["body"].get("operator", ""))
    rows = []
    for operator_id, group in totals.items():
        found = store.active_operator(operator_id)
        rows.append(
            {
                "id": operator_id,
                "name": found[0] if found else operator_id,
                "count": group["count"],
                "total": format_yuan(group["total"]),
                "fund": format_yuan(group["fund"]),
                "cash": format_yuan(group["cash"]),
            }
        )
    return rows


def _groups(groups: dict, labels: dict) -> list[dict]:
    return [
        {
            "label": labels.get(name, name),
            "count": group["count"],
            "total": format_yuan(group["total"]),
            "cash": format_yuan(group["cash"]),
        }
        for name, group in groups.items()
    ]


def _check_view(store, check: dict | None) -> dict | None:
    """The stored statement check for the page: agreement, and each differing settlement
    with both sides' figures and the difference, in yuan."""
    if check is None:
        return None
    comparison = check["comparison"]
    seqs = comparison.get("seqs", {})
    rows = []
    for d in comparison["differences"]:
        rows.append(
            {
                "seq": seqs.get(d["tx_id"]),
                "tx_id": d["tx_id"],
                "name": _patient(store, d["tx_id"]),
                "payer": CHINESE_PAYERS.get(d["field"], d["field"]),
                "field": d["field"],
                "device": format_yuan(d["device"]),
                "county": format_yuan(d["county"]),
                "by": format_yuan(d["county"] - d["device"]),
            }
        )
    return {
        "revision": comparison["revision"],
        "status": str(STATUSES.get(comparison["status"], comparison["status"])),
        "paid": _payment(check["statement"].get("payment")),
        "agrees": comparison["agrees"],
        "count": comparison["count"],
        "differences": rows,
        "missing_at_county": [
            {"tx_id": t, "seq": seqs.get(t), "name": _patient(store, t)}
            for t in comparison["missing_at_county"]
        ],
        "missing_on_device": comparison["missing_on_device"],
        "totals": [
            {
                "label": CHINESE_PAYERS[p],
                "device": format_yuan(comparison["device_total"][p]),
                "county": format_yuan(comparison["county_total"][p]),
                "same": comparison["device_total"][p] == comparison["county_total"][p],
            }
            for p in PAYERS
            if comparison["device_total"][p] or comparison["county_total"][p]
        ],
        "checked_at": reports.chinese_time(check["checked_at"]),
        "reported": check["reported_at"] is not None,
    }


def _payment(payment: object) -> str:
    if not isinstance(payment, dict):
        return ""
    return _("Paid on %(day)s, reference %(reference)s.", day=payment.get("paid_on", ""),
             reference=payment.get("reference", ""))  # fmt: skip


def _patient(store, tx_id: str) -> str:
    record = store.record_by_tx(tx_id)
    if record is None:
        return ""
    entry = store.insured_person(record["body"].get("insured_id", ""), with_accumulators=False)
    return entry.name if entry else record["body"].get("insured_id", "")


@bp.get("/month")
@require(*READERS)
def month_page():
    store = get_store()
    month = _month_arg()
    current = now().astimezone(CLINIC_TZ).strftime("%Y-%m")
    records = services.month_records(store, month)
    preview = services.month_preview(store, month)
    closes = services.closes_of_month(store, month)
    net = preview["net"]
    return render_template(
        "month.html",
        month=month,
        month_label=reports.chinese_period({"month": month}),
        previous=previous_month(month),
        following=_next_month(month) if month < current else None,
        ended=month < current,
        settlements=preview["settlements"]["count"],
        reversals=preview["reversals"]["count"],
        net=format_yuan(net["total"]),
        by_payer=[
            {"label": reports.PAYERS[n], "amount": format_yuan(net[n])}
            for n in MONEY_FIELDS
            if n != "total" and (net[n] or n == "cash")
        ],
        by_insurance=_groups(preview["by_insurance"], reports.PERIOD_INSURANCE),
        by_visit_type=_groups(preview["by_visit_type"], reports.PERIOD_VISIT_TYPES),
        operators=_operators(store, records),
        needs_review=preview["needs_review"],
        premiums=premiums_totals(preview.get("premiums")),
        closes=[
            {
                "seq": c["seq"],
                "tx_id": c["tx_id"],
                "time": reports.chinese_time(c["created_at"]),
                "net": format_yuan(c["body"]["net"]["total"]),
            }
            for c in closes
        ],
        check=_check_view(store, store.statement_check(month)),
        can_close=month < current and not closes and g.operator.role in SETTLERS,
        can_print=bool(current_app.config["PRINTER"]),
        sync_available=syncing.available(),
    )


def _next_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year + 1}-01" if number == 12 else f"{year}-{number + 1:02d}"


@bp.post("/month/close")
@require(*SETTLERS)
def close_month():
    store = get_store()
    month = _month_arg()
    try:
        services.close_month(
            store,
            services.load_identity(store, current_app.config["DATA_DIR"]),
            operator=g.operator.operator_id,
            now=now(),
            month=month,
        )
    except Rejection as error:
        flash(str(messages.REJECTIONS.get(error.code, error.message)), "error")
    else:
        flash(_("The month close is signed."), "info")
    return redirect(url_for("month.month_page", month=month))


@bp.post("/month/print/<tx_id>")
@require(*READERS)
def print_close(tx_id: str):
    record = get_store().record_by_tx(tx_id)
    if record is None or record["kind"] not in ("monthly_close", "yearly_close"):
        abort(404)
    for category, message in _print(record)[1]:
        flash(message, category)
    return redirect(url_for("month.month_page", month=record["body"].get("month")))


@bp.post("/month/statement")
@require(*READERS)
def check_statement():
    store = get_store()
    month = _month_arg()
    try:
        check = syncing.check_statement(
            store, services.load_identity(store, current_app.config["DATA_DIR"]), month, now()
        )
    except syncing.SyncUnavailable:
        flash(_("Sync is not available in this build."), "error")
    except Exception as error:  # a SyncError: the hub, the network, a bad statement
        if not hasattr(error, "message_zh"):
            raise
        locale = get_locale()
        flash(syncing.error_message(error, locale is not None and locale.language == "en"), "error")
    else:
        if check is None:
            flash(_("The county has no statement for this month yet."), "info")
        elif check["comparison"]["agrees"]:
            flash(_("The county's statement agrees with this terminal."), "info")
        else:
            flash(_("The county's statement does not agree with this terminal."), "error")
    return redirect(url_for("month.month_page", month=month))
