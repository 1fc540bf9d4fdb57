"""Serving the hub with werkzeug's threaded WSGI server: in the foreground for
`clinic hub serve`, or in a background thread on a loopback port for demos and tests."""

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sync.hub.app import create_app
from sync.hub.runtime import EXTENSION


class QuietRequestHandler(WSGIRequestHandler):
    """No access log lines (tests and the demo serve thousands of requests)."""

    def log(self, type: str, message: str, *args) -> None:
        pass


@dataclass
class RunningHub:
    """A hub serving in a background thread; `url` is where devices reach it."""

    app: Flask
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        if isinstance(host, bytes | bytearray):  # the address may be given as bytes
            host = host.decode()
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=30)
        self.server.server_close()
        reconciler = self.app.extensions[EXTENSION].reconciler
        if reconciler is not None:
            reconciler.stop()

    def __enter__(self) -> "RunningHub":
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


def serve_in_background(
    data_dir: Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    config: Mapping | None = None,
    app: Flask | None = None,
    quiet: bool = True,
) -> RunningHub:
    """Start a hub on `host:port` (port 0: any free one) in a daemon thread."""
    if app is None:
        app = create_app(
            {**({"HUB_DATA_DIR": str(data_dir)} if data_dir else {}), **(config or {})}
        )
    handler = QuietRequestHandler if quiet else WSGIRequestHandler
    server = make_server(host, port, app, threaded=True, request_handler=handler)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="hub-server",
        daemon=True,
    )
    thread.start()
    return RunningHub(app, server, thread)


def serve_forever(app: Flask, *, host: str, port: int) -> None:
    server = make_server(host, port, app, threaded=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        reconciler = app.extensions[EXTENSION].reconciler
        if reconciler is not None:
            reconciler.stop()
