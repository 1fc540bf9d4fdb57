"""The console's clearing statements (`docs/statements.md`): the month's clearing list
(every visible clinic's statement, status and totals), a clinic's statement as a
printable page (signature lines 经办人 / 审核人 / 卫生室负责人, totals, detail, what
changed since the previous revision, the devices' reconciliation with both sides'
figures), its CSV and `.xlsx`, and the status form for admins (draft → agreed → paid).

Coordinators see their township's clinics only: another township's statement is a 404,
as a device of another township is. These routes join the console's blueprint
(`sync.hub.console`) when `sync.hub.app` imports this module.
"""

from flask import Response, abort, redirect, request, url_for
from flask_babel import lazy_gettext as _l

from sync.hub.console import chosen_township, console, render, signed_in
from sync.hub.console_auth import Viewer
from sync.hub.model import HubError
from sync.hub.runtime import hub_runtime, hub_store
from sync.hub.services import statement_exports, statements
from sync.protocol import SyncError
from sync.statements import PAYERS, parse_month, previous_month

STATUS_NAMES = {"draft": _l("draft"), "agreed": _l("agreed"), "paid": _l("paid")}
COUNTY_STATUS_NAMES = {
    "ok": _l("agrees"),
    "differs": _l("differs"),
    "not_recomputable": _l("not recomputable: the device's figures"),
    "refused": _l("refused by the county: the device's figures"),
    "pending": _l("not yet recomputed: the device's figures"),
}
CHANGE_NAMES = {"added": _l("added"), "removed": _l("removed"), "changed": _l("amounts changed")}
KIND_NAMES = {"settlement": _l("settlement"), "reversal": _l("reversal")}
EVENT_NAMES = {
    "built": _l("built"),
    "revised": _l("revised"),
    "agreed": _l("agreed"),
    "paid": _l("paid"),
    "device_agrees": _l("the clinic agrees"),
    "device_disagrees": _l("the clinic disagrees"),
}
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _month(value: str | None) -> str:
    """The month asked for (`YYYY-MM`), by default the last one that is over."""
    if not value:
        return previous_month(hub_runtime().now().date())
    try:
        return parse_month(value)
    except SyncError:
        abort(404)


def _visible_clinic(viewer: Viewer, clinic_code: str) -> str:
    """The clinic's township, when this viewer may see it; 404 otherwise (an unknown
    clinic and another township's look the same)."""
    try:
        township = statements.clinic_township(hub_store(), clinic_code)
    except HubError:
        abort(404)
    if not viewer.may_see(township):
        abort(404)
    return township


def _statement_page(viewer: Viewer, clinic_code: str, month: str, error: str | None = None):
    township = _visible_clinic(viewer, clinic_code)
    store, runtime = hub_store(), hub_runtime()
    try:
        revision = statements.refresh(store, clinic_code, month, runtime.now())
    except HubError as refused:
        return render("error.html", message=str(refused)), 400
    statement = statements.signed(store, revision, runtime.county_key)
    return render(
        "statement.html",
        statement=statement["statement"],
        signature=statement["signature"],
        revision=revision,
        township=township,
        events=store.statement_events(clinic_code, month),
        reports=statements.reconciliation_view(store, revision),
        payers=PAYERS,
        status_names=STATUS_NAMES,
        county_status_names=COUNTY_STATUS_NAMES,
        change_names=CHANGE_NAMES,
        record_kind_names=KIND_NAMES,
        event_names=EVENT_NAMES,
        error=error,
    ), 400 if error else 200


@console.get("/clearing")
@signed_in()
def clearing(viewer: Viewer):
    """Every visible clinic's statement of a month."""
    month = _month(request.args.get("month"))
    township = chosen_township(viewer)
    try:
        rows = statements.clearing(hub_store(), month, hub_runtime().now(), township)
    except HubError as refused:
        return render("error.html", message=str(refused)), 400
    totals = {p: sum(r["total"][p] for r in rows) for p in PAYERS}
    return render(
        "clearing.html",
        rows=rows,
        month=month,
        township=township,
        townships=hub_store().townships() if viewer.is_admin else [],
        totals=totals,
        payers=PAYERS,
        status_names=STATUS_NAMES,
    )


@console.get("/clearing/<month>.csv")
@signed_in()
def clearing_csv(viewer: Viewer, month: str):
    township = chosen_township(viewer)
    try:
        rows = statements.clearing(hub_store(), _month(month), hub_runtime().now(), township)
    except HubError:
        abort(404)
    return _download(
        "\ufeff" + statement_exports.clearing_csv(rows), "text/csv", f"clearing-{month}.csv"
    )


@console.get("/statements/<clinic_code>/<month>")
@signed_in()
def statement(viewer: Viewer, clinic_code: str, month: str):
    return _statement_page(viewer, clinic_code, _month(month))


@console.get("/statements/<clinic_code>/<month>/statement.<fmt>")
@signed_in()
def statement_file(viewer: Viewer, clinic_code: str, month: str, fmt: str):
    if fmt not in ("csv", "xlsx"):
        abort(404)
    _visible_clinic(viewer, clinic_code)
    store, runtime = hub_store(), hub_runtime()
    try:
        revision = statements.refresh(store, clinic_code, _month(month), runtime.now())
    except HubError:
        abort(404)
    document = statements.signed(store, revision, runtime.county_key)["statement"]
    name = f"statement-{clinic_code}-{month}-r{revision.revision}.{fmt}"
    if fmt == "csv":
        return _download("\ufeff" + statement_exports.statement_csv(document), "text/csv", name)
    return _download(statement_exports.statement_xlsx(document), XLSX_TYPE, name)


@console.post("/admin/statements/<clinic_code>/<month>/status")
@signed_in(admin=True)
def statement_status(viewer: Viewer, clinic_code: str, month: str):
    month = _month(month)
    _visible_clinic(viewer, clinic_code)
    revision = request.form.get("revision", "")
    try:
        statements.set_status(
            hub_store(),
            clinic_code=clinic_code,
            month=month,
            revision=int(revision) if revision.isdigit() else None,
            status=request.form.get("status", ""),
            by=viewer.username,
            now=hub_runtime().now(),
            reference=request.form.get("reference"),
            paid_on=request.form.get("paid_on"),
        )
    except HubError as refused:
        return _statement_page(viewer, clinic_code, month, error=str(refused))
    return redirect(url_for("console.statement", clinic_code=clinic_code, month=month))


def _download(data: str | bytes, mimetype: str, name: str) -> Response:
    response = Response(data, mimetype=mimetype)
    # The clinic's code is the county's text: only safe characters reach the header.
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)
    response.headers["Content-Disposition"] = f"attachment; filename={safe}"
    return response
