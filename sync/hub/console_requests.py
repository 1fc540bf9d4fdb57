"""The console's pages for the village service point (`docs/service-point.md`, "The county
console"): the queue of the clinics' requests with a tab per kind and a state filter, one
request with its applicant (masked), details, photos, decisions so far and — for a
complaint — the disputed settlement beside the county's recomputation, the decision form
(approve, reject with a reason, ask for more), the ID number opened on demand, and the
premiums collected per clinic with the cash each must hand over (and its CSV).

Coordinators see their township's requests and clinics only: another township's request,
like an unknown one, is a 404. The use cases are `sync.hub.services.service_requests`;
these routes join the console's blueprint when `sync.hub.app` imports this module.
"""

import logging

from flask import Response, abort, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from edge.domain.documents import premium_rule_from_json
from edge.domain.model import Rejection
from edge.domain.records import NATIONAL_NAMES
from edge.domain.service_point import premium_year_choices
from sync.hub.adapters.audit_log import append_audit
from sync.hub.adapters.county_key import load_seal_key
from sync.hub.console import PAYER_NAMES, chosen_township, console, render, signed_in
from sync.hub.console_auth import Viewer
from sync.hub.model import HubError
from sync.hub.runtime import hub_runtime, hub_store
from sync.hub.services import month_reports, service_requests

# Who opened which request's ID number, and when (also in the hub's `console-audit.log`,
# `sync.hub.adapters.audit_log`): never the number itself.
audit = logging.getLogger("sync.hub.audit")

REQUEST_KINDS = {
    "enrolment": _l("Enrolment"),
    "renewal": _l("Renewal"),
    "chronic_certificate": _l("Chronic and two-disease certificates"),
    "cross_region_filing": _l("Cross-region filing"),
    "complaint": _l("Complaints and recheck"),
}
REQUEST_STATES = {
    "pending": _l("waiting for the county"),
    "more_info": _l("more information asked"),
    "approved": _l("approved"),
    "rejected": _l("rejected"),
}
# The queue's order: what waits for the county first, then what waits for the clinic.
STATE_ORDER = {state: index for index, state in enumerate(REQUEST_STATES)}
OUTCOMES = {
    "approved": _l("approved"),
    "rejected": _l("rejected"),
    "more_info": _l("more information asked"),
}
COMPLAINT_OUTCOMES = {"approved": _l("upheld"), "rejected": _l("the settlement stands")}
FILING_TYPES = {
    "long_term_residence": _l("long-term residence elsewhere"),
    "retiree_relocated": _l("retiree living elsewhere"),
    "referral": _l("referral"),
    "posted_worker": _l("posted worker"),
    "temporary": _l("temporary treatment elsewhere"),
}
SCHEMES = {"chronic": _l("outpatient chronic disease"), "two_diseases": _l("two diseases")}
CATEGORIES = {
    "extreme_poverty": _l("extreme poverty"),
    "low_income_guarantee": _l("low-income guarantee"),
    "severe_disability": _l("severe disability"),
}
# The members of a decision's result, as the county reads them.
RESULT_NAMES = {
    "insured_id": _l("insured number"),
    "roster_version": _l("roster version"),
    "year": _l("insurance year"),
    "disease_code": _l("disease"),
    "valid_from": _l("valid from"),
    "valid_to": _l("valid to"),
    "filing_no": _l("filing number"),
    "answer": _l("answer"),
    "correction": _l("a correction is due"),
}
GENDERS = {"M": _l("male"), "F": _l("female")}
IMAGE_TYPES = ("image/jpeg", "image/png")
QUEUE_LIMIT = 500  # rows a queue shows: the oldest waiting ones come first


def _named(names: dict, value) -> str:
    return str(names.get(value, value)) if value is not None else "—"


def _details(kind: str, details: dict) -> list[tuple[str, str]]:
    """A request's details in words: (label, value) rows for its kind."""
    d = details or {}
    if kind == "enrolment":
        return [
            (_("Insurance"), _("resident") if d.get("insurance_type") == "resident" else "—"),
            (_("Category"), _named(CATEGORIES, d.get("category"))),
            (_("Village"), d.get("village") or "—"),
        ]
    if kind == "renewal":
        return [
            (_("Insurance year"), str(d.get("year", "—"))),
            (_("Premium receipt"), d.get("premium_tx_id") or _("not paid at the clinic")),
        ]
    if kind == "chronic_certificate":
        return [
            (_("Scheme"), _named(SCHEMES, d.get("scheme"))),
            (_("Disease"), f"{d.get('disease_name', '')} ({d.get('disease_code', '')})"),
            (_("Hospital"), d.get("hospital") or "—"),
            (_("Diagnosed on"), d.get("diagnosed_on") or "—"),
        ]
    if kind == "cross_region_filing":
        return [
            (_("Filing type"), _named(FILING_TYPES, d.get("filing_type"))),
            (_("Destination"), d.get("destination") or "—"),
            (_("Valid from"), d.get("valid_from") or "—"),
            (_("Valid to"), d.get("valid_to") or _("open-ended")),
            (_("Reason"), d.get("reason") or "—"),
        ]
    if kind == "complaint":
        return [
            (_("Settlement"), f"{d.get('settlement_tx_id', '')} (#{d.get('settlement_seq', '')})"),
            (_("Grounds"), d.get("grounds") or "—"),
        ]
    return [(key, str(value)) for key, value in d.items()]


def _national(amounts: dict | None) -> dict[str, int]:
    """A settlement's money by the national payers' names (`hifp_pay`, …), whether the
    figures are named as the ledger names them (`fund`) or nationally already."""
    named = {NATIONAL_NAMES.get(k, k): v for k, v in (amounts or {}).items()}
    return {p: named[p] for p in PAYER_NAMES if type(named.get(p)) is int}


def complaint_rows(settlement: dict | None) -> list[tuple[str, int | None, int | None]]:
    """(payer, the device's amount, the county's) for each payer either side names."""
    device = _national((settlement or {}).get("device"))
    county = _national((settlement or {}).get("recomputed"))
    return [(p, device.get(p), county.get(p)) for p in PAYER_NAMES if p in device or p in county]


def _queue_order(row: dict) -> tuple:
    return (STATE_ORDER.get(str(row.get("state")), len(STATE_ORDER)), row.get("created_at") or "")


@console.get("/requests")
@signed_in()
def requests_queue(viewer: Viewer):
    """The clinics' requests of one kind (a tab each, with counts), waiting ones first,
    the oldest first."""
    township = chosen_township(viewer)
    kind = request.args.get("kind") or "enrolment"
    state = request.args.get("state") or None
    if kind not in REQUEST_KINDS or (state is not None and state not in REQUEST_STATES):
        abort(404)
    store = hub_store()
    try:
        # One state at a time, in the queue's order: however many requests were decided
        # long ago, the waiting ones are read first and always shown.
        rows: list[dict] = []
        for each in [state] if state else list(REQUEST_STATES):
            rows += service_requests.list_requests(
                store, township=township, kind=kind, state=each, limit=QUEUE_LIMIT + 1 - len(rows)
            )
            if len(rows) > QUEUE_LIMIT:
                break
        # A tab counts the requests in the chosen state, or those waiting for the county.
        counts = {
            k: len(
                service_requests.list_requests(
                    store,
                    township=township,
                    kind=k,
                    state=state or "pending",
                    limit=QUEUE_LIMIT + 1,
                )
            )
            for k in REQUEST_KINDS
        }
    except HubError as refused:
        return render("error.html", message=str(refused)), 400
    return render(
        "requests.html",
        rows=sorted(rows[:QUEUE_LIMIT], key=_queue_order),
        kind=kind,
        state=state,
        counts={k: f"{QUEUE_LIMIT}+" if n > QUEUE_LIMIT else str(n) for k, n in counts.items()},
        capped=len(rows) > QUEUE_LIMIT,
        queue_limit=QUEUE_LIMIT,
        township=township,
        townships=store.townships() if viewer.is_admin else [],
        request_kinds=REQUEST_KINDS,
        request_states=REQUEST_STATES,
    )


def _detail(viewer: Viewer, tx_id: str, seal_key=None) -> dict:
    """The request, when this viewer may see it; 404 otherwise (an unknown request and
    another township's look the same)."""
    try:
        return service_requests.request_detail(
            hub_store(), tx_id, township=viewer.township, seal_key=seal_key
        )
    except HubError:
        abort(404)


def _request_page(viewer: Viewer, detail: dict, *, error: str | None = None, form=None, **extra):
    kind = detail["kind"]
    return render(
        "request.html",
        r=detail,
        details=_details(kind, detail.get("details") or {}),
        error=error,
        form=form or {},
        request_kinds=REQUEST_KINDS,
        request_states=REQUEST_STATES,
        outcomes=COMPLAINT_OUTCOMES if kind == "complaint" else OUTCOMES,
        all_outcomes=OUTCOMES,
        categories=CATEGORIES,
        genders=GENDERS,
        complaint_rows=complaint_rows(detail.get("settlement")),
        result_names=RESULT_NAMES,
        **extra,
    ), 400 if error else 200


@console.get("/requests/<tx_id>")
@signed_in()
def service_request(viewer: Viewer, tx_id: str):
    detail = _detail(viewer, tx_id)
    decided = request.args.get("decided") == "1" and detail.get("decisions")
    return _request_page(viewer, detail, decided=detail["decisions"][-1] if decided else None)


@console.post("/requests/<tx_id>/id-number")
@signed_in()
def reveal_id_number(viewer: Viewer, tx_id: str):
    """The applicant's ID number, opened with the county's seal key for this answer only
    (a POST: never in a URL, a history or a cache); who opened it and when is audited."""
    shown = _detail(viewer, tx_id)  # 404 before the key is read
    try:
        seal_key = load_seal_key(hub_runtime().data_dir)
    except HubError as refused:
        return _request_page(viewer, shown, error=str(refused))
    detail = _detail(viewer, tx_id, seal_key=seal_key)
    if detail.get("id_number") is None:
        problem = detail.get("id_number_problem") or _("This request has no sealed ID number.")
        return _request_page(viewer, detail, error=problem)
    # Audited before it is shown: when the audit cannot be written, nothing is shown.
    append_audit(
        hub_runtime().data_dir,
        {
            "at": hub_runtime().now().isoformat(),
            "user": viewer.username,
            "action": "open_id_number",
            "request": tx_id,
        },
    )
    audit.info("console user %s opened the ID number of request %s", viewer.username, tx_id)
    return _request_page(
        viewer,
        detail,
        id_number=detail["id_number"],
        id_number_warning=(
            _(
                "The opened ID number is not the masked number the request shows:"
                " check the request with the clinic before deciding."
            )
            if detail["id_number_differs_from_mask"]
            else None
        ),
    )


def _field(name: str) -> str | None:
    return (request.form.get(name) or "").strip() or None


@console.post("/requests/<tx_id>/decision")
@signed_in()
def decide_request(viewer: Viewer, tx_id: str):
    detail = _detail(viewer, tx_id)
    outcome = request.form.get("outcome", "")
    form = {name: request.form.get(name, "") for name in request.form if name != "csrf_token"}
    if outcome not in OUTCOMES:
        return _request_page(
            viewer, detail, error=_("Choose approve, reject or ask for more."), form=form
        )
    try:
        service_requests.decide(
            hub_store(),
            hub_runtime().county_key,
            tx_id,
            outcome=outcome,
            reason=_field("reason"),
            decided_by=viewer.username,
            township=viewer.township,
            now=hub_runtime().now(),
            insured_id=_field("insured_id"),
            waiting_until=_field("waiting_until"),
            valid_from=_field("valid_from"),
            valid_to=_field("valid_to"),
            filing_no=_field("filing_no"),
            answer=_field("answer"),
            correction=request.form.get("correction") == "1",
        )
    except HubError as refused:
        return _request_page(viewer, _detail(viewer, tx_id), error=str(refused), form=form)
    return redirect(url_for("console.service_request", tx_id=tx_id, decided=1))


@console.get("/requests/<tx_id>/attachments/<sha256>")
@signed_in()
def request_attachment(viewer: Viewer, tx_id: str, sha256: str):
    """A photo the request names, as the image it is: only a JPEG or PNG, never sniffed
    into anything else, shown in the page rather than downloaded."""
    detail = _detail(viewer, tx_id)
    named = [detail, *(detail.get("follow_ups") or [])]
    if sha256 not in {a.get("sha256") for r in named for a in r.get("attachments") or []}:
        abort(404)
    try:
        content_type, data = service_requests.attachment(
            hub_store(), sha256, township=viewer.township, device_id=detail["device_id"]
        )
    except HubError:
        abort(404)
    if content_type not in IMAGE_TYPES:
        abort(404)
    response = Response(data, mimetype=content_type)
    response.headers["Content-Disposition"] = "inline"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


# ---- premiums ----------------------------------------------------------------------------------

PREMIUM_FIGURES = (
    ("count", "count", "收费笔数"),
    ("persons", "count", "参保人数"),
    ("amount", "fen", "实收金额"),
    ("cash", "fen", "现金"),
    ("mobile", "fen", "移动支付"),
    ("family_account", "fen", "家庭共济账户"),
    ("state_paid", "fen", "政府资助"),
    ("reversed_count", "count", "冲正笔数"),
    ("reversed_amount", "fen", "冲正金额"),
    ("cash_to_hand_over", "fen", "现金应上缴"),
)


def _year() -> int:
    """The insurance year asked for, by default the one the clinics collect for now (the
    published policy's rule: next year's from `collection_opens` on)."""
    year = request.args.get("year", "")
    if year.isdigit() and 2000 <= int(year) <= 2099:
        return int(year)
    if year:
        abort(404)
    today = hub_runtime().now().date()
    policy = hub_store().latest_publication("policy")
    member = policy.content.get("premiums") if policy and isinstance(policy.content, dict) else None
    if member is None:
        return today.year
    try:
        return premium_year_choices(premium_rule_from_json(member, "premiums"), today)[0]
    except Rejection:  # a policy the county published is checked then; this is the fallback
        return today.year


def _premium_rows(viewer: Viewer) -> tuple[int, str | None, list[dict], dict]:
    township = chosen_township(viewer)
    year = _year()
    rows = service_requests.premium_totals(hub_store(), year=year, township=township)
    totals = {name: sum(r.get(name) or 0 for r in rows) for name, _k, _h in PREMIUM_FIGURES}
    return year, township, rows, totals


@console.get("/premiums")
@signed_in()
def premiums(viewer: Viewer):
    try:
        year, township, rows, totals = _premium_rows(viewer)
    except HubError as refused:
        return render("error.html", message=str(refused)), 400
    return render(
        "premiums.html",
        year=year,
        township=township,
        townships=hub_store().townships() if viewer.is_admin else [],
        rows=rows,
        totals=totals,
    )


@console.get("/premiums.csv")
@signed_in()
def premiums_csv(viewer: Viewer):
    try:
        year, _township, rows, totals = _premium_rows(viewer)
    except HubError:
        abort(404)
    columns = [("乡镇 township", "text"), ("卫生室 clinic", "text")]
    columns += [(f"{header} {name}", kind) for name, kind, header in PREMIUM_FIGURES]
    table_rows = [
        [r.get("township"), r.get("clinic")] + [r.get(n) or 0 for n, _k, _h in PREMIUM_FIGURES]
        for r in rows
    ]
    table_rows.append(["合计 total", ""] + [totals[n] for n, _k, _h in PREMIUM_FIGURES])
    text = month_reports.table_csv(("保费", columns, table_rows))
    response = Response("\ufeff" + text, mimetype="text/csv")
    response.headers["Content-Disposition"] = f"attachment; filename=premiums-{year}.csv"
    return response
