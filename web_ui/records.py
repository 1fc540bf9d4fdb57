"""Today's settlements: search, detail with verification, reversal, receipts (view,
print, QR) and the daily close (日结)."""

import io

import segno
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from drivers.printer import PrinterError
from drivers.receipt import ReceiptError, layout_receipt, receipt_escpos, receipt_qr_payload
from edge import services
from edge.domain.model import Rejection
from web_ui import messages, presenters, queries
from web_ui.auth import now, require
from web_ui.context import get_store

bp = Blueprint("records", __name__)
SETTLERS = ("doctor", "tester")
READERS = ("doctor", "tester", "coordinator")
PAPER = {"58": (32, 384), "80": (48, 576)}  # paper width mm -> (text columns, dots)
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
    for row in rows:
        record, body = row.record, row.record["body"]
        amounts = body["result"] if record["kind"] == "settlement" else body["amounts"]
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
    return render_template("records.html", rows=shown, query=query, day=day)


def _family_holder_text(store, record: dict) -> str:
    holder = services.family_account_holder_of(store, record)
    return presenters.family_holder_text(holder, queries.person_name(store, holder or ""))


@bp.get("/records/<tx_id>")
@require(*READERS)
def detail(tx_id: str):
    store = get_store()
    record = _record_or_404(tx_id)
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
    )


@bp.get("/receipt/<tx_id>")
@require(*READERS)
def receipt(tx_id: str):
    """The receipt on screen: the split at once; the paper layout (whose QR code takes a
    while to fit) is fetched by the page from `receipt_text`."""
    record = _record_or_404(tx_id)
    if record["kind"] not in ("settlement", "reversal", "daily_close"):
        return redirect(url_for("records.detail", tx_id=tx_id))
    body = record["body"]
    view = None
    if record["kind"] == "settlement":
        view = presenters.settlement_view(
            body["result"], body["visit"]["lines"], _family_holder_text(get_store(), record)
        )
    return render_template(
        "receipt.html",
        record=record,
        view=view,
        review=presenters.review_messages(body.get("needs_review", [])),
        show_qr=request.args.get("qr") == "1",
        can_print=bool(current_app.config["PRINTER"]),
    )


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


@bp.post("/receipt/<tx_id>/print")
@require(*READERS)
def print_receipt(tx_id: str):
    record = _record_or_404(tx_id)
    try:
        data = receipt_escpos(_layout(record), paper_dots=PAPER[current_app.config["PAPER"]][1])
        status = current_app.extensions["clinic_hardware"].print_bytes(data)
    except PrinterError as error:
        flash(
            _(
                "Not printed: %(message)s. The settlement is saved; fix the printer and"
                " print again.",
                message=messages.localized(error),
            )
            + f" [{error.code}]",
            "error",
        )
    except ReceiptError as error:
        flash(str(error), "error")
    else:
        flash(_("Receipt printed."), "info")
        if status is not None and status.paper_near_end:
            flash(_("The printer's paper is running out."), "info")
    target = request.form.get("next", "")
    if not target.startswith("/") or target.startswith("//"):
        target = url_for("records.receipt", tx_id=tx_id)
    return redirect(target)


# ---- daily close ------------------------------------------------------------------------------


@bp.get("/close")
@require(*SETTLERS)
def close_page():
    store = get_store()
    last = queries.last_close(store)
    since = list(store.records(after_seq=last["seq"] if last else 0))
    count = sum(r["kind"] == "settlement" for r in since)
    reversals = sum(r["kind"] == "reversal" for r in since)
    return render_template("close.html", last=last, count=count, reversals=reversals)


@bp.post("/close")
@require(*SETTLERS)
def close_day():
    store = get_store()
    recorded = services.close_day(
        store,
        services.load_identity(store, current_app.config["DATA_DIR"]),
        operator=g.operator.operator_id,
        now=now(),
    )
    return redirect(url_for("records.close_report", tx_id=recorded.record["tx_id"]))


@bp.get("/close/<tx_id>")
@require(*READERS)
def close_report(tx_id: str):
    from edge.domain.reports import daily_close_report

    record = _record_or_404(tx_id)
    if record["kind"] != "daily_close":
        from flask import abort

        abort(404)
    return render_template(
        "close_report.html",
        record=record,
        report=daily_close_report(record),
        can_print=bool(current_app.config["PRINTER"]),
    )
