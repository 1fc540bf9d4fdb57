"""Insurance cards: the profile, readers chosen by URL, and virtual cards (README.md)."""

from drivers.cards.base import CardEvent, CardReader, CardSession, read_card
from drivers.cards.emulated import EmulatedCardReader
from drivers.cards.errors import CardError
from drivers.cards.profile import InsuranceCard, mask_id_number
from drivers.cards.readers import card_reader_for_url
from drivers.cards.reading import read_insurance_card
from drivers.cards.virtual import VirtualCard, demo_card, demo_cards

__all__ = [
    "CardError",
    "CardEvent",
    "CardReader",
    "CardSession",
    "EmulatedCardReader",
    "InsuranceCard",
    "VirtualCard",
    "card_reader_for_url",
    "demo_card",
    "demo_cards",
    "mask_id_number",
    "read_card",
    "read_insurance_card",
]
