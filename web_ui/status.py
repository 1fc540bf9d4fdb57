"""The status page for coordinators: sync, records waiting, data versions and their age,
the ledger check, the card reader and printer, offline-limit warnings."""

from datetime import UTC, datetime

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from drivers.printer import PrinterError
from edge import services
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.adapters.web_security import safe_local_path
from edge.clock import CLINIC_TZ
from edge.domain.money import format_yuan
from web_ui import auth, messages, presenters, syncing
from web_ui.auth import now, require
from web_ui.context import get_store
from web_ui.risk import review_forecast

bp = Blueprint("status", __name__)
# A software release's state on this terminal (docs/releases.md, "On the device").
RELEASE_STATES = {
    "downloading": _l("downloading"),
    "ready": _l("downloaded, waiting to be installed"),
    "installing": _l("being installed"),
    "installed": _l("installed"),
    "rolled_back": _l("rolled back: the terminal did not answer with it"),
    "refused": _l("refused"),
}
DATA_KINDS = {
    "catalog": _l("Catalog"),
    "policy": _l("Policy"),
    "roster": _l("Roster"),
    "aliases": _l("Search aliases"),
}
# What makes the strip say the terminal's data is stale: what prices and pays a visit. An
# expired alias list only means search knows fewer nicknames; the status page shows it.
STRIP_STALE_KINDS = ("catalog", "policy", "roster")
VIEWERS = ("coordinator", "admin", "tester")
SYNCERS = ("coordinator", "admin")
# Who may press 立即同步 on the status strip: every signed-in operator.
STRIP_SYNCERS = ("doctor", "tester", "coordinator", "admin")
# The strip asks for its state by itself: that must not keep an idle session alive.
auth.BACKGROUND.add("status.strip")

# What the strip says about the hub, by `sync.agent.status.connection`'s state. An answer
# not signed by the county is no answer (`sync.agent.jobs.UNREACHED`).
NETWORK_ERRORS = (
    "HUB_UNREACHABLE",
    "HUB_ERROR",
    "BAD_RESPONSE",
    "AGENT_ERROR",
    "ANSWER_UNSIGNED",
    "BAD_ANSWER_SIGNATURE",
)


# ---- times as people read them ------------------------------------------------------------


def local_time(stamp: str | datetime | None, moment: datetime) -> str | None:
    """A stored time as the terminal shows it: "14:05" today, "11月26日 14:05" this year,
    "2025年11月26日 14:05" before; in English "14:05", "Nov 26 14:05", "Nov 26, 2025 14:05".
    Never an ISO string."""
    if stamp is None or stamp == "":
        return None
    when = stamp if isinstance(stamp, datetime) else datetime.fromisoformat(stamp)
    if when.tzinfo is None:  # the store's UTC stamps (installed_at) carry no offset
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(CLINIC_TZ)
    today = moment.astimezone(CLINIC_TZ).date()
    clock = when.strftime("%H:%M")
    if when.date() == today:
        return clock
    if _english():
        day = when.strftime("%b ") + str(when.day)
        if when.year == today.year:
            return f"{day} {clock}"
        return f"{day}, {when.year} {clock}"
    if when.year == today.year:
        return _("%(month)d/%(day)d %(time)s", month=when.month, day=when.day, time=clock)
    return _(
        "%(month)d/%(day)d/%(year)d %(time)s",
        year=when.year,
        month=when.month,
        day=when.day,
        time=clock,
    )


def _english() -> bool:
    locale = get_locale()
    return locale is not None and locale.language == "en"


@bp.app_template_filter("local_time")
def _local_time_filter(stamp) -> str:
    return local_time(stamp, now()) or ""


# ---- the status strip on every page --------------------------------------------------------


def strip_state(store: SqliteDeviceStore, moment: datetime) -> dict | None:
    """What the strip on every page says, in plain words: 在线 / 离线 · N笔待上传 · 上次同步
    14:05 / 设备已停用 / 同步出错, and the county data that has expired. None when this build
    has no sync agent."""
    try:
        info = syncing.status(store, moment)
    except syncing.SyncUnavailable:
        return None
    waiting = info.get("records_waiting") or 0
    last_sync = local_time(info.get("last_sync_at"), moment)
    connection = info.get("connection") or {"state": "unknown", "error": None}
    if info.get("revoked"):
        state, label, level = "revoked", _("Device withdrawn"), "danger"
        message = _(
            "The county has withdrawn this terminal: settling and reversing are stopped."
            " Call the county medical insurance office."
        )
    elif not info.get("enrolled"):
        state, label, level = "not_enrolled", _("Not enrolled with the county"), "warning"
        message = _("This terminal is not enrolled with a county hub yet: it settles offline.")
    elif connection["state"] == "online":
        state, label, level = "online", _("Online"), "ok"
        message = None
    elif connection["state"] == "refused":
        state, label, level = "refused", _("Sync problem"), "warning"
        message = _(
            "The county hub refused this terminal's data: settling goes on; the coordinator"
            " can see why on the status page."
        )
    elif connection["state"] == "offline":
        state, label, level = "offline", _("Offline"), "warning"
        message = _("The county hub cannot be reached: settling goes on and uploads later.")
    else:  # no answer lately: the agent has not asked (not running, or just started)
        state, label, level = "offline", _("Offline"), "warning"
        message = _("No contact with the county hub lately: settling goes on and uploads later.")
    parts = []
    if waiting:
        parts.append(_("%(count)d waiting to upload", count=waiting))
    parts.append(_("last sync %(time)s", time=last_sync) if last_sync else _("never synced"))
    stale = [
        _("The %(kind)s has expired: sync, or ask the county for a new one.", kind=kind_name)
        for kind, v in (info.get("installed") or {}).items()
        if v.get("expired") and kind in STRIP_STALE_KINDS
        for kind_name in [str(DATA_KINDS.get(kind, kind))]
    ]
    if stale and level == "ok":
        level = "warning"
    return {
        "state": state,
        "label": label,
        "level": level,
        "parts": parts,
        "text": " · ".join([label, *parts]),
        "message": message,
        "stale": stale,
        "waiting": waiting,
        "last_sync": last_sync,
        "can_sync": g.get("operator") is not None
        and g.operator.role in STRIP_SYNCERS
        and state not in ("not_enrolled", "revoked"),
    }


@bp.app_context_processor
def _strip_context() -> dict:
    def status_strip() -> dict | None:
        try:
            return strip_state(get_store(), now())
        except Exception:  # the strip must never take a page down
            current_app.logger.exception("status strip")
            return None

    return {"status_strip": status_strip}


@bp.get("/api/status-strip")
def strip():
    """The strip's state for its poller (any page, signed in or not: nothing private)."""
    return jsonify(strip_state(get_store(), now()))


@bp.post("/api/sync-now")
@require(*STRIP_SYNCERS)
def strip_sync():
    """立即同步 from the strip: one plain sentence, and the strip as it stands after (as
    JSON for the strip's script; without it, the sentence is flashed on the page the
    operator was on)."""
    store = get_store()
    moment = now()
    try:
        result = syncing.sync_now(
            store,
            services.load_identity(store, current_app.config["DATA_DIR"]),
            current_app.config["DATA_DIR"],
            moment,
        )
    except syncing.SyncUnavailable:
        ok, message = False, _("Sync is not available in this build.")
    except Exception:  # network, hub, refusal: a sentence, never a stack trace
        current_app.logger.exception("sync now")
        ok, message = False, _("Sync did not finish: try again in a minute.")
    else:
        ok = bool(result.get("ok"))
        message = _("Sync finished.") if ok else first_error_text(result.get("errors") or [])
    if not request.is_json:
        flash(message, "info" if ok else "error")
        return redirect(safe_local_path(request.form.get("next")) or url_for("auth.home"))
    return jsonify({"ok": ok, "message": message, "strip": strip_state(store, now())})


def first_error_text(errors: list[dict]) -> str:
    """One plain sentence for a failed sync, however many jobs failed (and why)."""
    codes = [e.get("code") for e in errors]
    if any(code in ("DEVICE_REVOKED", "SLOT_REVOKED") for code in codes):
        return _(
            "The county has withdrawn this terminal: it can no longer settle or reverse"
            " settlements. Call the county medical insurance office."
        )
    if any(code in NETWORK_ERRORS for code in codes):
        return _(
            "The county hub cannot be reached. Settling goes on offline; the records upload"
            " by themselves when the network is back."
        )
    if "NOT_ENROLLED" in codes:
        return _("This terminal is not enrolled with a county hub yet: it settles offline.")
    if "BUSY" in codes:
        return _("A sync is already running: wait a moment.")
    return _(
        "The county hub refused part of the sync: settling goes on; the coordinator can see"
        " why on the status page."
    )


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


def sync_view(info: dict, moment: datetime) -> dict:
    """The agent's `sync_status` as the status page shows it: online or not and why, in
    plain words, with the technical detail once for the coordinator."""
    installed = info.get("installed") or {}
    connection = info.get("connection") or {"state": "unknown", "error": None}
    error = connection.get("error")
    revoked = info.get("revoked")
    problem: dict | None = revoked or error
    return {
        "enrolled": info.get("enrolled", False),
        "online": bool(info.get("enrolled") and connection["state"] == "online" and not revoked),
        "revoked": bool(revoked),
        "hub_url": info.get("hub_url"),
        "hub_certificate": info.get("hub_certificate_fingerprint"),
        "plain_http_lab": bool(info.get("plain_http_lab")),
        "clinic": " ".join(
            str(info[k]) for k in ("county_name", "township", "clinic_code") if info.get(k)
        ),
        "last_success_at": local_time(info.get("last_success_at"), moment),
        "last_attempt_at": local_time(connection.get("checked_at"), moment),
        # Offline is said by the strip above; a refusal is said here, its detail below.
        "error": first_error_text([error])
        if error and not revoked and connection["state"] == "refused"
        else None,
        "detail": _detail(problem) if problem else None,
        "stale": [
            str(DATA_KINDS.get(kind, kind)) for kind, v in installed.items() if v.get("expired")
        ],
        "refused": [sync_error_text(r) for r in info.get("refused_updates") or []],
        "software": software_view(info.get("software")),
    }


def software_view(software: dict | None) -> dict | None:
    """The running version, and the latest release's state here with why."""
    if not software:
        return None
    release = software.get("release") or None
    if release:
        why = None
        if release.get("code"):
            error = {"message_zh": release.get("message_zh"), "message": release.get("detail")}
            why = sync_error_text(error)
        state = str(RELEASE_STATES.get(release.get("state"), release.get("state")))
        release = {"version": release.get("version"), "state": state, "why": why}
    return {"version": software.get("version"), "release": release}


def _detail(error: dict) -> str:
    """For the coordinator, once: the hub's code and the technical reason."""
    text = error.get("message") or error.get("detail") or ""
    return f"{error.get('code')}: {text}" if text else str(error.get("code"))


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
    except Exception:  # the agent's own failure must not take the page down
        current_app.logger.exception("sync status")
        sync_error = _("The sync agent's state cannot be read: see the terminal's log.")
    limits = store.current_policy().offline_limits if store.policy_version() else None
    return render_template(
        "status.html",
        device=device,
        sync=sync_view(sync_info, moment) if sync_info else None,
        sync_error=sync_error,
        hours_since_sync=hours_since(device.last_sync_at if device else None, moment),
        waiting=store.outbox_count(),
        versions=[
            (_("Catalog"), _installed(store, "catalog_version", moment)),
            (_("Policy"), _installed(store, "policy_version", moment)),
            (_("Roster"), _installed(store, "roster_version", moment)),
            (_("Search aliases"), _installed(store, "search_alias_version", moment)),
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
    except Exception:  # network, hub, refusal: one sentence, never a stack trace
        current_app.logger.exception("sync now")
        flash(_("Sync did not finish: try again in a minute."), "error")
    else:
        if result.get("ok"):
            flash(_("Sync finished: %(result)s", result=_summary(result)), "info")
        else:  # one message however many jobs failed; the detail is on the page, once
            flash(_("Sync failed: %(error)s", error=first_error_text(result["errors"])), "error")
    return redirect(url_for("status.page"))


def sync_error_text(error) -> str:
    locale = get_locale()
    return syncing.error_message(error, locale is not None and locale.language == "en")


def _summary(result: dict) -> str:
    parts = [_("%(count)d records uploaded", count=result.get("uploaded") or 0)]
    applied = result.get("updates_applied") or []
    if applied:
        parts.append(_("%(count)d county updates installed", count=len(applied)))
    parts.append(_("%(count)d waiting", count=result.get("records_waiting") or 0))
    return _(", ").join(parts)
