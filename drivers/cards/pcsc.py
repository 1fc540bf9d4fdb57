"""PC/SC card readers through pyscard's `smartcard.scard` (the PC/SC API itself) and pcscd.

pyscard is the optional extra `pcsc` (it builds against libpcsclite). The client library
talks to pcscd over its socket; `PCSCLITE_CSOCK_NAME` picks another socket, which is how
the tests reach their own pcscd.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from drivers.cards.base import CardEvent, CardReader, CardSession
from drivers.cards.errors import CardError

try:
    from smartcard import scard
except ImportError:  # pragma: no cover - depends on the installation
    scard = None

WAIT_SLICE_MS = 500  # block in pcscd at most this long, so Ctrl-C is seen


def open_reader(location: str, *, today: date) -> PcscCardReader:
    """`pcsc://LOCATION`: the reader called LOCATION, or every reader when it is empty."""
    return PcscCardReader(location or None)


def _message(hresult: int) -> str:
    return f"{scard.SCardGetErrorMessage(hresult).strip()} (0x{hresult & 0xFFFFFFFF:08X})"


class PcscCardReader(CardReader):
    """One named PC/SC reader, or every reader when `reader_name` is None."""

    def __init__(self, reader_name: str | None = None) -> None:
        if scard is None:
            raise CardError(
                "PCSC_UNAVAILABLE", "pyscard is not installed: pip install 'clinic-terminal[pcsc]'"
            )
        self.reader_name = reader_name
        self.url = "pcsc://" + (reader_name or "")
        hresult, self._context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise CardError("PCSC_UNAVAILABLE", f"is pcscd running? {_message(hresult)}")
        self._states: dict[str, int] = {}
        self._atrs: dict[str, bytes] = {}  # readers with a card in them
        self._events: list[CardEvent] = []
        self._poll(0)
        self._events.clear()  # what is in the readers now is the starting state, not news

    def close(self) -> None:
        if self._context is not None:
            scard.SCardReleaseContext(self._context)
            self._context = None

    # ---- readers and their states ----------------------------------------------------------

    def reader_names(self) -> list[str]:
        hresult, names = scard.SCardListReaders(self._context, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            names = []
        elif hresult != scard.SCARD_S_SUCCESS:
            raise self._failure(hresult)
        return list(names)

    def _watched(self) -> list[str]:
        names = self.reader_names()
        if self.reader_name is None:
            if not names:
                raise CardError("NO_READER", "pcscd knows no reader")
            return names
        if self.reader_name not in names:
            raise CardError(
                "READER_NOT_FOUND", f"{self.reader_name!r}; connected: {', '.join(names) or 'none'}"
            )
        return [self.reader_name]

    def _poll(self, timeout_ms: int) -> None:
        """Wait up to `timeout_ms` for a change in the watched readers; queue the events."""
        names = self._watched()
        for gone in set(self._atrs) - set(names):
            del self._atrs[gone]
            self._events.append(CardEvent("removed", gone))
        states = [(name, self._states.get(name, scard.SCARD_STATE_UNAWARE)) for name in names]
        hresult, new_states = scard.SCardGetStatusChange(self._context, timeout_ms, states)
        if hresult in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
            return
        if hresult == scard.SCARD_E_UNKNOWN_READER:
            self._states.clear()  # a reader went away between listing and waiting
            return
        if hresult != scard.SCARD_S_SUCCESS:
            raise self._failure(hresult)
        for name, state, atr in new_states:
            self._states[name] = state & ~scard.SCARD_STATE_CHANGED
            present = bool(state & scard.SCARD_STATE_PRESENT)
            if present and name not in self._atrs:
                self._atrs[name] = bytes(atr)
                self._events.append(CardEvent("inserted", name, bytes(atr)))
            elif not present and name in self._atrs:
                del self._atrs[name]
                self._events.append(CardEvent("removed", name))

    def card_present(self) -> bool:
        self._poll(0)
        return bool(self._atrs)

    def wait_for_event(self, timeout: float) -> CardEvent | None:
        deadline = time.monotonic() + timeout
        while not self._events:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._poll(min(WAIT_SLICE_MS, int(remaining * 1000) + 1))
        return self._events.pop(0)

    def _failure(self, hresult: int) -> CardError:
        if hresult in (scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED):
            return CardError("PCSC_UNAVAILABLE", f"is pcscd running? {_message(hresult)}")
        return CardError("READER_ERROR", _message(hresult))

    # ---- sessions -------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[CardSession]:
        self._poll(0)
        if not self._atrs:
            raise CardError("NO_CARD", self.url)
        name = self.reader_name or next(iter(self._atrs))
        hresult, card, protocol = scard.SCardConnect(
            self._context, name, scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )  # fmt: skip
        if hresult != scard.SCARD_S_SUCCESS:
            raise _connect_error(hresult, name)
        try:
            yield _PcscSession(card, protocol, self._atrs.get(name, b""), name)
        finally:
            scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)


_GONE = (
    "SCARD_W_REMOVED_CARD", "SCARD_E_NO_SMARTCARD", "SCARD_W_RESET_CARD",
    "SCARD_E_NOT_TRANSACTED", "SCARD_F_COMM_ERROR", "SCARD_E_READER_UNAVAILABLE",
    "SCARD_W_UNPOWERED_CARD",
)  # fmt: skip


def _connect_error(hresult: int, reader: str) -> CardError:
    if hresult in (scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD):
        return CardError("NO_CARD", f"{reader}: {_message(hresult)}")
    if hresult == scard.SCARD_W_UNRESPONSIVE_CARD:
        return CardError("CARD_MUTE", f"{reader}: {_message(hresult)}")
    return CardError("READER_ERROR", f"{reader}: {_message(hresult)}")


class _PcscSession(CardSession):
    def __init__(self, card: int, protocol: int, atr: bytes, reader: str) -> None:
        self.card = card
        self.pci = scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
        self.atr = atr
        self.reader = reader

    def transmit(self, apdu: bytes) -> bytes:
        hresult, response = scard.SCardTransmit(self.card, self.pci, list(apdu))
        if hresult != scard.SCARD_S_SUCCESS:
            gone = {getattr(scard, name) for name in _GONE}
            code = "CARD_REMOVED" if hresult in gone else "READER_ERROR"
            raise CardError(code, f"{self.reader}: {_message(hresult)}")
        if not response:  # vpcd's way of saying the card went away mid-command
            raise CardError("CARD_REMOVED", f"{self.reader}: the card gave no answer")
        return bytes(response)
