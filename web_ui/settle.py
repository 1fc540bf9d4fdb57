"""Settling a visit: identify the patient (card or e-voucher), build the visit with live
quotes, confirm. Thin: the services settle, the presenters format."""

import secrets
from datetime import datetime
from decimal import Decimal, InvalidOperation

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from drivers.cards import CardError
from drivers.vouchers import VoucherError, load_public_key, verify_voucher
from edge import services
from edge.adapters.sqlite_store import BUNDLE_NAME_MAX, StoreError
from edge.domain.documents import visit_from_json
from edge.domain.model import Rejection, Visit
from edge.domain.money import format_yuan
from web_ui import drafts, messages, presenters, quantities, queries, syncing
from web_ui.auth import now, require
from web_ui.context import get_store, hardware
from web_ui.risk import review_forecast

bp = Blueprint("settle", __name__)
SETTLERS = ("doctor", "tester")


def county_key() -> str | None:
    """The key e-vouchers are checked against: configured, else pinned at enrollment."""
    return current_app.config["COUNTY_PUBLIC_KEY"] or syncing.county_public_key(get_store())


def current_draft() -> drafts.Draft | None:
    """The signed-in operator's visit being built (kept on the terminal: web_ui/drafts.py)."""
    if "draft" not in g:
        g.draft = drafts.current(get_store(), g.operator.operator_id)
    return g.draft


def current_patient() -> str | None:
    draft = current_draft()
    return draft.insured_id if draft else None


@bp.get("/settle")
@require(*SETTLERS)
def page():
    store = get_store()
    moment = now()
    draft = current_draft()
    if draft is not None and datetime.fromisoformat(draft.started_at).date() < moment.date():
        # A visit is settled on the day it is built: an earlier day's card or e-voucher is
        # read again today.
        drafts.discard(store, g.operator.operator_id, draft.draft_id)
        flash(
            _("An unfinished visit from an earlier day was set aside: read the card again."),
            "info",
        )
        draft = g.draft = None
    insured_id = current_patient()
    patient = None
    if draft is not None:
        patient = patient_panel(store, draft.insured_id, moment.date())
        if patient is None:
            drafts.discard(store, g.operator.operator_id, draft.draft_id)
            draft, insured_id = None, None
    forecast = review_forecast(store, moment, insured_id)
    visit_types = offered_visit_types(store, insured_id, moment.date()) if patient else []
    return render_template(
        "settle.html",
        patient=patient,
        source=draft.patient.get("via") if draft else None,
        review=presenters.review_messages(forecast),
        visit_types=visit_types,
        draft=restored_visit(store, draft, [v for v, _label in visit_types]) if draft else None,
        whole_units=sorted(quantities.WHOLE_UNITS),
        expired_card=None if patient else session.get("expired_card"),
        lookup_reasons=[(code, str(label)) for code, (label, _words) in LOOKUP_REASONS.items()],
        poll_ms=current_app.config["CARD_POLL_MS"],
        has_reader=bool(current_app.config["CARD_READER"]),
        has_voucher_key=bool(county_key()),
    )


def offered_visit_types(store, insured_id: str, today) -> list[tuple[str, str]]:
    """The patient's visit types, less those that require a certificate the patient does not
    hold valid today (慢特病门诊 is not offered to a patient with no certificate for it)."""
    entry = store.insured_person(insured_id, with_accumulators=False)
    if entry is None:
        return []
    policy = store.current_policy()
    return [
        (visit_type, messages.visit_type_label(visit_type))
        for visit_type in presenters.usable_visit_types(entry.person, policy, today)
    ]


def restored_visit(store, draft: drafts.Draft, offered: list[str]) -> dict:
    """The draft as the page starts from: names, prices and units looked up again."""
    visit = draft.visit
    codes = [line["code"] for line in visit.get("lines", [])]
    items = store.catalog_items(codes)
    names = queries.diagnosis_names(store, visit.get("diagnoses", []))
    lines = []
    for line in visit.get("lines", []):
        item = items.get(line["code"])
        lines.append(
            {
                "code": line["code"],
                "quantity": line["quantity"],
                "name": item.name if item else line["code"],
                "spec": (item.spec or "") if item else "",
                "unit": item.unit if item else "",
                "price": f"¥{item.price}" if item else "",
                "whole": quantities.whole_units_only(item.unit) if item else False,
            }
        )
    visit_type = visit.get("visit_type")
    return {
        "draft_id": draft.draft_id,
        "visit_type": visit_type if visit_type in offered else (offered[0] if offered else None),
        "diagnoses": [{"code": c, "name": names.get(c, "")} for c in visit.get("diagnoses", [])],
        "lines": lines,
        "use_personal_account": bool(visit.get("use_personal_account")),
        "use_family_account": bool(visit.get("use_family_account")),
        "family_account_holder": visit.get("family_account_holder"),
    }


@bp.post("/api/draft")
@require(*SETTLERS)
def save_draft():
    """The page keeps its visit on the terminal after every change (and as it leaves)."""
    payload = request.get_json(silent=True)
    draft = current_draft()
    if not isinstance(payload, dict) or draft is None:
        return jsonify({"ok": False, "kept": False}), 409
    try:
        visit = drafts.clean_visit(payload.get("visit"))
        rev = int(payload.get("rev", 0))
    except (TypeError, ValueError):
        return jsonify({"ok": False, "kept": False}), 400
    kept = drafts.save_visit(
        get_store(), g.operator.operator_id, str(payload.get("draft_id", "")), visit, rev, now()
    )
    return jsonify({"ok": kept, "kept": kept}), 200 if kept else 409


def patient_panel(store, insured_id: str, today) -> dict | None:
    entry = store.insured_person(insured_id, with_accumulators=False)
    if entry is None:
        return None
    visit_types = store.current_policy().visit_types(entry.person.insurance_type)
    accumulators = {v: store.accumulators(insured_id, today, v) for v in visit_types}
    names = queries.diagnosis_names(store, [c.disease_code for c in entry.person.chronic_certs])
    return presenters.patient_panel(
        entry,
        store.current_policy(),
        accumulators,
        today,
        names,
        services.family_account_holders(store, entry),
    )


def _choose_patient(insured_id: str, via: str, **extra: str) -> bool:
    if get_store().insured_person(insured_id, with_accumulators=False) is None:
        flash(f"{messages.REJECTIONS['UNKNOWN_PERSON']} ({insured_id})", "error")
        return False
    # The visit token lets the server settle this patient's visit once, however often
    # the confirm request arrives (double tap, retry, a second tab).
    patient = {"insured_id": insured_id, "via": via, "visit_token": secrets.token_hex(16), **extra}
    drafts.start(get_store(), g.operator.operator_id, patient, now())
    return True


@bp.post("/settle/card")
@require(*SETTLERS)
def read_card():
    """Read the card in the reader (the page posts this by itself when one is inserted)."""
    try:
        card = hardware().read(now().date(), current_app.config["CARD_WAIT_SECONDS"])
    except CardError as error:
        if error.code == "CARD_EXPIRED" and _offer_lookup(error.card):
            return redirect(url_for("settle.page"))
        flash(_("Card not read: %(message)s", message=messages.localized(error)), "error")
        return redirect(url_for("settle.page"))
    try:
        services.card_holder(get_store(), card.insured_id, card.card_no)
    except Rejection as rejection:
        flash(messages.rejection_json(rejection)["message"], "error")
        return redirect(url_for("settle.page"))
    session.pop("expired_card", None)
    _choose_patient(card.insured_id, "card", card_no=card.card_no)
    return redirect(url_for("settle.page"))


# ---- an expired card whose insurance is still active: the next step --------------------------

# Why a patient is looked up by insured number instead of read from a card: tapped, and
# kept in Chinese in the signed event whatever the screen's language.
LOOKUP_REASONS = {
    "card_expired": (_l("The card has expired"), "卡片过期"),
    "card_damaged": (_l("The card is damaged"), "卡片损坏"),
    "card_forgotten": (_l("The card was left at home"), "未带卡"),
    "other": (_l("Other"), "其他"),
}


def _offer_lookup(card) -> bool:
    """After an expired card: when its holder's insurance is still active, the settle page
    offers the e-voucher or a look-up by insured number (with a reason)."""
    if card is None:
        return False
    entry = get_store().insured_person(card.insured_id, with_accumulators=False)
    if entry is None or entry.person.status != "active":
        return False
    session["expired_card"] = {"insured_id": entry.insured_id, "name": entry.name}
    return True


@bp.post("/settle/lookup")
@require(*SETTLERS)
def lookup():
    """Choose a patient by insured number, with a reason; recorded as a signed event."""
    store = get_store()
    insured_id = "".join(request.form.get("insured_id", "").split())[:32]
    preset = request.form.get("reason", "")
    if preset not in LOOKUP_REASONS:
        flash(_("Choose why the patient is looked up without a card."), "error")
        return redirect(url_for("settle.page"))
    if not insured_id or store.insured_person(insured_id, with_accumulators=False) is None:
        flash(str(messages.REJECTIONS["UNKNOWN_PERSON"]), "error")
        return redirect(url_for("settle.page"))
    moment = now()
    services.record_event(
        store,
        services.load_identity(store, current_app.config["DATA_DIR"]),
        {
            "event": "patient_looked_up",
            "operator": g.operator.operator_id,
            "insured_id": insured_id,
            "reason": LOOKUP_REASONS[preset][1],
        },
        moment,
    )
    session.pop("expired_card", None)
    _choose_patient(insured_id, "lookup")
    return redirect(url_for("settle.page"))


@bp.post("/settle/voucher")
@require(*SETTLERS)
def scan_voucher():
    """An e-voucher QR scanned into the field (scanners type like a keyboard) or pasted."""
    key_text = county_key()
    token = request.form.get("token", "").strip()
    if not key_text:
        flash(
            _(
                "E-vouchers cannot be checked: this terminal has no county key yet"
                " (enroll it first)."
            ),
            "error",
        )
        return redirect(url_for("settle.page"))
    moment = now()
    try:
        voucher = verify_voucher(token, load_public_key(key_text), moment)
    except VoucherError as error:
        flash(_("E-voucher refused: %(message)s", message=messages.localized(error)), "error")
        return redirect(url_for("settle.page"))
    if queries.voucher_used(get_store(), voucher.nonce):
        flash(str(messages.VOUCHER_USED), "error")
        return redirect(url_for("settle.page"))
    # Marked used only when its visit is settled, in the same transaction.
    session.pop("expired_card", None)
    _choose_patient(voucher.insured_id, "voucher", voucher_nonce=voucher.nonce)
    return redirect(url_for("settle.page"))


@bp.post("/settle/clear")
@require(*SETTLERS)
def clear():
    drafts.discard(get_store(), g.operator.operator_id)
    return redirect(url_for("settle.page"))


@bp.get("/api/card")
@require(*SETTLERS)
def card_state():
    state = hardware().card_state()
    answer = {
        "present": state.present,
        "insertions": state.insertions,
        "patient": current_patient() is not None,
    }
    if state.error is not None:
        answer["error"] = {"code": state.error.code, "message": messages.localized(state.error)}
    return jsonify(answer)


# ---- search and bundles (组套) ------------------------------------------------------------
# Search finds items and diagnoses as a clinic HIS does (see SqliteDeviceStore.search_catalog);
# a bundle is a named set of lines (and diagnoses) applied to the visit with one tap.


@bp.get("/api/catalog")
@require(*SETTLERS)
def search_catalog():
    hits = get_store().search_catalog(request.args.get("q", "")[:64], limit=12)
    return jsonify(
        [
            {
                "code": h.code,
                "name": h.name,
                "spec": h.spec,
                "unit": h.unit,
                # 甲类 / 乙类 / 丙类 as doctors say it, not the catalog's letter
                "class": str(messages.ITEM_CLASSES.get(h.item_class, h.item_class)),
                "price": f"¥{h.price}",
                "matched": h.matched,
                "frequent": h.matched == "pick",
            }
            for h in hits
        ]
    )


@bp.get("/api/diagnoses")
@require(*SETTLERS)
def search_diagnoses():
    return jsonify(queries.search_diagnoses(get_store(), request.args.get("q", "")[:64]))


def _bundle_summary(bundle) -> dict:
    return {
        "id": bundle.bundle_id,
        "name": bundle.name,
        "source": bundle.source,
        "lines": len(bundle.lines),
    }


@bp.get("/api/bundles")
@require(*SETTLERS)
def list_bundles():
    return jsonify([_bundle_summary(b) for b in get_store().bundles()])


@bp.get("/api/bundles/<int:bundle_id>")
@require(*SETTLERS)
def bundle_lines(bundle_id: int):
    """A bundle as the visit takes it: its lines with the catalog's names and prices
    (codes no longer in the catalog are listed as missing) and its diagnoses."""
    store = get_store()
    bundle = store.bundle(bundle_id)
    if bundle is None:
        return jsonify({"ok": False, "message": _("That bundle no longer exists.")}), 404
    items = store.catalog_items(code for code, _quantity in bundle.lines)
    names = queries.diagnosis_names(store, bundle.diagnoses)
    return jsonify(
        {
            "ok": True,
            "name": bundle.name,
            "lines": [
                {
                    "code": code,
                    "name": items[code].name,
                    "spec": items[code].spec,
                    "unit": items[code].unit,
                    "price": f"¥{items[code].price}",
                    "quantity": quantity,
                }
                for code, quantity in bundle.lines
                if code in items
            ],
            "diagnoses": [
                {"code": code, "name": names[code]} for code in bundle.diagnoses if code in names
            ],
            "missing": [code for code, _quantity in bundle.lines if code not in items],
        }
    )


def _bundle_refused(message: str):
    return jsonify({"ok": False, "message": message}), 422


@bp.post("/api/bundles")
@require(*SETTLERS)
def save_bundle():
    """Save the visit's lines (and diagnoses) as a bundle of this clinic's."""
    store = get_store()
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return _bundle_refused(_("The bundle could not be read."))
    name = payload.get("name")
    lines = payload.get("lines")
    diagnoses = payload.get("diagnoses") or []
    if not isinstance(name, str) or not " ".join(name.split()):
        return _bundle_refused(_("Give the bundle a name."))
    if len(" ".join(name.split())) > BUNDLE_NAME_MAX:
        return _bundle_refused(
            _("The name is too long (at most %(n)d characters).", n=BUNDLE_NAME_MAX)
        )
    if not isinstance(lines, list) or not lines:
        return _bundle_refused(_("Add items to the visit first, then save them as a bundle."))
    wanted = []  # (code, quantity)
    for line in lines:
        code = line.get("code") if isinstance(line, dict) else None
        quantity = str(line.get("quantity", "")).strip() if isinstance(line, dict) else ""
        if not isinstance(code, str) or not _positive(quantity):
            return _bundle_refused(_("Every line needs an item and a quantity above zero."))
        wanted.append((code, quantity))
    unknown = {code for code, _quantity in wanted} - set(store.catalog_items(c for c, _q in wanted))
    if unknown:
        return _bundle_refused(_("Not in the catalog: %(codes)s", codes=", ".join(sorted(unknown))))
    if not isinstance(diagnoses, list) or not all(isinstance(c, str) for c in diagnoses):
        return _bundle_refused(_("The bundle could not be read."))
    try:
        bundle_id = store.save_bundle(
            name, wanted, diagnoses, created_by=g.operator.operator_id, now=now()
        )
    except StoreError:
        return _bundle_refused(_("A county bundle already has that name; choose another."))
    return jsonify(
        {"ok": True, "id": bundle_id, "bundles": [_bundle_summary(b) for b in store.bundles()]}
    )


@bp.post("/api/bundles/<int:bundle_id>/delete")
@require(*SETTLERS)
def delete_bundle(bundle_id: int):
    """Delete one of the clinic's bundles (the county's stay)."""
    store = get_store()
    if not store.delete_bundle(bundle_id):
        return _bundle_refused(_("Only this clinic's own bundles can be deleted."))
    return jsonify({"ok": True, "bundles": [_bundle_summary(b) for b in store.bundles()]})


def _positive(text: str) -> bool:
    try:
        return Decimal(text) > 0 and Decimal(text).is_finite()
    except (InvalidOperation, ValueError):
        return False


def _visit(today) -> tuple[Visit, str | None]:
    """The visit the page sends (JSON), and whose shared account the family account is to
    be (`family_account_holder`, an insured id; may be left out when only one employee
    shares theirs). The date is always today's, set here."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise Rejection("BAD_INPUT", "visit must be a JSON object")
    visit = visit_from_json(
        {
            "date": today.isoformat(),
            "visit_type": payload.get("visit_type"),
            "diagnoses": payload.get("diagnoses") or [],
            "lines": payload.get("lines"),
            "use_personal_account": payload.get("use_personal_account") is True,
            "use_family_account": payload.get("use_family_account") is True,
        }
    )
    holder = payload.get("family_account_holder")
    if holder is not None and not isinstance(holder, str):
        raise Rejection("BAD_INPUT", "visit.use_family_account: the holder must be an insured id")
    return visit, holder or None


def _family_holder(store, insured_id: str, visit: Visit, requested: str | None) -> str | None:
    """The holder whose account pays (None when the visit does not use the family
    account); refused as the services refuse it when nobody shares one."""
    entry = store.insured_person(insured_id, with_accumulators=False)
    if entry is None:
        raise Rejection("UNKNOWN_PERSON", f"insured person {insured_id!r} is not in the roster")
    return services.family_holder(store, entry, visit, requested)


def _no_patient():
    return jsonify(
        {
            "ok": False,
            "errors": [
                {
                    "code": "NO_PATIENT",
                    "field": "patient",
                    "message": _("Read the patient's card or scan the e-voucher first."),
                }
            ],
        }
    ), 422


def _line_items(store, visit: Visit) -> list[dict]:
    items = store.catalog_items(line.code for line in visit.lines)
    return [
        {
            "name": items[line.code].name,
            "unit": items[line.code].unit,
            "price": str(items[line.code].price),
            "quantity": str(line.quantity),
        }
        if line.code in items
        else {"quantity": str(line.quantity)}
        for line in visit.lines
    ]


def _rejection_json(rejection: Rejection) -> dict:
    if rejection.code == quantities.CODE:
        return quantities.error_json(rejection)
    return messages.rejection_json(rejection)


@bp.post("/api/quote")
@require(*SETTLERS)
def quote():
    """The live preview: what confirming this visit now would give."""
    insured_id = current_patient()
    if insured_id is None:
        return _no_patient()
    store = get_store()
    try:
        visit, requested = _visit(now().date())
        quantities.check_whole_units(store, visit)
        holder = _family_holder(store, insured_id, visit, requested)
        settlement = services.quote_visit(store, insured_id, visit, family_account_holder=holder)
    except Rejection as rejection:
        return jsonify({"ok": False, "errors": [_rejection_json(rejection)]}), 422
    view = presenters.settlement_view(
        settlement.to_dict(),
        _line_items(store, visit),
        presenters.family_holder_text(holder, queries.person_name(store, holder or "")),
    )
    if settlement.total > services.MAX_VISIT_TOTAL:
        view["errors"] = [messages.rejection_json(Rejection("AMOUNT_TOO_LARGE", ""))]
    return jsonify({"ok": True, **view})


@bp.post("/api/settle")
@require(*SETTLERS)
def confirm():
    """Settle and record the visit; the page then shows the receipt."""
    insured_id = current_patient()
    if insured_id is None:
        return _no_patient()
    store = get_store()
    moment = now()
    draft = current_draft()
    assert draft is not None
    patient = draft.patient
    try:
        visit, holder = _visit(moment.date())
        quantities.check_whole_units(store, visit)
        identity = services.load_identity(store, current_app.config["DATA_DIR"])
        with store.write_transaction():  # the claims and the settlement: all or nothing
            queries.claim_visit_token(store, patient.get("visit_token", ""), moment)
            if patient.get("voucher_nonce"):
                queries.claim_voucher(store, patient["voucher_nonce"], insured_id, moment)
            recorded = services.settle_visit(
                store,
                identity,
                insured_id=insured_id,
                visit=visit,
                operator=g.operator.operator_id,
                now=moment,
                family_account_holder=holder,
            )
            drafts.discard(store, g.operator.operator_id, draft.draft_id)  # settled: done
    except Rejection as rejection:
        return jsonify({"ok": False, "errors": [_rejection_json(rejection)]}), 422
    record = recorded.record
    return jsonify(
        {
            "ok": True,
            "tx_id": record["tx_id"],
            "seq": record["seq"],
            "total": format_yuan(recorded.settlement.total),
            "needs_review": presenters.review_messages(recorded.needs_review),
            "receipt_url": url_for("records.receipt", tx_id=record["tx_id"]),
        }
    )
