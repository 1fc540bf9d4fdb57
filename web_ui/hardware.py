"""The terminal's card reader and receipt printer, chosen by URL, shared by all requests.

Card operations are serialised by a lock (one reader, many browser tabs); the printer is
opened per receipt, so a printer switched off and on again just works on the next try.
"""

import contextlib
import threading
from dataclasses import dataclass
from datetime import date

from drivers.cards import CardError, EmulatedCardReader, card_reader_for_url, demo_card, read_card
from drivers.cards.profile import InsuranceCard
from drivers.escpos import PrinterStatus
from drivers.printer import PrinterError, printer_for_url
from edge.clock import Clock


@dataclass(frozen=True)
class CardState:
    present: bool
    insertions: int = 0  # cards inserted since start: tells a new card from the same one
    error: CardError | None = None


class Hardware:
    def __init__(self, reader_url: str | None, printer_url: str | None, clock: Clock) -> None:
        self.reader_url = reader_url
        self.printer_url = printer_url
        self.clock = clock  # the emulated reader's demo cards are dated as of its day
        self._reader = None
        self._lock = threading.RLock()
        self._insertions = 0

    # ---- card reader -------------------------------------------------------------------

    def _the_reader(self):
        if self.reader_url is None:
            raise CardError("NO_READER", "no card reader is configured (--reader)")
        if self._reader is None:
            self._reader = card_reader_for_url(self.reader_url, today=self.clock().date())
        return self._reader

    def _forget_reader(self) -> None:
        if self._reader is not None and not isinstance(self._reader, EmulatedCardReader):
            with contextlib.suppress(CardError):
                self._reader.close()
            self._reader = None

    def card_state(self) -> CardState:
        with self._lock:
            try:
                reader = self._the_reader()
                while (event := reader.wait_for_event(0)) is not None:
                    self._insertions += event.kind == "inserted"
                return CardState(reader.card_present(), self._insertions)
            except CardError as error:
                self._forget_reader()
                return CardState(False, self._insertions, error)

    def read(self, today: date, timeout: float) -> InsuranceCard:
        """Wait up to `timeout` seconds for a card and read it; `CardError` on failure."""
        with self._lock:
            try:
                return read_card(self._the_reader(), today=today, timeout=timeout)
            except CardError as error:
                if error.code in ("READER_ERROR", "PCSC_UNAVAILABLE", "NO_READER"):
                    self._forget_reader()
                raise

    @property
    def emulated(self) -> bool:
        return self.reader_url is not None and self.reader_url.startswith("emulated://")

    def emulated_reader(self) -> EmulatedCardReader:
        with self._lock:
            reader = self._the_reader()
        if not isinstance(reader, EmulatedCardReader):
            raise CardError("BAD_URL", "the tester panel needs an emulated:// card reader")
        return reader

    def insert(self, card_name: str) -> None:
        """Tester's hands: put a demo card (fresh, powered) into the emulated reader."""
        self.emulated_reader().insert(demo_card(card_name, self.clock().date()))

    def remove(self) -> None:
        self.emulated_reader().remove()

    def inserted_card(self) -> str | None:
        """The name of the card in the emulated reader (None when empty or not emulated)."""
        try:
            reader = self.emulated_reader()
        except CardError:
            return None
        card = reader._card  # the tester panel shows what it inserted
        return None if card is None else card.name

    # ---- printer -----------------------------------------------------------------------

    def print_bytes(self, data: bytes) -> PrinterStatus | None:
        if not self.printer_url:
            raise PrinterError("BAD_URL", "no receipt printer is configured (--printer)")
        with printer_for_url(self.printer_url) as printer:
            return printer.print_bytes(data)

    def printer_status(self) -> tuple[PrinterStatus | None, PrinterError | None]:
        if not self.printer_url:
            return None, PrinterError("BAD_URL", "no receipt printer is configured")
        try:
            with printer_for_url(self.printer_url) as printer:
                return printer.status(), None
        except PrinterError as error:
            return None, error
