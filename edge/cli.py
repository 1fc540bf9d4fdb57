"""`clinic`: the one command line for operators, county staff, testers and scripts.

Errors go to standard error with a non-zero exit status and change nothing; every
command that prints data has `--json`.
"""

import json
import os
import sys
from datetime import date
from pathlib import Path

import click

from edge import demo as demo_data
from edge.catalog_files import open_catalog_file
from edge.money import format_yuan
from edge.quote import quote_text
from edge.rules import Rejection
from edge.store import SqliteDeviceStore, StoreError


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "clinic"


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CLINIC_DATA_DIR",
    default=default_data_dir,
    show_default="$CLINIC_DATA_DIR, else ~/.local/share/clinic",
    help="The device's data directory.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def print_json(value: object) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def open_store(data_dir: Path) -> SqliteDeviceStore:
    try:
        return SqliteDeviceStore.open(data_dir)
    except StoreError as error:
        raise click.ClickException(str(error)) from None


@click.group()
@click.version_option(package_name="clinic-terminal")
def main() -> None:
    """Offline settlement terminal for village clinics."""


# ---- quote -----------------------------------------------------------------------------


@main.command()
@click.option("--jsonl", is_flag=True, help="One document per line in, one result per line out.")
def quote(jsonl: bool) -> None:
    """Recompute settlements from quote documents on standard input (settlement-rules.md).

    Exit status 2 on a rejection; with --jsonl every line gets a result and the exit
    status is 0.
    """
    stdin = sys.stdin.buffer
    if jsonl:
        for raw in stdin:
            click.echo(_dumps(quote_text(_decode(raw))))
        return
    result = quote_text(_decode(stdin.read()))
    click.echo(_dumps(result))
    if "error" in result:
        sys.exit(2)


def _decode(raw: bytes) -> str:
    # Undecodable bytes become U+FFFD, which the JSON parser then rejects as BAD_INPUT.
    return raw.decode("utf-8", errors="replace")


def _dumps(result: dict) -> str:
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"))


# ---- init --------------------------------------------------------------------------------


@main.command()
@data_dir_option
@click.option("--demo", is_flag=True, help="Load the demo county's policy, catalog and roster.")
def init(data_dir: Path, demo: bool) -> None:
    """Create a device's data directory."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = SqliteDeviceStore.open(data_dir, create=True)
    try:
        if demo:
            for line in demo_data.install(store):
                click.echo(line)
    except (StoreError, Rejection) as error:
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
        count = store.import_catalog(catalog_file.items, version, source=file.name)
    except (StoreError, Rejection, OSError, LookupError) as error:
        raise click.ClickException(f"catalog not imported, nothing changed: {error}") from None
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
        "categories": list(person.categories),
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
        click.echo("assistance categories: " + ", ".join(person.categories))
    for cert in person.chronic_certs:
        click.echo(f"chronic certificate {cert.disease_code}: {cert.valid_from} .. {cert.valid_to}")
    if person.insurance_type == "employee":
        click.echo(f"personal account: {format_yuan(person.account_balance)}")
    for row in accumulators:
        amounts = ", ".join(
            f"{k} {format_yuan(v)}" for k, v in row.items() if k not in ("year", "scope")
        )
        click.echo(f"{row['year']} {row['scope']}: {amounts}")


def _accumulator_fields(scope: str, values) -> dict:
    if scope == "assistance":
        return {"assistance_paid": values.assistance_paid}
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
    help="Where the demo device keeps its data.",
)
def demo(data_dir: Path) -> None:
    """The embedded default: demo county data, settled visits for demo insured persons."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = SqliteDeviceStore.open(data_dir, create=True)
    try:
        for line in demo_data.install(store):
            click.echo(line)
        for line in demo_data.walkthrough(store, today=date.today()):
            click.echo(line)
    finally:
        store.close()
