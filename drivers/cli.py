"""`clinic card …` and `clinic receipt …`: card readers, virtual cards, e-vouchers and
receipts for testers and field staff; `edge.console` registers them on `clinic`."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import click
import segno

from drivers.cards import CardError, card_reader_for_url, demo_card, demo_cards, read_card
from drivers.cards.vpcd import VPCD_PORT, VpcdCardServer, parse_vpcd_address
from drivers.demo_county_key import (
    DEMO_COUNTY_CODE,
    DEMO_COUNTY_PUBLIC_KEY_B64,
    demo_county_private_key,
)
from drivers.printer import PrinterError, printer_for_url
from drivers.receipt import (
    ReceiptError,
    layout_receipt,
    receipt_escpos,
    receipt_facts,
    verify_receipt_qr,
)
from drivers.scanner import scanner_for_url
from drivers.vouchers import VoucherError, load_public_key, mint_voucher
from edge import services
from edge.cli_options import data_dir_option, device_store, json_option, now, print_json
from edge.domain.money import format_yuan

PAPER = {"58": (32, 384), "80": (48, 576)}  # paper width mm -> (text columns, dots)


# ---- clinic card -------------------------------------------------------------------------


class Terminated(Exception):
    """SIGTERM arrived: `kill`, `systemctl stop`, a test or supervisor ending the command."""


@contextlib.contextmanager
def sigterm_raises_terminated() -> Iterator[None]:
    """Inside, SIGTERM raises `Terminated` in the main thread, as Ctrl-C raises
    KeyboardInterrupt, so a foreground loop stops cleanly either way; a second SIGTERM
    while it stops is ignored. The previous handler is back afterwards."""

    def terminated(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread: SIGTERM keeps what it had
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group()
def card() -> None:
    """Card readers, virtual demo cards and QR e-vouchers."""


@card.command("list")
@json_option
def card_list(as_json: bool) -> None:
    """The demo cards: one per demo roster person, and the broken ones."""
    today = now().date()
    cards = [c.to_dict(today) for c in demo_cards(today)]
    if as_json:
        print_json(cards)
        return
    for c in cards:
        kind = c["insured_id"] if c["kind"] == "roster" else c["kind"]
        click.echo(f"{c['name']:<14} {kind:<15} {c['holder']:<4} {c['expect']:<17} {c['note']}")


@card.command("read")
@click.option("--reader", "url", required=True, help="pcsc://[READER] or emulated://[CARD].")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for a card.")
@json_option
def card_read(url: str, timeout: float, as_json: bool) -> None:
    """Wait for a card and read it (the ID number is shown masked)."""
    try:
        today = now().date()
        with card_reader_for_url(url, today=today) as reader:
            result = read_card(reader, today=today, timeout=timeout)
    except CardError as error:
        raise click.ClickException(str(error)) from None
    document = {"reader": url, **result.to_dict()}
    if as_json:
        print_json(document)
        return
    click.echo(
        f"{result.name} {result.gender} born {result.birth_date} ID {result.id_number_masked}"
    )
    click.echo(f"card {result.card_no} insured {result.insured_id} {result.insurance_type}")
    click.echo(f"region {result.region} issued {result.issued_on} valid until {result.card_expiry}")


@card.command("watch")
@click.option("--reader", "url", required=True, help="pcsc://[READER] or emulated://[CARD].")
@click.option("--count", type=click.IntRange(1), help="Stop after this many events.")
@click.option("--timeout", type=float, help="Stop after this many seconds without an event.")
def card_watch(url: str, count: int | None, timeout: float | None) -> None:
    """Print card inserted / removed events until interrupted."""
    seen = 0
    try:
        with card_reader_for_url(url, today=now().date()) as reader:
            click.echo(f"watching {url}: card {'present' if reader.card_present() else 'absent'}")
            while count is None or seen < count:
                event = reader.wait_for_event(timeout if timeout is not None else 3600)
                if event is None:
                    if timeout is not None:
                        break
                    continue
                seen += 1
                atr = f" ATR {event.atr.hex().upper()}" if event.atr else ""
                click.echo(f"{now().strftime('%H:%M:%S')} {event.kind} {event.reader}{atr}")
    except CardError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        click.echo("stopped")


@card.command("emulate")
@click.option("--card", "name", required=True, help="A demo card: 'clinic card list'.")
@click.option(
    "--vpcd", "address", default=f"localhost:{VPCD_PORT}", show_default=True,
    help="Where vpcd (pcscd's virtual reader) listens; the second slot is PORT+1.",
)  # fmt: skip
@click.option("--verbose", is_flag=True, help="Print every APDU.")
def card_emulate(name: str, address: str, verbose: bool) -> None:
    """Insert a demo card into pcscd's virtual reader (vpcd) until Ctrl-C or SIGTERM.

    Then any PC/SC program, `clinic card read --reader pcsc://` among them, reads it as a
    real card. A card pulled out mid-read comes back two seconds later.
    """
    try:
        virtual = demo_card(name, now().date())
        host, port = parse_vpcd_address(address)
    except (CardError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    if verbose:
        process = virtual.process

        def logged(apdu: bytes) -> bytes:
            answer = process(apdu)
            click.echo(f"  > {apdu.hex(' ').upper()}\n  < {answer.hex(' ').upper()}")
            return answer

        virtual.process = logged  # type: ignore[method-assign]  # this card only, to trace it
    server = VpcdCardServer(virtual, host, port, reinsert_after=2.0, log=click.echo)
    click.echo(f"serving card {name} to vpcd at {host}:{port}; Ctrl-C to remove it")
    with sigterm_raises_terminated():
        try:
            server.serve()
        except KeyboardInterrupt:
            click.echo(f"card {name} removed; stopped")
        except Terminated:
            click.echo(f"card {name} removed; stopped (SIGTERM)")


@card.command("voucher")
@click.option("--insured-id", required=True, help="The insured person's number.")
@click.option("--minutes", default=10, show_default=True, type=click.IntRange(1, 24 * 60))
@click.option("--qr", is_flag=True, help="Also draw the QR code in the terminal.")
def card_voucher(insured_id: str, minutes: int, qr: bool) -> None:
    """Mint a QR e-voucher signed by the DEMO county key (demo and training only)."""
    try:
        token = mint_voucher(
            demo_county_private_key(), insured_id=insured_id, county=DEMO_COUNTY_CODE,
            now=now(), valid_for=timedelta(minutes=minutes),
        )  # fmt: skip
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(token)
    if qr:
        segno.make_qr(token, error="M").terminal(compact=True)
    click.echo(f"signed with the DEMO county key {DEMO_COUNTY_PUBLIC_KEY_B64}", err=True)


@card.command("scan")
@click.option("--scanner", "url", required=True, help="Serial port or pyserial URL.")
@click.option("--baudrate", default=9600, show_default=True)
@click.option(
    "--county-key", help="The county public key (base64url); default: the DEMO county key."
)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for a scan.")
@json_option
def card_scan(url: str, baudrate: int, county_key: str | None, timeout: float, as_json: bool):
    """Wait for one e-voucher scan and check it offline against the county key."""
    if county_key is None:
        click.echo("checking against the DEMO county key", err=True)
    try:
        key = load_public_key(county_key or DEMO_COUNTY_PUBLIC_KEY_B64)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--county-key") from None
    try:
        with scanner_for_url(url, baudrate=baudrate) as scanner:
            voucher = scanner.read_voucher(key, clock=now, timeout=timeout)
    except VoucherError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        print_json(voucher.to_dict())
    else:
        click.echo(f"e-voucher for insured {voucher.insured_id}, valid until {voucher.expires_at}")


# ---- clinic receipt ----------------------------------------------------------------------


@click.group()
def receipt() -> None:
    """Print, preview and verify receipts."""


clinic_option = click.option(
    "--clinic", envvar="CLINIC_NAME", default="村卫生室 Village clinic", show_default=True,
    help="The clinic's name on the receipt ($CLINIC_NAME).",
)  # fmt: skip
paper_option = click.option(
    "--paper", type=click.Choice(sorted(PAPER)), default="58", show_default=True,
    help="Paper width in mm.",
)  # fmt: skip


def _find_record(store, seq_or_tx: str) -> dict:
    if seq_or_tx.isdigit():
        record = next(iter(store.records(after_seq=int(seq_or_tx) - 1)), None)
        if record is not None and record["seq"] == int(seq_or_tx):
            return record
    else:
        record = store.record_by_tx(seq_or_tx)
        if record is not None:
            return record
    raise click.ClickException(f"no record {seq_or_tx!r} in this device's ledger")


def _diagnoses(store, codes: list[str]) -> dict[str, str]:
    if not codes:
        return {}
    marks = ", ".join("?" * len(codes))
    sql = f"SELECT code, name FROM diagnosis WHERE code IN ({marks})"
    return dict(store.db.execute(sql, codes))


def _layout(data_dir: Path, seq_or_tx: str, clinic: str, paper: str):
    with device_store(data_dir) as store:
        record = _find_record(store, seq_or_tx)
        operator = store.active_operator(record["body"].get("operator", ""))
        holder_id = services.family_account_holder_of(store, record)
        if record["kind"] in ("premium", "premium_reversal"):  # 家庭共济 paid the premium
            holder_id = record["body"].get("account_holder")
        holder = holder_id and store.insured_person(holder_id, with_accumulators=False)
        facts = receipt_facts(store, record, diagnosis_names=lambda codes: _diagnoses(store, codes))
    try:
        return layout_receipt(
            record, clinic=clinic, operator_name=operator[0] if operator else None,
            width=PAPER[paper][0], family_holder_name=holder.name if holder else None,
            facts=facts,
        )  # fmt: skip
    except ReceiptError as error:
        raise click.ClickException(str(error)) from None


@receipt.command("print")
@click.argument("seq_or_tx")
@click.option("--printer", "url", required=True,
              help="Serial port, pyserial URL, or emulated:///FILE.bin[?status=…].")  # fmt: skip
@data_dir_option
@clinic_option
@paper_option
@click.option("--baudrate", default=9600, show_default=True)
@click.option("--qr", "qr_mode", type=click.Choice(["native", "raster"]), default="native",
              show_default=True, help="raster: for printers without a QR generator.")  # fmt: skip
@click.option("--no-status", is_flag=True, help="For printers wired with no way back (TX only).")
def receipt_print(seq_or_tx, url, data_dir, clinic, paper, baudrate, qr_mode, no_status) -> None:
    """Print (or print again) the receipt of a record, by seq or tx_id."""
    layout = _layout(data_dir, seq_or_tx, clinic, paper)
    data = receipt_escpos(layout, paper_dots=PAPER[paper][1], qr=qr_mode)
    try:
        with printer_for_url(url, check_status=not no_status, baudrate=baudrate) as printer:
            status = printer.print_bytes(data)
    except PrinterError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"receipt {seq_or_tx} printed on {url}")
    if status is not None and status.paper_near_end:
        click.echo("打印纸将用完 paper is running out", err=True)


@receipt.command("show")
@click.argument("seq_or_tx")
@data_dir_option
@clinic_option
@paper_option
def receipt_show(seq_or_tx: str, data_dir: Path, clinic: str, paper: str) -> None:
    """The receipt as text, as the printer would print it."""
    click.echo(_layout(data_dir, seq_or_tx, clinic, paper).text())


@receipt.command("verify")
@click.argument("payload")
@click.option("--public-key", required=True, help="The device's public key ('clinic device show').")
@json_option
def receipt_verify(payload: str, public_key: str, as_json: bool) -> None:
    """Check a receipt's QR code text (or '-' for standard input) against a device key."""
    if payload == "-":
        payload = sys.stdin.read()
    try:
        key = load_public_key(public_key)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--public-key") from None
    try:
        verified = verify_receipt_qr(payload, key)
    except ReceiptError as error:
        raise click.ClickException(str(error)) from None
    record = verified.record
    if as_json:
        print_json(record)
        return
    click.echo(f"genuine: {record['kind']} seq {record['seq']} of {record['device_id']}, "
               f"{record['created_at']}, hash {verified.hash}")  # fmt: skip
    for line in _what_it_proves(record):
        click.echo(line)


def _what_it_proves(record: dict) -> list[str]:
    """What a genuine premium receipt proves: who paid how much, for whom and which year."""
    body = record["body"]
    if record["kind"] == "premium":
        persons = ", ".join(
            f"{p['name']} {p['insured_id']} {format_yuan(p['amount'])}" for p in body["persons"]
        )
        return [
            f"保费 premium {body['year']}: 缴费人 payer {body['payer']['name']}, 实收 paid"
            f" {format_yuan(body['amount'])} ({body['method']}), 政府资助 state"
            f" {format_yuan(body['state_paid'])}",
            f"参保人 persons: {persons}",
        ]
    if record["kind"] == "premium_reversal":
        return [
            f"保费冲正 premium reversal of seq {body['reverses_seq']} ({body['reverses']}):"
            f" 退还 {format_yuan(body['amount'])} ({body['method']}), 原因 reason {body['reason']}"
        ]
    return []
