"""ESC/POS receipt printers, chosen by URL:

    /dev/ttyUSB0, loop://, spy:///dev/ttyS0, socket://printer:9100, …
                           any pyserial URL (`serial_for_url`)
    emulated:///tmp/receipts.bin[?status=paper_out]
                           an in-process printer that appends what it prints to a file

Before and after printing, the printer is asked for its status (DLE EOT). Printing comes
after the settlement is committed, so a printer that is off, out of paper or open never
loses a settlement: it raises `PrinterError`, and the receipt is printed again later
(`clinic receipt print`). Printers wired with no way back (TX only) take
`check_status=False`.
"""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import serial

from drivers import escpos
from drivers.escpos import PrinterStatus

MESSAGES: dict[str, tuple[str, str]] = {
    "NO_ANSWER": (
        "打印机无响应（未开机或未连接）",
        "the printer does not answer (off or not connected)",
    ),
    "BAD_ANSWER": ("打印机应答无法识别", "the printer's answer is not an ESC/POS status"),
    "PAPER_OUT": ("打印机缺纸", "the printer is out of paper"),
    "COVER_OPEN": ("打印机盖未合上", "the printer's cover is open"),
    "PRINTER_FAULT": (
        "打印机故障（切刀或打印头）",
        "the printer reports a fault (cutter or print head)",
    ),
    "OFFLINE": ("打印机离线", "the printer is offline"),
    "PORT": ("打印机端口无法使用", "the printer's port cannot be used"),
    "BAD_URL": ("打印机地址无法识别", "the printer URL is not understood"),
}
SAVED = "结算已保存，排除故障后可补打 / the settlement is saved: fix the printer and print again"
ANSWER_TIMEOUT = 1.0  # seconds for a DLE EOT answer; real printers answer in milliseconds
EMULATOR_STATES = {
    "ready": PrinterStatus(),
    "paper_out": PrinterStatus(paper_out=True),
    "near_end": PrinterStatus(paper_near_end=True),
    "cover_open": PrinterStatus(cover_open=True),
    "fault": PrinterStatus(error=True),
    "offline": PrinterStatus(online=False),
}


class PrinterError(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        self.message_zh, self.message_en = MESSAGES[code]
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"{code} {self.message_zh} / {self.message_en}{suffix}. {SAVED}")


class EscposPrinter:
    """A receipt printer on a pyserial-like port (write, flush, read, reset_input_buffer)."""

    def __init__(self, port, *, check_status: bool = True, url: str = "") -> None:
        self.port = port
        self.check_status = check_status
        self.url = url

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> EscposPrinter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def status(self) -> PrinterStatus:
        """DLE EOT 1 (printer), 2 (offline cause) and 4 (paper)."""
        return escpos.decode_status(self._ask(1), self._ask(2), self._ask(4))

    def _ask(self, n: int) -> int:
        try:
            self.port.reset_input_buffer()
            self.port.write(escpos.status_query(n))
            self.port.flush()
            answer = self.port.read(1)
        except serial.SerialException as error:
            raise PrinterError("PORT", str(error)) from None
        if not answer:
            raise PrinterError("NO_ANSWER", f"DLE EOT {n} on {self.url}")
        if not escpos.valid_status_byte(answer[0]):
            raise PrinterError("BAD_ANSWER", f"DLE EOT {n} answered {answer.hex().upper()}")
        return answer[0]

    def print_bytes(self, data: bytes) -> PrinterStatus | None:
        """Print; the status after printing (None when status is not checked)."""
        if self.check_status:
            before = self.status()
            if before.problem:
                raise PrinterError(before.problem, "nothing was printed")
        try:
            self.port.write(data)
            self.port.flush()
        except serial.SerialException as error:  # includes write timeouts
            raise PrinterError("PORT", str(error)) from None
        if not self.check_status:
            return None
        after = self.status()
        if after.problem:
            raise PrinterError(after.problem, "while printing: the receipt may be incomplete")
        return after


def printer_for_url(url: str, *, check_status: bool = True, baudrate: int = 9600) -> EscposPrinter:
    if url.startswith("emulated://"):
        parts = urlsplit(url)
        if not parts.path:
            raise PrinterError("BAD_URL", "emulated:///PATH/TO/FILE.bin[?status=...]")
        state = parse_qs(parts.query).get("status", ["ready"])[0]
        if state not in (*EMULATOR_STATES, "silent"):
            raise PrinterError("BAD_URL", f"status {state!r}: {', '.join(EMULATOR_STATES)}, silent")
        emulator = PrinterEmulator(
            Path(parts.path), EMULATOR_STATES.get(state, PrinterStatus()), answers=state != "silent"
        )
        return EscposPrinter(EmulatorPort(emulator), check_status=check_status, url=url)
    try:
        port = serial.serial_for_url(
            url, baudrate=baudrate, timeout=ANSWER_TIMEOUT, write_timeout=10
        )
    except (serial.SerialException, ValueError) as error:
        raise PrinterError("PORT", str(error)) from None
    return EscposPrinter(port, check_status=check_status, url=url)


# ---- the emulator: the printer's side of the line -------------------------------------------


class PrinterEmulator:
    """What a printer does with the bytes it receives: answers DLE EOT status queries with
    `status` (unless `answers` is False: a printer that is off), and appends everything
    else to `output` while it can print, dropping it when it cannot (out of paper, open)."""

    def __init__(self, output: Path, status: PrinterStatus | None = None, *, answers: bool = True):
        self.output = Path(output)
        self.status = status or PrinterStatus()
        self.answers = answers
        self._pending = b""
        self._printed = threading.Condition()
        self._cuts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the line; return the bytes the printer sends back."""
        self._pending += data
        reply = bytearray()
        printable = bytearray()
        cuts = 0
        while True:
            found = escpos.next_command(self._pending)
            if found is None:
                break
            command, length = found
            self._pending = self._pending[length:]
            if command.name == "status":
                if self.answers:
                    reply.append(escpos.encode_status(self.status, command.arg))
            elif self.answers and self.status.problem is None:
                printable += command.raw
                cuts += command.name == "cut"
        if printable:
            with self.output.open("ab") as handle:
                handle.write(printable)
        if cuts:
            with self._printed:
                self._cuts += cuts
                self._printed.notify_all()
        return bytes(reply)

    def printed(self) -> bytes:
        return self.output.read_bytes() if self.output.exists() else b""

    def text(self, width: int = 32) -> str:
        return escpos.render_text(self.printed(), width)

    def wait_for_cuts(self, count: int, timeout: float) -> bool:
        """Wait until `count` receipts (cuts) have been printed in all."""
        with self._printed:
            return self._printed.wait_for(lambda: self._cuts >= count, timeout)

    # ---- on a pseudo-terminal's master side (tests, the demo) -------------------------------

    def serve_fd(self, fd: int) -> PrinterEmulator:
        self._thread = threading.Thread(target=self._serve, args=(fd,), daemon=True)
        self._thread.start()
        return self

    def _serve(self, fd: int) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:  # the other side is not open (yet, or any more)
                time.sleep(0.05)
                continue
            reply = self.feed(data)
            if reply:
                os.write(fd, reply)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


class EmulatorPort:
    """A pyserial-like port wired straight to a `PrinterEmulator` (no serial line)."""

    def __init__(self, emulator: PrinterEmulator) -> None:
        self.emulator = emulator
        self._incoming = b""

    def write(self, data: bytes) -> int:
        self._incoming += self.emulator.feed(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def read(self, size: int = 1) -> bytes:
        data, self._incoming = self._incoming[:size], self._incoming[size:]
        return data

    def reset_input_buffer(self) -> None:
        self._incoming = b""

    def close(self) -> None:
        pass
