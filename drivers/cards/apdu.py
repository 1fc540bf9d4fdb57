"""Command and response APDUs (ISO/IEC 7816-4), pure: bytes in, values or `CardError` out.

Nothing here touches a reader. `exchange` takes any `transmit(bytes) -> bytes` callable,
so the same code runs over pyscard, the in-process emulated reader and tests' fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from drivers.cards.errors import CardError

Transmit = Callable[[bytes], bytes]

SW_OK = 0x9000

# Status words that are errors, by ISO/IEC 7816-4 meaning. 61xx and 6Cxx are not errors:
# `exchange` follows them (GET RESPONSE, re-send with the right Le).
STATUS_CODES: dict[int, str] = {
    0x6281: "DATA_CORRUPTED",
    0x6282: "END_OF_FILE",
    0x6283: "FILE_INVALIDATED",
    0x6700: "WRONG_LENGTH",
    0x6981: "COMMAND_INCOMPATIBLE",
    0x6982: "SECURITY_STATUS",
    0x6983: "AUTH_BLOCKED",
    0x6985: "CONDITIONS_NOT_SATISFIED",
    0x6A81: "FUNCTION_NOT_SUPPORTED",
    0x6A82: "FILE_NOT_FOUND",
    0x6A83: "RECORD_NOT_FOUND",
    0x6A86: "WRONG_P1P2",
    0x6B00: "WRONG_OFFSET",
    0x6D00: "INS_NOT_SUPPORTED",
    0x6E00: "CLA_NOT_SUPPORTED",
    0x6F00: "CARD_FAULT",
}

MAX_CHAINED_RESPONSES = 16  # a card answering 61xx for ever must not hang the reader


@dataclass(frozen=True)
class Response:
    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF


def parse_response(raw: bytes) -> Response:
    """Split an R-APDU into data and status word."""
    if len(raw) < 2:
        raise CardError("BAD_RESPONSE", f"{len(raw)} bytes, a response has at least 2")
    if len(raw) > 256 + 2:
        raise CardError("BAD_RESPONSE", f"{len(raw)} bytes, more than a short response holds")
    return Response(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))


def status_error(sw: int, step: str) -> CardError:
    """The `CardError` for a status word that is not 9000."""
    code = STATUS_CODES.get(sw, "CARD_STATUS")
    return CardError(code, step, sw=sw)


def _command(
    cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
) -> bytes:
    if len(data) > 255:
        raise ValueError("short APDUs carry at most 255 data bytes")
    if le is not None and not 0 <= le <= 256:
        raise ValueError("Le is 1..256 (0 means 256)")
    body = bytes([cla, ins, p1, p2])
    if data:
        body += bytes([len(data)]) + data
    if le is not None:
        body += bytes([le % 256])
    return body


def select_by_name(aid: bytes) -> bytes:
    """SELECT (A4) by DF name, first occurrence, return FCI template."""
    if not 5 <= len(aid) <= 16:
        raise ValueError("an AID is 5 to 16 bytes")
    return _command(0x00, 0xA4, 0x04, 0x00, aid, le=256)


def read_record(sfi: int, record: int, le: int = 256) -> bytes:
    """READ RECORD (B2) `record` of the file with short file identifier `sfi`."""
    if not 1 <= sfi <= 30 or not 1 <= record <= 254:
        raise ValueError("SFI is 1..30, record number 1..254")
    return _command(0x00, 0xB2, record, (sfi << 3) | 0x04, le=le)


def read_binary(sfi: int, offset: int, le: int = 256) -> bytes:
    """READ BINARY (B0) of the transparent file `sfi` from `offset` (at most 255)."""
    if not 1 <= sfi <= 30 or not 0 <= offset <= 255:
        raise ValueError("SFI is 1..30, an offset with SFI is 0..255")
    return _command(0x00, 0xB0, 0x80 | sfi, offset, le=le)


def get_response(le: int) -> bytes:
    return _command(0x00, 0xC0, 0x00, 0x00, le=le)


def fci_df_name(fci: bytes) -> bytes:
    """The DF name (tag 84) in a SELECT answer's FCI template (tag 6F), short BER lengths."""
    body = _ber_value(fci, 0x6F, "FCI")
    i = 0
    while i < len(body):
        tag = body[i]
        value = _ber_value(body[i:], tag, f"FCI tag {tag:02X}")
        if tag == 0x84:
            return value
        i += _ber_size(body[i:])
    raise CardError("BAD_FCI", "no DF name (tag 84) in the FCI")


def _ber_size(data: bytes) -> int:
    """Bytes taken by the one-byte-tag BER-TLV at the start of `data` (lengths < 256)."""
    if len(data) < 2:
        raise CardError("BAD_FCI", "a TLV is cut short")
    if data[1] < 0x80:
        header, length = 2, data[1]
    elif data[1] == 0x81 and len(data) >= 3:
        header, length = 3, data[2]
    else:
        raise CardError("BAD_FCI", f"length byte {data[1]:02X} is not a short BER length")
    if header + length > len(data):
        raise CardError("BAD_FCI", "a TLV is longer than the FCI")
    return header + length


def _ber_value(data: bytes, tag: int, where: str) -> bytes:
    if not data or data[0] != tag:
        raise CardError("BAD_FCI", f"{where}: expected tag {tag:02X}")
    size = _ber_size(data)
    if tag == 0x6F and size != len(data):
        raise CardError("BAD_FCI", "bytes after the FCI template")
    header = 3 if data[1] == 0x81 else 2
    return data[header:size]


def exchange(transmit: Transmit, command: bytes) -> Response:
    """Send `command`; follow 61xx (GET RESPONSE, as T=0 cards answer) and 6Cxx (send
    again with the Le the card asks for). Returns the final response, whatever its SW."""
    response = parse_response(transmit(command))
    if response.sw1 == 0x6C:
        response = parse_response(transmit(command[:-1] + bytes([response.sw2])))
    data = response.data
    for _ in range(MAX_CHAINED_RESPONSES):
        if response.sw1 != 0x61:
            return Response(data, response.sw)
        response = parse_response(transmit(get_response(response.sw2 or 256)))
        data += response.data
    raise CardError("BAD_RESPONSE", f"more than {MAX_CHAINED_RESPONSES} chained responses")


def expect_ok(transmit: Transmit, command: bytes, step: str) -> bytes:
    """The data of a command that must answer 9000."""
    response = exchange(transmit, command)
    if response.sw != SW_OK:
        raise status_error(response.sw, step)
    return response.data
