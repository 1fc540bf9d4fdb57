"""The county hub's web console, in Chinese and English: fleet status for coordinators
(limited to their township), and for admins device provisioning and revocation,
publishing catalog, policy and roster versions (with a diff against the current one),
reconciliation, CSV exports.

Plain server-rendered HTML. Sign-in with a password kept as an scrypt hash and a
lock-out after repeated failures; every form carries a CSRF token; the Content Security
Policy allows no script at all (there is none) and only the console's own stylesheet.
"""

import hmac
import json
import re
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from pathlib import Path

from flask import Blueprint, Response, abort, redirect, request, session, url_for
from jinja2 import DictLoader, Environment, select_autoescape

from edge.adapters.catalog_files import open_catalog_file
from edge.domain.model import Rejection
from sync.hub.console_auth import SignInRefused, Viewer, sign_in
from sync.hub.console_templates import STYLESHEET, TEMPLATES
from sync.hub.model import HubError
from sync.hub.reconcile import NEEDS_REVIEW
from sync.hub.runtime import hub_runtime, hub_store
from sync.hub.services import county, publishing, reports
from sync.protocol import iso, parse_time

console = Blueprint("console", __name__, url_prefix="/console")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SESSION_LIFETIME = timedelta(hours=8)
UPLOAD_DIR = "console-uploads"
KIND_NAMES = {"catalog": "目录 Catalog", "policy": "政策 Policy", "roster": "参保名册 Roster"}

_env = Environment(loader=DictLoader(TEMPLATES), autoescape=select_autoescape(default=True))


def render(name: str, **context) -> str:
    context.setdefault("viewer", current_viewer())
    return _env.get_template(name).render(
        url_for=url_for, csrf_token=csrf_token(), kind_names=KIND_NAMES, **context
    )


# ---- sessions, roles, CSRF ----------------------------------------------------------------


def current_viewer() -> Viewer | None:
    data = session.get("viewer")
    if not data:
        return None
    return Viewer(data["username"], data["role"], data.get("township"))


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@console.before_request
def _check_csrf() -> None:
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
            abort(400, "CSRF token missing or wrong / 表单已过期，请重新提交")


@console.after_request
def _secure_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@console.record_once
def _configure_sessions(state) -> None:
    app = state.app
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_LIFETIME


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
            error = str(refused)
        else:
            session.clear()
            session.permanent = True
            session["viewer"] = {
                "username": viewer.username,
                "role": viewer.role,
                "township": viewer.township,
            }
            target = request.args.get("next", "")
            if not target.startswith("/console/") or target.startswith("//"):
                target = url_for("console.fleet")
            return redirect(target)
    return render("login.html", viewer=None, error=error), 401 if error else 200


@console.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("console.login"))


@console.get("/console.css")
def stylesheet() -> Response:
    response = Response(STYLESHEET, mimetype="text/css")
    response.headers["Cache-Control"] = "max-age=3600"
    return response


# ---- fleet status ----------------------------------------------------------------------------


@console.get("/")
@signed_in()
def fleet(viewer: Viewer):
    township = viewer.township or request.args.get("township") or None
    store = hub_store()
    rows = reports.fleet_status(store, hub_runtime().now(), township)
    townships = sorted({s.township for s in store.slots()}) if viewer.is_admin else []
    return render("fleet.html", rows=rows, township=township, townships=townships)


@console.get("/devices/<device_id>")
@signed_in()
def device(viewer: Viewer, device_id: str):
    store = hub_store()
    slot = store.slot_by_device(device_id)
    if slot is None or not viewer.may_see(slot.township):
        abort(404)
    (row,) = [
        r
        for r in reports.fleet_status(store, hub_runtime().now(), slot.township)
        if r["device_id"] == device_id
    ]
    items = [i for i in store.reconciliation_items([device_id])][-200:]
    return render(
        "device.html",
        row=row,
        slot=slot,
        alarms=store.alarms(device_id, False),
        items=items,
        heartbeat=json.dumps(slot.heartbeat_doc, ensure_ascii=False, indent=1),
    )


@console.get("/reconciliation")
@signed_in()
def reconciliation(viewer: Viewer):
    township = viewer.township or request.args.get("township") or None
    show_reviews = request.args.get("reviews") == "1"
    items = [
        i
        for i in hub_store().reconciliation_items(visible_devices(viewer, township))
        if show_reviews or i.code != NEEDS_REVIEW
    ]
    return render(
        "reconciliation.html",
        items=items[-500:],
        total=len(items),
        township=township,
        show_reviews=show_reviews,
    )


@console.get("/export/<what>.csv")
@signed_in()
def export_csv(viewer: Viewer, what: str):
    township = viewer.township or request.args.get("township") or None
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
    rows = reports.fleet_status(store, now)
    return render(
        "devices.html",
        rows=rows,
        provisioned=provisioned,
        error=error,
        county=county.county_of(store),
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
        abort(400, "the uploaded file is gone: upload it again / 上传的文件已失效，请重新上传")
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
        raise HubError(f"the file cannot be read / 文件无法读取: {message}") from None


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
            context["error"] = "expiry must be a date YYYY-MM-DD / 有效期须为日期"
            return render("publish.html", **context), 400
        try:
            if step == "preview":
                upload = request.files.get("file")
                if upload is None or not upload.filename:
                    raise HubError("choose a file / 请选择文件")
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
        return f"{len(content)} items / 项"
    if kind == "roster" and isinstance(content, dict):
        return f"{len(content.get('persons') or [])} persons / 人"
    if isinstance(content, dict):
        return ", ".join(sorted(content))
    return ""


@console.post("/admin/alarms/<int:alarm_id>/clear")
@signed_in(admin=True)
def clear_alarm(viewer: Viewer, alarm_id: int):
    store = hub_store()
    with store.unit_of_work():
        store.clear_alarm(alarm_id, iso(hub_runtime().now()))
    back = request.form.get("back", "")
    if not back.startswith("/console/") or back.startswith("//"):
        back = url_for("console.fleet")
    return redirect(back)


@console.errorhandler(403)
def _forbidden(_error):
    return render("error.html", message="只有县级管理员可以这样做 / admins only"), 403
