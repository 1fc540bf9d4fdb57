"""Signing in and out with a PIN, roles, the idle timeout and the language switch."""

import functools
from datetime import datetime, timedelta

from flask import (
    Blueprint,
    Flask,
    abort,
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

from edge.adapters.web_security import safe_local_path
from web_ui import accounts, drafts, messages
from web_ui.context import LANGUAGES, get_store

bp = Blueprint("auth", __name__)

HOME = {
    "doctor": "settle.page",
    "tester": "settle.page",
    "coordinator": "status.page",
    "admin": "admin.page",
}
# Requests the page makes by itself: they must not keep an idle session alive.
BACKGROUND = {"settle.card_state", "static"}
# The session cookie is written only when something in it changes, and `last_seen` only
# once a minute: every write sends the whole session back as this request saw it, so two
# overlapping requests that both wrote it would undo each other's flash.
LAST_SEEN_STEP = timedelta(minutes=1)
# The session cookie outlives the idle lock by far, so that a locked screen still knows
# whose it is and why it locked (the idle time itself is judged from `last_seen`).
COOKIE_LIFETIME = timedelta(hours=16)


def now() -> datetime:
    return current_app.config["CLOCK"]()


def idle_limit() -> timedelta:
    return timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"])


def install(app: Flask) -> None:
    idle = timedelta(minutes=app.config["SESSION_IDLE_MINUTES"])
    app.config["PERMANENT_SESSION_LIFETIME"] = max(COOKIE_LIFETIME, idle * 2)
    app.before_request(_load_operator)
    app.context_processor(_template_globals)
    # Locking only signs out, and must work when the server has already locked the
    # session (and with it forgotten the page's CSRF token).
    app.extensions["csrf"].exempt(lock)


def _load_operator() -> None:
    """The signed-in operator, still active, in a session not ended since (sign-out, a new
    PIN: `session_version`), and not idle for longer than allowed."""
    g.operator = None
    operator_id = session.get("operator")
    if operator_id is None:
        return
    operator = accounts.get_operator(get_store(), operator_id)
    if operator is None or not operator.active or session.get("sv") != operator.session_version:
        _sign_out()  # a copy of a cookie whose session has ended is worth nothing
        return
    moment = now()
    idle = idle_limit()
    last_seen = session.get("last_seen")
    seen = None if last_seen is None else datetime.fromisoformat(last_seen)
    if seen is None or moment - seen > idle:
        accounts.end_sessions(get_store(), operator_id)
        _lock(operator_id)
        g.timed_out = True
        return
    g.operator = operator
    step = min(LAST_SEEN_STEP, idle / 4)
    if request.endpoint not in BACKGROUND and moment - seen >= step:
        session["last_seen"] = moment.isoformat()


def _sign_out() -> None:
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def _lock(operator_id: str) -> None:
    """Idle: the operator is signed out, and the sign-in page becomes the lock screen that
    returns them to where they were (their visit is kept on the terminal: drafts.py)."""
    _sign_out()
    session.permanent = True
    session["locked"] = operator_id


def require(*roles: str, demo_opens: bool = False):
    """Only signed-in operators with one of `roles` (any role in demo mode if `demo_opens`)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if g.operator is None:
                if request.path.startswith("/api/"):
                    return jsonify({"error": _session_ended()}), 401
                return redirect(url_for("auth.signin", next=request.full_path))
            allowed = g.operator.role in roles or (demo_opens and current_app.config["DEMO"])
            if not allowed:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorate


def _session_ended() -> dict:
    """Why a request from a page came without a signed-in operator: said plainly, since
    trying again cannot help; the page leads to the lock screen."""
    if session.get("locked"):
        return {
            "code": "SESSION_ENDED",
            "field": "form",
            "message": _(
                "The screen locked after a while without use, so nothing was settled. Your"
                " visit is kept: sign in again to continue it."
            ),
        }
    return {"code": "SIGNED_OUT", "field": "form", "message": _("Please sign in again.")}


def _template_globals() -> dict:
    operator = g.get("operator")
    nav = []
    if operator is not None:
        role, demo = operator.role, current_app.config["DEMO"]
        if role in ("doctor", "tester"):
            nav += [
                ("settle.page", _("Settle")),
                ("records.today", _("Today")),
                ("records.close_page", _("Daily close")),
                ("service.index", _("Insurance services")),
            ]
        if role == "coordinator":
            nav.append(("records.today", _("Today")))
            nav.append(("service.index", _("Insurance services")))
        if role in ("coordinator", "admin", "tester"):
            nav.append(("status.page", _("Status")))
        if role == "tester" or demo:
            nav.append(("tester.page", _("Tester")))
        if role == "admin":
            nav.append(("admin.page", _("Admin")))
    return {
        "operator": operator,
        "role_name": (lambda role: str(messages.ROLES.get(role, role))),
        "nav": nav,
        "lang": session.get("lang", "zh"),
        "languages": LANGUAGES,
        "demo": current_app.config["DEMO"],
        "clinic_name": current_app.config["CLINIC_NAME"],
        "idle_ms": int(idle_limit().total_seconds() * 1000),
    }


@bp.get("/")
def home():
    if g.operator is None:
        return redirect(url_for("auth.signin"))
    return redirect(url_for(HOME[g.operator.role]))


@bp.route("/signin", methods=["GET", "POST"])
def signin():
    store = get_store()
    error = None
    chosen = request.form.get("operator", "")
    if request.method == "POST":
        result = accounts.sign_in(
            store,
            current_app.config["DATA_DIR"],
            chosen,
            request.form.get("pin", ""),
            now=now(),
            lockout=timedelta(minutes=current_app.config["LOCKOUT_MINUTES"]),
            cost=current_app.config["PIN_HASH_COST"],
        )
        if result.operator is not None:
            lang = session.get("lang")
            session.clear()
            session.permanent = True
            session.update(
                operator=result.operator.operator_id,
                sv=result.operator.session_version,
                last_seen=now().isoformat(),
            )
            if lang:
                session["lang"] = lang
            drafts.note_sign_in(store, result.operator.operator_id, now())
            target = safe_local_path(request.args.get("next"))
            return redirect(target or url_for(HOME[result.operator.role]))
        error = _account_message(result)
    operators = [o for o in accounts.operators(store) if o.active]
    locked = session.get("locked")
    if not chosen:
        chosen = _default_operator(store, operators, locked)
    status = 401 if error else 200
    return render_template(
        "signin.html",
        operators=operators,
        error=error,
        chosen=chosen,
        reason=None if error else _signin_reason(locked, operators),
    ), status


def _default_operator(store, operators: list, locked: str | None) -> str:
    """Whose name is chosen at first: the locked screen's owner, else whoever signed in
    last on this terminal, else the first operator who is not an administrator."""
    active = {o.operator_id for o in operators}
    for candidate in (locked, drafts.last_operator(store)):
        if candidate is not None and candidate in active:
            return candidate
    others = [o for o in operators if o.role != "admin"] or operators
    return others[0].operator_id if others else ""


def _signin_reason(locked: str | None, operators: list) -> str | None:
    """Why the sign-in page is shown, when a session ended by itself."""
    if not locked:
        return None
    name = next((o.name for o in operators if o.operator_id == locked), "")
    minutes = current_app.config["SESSION_IDLE_MINUTES"]
    if minutes >= 1:
        return _(
            "The screen locked after %(minutes)d minutes without use. %(name)s, enter your"
            " password to return to where you were: an unfinished visit is kept.",
            minutes=int(minutes),
            name=name,
        )
    return _(
        "The screen locked after a while without use. %(name)s, enter your password to"
        " return to where you were: an unfinished visit is kept.",
        name=name,
    )


def _account_message(result: accounts.SignIn) -> str:
    if result.error == "LOCKED_OUT" and result.locked_until:
        until = datetime.fromisoformat(result.locked_until).strftime("%H:%M")
        return _("Too many wrong PINs: this operator is locked until %(until)s.", until=until)
    if result.error == "WRONG_PIN":
        return _("Wrong PIN. %(left)d tries left before a lockout.", left=result.attempts_left)
    return str(messages.ACCOUNT_ERRORS.get(result.error or "", result.error))


@bp.post("/signout")
def signout():
    if g.operator is not None:  # every copy of this session's cookie ends with it
        accounts.end_sessions(get_store(), g.operator.operator_id)
    _sign_out()
    flash(_("Signed out."), "info")
    return redirect(url_for("auth.signin"))


@bp.post("/lock")
def lock():
    """The page's own idle timer locks the screen (the server also locks it by itself
    when the next request comes too late)."""
    if g.operator is not None:
        accounts.end_sessions(get_store(), g.operator.operator_id)
    operator_id = session.get("operator") or session.get("locked")
    if operator_id:
        _lock(operator_id)
    target = safe_local_path(request.form.get("next")) or url_for("auth.home")
    return redirect(url_for("auth.signin", next=target))


@bp.post("/lang")
def language():
    lang = request.form.get("lang")
    if lang in LANGUAGES:
        session["lang"] = lang
    return redirect(safe_local_path(request.form.get("next")) or url_for("auth.home"))
