"""The county hub's Flask application: the device API under `/api/v1` (`api.py`) and the
web console (`console.py`).

`create_app(config)` takes a mapping: `HUB_DATA_DIR` (default `$CLINIC_HUB_DIR`), `CLOCK`
(a callable giving an aware datetime; by default `edge.clock.configured_clock()`: China
time, or the clock `CLINIC_CLOCK` starts),
`RECONCILE_INTERVAL_S` (recompute uploads in a background thread every so many seconds,
and soon after each upload; off when None), `CONSOLE` (serve the web console, default
True), `TRUST_PROXY` (the hub is behind a reverse proxy: the client's address, which
enrollment throttles, is the last in X-Forwarded-For; default `$CLINIC_HUB_TRUST_PROXY`
= 1). Run it under any WSGI server; `clinic hub serve` uses gunicorn (`sync/hub/server.py`).
"""

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from flask import Flask

from edge.adapters.sealing import encryption_key_statement, public_key_b64
from edge.clock import configured_clock
from sync.hub import console_requests, console_statements  # noqa: F401  (pages of the console)
from sync.hub.adapters.county_key import load_county_key, seal_key_made_at
from sync.hub.api import api
from sync.hub.bootstrap import county_seal_key, open_hub_store
from sync.hub.console import console
from sync.hub.console_reports import month_report  # noqa: F401  (its routes join the console)
from sync.hub.model import HubError
from sync.hub.runtime import EXTENSION, BackgroundReconciler, HubRuntime, close_store
from sync.protocol import MAX_REQUEST_BYTES


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
        # Behind a reverse proxy: take the client's address from X-Forwarded-For.
        TRUST_PROXY=os.environ.get("CLINIC_HUB_TRUST_PROXY") == "1",
    )
    app.config.update(config or {})
    if not app.config["HUB_DATA_DIR"]:
        raise HubError("no hub data directory: give HUB_DATA_DIR or set CLINIC_HUB_DIR")
    data_dir = Path(app.config["HUB_DATA_DIR"])
    open_hub_store(data_dir).close()  # the hub exists and its schema is current
    clock = app.config["CLOCK"] or configured_clock()
    county_key = load_county_key(data_dir)
    # A hub made before the service point gets its encryption key now; a missing or
    # replaced key file stops the hub (restore it from the backup).
    seal_key = county_seal_key(data_dir, clock())
    runtime = HubRuntime(
        data_dir,
        county_key,
        clock,
        seal_key=seal_key,
        encryption_key=encryption_key_statement(
            public_key_b64(seal_key), county_key, seal_key_made_at(data_dir)
        ),
    )
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
