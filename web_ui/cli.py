"""`clinic` commands of the terminal UI; `edge.console` registers every command listed here."""

from pathlib import Path

import click

COMMANDS: list[click.Command] = []

from edge.cli_options import clock, data_dir_option, now  # noqa: E402

# waitress stops accepting at `connection_limit` open connections and closes an idle one
# only after `channel_timeout`: at its default 100, 110 idle sockets (a stuck browser, a
# local program) froze the UI. poll() has no FD_SETSIZE ceiling as select() has.
CONNECTION_LIMIT = 500  # well below the usual 1024 open files a process may have
CHANNEL_TIMEOUT_S = 60


def create_web_server(app, host: str, port: int, threads: int):
    """The waitress server `clinic serve` runs (the tests run this one too)."""
    from waitress.server import create_server

    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="clinic",
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=CHANNEL_TIMEOUT_S,
        asyncore_use_poll=True,
    )


def prepare_demo(data_dir: Path) -> list[str]:
    """Demo mode: a device identity and the demo county's data, if they are not there yet."""
    from edge import bootstrap, demo, services

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = bootstrap.open_store(data_dir, create=True)
    try:
        lines = []
        if store.device() is None:
            identity = services.init_device(store, data_dir, now())
            lines.append(f"device identity {identity.device_id} created")
        lines += list(demo.install(store, now()))
        return lines
    finally:
        store.close()


@click.command()
@data_dir_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (keep it local: the terminal's own browser).",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0 picks a free port.",
)
@click.option("--reader", "reader_url", help="Card reader URL: pcsc://[NAME] or emulated://.")
@click.option(
    "--printer",
    "printer_url",
    help="Receipt printer: serial port, pyserial URL or emulated:///FILE.bin.",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Demo county data, demo PINs, emulated reader and printer, tester panel.",
)
@click.option("--clinic", "clinic_name", envvar="CLINIC_NAME", help="The clinic's name.")
@click.option(
    "--county-key",
    envvar="CLINIC_COUNTY_KEY",
    help="The county public key (base64url) that signs e-vouchers.",
)
@click.option(
    "--kiosk-host",
    "kiosk_hosts",
    multiple=True,
    help="A host name the kiosk browser uses for the terminal besides 127.0.0.1 and"
    " localhost (repeatable; or $CLINIC_KIOSK_HOSTS, comma-separated); requests under any"
    " other name are refused.",
)
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 32))
@click.option("--no-sync", is_flag=True, help="Do not start the background sync agent.")
@click.option(
    "--paper", type=click.Choice(["58", "80"]), default="58", show_default=True,
    help="Receipt paper width in mm.",
)  # fmt: skip
@click.option(
    "--auto-print/--no-auto-print", default=True, show_default=True,
    help="Print the settlement form by itself right after confirm.",
)  # fmt: skip
def serve(
    data_dir: Path,
    host: str,
    port: int,
    reader_url: str | None,
    printer_url: str | None,
    demo: bool,
    clinic_name: str | None,
    county_key: str | None,
    threads: int,
    no_sync: bool,
    kiosk_hosts: tuple[str, ...] = (),
    paper: str = "58",
    auto_print: bool = True,
) -> None:
    """Run the terminal UI (waitress) and the sync agent."""
    from edge.adapters.identity import IdentityError
    from edge.adapters.sqlite_store import StoreError
    from web_ui import accounts, syncing
    from web_ui.app import create_app

    config: dict = {
        "DATA_DIR": data_dir,
        "DEMO": demo,
        "CLOCK": clock(),
        "PAPER": paper,
        "PRINT_RECEIPT_AFTER_SETTLE": auto_print,
    }
    if kiosk_hosts:
        config["KIOSK_HOSTS"] = list(kiosk_hosts)
    for key, value in (
        ("CARD_READER", reader_url),
        ("PRINTER", printer_url),
        ("CLINIC_NAME", clinic_name),
        ("COUNTY_PUBLIC_KEY", county_key),
    ):
        if value:
            config[key] = value
    try:
        if demo:
            for line in prepare_demo(data_dir):
                click.echo(line)
        app = create_app(config)
    except (StoreError, IdentityError) as error:
        raise click.ClickException(str(error)) from None
    if demo:
        click.echo("demo PINs (unless changed on the admin page):")
        for operator_id, pin in accounts.DEMO_PINS.items():
            click.echo(f"  {operator_id:<8} {pin}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}, not only this machine", err=True)
    scheduler = None
    if not no_sync:
        scheduler = syncing.start_scheduler(data_dir, clock())
        if scheduler is None:
            click.echo("sync agent not available: running without background sync", err=True)
    server = create_web_server(app, host, port, threads)
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"clinic terminal UI on http://{shown}:{server.effective_port}/ (data {data_dir});"
        " Ctrl-C stops"
    )
    try:
        server.run()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.close()
        if scheduler is not None and hasattr(scheduler, "shutdown"):
            scheduler.shutdown()


@click.command("set-pin")
@data_dir_option
@click.argument("operator_id")
@click.option(
    "--pin",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="4 to 8 digits (asked for when not given).",
)
def set_pin(data_dir: Path, operator_id: str, pin: str) -> None:
    """Set an operator's PIN for the terminal UI (the first admin's, for example)."""
    from edge import bootstrap
    from edge.adapters.sqlite_store import StoreError
    from web_ui import accounts

    try:
        store = bootstrap.open_store(data_dir)
    except StoreError as error:
        raise click.ClickException(str(error)) from None
    try:
        accounts.set_pin(store, data_dir, operator_id, pin, now=now(), by="cli")
    except accounts.AccountError as error:
        raise click.ClickException(f"PIN not set: {error}") from None
    finally:
        store.close()
    click.echo(f"PIN set for {operator_id}")


COMMANDS += [serve, set_pin]
