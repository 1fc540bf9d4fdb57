"""One contract for every card reader backend: the in-process emulated reader, and real
PC/SC — pyscard talking to a real pcscd whose vpcd virtual reader holds the same virtual
cards (see pcsc_fixtures.py). Then the `clinic card` commands, end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from clock import TODAY
from pcsc_fixtures import PcscDaemon, private_pcscd

from drivers.cards import (
    CardError,
    EmulatedCardReader,
    card_reader_for_url,
    demo_card,
    demo_cards,
    read_card,
)
from drivers.cards.virtual import DEMO_ATR, VirtualCard
from drivers.cards.vpcd import VpcdCardServer, parse_vpcd_address
from edge import demo
from edge.console import main

CLINIC = Path(sys.executable).with_name("clinic")


@pytest.fixture(scope="module")
def pcscd(tmp_path_factory) -> PcscDaemon:
    """One private pcscd for this module. The PC/SC client library reads its socket's name
    once per process, so every in-process PC/SC test uses this same daemon."""
    with private_pcscd(tmp_path_factory.mktemp("pcscd")) as daemon:
        os.environ.update(daemon.env)
        try:
            yield daemon
        finally:
            os.environ.pop("PCSCLITE_CSOCK_NAME", None)


@pytest.fixture
def empty_pcscd(pcscd) -> PcscDaemon:
    """The private pcscd once no card is left in its readers by an earlier test (pcscd
    notices a card leaving at its next poll, a few tenths of a second later)."""
    with card_reader_for_url("pcsc://", today=TODAY) as reader:
        deadline = time.monotonic() + 5
        while reader.card_present():
            assert time.monotonic() < deadline, "a card stayed in the virtual reader"
            time.sleep(0.05)
    return pcscd


class EmulatedBackend:
    def __init__(self) -> None:
        self.reader = EmulatedCardReader()

    def insert(self, card: VirtualCard) -> None:
        self.reader.insert(card)

    def remove(self) -> None:
        self.reader.remove()

    def close(self) -> None:
        self.reader.close()


class VpcdBackend:
    """pcsc://Virtual PCD 00 00, with cards inserted by connecting them to vpcd."""

    def __init__(self, daemon: PcscDaemon) -> None:
        self.daemon = daemon
        self.reader = card_reader_for_url(f"pcsc://{daemon.reader_name()}", today=TODAY)
        self.server: VpcdCardServer | None = None

    def insert(self, card: VirtualCard) -> None:
        self.remove()
        self.server = VpcdCardServer(card, "127.0.0.1", self.daemon.vpcd_port).start()

    def remove(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def close(self) -> None:
        self.remove()
        deadline = time.monotonic() + 5
        while self.reader.card_present() and time.monotonic() < deadline:
            time.sleep(0.05)  # leave the slot empty for the next test
        self.reader.close()


@pytest.fixture(params=["emulated", "pcsc-vpcd"])
def backend(request):
    if request.param == "emulated":
        made = EmulatedBackend()
    else:
        made = VpcdBackend(request.getfixturevalue("empty_pcscd"))
    yield made
    made.close()


def expected_error(card_name: str) -> str:
    return next(c for c in demo_cards(TODAY) if c.name == card_name).expect(TODAY)


class TestEveryReader:
    def test_a_demo_card_reads_as_its_roster_person_with_the_id_number_masked(self, backend):
        backend.insert(demo_card("A32011502", TODAY))
        card = read_card(backend.reader, today=TODAY, timeout=5)
        assert (card.insured_id, card.card_no, card.name) == (
            "32011500000002",
            "A32011502",
            "李秀英",
        )
        assert card.id_number_masked == "320115********482X"
        assert "19560520482X" not in json.dumps(card.to_dict())

    def test_a_card_is_found_by_its_insured_number_too(self, backend):
        backend.insert(demo_card("32011500000501", TODAY))
        card = read_card(backend.reader, today=TODAY, timeout=5)
        assert (card.name, card.insurance_type) == ("韩磊", "employee")

    def test_waiting_for_a_card_that_never_comes_times_out_with_no_card(self, backend):
        started = time.monotonic()
        with pytest.raises(CardError) as caught:
            read_card(backend.reader, today=TODAY, timeout=0.4)
        assert caught.value.code == "NO_CARD"
        assert 0.35 <= time.monotonic() - started < 2

    def test_a_card_inserted_while_waiting_is_read(self, backend):
        threading.Timer(0.3, backend.insert, [demo_card("A32011505", TODAY)]).start()
        assert read_card(backend.reader, today=TODAY, timeout=5).name == "陈志强"

    def test_inserting_and_removing_a_card_are_reported_as_events(self, backend):
        assert backend.reader.wait_for_event(0.2) is None
        backend.insert(demo_card("A32011501", TODAY))
        inserted = backend.reader.wait_for_event(5)
        assert inserted is not None and inserted.kind == "inserted" and inserted.atr == DEMO_ATR
        assert backend.reader.card_present()
        backend.remove()
        removed = backend.reader.wait_for_event(5)
        assert removed is not None and removed.kind == "removed"
        assert removed.reader == inserted.reader
        assert not backend.reader.card_present()

    @pytest.mark.parametrize(
        "name",
        ["malformed-tlv", "bad-gbk", "unknown-tag", "wrong-length", "expired", "unknown-aid",
         "locked", "invalidated", "pulled", "B32011757"],
    )  # fmt: skip
    def test_a_broken_card_gives_its_own_clear_error(self, backend, name):
        backend.insert(demo_card(name, TODAY))
        with pytest.raises(CardError) as caught:
            read_card(backend.reader, today=TODAY, timeout=5)
        assert caught.value.code == expected_error(name)
        assert caught.value.message_zh and caught.value.message_en

    def test_a_card_pulled_mid_read_is_gone_from_the_reader_afterwards(self, backend):
        backend.insert(demo_card("pulled", TODAY))
        backend.reader.wait_for_card(5)
        with pytest.raises(CardError, match="CARD_REMOVED"):
            read_card(backend.reader, today=TODAY, timeout=5)
        deadline = time.monotonic() + 5
        while backend.reader.card_present() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not backend.reader.card_present()

    def test_a_t0_card_answering_through_get_response_reads_the_same(self, backend):
        backend.insert(demo_card("t0-chaining", TODAY))
        assert read_card(backend.reader, today=TODAY, timeout=5).name == "张建国"

    def test_a_card_can_be_read_again_without_being_taken_out(self, backend):
        backend.insert(demo_card("A32011503", TODAY))
        first = read_card(backend.reader, today=TODAY, timeout=5)
        assert read_card(backend.reader, today=TODAY, timeout=5) == first


class TestEmulatedUrls:
    def test_emulated_url_with_a_card_name_starts_with_that_card_inserted(self):
        reader = card_reader_for_url("emulated://A32011501", today=TODAY)
        assert reader.card_present()
        assert read_card(reader, today=TODAY, timeout=0).name == "张建国"

    def test_an_empty_emulated_url_is_an_empty_slot(self):
        assert not card_reader_for_url("emulated://", today=TODAY).card_present()

    @pytest.mark.parametrize(
        ("url", "code"),
        [("emulated://Z999", "UNKNOWN_CARD"), ("nfc://x", "BAD_URL"), ("A32011501", "BAD_URL")],
    )
    def test_urls_that_name_nothing_known_are_refused(self, url, code):
        with pytest.raises(CardError) as caught:
            card_reader_for_url(url, today=TODAY)
        assert caught.value.code == code


class TestPcscUrls:
    def test_a_named_reader_that_is_not_connected_is_named_in_the_error(self, pcscd):
        with pytest.raises(CardError) as caught:
            card_reader_for_url("pcsc://No Such Reader", today=TODAY)
        assert caught.value.code == "READER_NOT_FOUND"
        assert "Virtual PCD 00 00" in caught.value.detail

    def test_the_reader_name_may_be_percent_escaped(self, pcscd):
        with card_reader_for_url("pcsc://Virtual%20PCD%2000%2001", today=TODAY) as reader:
            assert reader.reader_name == "Virtual PCD 00 01"

    def test_pcsc_without_a_name_reads_a_card_in_any_reader(self, empty_pcscd):
        server = VpcdCardServer(
            demo_card("A32011504", TODAY), "127.0.0.1", empty_pcscd.vpcd_port + 1
        ).start()
        try:
            with card_reader_for_url("pcsc://", today=TODAY) as reader:
                assert read_card(reader, today=TODAY, timeout=5).name == "刘桂兰"
        finally:
            server.stop()


class TestVpcdAddresses:
    @pytest.mark.parametrize(
        ("text", "address"),
        [("localhost:35963", ("localhost", 35963)), ("10.0.0.2", ("10.0.0.2", 35963)),
         (":40000", ("localhost", 40000))],
    )  # fmt: skip
    def test_host_and_port_default_to_the_local_vpcd(self, text, address):
        assert parse_vpcd_address(text) == address

    @pytest.mark.parametrize("text", ["host:port", "host:0", "host:70000"])
    def test_a_port_that_is_not_a_port_is_refused(self, text):
        with pytest.raises(ValueError):
            parse_vpcd_address(text)


# ---- the command line ---------------------------------------------------------------------


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


class TestCardCommands:
    def test_card_list_names_every_roster_person_and_the_broken_cards(self):
        result = run("card", "list", "--json")
        assert result.exit_code == 0
        cards = json.loads(result.output)
        roster = [c for c in cards if c["kind"] == "roster"]
        assert len(roster) == len(demo.load_json("roster.json")["persons"]) and {
            c["name"] for c in roster
        } >= {"A32011501", "B32011559"}
        names = {c["name"] for c in cards}
        assert names >= {"malformed-tlv", "expired", "unknown-aid", "pulled"}

    def test_card_list_says_what_each_card_will_give(self):
        lines = run("card", "list").output.splitlines()
        assert any(line.startswith("unknown-aid") and "FILE_NOT_FOUND" in line for line in lines)

    def test_card_read_prints_the_card_as_json_with_the_id_number_masked(self):
        result = run("card", "read", "--reader", "emulated://A32011501", "--json")
        assert result.exit_code == 0, result.output
        document = json.loads(result.output)
        assert document["name"] == "张建国"
        assert document["id_number_masked"] == "320115********1113"
        assert "19680412" not in result.output

    def test_card_read_of_a_broken_card_exits_1_with_the_code_on_stderr(self):
        done = subprocess.run(
            [str(CLINIC), "card", "read", "--reader", "emulated://malformed-tlv", "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1 and done.stdout == ""
        assert "BAD_TLV" in done.stderr and "Traceback" not in done.stderr

    @pytest.mark.parametrize(
        ("signum", "said"),
        [(signal.SIGTERM, "removed; stopped (SIGTERM)"), (signal.SIGINT, "removed; stopped")],
        ids=["SIGTERM", "Ctrl-C"],
    )
    def test_card_read_through_pcscd_of_a_card_served_by_card_emulate(
        self, empty_pcscd, signum, said
    ):
        """`clinic card emulate` serves until it is told to stop, by SIGTERM (kill,
        systemctl stop) or Ctrl-C, and then exits at once with status 0."""
        env = {**os.environ, **empty_pcscd.env}
        emulate = subprocess.Popen(
            [str(CLINIC), "card", "emulate", "--card", "A32011506",
             "--vpcd", f"127.0.0.1:{empty_pcscd.vpcd_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            read = subprocess.run(
                [str(CLINIC), "card", "read", "--reader", f"pcsc://{empty_pcscd.reader_name()}",
                 "--timeout", "10", "--json"],
                capture_output=True, text=True, timeout=60, env=env,
            )  # fmt: skip
            assert read.returncode == 0, read.stderr
            assert json.loads(read.stdout)["name"] == "杨秀珍"
            assert emulate.poll() is None  # still serving
            emulate.send_signal(signum)
            sent = time.monotonic()
            out, err = emulate.communicate(timeout=10)
            assert time.monotonic() - sent < 3, "it took long to stop"
            assert emulate.returncode == 0, err
            assert "inserted" in out and out.splitlines()[-1] == f"card A32011506 {said}"
            assert "Traceback" not in err
        finally:
            if emulate.poll() is None:
                emulate.kill()
            emulate.communicate()

    def test_card_watch_reports_insertion_and_removal(self, empty_pcscd):
        url = f"pcsc://{empty_pcscd.reader_name()}"
        server = VpcdCardServer(demo_card("A32011507", TODAY), "127.0.0.1", empty_pcscd.vpcd_port)
        threading.Timer(0.3, server.start).start()
        threading.Timer(1.2, server.stop).start()
        result = run("card", "watch", "--reader", url, "--count", "2", "--timeout", "5")
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == f"watching {url}: card absent"
        assert "inserted Virtual PCD 00 00 ATR 3B8C8001" in lines[1]
        assert "removed Virtual PCD 00 00" in lines[2]

    def test_card_emulate_refuses_an_unknown_card(self):
        result = CliRunner().invoke(main, ["card", "emulate", "--card", "nope"])
        assert result.exit_code == 1 and "UNKNOWN_CARD" in result.output
