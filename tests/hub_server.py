"""The hub in the tests: werkzeug's development server in a background thread, on a loopback
port, over plain HTTP or HTTPS (`tls=`: the certificate and key files of
`sync.hub.adapters.tls_certificate`). Only tests use werkzeug's server: `clinic hub serve`
is gunicorn and the demo's hub waitress (sync/hub/server.py)."""

import ssl
import threading
from collections.abc import Mapping
from pathlib import Path

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from sync.hub.adapters.tls_certificate import write_self_signed
from sync.hub.app import create_app
from sync.hub.server import RunningHub


class QuietRequestHandler(WSGIRequestHandler):
    """No access log lines (tests serve thousands of requests)."""

    def log(self, type: str, message: str, *args) -> None:
        pass


def make_certificate(folder: Path, now, hosts: tuple[str, ...] = ("127.0.0.1",)) -> dict:
    """A self-signed certificate and key in `folder`, as `clinic hub init --tls-host`
    makes them; returns their paths and fingerprint."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_self_signed(folder, list(hosts), now)


def server_context(tls: dict) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls["certificate"], tls["key"])
    return context


def serve_in_background(
    data_dir: Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    config: Mapping | None = None,
    app: Flask | None = None,
    quiet: bool = True,
    tls: dict | None = None,
) -> RunningHub:
    """Start a hub on `host:port` (port 0: any free one) in a daemon thread; with `tls`,
    over HTTPS."""
    if app is None:
        app = create_app(
            {**({"HUB_DATA_DIR": str(data_dir)} if data_dir else {}), **(config or {})}
        )
    handler = QuietRequestHandler if quiet else WSGIRequestHandler
    server = make_server(
        host,
        port,
        app,
        threaded=True,
        request_handler=handler,
        ssl_context=server_context(tls) if tls else None,
    )
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="hub-server",
        daemon=True,
    )
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return RunningHub(
        app,
        server,
        thread,
        host,
        server.server_address[1],
        scheme="https" if tls else "http",
        stopper=stop,
    )
