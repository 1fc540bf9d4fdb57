"""Today's settlements: search, detail with verification, reversal, receipts (view,
print, QR) and the daily close (日结)."""

import io
from datetime import datetime, timedelta

import segno
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from drivers.printer import PrinterError
from drivers.receipt import (
    ReceiptError,
    close_report_of,
    layout_receipt,
    receipt_escpos,
    receipt_facts,
    receipt_qr_payload,
)
from edge import services
from edge.adapters.web_security import safe_local_path
from edge.domain import reports
from edge.domain.model import Rejection
from edge.domain.money import format_yuan
from edge.domain.records import MONEY_FIELDS, payer_amounts
from web_ui import messages, presenters, queries
from web_ui.auth import now, require
from web_ui.context import get_store

bp = Blueprint("records", __name__)
SETTLERS = ("doctor", "tester")
READERS = ("doctor", "tester", "coordinator")
PAPER = {"58": (32, 384), "80": (48, 576)}  # paper width mm -> (text columns, dots)
JUST_CONFIRMED = timedelta(minutes=2)  # a settlement this recent was just confirmed
# Preset reasons for a reversal, tapped rather than typed: the label shown (translated) and
# the words the signed record keeps (Chinese, the county's language, whatever the screen's).
REVERSAL_REASONS = {
    "entry_error": (_l("Entry error"), "录入错误"),
    "returned": (_l("Patient returned the medicine"), "患者退药"),
    "duplicate": (_l("Settled twice"), "重复结算"),
    "wrong_patient": (_l("Wrong patient"), "患者信息错误"),
    "other": (_l("Other"), "其他"),
}
MAX_REASON = 200


def _record_or_404(tx_id: str) -> dict:
    record = get_store().record_by_tx(tx_id)
    if record is None:
        from flask import abort

        abort(404)
    return record


@bp.get("/records")
@require(*READERS)
def today():
    store = get_store()
    query = request.args.get("q", "")[:64]
    day = now().date().isoformat()
    rows = queries.records_of_day(store, day, query)
    shown = []
    totals = dict.fromkeys(MONEY_FIELDS, 0)
    for row in rows:
        record, body = row.record, row.record["body"]
        amounts = body["result"] if record["kind"] == "settlement" else body["amounts"]
        sign = -1 if record["kind"] == "reversal" else 1
        for name, fen in payer_amounts_of(record).items():
            totals[name] += sign * fen
        shown.append(
            {
                "tx_id": record["tx_id"],
                "seq": record["seq"],
                "kind": str(messages.KINDS[record["kind"]]),
                "reversal": record["kind"] == "reversal",
                "time": record["created_at"][11:16],
                "name": row.name,
                "insured_id": body["insured_id"],
                "split": presenters.split(amounts),
                "reversed": row.reversed_by is not None,
                "needs_review": bool(body.get("needs_review")),
            }
        )
    day_totals = {
        "count": sum(not r["reversal"] for r in shown),
        "reversals": sum(r["reversal"] for r in shown),
        **{name: format_yuan(fen) for name, fen in totals.items()},
    }
    return render_template(
        "records.html",
        rows=shown,
        query=query,
        day=reports.chinese_day(day),
        totals=day_totals if shown else None,
    )


def payer_amounts_of(record: dict) -> dict[str, int]:
    """A settlement's or a reversal's amounts per payer (MONEY_FIELDS), unsigned."""
    if record["kind"] == "settlement":
        return payer_amounts(record["body"]["result"])
    return {name: record["body"]["amounts"].get(name, 0) for name in MONEY_FIELDS}


def _family_holder_text(store, record: dict) -> str:
    holder = services.family_account_holder_of(store, record)
    return presenters.family_holder_text(holder, queries.person_name(store, holder or ""))


@bp.get("/records/<tx_id>")
@require(*READERS)
def detail(tx_id: str):
    store = get_store()
    record = _record_or_404(tx_id)
    if record["kind"] in SERVICE_PAGES:
        return redirect(url_for(SERVICE_PAGES[record["kind"]], tx_id=tx_id))
    body = record["body"]
    genuine = queries.record_is_genuine(store, record, services.public_key_of(store))
    view = None
    holder = _family_holder_text(store, record)
    if record["kind"] == "settlement":
        view = presenters.settlement_view(body["result"], body["visit"]["lines"], holder)
    reversed_by = store.reversal_of(tx_id) if record["kind"] == "settlement" else None
    reversal = None
    if record["kind"] == "reversal":
        reversal = {
            "split": presenters.split(body["amounts"]),
            "payers": presenters.amount_payers(body["amounts"], holder),
        }
    visit_type = body.get("visit", {}).get("visit_type")
    return render_template(
        "record.html",
        record=record,
        body=body,
        kind=str(messages.KINDS.get(record["kind"], record["kind"])),
        name=queries.person_name(store, body.get("insured_id", "")),
        view=view,
        genuine=genuine,
        reversed_by=reversed_by,
        review=presenters.review_messages(body.get("needs_review", [])),
        visit_type=messages.visit_type_label(visit_type) if visit_type else "",
        diagnoses=queries.diagnosis_names(store, body.get("visit", {}).get("diagnoses", [])),
        reversal=reversal,
        reasons=[(code, str(label)) for code, (label, _words) in REVERSAL_REASONS.items()],
        operator_name=_operator_name(store, body.get("operator", "")),
    )


def _operator_name(store, operator_id: str) -> str:
    """The operator's name (an id like `doc01` means nothing to a doctor)."""
    row = store.db.execute(
        "SELECT name FROM operator WHERE operator_id = ?", [operator_id]
    ).fetchone()
    return row[0] if row else operator_id


def reversal_reason(preset: str, note: str) -> str | None:
    """The reason the record keeps: the preset's words, and the note when one is given
    (a note alone is a reason too); None when neither is given."""
    note = " ".join(note.split())
    words = REVERSAL_REASONS[preset][1] if preset in REVERSAL_REASONS else ""
    if words and note:
        return f"{words}：{note}"[:MAX_REASON]
    return (words or note)[:MAX_REASON] or None


@bp.post("/records/<tx_id>/reverse")
@require(*SETTLERS)
def reverse(tx_id: str):
    store = get_store()
    reason = reversal_reason(request.form.get("preset", ""), request.form.get("reason", ""))
    if not reason:
        flash(_("Choose a reason for the reversal."), "error")
        return redirect(url_for("records.detail", tx_id=tx_id))
    try:
        recorded = services.reverse_settlement(
            store,
            services.load_identity(store, current_app.config["DATA_DIR"]),
            tx_id=tx_id,
            reason=reason,
            operator=g.operator.operator_id,
            now=now(),
        )
    except Rejection as rejection:
        flash(str(messages.REJECTIONS.get(rejection.code, rejection.message)), "error")
        return redirect(url_for("records.detail", tx_id=tx_id))
    flash(_("The settlement was reversed."), "info")
    return redirect(url_for("records.receipt", tx_id=recorded.record["tx_id"]))


# ---- receipts -------------------------------------------------------------------------------


def _layout(record: dict):
    store = get_store()
    operator = store.active_operator(record["body"].get("operator", ""))
    holder = services.family_account_holder_of(store, record)
    return layout_receipt(
        record,
        clinic=current_app.config["CLINIC_NAME"],
        operator_name=operator[0] if operator else None,
        width=PAPER[current_app.config["PAPER"]][0],
        family_holder_name=queries.person_name(store, holder) if holder else None,
        facts=receipt_facts(
            store, record, diagnosis_names=lambda codes: queries.diagnosis_names(store, codes)
        ),
    )


PRINTED = {
    "settlement": _l("Settlement form printed."),
    "reversal": _l("Reversal form printed."),
    "daily_close": _l("Daily close report printed."),
    "monthly_close": _l("Month close report printed."),
    "yearly_close": _l("Year close report printed."),
    "premium": _l("Premium receipt printed."),
    "premium_reversal": _l("Premium reversal printed."),
}
# The service point's records have their own pages (web_ui/service_point.py).
SERVICE_PAGES = {
    "premium": "service.premium_receipt",
    "premium_reversal": "service.premium_receipt",
    "service_request": "service.request_page",
}


@bp.get("/receipt/<tx_id>")
@require(*READERS)
def receipt(tx_id: str):
    """The receipt on screen: the split at once; the paper layout (whose QR code takes a
    while to fit) is fetched by the page from `receipt_text`."""
    record = _record_or_404(tx_id)
    if record["kind"] in SERVICE_PAGES:
        return redirect(url_for(SERVICE_PAGES[record["kind"]], tx_id=tx_id))
    if record["kind"] not in ("settlement", "reversal", "daily_close"):
        return redirect(url_for("records.detail", tx_id=tx_id))
    body = record["body"]
    view = None
    if record["kind"] == "settlement":
        view = presenters.settlement_view(
            body["result"],
            body["visit"]["lines"],
            _family_holder_text(get_store(), record),
            _item_classes(record),
        )
    can_print = bool(current_app.config["PRINTER"])
    return render_template(
        "receipt.html",
        record=record,
        view=view,
        review=presenters.review_messages(body.get("needs_review", [])),
        show_qr=request.args.get("qr") == "1",
        can_print=can_print,
        auto_print=can_print and _just_confirmed(record),
    )


def _just_confirmed(record: dict) -> bool:
    """This settlement's form is to print by itself (`PRINT_RECEIPT_AFTER_SETTLE`): the
    settle page sent the doctor here (`?print=auto`), or this is the settlement the
    signed-in operator confirmed a moment ago and its form has not printed by itself yet
    (the settle page opens its receipt right after confirm)."""
    if record["kind"] != "settlement" or not current_app.config["PRINT_RECEIPT_AFTER_SETTLE"]:
        return False
    if request.args.get("print") == "auto":
        return True
    made = datetime.fromisoformat(record["created_at"])
    return (
        record["body"].get("operator") == g.operator.operator_id
        and timedelta(0) <= now() - made <= JUST_CONFIRMED
        and record["tx_id"] not in _auto_printed()
    )


def _auto_printed() -> dict[str, None]:
    """The settlements whose form printed by itself since the service started (the most
    recent ones: older settlements are no longer `JUST_CONFIRMED` anyway)."""
    return current_app.extensions.setdefault("clinic_auto_printed", {})


def _item_classes(record: dict) -> dict[str, str]:
    codes = [line["code"] for line in record["body"]["visit"]["lines"]]
    return {code: item.item_class for code, item in get_store().catalog_items(codes).items()}


@bp.get("/receipt/<tx_id>/text")
@require(*READERS)
def receipt_text(tx_id: str):
    """The receipt as the printer prints it, as plain text (the QR code left out)."""
    try:
        text = _layout(_record_or_404(tx_id)).text()
    except ReceiptError as error:
        return Response(str(error), status=409, mimetype="text/plain")
    lines = [line for line in text.split("\n") if not line.startswith("[QR ")]
    return Response("\n".join(lines), mimetype="text/plain")


@bp.get("/receipt/<tx_id>/qr.svg")
@require(*READERS)
def receipt_qr(tx_id: str):
    record = _record_or_404(tx_id)
    return svg_response(segno.make_qr(receipt_qr_payload(record), error="L", boost_error=False))


def svg_response(qr) -> Response:
    """A QR code as a stand-alone SVG image (white background, 4 modules of quiet zone)."""
    buffer = io.BytesIO()
    qr.save(buffer, kind="svg", scale=4, border=4, light="#fff")
    return Response(buffer.getvalue(), mimetype="image/svg+xml")


def _print(record: dict) -> tuple[bool, list[tuple[str, str]]]:
    """Print a record's form; (printed, [(category, message)]) for the operator."""
    try:
        data = receipt_escpos(_layout(record), paper_dots=PAPER[current_app.config["PAPER"]][1])
        status = current_app.extensions["clinic_hardware"].print_bytes(data)
    except PrinterError as error:
        return False, [(
            "error",
            _("Not printed: %(message)s. The settlement is saved; fix the printer and"
              " print again.", message=messages.localized(error)),
        )]  # fmt: skip
    except ReceiptError as error:
        return False, [("error", str(error))]
    shown = [("info", str(PRINTED[record["kind"]]))]
    if status is not None and status.paper_near_end:
        shown.append(("info", _("The printer's paper is running out.")))
    return True, shown


@bp.post("/receipt/<tx_id>/print")
@require(*READERS)
def print_receipt(tx_id: str):
    record = _record_or_404(tx_id)
    for category, message in _print(record)[1]:
        flash(message, category)
    target = safe_local_path(request.form.get("next"))
    return redirect(target or url_for("records.receipt", tx_id=tx_id))


@bp.post("/receipt/<tx_id>/auto-print")
@require(*SETTLERS)
def auto_print(tx_id: str):
    """Print a settlement's form once, right after it was confirmed, when the terminal
    is set to (`PRINT_RECEIPT_AFTER_SETTLE`): the receipt page calls this when the settle
    page sent it there with `?print=auto`. Printing again is the print button's job, so
    a reload or a second call prints nothing."""
    record = _record_or_404(tx_id)
    if not (current_app.config["PRINT_RECEIPT_AFTER_SETTLE"] and current_app.config["PRINTER"]):
        return jsonify({"printed": False, "reason": "off", "messages": []})
    if record["kind"] != "settlement":
        return jsonify({"printed": False, "reason": "not_a_settlement", "messages": []}), 409
    done = _auto_printed()
    if tx_id in done:
        return jsonify({"printed": False, "reason": "already", "messages": []})
    done[tx_id] = None
    while len(done) > 100:
        del done[next(iter(done))]
    printed, shown = _print(record)
    if not printed:
        done.pop(tx_id, None)
    return jsonify(
        {
            "printed": printed,
            "reason": "" if printed else "printer",
            "messages": [{"category": c, "text": m} for c, m in shown],
        }
    )


# ---- daily close ------------------------------------------------------------------------------


@bp.get("/close")
@require(*SETTLERS)
def close_page():
    """The preview: the amounts the close would sign now, before it is signed."""
    store = get_store()
    last = queries.last_close(store)
    report = close_report_of(
        store, None, now=now().isoformat(timespec="seconds"), operator=g.operator.operator_id
    )
    return render_template(
        "close.html",
        last=last,
        last_time=reports.chinese_time(last["created_at"]) if last else "",
        report=presenters_close(report),
        expected=_close_digest(report),
    )


def _close_digest(report: reports.CloseReport) -> str:
    """What the doctor saw in the preview: counts and net amounts."""
    net = ",".join(str(report.net[name]) for name in MONEY_FIELDS)
    return f"{report.settlements['count']}/{report.reversals['count']}/{net}"


@bp.post("/close")
@require(*SETTLERS)
def close_day():
    store = get_store()
    expected = request.form.get("expected", "")
    now_report = close_report_of(
        store, None, now=now().isoformat(timespec="seconds"), operator=g.operator.operator_id
    )
    if expected and expected != _close_digest(now_report):
        # something was settled or reversed since the preview: show the new amounts
        flash(_("The day changed since the preview: check the new amounts."), "error")
        return redirect(url_for("records.close_page"))
    recorded = services.close_day(
        store,
        services.load_identity(store, current_app.config["DATA_DIR"]),
        operator=g.operator.operator_id,
        now=now(),
    )
    flash(_("The daily close is signed."), "info")
    return redirect(url_for("records.close_report", tx_id=recorded.record["tx_id"]))


@bp.get("/close/<tx_id>")
@require(*READERS)
def close_report(tx_id: str):
    record = _record_or_404(tx_id)
    if record["kind"] != "daily_close":
        from flask import abort

        abort(404)
    report = presenters_close(close_report_of(get_store(), record))
    report["premiums"] = report["premiums"] or premiums_totals(record["body"].get("premiums"))
    return render_template(
        "close_report.html",
        record=record,
        report=report,
        can_print=bool(current_app.config["PRINTER"]),
    )


def presenters_close(report: reports.CloseReport) -> dict:
    """The 日结 for the page: every amount formatted, the groups and the payers."""

    def money(fen: int) -> str:
        return format_yuan(fen)

    return {
        "signed": report.signed,
        "business_day": reports.chinese_day(report.business_day),
        "time": reports.chinese_time(report.created_at),
        "operator": report.operator_name or report.operator,
        "device_id": report.device_id,
        "from_seq": report.from_seq,
        "to_seq": report.to_seq,
        "seq": report.seq,
        "transactions": [
            {
                "seq": t.seq,
                "tx_id": t.tx_id,
                "time": t.time,
                "name": t.name,
                "kind": t.kind,
                "kind_label": reports.KINDS[t.kind],
                "insurance_type": t.insurance_type,
                "visit_type": t.visit_type,
                "total": money(t.amounts["total"]),
                "cash": money(t.amounts["cash"]),
                "reverses_seq": t.reverses_seq,
                "reason": t.reason,
            }
            for t in report.transactions
        ],
        "settlements": {
            "count": report.settlements["count"],
            "total": money(report.settlements["total"]),
        },
        "reversals": {
            "count": report.reversals["count"],
            "total": money(-report.reversals["total"]),
        },
        "net": money(report.net["total"]),
        "net_fen": report.net,
        "by_insurance_type": [_group(g) for g in report.by_insurance_type],
        "by_visit_type": [_group(g) for g in report.by_visit_type],
        "by_payer": [
            {"payer": payer, "label": label, "amount": money(fen)}
            for payer, label, fen in report.by_payer
        ],
        "cash_to_hand": money(report.cash_to_hand),
        "needs_review": report.needs_review,
        "warnings": list(report.warnings),
        "hash": report.hash[:16],
        "empty": not report.transactions and not report.settlements["count"],
        "premiums": premiums_totals(getattr(report, "premiums", None)),
    }


def premiums_totals(premiums: dict | None) -> dict | None:
    """A close's premiums (docs/service-point.md), formatted; None when it has none (a close
    made before premiums were collected) or nothing was collected or reversed."""
    if not premiums or not (premiums["collected"]["count"] or premiums["reversed"]["count"]):
        return None
    return {
        "collected_count": premiums["collected"]["count"],
        "collected_persons": premiums["collected"]["persons"],
        "reversed_count": premiums["reversed"]["count"],
        **{
            f"{part}_{name}": format_yuan(premiums[part][name])
            for part in ("collected", "reversed", "net")
            for name in ("amount", "cash", "mobile", "family_account", "state_paid")
        },
    }


def _group(group: reports.Group) -> dict:
    return {
        "label": group.label,
        "settlements": group.settlements,
        "reversals": group.reversals,
        "total": format_yuan(group.total),
        "cash": format_yuan(group.cash),
    }
