"""The insurance card profile, pure: APDUs, status words, TLV and field parsing, from
hand-built bytes. No reader is involved anywhere in this file."""

from datetime import date

import pytest
from clock import TODAY

from drivers.cards import CardError, mask_id_number, read_insurance_card
from drivers.cards.apdu import (
    exchange,
    expect_ok,
    fci_df_name,
    parse_response,
    read_binary,
    read_record,
    select_by_name,
    status_error,
)
from drivers.cards.profile import (
    AID,
    CARD_FIELDS,
    HOLDER_FIELDS,
    decode_bcd_date,
    insurance_file_length,
    parse_card,
    parse_record_file,
    parse_tlvs,
)
from drivers.cards.virtual import DEMO_ATR, demo_card, make_atr

# 李秀英's card, byte by byte, as the profile in drivers/README.md lays it out.
CARD_RECORDS = [
    bytes.fromhex("01 09") + b"A32011502",
    bytes.fromhex("02 06") + b"320115",
    bytes.fromhex("03 04 20210228"),
    bytes.fromhex("04 04 20310228"),
]
HOLDER_RECORDS = [
    bytes.fromhex("08 12") + b"32011519560520482X",
    bytes.fromhex("09 06 C0EE D0E3 D3A2"),  # 李秀英 in GBK
    bytes.fromhex("0A 01 32"),  # "2": female
    bytes.fromhex("0B 04 19560520"),
]
INSURANCE = bytes.fromhex("20 0E") + b"32011500000002" + bytes.fromhex("21 03") + b"390"


def parse(card=CARD_RECORDS, holder=HOLDER_RECORDS, insurance=INSURANCE, today=TODAY):
    return parse_card(list(card), list(holder), insurance, today)


def error_of(call, *args, **kwargs) -> CardError:
    with pytest.raises(CardError) as caught:
        call(*args, **kwargs)
    return caught.value


def with_record(records: list[bytes], index: int, record: bytes) -> list[bytes]:
    return [*records[:index], record, *records[index + 1 :]]


class TestCommandApdus:
    def test_select_asks_for_the_application_by_name_with_its_fci(self):
        assert select_by_name(AID) == bytes.fromhex("00A40400 0A F0434E59422E44444631 00")

    def test_read_record_puts_the_short_file_identifier_in_p2(self):
        assert read_record(5, 2) == bytes.fromhex("00B2022C00")
        assert read_record(6, 1, le=0x20) == bytes.fromhex("00B2013420")

    def test_read_binary_puts_the_short_file_identifier_in_p1(self):
        assert read_binary(7, 2, 0x15) == bytes.fromhex("00B0870215")

    @pytest.mark.parametrize(
        "call",
        [lambda: select_by_name(b"1234"), lambda: read_record(31, 1), lambda: read_binary(7, 256)],
    )
    def test_impossible_commands_are_refused_before_they_are_sent(self, call):
        with pytest.raises(ValueError):
            call()


class TestResponses:
    def test_a_response_splits_into_data_and_status_word(self):
        response = parse_response(bytes.fromhex("0102 9000"))
        assert (response.data, response.sw) == (b"\x01\x02", 0x9000)

    @pytest.mark.parametrize("raw", [b"", b"\x90", bytes(259)])
    def test_a_response_of_impossible_length_is_bad_response(self, raw):
        assert error_of(parse_response, raw).code == "BAD_RESPONSE"

    @pytest.mark.parametrize(
        ("sw", "code"),
        [(0x6A82, "FILE_NOT_FOUND"), (0x6982, "SECURITY_STATUS"), (0x6283, "FILE_INVALIDATED"),
         (0x6A83, "RECORD_NOT_FOUND"), (0x6D00, "INS_NOT_SUPPORTED"), (0x6581, "CARD_STATUS")],
    )  # fmt: skip
    def test_each_status_word_has_its_own_code_and_both_languages(self, sw, code):
        error = status_error(sw, "READ RECORD EF05 #1")
        assert (error.code, error.sw) == (code, sw)
        assert error.message_zh and error.message_en
        assert f"SW {sw:04X}" in str(error) and "READ RECORD EF05 #1" in str(error)

    def test_file_not_found_says_so_in_chinese_and_english(self):
        error = status_error(0x6A82, "SELECT")
        assert "文件或应用未找到" in str(error) and "file or application not found" in str(error)

    def test_61xx_is_followed_with_get_response_until_the_data_is_complete(self):
        answers = iter([bytes.fromhex("6104"), bytes.fromhex("01020304 6102"),
                        bytes.fromhex("0506 9000")])  # fmt: skip
        sent = []

        def transmit(apdu):
            sent.append(apdu)
            return next(answers)

        response = exchange(transmit, read_record(5, 1))
        assert response.data == bytes.fromhex("010203040506") and response.sw == 0x9000
        assert sent[1:] == [bytes.fromhex("00C0000004"), bytes.fromhex("00C0000002")]

    def test_6cxx_sends_the_command_again_with_the_le_the_card_asks_for(self):
        sent = []

        def transmit(apdu):
            sent.append(apdu)
            return bytes.fromhex("6C03") if len(sent) == 1 else bytes.fromhex("AABBCC 9000")

        assert exchange(transmit, read_binary(7, 0, 0)).data == bytes.fromhex("AABBCC")
        assert sent[1] == bytes.fromhex("00B0870003")

    def test_a_card_that_chains_for_ever_is_stopped(self):
        error = error_of(exchange, lambda apdu: bytes.fromhex("AA 6101"), read_record(5, 1))
        assert error.code == "BAD_RESPONSE"

    def test_expect_ok_turns_an_error_status_into_its_card_error(self):
        error = error_of(expect_ok, lambda apdu: bytes.fromhex("6982"), read_record(5, 1), "X")
        assert error.code == "SECURITY_STATUS"

    def test_the_fci_names_the_selected_application(self):
        assert fci_df_name(bytes.fromhex("6F0C 840A F0434E59422E44444631")) == AID
        assert fci_df_name(bytes.fromhex("6F0F A501 00 840A F0434E59422E44444631")) == AID

    @pytest.mark.parametrize(
        "fci", ["", "6F", "6F05 840A F043", "6F02 A500", "8408 F0434E59422E4444", "6F00 9000"]
    )
    def test_a_malformed_fci_is_bad_fci(self, fci):
        assert error_of(fci_df_name, bytes.fromhex(fci)).code == "BAD_FCI"


class TestTlv:
    def test_simple_tlvs_with_one_and_three_byte_lengths(self):
        long = bytes(300)
        data = bytes.fromhex("0102AABB 20FF012C") + long + bytes.fromhex("0300")
        assert parse_tlvs(data, "X") == [(0x01, b"\xaa\xbb"), (0x20, long), (0x03, b"")]

    @pytest.mark.parametrize(
        "data", ["0105AABB", "01", "00 01 AA", "FF 01 AA", "20FF01", "0102AABB 02"]
    )
    def test_cut_or_impossible_tlvs_are_bad_tlv(self, data):
        assert error_of(parse_tlvs, bytes.fromhex(data), "X").code == "BAD_TLV"

    def test_a_record_holds_exactly_one_tlv(self):
        two = CARD_RECORDS[0] + CARD_RECORDS[1]
        error = error_of(parse_record_file, [two, *CARD_RECORDS[2:]], CARD_FIELDS, "EF05")
        assert error.code == "BAD_TLV" and "record 1" in error.detail

    def test_an_unknown_tag_is_refused_not_skipped(self):
        records = [*CARD_RECORDS, bytes.fromhex("3F0101")]
        assert error_of(parse_record_file, records, CARD_FIELDS, "EF05").code == "UNKNOWN_TAG"

    def test_a_tag_of_another_file_is_unknown_here(self):
        records = [*CARD_RECORDS, HOLDER_RECORDS[0]]
        assert error_of(parse_record_file, records, CARD_FIELDS, "EF05").code == "UNKNOWN_TAG"

    def test_a_field_given_twice_is_refused(self):
        records = [*CARD_RECORDS, CARD_RECORDS[0]]
        assert error_of(parse_record_file, records, CARD_FIELDS, "EF05").code == "DUPLICATE_TAG"

    def test_a_missing_field_is_named(self):
        error = error_of(parse_record_file, HOLDER_RECORDS[:3], HOLDER_FIELDS, "EF06")
        assert error.code == "MISSING_FIELD" and "birth date" in error.detail


class TestParsingACard:
    def test_a_good_card_gives_every_field_with_the_id_number_masked(self):
        card = parse()
        assert card.to_dict() == {
            "card_no": "A32011502", "insured_id": "32011500000002", "name": "李秀英",
            "gender": "F", "birth_date": "1956-05-20", "region": "320115",
            "issued_on": "2021-02-28", "card_expiry": "2031-02-28",
            "id_number_masked": "320115********482X", "insurance_type": "resident",
        }  # fmt: skip

    def test_the_full_id_number_is_nowhere_in_what_the_reader_presents(self):
        card = parse()
        assert "32011519560520482X" not in repr(card)
        assert "19560520482X" not in str(card.to_dict())

    def test_masking_keeps_the_region_and_the_last_four(self):
        assert mask_id_number("320115197210155999") == "320115********5999"

    def test_a_card_expiring_today_is_still_valid(self):
        assert parse(today=date(2031, 2, 28)).card_expiry == date(2031, 2, 28)

    def test_an_expired_card_is_refused_and_still_says_whose_it_is(self):
        error = error_of(parse, today=date(2031, 3, 1))
        assert error.code == "CARD_EXPIRED" and "2031-02-28" in error.detail
        assert error.card.name == "李秀英" and error.card.id_number_masked == "320115********482X"

    def test_a_name_that_is_not_gbk_is_bad_gbk(self):
        holder = with_record(HOLDER_RECORDS, 1, bytes.fromhex("09 04 C0EE D0FF"))
        assert error_of(parse, holder=holder).code == "BAD_GBK"

    def test_a_name_cut_in_the_middle_of_a_character_is_bad_gbk(self):
        holder = with_record(HOLDER_RECORDS, 1, bytes.fromhex("09 05 C0EE D0E3 D3"))
        assert error_of(parse, holder=holder).code == "BAD_GBK"

    @pytest.mark.parametrize("name", [b"\xc0\xee\x00", b"  ", b"\xc0\xee "])
    def test_a_name_with_padding_or_control_bytes_is_not_a_name(self, name):
        holder = with_record(HOLDER_RECORDS, 1, bytes([0x09, len(name)]) + name)
        assert error_of(parse, holder=holder).code == "BAD_FIELD"

    @pytest.mark.parametrize(
        ("index", "record"),
        [(0, "08 11 3332303131353139353630353230343832"),  # 17 digits
         (3, "0B 03 195605"), (2, "0A 02 3032")],
    )  # fmt: skip
    def test_fields_of_the_wrong_length_are_bad_length(self, index, record):
        holder = with_record(HOLDER_RECORDS, index, bytes.fromhex(record))
        assert error_of(parse, holder=holder).code == "BAD_LENGTH"

    @pytest.mark.parametrize("value", ["20211328", "2021022A", "20210230"])
    def test_a_date_that_is_not_bcd_or_not_a_date_is_bad_field(self, value):
        assert error_of(decode_bcd_date, bytes.fromhex(value), "X").code == "BAD_FIELD"

    @pytest.mark.parametrize("code", [b"0", b"9", b"M"])
    def test_gender_codes_other_than_1_and_2_are_refused(self, code):
        holder = with_record(HOLDER_RECORDS, 2, b"\x0a\x01" + code)
        assert error_of(parse, holder=holder).code == "BAD_FIELD"

    def test_an_id_number_with_letters_inside_is_refused(self):
        holder = with_record(HOLDER_RECORDS, 0, b"\x08\x12" + b"3201151956052048XX")
        assert error_of(parse, holder=holder).code == "BAD_FIELD"

    def test_an_id_number_born_on_another_day_than_the_card_says_is_inconsistent(self):
        holder = with_record(HOLDER_RECORDS, 3, bytes.fromhex("0B 04 19560521"))
        assert error_of(parse, holder=holder).code == "INCONSISTENT"

    def test_an_id_number_of_the_other_gender_is_inconsistent(self):
        holder = with_record(HOLDER_RECORDS, 2, bytes.fromhex("0A 01 31"))
        assert error_of(parse, holder=holder).code == "INCONSISTENT"

    def test_a_card_issued_after_it_expires_is_inconsistent(self):
        card = with_record(CARD_RECORDS, 2, bytes.fromhex("03 04 20320101"))
        assert error_of(parse, card=card).code == "INCONSISTENT"

    def test_an_unknown_insurance_type_is_refused(self):
        insurance = INSURANCE[:-3] + b"391"
        assert error_of(parse, insurance=insurance).code == "BAD_FIELD"

    @pytest.mark.parametrize("header", ["00", "0000", "00FB", "FFFF"])
    def test_the_insurance_file_announces_a_plausible_length(self, header):
        assert error_of(insurance_file_length, bytes.fromhex(header)).code == "BAD_LENGTH"


class TestTheReadingConversation:
    """`read_insurance_card` over a scripted transmit: the exact APDUs a card sees."""

    def test_the_reader_selects_reads_both_record_files_and_the_binary_file(self):
        card = demo_card("A32011502", TODAY)
        sent = []

        def transmit(apdu):
            sent.append(apdu.hex().upper())
            return card.process(apdu)

        assert read_insurance_card(transmit, TODAY).name == "李秀英"
        assert sent == [
            "00A404000AF0434E59422E4444463100",
            *[f"00B20{n}2C00" for n in range(1, 6)],
            *[f"00B20{n}3400" for n in range(1, 6)],
            "00B0870002",
            "00B0870215",
        ]

    def test_a_record_file_with_too_many_records_is_refused(self):
        def transmit(apdu):
            if apdu[1] == 0xB2:
                return CARD_RECORDS[0] + b"\x90\x00"
            return bytes.fromhex("6F0C840A") + AID + b"\x90\x00"

        assert error_of(read_insurance_card, transmit, TODAY).code == "TOO_MANY_RECORDS"

    def test_a_card_selecting_another_application_is_bad_fci(self):
        card = demo_card("A32011501", TODAY)

        def transmit(apdu):
            answer = card.process(apdu)
            return answer.replace(AID, b"\xa0" + AID[1:]) if apdu[1] == 0xA4 else answer

        assert error_of(read_insurance_card, transmit, TODAY).code == "BAD_FCI"


class TestVirtualCards:
    def test_the_demo_atr_carries_a_valid_check_byte(self):
        tck = 0
        for byte in DEMO_ATR[1:]:
            tck ^= byte
        assert tck == 0 and DEMO_ATR[:4] == bytes.fromhex("3B8C8001")
        assert make_atr(b"") == bytes.fromhex("3B80800101")

    def test_a_virtual_card_answers_iso_errors_for_what_it_does_not_do(self):
        card = demo_card("A32011501", TODAY)
        assert card.process(bytes.fromhex("80CA9F7F00")) == bytes.fromhex("6E00")
        assert card.process(bytes.fromhex("00CA9F7F00")) == bytes.fromhex("6D00")
        assert card.process(read_record(5, 1)) == bytes.fromhex("6985")  # nothing selected
        assert card.process(select_by_name(b"\xa0" + AID[1:])) == bytes.fromhex("6A82")
        card.process(select_by_name(AID))
        assert card.process(read_record(5, 9)) == bytes.fromhex("6A83")
        assert card.process(read_record(9, 1)) == bytes.fromhex("6A82")
        assert card.process(read_binary(7, 200)) == bytes.fromhex("6B00")

    def test_a_short_le_gets_6cxx_with_the_record_length(self):
        card = demo_card("A32011501", TODAY)
        card.process(select_by_name(AID))
        assert card.process(read_record(6, 2, le=2)) == bytes.fromhex("6C08")
