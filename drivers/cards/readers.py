"""Card readers behind one interface, chosen by URL like pyserial's `serial_for_url`:

    emulated://            an in-process reader with an empty slot (insert cards in code)
    emulated://A32011501   … with that demo card in it (card number, insured number or a
                           broken card's name: `clinic card list`)
    pcsc://                any PC/SC reader (pyscard and pcscd)
    pcsc://NAME            the PC/SC reader called NAME (%-escapes allowed)

Every reader waits for cards with a timeout, reports inserted/removed events and opens a
session whose `transmit` sends one C-APDU and returns the R-APDU. What the APDUs mean is
`drivers.cards.reading`'s business, not the reader's.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Literal
from urllib.parse import unquote

from drivers.cards.errors import CardError
from drivers.cards.profile import InsuranceCard
from drivers.cards.reading import read_insurance_card
from drivers.cards.virtual import CardPulled, VirtualCard, demo_card


@dataclass(frozen=True)
class CardEvent:
    kind: Literal["inserted", "removed"]
    reader: str
    atr: bytes = b""


class CardSession(ABC):
    """A powered card, ready for APDUs."""

    atr: bytes

    @abstractmethod
    def transmit(self, apdu: bytes) -> bytes:
        """Send a C-APDU, return the R-APDU (data and status word); `CardError` if the
        card is gone or the reader fails."""


class CardReader(ABC):
    url: str

    @abstractmethod
    def card_present(self) -> bool: ...

    @abstractmethod
    def wait_for_event(self, timeout: float) -> CardEvent | None:
        """The next card inserted or removed, or None after `timeout` seconds."""

    @abstractmethod
    def session(self) -> AbstractContextManager[CardSession]:
        """A context manager: the card in the reader, powered (`NO_CARD` if there is none)."""

    def close(self) -> None:  # noqa: B027 - most readers hold nothing
        """Let go of the reader."""

    def wait_for_card(self, timeout: float) -> None:
        """Return once a card is in the reader; `CardError("NO_CARD")` after `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.card_present():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CardError("NO_CARD", f"{timeout:g} s on {self.url}")
            self.wait_for_event(remaining)

    def __enter__(self) -> CardReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_card(reader: CardReader, *, today: date, timeout: float) -> InsuranceCard:
    """Wait up to `timeout` seconds for a card, read it (ID number masked)."""
    reader.wait_for_card(timeout)
    with reader.session() as session:
        return read_insurance_card(session.transmit, today)


def card_reader_for_url(url: str, *, today: date) -> CardReader:
    """A reader by URL; an `emulated://CARD` reader holds that demo card as of `today`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise CardError("BAD_URL", f"{url!r}: use pcsc://[READER] or emulated://[CARD]")
    if scheme == "emulated":
        return EmulatedCardReader(demo_card(unquote(rest), today) if rest else None)
    if scheme == "pcsc":
        from drivers.cards.pcsc import PcscCardReader  # pyscard is an optional extra

        return PcscCardReader(unquote(rest) or None)
    raise CardError("BAD_URL", f"{url!r}: unknown scheme {scheme!r} (pcsc, emulated)")


# ---- the in-process emulated reader ---------------------------------------------------------


class EmulatedCardReader(CardReader):
    """A reader whose slot holds a `VirtualCard`; `insert` and `remove` are the tester's
    hands (other threads may call them while one waits)."""

    name = "Emulated reader 00 00"

    def __init__(self, card: VirtualCard | None = None) -> None:
        self.url = "emulated://" + (card.name if card else "")
        self._changed = threading.Condition()
        self._card: VirtualCard | None = None
        self._events: list[CardEvent] = []
        if card is not None:
            with self._changed:
                self._put(card)

    def insert(self, card: VirtualCard) -> None:
        with self._changed:
            if self._card is not None:
                self._take_out()
            self._put(card)

    def remove(self) -> None:
        with self._changed:
            if self._card is not None:
                self._take_out()

    def _put(self, card: VirtualCard) -> None:
        card.power_on()
        self._card = card
        self._events.append(CardEvent("inserted", self.name, card.atr))
        self._changed.notify_all()

    def _take_out(self) -> None:
        self._card = None
        self._events.append(CardEvent("removed", self.name))
        self._changed.notify_all()

    def card_present(self) -> bool:
        return self._card is not None

    def wait_for_event(self, timeout: float) -> CardEvent | None:
        with self._changed:
            self._changed.wait_for(lambda: self._events, timeout)
            return self._events.pop(0) if self._events else None

    def drain_events(self) -> None:
        """Forget events so far: the next `wait_for_event` waits for a new one."""
        with self._changed:
            self._events.clear()

    @contextmanager
    def session(self) -> Iterator[CardSession]:
        card = self._card
        if card is None:
            raise CardError("NO_CARD", self.url)
        card.power_on()
        yield _EmulatedSession(self, card)


class _EmulatedSession(CardSession):
    def __init__(self, reader: EmulatedCardReader, card: VirtualCard) -> None:
        self.reader = reader
        self.card = card
        self.atr = card.atr

    def transmit(self, apdu: bytes) -> bytes:
        with self.reader._changed:
            if self.reader._card is not self.card:
                raise CardError("CARD_REMOVED", self.reader.url)
            try:
                return self.card.process(bytes(apdu))
            except CardPulled:
                self.reader._take_out()
                raise CardError("CARD_REMOVED", f"card {self.card.name} pulled out") from None
