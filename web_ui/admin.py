"""Administration: the device identity, enrollment with the county hub, operators and
backups."""

import sqlite3

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _

from edge import services
from edge.adapters.sqlite_store import private_database_file
from web_ui import accounts, messages, syncing
from web_ui.auth import now, require
from web_ui.context import data_dir, get_store
from web_ui.status import sync_error_text

bp = Blueprint("admin", __name__, url_prefix="/admin")
BACKUP_DIR = "backups"


@bp.get("")
@require("admin")
def page():
    store = get_store()
    backups = sorted((data_dir() / BACKUP_DIR).glob("*.db"), reverse=True)[:10]
    return render_template(
        "admin.html",
        device=store.device(),
        operators=accounts.operators(store),
        roles=accounts.ROLES,
        backups=[(p.name, p.stat().st_size) for p in backups],
        sync_available=syncing.available(),
        now=now(),
    )


def _account_error(error: accounts.AccountError) -> None:
    flash(str(messages.ACCOUNT_ERRORS.get(error.code, error.code)), "error")


@bp.post("/operators")
@require("admin")
def add_operator():
    form = request.form
    try:
        accounts.add_operator(
            get_store(),
            data_dir(),
            form.get("operator_id", "").strip(),
            form.get("name", ""),
            form.get("role", ""),
            form.get("pin", ""),
            now=now(),
            by=g.operator.operator_id,
            cost=current_app.config["PIN_HASH_COST"],
        )
    except accounts.AccountError as error:
        _account_error(error)
    else:
        flash(_("Operator added."), "info")
    return redirect(url_for("admin.page"))


@bp.post("/operators/<operator_id>/pin")
@require("admin")
def reset_pin(operator_id: str):
    try:
        accounts.set_pin(
            get_store(),
            data_dir(),
            operator_id,
            request.form.get("pin", ""),
            now=now(),
            by=g.operator.operator_id,
            cost=current_app.config["PIN_HASH_COST"],
        )
    except accounts.AccountError as error:
        _account_error(error)
    else:
        if operator_id == g.operator.operator_id:  # this session goes on; every other ends
            changed = accounts.get_operator(get_store(), operator_id)
            session["sv"] = changed.session_version if changed else None
        flash(_("PIN set for %(operator)s.", operator=operator_id), "info")
    return redirect(url_for("admin.page"))


@bp.post("/operators/<operator_id>/active")
@require("admin")
def set_active(operator_id: str):
    active = request.form.get("active") == "1"
    try:
        accounts.set_active(
            get_store(), data_dir(), operator_id, active, now=now(), by=g.operator.operator_id
        )
    except accounts.AccountError as error:
        _account_error(error)
    else:
        flash(_("Operator enabled.") if active else _("Operator disabled."), "info")
    return redirect(url_for("admin.page"))


@bp.post("/backup")
@require("admin")
def backup():
    """A consistent copy of the device store (SQLite's online backup API)."""
    folder = data_dir() / BACKUP_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    target = folder / f"clinic-{now().strftime('%Y%m%d-%H%M%S')}.db"
    private_database_file(target)  # 0600 from the start, not after the copy
    destination = sqlite3.connect(target)
    try:
        with destination:
            get_store().db.conn.backup(destination)
    finally:
        destination.close()
    target.chmod(0o600)
    flash(_("Backup written to %(path)s.", path=str(target)), "info")
    return redirect(url_for("admin.page"))


@bp.post("/enroll")
@require("admin")
def enroll():
    store = get_store()
    hub_url = request.form.get("hub_url", "").strip()
    code = request.form.get("code", "").strip()
    # The certificate the county handed out, pasted: every later request trusts only it.
    certificate = request.form.get("hub_certificate", "").strip() or None
    if not hub_url.startswith(("http://", "https://")) or not code:
        flash(_("Give the hub's address (http:// or https://) and the one-time code."), "error")
        return redirect(url_for("admin.page"))
    try:
        result = syncing.enroll(
            store,
            services.load_identity(store, data_dir()),
            data_dir(),
            hub_url,
            code,
            now(),
            hub_certificate=certificate,
            plain_http_lab=request.form.get("plain_http_lab") == "1",
        )
    except syncing.SyncUnavailable:
        flash(_("Sync is not available in this build: enrollment is not possible."), "error")
    except Exception as error:  # network, refusal by the hub: shown, never a stack trace
        current_app.logger.exception("enroll")
        flash(_("Enrollment failed: %(error)s", error=sync_error_text(error)), "error")
    else:
        flash(
            _(
                "Enrolled with the county hub: %(result)s",
                result=", ".join(
                    f"{k}: {v}" for k, v in result.items() if not isinstance(v, dict | list)
                ),
            ),
            "info",
        )
    return redirect(url_for("admin.page"))
