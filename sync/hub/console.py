"""The county hub's web console: fleet status for coordinators (limited to their
township), and for admins device provisioning and revocation, publishing catalog, policy
and roster versions (with a diff against the current one), reconciliation, CSV exports;
software releases and their rollout (withdrawing one: admins).

Server-rendered Jinja templates (`templates/console/`), in Chinese unless English is
chosen (Flask-Babel; the catalog is `translations/`, `python -m sync.hub.i18n`). Sign-in
with a password kept as an scrypt hash and a lock-out after repeated failures; the session
cookie carries only a random id of a session the hub keeps (`console_auth`); every form
carries Flask-WTF's CSRF token; the Content Security Policy allows no script at all (there
is none) and only the console's own stylesheet. Registering the blueprint sets up the
session cookie, CSRFProtect (the signed device API is exempt) and Babel on the app.
"""

import json
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import Babel, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from edge.adapters.catalog_files import open_catalog_file
from edge.adapters.web_security import safe_local_path, security_headers
from edge.domain.model import Rejection
from edge.domain.money import format_yuan
from sync.hub.api import api
from sync.hub.console_auth import (
    SESSION_LIFETIME,
    SignInRefused,
    Viewer,
    end_sessions,
    session_viewer,
    sign_in,
    start_session,
)
from sync.hub.model import HubError
from sync.hub.reconcile import NEEDS_REVIEW
from sync.hub.runtime import hub_runtime, hub_store
from sync.hub.services import county, enrollment, publishing, releases, reports
from sync.protocol import iso, parse_time

console = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="console_static",
    static_url_path="/static",
)

LANGUAGES = ("zh", "en")
TRANSLATIONS = Path(__file__).with_name("translations")
SECURITY_HEADERS = security_headers(  # no script at all: there is none
    "default-src 'none'",
    "style-src 'self'",
    "img-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
)
STYLESHEET_MAX_AGE_S = 3600
UPLOAD_DIR = "console-uploads"
KIND_NAMES = {"catalog": _l("catalog"), "policy": _l("policy"), "roster": _l("roster")}
STATE_NAMES = {
    "enrolled": _l("enrolled"),
    "awaiting_enrollment": _l("awaiting enrollment"),
    "code_expired": _l("code expired"),
    "revoked": _l("revoked"),
}
# The payers by their national names (`setlinfo`, reports.PAYERS), as people call them.
PAYER_NAMES = {
    "medfee_sumamt": _l("total"),
    "hifp_pay": _l("basic fund"),
    "hifmi_pay": _l("critical illness insurance"),
    "maf_pay": _l("medical assistance"),
    "cvlserv_pay": _l("civil servants' subsidy"),
    "oth_pay": _l("veterans' and other subsidies"),
    "acct_pay": _l("personal account"),
    "acct_mulaid_pay": _l("family account"),
    "psn_cash_pay": _l("cash"),
}
# Rows per page of the console's listings: every page reads and shows a bounded amount
# whatever the fleet's size (10,000 devices, a million records).
FLEET_PAGE = 100
LIST_PAGE = 50
LAST_PAGE = 100_000  # a bound on ?page=, so the OFFSET stays an ordinary number
HEARTBEAT_SHOWN = 4000  # characters of a device's last heartbeat on its page
RELEASE_STATE_NAMES = {
    "pending": _l("not yet"),
    "downloading": _l("downloading"),
    "ready": _l("downloaded, waiting to install"),
    "installing": _l("installing"),
    "installed": _l("installed"),
    "rolled_back": _l("rolled back"),
    "refused": _l("refused"),
}
ERROR_MESSAGES = {
    403: _l("Only county administrators may do this."),
    404: _l("There is no such page or record."),
    405: _l("This page does not take that kind of request."),
    413: _l("The file is too large."),
}

csrf = CSRFProtect()
babel = Babel()


def render(name: str, **context) -> str:
    context.setdefault("viewer", current_viewer())
    return render_template(
        f"console/{name}",
        kind_names=KIND_NAMES,
        state_names=STATE_NAMES,
        release_state_names=RELEASE_STATE_NAMES,
        payer_names=PAYER_NAMES,
        field_name=reports.national_field,
        yuan=format_yuan,
        lang=_locale(),
        **context,
    )


# ---- the app, sessions, languages, roles ---------------------------------------------------


@console.record_once
def _install(state) -> None:
    """What the console needs of the app it is registered on."""
    app = state.app
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_LIFETIME
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # the token lives as long as the session
    # Over HTTPS Flask-WTF would also want a same-site Referer, which browsers never send
    # under `Referrer-Policy: no-referrer`; the token and the SameSite=Strict cookie stay.
    app.config.setdefault("WTF_CSRF_SSL_STRICT", False)
    csrf.init_app(app)
    csrf.exempt(api)  # device requests are signed and carry no cookie
    babel.init_app(
        app,
        default_locale="zh",
        default_translation_directories=str(TRANSLATIONS),
        locale_selector=_locale,
    )


def _locale() -> str:
    lang = session.get("lang")
    return lang if lang in LANGUAGES else "zh"


@console.after_request
def _secure_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint == "console.static":
        response.headers["Cache-Control"] = f"max-age={STYLESHEET_MAX_AGE_S}"
    else:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def current_viewer() -> Viewer | None:
    """The signed-in user as the hub's session table has them now (read once a request)."""
    if "viewer" not in g:
        session_id = session.get("sid")
        g.viewer = (
            session_viewer(hub_store(), session_id, hub_runtime().now())
            if isinstance(session_id, str)
            else None
        )
    return g.viewer


def _within_console(target: str, default: str) -> str:
    """`target` when it is a path of the console, else `default`: no open redirect, and no
    control character that would split the Location header (`safe_local_path`)."""
    target = safe_local_path(target) or ""
    return target if target.startswith("/console/") else default


def _new_session(**values) -> None:
    """A fresh session (signing in or out), keeping only the chosen language."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    session.update(values)


def signed_in(admin: bool = False) -> Callable:
    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args, **kwargs):
            viewer = current_viewer()
            if viewer is None:
                return redirect(url_for("console.login", next=request.path))
            if admin and not viewer.is_admin:
                abort(403)
            return view(viewer, *args, **kwargs)

        return wrapped

    return decorate


def visible_slots(viewer: Viewer, township: str | None = None):
    """The slots this viewer may see, optionally one township's."""
    township = viewer.township or township
    return hub_store().slots(township)


def visible_devices(viewer: Viewer, township: str | None = None) -> list[str] | None:
    if viewer.township is None and not township:
        return None
    return [s.device_id for s in visible_slots(viewer, township) if s.device_id]


# ---- sign-in ------------------------------------------------------------------------------------


@console.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        try:
            viewer = sign_in(
                hub_store(),
                request.form.get("username", ""),
                request.form.get("password", ""),
                hub_runtime().now(),
            )
        except SignInRefused as refused:
            error = (
                _("This user is locked out until %(time)s.", time=refused.locked_until)
                if refused.code == "LOCKED"
                else _("Wrong user name or password.")
            )
        else:
            _new_session(sid=start_session(hub_store(), viewer, hub_runtime().now()))
            session.permanent = True
            return redirect(_within_console(request.args.get("next", ""), url_for("console.fleet")))
    return render("login.html", viewer=None, error=error), 401 if error else 200


@console.post("/logout")
def logout():
    viewer = current_viewer()
    if viewer is not None:  # every session of this user ends, copies of the cookie too
        end_sessions(hub_store(), viewer.username)
    _new_session()
    return redirect(url_for("console.login"))


@console.post("/lang")
def language():
    if request.form.get("lang") in LANGUAGES:
        session["lang"] = request.form["lang"]
    return redirect(_within_console(request.form.get("next", ""), url_for("console.fleet")))


# ---- paging ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pager:
    """One page of a listing: its number, and the links to the pages beside it."""

    number: int
    prev_url: str | None
    next_url: str | None


def _page_of(arg: str) -> int:
    """The page asked for in ?`arg`= (1 when absent or not a number in range)."""
    number = request.args.get(arg, "")
    return int(number) if number.isdigit() and 1 <= int(number) <= LAST_PAGE else 1


def _page_url(arg: str, number: int) -> str:
    values: dict[str, Any] = {**(request.view_args or {}), **request.args.to_dict()}
    values[arg] = number
    if number == 1:
        del values[arg]
    return url_for(request.endpoint or "console.fleet", **values)


def paged(arg: str, size: int, fetch: Callable[[int, int], Sequence]) -> tuple[list, Pager]:
    """(this page's rows, its pager): `fetch(limit, offset)` reads one row more than a
    page, which says whether there is a next page without counting the whole table."""
    number = _page_of(arg)
    rows = list(fetch(size + 1, (number - 1) * size))
    more = len(rows) > size
    return rows[:size], Pager(
        number,
        _page_url(arg, number - 1) if number > 1 else None,
        _page_url(arg, number + 1) if more else None,
    )


def chosen_township(viewer: Viewer) -> str | None:
    """The township a listing shows: a coordinator's own, or the one an admin chose."""
    return viewer.township or request.args.get("township") or None


# ---- fleet status ----------------------------------------------------------------------------


@console.get("/")
@signed_in()
def fleet(viewer: Viewer):
    township = chosen_township(viewer)
    store = hub_store()
    slots, pager = paged("page", FLEET_PAGE, lambda n, at: store.slots_page(township, n, at))
    rows = reports.fleet_rows(store, hub_runtime().now(), slots)
    townships = store.townships() if viewer.is_admin else []
    return render("fleet.html", rows=rows, township=township, townships=townships, pager=pager)


@console.get("/devices/<device_id>")
@signed_in()
def device(viewer: Viewer, device_id: str):
    store = hub_store()
    slot = store.slot_by_device(device_id)
    if slot is None or not viewer.may_see(slot.township):
        abort(404)
    (row,) = reports.fleet_rows(store, hub_runtime().now(), [slot])
    records, records_pager = paged(
        "records", LIST_PAGE, lambda n, at: store.records_page(device_id, n, at)
    )
    alarms, alarms_pager = paged(
        "alarms",
        LIST_PAGE,
        lambda n, at: store.alarms_page(device_id=device_id, open_only=False, limit=n, offset=at),
    )
    items, items_pager = paged(
        "items",
        LIST_PAGE,
        lambda n, at: store.reconciliation_page(device_id=device_id, limit=n, offset=at),
    )
    heartbeat = json.dumps(slot.heartbeat_doc, ensure_ascii=False, indent=1)
    if len(heartbeat) > HEARTBEAT_SHOWN:
        heartbeat = heartbeat[:HEARTBEAT_SHOWN] + "\n…"
    return render(
        "device.html",
        row=row,
        slot=slot,
        records=records,
        records_pager=records_pager,
        alarms=alarms,
        alarms_pager=alarms_pager,
        items=items,
        items_pager=items_pager,
        heartbeat=heartbeat,
    )


@console.get("/alarms")
@signed_in()
def alarms(viewer: Viewer):
    township = chosen_township(viewer)
    show_cleared = request.args.get("cleared") == "1"
    rows, pager = paged(
        "page",
        LIST_PAGE,
        lambda n, at: hub_store().alarms_page(
            township=township, open_only=not show_cleared, limit=n, offset=at
        ),
    )
    return render(
        "alarms.html", alarms=rows, pager=pager, township=township, show_cleared=show_cleared
    )


@console.get("/reconciliation")
@signed_in()
def reconciliation(viewer: Viewer):
    township = chosen_township(viewer)
    show_reviews = request.args.get("reviews") == "1"
    items, pager = paged(
        "page",
        LIST_PAGE,
        lambda n, at: hub_store().reconciliation_page(
            township=township,
            except_code=None if show_reviews else NEEDS_REVIEW,
            limit=n,
            offset=at,
        ),
    )
    return render(
        "reconciliation.html",
        items=items,
        pager=pager,
        township=township,
        show_reviews=show_reviews,
    )


@console.get("/export/<what>.csv")
@signed_in()
def export_csv(viewer: Viewer, what: str):
    township = chosen_township(viewer)
    devices = visible_devices(viewer, township)
    if what == "settlements":
        text = reports.settlements_csv(hub_store(), devices)
    elif what == "reconciliation":
        text = reports.reconciliation_csv(hub_store(), devices)
    else:
        abort(404)
    response = Response("\ufeff" + text, mimetype="text/csv")
    response.headers["Content-Disposition"] = f"attachment; filename={what}.csv"
    return response


# ---- devices and provisioning (admins) -----------------------------------------------------------


@console.route("/admin/devices", methods=["GET", "POST"])
@signed_in(admin=True)
def devices(viewer: Viewer):
    store, now = hub_store(), hub_runtime().now()
    provisioned, error = None, None
    if request.method == "POST":
        try:
            if request.form.get("action") == "revoke":
                reason = request.form.get("reason", "") or f"console: {viewer.username}"
                county.revoke(store, request.form.get("target", ""), now, reason)
            else:
                provisioned = county.provision(
                    store,
                    clinic_code=request.form.get("clinic_code", ""),
                    township=request.form.get("township", ""),
                    now=now,
                )
        except HubError as refused:
            error = str(refused)
    slots, pager = paged("page", FLEET_PAGE, lambda n, at: store.slots_page(None, n, at))
    prefix = enrollment.ENROLLMENT_ALARM
    return render(
        "devices.html",
        rows=reports.fleet_rows(store, now, slots),
        pager=pager,
        provisioned=provisioned,
        error=error,
        county=county.county_of(store),
        # Guessed enrollment codes: alarms of a client address, not of a device.
        enrollment_alarms=[
            (a.device_id.removeprefix(prefix), a)
            for a in store.alarms_page(device_prefix=prefix, limit=LIST_PAGE, offset=0)
        ],
    )


# ---- publishing (admins) ---------------------------------------------------------------------


def _upload_dir() -> Path:
    path = hub_runtime().data_dir / UPLOAD_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    return path


_STAGED_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,}\.(csv|json)")


def _staged(token: str) -> Path:
    if not _STAGED_TOKEN.fullmatch(token or ""):
        abort(400)
    path = _upload_dir() / token
    if not path.exists():
        raise HubError(_("The uploaded file is gone: upload it again."))
    return path


def _read_upload(kind: str, path: Path, version: str | None):
    """(items or document, version) from a staged upload; raises HubError when unusable."""
    try:
        if kind == "catalog":
            catalog_file = open_catalog_file(path)
            return list(catalog_file.items), version or catalog_file.version
        document = json.loads(path.read_text(encoding="utf-8-sig"))
        return document, version or (
            document.get("version") if isinstance(document, dict) else None
        )
    except (Rejection, ValueError, OSError) as error:
        message = error.message if isinstance(error, Rejection) else str(error)
        raise HubError(_("The file cannot be read: %(reason)s", reason=message)) from None


@console.route("/admin/publish/<kind>", methods=["GET", "POST"])
@signed_in(admin=True)
def publish(viewer: Viewer, kind: str):
    if kind not in KIND_NAMES:
        abort(404)
    store, now = hub_store(), hub_runtime().now()
    latest = store.latest_publication(kind)
    context: dict = {
        "kind": kind,
        "latest": latest,
        "error": None,
        "preview": None,
        "published": None,
    }
    if request.method == "POST":
        step = request.form.get("step")
        version = request.form.get("version", "").strip() or None
        expires = request.form.get("expires", "").strip()
        try:
            expires_at = parse_time(
                f"{expires}T00:00:00+08:00" if len(expires) == 10 else expires, "expires"
            )
        except Exception:
            context["error"] = _("The expiry must be a date, YYYY-MM-DD.")
            return render("publish.html", **context), 400
        try:
            if step == "preview":
                upload = request.files.get("file")
                if upload is None or not upload.filename:
                    raise HubError(_("Choose a file."))
                suffix = ".json" if upload.filename.lower().endswith(".json") else ".csv"
                token = secrets.token_urlsafe(16) + suffix
                upload.save(_upload_dir() / token)
                content, version = _read_upload(kind, _upload_dir() / token, version)
                context["preview"] = {
                    "token": token,
                    "version": version,
                    "expires": expires,
                    "diff": publishing.catalog_diff(store, content) if kind == "catalog" else None,
                    "summary": _summary(kind, content),
                }
            elif step == "publish":
                path = _staged(request.form.get("token", ""))
                content, version = _read_upload(kind, path, version)
                key = hub_runtime().county_key
                given = {"items": content} if kind == "catalog" else {"document": content}
                manifest = publishing.publish(
                    store, key, kind=kind, version=version, expires_at=expires_at, now=now, **given
                )
                path.unlink(missing_ok=True)
                context["published"] = manifest
                context["latest"] = store.latest_publication(kind)
            else:
                abort(400)
        except HubError as refused:
            context["error"] = str(refused)
    return render("publish.html", **context), 400 if context["error"] else 200


def _summary(kind: str, content) -> str:
    if kind == "catalog":
        return ngettext("%(num)d item", "%(num)d items", len(content))
    if kind == "roster" and isinstance(content, dict):
        return ngettext("%(num)d person", "%(num)d persons", len(content.get("persons") or []))
    if isinstance(content, dict):
        return ", ".join(sorted(content))
    return ""


# ---- software releases ----------------------------------------------------------------------


@console.get("/releases")
@signed_in()
def software_releases(viewer: Viewer):
    """Every release with its rollout over the devices this viewer may see."""
    township = chosen_township(viewer)
    rows = releases.rollout(hub_store(), visible_slots(viewer, township))
    return render("releases.html", rows=rows, township=township)


@console.get("/releases/<version>/<arch>")
@signed_in()
def software_release(viewer: Viewer, version: str, arch: str):
    """One release: each visible device's state for it, a page at a time."""
    store = hub_store()
    published = store.release(version, arch)
    if published is None:
        abort(404)
    township = chosen_township(viewer)
    slots, pager = paged("page", FLEET_PAGE, lambda n, at: store.slots_page(township, n, at))
    devices = [
        {
            "slot": slot,
            "software": releases.software_of(slot),
            "state": releases.device_release_state(slot, version, arch),
        }
        for slot in slots
        if slot.device_id
    ]
    return render(
        "release.html", release=published, devices=devices, pager=pager, township=township
    )


@console.post("/admin/releases/<version>/<arch>/withdraw")
@signed_in(admin=True)
def withdraw_release(viewer: Viewer, version: str, arch: str):
    try:
        releases.withdraw(hub_store(), version, arch, hub_runtime().now())
    except HubError:
        abort(404)
    return redirect(url_for("console.software_release", version=version, arch=arch))


@console.post("/admin/alarms/<int:alarm_id>/clear")
@signed_in(admin=True)
def clear_alarm(viewer: Viewer, alarm_id: int):
    store = hub_store()
    with store.unit_of_work():
        store.clear_alarm(alarm_id, iso(hub_runtime().now()))
    return redirect(_within_console(request.form.get("back", ""), url_for("console.fleet")))


@console.errorhandler(CSRFError)
def _csrf_refused(_error: CSRFError):
    message = _("The form has expired or was not sent by this console: reload the page.")
    return render("error.html", message=message), 400


@console.errorhandler(HTTPException)
def _refused(error: HTTPException):
    message = ERROR_MESSAGES.get(error.code or 500, _l("The request was refused."))
    return render("error.html", message=message), error.code or 500
