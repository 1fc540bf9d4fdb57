"""The status page for coordinators: sync, records waiting, data versions and their age,
the ledger check, the card reader and printer, offline-limit warnings."""

from datetime import datetime

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from drivers.printer import PrinterError
from edge import services
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.money import format_yuan
from web_ui import messages, presenters, syncing
from web_ui.auth import now, require
from web_ui.context import get_store
from web_ui.risk import review_forecast

bp = Blueprint("status", __name__)
DATA_KINDS = {"catalog": _l("Catalog"), "policy": _l("Policy"), "roster": _l("Roster")}
VIEWERS = ("coordinator", "admin", "tester")
SYNCERS = ("coordinator", "admin")


def _installed(store: SqliteDeviceStore, table: str, moment: datetime) -> dict | None:
    row = store.db.execute(
        f"SELECT version, installed_at FROM {table} ORDER BY rowid DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    installed = datetime.fromisoformat(row[1] + "+00:00")
    return {
        "version": row[0],
        "installed_at": installed.astimezone(moment.tzinfo),
        "days": max(0, (moment - installed).days),
    }


def verification(store: SqliteDeviceStore):
    """The whole chain's check, remembered until the ledger grows (it is append-only)."""
    head = store.ledger_head()
    key = head.seq if head else 0
    cache = current_app.extensions.setdefault("clinic_verification", {})
    if cache.get("seq") != key:
        cache.update(seq=key, result=services.verify_ledger(store))
    return cache["result"]


def sync_view(info: dict) -> dict:
    """The agent's `sync_status` as the page shows it: online or not, and why."""
    error = info.get("last_error")
    installed = info.get("installed") or {}
    return {
        "enrolled": info.get("enrolled", False),
        "online": bool(info.get("enrolled") and info.get("last_success_at") and not error),
        "hub_url": info.get("hub_url"),
        "clinic": " ".join(
            str(info[k]) for k in ("county_name", "township", "clinic_code") if info.get(k)
        ),
        "last_success_at": info.get("last_success_at"),
        "last_attempt_at": info.get("last_attempt_at"),
        "error": sync_error_text(error) if error else None,
        "stale": [
            str(DATA_KINDS.get(kind, kind)) for kind, v in installed.items() if v.get("expired")
        ],
        "refused": [sync_error_text(r) for r in info.get("refused_updates") or []],
    }


def hours_since(stamp: str | None, moment: datetime) -> int | None:
    if stamp is None:
        return None
    return int((moment - datetime.fromisoformat(stamp)).total_seconds() // 3600)


@bp.get("/status")
@require(*VIEWERS)
def page():
    store = get_store()
    moment = now()
    device = store.device()
    hardware = current_app.extensions["clinic_hardware"]
    card = hardware.card_state()
    printer, printer_error = hardware.printer_status()
    sync_info, sync_error = None, None
    try:
        sync_info = syncing.status(store, moment)
    except syncing.SyncUnavailable:
        sync_error = _("Sync is not available in this build.")
    except Exception as error:  # the agent's own failure must not take the page down
        current_app.logger.exception("sync status")
        sync_error = str(error)
    limits = store.current_policy().offline_limits if store.policy_version() else None
    return render_template(
        "status.html",
        device=device,
        sync=sync_view(sync_info) if sync_info else None,
        sync_error=sync_error,
        hours_since_sync=hours_since(device.last_sync_at if device else None, moment),
        waiting=store.outbox_count(),
        versions=[
            (_("Catalog"), _installed(store, "catalog_version", moment)),
            (_("Policy"), _installed(store, "policy_version", moment)),
            (_("Roster"), _installed(store, "roster_version", moment)),
        ],
        ledger=verification(store) if device else None,
        card=card,
        card_message=messages.localized(card.error) if card.error else None,
        reader_url=hardware.reader_url,
        printer=printer,
        printer_message=(
            messages.localized(printer_error) if printer_error else _printer_problem(printer)
        ),
        printer_url=hardware.printer_url,
        limits=limits,
        unsynced_fund=format_yuan(device.unsynced_fund) if device else None,
        max_fund=format_yuan(limits.max_fund_since_sync)
        if limits and limits.max_fund_since_sync is not None
        else None,
        review=presenters.review_messages(review_forecast(store, moment)),
        can_sync=syncing.available(),
    )


def _printer_problem(printer) -> str | None:
    if printer is None or printer.problem is None:
        return None
    return messages.localized(PrinterError(printer.problem))


@bp.post("/status/sync")
@require(*SYNCERS)
def sync_now():
    store = get_store()
    try:
        result = syncing.sync_now(
            store,
            services.load_identity(store, current_app.config["DATA_DIR"]),
            current_app.config["DATA_DIR"],
            now(),
        )
    except syncing.SyncUnavailable:
        flash(_("Sync is not available in this build."), "error")
    except Exception as error:  # network, hub, refusal: shown, never a stack trace
        current_app.logger.exception("sync now")
        flash(_("Sync failed: %(error)s", error=sync_error_text(error)), "error")
    else:
        for failure in result.get("errors") or []:
            flash(_("Sync failed: %(error)s", error=sync_error_text(failure)), "error")
        if result.get("ok", True):
            flash(_("Sync finished: %(result)s", result=_summary(result)), "info")
    return redirect(url_for("status.page"))


def sync_error_text(error) -> str:
    locale = get_locale()
    return syncing.error_message(error, locale is not None and locale.language == "en")


def _summary(result: dict) -> str:
    return ", ".join(
        f"{k}: {v}"
        for k, v in result.items()
        if not isinstance(v, dict | list) and v is not None and k not in ("ok", "started_at")
    )
