"""A small ESC/POS byte builder, stream parser and text renderer. Pure.

Only the commands a receipt needs, as Epson's ESC/POS reference and the GB18030 thermal
printers sold in China implement them:

    ESC @           1B 40              initialise
    FS &            1C 26              Chinese (double-byte, GB18030) character mode on
    ESC a n         1B 61 n            align: 0 left, 1 centre, 2 right
    ESC E n         1B 45 n            bold on (1) / off (0)
    GS ! n          1D 21 n            character size: 00 normal, 11 double width and height
    LF              0A                 print the line
    ESC d n         1B 64 n            print and feed n lines
    GS V 66 n       1D 56 42 n         feed n and cut (partial)
    GS ( k …        1D 28 6B pL pH …   QR code (model 2): module size, error correction,
                                       store data, print
    GS v 0 …        1D 76 30 m xL xH yL yH d…   raster bit image (QR for printers without GS ( k)
    DLE EOT n       10 04 n            real-time status: 1 printer, 2 offline cause,
                                       3 error cause, 4 paper roll sensor; answered with one byte

`parse` splits a byte stream into commands (the printer emulator uses it to find status
queries and QR codes); `render_text` shows what a printer would print, for tests and for
previews on the terminal.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

ESC, GS, FS, DLE, EOT, LF = 0x1B, 0x1D, 0x1C, 0x10, 0x04, 0x0A
ENCODING = "gb18030"
QR_ERROR_LEVELS = {"L": 48, "M": 49, "Q": 50, "H": 51}


# ---- building --------------------------------------------------------------------------


def initialise() -> bytes:
    return bytes([ESC, 0x40, FS, 0x26])  # ESC @, then FS & for GB18030 text


def align(where: str) -> bytes:
    return bytes([ESC, 0x61, {"left": 0, "center": 1, "right": 2}[where]])


def bold(on: bool) -> bytes:
    return bytes([ESC, 0x45, int(on)])


def size(big: bool) -> bytes:
    return bytes([GS, 0x21, 0x11 if big else 0x00])


def printable(text: str) -> str:
    """`text` without control characters (C0 with TAB, CR, LF, ESC, GS; DEL; C1): names
    come from the catalog, the roster and the operators, and an ESC p or GS V in one would
    kick the cash drawer or cut the paper. The builders here emit every command byte."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cc")


def text_line(text: str) -> bytes:
    """One line of text; a character GB18030 cannot encode is an error, not a '?'."""
    return printable(text).encode(ENCODING) + bytes([LF])


def feed(lines: int) -> bytes:
    return bytes([ESC, 0x64, lines])


def cut(feed_lines: int = 3) -> bytes:
    return bytes([GS, 0x56, 66, feed_lines])


def _qr_function(fn: int, data: bytes) -> bytes:
    size_ = len(data) + 2
    return bytes([GS, 0x28, 0x6B, size_ & 0xFF, size_ >> 8, 0x31, fn]) + data


def qr_code(data: bytes, *, module_size: int, error: str = "M") -> bytes:
    """A QR code in the printer's own generator (model 2)."""
    if not 1 <= module_size <= 16:
        raise ValueError("QR module size is 1..16 dots")
    if len(data) > 7089:
        raise ValueError("a QR code holds at most 7089 bytes")
    return (
        _qr_function(0x41, bytes([50, 0]))  # model 2
        + _qr_function(0x43, bytes([module_size]))
        + _qr_function(0x45, bytes([QR_ERROR_LEVELS[error]]))
        + _qr_function(0x50, b"\x30" + data)  # store
        + _qr_function(0x51, b"\x30")  # print
    )


def raster_image(rows: list[list[bool]]) -> bytes:
    """A bitmap (True = black), GS v 0, normal density; width padded to whole bytes."""
    height = len(rows)
    width_bytes = (max(len(r) for r in rows) + 7) // 8 if rows else 0
    data = bytearray()
    for row in rows:
        padded = row + [False] * (width_bytes * 8 - len(row))
        for i in range(0, len(padded), 8):
            byte = 0
            for bit in padded[i : i + 8]:
                byte = byte << 1 | bit
            data.append(byte)
    header = bytes([GS, 0x76, 0x30, 0, width_bytes & 0xFF, width_bytes >> 8,
                    height & 0xFF, height >> 8])  # fmt: skip
    return header + bytes(data)


def status_query(n: int) -> bytes:
    return bytes([DLE, EOT, n])


# ---- status ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrinterStatus:
    online: bool = True
    cover_open: bool = False
    paper_out: bool = False
    paper_near_end: bool = False
    error: bool = False

    @property
    def problem(self) -> str | None:
        """The code of what stops printing, most specific first, or None."""
        if self.paper_out:
            return "PAPER_OUT"
        if self.cover_open:
            return "COVER_OPEN"
        if self.error:
            return "PRINTER_FAULT"
        if not self.online:
            return "OFFLINE"
        return None


def valid_status_byte(byte: int) -> bool:
    """Every DLE EOT answer has bits 1 and 4 set and bits 0 and 7 clear."""
    return byte & 0x93 == 0x12


def decode_status(printer: int, offline_cause: int, paper: int) -> PrinterStatus:
    """The answers to DLE EOT 1, 2 and 4."""
    return PrinterStatus(
        online=not printer & 0x08,
        cover_open=bool(offline_cause & 0x04),
        paper_out=bool(offline_cause & 0x20 or paper & 0x60),
        paper_near_end=bool(paper & 0x0C),
        error=bool(offline_cause & 0x40),
    )


def encode_status(status: PrinterStatus, n: int) -> int:
    """What a printer in `status` answers to DLE EOT n (the emulator's side)."""
    if n == 1:
        return 0x12 | (0x08 if status.problem else 0)
    if n == 2:
        return 0x12 | (0x04 * status.cover_open) | (0x20 * status.paper_out) | (0x40 * status.error)
    if n == 3:
        return 0x12 | (0x20 * status.error)
    return 0x12 | (0x0C * status.paper_near_end) | (0x60 * status.paper_out)


# ---- parsing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str  # text, lf, init, chinese, align, bold, size, feed, cut, qr, raster, status, unknown
    raw: bytes
    arg: int = 0
    data: bytes = b""


_FIXED = {  # (prefix bytes) -> (name, total length, index of the argument or None)
    (ESC, 0x40): ("init", 2, None),
    (FS, 0x26): ("chinese", 2, None),
    (FS, 0x2E): ("chinese_off", 2, None),
    (ESC, 0x61): ("align", 3, 2),
    (ESC, 0x45): ("bold", 3, 2),
    (ESC, 0x21): ("mode", 3, 2),
    (ESC, 0x64): ("feed", 3, 2),
    (ESC, 0x74): ("codepage", 3, 2),
    (GS, 0x21): ("size", 3, 2),
    (DLE, EOT): ("status", 3, 2),
}


def next_command(buffer: bytes) -> tuple[Command, int] | None:
    """The first command in `buffer` and its length, or None if it is not complete yet."""
    if not buffer:
        return None
    first = buffer[0]
    if first == LF:
        return Command("lf", buffer[:1]), 1
    if first not in (ESC, GS, FS, DLE):
        end = 0
        while end < len(buffer) and buffer[end] not in (ESC, GS, FS, DLE, LF):
            end += 1
        return Command("text", buffer[:end], data=buffer[:end]), end
    if len(buffer) < 2:
        return None
    fixed = _FIXED.get((first, buffer[1]))
    if fixed is not None:
        name, length, arg_at = fixed
        if len(buffer) < length:
            return None
        arg = buffer[arg_at] if arg_at is not None else 0
        return Command(name, buffer[:length], arg), length
    if first == GS and buffer[1] == 0x56:  # GS V m [n]
        if len(buffer) < 3:
            return None
        length = 4 if buffer[2] in (65, 66) else 3
        if len(buffer) < length:
            return None
        return Command("cut", buffer[:length]), length
    if first == GS and buffer[1] == 0x28 and len(buffer) >= 3 and buffer[2] == 0x6B:
        if len(buffer) < 5:
            return None
        length = 5 + buffer[3] + 256 * buffer[4]
        if len(buffer) < length:
            return None
        fn = buffer[6] if length > 6 else 0
        return Command("qr", buffer[:length], fn, buffer[7:length]), length
    if first == GS and buffer[1] == 0x76:  # GS v 0 m xL xH yL yH
        if len(buffer) < 8:
            return None
        width, height = buffer[4] + 256 * buffer[5], buffer[6] + 256 * buffer[7]
        length = 8 + width * height
        if len(buffer) < length:
            return None
        return Command("raster", buffer[:length], width, buffer[8:length]), length
    return Command("unknown", buffer[:2]), 2


def parse(data: bytes) -> list[Command]:
    """Every command in a complete stream (a cut-off command at the end is 'unknown')."""
    commands = []
    while data:
        found = next_command(data)
        if found is None:
            commands.append(Command("unknown", data))
            break
        command, length = found
        commands.append(command)
        data = data[length:]
    return commands


def qr_payloads(data: bytes) -> list[bytes]:
    """The data of every QR code the stream stores (GS ( k function 80)."""
    return [c.data[1:] for c in parse(data) if c.name == "qr" and c.arg == 0x50]


# ---- rendering ---------------------------------------------------------------------------


def display_width(text: str) -> int:
    """Columns on a receipt: CJK (wide and full-width) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def place(text: str, width: int, where: str) -> str:
    """`text` aligned in `width` columns (trailing spaces dropped)."""
    gap = max(0, width - display_width(text))
    if where == "center":
        text = " " * (gap // 2) + text
    elif where == "right":
        text = " " * gap + text
    return text.rstrip()


def render_text(data: bytes, width: int = 32) -> str:
    """The text a printer would print, one receipt line per line. A QR code shows as
    `[QR <payload>]`, an image as `[image WxH]`, a cut as a dashed line."""
    lines: list[str] = []
    current: list[bytes] = []
    align, big = "left", False
    qr_data = b""

    def flush() -> None:
        text = b"".join(current).decode(ENCODING, errors="replace")
        columns = width // 2 if big else width
        lines.append(place(text, columns, align))
        current.clear()

    for command in parse(data):
        if command.name == "text":
            current.append(command.data)
        elif command.name == "lf":
            flush()
        elif command.name == "align":
            align = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center",
                     50: "right"}.get(command.arg, "left")  # fmt: skip
        elif command.name == "size":
            big = bool(command.arg & 0x0F or command.arg & 0xF0)
        elif command.name == "init":
            align, big = "left", False
        elif command.name == "feed":
            if current:
                flush()
            lines.extend([""] * command.arg)
        elif command.name == "cut":
            if current:
                flush()
            lines.append("- " * (width // 2) + "✂")
        elif command.name == "qr" and command.arg == 0x50:
            qr_data = command.data[1:]
        elif command.name == "qr" and command.arg == 0x51:
            lines.append(f"[QR {qr_data.decode('ascii', errors='replace')}]")
        elif command.name == "raster":
            lines.append(f"[image {command.arg * 8}x{len(command.data) // max(command.arg, 1)}]")
    if current:
        flush()
    return "\n".join(lines)
