"""The insurance card profile: which application, files and fields a card holds, and how
their bytes are encoded. Pure: parsing takes bytes (and `today`) and returns an
`InsuranceCard` or raises `CardError`; encoding builds the bytes the virtual cards hold.

The layout is documented in drivers/README.md ("The card profile"). In short:

    application  AID F0 43 4E 59 42 2E 44 44 46 31  ("\\xF0CNYB.DDF1", proprietary, ISO 7816-5 'F')
    EF05 (SFI 5) card information, records, one simple-TLV each:
         01 card number   02 issuing region   03 issue date   04 expiry date
    EF06 (SFI 6) holder, records, one simple-TLV each:
         08 ID number   09 name (GBK)   0A gender   0B birth date
    EF07 (SFI 7) insurance, transparent: 2-byte length, then simple-TLVs:
         20 insured number   21 insurance type (310 employee, 390 resident)

The full ID number is read, checked against the birth date and gender, masked, and
dropped: an `InsuranceCard` never holds it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from drivers.cards.errors import CardError

AID = bytes([0xF0]) + b"CNYB.DDF1"
SFI_CARD = 0x05
SFI_HOLDER = 0x06
SFI_INSURANCE = 0x07
MAX_RECORDS = 8  # per record file; a card with more is not one of ours
MAX_INSURANCE_LENGTH = 250  # EF07 content after its 2-byte length (one READ BINARY)

INSURANCE_TYPES = {b"310": "employee", b"390": "resident"}
INSURANCE_TYPE_CODES = {name: code for code, name in INSURANCE_TYPES.items()}
GENDERS = {b"1": "M", b"2": "F"}  # GB/T 2261.1
GENDER_CODES = {name: code for code, name in GENDERS.items()}

_UPPER_ALNUM = re.compile(rb"[0-9A-Z]+")
_DIGITS = re.compile(rb"[0-9]+")
_ID_NUMBER = re.compile(rb"[0-9]{17}[0-9X]")


@dataclass(frozen=True)
class Field:
    tag: int
    key: str
    label: str  # for messages: "卡号 card number"
    decode: Callable[[bytes, str], object]


@dataclass(frozen=True)
class InsuranceCard:
    """What a reader presents: never the full ID number."""

    card_no: str
    insured_id: str
    name: str
    gender: str  # "M" or "F", as in the roster
    birth_date: date
    region: str
    issued_on: date
    card_expiry: date
    id_number_masked: str  # 320115********1234
    insurance_type: str  # "resident" or "employee"

    def to_dict(self) -> dict:
        return {
            "card_no": self.card_no,
            "insured_id": self.insured_id,
            "name": self.name,
            "gender": self.gender,
            "birth_date": self.birth_date.isoformat(),
            "region": self.region,
            "issued_on": self.issued_on.isoformat(),
            "card_expiry": self.card_expiry.isoformat(),
            "id_number_masked": self.id_number_masked,
            "insurance_type": self.insurance_type,
        }


def mask_id_number(id_number: str) -> str:
    """320115********1234: the region and the last four, as the rest of the system shows."""
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


# ---- field decoders: (value bytes, label) -> value --------------------------------------


def _ascii(pattern: re.Pattern, sizes: range) -> Callable[[bytes, str], str]:
    def decode(value: bytes, label: str) -> str:
        if len(value) not in sizes:
            raise CardError(
                "BAD_LENGTH",
                f"{label}: {len(value)} bytes, expected {sizes.start}..{sizes.stop - 1}",
            )
        if pattern.fullmatch(value) is None:
            raise CardError("BAD_FIELD", f"{label}: {value!r} has characters it may not have")
        return value.decode("ascii")

    return decode


def decode_bcd_date(value: bytes, label: str) -> date:
    """YYYYMMDD in four BCD bytes (20250630 is 20 25 06 30)."""
    if len(value) != 4:
        raise CardError("BAD_LENGTH", f"{label}: {len(value)} bytes, a BCD date has 4")
    digits = value.hex()
    if not digits.isdigit():
        raise CardError("BAD_FIELD", f"{label}: {digits.upper()} is not BCD")
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise CardError("BAD_FIELD", f"{label}: {digits} is not a date") from None


def encode_bcd_date(value: date) -> bytes:
    return bytes.fromhex(value.strftime("%Y%m%d"))


def _name(value: bytes, label: str) -> str:
    if not 2 <= len(value) <= 30:
        raise CardError("BAD_LENGTH", f"{label}: {len(value)} bytes, expected 2..30")
    try:
        text = value.decode("gbk")
    except UnicodeDecodeError as error:
        raise CardError("BAD_GBK", f"{label}: {value.hex(' ').upper()} ({error.reason})") from None
    if not text.strip() or any(not ch.isprintable() for ch in text) or text != text.strip():
        raise CardError("BAD_FIELD", f"{label}: {text!r} is not a name")
    return text


def _code(table: dict[bytes, str]) -> Callable[[bytes, str], str]:
    def decode(value: bytes, label: str) -> str:
        width = len(next(iter(table)))
        if len(value) != width:
            raise CardError("BAD_LENGTH", f"{label}: {len(value)} bytes, expected {width}")
        if value not in table:
            raise CardError("BAD_FIELD", f"{label}: unknown code {value!r}")
        return table[value]

    return decode


CARD_FIELDS = (
    Field(0x01, "card_no", "卡号 card number", _ascii(_UPPER_ALNUM, range(6, 21))),
    Field(0x02, "region", "发卡地区 issuing region", _ascii(_DIGITS, range(6, 7))),
    Field(0x03, "issued_on", "发卡日期 issue date", decode_bcd_date),
    Field(0x04, "card_expiry", "有效期 expiry date", decode_bcd_date),
)
HOLDER_FIELDS = (
    Field(0x08, "id_number", "身份证号 ID number", _ascii(_ID_NUMBER, range(18, 19))),
    Field(0x09, "name", "姓名 name", _name),
    Field(0x0A, "gender", "性别 gender", _code(GENDERS)),
    Field(0x0B, "birth_date", "出生日期 birth date", decode_bcd_date),
)
INSURANCE_FIELDS = (
    Field(0x20, "insured_id", "参保人编号 insured number", _ascii(_DIGITS, range(8, 21))),
    Field(0x21, "insurance_type", "险种 insurance type", _code(INSURANCE_TYPES)),
)


# ---- simple-TLV (ISO/IEC 7816-4: 1-byte tag, 1- or 3-byte length) -----------------------


def parse_tlvs(data: bytes, where: str) -> list[tuple[int, bytes]]:
    """Every (tag, value) in `data`; anything left over or cut short is an error."""
    items = []
    i = 0
    while i < len(data):
        tag = data[i]
        if tag in (0x00, 0xFF):
            raise CardError("BAD_TLV", f"{where}: tag {tag:02X} at byte {i} is not allowed")
        if i + 1 >= len(data):
            raise CardError("BAD_TLV", f"{where}: tag {tag:02X} has no length")
        length, start = data[i + 1], i + 2
        if length == 0xFF:
            if start + 2 > len(data):
                raise CardError("BAD_TLV", f"{where}: tag {tag:02X} has a cut 3-byte length")
            length, start = int.from_bytes(data[start : start + 2], "big"), start + 2
        end = start + length
        if end > len(data):
            raise CardError(
                "BAD_TLV",
                f"{where}: tag {tag:02X} says {length} bytes, only {len(data) - start} follow",
            )
        items.append((tag, data[start:end]))
        i = end
    return items


def encode_tlv(tag: int, value: bytes) -> bytes:
    if len(value) < 0xFF:
        return bytes([tag, len(value)]) + value
    return bytes([tag, 0xFF]) + len(value).to_bytes(2, "big") + value


def _fields(items: Iterable[tuple[int, bytes]], fields: tuple[Field, ...], where: str) -> dict:
    by_tag = {field.tag: field for field in fields}
    values: dict = {}
    for tag, value in items:
        field = by_tag.get(tag)
        if field is None:
            raise CardError("UNKNOWN_TAG", f"{where}: tag {tag:02X}")
        if field.key in values:
            raise CardError("DUPLICATE_TAG", f"{where}: {field.label} (tag {tag:02X})")
        values[field.key] = field.decode(value, field.label)
    for field in fields:
        if field.key not in values:
            raise CardError("MISSING_FIELD", f"{where}: {field.label} (tag {field.tag:02X})")
    return values


def parse_record_file(records: list[bytes], fields: tuple[Field, ...], where: str) -> dict:
    """A record file whose every record is exactly one TLV."""
    items = []
    for number, record in enumerate(records, 1):
        tlvs = parse_tlvs(record, f"{where} record {number}")
        if len(tlvs) != 1:
            raise CardError(
                "BAD_TLV", f"{where} record {number}: {len(tlvs)} TLVs, a record holds one"
            )
        items.extend(tlvs)
    return _fields(items, fields, where)


def insurance_file_length(header: bytes) -> int:
    """The content length that EF07's 2-byte header announces."""
    if len(header) != 2:
        raise CardError("BAD_LENGTH", f"EF07 header: {len(header)} bytes, expected 2")
    length = int.from_bytes(header, "big")
    if not 1 <= length <= MAX_INSURANCE_LENGTH:
        raise CardError(
            "BAD_LENGTH", f"EF07 announces {length} bytes, expected 1..{MAX_INSURANCE_LENGTH}"
        )
    return length


def parse_card(
    card_records: list[bytes], holder_records: list[bytes], insurance: bytes, today: date
) -> InsuranceCard:
    """The card from the raw contents of EF05, EF06 and EF07's content (after its header)."""
    card = parse_record_file(card_records, CARD_FIELDS, "EF05")
    holder = parse_record_file(holder_records, HOLDER_FIELDS, "EF06")
    insured = _fields(parse_tlvs(insurance, "EF07"), INSURANCE_FIELDS, "EF07")

    id_number: str = holder["id_number"]
    birth: date = holder["birth_date"]
    if id_number[6:14] != birth.strftime("%Y%m%d"):
        raise CardError("INCONSISTENT", "the ID number's birth date is not the birth date field")
    if ("M" if int(id_number[16]) % 2 else "F") != holder["gender"]:
        raise CardError("INCONSISTENT", "the ID number's gender digit is not the gender field")
    if birth > today:
        raise CardError("BAD_FIELD", f"出生日期 birth date {birth} is after today")
    if card["issued_on"] > card["card_expiry"]:
        raise CardError("INCONSISTENT", "the card expires before it was issued")

    result = InsuranceCard(
        card_no=card["card_no"],
        insured_id=insured["insured_id"],
        name=holder["name"],
        gender=holder["gender"],
        birth_date=birth,
        region=card["region"],
        issued_on=card["issued_on"],
        card_expiry=card["card_expiry"],
        id_number_masked=mask_id_number(id_number),
        insurance_type=insured["insurance_type"],
    )
    if result.card_expiry < today:
        raise CardError("CARD_EXPIRED", f"有效期至 valid until {result.card_expiry}", card=result)
    return result


# ---- encoding: what a card of this profile holds (used by the virtual cards) ------------


@dataclass(frozen=True)
class CardContent:
    """Everything written on a card, the full ID number included (cards hold it)."""

    card_no: str
    region: str
    issued_on: date
    card_expiry: date
    id_number: str
    name: str
    gender: str
    birth_date: date
    insured_id: str
    insurance_type: str


@dataclass(frozen=True)
class CardFiles:
    card_records: tuple[bytes, ...]
    holder_records: tuple[bytes, ...]
    insurance: bytes  # EF07 as stored: 2-byte length, then TLVs


def encode_card(content: CardContent) -> CardFiles:
    insurance = encode_tlv(0x20, content.insured_id.encode("ascii")) + encode_tlv(
        0x21, INSURANCE_TYPE_CODES[content.insurance_type]
    )
    return CardFiles(
        card_records=(
            encode_tlv(0x01, content.card_no.encode("ascii")),
            encode_tlv(0x02, content.region.encode("ascii")),
            encode_tlv(0x03, encode_bcd_date(content.issued_on)),
            encode_tlv(0x04, encode_bcd_date(content.card_expiry)),
        ),
        holder_records=(
            encode_tlv(0x08, content.id_number.encode("ascii")),
            encode_tlv(0x09, content.name.encode("gbk")),
            encode_tlv(0x0A, GENDER_CODES[content.gender]),
            encode_tlv(0x0B, encode_bcd_date(content.birth_date)),
        ),
        insurance=len(insurance).to_bytes(2, "big") + insurance,
    )
