"""Virtual insurance cards: the card side of the profile, answering the same APDUs as a
real card. One `VirtualCard` serves the in-process emulated reader and, through vpcd, a
real pcscd, so the reader's parser meets the same bytes either way.

`cards_for_roster(persons, dated=…)` makes one card per roster person (named by card
number; the insured number works too) and the broken cards testers need; `demo_cards(today)`
gives it the demo county's roster as of that day (`edge.demo.county`, read there and nowhere else
in the drivers).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from drivers.cards.errors import CardError
from drivers.cards.profile import (
    AID,
    SFI_CARD,
    SFI_HOLDER,
    SFI_INSURANCE,
    CardContent,
    CardFiles,
    encode_card,
    encode_tlv,
)


def make_atr(historical: bytes) -> bytes:
    """A T=0/T=1 ATR (3B 8K 80 01 …) with its check byte."""
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for byte in body:
        tck ^= byte
    return bytes([0x3B]) + body + bytes([tck])


DEMO_ATR = make_atr(b"CNYB.DEMO.V1")
BANK_CARD_AID = bytes.fromhex("A000000333010101")  # UnionPay debit: a card put in by mistake


class CardPulled(Exception):
    """The virtual card left the reader in the middle of a command."""


@dataclass(frozen=True)
class CardBehaviour:
    """How a virtual card answers, beyond its files (the broken ones differ here)."""

    aid: bytes = AID
    select_sw: int = 0x9000  # 6283: the application is invalidated (card reported lost)
    read_sw: int | None = None  # 6982: every read refused (security status)
    pull_after: int | None = None  # pulled out when command number pull_after+1 arrives
    t0_chaining: bool = False  # answer data with 61xx, to be fetched with GET RESPONSE


class VirtualCard:
    """A card in memory. `process` takes a C-APDU and returns the R-APDU."""

    def __init__(
        self, name: str, files: CardFiles, behaviour: CardBehaviour | None = None,
        atr: bytes = DEMO_ATR,
    ) -> None:  # fmt: skip
        self.name = name
        self.files = files
        self.behaviour = behaviour or CardBehaviour()
        self.atr = atr
        self.power_on()

    def __repr__(self) -> str:
        return f"VirtualCard({self.name!r})"

    def power_on(self) -> None:
        """Power on or reset: nothing selected, nothing pending."""
        self.selected = False
        self.commands = 0
        self.pending = b""

    def process(self, apdu: bytes) -> bytes:
        self.commands += 1
        pull_after = self.behaviour.pull_after
        if pull_after is not None and self.commands > pull_after:
            raise CardPulled(self.name)
        if len(apdu) < 4:
            return _sw(0x6700)
        cla, ins, p1, p2 = apdu[:4]
        if cla != 0x00:
            return _sw(0x6E00)
        body = apdu[4:]
        if ins == 0xC0:
            return self._get_response(body)
        self.pending = b""
        if ins == 0xA4:
            return self._select(p1, p2, body)
        if ins in (0xB2, 0xB0):
            if not self.selected:
                return _sw(0x6985)
            if self.behaviour.read_sw is not None:
                return _sw(self.behaviour.read_sw)
            le = _le(body)
            if le is None:
                return _sw(0x6700)
            if ins == 0xB2:
                return self._read_record(p1, p2, le)
            return self._read_binary(p1, p2, le)
        return _sw(0x6D00)

    def _answer(self, data: bytes, sw: int = 0x9000) -> bytes:
        if self.behaviour.t0_chaining and data and sw == 0x9000:
            self.pending = data
            return _sw(0x6100 | (len(data) % 256))
        return data + _sw(sw)

    def _select(self, p1: int, p2: int, body: bytes) -> bytes:
        if p1 != 0x04 or p2 != 0x00:
            return _sw(0x6A86)
        if not body or len(body) < 1 + body[0]:
            return _sw(0x6700)
        name = body[1 : 1 + body[0]]
        if name != self.behaviour.aid:
            self.selected = False
            return _sw(0x6A82)
        self.selected = True
        fci = bytes([0x6F, len(name) + 2, 0x84, len(name)]) + name
        return self._answer(fci, self.behaviour.select_sw)

    def _read_record(self, p1: int, p2: int, le: int) -> bytes:
        if p2 & 0x07 != 0x04 or p1 == 0:
            return _sw(0x6A86)
        records = {SFI_CARD: self.files.card_records, SFI_HOLDER: self.files.holder_records}
        sfi = p2 >> 3
        if sfi not in records:
            return _sw(0x6A82)
        if p1 > len(records[sfi]):
            return _sw(0x6A83)
        record = records[sfi][p1 - 1]
        if len(record) > le:
            return _sw(0x6C00 | (len(record) % 256))
        return self._answer(record)

    def _read_binary(self, p1: int, p2: int, le: int) -> bytes:
        if not p1 & 0x80 or p1 & 0x1F != SFI_INSURANCE or p1 & 0x60:
            return _sw(0x6A82)
        content = self.files.insurance
        if p2 >= len(content):
            return _sw(0x6B00)
        available = len(content) - p2
        if le > available:
            return _sw(0x6C00 | available)
        return self._answer(content[p2 : p2 + le])

    def _get_response(self, body: bytes) -> bytes:
        le = _le(body)
        if not self.pending or le is None:
            return _sw(0x6985)
        chunk, self.pending = self.pending[:le], self.pending[le:]
        if self.pending:
            return chunk + _sw(0x6100 | (len(self.pending) % 256))
        return chunk + _sw(0x9000)


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


def _le(body: bytes) -> int | None:
    """Le of a case-2 command (no data field): one byte, 00 meaning 256."""
    if len(body) != 1:
        return None
    return body[0] or 256


# ---- the demo cards -----------------------------------------------------------------------


@dataclass(frozen=True)
class DemoCard:
    name: str
    insured_id: str | None
    holder: str
    note: str
    kind: str  # roster (a demo roster person's card), broken, or protocol (a good card, odd APDUs)
    card_expiry: date
    make: Callable[[], VirtualCard] = dataclasses.field(repr=False, compare=False)

    def expect(self, today: date) -> str:
        """What reading it gives on `today`: "ok" or the CardError code. A card that cannot
        be read says so before anything looks at its expiry date."""
        if self._expect == "ok" and self.card_expiry < today:
            return "CARD_EXPIRED"
        return self._expect

    _expect: str = "ok"

    def to_dict(self, today: date) -> dict:
        return {"name": self.name, "insured_id": self.insured_id, "holder": self.holder,
                "kind": self.kind, "card_expiry": self.card_expiry.isoformat(),
                "note": self.note, "expect": self.expect(today)}  # fmt: skip


def content_for(person: dict) -> CardContent:
    """The card a roster person carries. The roster keeps only the masked ID number; an
    18-digit ID number is region (6) + birth date (8) + 4 digits, so the card's own is the
    masked one with the birth date filled in."""
    expiry = date.fromisoformat(person["card_expiry"])
    birth = date.fromisoformat(person["birth_date"])
    masked = person["id_number_masked"]
    issued = expiry.replace(year=expiry.year - 10, day=min(expiry.day, 28))
    return CardContent(
        card_no=person["card_no"],
        region=person["region"],
        issued_on=issued,
        card_expiry=expiry,
        id_number=masked[:6] + birth.strftime("%Y%m%d") + masked[-4:],
        name=person["name"],
        gender=person["gender"],
        birth_date=birth,
        insured_id=person["insured_id"],
        insurance_type=person["insurance_type"],
    )


def _person_card(person: dict) -> DemoCard:
    content = content_for(person)
    files = encode_card(content)
    return DemoCard(
        name=person["card_no"],
        insured_id=person["insured_id"],
        holder=person["name"],
        note=f"{person['insurance_type']}, roster status {person['status']}",
        kind="roster",
        card_expiry=content.card_expiry,
        make=lambda: VirtualCard(person["card_no"], files),
    )


def _broken_cards(person: dict, dated: Callable[[date], date]) -> list[DemoCard]:
    base = content_for(person)
    files = encode_card(base)
    name_gbk = base.name.encode("gbk")
    insurance = files.insurance[2:]

    def card(name: str, note: str, expect: str, content: CardContent = base,
             card_files: CardFiles | None = None, kind: str = "broken",
             **behaviour) -> DemoCard:  # fmt: skip
        card_files = card_files or encode_card(content)
        return DemoCard(
            name=name, insured_id=content.insured_id, holder=content.name, note=note,
            kind=kind, card_expiry=content.card_expiry, _expect=expect,
            make=lambda: VirtualCard(name, card_files, CardBehaviour(**behaviour)),
        )  # fmt: skip

    def holder_name(record: bytes) -> CardFiles:
        return dataclasses.replace(
            files, holder_records=(files.holder_records[0], record, *files.holder_records[2:])
        )

    expired = dataclasses.replace(
        base, issued_on=dated(date(2014, 12, 31)), card_expiry=dated(date(2024, 12, 31))
    )
    return [
        card("malformed-tlv", "name record's length byte runs past its end", "BAD_TLV",
             card_files=holder_name(bytes([0x09, len(name_gbk) + 8]) + name_gbk)),
        card("bad-gbk", "name bytes are not GBK", "BAD_GBK",
             card_files=holder_name(encode_tlv(0x09, name_gbk[:-1] + b"\xff"))),
        card("unknown-tag", "EF05 has an extra record with tag 3F", "UNKNOWN_TAG",
             card_files=dataclasses.replace(
                 files, card_records=(*files.card_records, encode_tlv(0x3F, b"\x01")))),
        card("wrong-length", "EF07 announces 5 bytes more than it holds", "BAD_LENGTH",
             card_files=dataclasses.replace(
                 files, insurance=(len(insurance) + 5).to_bytes(2, "big") + insurance)),
        card("expired", "expired two years ago", "CARD_EXPIRED", content=expired),
        card("unknown-aid", "a bank card: no insurance application (6A82)", "FILE_NOT_FOUND",
             aid=BANK_CARD_AID),
        card("locked", "reads refused (6982)", "SECURITY_STATUS", read_sw=0x6982),
        card("invalidated", "reported lost: application invalidated (6283)", "FILE_INVALIDATED",
             select_sw=0x6283),
        card("pulled", "pulled out after 3 commands, mid-read", "CARD_REMOVED", pull_after=3),
        card("t0-chaining", "a good card answering through 61xx / GET RESPONSE", "ok",
             kind="protocol", t0_chaining=True),
    ]  # fmt: skip


def cards_for_roster(
    persons: Sequence[dict], *, dated: Callable[[date], date]
) -> tuple[DemoCard, ...]:
    """A card for each roster person, then the broken cards (variants of the first
    person's). `dated` moves a date written for the demo day (the `expired` card's) to the
    roster's day."""
    return tuple(_person_card(p) for p in persons) + tuple(_broken_cards(persons[0], dated))


@functools.lru_cache(maxsize=4)
def demo_cards(today: date) -> tuple[DemoCard, ...]:
    """The demo county's cards as of `today`."""
    from edge.demo.county import demo_date, roster_document  # pure: the files beside it

    persons = roster_document(today)["persons"]
    return cards_for_roster(persons, dated=lambda written: demo_date(written, today))


def demo_card(name: str, today: date) -> VirtualCard:
    """A fresh virtual card by card number, insured number or broken-card name."""
    cards = demo_cards(today)
    for card in cards:
        if card.name == name or (card.insured_id == name and card.kind == "roster"):
            return card.make()
    raise CardError("UNKNOWN_CARD", f"{name!r}: 'clinic card list' shows the demo cards")
