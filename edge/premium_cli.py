"""`clinic premium …`: premium collection at the village service point (参保缴费) from the
command line, for scripts and tests; `edge.console` registers it on `clinic`.

The logic is in `edge.premiums`. Refusals are one line on standard error, exit status 1,
nothing written; every command has `--json`.
"""

from pathlib import Path

import click

from edge import premiums as use_cases
from edge import services
from edge.cli_options import data_dir_option, device_store, json_option, now, print_json
from edge.clock import CLINIC_TZ
from edge.domain.money import format_yuan
from edge.domain.reports import PREMIUM_METHODS


@click.group()
def premium() -> None:
    """Collect, reverse and list premiums (参保缴费)."""


operator_option = click.option(
    "--operator", "operator_id", required=True, help="The operator who takes the money."
)


@premium.command("collect")
@data_dir_option
@click.option("--insured-id", "insured_ids", multiple=True, required=True,
              help="A person the payment covers (repeat for a family, at most 20).")  # fmt: skip
@click.option("--payer-name", help="Who pays (required unless --quote-only).")
@click.option("--payer-insured-id", help="The payer's insured id, when insured.")
@click.option(
    "--year", type=int, help="The insurance year paid for; default: the one collected now."
)
@click.option("--method", type=click.Choice(use_cases.METHODS), default="cash", show_default=True)
@click.option("--reference", help="The mobile payment's transaction number (required for mobile).")
@click.option(
    "--account-holder", help="family_account: the employee whose account pays (家庭共济)."
)
@click.option("--operator", "operator_id", help="The operator who takes the money.")
@click.option("--quote-only", is_flag=True, help="Show what is due; record nothing.")
@json_option
def premium_collect(
    data_dir: Path, insured_ids: tuple[str, ...], payer_name: str | None,
    payer_insured_id: str | None, year: int | None, method: str, reference: str | None,
    account_holder: str | None, operator_id: str | None, quote_only: bool, as_json: bool,
) -> None:  # fmt: skip
    """Take one payment of the premiums of the persons given (one payer, several persons).

    When the state pays every person's premium in full nothing is taken or recorded
    (refused, exit status 1); --quote-only says so without refusing."""
    moment = now()
    with device_store(data_dir) as store:
        if quote_only:
            quote = use_cases.premium_quote(
                store, list(insured_ids), year, moment.astimezone(CLINIC_TZ).date()
            )
            _print_quote(quote, as_json)
            return
        if not operator_id or not payer_name:
            raise click.UsageError("give --operator and --payer-name (or --quote-only)")
        recorded = use_cases.collect_premium(
            store, services.load_identity(store, data_dir), operator=operator_id,
            payer_name=payer_name, payer_insured_id=payer_insured_id,
            insured_ids=list(insured_ids), year=year, method=method, reference=reference,
            account_holder=account_holder, now=moment,
        )  # fmt: skip
    _print_record(recorded.record, as_json)


@premium.command("reverse")
@data_dir_option
@click.argument("tx_or_seq")
@click.option("--reason", required=True, help="Why the payment is cancelled.")
@operator_option
@json_option
def premium_reverse(
    data_dir: Path, tx_or_seq: str, reason: str, operator_id: str, as_json: bool
) -> None:
    """Cancel a premium (once) with a signed reversal; a family account gets its money back."""
    with device_store(data_dir) as store:
        recorded = use_cases.reverse_premium(
            store, services.load_identity(store, data_dir), tx_or_seq, operator=operator_id,
            reason=reason, now=now(),
        )  # fmt: skip
    _print_record(recorded.record, as_json)


@premium.command("show")
@data_dir_option
@click.argument("tx_or_seq")
@json_option
def premium_show(data_dir: Path, tx_or_seq: str, as_json: bool) -> None:
    """One premium by seq or tx_id, with its reversal if it has one."""
    with device_store(data_dir) as store:
        found = use_cases.premium(store, use_cases.find_premium(store, tx_or_seq)["tx_id"])
    assert found is not None  # find_premium found its record, which the store indexes
    if as_json:
        print_json(found)
        return
    _echo_premium_row(found)
    for person in found["persons"]:
        click.echo(f"  {person['insured_id']} {person['name']}:"
                   f" 应缴 due {format_yuan(person['due'])},"
                   f" 政府资助 state {format_yuan(person['state_pays'])},"
                   f" 个人缴纳 paid {format_yuan(person['amount'])}")  # fmt: skip


@premium.command("list")
@data_dir_option
@click.option("--year", type=int, help="Only the premiums for this insurance year.")
@click.option("--day", help="Only those collected on this day (YYYY-MM-DD, China time).")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 1000))
@json_option
def premium_list(
    data_dir: Path, year: int | None, day: str | None, limit: int, as_json: bool
) -> None:
    """The premiums collected, newest first."""
    with device_store(data_dir) as store:
        rows = use_cases.premiums(store, year=year, day=day, limit=limit)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("没有缴费记录 / no premiums")
    for row in rows:
        _echo_premium_row(row)


def _echo_premium_row(row: dict) -> None:
    state = f"已冲正 reversed by {row['reversal_seq']}" if row["reversed_by"] else "有效 valid"
    method = PREMIUM_METHODS.get(row["method"], row["method"])
    reference = f" {row['reference']}" if row["reference"] else ""
    click.echo(
        f"{row['seq']} {row['created_at'][:16]} {row['year']}年度 {row['payer_name']}"
        f" {len(row['persons'])}人 实收 {format_yuan(row['amount'])} {method}{reference}"
        f" 政府资助 {format_yuan(row['state_paid'])} {state}"
    )


def _print_quote(quote: use_cases.PremiumQuote, as_json: bool) -> None:
    if as_json:
        print_json(quote.to_json())
        return
    click.echo(f"{quote.year}年度保费 / premium for {quote.year}")
    for p in quote.persons:
        click.echo(f"  {p.insured_id} {p.name}: 应缴 {format_yuan(p.due)}, 政府资助"
                   f" {format_yuan(p.state_pays)}, 个人缴纳 {format_yuan(p.amount)}")  # fmt: skip
    if quote.all_state_paid:
        click.echo(use_cases.ALL_STATE_PAID)
    else:
        click.echo(f"应收合计 / to collect: {format_yuan(quote.amount)}")


def _print_record(record: dict, as_json: bool) -> None:
    if as_json:
        print_json({"seq": record["seq"], "tx_id": record["tx_id"], "hash": record["hash"],
                    "kind": record["kind"], "created_at": record["created_at"],
                    **record["body"]})  # fmt: skip
        return
    body = record["body"]
    if record["kind"] == "premium":
        click.echo(f"已收保费 premium recorded: seq {record['seq']}, {body['year']}年度,"
                   f" 实收 {format_yuan(body['amount'])}, 政府资助"
                   f" {format_yuan(body['state_paid'])}, tx {record['tx_id']}")  # fmt: skip
    else:
        click.echo(f"已冲正 premium reversed: seq {record['seq']} 冲正 {body['reverses_seq']},"
                   f" 退还 {format_yuan(body['amount'])}, tx {record['tx_id']}")  # fmt: skip
    click.echo(
        f"打印收费凭证 / print the receipt: clinic receipt print {record['seq']} --printer …"
    )


COMMANDS: list[click.Command] = [premium]
