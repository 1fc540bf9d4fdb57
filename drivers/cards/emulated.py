"""The in-process card reader, `emulated://[CARD]`: a slot holding a `VirtualCard`, which
tests and the tester panel insert and remove in code.

    emulated://            an empty slot
    emulated://A32011501   … holding that demo card (card number, insured number or a
                           broken card's name: `clinic card list`)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from drivers.cards.base import CardEvent, CardReader, CardSession
from drivers.cards.errors import CardError
from drivers.cards.virtual import CardPulled, VirtualCard, demo_card


def open_reader(location: str, *, today: date) -> EmulatedCardReader:
    """`emulated://LOCATION`: LOCATION names a demo card as of `today`, or is empty."""
    return EmulatedCardReader(demo_card(location, today) if location else None)


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
