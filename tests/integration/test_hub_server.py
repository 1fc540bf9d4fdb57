"""`clinic hub serve`: gunicorn, not a development server. A thousand and a half slow
clients neither take a thread each nor keep a normal request waiting; `Server` names no
software and no version; a body over the limit gets 413; HTTPS with the certificate
`clinic hub certificate` made; uploads are recomputed with several workers."""

import contextlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sync_helpers import NOW, enroll, new_device

from sync import agent
from sync.demo import install_demo_county
from sync.hub.bootstrap import open_hub_store
from sync.hub.server import HEAD_TIMEOUT_S, SERVER_NAME, open_files_allowed
from sync.protocol import MAX_REQUEST_BYTES

CLINIC = Path(sys.executable).with_name("clinic")
SLOW_CLIENTS = 1500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def hub_dir(tmp_path) -> Path:
    directory = tmp_path / "hub"
    install_demo_county(directory, NOW)
    return directory


@contextmanager
def serving(hub_dir: Path, *args: str) -> Iterator[tuple[subprocess.Popen, int]]:
    """`clinic hub serve` in a child process, until it answers; stopped with SIGTERM."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CLINIC_HUB_DATABASE"}
    env["CLINIC_CLOCK"] = NOW.isoformat()
    log = (hub_dir / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(CLINIC), "hub", "serve", "--data-dir", str(hub_dir), "--port", str(port), *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        probe = None
        if (hub_dir / "hub-tls.crt").exists():
            probe = ssl.create_default_context()
            probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE
        while True:
            try:  # a worker answers
                get(port, "/api/v1/time", context=probe if probe else None, timeout=2)
                break
            except (OSError, http.client.HTTPException):
                assert server.poll() is None, (hub_dir / "serve.log").read_text()
                assert time.monotonic() < deadline, "the hub did not start"
                time.sleep(0.1)
        yield server, port
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def threads_of(pid: int) -> int:
    """Threads of a process and its children (gunicorn's master and workers)."""
    total = len(os.listdir(f"/proc/{pid}/task"))
    for task in os.listdir(f"/proc/{pid}/task"):
        children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        total += sum(threads_of(int(child)) for child in children)
    return total


def get(port: int, path: str, *, context: ssl.SSLContext | None = None, timeout: float = 10):
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=timeout, context=context
        )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_slow_clients_hold_sockets_not_threads_and_normal_requests_still_answer(hub_dir):
    assert open_files_allowed() > SLOW_CLIENTS + 100  # this process holds the slow clients
    with serving(hub_dir, "--workers", "2", "--threads", "4") as (server, port):
        idle_threads = threads_of(server.pid)
        slow = []
        try:
            for number in range(SLOW_CLIENTS):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                # Half a request, as a slowloris sends it: the line and a header, no end.
                sock.sendall(b"GET /api/v1/time HTTP/1.1\r\nHost: hub\r\nX-Slow-%d: " % number)
                slow.append(sock)
            time.sleep(1)
            for sock in slow[::10]:  # and a byte more now and then
                sock.sendall(b"a")
            started = time.monotonic()
            status, _headers, body = get(port, "/api/v1/time")
            answered_in = time.monotonic() - started
            busy_threads = threads_of(server.pid)
        finally:
            for sock in slow:
                sock.close()
        assert status == 200 and json.loads(body)
        # Well before the slow heads' deadline: it did not wait for them to be dropped.
        assert answered_in < HEAD_TIMEOUT_S / 2, f"a normal request took {answered_in:.2f} s"
        # The werkzeug server held one thread per connection (1,502 for 1,500).
        # Here: the master, and in each of 2 workers its loop, its 4 request threads and
        # its reconciler.
        assert busy_threads <= 1 + 2 * (1 + 4 + 1), (idle_threads, busy_threads)


def test_server_header_names_no_version_and_a_too_large_body_gets_413(hub_dir):
    with serving(hub_dir) as (_server, port):
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:  # two requests on one kept-alive connection (its head read anew each time)
            for _ in range(2):
                kept.request("GET", "/api/v1/time")
                response = kept.getresponse()
                response.read()
                assert response.status == 200
                assert response.getheader("Server") == SERVER_NAME  # no software, no version
                assert response.getheader("Connection") != "close"
        finally:
            kept.close()

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.putrequest("POST", "/api/v1/records")
            connection.putheader("Content-Type", "application/x-ndjson")
            connection.putheader("Content-Length", str(MAX_REQUEST_BYTES + 1))
            connection.endheaders()
            # The hub may answer and close before reading it all.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.send(b"x" * (MAX_REQUEST_BYTES + 1))
            response = connection.getresponse()
            assert response.status == 413
            assert response.getheader("Server") == SERVER_NAME
        finally:
            connection.close()

        # A request line over the limit is refused by the server itself.
        status, headers, body = get(port, "/api/v1/time?" + "a" * 5000)
        assert status == 400 and b"too large" in body
        assert headers.get("Server", SERVER_NAME) == SERVER_NAME


def test_https_with_the_hubs_certificate_and_several_workers_recompute_uploads(hub_dir, tmp_path):
    from click.testing import CliRunner

    from edge.console import main

    made = CliRunner().invoke(
        main, ["hub", "certificate", "--data-dir", str(hub_dir), "--tls-host", "127.0.0.1"]
    )
    assert made.exit_code == 0, made.output
    certificate = (hub_dir / "hub-tls.crt").read_text()
    device = new_device(tmp_path / "device")
    try:
        with serving(hub_dir, "--workers", "2", "--reconcile-interval", "1") as (_s, port):
            # Plain HTTP on the TLS port gets nothing useful.
            with pytest.raises((http.client.HTTPException, OSError)):
                get(port, "/api/v1/time", timeout=5)
            pinned = ssl.create_default_context(cadata=certificate)
            # Clients stuck in the TLS handshake (half a ClientHello) hold no thread either.
            stuck = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
            try:
                for sock in stuck:
                    sock.sendall(b"\x16\x03\x01\x02\x00\x01")
                started = time.monotonic()
                status, headers, _ = get(port, "/api/v1/time", context=pinned)
                assert time.monotonic() - started < HEAD_TIMEOUT_S / 2
            finally:
                for sock in stuck:
                    sock.close()
            assert status == 200 and headers["Server"] == SERVER_NAME

            url = f"https://127.0.0.1:{port}"
            enroll(device, hub_dir, url, NOW, hub_certificate=certificate)
            now = NOW + timedelta(seconds=5)
            for _ in range(4):
                device.settle(now)
            report = agent.sync_once(device.store, device.identity, device.data_dir, now)
            assert report["ok"], report["errors"]
            head = device.store.ledger_head().seq
            assert report["acked_seq"] == head

            deadline = time.monotonic() + 30
            while True:  # a worker's background reconciler recomputes them
                store = open_hub_store(hub_dir)
                try:
                    with store.unit_of_work():
                        pending = store.records_to_recompute(100)
                finally:
                    store.close()
                if not pending:
                    break
                assert time.monotonic() < deadline, f"{len(pending)} never recomputed"
                time.sleep(0.2)
    finally:
        device.store.close()


def test_plain_http_on_a_public_address_needs_saying_so(hub_dir):
    from click.testing import CliRunner

    from edge.console import main

    refused = CliRunner().invoke(
        main, ["hub", "serve", "--data-dir", str(hub_dir), "--host", "0.0.0.0"]
    )
    assert refused.exit_code == 1
    assert "--plain-http" in refused.output and "证书" in refused.output


def test_behind_a_tls_proxy_the_console_cookie_is_sent_over_https_only(hub_dir):
    with serving(hub_dir, "--behind-tls-proxy") as (_server, port):
        status, headers, _ = get(port, "/console/login")
        assert status == 200
        assert "Secure" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    with serving(hub_dir) as (_server, port):  # plain HTTP on loopback: a developer's
        _status, headers, _ = get(port, "/console/login")
        assert "Secure" not in headers["Set-Cookie"]
