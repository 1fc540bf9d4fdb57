"""A fault-injecting TCP proxy for the sync tests: it sits between the agent and the hub
on loopback and, for each connection, does one thing drawn at random (seeded):

- `pass`: relay the request and the answer;
- `cut_before`: close the connection before reading the request;
- `cut_mid_request`: forward the headers and half the body, then cut both sides;
- `cut_after_commit`: forward the whole request, wait for the hub's whole answer (the hub
  has committed), then close without answering;
- `cut_mid_answer`: relay only the first half of the answer;
- `delay`: wait a little, then relay;
- `error_500`: answer 500 without asking the hub.

Over HTTPS (`tls`: the hub's certificate and key), the proxy ends the device's TLS with
the hub's own certificate (as a TLS reverse proxy would) and opens its own TLS connection
to the hub, trusting only that certificate: every fault above still happens to the HTTP
request and answer, and `cut_before` cuts before the TLS handshake.
"""

import random
import socket
import ssl
import threading
import time
from collections import Counter

FAULTS = (
    "pass",
    "cut_before",
    "cut_mid_request",
    "cut_after_commit",
    "cut_mid_answer",
    "delay",
    "error_500",
)
ERROR_500 = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 5\r\nConnection: close\r\n\r\noops\n"
)


def _read_request(conn: socket.socket) -> bytes:
    """One whole HTTP request (headers and a Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _read_all(conn: socket.socket) -> bytes:
    """The hub's whole answer: the agent asks for `Connection: close`."""
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


class FaultyProxy:
    def __init__(
        self,
        upstream_port: int,
        seed: int,
        weights: dict[str, float] | None = None,
        *,
        tls: dict | None = None,
    ):
        self.upstream = ("127.0.0.1", upstream_port)
        self.tls = tls
        if tls is not None:
            self.server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.server_context.load_cert_chain(tls["certificate"], tls["key"])
            self.client_context = ssl.create_default_context(cafile=tls["certificate"])
        self.rng = random.Random(seed)
        self.weights = weights or dict.fromkeys(FAULTS, 1.0)
        self.faulty = True
        self.seen: Counter = Counter()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="faulty-proxy", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _choose(self) -> str:
        with self._lock:
            if not self.faulty:
                fault = "pass"
            else:
                names = list(self.weights)
                fault = self.rng.choices(names, [self.weights[n] for n in names])[0]
            self.seen[fault] += 1
            return fault

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn, self._choose()), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _upstream(self) -> socket.socket:
        hub = socket.create_connection(self.upstream, timeout=10)
        if self.tls is None:
            return hub
        return self.client_context.wrap_socket(hub, server_hostname=self.upstream[0])

    def _handle(self, client: socket.socket, fault: str) -> None:
        try:
            client.settimeout(10)
            if fault == "cut_before":
                return
            if self.tls is not None:
                client = self.server_context.wrap_socket(client, server_side=True)
            request = _read_request(client)
            if fault == "error_500":
                client.sendall(ERROR_500)
                return
            if fault == "delay":
                time.sleep(self.rng.uniform(0.01, 0.2))
            with self._upstream() as hub:
                if fault == "cut_mid_request":
                    hub.sendall(request[: max(1, len(request) // 2)])
                    return
                hub.sendall(request)
                answer = _read_all(hub)
            if fault == "cut_after_commit":
                return
            if fault == "cut_mid_answer":
                client.sendall(answer[: len(answer) // 2])
                return
            client.sendall(answer)
        except OSError:
            pass  # a fault of our own making, or the agent gave up: both are fine here
        finally:
            client.close()
