"""QR e-vouchers: the pure token check (hand-built tokens, a fixed `now`), then one
contract for the serial scanner over loop:// and a real pseudo-terminal, then the CLI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.demo_county_key import (
    DEMO_COUNTY_PUBLIC_KEY_B64,
    demo_county_private_key,
    demo_county_public_key,
)
from drivers.scanner import QrScanner, scanner_for_url
from drivers.vouchers import VoucherError, load_public_key, mint_voucher, verify_voucher
from edge.console import main

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 22, 9, 30, tzinfo=TZ)
COUNTY = demo_county_private_key()
KEY = demo_county_public_key()
CLINIC = Path(sys.executable).with_name("clinic")


def token(insured_id="32011500000002", now=NOW, minutes=10, key=COUNTY, nonce="0011223344556677"):
    return mint_voucher(key, insured_id=insured_id, county="DEMO", now=now,
                        valid_for=timedelta(minutes=minutes), nonce=nonce)  # fmt: skip


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: dict, key: Ed25519PrivateKey = COUNTY) -> str:
    """A token with any payload, correctly signed: what only the county could make."""
    body = "YBV1." + b64(json.dumps(payload).encode())
    return body + "." + b64(key.sign(body.encode()))


def code_of(text: str, now: datetime = NOW) -> str:
    with pytest.raises(VoucherError) as caught:
        verify_voucher(text, KEY, now)
    return caught.value.code


class TestVoucherTokens:
    def test_a_county_signed_voucher_names_the_insured_person_until_it_expires(self):
        voucher = verify_voucher(token(), KEY, NOW + timedelta(minutes=9))
        assert voucher.insured_id == "32011500000002" and voucher.county == "DEMO"
        assert voucher.expires_at == NOW + timedelta(minutes=10)
        assert voucher.nonce == "0011223344556677"

    def test_the_token_is_a_version_prefix_a_payload_and_a_signature(self):
        prefix, payload, signature = token().split(".")
        assert prefix == "YBV1"
        assert json.loads(base64.urlsafe_b64decode(payload + "==")) == {
            "county": "DEMO", "exp": int(NOW.timestamp()) + 600, "iat": int(NOW.timestamp()),
            "insured_id": "32011500000002", "nonce": "0011223344556677",
        }  # fmt: skip
        assert len(base64.urlsafe_b64decode(signature + "==")) == 64

    def test_a_voucher_is_expired_from_its_expiry_second_on(self):
        assert code_of(token(), NOW + timedelta(minutes=10)) == "EXPIRED"

    def test_a_voucher_issued_well_after_now_is_not_yet_valid(self):
        assert code_of(token(now=NOW + timedelta(minutes=6))) == "NOT_YET_VALID"
        assert verify_voucher(token(now=NOW + timedelta(minutes=4)), KEY, NOW)

    def test_a_voucher_signed_by_another_key_is_a_bad_signature(self):
        assert code_of(token(key=Ed25519PrivateKey.generate())) == "BAD_SIGNATURE"

    def test_a_voucher_whose_payload_was_changed_is_a_bad_signature(self):
        prefix, payload, signature = token().split(".")
        forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
        forged["insured_id"] = "32011500000001"
        assert (
            code_of(f"{prefix}.{b64(json.dumps(forged).encode())}.{signature}") == "BAD_SIGNATURE"
        )

    @pytest.mark.parametrize("cut", [5, 40, -1, -30])
    def test_a_scan_cut_short_is_truncated(self, cut):
        text = token()
        assert code_of(text[:cut]) == "TRUNCATED"

    @pytest.mark.parametrize("cut", [1, 3])
    def test_a_scan_of_only_the_first_letters_is_truncated(self, cut):
        assert code_of(token()[:cut]) == "TRUNCATED"

    @pytest.mark.parametrize(
        "text", ["", "https://example.com/pay?x=1", "6901234567892", "YBV1.a b.c",
                 "YBV1.abc.def.ghi", "你好"],
    )  # fmt: skip
    def test_anything_else_is_garbage(self, text):
        assert code_of(text) == "GARBAGE"

    def test_a_signature_longer_than_64_bytes_is_garbage(self):
        assert code_of(token() + "AAAA") == "GARBAGE"

    def test_a_later_voucher_version_is_named_as_unsupported(self):
        assert code_of("YBV2." + token()[5:]) == "UNSUPPORTED_VERSION"

    @pytest.mark.parametrize(
        "payload",
        [[], {"county": "DEMO"}, {"county": "DEMO", "exp": "1", "iat": 0, "insured_id": "12345678",
          "nonce": "x"}, {"county": "DEMO", "exp": 2, "iat": 1, "insured_id": "ID", "nonce": "x"},
         {"county": "DEMO", "exp": True, "iat": 1, "insured_id": "12345678", "nonce": "x"}],
    )  # fmt: skip
    def test_a_signed_payload_without_the_right_fields_is_a_bad_payload(self, payload):
        assert code_of(signed(payload)) == "BAD_PAYLOAD"

    def test_a_voucher_expiring_before_it_was_issued_is_a_bad_payload(self):
        now = int(NOW.timestamp())
        payload = {"county": "DEMO", "exp": now - 1, "iat": now, "insured_id": "32011500000002",
                   "nonce": "x"}  # fmt: skip
        assert code_of(signed(payload)) == "BAD_PAYLOAD"

    def test_every_error_speaks_chinese_and_english(self):
        with pytest.raises(VoucherError) as caught:
            verify_voucher(token(), KEY, NOW + timedelta(hours=1))
        assert "电子凭证已过期" in str(caught.value) and "has expired" in str(caught.value)

    def test_surrounding_white_space_from_the_scanner_is_ignored(self):
        assert verify_voucher(f"  {token()}\r\n", KEY, NOW).insured_id == "32011500000002"

    def test_minting_refuses_an_insured_number_that_is_not_one(self):
        with pytest.raises(ValueError):
            token(insured_id="张三")

    def test_the_demo_county_public_key_is_published_in_ledger_key_format(self):
        assert load_public_key(DEMO_COUNTY_PUBLIC_KEY_B64) == KEY
        with pytest.raises(ValueError):
            load_public_key("not a key")


# ---- the serial scanner, over every kind of port ---------------------------------------------


class LoopScanner:
    """loop://: what is written to the port is read back, so the test types the scans."""

    def __init__(self) -> None:
        self.scanner = scanner_for_url("loop://")

    def send(self, data: bytes) -> None:
        self.scanner.port.write(data)

    def close(self) -> None:
        self.scanner.close()


class PtyScanner:
    """A real pseudo-terminal: the scanner's driver opens /dev/pts/N through pyserial and
    the test writes to the master side, as a scanner on a USB-serial line would."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.scanner = scanner_for_url(os.ttyname(self.slave))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self.scanner.close()
        os.close(self.slave)
        os.close(self.master)


@pytest.fixture(params=["loop", "pty"])
def line(request):
    made = LoopScanner() if request.param == "loop" else PtyScanner()
    yield made
    made.close()


class TestEveryScannerPort:
    def test_a_scanned_voucher_is_read_and_verified(self, line):
        line.send(token().encode() + b"\r")
        voucher = line.scanner.read_voucher(KEY, clock=lambda: NOW, timeout=2)
        assert voucher.insured_id == "32011500000002"

    @pytest.mark.parametrize("ending", [b"\r", b"\n", b"\r\n"])
    def test_every_line_ending_ends_a_scan(self, line, ending):
        line.send(b"first" + ending + b"second" + ending)
        assert [line.scanner.read_line(1), line.scanner.read_line(1)] == ["first", "second"]

    def test_a_scan_arriving_in_pieces_is_one_line(self, line):
        text = token().encode()
        threading.Timer(0.1, line.send, [text[:50]]).start()
        threading.Timer(0.2, line.send, [text[50:] + b"\r"]).start()
        assert line.scanner.read_line(2) == text.decode()

    def test_nothing_scanned_in_time_is_none_after_the_timeout(self, line):
        started = time.monotonic()
        assert line.scanner.read_line(0.3) is None
        assert 0.25 <= time.monotonic() - started < 1.5
        with pytest.raises(VoucherError, match="NO_SCAN"):
            line.scanner.read_voucher(KEY, clock=lambda: NOW, timeout=0.1)

    def test_a_line_that_stops_without_ending_is_truncated_and_the_next_scan_is_clean(self, line):
        line.send(token().encode()[:60])
        with pytest.raises(VoucherError) as caught:
            line.scanner.read_line(2)
        assert caught.value.code == "TRUNCATED"
        line.send(token().encode() + b"\r")
        assert line.scanner.read_voucher(KEY, clock=lambda: NOW, timeout=2)

    def test_a_complete_line_of_a_cut_token_is_truncated(self, line):
        line.send(token().encode()[:-10] + b"\r")
        with pytest.raises(VoucherError, match="TRUNCATED"):
            line.scanner.read_voucher(KEY, clock=lambda: NOW, timeout=2)

    def test_garbage_bytes_are_garbage_not_a_crash(self, line):
        line.send(b"\xff\xfe\x00\x81garbage\r")
        with pytest.raises(VoucherError, match="GARBAGE"):
            line.scanner.read_voucher(KEY, clock=lambda: NOW, timeout=2)

    def test_an_expired_voucher_is_checked_at_the_time_it_is_scanned(self, line):
        line.send(token().encode() + b"\r")
        later = NOW + timedelta(minutes=11)
        with pytest.raises(VoucherError, match="EXPIRED"):
            line.scanner.read_voucher(KEY, clock=lambda: later, timeout=2)

    def test_an_endless_line_is_garbage(self, line):
        sender = threading.Thread(target=line.send, args=[b"A" * 5000])  # loop:// holds 4096
        sender.start()
        with pytest.raises(VoucherError, match="GARBAGE"):
            line.scanner.read_line(2)
        sender.join(5)


def test_a_scanner_port_that_does_not_exist_is_a_scanner_error():
    with pytest.raises(VoucherError, match="SCANNER_ERROR"):
        scanner_for_url("/dev/does-not-exist")


def test_a_scanner_takes_any_pyserial_like_port():
    scanner = QrScanner(__import__("serial").serial_for_url("loop://"))
    scanner.port.write(b"hello\n")
    assert scanner.read_line(1) == "hello"
    scanner.close()


# ---- the command line ---------------------------------------------------------------------


class TestVoucherCommands:
    def test_card_voucher_mints_a_token_the_demo_county_key_verifies(self):
        result = CliRunner().invoke(main, ["card", "voucher", "--insured-id", "32011500000001"])
        assert result.exit_code == 0, result.output
        minted = result.stdout.strip()
        voucher = verify_voucher(minted, KEY, datetime.now(TZ))
        assert voucher.insured_id == "32011500000001"
        assert "DEMO" in result.stderr

    def test_card_voucher_can_draw_the_qr_code(self):
        result = CliRunner().invoke(
            main, ["card", "voucher", "--insured-id", "32011500000001", "--qr"]
        )
        assert result.exit_code == 0 and "█" in result.stdout

    def test_card_scan_reads_one_voucher_from_a_serial_port(self):
        master, slave = os.openpty()
        try:
            scan = subprocess.Popen(
                [str(CLINIC), "card", "scan", "--scanner", os.ttyname(slave), "--timeout", "20",
                 "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            minted = token(now=datetime.now(TZ))
            deadline = time.monotonic() + 20
            while scan.poll() is None and time.monotonic() < deadline:
                os.write(master, minted.encode() + b"\r")
                try:
                    out, err = scan.communicate(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                out, err = scan.communicate(timeout=5)
        finally:
            os.close(slave)
            os.close(master)
        assert scan.returncode == 0, err
        assert json.loads(out)["insured_id"] == "32011500000002"

    def test_card_scan_with_another_county_key_refuses_demo_vouchers(self):
        other_county = b64(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
        master, slave = os.openpty()
        stop = threading.Event()

        def scanner_keeps_scanning():  # until the command has opened the port and read one
            while not stop.wait(0.2):
                os.write(master, token(now=datetime.now(TZ)).encode() + b"\r")

        scanning = threading.Thread(target=scanner_keeps_scanning)
        scanning.start()
        try:
            result = CliRunner().invoke(main, [
                "card", "scan", "--scanner", os.ttyname(slave), "--timeout", "5",
                "--county-key", other_county,
            ])  # fmt: skip
        finally:
            stop.set()
            scanning.join()
            os.close(slave)
            os.close(master)
        assert result.exit_code == 1 and "BAD_SIGNATURE" in result.output
