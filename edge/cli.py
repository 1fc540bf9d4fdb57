"""`clinic`: the one command line for operators, county staff, testers and scripts.

Errors go to standard error with a non-zero exit status and change nothing; every
command that prints data has `--json`.
"""

import json
import sqlite3
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import click

from edge import bootstrap, services
from edge import demo as demo_data
from edge.adapters.catalog_files import open_catalog_file
from edge.adapters.identity import IdentityError
from edge.adapters.sqlite_store import SqliteDeviceStore, StoreError, database_error_text
from edge.cli_options import (
    OPERATOR_ERRORS,
    clock,
    data_dir_option,
    device_store,
    json_option,
    now,
    print_json,
)
from edge.domain.documents import YEAR_WIDE, field, obj, text, visit_from_json
from edge.domain.model import Rejection
from edge.domain.money import format_yuan
from edge.domain.quote import quote_text
from edge.domain.reports import report_text


def open_store(data_dir: Path) -> SqliteDeviceStore:
    try:
        return bootstrap.open_store(data_dir)
    except StoreError as error:
        raise click.ClickException(str(error)) from None
    except sqlite3.Error as error:
        raise click.ClickException(database_error_text(error, Path(data_dir))) from None


@click.group()
@click.version_option(package_name="clinic-terminal")
def main() -> None:
    """Offline settlement terminal for village clinics."""
    clock()  # a bad CLINIC_CLOCK stops every command before it changes anything


# ---- quote -----------------------------------------------------------------------------


@main.command()
@click.option("--jsonl", is_flag=True, help="One document per line in, one result per line out.")
def quote(jsonl: bool) -> None:
    """Recompute settlements from quote documents on standard input (docs/settlement-rules.md).

    Exit status 2 on a rejection; with --jsonl every line gets a result and the exit
    status is 0.
    """
    stdin = sys.stdin.buffer
    if jsonl:
        for raw in stdin:
            click.echo(_dumps(_quote_bytes(raw)))
        return
    result = _quote_bytes(stdin.read())
    click.echo(_dumps(result))
    if "error" in result:
        sys.exit(2)


def _quote_bytes(raw: bytes) -> dict:
    """A document that is not UTF-8 is BAD_INPUT, even where the bad bytes sit inside a
    string (read leniently they would turn into U+FFFD and be settled)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejection("BAD_INPUT", f"document is not UTF-8 text (byte {error.start})").to_dict()
    return quote_text(text)


def _dumps(result: dict) -> str:
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"))


# ---- init --------------------------------------------------------------------------------


@main.command()
@data_dir_option
@click.option("--demo", is_flag=True, help="Load the demo county's policy, catalog and roster.")
def init(data_dir: Path, demo: bool) -> None:
    """Create a device's data directory."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = bootstrap.open_store(data_dir, create=True)
    try:
        if store.device() is None:
            identity = services.init_device(store, data_dir, now())
            click.echo(f"device identity {identity.device_id} created")
        if demo:
            for line in demo_data.install(store, now()):
                click.echo(line)
    except OPERATOR_ERRORS as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()
    click.echo(f"device data ready in {data_dir}")


# ---- catalog -------------------------------------------------------------------------------


@main.group()
def catalog() -> None:
    """Catalog maintenance and look-up."""


@catalog.command("import")
@data_dir_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--version", "version", help="Catalog version (required for CSV files).")
@click.option("--encoding", default="utf-8-sig", show_default=True, help="e.g. gb18030.")
def catalog_import(data_dir: Path, file: Path, version: str | None, encoding: str) -> None:
    """Replace the catalog with FILE (CSV with national-catalog columns, or JSON)."""
    store = open_store(data_dir)
    try:
        catalog_file = open_catalog_file(file, encoding)
        version = version or catalog_file.version
        if not version:
            raise click.UsageError("give the catalog's --version (CSV files carry none)")
        count = store.import_catalog(catalog_file.items, version, source=file.name, now=now())
    except (StoreError, Rejection, OSError, LookupError) as error:
        raise click.ClickException(
            f"目录未导入，未做任何更改 / catalog not imported, nothing changed: {error}"
        ) from None
    except sqlite3.Error as error:
        raise click.ClickException(database_error_text(error, Path(data_dir))) from None
    finally:
        store.close()
    click.echo(f"catalog {version}: {count} items installed")


@catalog.command("search")
@data_dir_option
@click.argument("query")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 200))
@json_option
def catalog_search(data_dir: Path, query: str, limit: int, as_json: bool) -> None:
    """Find items by code, Chinese name, full pinyin or pinyin initials (amxl)."""
    store = open_store(data_dir)
    try:
        hits = store.search_catalog(query, limit)
    finally:
        store.close()
    if as_json:
        print_json(
            [
                {
                    "code": h.code, "name": h.name, "spec": h.spec, "unit": h.unit,
                    "kind": h.kind, "class": h.item_class, "price": h.price,
                    "matched": h.matched,
                }
                for h in hits
            ]
        )  # fmt: skip
        return
    if not hits:
        click.echo(f"no item matches {query!r}", err=True)
        return
    for h in hits:
        click.echo(f"{h.code:<16} {h.item_class}  ¥{h.price:>9}  {h.name} {h.spec}/{h.unit}")


# ---- roster --------------------------------------------------------------------------------


@main.group()
def roster() -> None:
    """The insured roster cached on the device."""


@roster.command("show")
@data_dir_option
@click.argument("insured_id")
@json_option
def roster_show(data_dir: Path, insured_id: str, as_json: bool) -> None:
    """One insured person and their accumulators."""
    store = open_store(data_dir)
    try:
        entry = store.insured_person(insured_id)
    finally:
        store.close()
    if entry is None:
        raise click.ClickException(f"insured person {insured_id!r} is not in the roster")
    person = entry.person
    accumulators = [
        {"year": year, "scope": scope, **_accumulator_fields(scope, values)}
        for (year, scope), values in sorted(entry.accumulators.items())
    ]
    document = {
        "insured_id": entry.insured_id,
        "card_no": entry.card_no,
        "name": entry.name,
        "id_number_masked": entry.id_number_masked,
        "region": entry.region,
        "card_expiry": _iso(entry.card_expiry),
        "insurance_type": person.insurance_type,
        "gender": person.gender,
        "birth_date": person.birth_date.isoformat(),
        "status": person.status,
        "waiting_until": _iso(person.waiting_until),
        "categories": [
            c.name if c.valid_from is None and c.valid_to is None
            else {"name": c.name, "valid_from": _iso(c.valid_from), "valid_to": _iso(c.valid_to)}
            for c in person.categories
        ],
        "family_account_holders": list(entry.family_account_holders),
        "chronic_certs": [
            {"disease_code": c.disease_code, "valid_from": _iso(c.valid_from),
             "valid_to": _iso(c.valid_to)}
            for c in person.chronic_certs
        ],
        "account_balance": person.account_balance,
        "accumulators": accumulators,
    }  # fmt: skip
    if as_json:
        print_json(document)
        return
    click.echo(
        f"{entry.name}  {entry.insured_id}  card {entry.card_no}  ID {entry.id_number_masked}"
    )
    click.echo(
        f"{person.insurance_type}, {person.gender}, born {person.birth_date}, {person.status}"
        + (f", waiting until {person.waiting_until}" if person.waiting_until else "")
    )
    if person.categories:
        click.echo(
            "categories: "
            + ", ".join(
                c.name
                + (f" ({c.valid_from} .. {c.valid_to})" if c.valid_from or c.valid_to else "")
                for c in person.categories
            )
        )
    if entry.family_account_holders:
        click.echo("family account shared by: " + ", ".join(entry.family_account_holders))
    for cert in person.chronic_certs:
        click.echo(f"chronic certificate {cert.disease_code}: {cert.valid_from} .. {cert.valid_to}")
    if person.insurance_type == "employee":
        click.echo(f"personal account: {format_yuan(person.account_balance)}")
    for row in accumulators:
        figures = {k: v for k, v in row.items() if k not in ("year", "scope", "supplements_paid")}
        figures.update(row.get("supplements_paid", {}))
        amounts = ", ".join(f"{k} {format_yuan(v)}" for k, v in figures.items())
        click.echo(f"{row['year']} {row['scope']}: {amounts}")


def _accumulator_fields(scope: str, values) -> dict:
    if scope == YEAR_WIDE:
        return {
            "assistance_paid": values.assistance_paid,
            "ci_selfpay": values.ci_selfpay,
            "ci_paid": values.ci_paid,
            "supplements_paid": dict(values.supplements_paid),
        }
    return {"deductible_used": values.deductible_used, "fund_paid": values.fund_paid}


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


# ---- demo --------------------------------------------------------------------------------


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-data"),
    show_default=True,
    help="Where the demo device keeps its data (the demo hub's is DATA_DIR/hub).",
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="The terminal UI's port (0: any free port).")  # fmt: skip
@click.option("--hub-port", default=8090, show_default=True, type=click.IntRange(0, 65535),
              help="The local county hub's port.")  # fmt: skip
@click.option("--walkthrough", is_flag=True,
              help="Settle sample visits, sync them to the hub and exit (no UI).")  # fmt: skip
@click.pass_context
def demo(ctx: click.Context, data_dir: Path, port: int, hub_port: int, walkthrough: bool) -> None:
    """The embedded default: the demo county's hub on loopback, this terminal enrolled
    with it, and the terminal UI with the emulated card reader and printer."""
    from sync import agent
    from sync import demo as sync_demo
    from web_ui.cli import serve

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        hub = sync_demo.start_demo_hub(data_dir / "hub", clock(), port=hub_port)
    except OSError as error:
        raise click.ClickException(
            f"the demo hub cannot listen on port {hub_port} ({error.strerror});"
            " pass --hub-port 0 or stop what uses it"
        ) from None
    try:
        with device_store(data_dir, create=True) as store:
            if store.device() is None:
                services.init_device(store, data_dir, now())
            for line in demo_data.install(store, now()):
                click.echo(line)
            identity = services.load_identity(store, data_dir)
            clinic = sync_demo.provision_and_enroll(
                store, identity, data_dir, hub_dir=data_dir / "hub", hub_url=hub.url, now=now()
            )
            click.echo(f"county hub on {hub.url}; this terminal is enrolled as clinic"
                       f" {clinic['clinic_code']}")  # fmt: skip
            click.echo(f"county console {hub.url}/console — sign in as:")
            for username, password, role, township in sync_demo.DEMO_CONSOLE_USERS:
                click.echo(f"  {username:<14} {password:<16} {role} {township or ''}")
            if walkthrough:
                for line in demo_data.walkthrough(store, identity, now()):
                    click.echo(line)
                report = agent.sync_once(store, identity, data_dir, now(), hub_url=hub.url)
                click.echo(f"synced with the county hub: acknowledged up to seq"
                           f" {report.get('acked_seq')}")  # fmt: skip
                return
        ctx.invoke(serve, data_dir=data_dir, port=port, demo=True, reader_url=None,
                   printer_url=None, clinic_name=None, county_key=None, threads=4,
                   no_sync=False)  # fmt: skip
    finally:
        hub.stop()


# ---- device, operators -------------------------------------------------------------------


@main.group()
def device() -> None:
    """The device's identity and public key."""


@device.command("init")
@data_dir_option
def device_init(data_dir: Path) -> None:
    """Make the device's Ed25519 key pair (the private key file is mode 0600)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with device_store(data_dir, create=True) as store:
        identity = services.init_device(store, data_dir, now())
    click.echo(f"device {identity.device_id}, public key {identity.public_key_b64}")


@device.command("show")
@data_dir_option
@json_option
def device_show(data_dir: Path, as_json: bool) -> None:
    """The device id and public key (base64url of the raw 32 bytes)."""
    with device_store(data_dir) as store:
        row = store.device()
        if row is None:
            raise IdentityError("this device has no identity yet: run 'clinic device init'")
        waiting = store.outbox_count()
    info = {"device_id": row.device_id, "public_key": row.public_key, "created_at": row.created_at,
            "last_sync_at": row.last_sync_at, "records_waiting": waiting}  # fmt: skip
    if as_json:
        print_json(info)
    else:
        for key, value in info.items():
            click.echo(f"{key}: {value}")


@main.group()
def operator() -> None:
    """The people who may work on this device."""


@operator.command("add")
@data_dir_option
@click.argument("operator_id")
@click.option("--name", required=True)
@click.option(
    "--role", type=click.Choice(["doctor", "coordinator", "admin", "tester"]), default="doctor"
)
def operator_add(data_dir: Path, operator_id: str, name: str, role: str) -> None:
    """Add an operator."""
    with device_store(data_dir) as store:
        store.add_operator(operator_id, name, role)
    click.echo(f"operator {operator_id} ({name}, {role})")


# ---- settle, reverse, close-day -------------------------------------------------------------


def read_json_stdin() -> dict:
    try:
        document = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    except RecursionError:
        raise Rejection("BAD_INPUT", "standard input is nested too deeply (嵌套过深)") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise Rejection("BAD_INPUT", f"standard input is not a JSON document: {error}") from None
    return obj(document, "input")


@main.command("settle")
@data_dir_option
def settle_command(data_dir: Path) -> None:
    """Settle and record a visit: {"insured_id", "visit", "operator"} as JSON on stdin.

    Instead of "insured_id", "card" names a card reader URL (emulated://A32011501,
    pcsc://) to read the patient's card from. `visit.date` defaults to today;
    `visit.family_account_holder` names whose shared account pays when
    `visit.use_family_account` is true and several employees share one. Prints the
    settlement with its seq, tx_id and hash.
    """
    with device_store(data_dir) as store:
        request = read_json_stdin()
        moment = now()
        visit_doc = {"date": moment.date().isoformat(), **field(request, "visit", "", obj)}
        if "card" in request:
            insured_id = insured_id_from_card(store, field(request, "card", "", text), moment)
        else:
            insured_id = field(request, "insured_id", "", text)
        recorded = services.settle_visit(
            store,
            services.load_identity(store, data_dir),
            insured_id=insured_id,
            visit=visit_from_json(visit_doc),
            operator=field(request, "operator", "", text),
            now=moment,
            family_account_holder=field(visit_doc, "family_account_holder", "visit", text, None),
        )
    record = recorded.record
    print_json({"seq": record["seq"], "tx_id": record["tx_id"], "hash": record["hash"],
                "created_at": record["created_at"], "needs_review": recorded.needs_review,
                "settlement": recorded.settlement.to_dict()})  # fmt: skip
    for reason in recorded.needs_review:
        click.echo(f"needs county review: {reason}", err=True)


def insured_id_from_card(store: SqliteDeviceStore, reader_url: str, moment: datetime) -> str:
    from drivers.cards import CardError, card_reader_for_url, read_card

    try:
        reader = card_reader_for_url(reader_url, today=moment.date())
        try:
            card = read_card(reader, today=moment.date(), timeout=CARD_WAIT_SECONDS)
        finally:
            reader.close()
    except CardError as error:
        raise click.ClickException(f"card not read, nothing recorded: {error}") from None
    return services.card_holder(store, card.insured_id, card.card_no)


CARD_WAIT_SECONDS = 10


@main.command("reverse")
@data_dir_option
@click.argument("tx_id")
@click.option("--reason", required=True, help="Why the settlement is cancelled.")
@click.option("--operator", "operator_id", required=True)
def reverse_command(data_dir: Path, tx_id: str, reason: str, operator_id: str) -> None:
    """Cancel a settlement by its tx_id with a signed reversal."""
    with device_store(data_dir) as store:
        recorded = services.reverse_settlement(
            store, services.load_identity(store, data_dir),
            tx_id=tx_id, reason=reason, operator=operator_id, now=now(),
        )  # fmt: skip
    record = recorded.record
    print_json({"seq": record["seq"], "tx_id": record["tx_id"], "hash": record["hash"],
                "reverses": tx_id, "amounts": record["body"]["amounts"]})  # fmt: skip


@main.command("close-day")
@data_dir_option
@click.option("--operator", "operator_id", required=True)
@json_option
def close_day_command(data_dir: Path, operator_id: str, as_json: bool) -> None:
    """Sign the daily close (日结): totals since the previous close, reversals netted."""
    from drivers.receipt import close_report_of

    with device_store(data_dir) as store:
        recorded = services.close_day(
            store, services.load_identity(store, data_dir), operator=operator_id, now=now()
        )
        report = close_report_of(store, recorded.record)  # with the records it covers
    record = recorded.record
    if as_json:
        print_json({"seq": record["seq"], "tx_id": record["tx_id"], "hash": record["hash"],
                    **record["body"]})  # fmt: skip
        return
    click.echo(report_text(report))


@main.command("close-month")
@data_dir_option
@click.option("--operator", "operator_id", required=True)
@click.option("--month", help="YYYY-MM (China time); default: last month.")
@json_option
def close_month_command(data_dir: Path, operator_id: str, month: str | None, as_json: bool) -> None:
    """Sign the month close (月结) of a month that has ended: its totals by payer,
    insurance type and visit type, reversals netted. A day of it not yet in a daily close
    is closed first."""
    from edge.domain.reports import period_text

    with device_store(data_dir) as store:
        recorded = services.close_month(
            store, services.load_identity(store, data_dir), operator=operator_id, now=now(),
            month=month,
        )  # fmt: skip
    _print_period(recorded.record, as_json, period_text)


@main.command("close-year")
@data_dir_option
@click.option("--operator", "operator_id", required=True)
@click.option("--year", help="YYYY (China time); default: last year.")
@json_option
def close_year_command(data_dir: Path, operator_id: str, year: str | None, as_json: bool) -> None:
    """Sign the year close (年结) of a year that has ended; its months not yet closed are
    closed first."""
    from edge.domain.reports import period_text

    with device_store(data_dir) as store:
        recorded = services.close_year(
            store, services.load_identity(store, data_dir), operator=operator_id, now=now(),
            year=year,
        )  # fmt: skip
    _print_period(recorded.record, as_json, period_text)


def _print_period(record: dict, as_json: bool, text: Callable[[dict], str]) -> None:
    if as_json:
        print_json({"seq": record["seq"], "tx_id": record["tx_id"], "hash": record["hash"],
                    "kind": record["kind"], **record["body"]})  # fmt: skip
    else:
        click.echo(text(record))


# ---- ledger ----------------------------------------------------------------------------------


@main.group()
def ledger() -> None:
    """Check and export the signed ledger (docs/ledger.md)."""


@ledger.command("verify")
@data_dir_option
@json_option
def ledger_verify(data_dir: Path, as_json: bool) -> None:
    """Check the whole chain; exit 1 naming the first broken seq."""
    with device_store(data_dir) as store:
        result = services.verify_ledger(store)
    summary = {"ok": result.ok, "records": result.count, "first_bad_seq": result.first_bad_seq,
               "reason": result.reason}  # fmt: skip
    if as_json:
        print_json(summary)
    elif result.ok:
        click.echo(f"ledger intact: {result.count} records, last hash {result.last_hash}")
    else:
        click.echo(f"ledger BROKEN at seq {result.first_bad_seq}: {result.reason}", err=True)
    if not result.ok:
        sys.exit(1)


@ledger.command("export")
@data_dir_option
@click.option("--output", "-o", type=click.File("w", encoding="utf-8", lazy=False), default="-")
def ledger_export(data_dir: Path, output) -> None:
    """Write every record as JSON Lines, in seq order, with hash and sig."""
    with device_store(data_dir) as store:
        for record in store.records():
            output.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
