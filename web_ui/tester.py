"""The tester panel: the hands that insert and remove virtual cards in the emulated
reader, demo e-vouchers to scan, and what the emulated printer has printed."""

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import segno
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from drivers import escpos
from drivers.cards import CardError, demo_cards
from drivers.demo_county_key import DEMO_COUNTY_CODE, demo_county_private_key
from drivers.vouchers import mint_voucher
from web_ui import messages
from web_ui.auth import now, require
from web_ui.context import hardware
from web_ui.records import svg_response

bp = Blueprint("tester", __name__)


def _printed_text() -> str | None:
    """The emulated printer's paper roll as text (the last receipts), if there is one."""
    url = current_app.config["PRINTER"] or ""
    if not url.startswith("emulated://"):
        return None
    path = Path(urlsplit(url).path)
    if not path.exists():
        return ""
    data = path.read_bytes()[-20000:]
    cut = data.find(escpos.initialise())
    return escpos.render_text(data[cut:] if cut >= 0 else data)


@bp.get("/tester")
@require("tester", demo_opens=True)
def page():
    today = now().date()
    cards = [card.to_dict(today) for card in demo_cards(today)]
    return render_template(
        "tester.html",
        cards=cards,
        inserted=hardware().inserted_card(),
        emulated=hardware().emulated,
        voucher=request.args.get("voucher"),
        printed=_printed_text(),
        demo_key=current_app.config["DEMO"],
    )


@bp.post("/tester/insert")
@require("tester", demo_opens=True)
def insert():
    try:
        hardware().insert(request.form.get("card", ""))
    except CardError as error:
        flash(messages.localized(error) + f" [{error.code}]", "error")
    else:
        flash(_("Card %(card)s inserted.", card=request.form.get("card", "")), "info")
    return redirect(url_for("tester.page"))


@bp.post("/tester/remove")
@require("tester", demo_opens=True)
def remove():
    try:
        hardware().remove()
    except CardError as error:
        flash(messages.localized(error) + f" [{error.code}]", "error")
    else:
        flash(_("Card removed."), "info")
    return redirect(url_for("tester.page"))


@bp.post("/tester/voucher")
@require("tester", demo_opens=True)
def voucher():
    """A demo e-voucher, signed with the DEMO county key (demo terminals only)."""
    if not current_app.config["DEMO"]:
        flash(_("Demo e-vouchers are only available in demo mode."), "error")
        return redirect(url_for("tester.page"))
    try:
        token = mint_voucher(
            demo_county_private_key(),
            insured_id=request.form.get("insured_id", ""),
            county=DEMO_COUNTY_CODE,
            now=now(),
            valid_for=timedelta(minutes=10),
        )
    except ValueError:
        flash(_("Choose an insured person."), "error")
        return redirect(url_for("tester.page"))
    return redirect(url_for("tester.page", voucher=token))


@bp.get("/tester/voucher.svg")
@require("tester", demo_opens=True)
def voucher_qr():
    token = request.args.get("token", "")[:2000]
    return svg_response(segno.make_qr(token or "-", error="M"))
