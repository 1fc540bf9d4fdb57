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

from web_ui import accounts, messages
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
# overlapping requests that both wrote it would undo each other's flash or patient.
LAST_SEEN_STEP = timedelta(minutes=1)


def now() -> datetime:
    return current_app.config["CLOCK"]()


def install(app: Flask) -> None:
    app.before_request(_load_operator)
    app.context_processor(_template_globals)


def _load_operator() -> None:
    """The signed-in operator, still active, and not idle for longer than allowed."""
    g.operator = None
    operator_id = session.get("operator")
    if operator_id is None:
        return
    moment = now()
    idle = timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"])
    last_seen = session.get("last_seen")
    seen = None if last_seen is None else datetime.fromisoformat(last_seen)
    if seen is None or moment - seen > idle:
        _sign_out()
        g.timed_out = True
        return
    operator = accounts.get_operator(get_store(), operator_id)
    if operator is None or not operator.active:
        _sign_out()
        return
    g.operator = operator
    if request.endpoint not in BACKGROUND and moment - seen >= LAST_SEEN_STEP:
        session["last_seen"] = moment.isoformat()


def _sign_out() -> None:
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def require(*roles: str, demo_opens: bool = False):
    """Only signed-in operators with one of `roles` (any role in demo mode if `demo_opens`)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if g.operator is None:
                if request.path.startswith("/api/"):
                    return jsonify(
                        {
                            "error": {
                                "code": "SIGNED_OUT",
                                "field": "form",
                                "message": _("Please sign in again."),
                            }
                        }
                    ), 401
                if getattr(g, "timed_out", False):
                    flash(_("You were signed out after a period of inactivity."), "info")
                return redirect(url_for("auth.signin", next=request.full_path))
            allowed = g.operator.role in roles or (demo_opens and current_app.config["DEMO"])
            if not allowed:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorate


def _template_globals() -> dict:
    operator = g.get("operator")
    nav = []
    if operator is not None:
        role, demo = operator.role, current_app.config["DEMO"]
        if role in ("doctor", "tester"):
            nav += [("settle.page", _("Settle")), ("records.today", _("Today"))]
        if role == "coordinator":
            nav.append(("records.today", _("Today")))
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
            session.update(operator=result.operator.operator_id, last_seen=now().isoformat())
            if lang:
                session["lang"] = lang
            target = request.args.get("next", "")
            if not target.startswith("/") or target.startswith("//"):
                target = url_for(HOME[result.operator.role])
            return redirect(target)
        error = _account_message(result)
    operators = [o for o in accounts.operators(store) if o.active]
    status = 401 if error else 200
    return render_template("signin.html", operators=operators, error=error, chosen=chosen), status


def _account_message(result: accounts.SignIn) -> str:
    if result.error == "LOCKED_OUT" and result.locked_until:
        until = datetime.fromisoformat(result.locked_until).strftime("%H:%M")
        return _("Too many wrong PINs: this operator is locked until %(until)s.", until=until)
    if result.error == "WRONG_PIN":
        return _("Wrong PIN. %(left)d tries left before a lockout.", left=result.attempts_left)
    return str(messages.ACCOUNT_ERRORS.get(result.error or "", result.error))


@bp.post("/signout")
def signout():
    _sign_out()
    flash(_("Signed out."), "info")
    return redirect(url_for("auth.signin"))


@bp.post("/lang")
def language():
    lang = request.form.get("lang")
    if lang in LANGUAGES:
        session["lang"] = lang
    target = request.form.get("next", "")
    if not target.startswith("/") or target.startswith("//"):
        target = url_for("auth.home")
    return redirect(target)
