"""`clinic statement`: fetch the county's clearing statement of a month, check it against
the device's own ledger, report the result to the hub (docs/statements.md)."""

import sys
from pathlib import Path

import click

from edge import services
from edge.cli_options import data_dir_option, device_store, json_option, now, print_json
from edge.domain.clearing import comparison_lines
from edge.domain.records import previous_month
from sync.protocol import SyncError


@click.command("statement")
@data_dir_option
@click.option("--month", help="YYYY-MM (China time); default: last month.")
@click.option("--hub", "hub_url", help="Another hub address for this run (diagnostics).")
@json_option
def statement_command(data_dir: Path, month: str | None, hub_url: str | None, as_json: bool):
    """Fetch the county's clearing statement (结算单) of a month, compare it record by
    record with this device's ledger, and tell the hub. Exit 1 when they do not agree,
    2 when the county has no statement yet."""
    from sync.agent.statements import check_statement, difference_names

    moment = now()
    month = month or previous_month(moment.strftime("%Y-%m"))
    with device_store(data_dir) as store:
        identity = services.load_identity(store, data_dir)
        try:
            check = check_statement(store, identity, month, moment, hub_url)
        except SyncError as error:
            raise click.ClickException(f"{error.message_zh} / {error.message_en}") from None
        names = difference_names(store, check["comparison"]) if check else {}
    if check is None:
        if as_json:
            print_json({"month": month, "statement": None})
        else:
            click.echo(f"{month} 县级尚未出具结算单 / the county has no statement for {month} yet")
        sys.exit(2)
    comparison = check["comparison"]
    if as_json:
        print_json({**comparison, "checked_at": check["checked_at"],
                    "reported_at": check["reported_at"]})  # fmt: skip
    else:
        for line in comparison_lines(comparison, names):
            click.echo(line)
        if check["reported_at"] is None:
            click.echo("未能报告县级平台，下次核对时再报 / not reported to the hub yet", err=True)
    if not comparison["agrees"]:
        sys.exit(1)
