"""`clinic` commands of the county hub and the sync agent; `edge.console` registers them.

Hub commands take `--data-dir` (default `$CLINIC_HUB_DIR`, else
`~/.local/share/clinic-hub`); device commands take the device's `--data-dir` (default
`$CLINIC_DATA_DIR`). Errors are one line on standard error, exit status 1, nothing changed.
"""

import csv
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, time
from pathlib import Path

import click

from edge.adapters.identity import IdentityError
from edge.adapters.sqlite_store import StoreError
from edge.cli_options import clock, json_option, print_json
from edge.cli_options import data_dir_option as device_dir_option
from edge.cli_options import now as _now
from edge.domain.model import Rejection

COMMANDS: list[click.Command] = []


def default_hub_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "clinic-hub"


hub_dir_option = click.option(
    "--data-dir",
    "hub_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CLINIC_HUB_DIR",
    default=default_hub_dir,
    show_default="$CLINIC_HUB_DIR, else ~/.local/share/clinic-hub",
    help="The county hub's data directory.",
)


def _one_line(error: Exception) -> str:
    from sync.protocol import SyncError

    if isinstance(error, SyncError):
        return f"{error.message_en} / {error.message_zh} [{error.code}]"
    if isinstance(error, Rejection):
        return f"{error.code}: {error.message}"
    return str(error)


@contextmanager
def plain_errors() -> Iterator[None]:
    """Errors an operator can act on become one line on stderr and exit status 1."""
    from sync.hub.model import HubError, HubStoreError
    from sync.protocol import SyncError

    try:
        yield
    except (
        HubError,
        HubStoreError,
        SyncError,
        StoreError,
        IdentityError,
        Rejection,
        OSError,
    ) as error:
        raise click.ClickException(_one_line(error)) from None


@contextmanager
def open_hub(hub_dir: Path) -> Iterator:
    from sync.hub.bootstrap import open_hub_store

    with plain_errors():
        store = open_hub_store(hub_dir)
        try:
            yield store
        finally:
            store.close()


def parse_expiry(text: str) -> datetime:
    """A date (the start of that day, clinic time) or an ISO date-time with an offset."""
    from edge.clock import CLINIC_TZ

    try:
        if len(text) == 10:
            return datetime.combine(datetime.fromisoformat(text).date(), time(), CLINIC_TZ)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date (YYYY-MM-DD) or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=CLINIC_TZ)


# ---- the county hub ---------------------------------------------------------------------------


@click.group("hub")
def hub() -> None:
    """The county hub: devices, signed updates, uploads, reconciliation."""


tls_host_option = click.option(
    "--tls-host",
    "tls_hosts",
    multiple=True,
    help="Make a self-signed TLS certificate for this host name or IP address (repeat"
    " for each name devices use).",
)


@hub.command("init")
@hub_dir_option
@click.option("--county", "county_name", default="示范县 Demo County", show_default=True)
@click.option(
    "--database",
    envvar="CLINIC_HUB_DATABASE",
    default=None,
    help="postgresql://… to keep the hub in PostgreSQL (recorded in the data directory);"
    " default: SQLite in the data directory.",
)
@tls_host_option
@json_option
def hub_init(
    hub_dir: Path, county_name: str, database: str | None, tls_hosts: tuple, as_json: bool
) -> None:
    """Create the hub's database and the county's Ed25519 signing key (county.key, 0600);
    with --tls-host, the hub's self-signed TLS certificate too."""
    from sync.hub.adapters.tls_certificate import write_self_signed
    from sync.hub.bootstrap import init_hub, is_postgres_url

    with plain_errors():
        if database and not is_postgres_url(database):
            raise click.BadParameter("give a postgresql://… URL", param_hint="--database")
        county = init_hub(hub_dir, county_name, _now(), database or None)
        if tls_hosts:
            county["tls"] = write_self_signed(hub_dir, list(tls_hosts), _now())
    if as_json:
        print_json(county)
        return
    click.echo(f"county hub for {county['county']} ready in {hub_dir}")
    click.echo(f"county public key {county['public_key']}")
    click.echo(f"fingerprint {county['fingerprint']} (devices show it when they enroll)")
    if tls_hosts:
        _echo_certificate(county["tls"])


def _echo_certificate(tls: dict) -> None:
    click.echo(f"TLS certificate {tls['certificate']} for {', '.join(tls['hosts'])}")
    click.echo(f"TLS key {tls['key']} (0600: keep it secret)")
    click.echo(f"TLS certificate SHA-256 fingerprint {tls['fingerprint']}")
    click.echo(
        f"give devices {tls['certificate']}: clinic enroll --hub https://HOST:PORT"
        f" --code CODE --hub-ca {Path(tls['certificate']).name}"
    )


@hub.command("certificate")
@hub_dir_option
@tls_host_option
@json_option
def hub_certificate(hub_dir: Path, tls_hosts: tuple, as_json: bool) -> None:
    """Make (or renew) the hub's self-signed TLS certificate and key for the host names
    and addresses devices use; devices must then be pinned to it again."""
    from sync.hub.adapters.tls_certificate import write_self_signed

    if not tls_hosts:
        raise click.UsageError("give at least one --tls-host")
    with plain_errors():
        if not hub_dir.is_dir():
            raise click.ClickException(f"no county hub in {hub_dir} ('clinic hub init')")
        tls = write_self_signed(hub_dir, list(tls_hosts), _now())
    if as_json:
        print_json(tls)
        return
    _echo_certificate(tls)


@hub.command("serve")
@hub_dir_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8470, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--reconcile-interval",
    default=30.0,
    show_default=True,
    help="Seconds between background recomputation runs (0: off).",
)
@click.option(
    "--certificate",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The TLS certificate (PEM, with its chain); default: hub-tls.crt in the data"
    " directory, if there is one.",
)
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The certificate's private key (PEM); default: hub-tls.key beside it.",
)
@click.option(
    "--plain-http",
    is_flag=True,
    help="Serve plain HTTP on a non-loopback address (behind a TLS reverse proxy"
    " elsewhere, or a lab). Plain HTTP on loopback needs no flag.",
)
@click.option(
    "--behind-tls-proxy",
    is_flag=True,
    help="Plain HTTP to a TLS reverse proxy (nginx, Caddy: deploy/hub/) whose"
    " X-Forwarded-For is trusted; the console's cookie is still sent over HTTPS only.",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Per worker."
)
def hub_serve(
    hub_dir: Path,
    host: str,
    port: int,
    reconcile_interval: float,
    certificate: Path | None,
    key: Path | None,
    plain_http: bool,
    behind_tls_proxy: bool,
    workers: int,
    threads: int,
) -> None:
    """Serve the device API and the console (gunicorn: several workers, bounded
    connections, request limits and timeouts); HTTPS with the hub's certificate."""
    from sync.agent.client import is_loopback
    from sync.hub.adapters.tls_certificate import configured
    from sync.hub.app import create_app
    from sync.hub.server import ServerLimits, serve

    if key is not None and certificate is None:
        raise click.UsageError("--key needs --certificate")
    plain_http = plain_http or behind_tls_proxy
    if certificate is None and not plain_http:
        certificate, key = configured(hub_dir) or (None, None)
    if certificate is None and not (plain_http or is_loopback(host)):
        raise click.ClickException(
            f"no TLS certificate for {host}: run 'clinic hub certificate --tls-host NAME',"
            " give --certificate/--key, or --plain-http behind a TLS reverse proxy"
            " / 没有 TLS 证书：请生成或指定证书，或在 TLS 反向代理之后使用 --plain-http"
        )
    app_config = {
        "HUB_DATA_DIR": str(hub_dir),
        "RECONCILE_INTERVAL_S": reconcile_interval or None,
        "CLOCK": clock(),
        # The console's session cookie only ever travels over HTTPS.
        "SESSION_COOKIE_SECURE": bool(certificate) or behind_tls_proxy,
    }
    if behind_tls_proxy:  # the client's address is the one the proxy appended
        app_config["TRUST_PROXY"] = True
    with plain_errors():
        # Checked once here, so that a broken hub says why instead of failing in workers.
        create_app({**app_config, "RECONCILE_INTERVAL_S": None})
    scheme = "https" if certificate else "http"
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"county hub serving {hub_dir} on {scheme}://{shown}:{port}", err=True)
    serve(
        app_config,
        host=host,
        port=port,
        certificate=certificate,
        key=key,
        limits=ServerLimits(workers=workers, threads=threads),
    )


@hub.command("provision")
@hub_dir_option
@click.option("--clinic", "clinic_code", required=True, help="The clinic's code.")
@click.option("--township", required=True, help="The township (乡镇) it belongs to.")
@click.option("--valid-hours", default=72, show_default=True, type=click.IntRange(1, 24 * 90))
@json_option
def hub_provision(
    hub_dir: Path, clinic_code: str, township: str, valid_hours: int, as_json: bool
) -> None:
    """Register a device slot and print its one-time enrollment code."""
    from datetime import timedelta

    from sync.hub.services import county

    with open_hub(hub_dir) as store:
        provisioned = county.provision(
            store,
            clinic_code=clinic_code,
            township=township,
            now=_now(),
            lifetime=timedelta(hours=valid_hours),
        )
    if as_json:
        print_json(provisioned.to_dict())
        return
    click.echo(f"slot {provisioned.slot_id}: clinic {clinic_code}, {township}")
    click.echo(f"enrollment code {provisioned.code} (once, until {provisioned.expires_at})")
    click.echo(f"county key fingerprint {provisioned.county_fingerprint}")


@hub.command("revoke")
@hub_dir_option
@click.argument("device")
@click.option("--reason", default="", help="Why (kept with the device).")
def hub_revoke(hub_dir: Path, device: str, reason: str) -> None:
    """Stop DEVICE (a device id, or an unused slot's number): its requests are refused."""
    from sync.hub.services import county

    with open_hub(hub_dir) as store:
        slot = county.revoke(store, device, _now(), reason)
    click.echo(f"revoked {slot.device_id or f'slot {slot.slot_id}'} ({slot.clinic_code})")


@hub.command("export")
@hub_dir_option
@click.option("--device", "device_id", required=True)
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-")
def hub_export(hub_dir: Path, device_id: str, output) -> None:
    """Write what the hub holds for a device as JSON Lines (the `clinic ledger export`
    format: seq order, with hash and sig)."""
    from sync.hub.services import uploads

    with open_hub(hub_dir) as store, plain_errors():
        for record in uploads.export_records(store, device_id):
            output.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")


@hub.command("publish")
@hub_dir_option
@click.argument("kind", type=click.Choice(["catalog", "policy", "roster", "aliases"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--version", "version", help="The version (required for catalog CSV files).")
@click.option("--expires", required=True, help="Expiry: YYYY-MM-DD or an ISO date-time.")
@click.option("--encoding", default="utf-8-sig", show_default=True, help="e.g. gb18030.")
@json_option
def hub_publish(
    hub_dir: Path,
    kind: str,
    file: Path,
    version: str | None,
    expires: str,
    encoding: str,
    as_json: bool,
) -> None:
    """Sign and publish a catalog (CSV or JSON), policy or roster (JSON) version, or the
    search aliases (CSV: alias,list,code)."""
    from edge.adapters.catalog_files import open_catalog_file
    from edge.domain.search_keys import aliases_from_csv
    from sync.hub.adapters.county_key import load_county_key
    from sync.hub.services import publishing
    from sync.updates import aliases_content

    expires_at = parse_expiry(expires)
    with open_hub(hub_dir) as store, plain_errors():
        key = load_county_key(hub_dir)
        if kind == "catalog":
            catalog_file = open_catalog_file(file, encoding)
            manifest = publishing.publish(
                store,
                key,
                kind=kind,
                version=version or catalog_file.version,
                expires_at=expires_at,
                now=_now(),
                items=catalog_file.items,
            )
        else:
            try:
                text = file.read_text(encoding=encoding)
                document = (
                    aliases_content(aliases_from_csv(text))
                    if kind == "aliases"
                    else json.loads(text)
                )
            except RecursionError:
                raise click.ClickException(
                    f"{file} 嵌套过深，未发布 / is nested too deeply, nothing published"
                ) from None
            except (ValueError, csv.Error) as error:
                what = "an alias list (alias,list,code)" if kind == "aliases" else "JSON"
                raise click.ClickException(f"{file} is not {what}: {error}") from None
            manifest = publishing.publish(
                store,
                key,
                kind=kind,
                version=version,
                expires_at=expires_at,
                now=_now(),
                document=document,
            )
    if as_json:
        print_json(manifest)
        return
    click.echo(f"{kind} {manifest['version']} published, signed, expires {manifest['expires_at']}")


@hub.command("status")
@hub_dir_option
@click.option("--township", help="Only this township's devices.")
@json_option
def hub_status(hub_dir: Path, township: str | None, as_json: bool) -> None:
    """Fleet status: contact, backlog, versions, clock skew, alarms, differences, and the
    payers of each device's last daily close."""
    from sync.hub.services import reports

    with open_hub(hub_dir) as store:
        rows = reports.fleet_status(store, _now(), township)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no device slots yet ('clinic hub provision')", err=True)
    for row in rows:
        versions = ", ".join(f"{k} {v}" for k, v in (row["versions"] or {}).items() if v)
        click.echo(
            f"{row['township']:<10} {row['clinic_code']:<12} {row['device_id'] or '-':<18}"
            f" {row['state']:<20} acked {row['acked_seq']:>6}  waiting"
            f" {row['records_waiting'] if row['records_waiting'] is not None else '?':>5}"
            f"  skew {row['clock_skew_s'] if row['clock_skew_s'] is not None else '?'}s"
            f"  alarms {len(row['alarms'])}  differences {row['reconciliation_differences']}"
            + (f"  [{versions}]" if versions else "")
            + _software_text(row["software"])
            + _last_close_text(row["last_close"])
        )


def _software_text(software: dict | None) -> str:
    """The version a device runs, and its update's state (`docs/releases.md`)."""
    if software is None:
        return ""
    update = software.get("release")
    state = f" ({update['version']} {update['state']})" if update else ""
    return f"  software {software['version']}{state}"


def _last_close_text(close: dict | None) -> str:
    """The payers of a device's last daily close, by national name (those that paid)."""
    if close is None:
        return ""
    paid = ", ".join(f"{name} {amount}" for name, amount in close["payers"].items() if amount)
    return f"  last close {close['business_day']}: {paid or 'nothing'}"


@hub.command("reconcile")
@hub_dir_option
@json_option
def hub_reconcile(hub_dir: Path, as_json: bool) -> None:
    """Recompute every upload not yet recomputed, now."""
    from sync.hub.services import reconciliation

    with open_hub(hub_dir) as store:
        counts = reconciliation.reconcile_pending(store, _now())
    if as_json:
        print_json(counts)
    else:
        click.echo(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing new")


@hub.command("month-report")
@hub_dir_option
@click.option("--month", required=True, help="YYYY-MM (China time).")
@click.option("--township", help="Only this township's clinics.")
@click.option(
    "--table",
    type=click.Choice(["clinics", "townships", "days", "items"]),
    default="clinics",
    show_default=True,
    help="Which table, as CSV on standard output.",
)
@click.option(
    "--xlsx",
    "xlsx_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every table to this .xlsx file instead.",
)
def hub_month_report(
    hub_dir: Path, month: str, township: str | None, table: str, xlsx_path: Path | None
) -> None:
    """A month's report (the console's month reports): amounts in yuan, Chinese headers."""
    from sync.hub.services import month_reports

    try:
        month_reports.month_start(month)
    except ValueError:
        raise click.BadParameter("a month is YYYY-MM", param_hint="--month") from None
    with open_hub(hub_dir) as store:
        report = month_reports.month_report(store, store.slots(township), month, township=township)
    tables = month_reports.tables(report)
    if xlsx_path is not None:
        with plain_errors():
            xlsx_path.write_bytes(month_reports.tables_xlsx(tables.values()))
        return
    click.echo(month_reports.table_csv(tables[table]), nl=False)


@hub.command("report")
@hub_dir_option
@click.argument("what", type=click.Choice(["settlements", "reconciliation"]))
@click.option("--township", help="Only this township's devices.")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8-sig"), default="-")
def hub_report(hub_dir: Path, what: str, township: str | None, output) -> None:
    """CSV of every settlement (with the county's figures) or every reconciliation item."""
    from sync.hub.services import reports

    with open_hub(hub_dir) as store:
        devices = None
        if township is not None:
            devices = [s.device_id for s in store.slots(township) if s.device_id]
        make = reports.settlements_csv if what == "settlements" else reports.reconciliation_csv
        output.write(make(store, devices))


# ---- clearing statements (docs/statements.md) ---------------------------------------------


def _month_option(help_text: str):
    return click.option("--month", required=True, help=help_text + " YYYY-MM.")


@hub.command("statement")
@hub_dir_option
@click.option("--clinic", "clinic_code", required=True, help="The clinic's code.")
@_month_option("The month of the statement,")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "csv", "xlsx"]),
    default="text",
    show_default=True,
    help="json: the signed document; csv / xlsx: for the county office.",
)
@click.option("--json", "fmt", flag_value="json", help="Same as --format json.")
@click.option("--csv", "fmt", flag_value="csv", help="Same as --format csv.")
@click.option("--xlsx", "fmt", flag_value="xlsx", help="Same as --format xlsx (needs -o).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File.")
def hub_statement(
    hub_dir: Path, clinic_code: str, month: str, fmt: str, output: Path | None
) -> None:
    """A clinic's clearing statement for a month (结算单): built from the county's
    recomputation, a new revision when a late upload changed it. 卫生室月度结算单。"""
    from sync.hub.adapters.county_key import load_county_key
    from sync.hub.services import statement_exports, statements

    if fmt == "xlsx" and output is None:
        raise click.UsageError("--xlsx writes a file: give -o FILE.xlsx")
    with open_hub(hub_dir) as store, plain_errors():
        revision = statements.refresh(store, clinic_code, month, _now())
        document = statements.signed(store, revision, load_county_key(hub_dir))
        reports = statements.reconciliation_view(store, revision)
    statement = document["statement"]
    if fmt == "xlsx":
        assert output is not None
        output.write_bytes(statement_exports.statement_xlsx(statement))
        return
    if fmt == "json":
        text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    elif fmt == "csv":
        text = "\ufeff" + statement_exports.statement_csv(statement)
    else:
        text = _statement_text(statement, reports)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


def _statement_text(statement: dict, reports: list[dict]) -> str:
    from sync.hub.services.statement_exports import (
        PAYER_HEADERS,
        STATUS_NAMES,
        device_amounts_text,
        yuan_text,
    )
    from sync.statements import PAYERS

    total, payment = statement["total"], statement["payment"]
    lines = [
        f"{statement['clinic']} {statement['month']} 结算单 statement, revision"
        f" {statement['revision']}: {STATUS_NAMES[statement['status']]} {statement['status']}"
        + (f" ({payment['reference']}, {payment['paid_on']})" if payment else ""),
        f"结算 settlements {total['settlement_count']}, 冲正 reversals"
        f" {total['reversal_count']}, 净 net {total['count']}",
    ]
    lines += [f"  {PAYER_HEADERS[p]} {p}: {yuan_text(total[p])}" for p in PAYERS]
    for row in statement["detail"]:
        if row["device_amounts"] is not None:
            lines.append(
                f"  县级核算不同 county differs: {row['tx_id']} ({row['county_status']});"
                f" 设备 device: {device_amounts_text(row['device_amounts'])}"
            )
    for change in statement["changes"]:
        lines.append(f"  更正 changed since revision {statement['supersedes']}:"
                     f" {change['tx_id']} {change['what']}")  # fmt: skip
    for report in reports:
        agreed = "一致 agrees" if report["agrees"] else "不一致 disagrees"
        lines.append(
            f"  设备 device {report['device_id']} (revision {report['revision']}): {agreed}"
            f", {len(report['differences'])} differences,"
            f" {len(report['missing_at_county'])} missing at the county,"
            f" {len(report['missing_on_device'])} missing on the device"
        )
    return "\n".join(lines) + "\n"


@hub.command("clearing")
@hub_dir_option
@_month_option("The month,")
@click.option("--township", help="Only this township's clinics.")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="CSV for the county office.")
def hub_clearing(
    hub_dir: Path, month: str, township: str | None, as_json: bool, as_csv: bool
) -> None:
    """Every clinic's clearing statement for a month: status, payment and totals.
    各卫生室月度结算状态。"""
    from sync.hub.services import statement_exports, statements
    from sync.hub.services.statement_exports import STATUS_NAMES, yuan_text

    with open_hub(hub_dir) as store, plain_errors():
        rows = statements.clearing(store, month, _now(), township)
    if as_json:
        print_json(rows)
        return
    if as_csv:
        click.echo("\ufeff" + statement_exports.clearing_csv(rows), nl=False)
        return
    if not rows:
        click.echo("no clinics / 没有卫生室", err=True)
    for row in rows:
        agree = {None: "-", True: "一致 agrees", False: "不一致 disagrees"}[row["devices_agree"]]
        click.echo(
            f"{row['township']:<8} {row['clinic_code']:<12} r{row['revision']:<3}"
            f" {STATUS_NAMES[row['status']]} {row['status']:<7}"
            f" count {row['total']['count']:>5}  hifp_pay {yuan_text(row['total']['hifp_pay']):>12}"
            f"  medfee_sumamt {yuan_text(row['total']['medfee_sumamt']):>12}"
            f"  differing {row['differing']}  device {agree}"
            + (f"  paid {row['paid_on']} {row['payment_reference']}" if row["paid_on"] else "")
        )


@hub.command("statement-status")
@hub_dir_option
@click.option("--clinic", "clinic_code", required=True, help="The clinic's code.")
@_month_option("The month of the statement,")
@click.option("--agreed", "status", flag_value="agreed", help="The county agrees the figures.")
@click.option("--paid", "status", flag_value="paid", help="The county paid it (with --reference"
              " and --paid-on).")  # fmt: skip
@click.option("--revision", type=int, help="The revision you checked (refused if newer exists).")
@click.option("--reference", help="The payment's reference (支付凭证号).")
@click.option("--paid-on", help="The payment's date, YYYY-MM-DD.")
@click.option("--by", "by", required=True, help="Who sets it (kept with the statement).")
@json_option
def hub_statement_status(
    hub_dir: Path,
    clinic_code: str,
    month: str,
    status: str | None,
    revision: int | None,
    reference: str | None,
    paid_on: str | None,
    by: str,
    as_json: bool,
) -> None:
    """Set a statement's status: draft → --agreed → --paid. 确认或登记支付结算单。"""
    from sync.hub.services import statements

    if status is None:
        raise click.UsageError("give --agreed or --paid")
    with open_hub(hub_dir) as store, plain_errors():
        if revision is None:  # the latest, which the command's answer names
            revision = statements.refresh(store, clinic_code, month, _now()).revision
        done = statements.set_status(
            store, clinic_code=clinic_code, month=month, revision=revision, status=status,
            by=by, now=_now(), reference=reference, paid_on=paid_on,
        )  # fmt: skip
    result = {
        "clinic": done.clinic_code,
        "month": done.month,
        "revision": done.revision,
        "status": done.status,
        "payment_reference": done.payment_reference,
        "paid_on": done.paid_on,
        "by": done.status_by,
        "at": done.status_at,
    }
    if as_json:
        print_json(result)
    else:
        click.echo(f"{done.clinic_code} {done.month} revision {done.revision}: {done.status}")


@hub.command("user")
@hub_dir_option
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "coordinator"]), required=True)
@click.option("--township", help="A coordinator's township (required for coordinators).")
@click.password_option("--password", help="At least 8 characters (asked when not given).")
def hub_user(hub_dir: Path, username: str, role: str, township: str | None, password: str) -> None:
    """Add (or reset) a console user: admins see all, coordinators their township."""
    from sync.hub import console_auth

    with open_hub(hub_dir) as store:
        console_auth.add_user(store, username, password, role, township, _now())
    click.echo(f"console user {username} ({role}{f', {township}' if township else ''})")


COMMANDS.append(hub)


# ---- the device's sync agent ---------------------------------------------------------------------


@contextmanager
def _device(data_dir: Path) -> Iterator[tuple]:
    from edge import bootstrap, services

    with plain_errors():
        store = bootstrap.open_store(data_dir)
        try:
            yield store, services.load_identity(store, data_dir)
        finally:
            store.close()


@click.command("enroll")
@device_dir_option
@click.option("--hub", "hub_url", required=True, help="The county hub's address.")
@click.option("--code", required=True, help="The one-time enrollment code.")
@click.option(
    "--hub-ca",
    "hub_ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The hub's TLS certificate, or the CA that signed it (PEM): every request trusts only it.",
)
@click.option(
    "--plain-http-lab",
    is_flag=True,
    help="Allow plain http:// to a hub that is not on this machine (a lab only: the roster"
    " and uploads travel unencrypted).",
)
@json_option
def enroll_command(
    data_dir: Path,
    hub_url: str,
    code: str,
    hub_ca: Path | None,
    plain_http_lab: bool,
    as_json: bool,
) -> None:
    """Join a county hub with a one-time code; pins the county's public key and the hub's
    TLS certificate or CA."""
    from sync import agent

    with _device(data_dir) as (store, identity), plain_errors():
        details = agent.enroll(
            store,
            identity,
            data_dir,
            hub_url,
            code,
            _now(),
            hub_certificate=_read_pem(hub_ca),
            plain_http_lab=plain_http_lab,
        )
    if as_json:
        print_json(details)
        return
    click.echo(
        f"enrolled {details['device_id']} as clinic {details['clinic_code']},"
        f" {details['township']}, {details['county_name']}"
    )
    click.echo(f"county key fingerprint {details['county_key_fingerprint']}")
    _echo_pin(details)


def _read_pem(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise click.ClickException(f"{path}: not a PEM certificate / 不是 PEM 格式的证书") from None


def _echo_pin(details: dict) -> None:
    if details["hub_certificate_fingerprint"]:
        click.echo(f"hub TLS certificate pinned, SHA-256 {details['hub_certificate_fingerprint']}")
    if details["plain_http_lab"]:
        click.echo(
            "warning: plain http:// allowed for a lab: data travels unencrypted"
            " / 警告：实验环境允许不加密的 http://，数据以明文传输",
            err=True,
        )


@click.group("sync")
def sync_group() -> None:
    """The sync agent: upload the ledger, pull county updates, heartbeat."""


@sync_group.command("once")
@device_dir_option
@click.option("--hub", "hub_url", help="Use this hub address instead of the enrolled one.")
@json_option
def sync_once_command(data_dir: Path, hub_url: str | None, as_json: bool) -> None:
    """Run every sync job now; exit 1 when one failed."""
    from sync import agent

    with _device(data_dir) as (store, identity), plain_errors():
        report = agent.sync_once(store, identity, data_dir, _now(), hub_url=hub_url)
    if as_json:
        print_json(report)
    else:
        click.echo(
            f"sent {report['sent']} records in {report['batches']} batches,"
            f" hub acknowledged up to {report['acked_seq']}, {report['records_waiting']} waiting"
        )
        for update in report["updates_applied"]:
            click.echo(f"installed {update['kind']} {update['version']} ({update['format']})")
        for refusal in report["updates_refused"]:
            click.echo(
                f"refused {refusal['kind']} {refusal['version']}: {refusal['message']}"
                f" / {refusal['message_zh']}",
                err=True,
            )
        if report["attachments_uploaded"] or report["decisions_applied"]:
            click.echo(
                f"上传照片 {report['attachments_uploaded']} 张，收到审批决定"
                f" {len(report['decisions_applied'])} 项 / photos sent"
                f" {report['attachments_uploaded']}, county decisions received"
                f" {len(report['decisions_applied'])}"
            )
        for refused in report["decisions_refused"]:
            click.echo(f"refused decision {refused['serial']}: {refused['code']}", err=True)
    for error in report["errors"]:
        click.echo(
            f"{error['job'] or 'sync'}: {error['message']} / {error['message_zh']}", err=True
        )
    if report["errors"]:
        sys.exit(1)


@sync_group.command("status")
@device_dir_option
@json_option
def sync_status_command(data_dir: Path, as_json: bool) -> None:
    """What the agent knows: enrollment, last sync, records waiting, versions, refusals."""
    from edge import bootstrap
    from sync import agent

    with plain_errors():
        store = bootstrap.open_store(data_dir)
        try:
            status = agent.sync_status(store, _now())
        finally:
            store.close()
    if as_json:
        print_json(status)
        return
    if not status["enrolled"]:
        click.echo("not enrolled with a county hub ('clinic enroll --hub URL --code CODE')")
    else:
        click.echo(f"clinic {status['clinic_code']}, {status['township']}, hub {status['hub_url']}")
        if status["hub_certificate_fingerprint"]:
            fingerprint = status["hub_certificate_fingerprint"]
            click.echo(f"hub TLS certificate pinned, SHA-256 {fingerprint}")
        if status["plain_http_lab"]:
            click.echo("plain http:// allowed for a lab: data travels unencrypted")
    click.echo(
        f"last sync {status['last_sync_at'] or 'never'}; records waiting"
        f" {status['records_waiting']}"
    )
    if status["revoked"]:
        click.echo(
            f"REVOKED by the county (first heard {status['revoked']['since']}):"
            " this device settles and reverses no more"
        )
    if status["last_error"]:
        error = status["last_error"]
        click.echo(f"last error ({error['job']}, {error['at']}): {error['message']}")
    for kind, info in status["installed"].items():
        expiry = info["expires_at"] or "no expiry known"
        stale = " EXPIRED" if info["expired"] else ""
        click.echo(
            f"{kind}: {info['version'] or 'none'} ({info['source'] or '-'}, {expiry}){stale}"
        )
    for refusal in status["refused_updates"][:5]:
        click.echo(
            f"refused {refusal['kind']} {refusal['version']}: {refusal['message']}"
            f" ({refusal['refused_at']})"
        )
    software, release = status["software"], status["software"]["release"]
    line = f"software {software['version']}"
    if release:
        line += f"; release {release['version']}: {release['state']}"
        if release.get("detail"):
            line += f" ({release['message_zh']} / {release['detail']})"
    click.echo(line)


@sync_group.command("pin")
@device_dir_option
@click.option(
    "--hub-ca",
    "hub_ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The hub's new TLS certificate or CA (PEM).",
)
@click.option("--hub", "hub_url", help="The hub's new address (default: the enrolled one).")
@click.option("--plain-http-lab", is_flag=True, help="Allow plain http:// off this machine.")
@json_option
def sync_pin_command(
    data_dir: Path, hub_ca: Path | None, hub_url: str | None, plain_http_lab: bool, as_json: bool
) -> None:
    """Pin the hub again: after its certificate was renewed, or it moved."""
    from sync import agent

    with _device(data_dir) as (store, identity), plain_errors():
        details = agent.pin_hub(
            store,
            identity,
            _now(),
            hub_certificate=_read_pem(hub_ca),
            hub_url=hub_url,
            plain_http_lab=plain_http_lab,
        )
    if as_json:
        print_json(details)
        return
    click.echo(f"hub {details['hub_url']}")
    _echo_pin(details)


COMMANDS.extend([enroll_command, sync_group])


# What a statement revision's change did to a row (docs/statements.md).
CHANGE_NAMES = {"added": "新增", "removed": "删除", "changed": "更改"}


@click.command("demo-month")
@click.option(
    "--data-dir",
    "base_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-month"),
    show_default=True,
    help="A new folder: the hub goes in DATA_DIR/hub, each clinic's terminal in "
    "DATA_DIR/clinics/CODE.",
)
@click.option("--month", help="The month to make, YYYY-MM, over (default: last month).")
@click.option(
    "--visits-per-day",
    type=click.IntRange(1, 4),
    default=4,
    show_default=True,
    help="Visits each clinic settles each day.",
)
@click.option(
    "--alter-one",
    is_flag=True,
    help="Alter one settlement of the first clinic on the county's side, so that its "
    "statement check disagrees and names it.",
)
@json_option
def demo_month_command(
    base_dir: Path, month: str | None, visits_per_day: int, alter_one: bool, as_json: bool
):
    """The demo county's hub with three clinics' terminals and a month of their visits:
    reversals, a week offline, a late upload; each terminal's month close, the county's
    statements and each terminal's check of its statement (sync/demo_month.py)."""
    from sync import demo_month
    from sync.hub.services import month_reports

    today = _now()
    month = month or demo_month.previous_month(today)
    try:
        over = month_reports.month_start(month_reports.next_month(month)) <= today
    except ValueError:
        raise click.BadParameter("a month is YYYY-MM", param_hint="--month") from None
    if not over:
        raise click.BadParameter(f"{month} is not over yet", param_hint="--month")
    try:
        made = demo_month.run_demo_month(
            base_dir, month, visits_per_day=visits_per_day, alter_one=alter_one
        )
    except FileExistsError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        print_json(made)
        return
    for line in demo_month_lines(made):
        click.echo(line)


def demo_month_lines(made: dict) -> list[str]:
    """The demo month's summary for people, English and Chinese: per clinic its
    settlements, fund, month close, statement revision and whether it agrees."""
    from edge.domain.money import format_yuan

    month = made["month"]
    lines = [f"demo month {month} 演示月: hub 县平台 {made['hub_dir']}"]
    for clinic in made["clinics"]:
        statement = clinic["statement"]
        fund = format_yuan(statement["total"]["hifp_pay"])
        agrees = "yes 一致" if clinic["agrees"] else "NO 不一致"
        lines.append(
            f"  {clinic['clinic_code']} {clinic['township']}: {clinic['settlements']}"
            f" settlements 笔结算, {clinic['reversals']} reversals 笔冲正, fund 统筹基金 {fund},"
            f" month close 月结 #{clinic['monthly_close']['seq']},"
            f" statement 结算单 revision 第 {statement['revision']} 版, agrees 对账: {agrees}"
        )
        if statement["changes"]:
            lines.append(
                f"    revision {statement['revision']} changes 变更: "
                + ", ".join(f"{c['tx_id']} ({c['what']} {CHANGE_NAMES[c['what']]})"
                            for c in statement["changes"])
            )  # fmt: skip
        for difference in clinic["differences"]:
            lines.append(
                f"    differs 不一致 {difference['tx_id']} {difference['field']}:"
                f" clinic 卫生室 {format_yuan(difference['device'])},"
                f" county 县 {format_yuan(difference['county'])}"
            )
    lines.append(
        f"console 管理台: clinic hub serve --data-dir {made['hub_dir']}, then /console/reports"
        f"?month={month} or /console/clearing?month={month}"
        " (county-admin / demo-admin-2026, molin-coord / demo-coord-2026)"
    )
    return lines


COMMANDS.append(demo_month_command)


@click.command("demo-service-point")
@click.option(
    "--data-dir",
    "base_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="A new or empty folder to keep it all in: the hub in DATA_DIR/hub, the clinic's "
    "terminal in DATA_DIR/clinic (default: a fresh temporary folder, removed at the end "
    "unless --keep).",
)
@click.option("--keep", is_flag=True, help="Keep the temporary folder and print where it is.")
@json_option
def demo_service_point_command(base_dir: Path | None, keep: bool, as_json: bool) -> None:
    """The village service point's walkthrough: a resident enrolled, a family premium
    collected and its receipt verified, chronic applications with photos, all offline;
    the county's decisions; the roster update, the visits that then settle, the premium
    reversed and the 日结 (sync/demo_service_point.py)."""
    import shutil
    import tempfile

    from sync import demo_service_point

    temporary = base_dir is None
    folder = base_dir or Path(tempfile.mkdtemp(prefix="demo-service-point-"))
    say = (lambda line: None) if as_json else click.echo
    try:
        facts = demo_service_point.run_service_point(folder, _now(), say)
    except FileExistsError as error:
        raise click.ClickException(str(error)) from None
    finally:
        if temporary and not keep:
            shutil.rmtree(folder, ignore_errors=True)
    if as_json:
        print_json(facts)
    elif not temporary or keep:
        click.echo(
            f"数据 kept in {folder} (console 管理台: clinic hub serve --data-dir {folder}/hub)"
        )


COMMANDS.append(demo_service_point_command)
