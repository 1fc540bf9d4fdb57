"""A virtual card served to a real pcscd through vsmartcard's vpcd reader driver.

vpcd (Debian package vsmartcard-vpcd) is a PC/SC reader driver that listens on TCP (port
35963 for its first slot, 35964 for the second, by default). A virtual card is a client
that connects to it: connected means inserted, disconnected means removed. Every message
either way is a 2-byte big-endian length and a payload. From vpcd, a payload of one byte is
a control message: 00 power off, 01 power on, 02 reset, 04 "send your ATR"; anything
longer is a C-APDU. The card answers the ATR request with its ATR and a C-APDU with the
R-APDU, and answers nothing else.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

from drivers.cards.virtual import CardPulled, VirtualCard

VPCD_PORT = 35963
POWER_OFF, POWER_ON, RESET, GET_ATR = 0x00, 0x01, 0x02, 0x04
POLL_SECONDS = 0.1  # how often a blocked read looks at the stop flag


class VpcdCardServer:
    """Plays `card` to vpcd at host:port until stopped.

    A card that is pulled out (`CardPulled`) disconnects; with `reinsert_after` it comes
    back that many seconds later, otherwise it stays out and `serve` returns. When vpcd is
    not listening (pcscd not running) it retries every `retry` seconds.
    """

    def __init__(
        self,
        card: VirtualCard,
        host: str = "localhost",
        port: int = VPCD_PORT,
        *,
        reinsert_after: float | None = None,
        retry: float = 1.0,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.card = card
        self.address = (host, port)
        self.reinsert_after = reinsert_after
        self.retry = retry
        self.log = log
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- run in a thread (tests, the web UI) --------------------------------------------

    def start(self) -> VpcdCardServer:
        self._thread = threading.Thread(
            target=self.serve, name=f"vpcd {self.card.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Pull the card out and stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    # ---- run in the foreground (clinic card emulate) -----------------------------------

    def serve(self) -> None:
        host, port = self.address
        waiting_said = False
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(self.address, timeout=self.retry)
            except OSError as error:
                if not waiting_said:
                    self.log(f"waiting for vpcd at {host}:{port} (is pcscd running?): {error}")
                    waiting_said = True
                self._stop.wait(self.retry)
                continue
            waiting_said = False
            self.log(f"card {self.card.name} inserted (connected to vpcd at {host}:{port})")
            try:
                pulled = self._serve_connection(sock)
            finally:
                self.connected.clear()
                sock.close()
            if pulled:
                self.log(f"card {self.card.name} pulled out mid-read")
                if self.reinsert_after is None:
                    return
                self._stop.wait(self.reinsert_after)
            elif not self._stop.is_set():
                self.log("vpcd closed the connection; reconnecting")
                self._stop.wait(self.retry)
        self.log(f"card {self.card.name} removed")

    def _serve_connection(self, sock: socket.socket) -> bool:
        """Answer vpcd until stopped or disconnected; True if the card was pulled."""
        sock.settimeout(POLL_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one small answer per APDU
        self.card.power_on()
        self.connected.set()
        buffer = b""
        while not self._stop.is_set():
            if hasattr(socket, "TCP_QUICKACK"):
                # vpcd writes a message's length and its body separately; acknowledging at
                # once lets the body follow now instead of after a delayed ACK (~40 ms).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return False
            if not chunk:
                return False
            buffer += chunk
            while len(buffer) >= 2:
                (length,) = struct.unpack(">H", buffer[:2])
                if len(buffer) < 2 + length:
                    break
                message, buffer = buffer[2 : 2 + length], buffer[2 + length :]
                try:
                    answer = self._answer(message)
                except CardPulled:
                    return True
                if answer is not None:
                    sock.sendall(struct.pack(">H", len(answer)) + answer)
        return False

    def _answer(self, message: bytes) -> bytes | None:
        if len(message) == 1:
            if message[0] == GET_ATR:
                return self.card.atr
            if message[0] in (POWER_OFF, POWER_ON, RESET):
                self.card.power_on()
            return None
        return self.card.process(message)


def parse_vpcd_address(text: str) -> tuple[str, int]:
    """HOST:PORT, HOST or :PORT; the port defaults to vpcd's 35963."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text or "localhost", VPCD_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: the port must be a number 1..65535")
    return host or "localhost", int(port)
