"""Serving the hub.

`clinic hub serve` runs gunicorn in this process (`HubServer`, gunicorn's embedding API):
gthread workers, bounded connections, request line and header limits, timeouts, a bounded
keep-alive, HTTPS with the hub's own certificate (`clinic hub init --tls-host`) or plain
HTTP behind a reverse proxy (deploy/hub/). The demo hub (`start_demo_hub`) runs waitress
in a background thread on loopback. werkzeug's development server is for the tests only
(tests/hub_server.py).

Slow clients: gunicorn's gthread worker hands a connection to a thread as soon as it is
readable, so a client that sends its request a byte at a time holds a thread.
`HeadFirstWorker` reads each request's head (TLS handshake included) in the worker's
event loop instead, and hands a connection to a thread only once its head is complete;
a head that is not complete within `HEAD_TIMEOUT_S` is dropped. A thousand slow
connections hold a thousand sockets, not a thousand threads.
"""

import collections
import contextlib
import errno
import resource
import selectors
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import gunicorn.http.wsgi
from flask import Flask
from gunicorn import http
from gunicorn.app.base import BaseApplication
from gunicorn.sock import ssl_context
from gunicorn.workers.gthread import TConn, ThreadWorker

from sync.hub.app import create_app
from sync.hub.runtime import EXTENSION

# The `Server` header: no software name, no version.
SERVER_NAME = "clinic-hub"
# A request's line and headers must arrive within this many seconds of the connection
# (or of its previous request, on a kept-alive connection).
HEAD_TIMEOUT_S = 10.0
# Bigger heads go to gunicorn's parser, which refuses them (limit_request_* below).
MAX_HEAD_BYTES = 64 * 1024
# A thread reading a body or writing an answer gives up on a client silent this long.
SOCKET_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ServerLimits:
    workers: int = 2
    threads: int = 8
    # Open connections per worker (waiting ones cost a socket each, not a thread).
    connections: int = 4000
    # gunicorn restarts a worker whose main loop is stuck this long.
    timeout_s: int = 60
    keepalive_s: int = 5
    request_line: int = 4094
    header_fields: int = 50
    header_field_size: int = 8190


class HeadFirstConn(TConn):
    """A connection whose request head is read in the event loop before a thread takes it."""

    parser: Any

    def __init__(self, cfg, sock, client, server):
        super().__init__(cfg, sock, client, server)
        self.head = bytearray()
        self.deadline = 0.0
        self.waiting = False
        self.handshaken = not cfg.is_ssl
        if cfg.is_ssl:  # the handshake happens in the event loop too (`read_head`)
            self.sock = ssl_context(cfg).wrap_socket(
                self.sock,
                server_side=True,
                do_handshake_on_connect=False,
                suppress_ragged_eofs=cfg.suppress_ragged_eofs,
            )

    def init(self) -> None:
        self.initialized = True
        self.sock.settimeout(SOCKET_TIMEOUT_S)
        if self.parser is None:
            self.parser = http.RequestParser(self.cfg, self.sock, self.client)
        if self.head:
            self.parser.unreader.unread(bytes(self.head))
            self.head = bytearray()

    def read_head(self) -> bool | None:
        """Read what the socket has: True when the head is complete, False to wait for
        more, None when the client went away."""
        try:
            if not self.handshaken:
                self.sock.do_handshake()
                self.handshaken = True
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None
                self.head += chunk
                if b"\r\n\r\n" in self.head or len(self.head) > MAX_HEAD_BYTES:
                    return True
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False
        except OSError:
            return None


class HeadFirstWorker(ThreadWorker):
    """gunicorn's gthread worker, with request heads read in its event loop."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._heads: collections.deque = collections.deque()

    def accept(self, server, listener) -> None:
        try:
            sock, client = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        try:
            conn = HeadFirstConn(self.cfg, sock, client, server)
        except OSError:
            sock.close()
            return
        self.nr_conns += 1
        self._wait_for_head(conn)

    def on_client_socket_readable(self, conn, client) -> None:
        """A kept-alive connection has a new request: read its head first."""
        with self._lock:
            self.poller.unregister(client)
            try:
                self._keep.remove(conn)
            except ValueError:  # murdered meanwhile
                return
        self._wait_for_head(conn)

    def _wait_for_head(self, conn: HeadFirstConn) -> None:
        conn.waiting = True
        conn.deadline = time.monotonic() + HEAD_TIMEOUT_S
        with self._lock:
            self._heads.append((conn.deadline, conn))
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._head_bytes, conn))

    def _head_bytes(self, conn: HeadFirstConn, client) -> None:
        outcome = conn.read_head()
        if outcome is False:
            return
        conn.waiting = False
        with self._lock:
            self.poller.unregister(client)
        if outcome is None:
            self._drop(conn)
        else:
            self.enqueue_req(conn)

    def _drop(self, conn: HeadFirstConn) -> None:
        self.nr_conns -= 1
        conn.close()

    def murder_keepalived(self) -> None:
        super().murder_keepalived()
        now = time.monotonic()
        while self._heads and self._heads[0][0] <= now:
            deadline, conn = self._heads.popleft()
            if conn.waiting and conn.deadline == deadline:  # still no whole head: too slow
                conn.waiting = False
                with self._lock, contextlib.suppress(KeyError, ValueError, OSError):
                    self.poller.unregister(conn.sock)
                self._drop(conn)


class HubServer(BaseApplication):
    """gunicorn embedded: every worker makes its own app (and its own background
    reconciler thread: the stores serialize recomputation, see `reconcile_pending`)."""

    def __init__(self, app_config: Mapping, options: Mapping):
        self.app_config = dict(app_config)
        self.options = dict(options)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return create_app(self.app_config)


def server_options(
    *,
    host: str,
    port: int,
    certificate: Path | None = None,
    key: Path | None = None,
    limits: ServerLimits = ServerLimits(),
) -> dict:
    """gunicorn's settings for the hub."""
    bracketed = f"[{host}]" if ":" in host else host
    options = {
        "bind": [f"{bracketed}:{port}"],
        "worker_class": "sync.hub.server.HeadFirstWorker",
        "workers": limits.workers,
        "threads": limits.threads,
        "worker_connections": limits.connections,
        "timeout": limits.timeout_s,
        "graceful_timeout": 30,
        "keepalive": limits.keepalive_s,
        "limit_request_line": limits.request_line,
        "limit_request_fields": limits.header_fields,
        "limit_request_field_size": limits.header_field_size,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "clinic-hub",
    }
    if certificate is not None:
        options.update(certfile=str(certificate), keyfile=str(key or certificate))
    return options


def open_files_allowed() -> int:
    """Raise this process's open-file limit to its hard limit (a shell's default of 1,024
    would stop a worker accepting long before its connection limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return soft


def serve(
    app_config: Mapping,
    *,
    host: str,
    port: int,
    certificate: Path | None = None,
    key: Path | None = None,
    limits: ServerLimits = ServerLimits(),
) -> None:
    """Serve the hub in the foreground until SIGTERM or SIGINT."""
    # gunicorn names itself in `Server` (older versions with their version): say less.
    gunicorn.http.wsgi.SERVER = SERVER_NAME
    limits = replace(limits, connections=min(limits.connections, open_files_allowed() - 64))
    options = server_options(host=host, port=port, certificate=certificate, key=key, limits=limits)
    HubServer(app_config, options).run()


# ---- the demo's hub: waitress in a background thread -------------------------------------


@dataclass
class RunningHub:
    """A hub serving in a background thread; `url` is where devices reach it."""

    app: Flask
    server: object
    thread: threading.Thread
    host: str
    port: int
    scheme: str = "http"
    stopper: object = None

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{shown}:{self.port}"

    def stop(self) -> None:
        if callable(self.stopper):
            self.stopper()
        self.thread.join(timeout=30)
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
) -> RunningHub:
    """Start a hub on `host:port` (port 0: any free one) in a daemon thread, with waitress
    (the demo's hub on loopback; `clinic hub serve` is `serve`)."""
    from waitress.server import create_server

    if app is None:
        app = create_app(
            {**({"HUB_DATA_DIR": str(data_dir)} if data_dir else {}), **(config or {})}
        )
    server = create_server(
        app, host=host, port=port, threads=4, ident=SERVER_NAME, connection_limit=200
    )
    thread = threading.Thread(target=server.run, name="hub-server", daemon=True)
    thread.start()

    def stop() -> None:
        server.close()
        for channel in list(server._map.values()):  # the loop ends with its last channel
            channel.close()
        server.task_dispatcher.shutdown(timeout=5)

    return RunningHub(app, server, thread, host, server.effective_port, stopper=stop)
