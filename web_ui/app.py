"""The clinic terminal's web UI: `create_app(test_config=None)` (config keys: README.md)."""

import json
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask, current_app, jsonify, render_template, request, session
from flask.json.provider import DefaultJSONProvider
from flask_babel import Babel, force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import BadRequest, HTTPException

from edge import bootstrap, demo
from edge.adapters.catalog_files import read_diagnoses
from edge.adapters.identity import IdentityError
from edge.adapters.sqlite_store import StoreError
from edge.adapters.web_security import host_allowed, json_depth, security_headers
from edge.clock import configured_clock
from web_ui import accounts
from web_ui.context import LANGUAGES, close_store
from web_ui.hardware import Hardware

SECRET_FILE = "web-ui-secret.key"

SECURITY_HEADERS = security_headers(
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "font-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
)

# The pages' JSON is a flat visit (lines of a few fields): nothing needs more levels, and
# a body nested thousands deep would otherwise end in a RecursionError, a 500.
MAX_JSON_DEPTH = 16

csrf = CSRFProtect()
babel = Babel()


class BoundedJSON(DefaultJSONProvider):
    """Request bodies deeper than MAX_JSON_DEPTH are malformed JSON (a clear 400)."""

    def loads(self, s, **kwargs):
        try:
            value = json.loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        if json_depth(value) > MAX_JSON_DEPTH:
            raise ValueError("JSON nested too deeply")
        return value


def default_config(data_dir: Path | None) -> dict:
    return {
        "DATA_DIR": data_dir,
        "DEMO": False,
        "CARD_READER": None,
        "PRINTER": None,
        "CLINIC_NAME": os.environ.get("CLINIC_NAME", "村卫生室 Village clinic"),
        "COUNTY_PUBLIC_KEY": None,
        "PAPER": "58",
        "PRINT_RECEIPT_AFTER_SETTLE": True,
        "CLOCK": configured_clock(),  # tests give their own; see edge/clock.py
        "SESSION_IDLE_MINUTES": 15,
        "LOCKOUT_MINUTES": 15,
        "PIN_HASH_COST": accounts.DEFAULT_COST,
        "CARD_WAIT_SECONDS": 5.0,
        "CARD_POLL_MS": 1000,
        "DIAGNOSES_CSV": None,
        "BABEL_DEFAULT_LOCALE": "zh",
        "BABEL_DEFAULT_TIMEZONE": "Asia/Shanghai",
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Strict",
        "MAX_CONTENT_LENGTH": 256 * 1024,
        # Host names besides the loopback ones that the kiosk browser may use for the
        # terminal (docs/configuration.md); any other Host header is refused.
        "KIOSK_HOSTS": re.findall(r"[^,\s]+", os.environ.get("CLINIC_KIOSK_HOSTS", "")),
    }


def create_app(test_config: dict | None = None) -> Flask:
    """The terminal UI for the device whose data is in `DATA_DIR` (which must exist)."""
    app = Flask(__name__)
    app.json = BoundedJSON(app)
    config = dict(test_config or {})
    data_dir = config.get("DATA_DIR") or os.environ.get("CLINIC_DATA_DIR")
    if not data_dir:
        raise StoreError("DATA_DIR is not set: give --data-dir or $CLINIC_DATA_DIR")
    data_dir = Path(data_dir)
    app.config.update(default_config(data_dir))
    if config.get("DEMO"):
        app.config.update(
            CARD_READER="emulated://",
            PRINTER=f"emulated://{(data_dir / 'receipts.bin').resolve()}",
        )
        from drivers.demo_county_key import DEMO_COUNTY_PUBLIC_KEY_B64

        app.config["COUNTY_PUBLIC_KEY"] = DEMO_COUNTY_PUBLIC_KEY_B64
    app.config.update(config)
    app.config["DATA_DIR"] = data_dir
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(minutes=app.config["SESSION_IDLE_MINUTES"])
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False  # see auth.LAST_SEEN_STEP
    _prepare_store(app)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(data_dir)
    app.extensions["clinic_hardware"] = Hardware(
        app.config["CARD_READER"], app.config["PRINTER"], app.config["CLOCK"]
    )

    app.before_request(_trusted_host)  # first: a foreign Host gets nothing else
    app.before_request(_upload_limit)  # before the CSRF check reads the form
    csrf.init_app(app)
    app.before_request(_readable_json)
    babel.init_app(app, locale_selector=_locale)
    app.teardown_appcontext(close_store)
    app.after_request(_security_headers)
    _error_handlers(app)

    from web_ui import admin, auth, ime, month, records, service_point, settle, status, tester

    for module in (auth, settle, records, month, service_point, status, tester, admin, ime):
        app.register_blueprint(module.bp)
    auth.install(app)
    return app


def _secret_key(data_dir: Path) -> bytes:
    """A session key kept in the data directory (mode 0600), so restarts keep sessions."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def _prepare_store(app: Flask) -> None:
    """Open (and so migrate) the device store and load the diagnosis list."""
    store = bootstrap.open_store(app.config["DATA_DIR"])
    try:
        source = app.config["DIAGNOSES_CSV"] or demo.diagnoses_file()
        store.load_diagnoses(read_diagnoses(Path(source)))
        if app.config["DEMO"]:
            accounts.install_demo_pins(store, app.config["PIN_HASH_COST"])
    finally:
        store.close()


def _locale() -> str:
    lang = session.get("lang")
    return lang if lang in LANGUAGES else "zh"


UNTRUSTED_HOST = _l(
    "This terminal answers only under its own address (127.0.0.1 or localhost): the page"
    " was opened under another name. Nothing was done."
)


def _trusted_host():
    """DNS rebinding: a page of evil.example whose name now points at 127.0.0.1 reaches
    the terminal in the kiosk's own browser, with `Host: evil.example`: refused before
    anything else runs, in both languages (whose session would choose one?), as plain text
    that touches no session and gives the page no form token."""
    if host_allowed(request.headers.get("Host"), set(current_app.config["KIOSK_HOSTS"])):
        return None
    message = "\n".join(_in(lang, UNTRUSTED_HOST) for lang in ("zh", "en"))
    if wants_json():
        body = {"code": "UNTRUSTED_HOST", "message": message, "field": "form"}
        return jsonify({"error": body}), 400
    return current_app.response_class(message, 400, mimetype="text/plain")


def _in(lang: str, message) -> str:
    with force_locale(lang):
        return str(message)


def _upload_limit():
    """A request's photos may be larger than every other body the terminal takes
    (`MAX_CONTENT_LENGTH`): their form alone has the photos' own bound."""
    from web_ui.service_point import UPLOAD_ENDPOINTS, UPLOAD_LIMIT

    if request.endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = UPLOAD_LIMIT


def _readable_json():
    """A JSON body that cannot be read (malformed, too deeply nested) is refused here with
    a clear message, before any page code sees it; one too large is a 413."""
    if request.method == "POST" and request.is_json:
        try:
            request.get_json()
        except BadRequest:
            return error_response(
                400,
                _("The data sent could not be read (not JSON, or nested too deeply)."),
                "BAD_JSON",
            )
    return None


def _security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.is_json


def error_response(status: int, message: str, code: str):
    if wants_json():
        return jsonify({"error": {"code": code, "message": message, "field": "form"}}), status
    return render_template("error.html", message=message, code=code, status=status), status


def _error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return error_response(
            400,
            _("The form has expired or was not sent by this terminal: reload the page."),
            "CSRF",
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        messages = {
            403: _("Your role may not open this page."),
            404: _("There is no such page or record."),
            405: _("This page does not take that kind of request."),
            413: _("The request is too large."),
        }
        code = error.code or 500
        from web_ui.service_point import UPLOAD_ENDPOINTS

        if code == 413 and request.endpoint in UPLOAD_ENDPOINTS:
            messages[413] = _(
                "The request is too large: nothing was changed. Photos: at most 6, each up"
                " to 3 MB, 12 MB in all."
            )
        return error_response(
            code, messages.get(code, _("The request was refused.")), f"HTTP_{code}"
        )

    @app.errorhandler(IdentityError)
    def identity_error(error: IdentityError):
        app.logger.error("device identity: %s", error)
        return error_response(
            503,
            _(
                "The device key is missing or wrong: settlement is stopped. Call the"
                " county administrator. (%(detail)s)",
                detail=str(error),
            ),
            "IDENTITY",
        )

    @app.errorhandler(StoreError)
    def store_error(error: StoreError):
        return error_response(503, str(error), "STORE")

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        app.logger.exception("unexpected error")
        return error_response(
            500,
            _("Something went wrong. Nothing was settled by this request; try again."),
            "INTERNAL",
        )
