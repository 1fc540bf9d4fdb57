"""What every card reader is: a slot that reports cards inserted and removed and opens a
session whose `transmit` sends one C-APDU and returns the R-APDU, and `read_card` over it.

The backends (`emulated`, `pcsc`) implement it in their own modules; `readers` picks one
by URL. What the APDUs mean is `drivers.cards.reading`'s business, not the reader's.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from typing import Literal

from drivers.cards.errors import CardError
from drivers.cards.profile import InsuranceCard
from drivers.cards.reading import read_insurance_card


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
