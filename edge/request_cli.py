"""`clinic request …`: the village service point's requests on the device (enrolment,
renewal, chronic-disease certificate, cross-region filing, complaint), for scripts and
tests; `edge.console` registers the group on `clinic`.

An ID number is never an argument (it would show in `ps` and the shell's history): it
is read from a file or standard input (`--id-number-file`), sealed and forgotten.
"""

import sys
from pathlib import Path

import click

from edge import premiums, service_requests, services
from edge.cli_options import data_dir_option, device_store, json_option, now, print_json
from edge.domain import service_point as sp
from edge.domain.model import Rejection

PAPER = {"58": (32, 384), "80": (48, 576)}  # as `clinic receipt`


@click.group("request")
def request_group() -> None:
    """Service point requests: enrolment, renewal, chronic, filing, complaint."""


def _photo(value: str) -> tuple[bytes, str]:
    """FILE or FILE:LABEL (a path that exists is taken whole, colons and all)."""
    path, label = Path(value), ""
    if not path.exists() and ":" in value:
        name, label = value.rsplit(":", 1)
        path = Path(name)
    try:
        return path.read_bytes(), label
    except OSError as error:
        raise click.BadParameter(f"{path}: {error.strerror}", param_hint="--photo") from None


def _id_number(source: str | None) -> str | None:
    if source is None:
        return None
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise click.BadParameter(str(error), param_hint="--id-number-file") from None
    return text.strip()


@request_group.command("new")
@click.argument("kind", type=click.Choice(sp.REQUEST_KINDS))
@data_dir_option
@click.option("--operator", "operator_id", required=True)
@click.option("--insured-id", help="The insured person (all kinds but enrolment).")
@click.option("--name", help="enrolment: the applicant's name.")
@click.option("--gender", type=click.Choice(["M", "F"]), help="enrolment.")
@click.option("--birth-date", help="enrolment: YYYY-MM-DD.")
@click.option("--id-number-file", help="enrolment: a file holding the ID number, or - for stdin.")
@click.option("--category", help="enrolment: an assistance category, e.g. extreme_poverty.")
@click.option("--village", help="enrolment.")
@click.option("--year", type=int, help="renewal: the insurance year.")
@click.option(
    "--premium", "premium_ref", help="renewal: the premium that paid it (tx_id or seq), optional."
)
@click.option("--disease-code", help="chronic_certificate: e.g. I10.")
@click.option("--disease-name", help="chronic_certificate.")
@click.option(
    "--scheme",
    type=click.Choice(["chronic", "two_diseases"]),
    default="chronic",
    show_default=True,
    help="chronic_certificate: two_diseases for 两病.",
)
@click.option("--hospital", help="chronic_certificate: where it was diagnosed.")
@click.option("--diagnosed-on", help="chronic_certificate: YYYY-MM-DD.")
@click.option("--filing-type", help="cross_region_filing: long_term_residence, referral, …")
@click.option("--destination", help="cross_region_filing: where the person is treated.")
@click.option("--valid-from", help="cross_region_filing: YYYY-MM-DD.")
@click.option("--valid-to", help="cross_region_filing: YYYY-MM-DD (none: open-ended).")
@click.option("--reason", help="cross_region_filing: why.")
@click.option("--settlement", "settlement_ref", help="complaint: the settlement's tx_id or seq.")
@click.option("--grounds", help="complaint: what the resident disputes.")
@click.option("--photo", "photos", multiple=True, help="FILE or FILE:LABEL (repeatable).")
@click.option("--note")
@click.option("--follow-up-of", help="The request the county asked more information about.")
@json_option
def request_new(kind: str, data_dir: Path, operator_id: str, **options) -> None:
    """Take a request of KIND as a signed record (photos kept beside the ledger)."""
    as_json = options.pop("as_json")
    photos = [_photo(value) for value in options["photos"]]
    id_number = _id_number(options["id_number_file"])
    with device_store(data_dir) as store:
        insured_id = options["insured_id"]
        details = _details(kind, options)
        if options["premium_ref"]:
            if kind != "renewal":
                raise click.UsageError("--premium names the premium that paid a renewal")
            details["premium_tx_id"] = premiums.find_premium(store, options["premium_ref"])["tx_id"]
        if kind == "complaint":
            settlement = _settlement(store, options["settlement_ref"])
            details = {
                "settlement_tx_id": settlement["tx_id"],
                "settlement_seq": settlement["seq"],
                "grounds": options["grounds"],
            }
            insured_id = insured_id or settlement["body"]["insured_id"]
        applicant = None
        if kind == "enrolment":
            applicant = {
                "name": options["name"],
                "gender": options["gender"],
                "birth_date": options["birth_date"],
            }
        recorded = service_requests.new_request(
            store,
            services.load_identity(store, data_dir),
            data_dir,
            kind=kind,
            operator=operator_id,
            insured_id=insured_id,
            applicant=applicant,
            id_number=id_number,
            details=details,
            photos=photos,
            note=options["note"],
            follow_up_of=options["follow_up_of"],
            now=now(),
        )
        view = service_requests.request(store, recorded.record["tx_id"])
    if as_json:
        print_json(view.to_dict())
        return
    click.echo(
        f"申请已记录 request recorded: {view.kind} seq {view.seq} {view.tx_id}"
        f" ({view.state}, 同步后提交县医保局 / goes to the county at the next sync)"
    )


def _details(kind: str, options: dict) -> dict:
    """The record's `details` from the options (checked by the use case)."""
    if kind == "enrolment":
        return {
            "insurance_type": "resident",
            "category": options["category"],
            "village": options["village"],
        }
    if kind == "renewal":
        return {"year": options["year"], "premium_tx_id": None}
    if kind == "chronic_certificate":
        return {
            "disease_code": options["disease_code"],
            "disease_name": options["disease_name"],
            "scheme": options["scheme"],
            "hospital": options["hospital"],
            "diagnosed_on": options["diagnosed_on"],
        }
    if kind == "cross_region_filing":
        return {
            "filing_type": options["filing_type"],
            "destination": options["destination"],
            "valid_from": options["valid_from"],
            "valid_to": options["valid_to"],
            "reason": options["reason"],
        }
    return {}


def _settlement(store, reference: str | None) -> dict:
    if not reference:
        raise click.UsageError("a complaint names its settlement: --settlement TX_OR_SEQ")
    record = None
    if reference.isdigit():
        record = next(iter(store.records(after_seq=int(reference) - 1)), None)
        if record is not None and record["seq"] != int(reference):
            record = None
    else:
        record = store.record_by_tx(reference)
    if record is None or record["kind"] != "settlement":
        raise Rejection(
            "UNKNOWN_SETTLEMENT",
            f"本机台账中没有这笔结算 / no settlement {reference!r} on this device",
        )
    return record


@request_group.command("show")
@click.argument("tx")
@data_dir_option
@json_option
def request_show(tx: str, data_dir: Path, as_json: bool) -> None:
    """One request (by tx_id or seq): details, photos, state and the county's decisions."""
    with device_store(data_dir) as store:
        view = service_requests.request(store, tx)
    if as_json:
        print_json(view.to_dict())
        return
    click.echo(f"{view.kind} seq {view.seq} {view.tx_id} {view.created_at}")
    click.echo(
        f"  {view.name or ''} {view.insured_id or ''}  state {view.state}"
        + (f": {view.reason}" if view.reason else "")
    )
    for item in view.attachments:
        click.echo(
            f"  photo {item['sha256'][:16]} {item['type']} {item['bytes']} B"
            f" {item['label']} {'uploaded' if item['uploaded_at'] else 'not uploaded'}"
        )


@request_group.command("list")
@data_dir_option
@click.option("--kind", type=click.Choice(sp.REQUEST_KINDS))
@click.option("--state", type=click.Choice(service_requests.STATES))
@json_option
def request_list(data_dir: Path, kind: str | None, state: str | None, as_json: bool) -> None:
    """The device's requests, newest first, with their state."""
    with device_store(data_dir) as store:
        views = service_requests.requests(store, kind=kind, state=state)
    if as_json:
        print_json([view.to_dict() for view in views])
        return
    for view in views:
        click.echo(
            f"{view.seq:>6} {view.created_at[:16]} {view.kind:<20} {view.state:<10}"
            f" {view.name or ''} {view.insured_id or ''}"
        )


@request_group.command("slip")
@click.argument("tx")
@data_dir_option
@click.option(
    "--printer",
    "url",
    help="Serial port, pyserial URL or emulated:///FILE.bin; none: print the slip as text.",
)
@click.option(
    "--clinic",
    envvar="CLINIC_NAME",
    default="村卫生室 Village clinic",
    show_default=True,
    help="The clinic's name on the slip ($CLINIC_NAME).",
)
@click.option(
    "--paper",
    type=click.Choice(sorted(PAPER)),
    default="58",
    show_default=True,
    help="Paper width in mm.",
)
@click.option("--baudrate", default=9600, show_default=True)
def request_slip(
    tx: str, data_dir: Path, url: str | None, clinic: str, paper: str, baudrate: int
) -> None:
    """Print the slip of a request for the resident (masked data only)."""
    from drivers.printer import PrinterError, printer_for_url
    from drivers.receipt import layout_request_slip, receipt_escpos

    with device_store(data_dir) as store:
        view = service_requests.request(store, tx)
        device = store.device()
    slip = layout_request_slip(
        view.to_dict(),
        clinic=clinic,
        device_id=device.device_id if device else "",
        width=PAPER[paper][0],
    )
    if url is None:
        click.echo(slip.text())
        return
    try:
        with printer_for_url(url, baudrate=baudrate) as printer:
            printer.print_bytes(receipt_escpos(slip, paper_dots=PAPER[paper][1]))
    except PrinterError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"slip of request {view.seq} printed on {url}")


COMMANDS = (request_group,)
