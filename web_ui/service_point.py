"""The village service point (医保服务) on the terminal: collecting the yearly premium
(收缴保费) with its receipt and reversal, the county's requests (业务申请: enrolment,
renewal, chronic and 两病 certificates, cross-region filing, complaints) with photos, and
the list of requests with the county's decisions (申请记录).

Thin, like the other pages: `edge.premiums` quotes, collects and reverses premiums,
`edge.service_requests` checks, seals and signs requests; this module reads forms, bounds
the photos before anything is kept, and formats. An ID number typed for an enrolment goes
straight to the use case, which seals it: it is never put in the session, a draft, a log
or a page (a refused form asks for it again)."""

from datetime import date
from typing import Any

from flask import (
    Blueprint,
    Response,
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

from drivers.cards import CardError
from drivers.printer import PrinterError
from drivers.receipt import ReceiptError, layout_request_slip, receipt_escpos, receipt_qr_payload
from edge import premiums as premium_cases
from edge import service_requests, services
from edge.adapters.attachments import AttachmentError, AttachmentFiles
from edge.domain import service_point as sp
from edge.domain.model import Rejection
from edge.domain.money import format_yuan
from web_ui import messages, queries
from web_ui.auth import now, require
from web_ui.context import get_store, hardware
from web_ui.records import PAPER

bp = Blueprint("service", __name__)
SETTLERS = ("doctor", "tester")
READERS = ("doctor", "tester", "coordinator")

MAX_PERSONS = sp.MAX_PREMIUM_PERSONS
# The request form's body: its photos (which the use case bounds, one by one and in all)
# and a little for the fields and the multipart framing; a larger body is a 413.
UPLOAD_LIMIT = sp.MAX_REQUEST_BYTES + 256 * 1024
UPLOAD_ENDPOINTS = {"service.new_request"}
MAX_TEXT = 200

METHODS = {
    "cash": _l("Cash"),
    "mobile": _l("Mobile payment"),
    "family_account": _l("Family account (家庭共济)"),
}
# Preset reasons for reversing a premium, tapped; the record keeps the Chinese words.
PREMIUM_REVERSAL_REASONS = {
    "entry_error": (_l("Entry error"), "录入错误"),
    "wrong_person": (_l("Wrong person"), "缴费人员错误"),
    "duplicate": (_l("Paid twice"), "重复缴费"),
    "refund": (_l("Resident asked for the money back"), "居民申请退费"),
    "other": (_l("Other"), "其他"),
}
KINDS = {
    "enrolment": _l("Enrolment"),
    "renewal": _l("Renewal"),
    "chronic_certificate": _l("Chronic disease certificate"),
    "cross_region_filing": _l("Cross-region treatment filing"),
    "complaint": _l("Complaint and recheck"),
}
STATES = {
    "pending": _l("Waiting to upload"),
    "submitted": _l("Submitted"),
    "approved": _l("Approved"),
    "rejected": _l("Returned"),
    "more_info": _l("More information needed"),
}
FILING_TYPES = {
    "long_term_residence": _l("Long-term residence elsewhere"),
    "retiree_relocated": _l("Retired and moved elsewhere"),
    "referral": _l("Referral"),
    "posted_worker": _l("Posted to work elsewhere"),
    "temporary": _l("Temporary trip"),
}
SCHEMES = {"chronic": _l("Chronic disease"), "two_diseases": _l("Two diseases (两病)")}
GENDERS = {"M": _l("Male"), "F": _l("Female")}
ENROLMENT_CATEGORIES = ("extreme_poverty", "low_income_guarantee", "severe_disability",
                        "low_income")  # fmt: skip
# Refusals said more plainly than the use cases' own words (which are "中文 / English").
REFUSALS = {
    "UNKNOWN_PERSON": messages.REJECTIONS["UNKNOWN_PERSON"],
    "ENCRYPTION_KEY_MISSING": _l(
        "Sync once first to get the county's encryption key (先同步一次以取得县医保局的加密公钥)."
    ),
}


def refusal(rejection: Rejection) -> str:
    """A use case's refusal in the screen's language: its words are "中文 / English"."""
    known = REFUSALS.get(rejection.code)
    if known is not None:
        return str(known)
    chinese, _sep, english = rejection.message.partition(" / ")
    locale = get_locale()
    return english if english and locale is not None and locale.language == "en" else chinese


def _identity():
    return services.load_identity(get_store(), current_app.config["DATA_DIR"])


def _text(name: str, limit: int = MAX_TEXT) -> str:
    """A one-line field as typed, spaces tidied, bounded."""
    return " ".join(request.form.get(name, "").split())[:limit]


@bp.get("/service")
@require(*READERS)
def index():
    store = get_store()
    counts = {state: 0 for state in STATES}
    for item in service_requests.requests(store, limit=200):
        if item.state in counts:
            counts[item.state] += 1
    return render_template(
        "service/index.html",
        counts=[(state, str(label), counts[state]) for state, label in STATES.items()],
    )


# ---- premiums (收缴保费) --------------------------------------------------------------------


def _ids_arg() -> list[str]:
    ids = []
    for value in request.values.getlist("ids"):
        text = "".join(value.split())[:32]
        if text and text not in ids:
            ids.append(text)
    return ids[:MAX_PERSONS]


def _year_arg(choices: list[int]) -> int:
    text = request.values.get("year", "")
    return int(text) if text.isdigit() and int(text) in choices else choices[0]


def year_choices(store, today: date) -> list[int]:
    """The insurance years a premium may be collected for today, the default first."""
    rule = store.current_policy().premiums
    return sp.premium_year_choices(rule, today) if rule else [today.year + 1, today.year]


def _person_line(store, insured_id: str, year: int, today: date) -> dict:
    """One person's due, state subsidy and amount, or why they cannot pay (quoted alone,
    so that the page says which person it is)."""
    name = queries.person_name(store, insured_id)
    line: dict[str, Any] = {"insured_id": insured_id, "name": name, "problem": None,
                            "amount_fen": 0}  # fmt: skip
    try:
        quote = premium_cases.premium_quote(store, [insured_id], year, today)
    except Rejection as rejection:
        line["problem"] = refusal(rejection)
        return line
    person = quote.persons[0]
    line.update(
        name=person.name,
        categories=[str(messages.CATEGORIES.get(c, c)) for c in person.categories],
        due=format_yuan(person.due),
        state_pays=format_yuan(person.state_pays),
        amount=format_yuan(person.amount),
        amount_fen=person.amount,
        state_full=person.due > 0 and person.amount == 0,
    )
    return line


def _holders(store, ids: list[str]) -> list[dict]:
    """The employees who share their personal account with one of the persons (家庭共济)."""
    seen: dict[str, dict] = {}
    for insured_id in ids:
        entry = store.insured_person(insured_id, with_accumulators=False)
        if entry is None:
            continue
        for holder in services.family_account_holders(store, entry):
            seen.setdefault(holder.insured_id, {"insured_id": holder.insured_id,
                                                "name": holder.name})  # fmt: skip
    return list(seen.values())


@bp.get("/service/premium")
@require(*SETTLERS)
def premium_page():
    store = get_store()
    today = now().date()
    ids = _ids_arg()
    years = year_choices(store, today)
    year = _year_arg(years)
    query = request.args.get("q", "").strip()[:32]
    found = []
    if query:
        found = [p for p in queries.search_persons(store, query) if p["insured_id"] not in ids]
        if not found:
            flash(_("Nobody in the roster matches “%(query)s”.", query=query), "error")
    lines = [_person_line(store, insured_id, year, today) for insured_id in ids]
    payable = [line for line in lines if not line["problem"] and line["amount_fen"] > 0]
    total = sum(line["amount_fen"] for line in payable)
    return render_template(
        "service/premium.html",
        ids=ids,
        year=year,
        years=sorted(years),
        lines=lines,
        query=query,
        found=found,
        total=format_yuan(total),
        can_collect=bool(payable) and not any(line["problem"] for line in lines),
        nothing_due=bool(lines) and not payable and not any(line["problem"] for line in lines),
        holders=_holders(store, ids),
        methods=[(code, str(label)) for code, label in METHODS.items()],
        has_reader=bool(current_app.config["CARD_READER"]),
        full=len(ids) >= MAX_PERSONS,
    )


@bp.post("/service/premium/card")
@require(*SETTLERS)
def premium_card():
    """Add the holder of the card in the reader to the persons paid for."""
    ids = _ids_arg()
    try:
        card = hardware().read(now().date(), current_app.config["CARD_WAIT_SECONDS"])
    except CardError as error:
        # An expired card still names its holder: a premium renews the insurance.
        if error.code != "CARD_EXPIRED" or error.card is None:
            flash(_("Card not read: %(message)s", message=messages.localized(error)), "error")
            return redirect(url_for("service.premium_page", ids=ids, year=request.form.get("year")))
        card = error.card
    if card.insured_id not in ids and len(ids) < MAX_PERSONS:
        ids.append(card.insured_id)
    return redirect(url_for("service.premium_page", ids=ids, year=request.form.get("year")))


@bp.post("/service/premium")
@require(*SETTLERS)
def collect():
    store = get_store()
    ids = _ids_arg()
    year = _year_arg(year_choices(store, now().date()))
    back = url_for("service.premium_page", ids=ids, year=year)
    method = request.form.get("method", "")
    if method not in METHODS:
        flash(_("Choose how the premium is paid."), "error")
        return redirect(back)
    if not ids:
        flash(_("Choose the persons first."), "error")
        return redirect(back)
    reference = _text("reference", 64) or None
    if method == "mobile" and not reference:
        flash(_("Type the mobile payment's reference number."), "error")
        return redirect(back)
    holder = request.form.get("account_holder") or None if method == "family_account" else None
    if method == "family_account" and not holder:
        flash(_("Choose whose employee account pays (家庭共济)."), "error")
        return redirect(back)
    payer_id = request.form.get("payer") or ids[0]
    if payer_id not in ids and payer_id != holder:
        payer_id = ids[0]
    try:
        recorded = premium_cases.collect_premium(
            store,
            _identity(),
            operator=g.operator.operator_id,
            payer_name=queries.person_name(store, payer_id) or payer_id,
            payer_insured_id=payer_id,
            insured_ids=ids,
            year=year,
            method=method,
            reference=reference if method == "mobile" else None,
            account_holder=holder,
            now=now(),
        )
    except Rejection as rejection:
        flash(refusal(rejection), "error")
        return redirect(back)
    flash(_("The premium is recorded."), "info")
    return redirect(url_for("service.premium_receipt", tx_id=_tx_id(recorded)))


def _tx_id(recorded: services.Recorded) -> str:
    return recorded.record["tx_id"]


def _premium_record(tx_id: str) -> dict:
    record = get_store().record_by_tx(tx_id)
    if record is None or record["kind"] not in ("premium", "premium_reversal"):
        abort(404)
    return record


def premium_view(store, record: dict) -> dict:
    """A premium or its reversal for the page, every amount formatted."""
    body = record["body"]
    original = body
    if record["kind"] == "premium_reversal":
        found = store.record_by_tx(body.get("reverses", ""))
        original = found["body"] if found else {}
    holder = body.get("account_holder")
    return {
        "year": original.get("year"),
        "payer": original.get("payer", {}),
        "method": str(METHODS.get(body.get("method"), body.get("method", ""))),
        "reference": original.get("reference"),
        "holder": holder,
        "holder_name": queries.person_name(store, holder) if holder else "",
        "balance_after": format_yuan(body["account_balance_after"])
        if body.get("account_balance_after") is not None
        else None,
        "persons": [
            {
                "insured_id": p["insured_id"],
                "name": p.get("name", ""),
                "categories": [str(messages.CATEGORIES.get(c, c)) for c in p.get("categories", [])],
                "due": format_yuan(p.get("due", 0)),
                "state_pays": format_yuan(p.get("state_pays", 0)),
                "amount": format_yuan(p.get("amount", 0)),
                "state_full": p.get("due", 0) > 0 and p.get("amount", 0) == 0,
            }
            for p in original.get("persons", [])
        ],
        "amount": format_yuan(body.get("amount", 0)),
        "state_paid": format_yuan(original.get("state_paid", 0)),
        "reason": body.get("reason"),
    }


@bp.get("/service/premium/<tx_id>")
@require(*READERS)
def premium_receipt(tx_id: str):
    """The 收费凭证 on screen, its QR code and the paper layout; the reversal form."""
    store = get_store()
    record = _premium_record(tx_id)
    reversed_by = None
    if record["kind"] == "premium":
        reversed_by = (premium_cases.premium(store, tx_id) or {}).get("reversal_seq")
    return render_template(
        "service/premium_receipt.html",
        record=record,
        view=premium_view(store, record),
        qr_payload=receipt_qr_payload(record),
        reversed_by=reversed_by,
        reasons=[(c, str(label)) for c, (label, _w) in PREMIUM_REVERSAL_REASONS.items()],
        can_print=bool(current_app.config["PRINTER"]),
    )


@bp.post("/service/premium/<tx_id>/reverse")
@require(*SETTLERS)
def reverse_premium(tx_id: str):
    _premium_record(tx_id)
    preset = request.form.get("preset", "")
    note = _text("reason", 180)
    words = PREMIUM_REVERSAL_REASONS[preset][1] if preset in PREMIUM_REVERSAL_REASONS else ""
    reason = (f"{words}：{note}" if words and note else words or note)[:MAX_TEXT]
    if not reason:
        flash(_("Choose a reason for the reversal."), "error")
        return redirect(url_for("service.premium_receipt", tx_id=tx_id))
    try:
        recorded = premium_cases.reverse_premium(
            get_store(), _identity(), tx_id, operator=g.operator.operator_id, reason=reason,
            now=now(),
        )  # fmt: skip
    except Rejection as rejection:
        flash(refusal(rejection), "error")
        return redirect(url_for("service.premium_receipt", tx_id=tx_id))
    flash(_("The premium was reversed."), "info")
    return redirect(url_for("service.premium_receipt", tx_id=_tx_id(recorded)))


# ---- requests (业务申请) ---------------------------------------------------------------------


class FormProblem(ValueError):
    """A field of the request form that cannot be taken, said plainly."""


def _date_field(name: str, required: bool = True) -> str | None:
    text = request.form.get(name, "").strip()
    if not text:
        if required:
            raise FormProblem(_("Give the date (YYYY-MM-DD)."))
        return None
    if len(text) == 8 and text.isdigit():  # typed on the number pad, which has no "-"
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise FormProblem(_("A date is written YYYYMMDD or YYYY-MM-DD, e.g. 20261122.")) from None


def read_photos() -> list[tuple[bytes, str]]:
    """The photos sent with a request as (bytes, label), each read no further than one
    byte past the bound (the use case refuses it, by its type, size and count)."""
    photos = []
    for index, upload in enumerate(request.files.getlist("photos"), start=1):
        if not upload or not upload.filename:
            continue
        label = " ".join(request.form.get(f"label{index}", "").split())[:40]
        photos.append((upload.stream.read(sp.MAX_ATTACHMENT_BYTES + 1), label))
    return photos


def _details(kind: str) -> dict:
    form = request.form
    if kind == "enrolment":
        category = form.get("category") or None
        if category is not None and category not in ENROLMENT_CATEGORIES:
            raise FormProblem(_("Choose a category from the list."))
        return {"insurance_type": "resident", "category": category,
                "village": _text("village", 60) or None}  # fmt: skip
    if kind == "renewal":
        year = form.get("year", "")
        if not year.isdigit():
            raise FormProblem(_("Choose the year renewed."))
        return {"year": int(year), "premium_tx_id": form.get("premium_tx_id") or None}
    if kind == "chronic_certificate":
        code = _text("disease_code", 16)
        if not code:
            raise FormProblem(_("Choose the disease from the diagnosis search."))
        scheme = form.get("scheme", "")
        if scheme not in SCHEMES:
            raise FormProblem(_("Choose chronic disease or two diseases (两病)."))
        names = queries.diagnosis_names(get_store(), [code])
        if code not in names:
            raise FormProblem(_("Choose the disease from the diagnosis search."))
        return {"disease_code": code, "disease_name": names[code], "scheme": scheme,
                "hospital": _text("hospital", 60) or None,
                "diagnosed_on": _date_field("diagnosed_on", required=False)}  # fmt: skip
    if kind == "cross_region_filing":
        filing_type = form.get("filing_type", "")
        if filing_type not in FILING_TYPES:
            raise FormProblem(_("Choose the kind of filing."))
        destination, reason = _text("destination", 60), _text("reason", 120)
        if not destination or not reason:
            raise FormProblem(_("Give the destination and the reason."))
        return {"filing_type": filing_type, "destination": destination,
                "valid_from": _date_field("valid_from"),
                "valid_to": _date_field("valid_to", required=False), "reason": reason}  # fmt: skip
    # complaint: names a settlement of this ledger (the page it was started from)
    settlement = _settlement_arg(kind)
    if settlement is None:
        raise FormProblem(_("A complaint starts from the settlement's page (申诉/复核)."))
    grounds = _text("grounds", 180)
    if not grounds:
        raise FormProblem(_("Say what the resident disputes."))
    return {"settlement_tx_id": settlement["tx_id"], "settlement_seq": settlement["seq"],
            "grounds": grounds}  # fmt: skip


def _applicant() -> dict:
    name, gender = _text("name", 30), request.form.get("gender", "")
    if not name:
        raise FormProblem(_("Give the applicant's name."))
    if gender not in GENDERS:
        raise FormProblem(_("Choose the applicant's gender."))
    return {"name": name, "gender": gender, "birth_date": _date_field("birth_date")}


def _form_context(kind: str, follow_up_of: str | None, settlement: dict | None) -> dict:
    store = get_store()
    today = now().date()
    return {
        "kind": kind,
        "kind_label": str(KINDS[kind]),
        "follow_up_of": follow_up_of,
        "settlement": settlement,
        "settlement_name": queries.person_name(store, settlement["body"]["insured_id"])
        if settlement
        else "",
        "categories": [(c, str(messages.CATEGORIES[c])) for c in ENROLMENT_CATEGORIES],
        "genders": [(c, str(label)) for c, label in GENDERS.items()],
        "schemes": [(c, str(label)) for c, label in SCHEMES.items()],
        "filing_types": [(c, str(label)) for c, label in FILING_TYPES.items()],
        "years": [today.year, today.year + 1],
        "premiums": _renewal_premiums(store, kind, request.values.get("insured_id", "")),
        "form": {k: v for k, v in request.form.items() if k != "id_number"},
        "max_photos": sp.MAX_ATTACHMENTS,
    }


def _renewal_premiums(store, kind: str, insured_id: str) -> list[dict]:
    """A renewal's choice of the premium that paid it: the person's premiums not reversed
    of the years a renewal offers (this year and next)."""
    insured_id = "".join((insured_id or "").split())[:32]
    if kind != "renewal" or not insured_id:
        return []
    years = [now().date().year, now().date().year + 1]
    rows = premium_cases.person_premiums(store, insured_id, years)
    return [{**row, "amount": format_yuan(row["amount"])} for row in rows]


def _follow_up_arg() -> str | None:
    tx_id = request.values.get("follow_up_of") or None
    if tx_id is not None:
        record = get_store().record_by_tx(tx_id)
        if record is None or record["kind"] != "service_request":
            abort(404)
    return tx_id


def _settlement_arg(kind: str) -> dict | None:
    if kind != "complaint":
        return None
    record = get_store().record_by_tx(request.values.get("settlement_tx_id", ""))
    if record is None or record["kind"] != "settlement":
        return None
    return record


@bp.get("/service/requests/new")
@require(*SETTLERS)
def choose_kind():
    return render_template(
        "service/choose.html",
        kinds=[(k, str(label)) for k, label in KINDS.items() if k != "complaint"],
    )


@bp.route("/service/requests/new/<kind>", methods=["GET", "POST"])
@require(*SETTLERS)
def new_request(kind: str):
    if kind not in KINDS:
        abort(404)
    follow_up_of = _follow_up_arg()
    settlement = _settlement_arg(kind)
    if kind == "complaint" and settlement is None:
        flash(_("A complaint starts from the settlement's page (申诉/复核)."), "error")
        return redirect(url_for("records.today"))
    context = _form_context(kind, follow_up_of, settlement)
    if request.method == "GET":
        original = get_store().record_by_tx(follow_up_of) if follow_up_of else None
        if original is not None:
            context["form"] = {"insured_id": original["body"].get("insured_id") or ""}
        if request.args.get("insured_id"):
            context["form"]["insured_id"] = request.args["insured_id"][:32]
        context["premiums"] = _renewal_premiums(
            get_store(), kind, context["form"].get("insured_id", "")
        )
        return render_template("service/request_form.html", **context)
    store = get_store()
    try:
        insured_id = "".join(request.form.get("insured_id", "").split())[:32] or None
        if settlement is not None:  # a complaint: the settlement's patient
            insured_id = settlement["body"]["insured_id"]
        applicant = id_number = None
        if kind == "enrolment":
            applicant = _applicant()
            id_number = sp.clean_id_number(request.form.get("id_number", ""))[:18]
            if not id_number:
                raise FormProblem(_("Type the applicant's ID number."))
            insured_id = None
        elif insured_id is None or store.insured_person(insured_id, False) is None:
            raise FormProblem(str(messages.REJECTIONS["UNKNOWN_PERSON"]))
        details = _details(kind)
        photos = read_photos()
        recorded = service_requests.new_request(
            store,
            _identity(),
            current_app.config["DATA_DIR"],
            kind=kind,
            operator=g.operator.operator_id,
            insured_id=insured_id,
            applicant=applicant,
            id_number=id_number,
            details=details,
            photos=photos,
            note=_text("note", 180) or None,
            follow_up_of=follow_up_of,
            now=now(),
        )
    except (FormProblem, Rejection) as problem:
        message = refusal(problem) if isinstance(problem, Rejection) else str(problem)
        if kind == "enrolment":
            message += " " + _("For safety the ID number is not kept: type it again.")
        flash(message, "error")
        return render_template("service/request_form.html", **context), 400
    flash(_("The request is recorded; it goes to the county at the next sync."), "info")
    return redirect(url_for("service.request_page", tx_id=_tx_id(recorded)))


@bp.get("/service/requests")
@require(*READERS)
def request_list():
    store = get_store()
    state = request.args.get("state") or None
    if state not in STATES:
        state = None
    rows = []
    for item in service_requests.requests(store, state=state, limit=200):
        rows.append(request_view(item))
    return render_template(
        "service/requests.html",
        rows=rows,
        state=state,
        states=[(s, str(label)) for s, label in STATES.items()],
    )


def request_view(item: service_requests.RequestView) -> dict:
    """A request for the list and its page: the applicant's ID number masked (as the
    record keeps it), labels in the screen's language."""
    applicant = item.applicant or None
    return {
        "tx_id": item.tx_id,
        "seq": item.seq,
        "time": item.created_at,
        "kind": item.kind,
        "kind_label": str(KINDS.get(item.kind, item.kind)),
        "state": item.state,
        "state_label": str(STATES.get(item.state, item.state)),
        "name": item.name or "",
        "insured_id": item.insured_id,
        "applicant": applicant,
        "gender_label": str(GENDERS.get(str(applicant.get("gender")), "")) if applicant else "",
        "details": item.details,
        "detail_rows": _detail_rows(item.kind, item.details),
        "attachments": item.attachments,
        "note": item.note,
        "follow_up_of": item.follow_up_of,
        "follow_ups": item.follow_ups,
        "reason": item.reason,
        "result": item.result or {},
        "decided_at": item.decided_at,
        "decided": item.state in ("approved", "rejected", "more_info"),
    }


def _detail_rows(kind: str | None, details: dict) -> list[tuple[str, str]]:
    """A request's details as label and value, in the screen's language."""
    rows: list[tuple[str, str]] = []
    if kind == "enrolment":
        category = details.get("category") or ""
        rows.append((_("Category"), str(messages.CATEGORIES.get(category, category or _("None")))))
        rows.append((_("Village"), details.get("village") or ""))
    elif kind == "renewal":
        rows.append((_("Year"), str(details.get("year", ""))))
    elif kind == "chronic_certificate":
        disease = f"{details.get('disease_code', '')} {details.get('disease_name', '')}"
        scheme = details.get("scheme", "")
        rows.append((_("Disease"), disease))
        rows.append((_("Scheme"), str(SCHEMES.get(scheme, scheme))))
        rows.append((_("Hospital"), details.get("hospital") or ""))
        rows.append((_("Diagnosed on"), details.get("diagnosed_on") or ""))
    elif kind == "cross_region_filing":
        filing = details.get("filing_type") or ""
        rows.append((_("Filing"), str(FILING_TYPES.get(filing, filing))))
        rows.append((_("Destination"), details.get("destination", "")))
        valid = f"{details.get('valid_from', '')} – {details.get('valid_to') or ''}"
        rows.append((_("Valid"), valid))
        rows.append((_("Reason"), details.get("reason", "")))
    elif kind == "complaint":
        rows.append((_("Settlement"), _("record %(seq)s", seq=details.get("settlement_seq", ""))))
        rows.append((_("Grounds"), details.get("grounds", "")))
    return [(label, value) for label, value in rows if value]


def _request_or_404(tx_id: str) -> service_requests.RequestView:
    try:
        return service_requests.request(get_store(), tx_id)
    except Rejection:
        abort(404)


@bp.get("/service/requests/<tx_id>")
@require(*READERS)
def request_page(tx_id: str):
    view = request_view(_request_or_404(tx_id))
    result = view["result"]
    # A resident the county enrolled has no card yet: once the roster update holding them
    # is installed, the doctor settles their visit by a look-up of the new insured number.
    settle_as = None
    if view["kind"] == "enrolment" and view["state"] == "approved":
        insured_id = result.get("insured_id")
        if insured_id and get_store().insured_person(insured_id, False) is not None:
            settle_as = insured_id
    return render_template(
        "service/request.html",
        r=view,
        result=result,
        settle_as=settle_as if g.operator.role in SETTLERS else None,
        recomputed=_payer_rows(result.get("recomputed")),
        device=_payer_rows(result.get("device")),
        can_print=bool(current_app.config["PRINTER"]),
    )


def _payer_rows(amounts: dict | None) -> list[tuple[str, str]]:
    if not amounts:
        return []
    return [(str(messages.PAYERS.get(k, k)), format_yuan(int(v))) for k, v in amounts.items()]


@bp.get("/service/requests/<tx_id>/photos/<sha256>")
@require(*READERS)
def photo(tx_id: str, sha256: str):
    """A photo of a request, only one that request names (checked against its hash)."""
    named = {a["sha256"]: a["type"] for a in _request_or_404(tx_id).attachments}
    if sha256 not in named:
        abort(404)
    try:
        data = AttachmentFiles(current_app.config["DATA_DIR"]).read(sha256)
    except AttachmentError:
        abort(404)
    return Response(data, mimetype=named[sha256])


@bp.post("/service/requests/<tx_id>/print")
@require(*READERS)
def print_slip(tx_id: str):
    """The slip for the resident: what was asked, when, and the county's answer."""
    device = get_store().device()
    view = _request_or_404(tx_id)
    try:
        slip = layout_request_slip(
            view.to_dict(),
            clinic=current_app.config["CLINIC_NAME"],
            device_id=device.device_id if device else "",
            width=PAPER[current_app.config["PAPER"]][0],
        )
        data = receipt_escpos(slip, paper_dots=PAPER[current_app.config["PAPER"]][1])
        current_app.extensions["clinic_hardware"].print_bytes(data)
    except PrinterError as error:
        flash(_("Not printed: %(message)s.", message=messages.localized(error)), "error")
    except ReceiptError as error:
        flash(str(error), "error")
    else:
        flash(_("Request slip printed."), "info")
    return redirect(url_for("service.request_page", tx_id=tx_id))
