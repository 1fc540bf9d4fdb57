"""The QR e-voucher scanner on a serial port (USB-CDC or RS-232 scanners in serial mode):
each scan arrives as one line of text ended by CR, LF or CRLF. Any pyserial URL works
(`/dev/ttyACM0`, `loop://`, `spy:///dev/ttyACM0`, a pty).

Reading is transport only; what the line means is `drivers.vouchers.verify_voucher`'s
business.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import serial
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from drivers.vouchers import Voucher, VoucherError, verify_voucher

READ_SLICE = 0.05  # seconds per blocking read, so timeouts are kept
LINE_GAP = 0.3  # seconds of silence in the middle of a line that make it a cut-off scan
MAX_LINE = 4096


class QrScanner:
    def __init__(self, port, *, line_gap: float = LINE_GAP) -> None:
        self.port = port
        self.port.timeout = READ_SLICE
        self.line_gap = line_gap
        self._buffer = bytearray()

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> QrScanner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read_line(self, timeout: float) -> str | None:
        """The next scanned line, None if nothing was scanned within `timeout` seconds.

        A line that starts but does not end (no byte for `line_gap` seconds) is a
        `VoucherError("TRUNCATED")`; its bytes are dropped.
        """
        deadline = time.monotonic() + timeout
        last_byte = None
        while True:
            line = self._take_line()
            if line is not None:
                return line
            now = time.monotonic()
            if self._buffer and last_byte is not None and now - last_byte > self.line_gap:
                size = len(self._buffer)
                self._buffer.clear()
                raise VoucherError("TRUNCATED", f"{size} bytes and no end of line")
            if not self._buffer and now >= deadline:
                return None
            try:
                chunk = self.port.read(max(1, self.port.in_waiting))
            except serial.SerialException as error:
                raise VoucherError("SCANNER_ERROR", str(error)) from None
            if chunk:
                self._buffer += chunk
                last_byte = time.monotonic()
            elif self._buffer and last_byte is None:
                last_byte = now  # bytes left over from an earlier read

    def _take_line(self) -> str | None:
        while True:
            ends = [i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\n")) if i >= 0]
            if not ends:
                if len(self._buffer) > MAX_LINE:
                    self._buffer.clear()
                    raise VoucherError("GARBAGE", f"a line longer than {MAX_LINE} bytes")
                return None
            end = min(ends)
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if raw.strip():
                return raw.decode("utf-8", errors="replace").strip()

    def read_voucher(
        self,
        county_public_key: Ed25519PublicKey,
        *,
        clock: Callable[[], datetime],
        timeout: float,
    ) -> Voucher:
        """Wait for a scan and verify it at the time it arrived."""
        line = self.read_line(timeout)
        if line is None:
            raise VoucherError("NO_SCAN", f"{timeout:g} s")
        return verify_voucher(line, county_public_key, clock())


def scanner_for_url(url: str, *, baudrate: int = 9600) -> QrScanner:
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=READ_SLICE)
    except (serial.SerialException, ValueError) as error:
        raise VoucherError("SCANNER_ERROR", str(error)) from None
    return QrScanner(port)
