"""Reading an insurance card: the APDU conversation of the card profile, over any
`transmit(bytes) -> bytes`. The bytes are judged by the pure `profile.parse_card`."""

from __future__ import annotations

from datetime import date

from drivers.cards.apdu import (
    SW_OK,
    Transmit,
    exchange,
    expect_ok,
    fci_df_name,
    read_binary,
    read_record,
    select_by_name,
    status_error,
)
from drivers.cards.errors import CardError
from drivers.cards.profile import (
    AID,
    MAX_RECORDS,
    SFI_CARD,
    SFI_HOLDER,
    SFI_INSURANCE,
    InsuranceCard,
    insurance_file_length,
    parse_card,
)

SW_RECORD_NOT_FOUND = 0x6A83


def read_insurance_card(transmit: Transmit, today: date) -> InsuranceCard:
    """SELECT the application, READ RECORD EF05 and EF06, READ BINARY EF07, parse."""
    fci = expect_ok(
        transmit, select_by_name(AID), f"SELECT 医保应用 application {AID.hex().upper()}"
    )
    if fci and fci_df_name(fci) != AID:
        raise CardError("BAD_FCI", f"the card selected {fci_df_name(fci).hex().upper()}")
    card_records = read_records(transmit, SFI_CARD, "EF05")
    holder_records = read_records(transmit, SFI_HOLDER, "EF06")
    header = expect_ok(transmit, read_binary(SFI_INSURANCE, 0, 2), "READ BINARY EF07 header")
    length = insurance_file_length(header)
    insurance = expect_ok(transmit, read_binary(SFI_INSURANCE, 2, length), "READ BINARY EF07")
    if len(insurance) != length:
        raise CardError(
            "BAD_LENGTH", f"EF07 announces {length} bytes, the card gave {len(insurance)}"
        )
    return parse_card(card_records, holder_records, insurance, today)


def read_records(transmit: Transmit, sfi: int, where: str) -> list[bytes]:
    """Records 1, 2, … of a record file, until the card says there are no more (6A83)."""
    records: list[bytes] = []
    for number in range(1, MAX_RECORDS + 2):
        response = exchange(transmit, read_record(sfi, number))
        if response.sw == SW_RECORD_NOT_FOUND and number > 1:
            return records
        if response.sw != SW_OK:
            raise status_error(response.sw, f"READ RECORD {where} #{number}")
        records.append(response.data)
    raise CardError("TOO_MANY_RECORDS", f"{where} has more than {MAX_RECORDS} records")
