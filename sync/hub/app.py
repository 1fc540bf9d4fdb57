"""The county hub's Flask application: the device API under `/api/v1` and the web console.

`create_app(config)` takes a mapping: `HUB_DATA_DIR` (default `$CLINIC_HUB_DIR`), `CLOCK`
(a callable giving an aware datetime; the system clock by default),
`RECONCILE_INTERVAL_S` (recompute uploads in a background thread every so many seconds,
and soon after each upload; off when None), `CONSOLE` (serve the web console, default
True). Run it under any WSGI server; `clinic hub serve` uses werkzeug's.
"""

import gzip
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from edge.clock import configured_clock
from sync.hub.adapters.county_key import load_county_key
from sync.hub.bootstrap import open_hub_store
from sync.hub.console import console
from sync.hub.model import HubError
from sync.hub.runtime import (
    EXTENSION,
    BackgroundReconciler,
    HubRuntime,
    close_store,
    hub_runtime,
    hub_store,
)
from sync.hub.services import enrollment, publishing, uploads
from sync.protocol import (
    API_PREFIX,
    HEADER_HUB_TIME,
    MAX_REQUEST_BYTES,
    SyncError,
    decode_batch,
    iso,
)

HTTP_STATUS = {
    "BAD_REQUEST": 400,
    "DEVICE_ID_MISMATCH": 400,
    "UNSIGNED": 401,
    "UNKNOWN_DEVICE": 401,
    "BAD_SIGNATURE": 401,
    "STALE_TIMESTAMP": 401,
    "NONCE_REUSED": 401,
    "DEVICE_REVOKED": 403,
    "CODE_UNKNOWN": 403,
    "SLOT_REVOKED": 403,
    "NOT_FOUND": 404,
    "UNKNOWN_KIND": 404,
    "CODE_USED": 409,
    "ALREADY_ENROLLED": 409,
    "CODE_EXPIRED": 410,
    "TOO_LARGE": 413,
}
COMPRESS_ABOVE = 1024


def console_secret(data_dir: Path) -> bytes:
    """The console's session key: made once, kept beside the database (0600) so that every
    WSGI worker and restart shares it."""
    path = data_dir / "console.secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        secret = secrets.token_bytes(32)
        handle.write(secret)
    return secret


def create_app(config: Mapping | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        HUB_DATA_DIR=os.environ.get("CLINIC_HUB_DIR"),
        CLOCK=None,
        RECONCILE_INTERVAL_S=None,
        CONSOLE=True,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
    )
    app.config.update(config or {})
    if not app.config["HUB_DATA_DIR"]:
        raise HubError("no hub data directory: give HUB_DATA_DIR or set CLINIC_HUB_DIR")
    data_dir = Path(app.config["HUB_DATA_DIR"])
    open_hub_store(data_dir).close()  # the hub exists and its schema is current
    clock = app.config["CLOCK"] or configured_clock()
    runtime = HubRuntime(data_dir, load_county_key(data_dir), clock)
    if app.config["RECONCILE_INTERVAL_S"]:
        runtime.reconciler = BackgroundReconciler(
            data_dir, clock, float(app.config["RECONCILE_INTERVAL_S"])
        )
    app.extensions[EXTENSION] = runtime
    app.config.setdefault("SECRET_KEY", None)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = console_secret(data_dir)
    app.register_blueprint(api)
    app.teardown_appcontext(close_store)
    if app.config["CONSOLE"]:
        app.register_blueprint(console)
    return app


def create_app_from_env() -> Flask:
    """The app for a WSGI server started from the shell, e.g. with several workers:
    `gunicorn -w 2 -b 127.0.0.1:8090 'sync.hub.app:create_app_from_env()'`. Reads
    `CLINIC_HUB_DIR` (the database is the one it names, see `sync.hub.bootstrap.database_url`),
    `CLINIC_HUB_RECONCILE_INTERVAL_S` (default 30; 0 turns it off) and `CLINIC_CLOCK`
    (`edge/clock.py`: tests start every worker's clock at their own instant)."""
    interval = float(os.environ.get("CLINIC_HUB_RECONCILE_INTERVAL_S", "30"))
    return create_app({"RECONCILE_INTERVAL_S": interval or None})


# ---- the device API ----------------------------------------------------------------------------

api = Blueprint("api", __name__, url_prefix=API_PREFIX)


def _signed_path() -> str:
    """The path the device signed: as it asked for it, query string included."""
    query = request.query_string.decode("latin-1")
    return request.script_root + request.path + (f"?{query}" if query else "")


def _json(value: object, status: int = 200) -> Response:
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    response = Response(data, status=status, mimetype="application/json")
    if len(data) > COMPRESS_ABOVE and "gzip" in request.headers.get("Accept-Encoding", ""):
        response.set_data(gzip.compress(data, compresslevel=6, mtime=0))
        response.headers["Content-Encoding"] = "gzip"
        response.headers["Vary"] = "Accept-Encoding"
    return response


def _body() -> bytes:
    return request.get_data(cache=False)


def _json_body(raw: bytes) -> dict:
    try:
        document = json.loads(raw)
    except ValueError:
        raise SyncError("BAD_REQUEST", "the body is not JSON") from None
    if not isinstance(document, dict):
        raise SyncError("BAD_REQUEST", "the body is not a JSON object")
    return document


def _authenticated(raw: bytes):
    runtime = hub_runtime()
    return enrollment.authenticate(
        hub_store(),
        request.headers,
        method=request.method,
        path=_signed_path(),
        body=raw,
        now=runtime.now(),
    )


@api.post("/enroll")
def enroll_device() -> Response:
    raw = _body()
    answer = enrollment.enroll(
        hub_store(),
        request.headers,
        method=request.method,
        path=_signed_path(),
        body=_json_body(raw),
        raw_body=raw,
        now=hub_runtime().now(),
    )
    return _json(answer)


@api.post("/records")
def upload_records() -> Response:
    raw = _body()
    slot = _authenticated(raw)
    batch = decode_batch(raw, request.headers.get("Content-Encoding"))
    answer = uploads.ingest(hub_store(), slot, batch, hub_runtime().now())
    hub_runtime().wake_reconciler()
    return _json(answer)


@api.post("/heartbeat")
def device_heartbeat() -> Response:
    raw = _body()
    slot = _authenticated(raw)
    return _json(uploads.heartbeat(hub_store(), slot, _json_body(raw), hub_runtime().now()))


@api.get("/updates/<kind>")
def county_update(kind: str) -> Response:
    _authenticated(b"")
    update = publishing.update_for(
        hub_store(),
        hub_runtime().county_key,
        kind,
        since=request.args.get("since") or None,
        full=request.args.get("full") == "1",
    )
    if update is None:
        return Response(status=204)
    return _json(update)


@api.get("/time")
def hub_time() -> Response:
    return _json({"hub_time": iso(hub_runtime().now())})


@api.after_request
def _stamp_hub_time(response: Response) -> Response:
    response.headers[HEADER_HUB_TIME] = iso(hub_runtime().now())
    response.headers["Cache-Control"] = "no-store"
    return response


@api.errorhandler(SyncError)
def _refused(error: SyncError) -> Response:
    return _json({"error": error.to_dict()}, HTTP_STATUS.get(error.code, 400))


@api.errorhandler(RequestEntityTooLarge)
def _too_large(_error: RequestEntityTooLarge) -> Response:
    return _json({"error": SyncError("TOO_LARGE").to_dict()}, 413)
