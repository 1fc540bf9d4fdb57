"""`clinic hub requests …` and `clinic hub premiums`: the village service point at the
county hub (`docs/service-point.md`). `edge.console` adds them to `clinic hub`."""

import getpass
from pathlib import Path

import click

from edge.cli_options import json_option, print_json
from edge.cli_options import now as _now
from sync.cli import hub_dir_option, open_hub, plain_errors
from sync.hub.services.service_requests import KINDS, STATES

STATE_NAMES = {
    "pending": "待处理",
    "approved": "已批准",
    "rejected": "不予批准",
    "more_info": "需补充材料",
}
KIND_NAMES = {
    "enrolment": "参保登记",
    "renewal": "续保",
    "chronic_certificate": "门诊慢特病",
    "cross_region_filing": "异地就医备案",
    "complaint": "投诉复核",
}


@click.group("requests")
def requests() -> None:
    """Requests from the village service points: list, show, decide."""


@requests.command("list")
@hub_dir_option
@click.option("--kind", type=click.Choice(KINDS), help="Only requests of this kind.")
@click.option("--state", type=click.Choice(STATES), help="Only requests in this state.")
@click.option("--township", help="Only this township's requests.")
@json_option
def requests_list(
    hub_dir: Path, kind: str | None, state: str | None, township: str | None, as_json: bool
) -> None:
    """The requests, oldest first (a follow-up is shown with the request it answers)."""
    from sync.hub.services import service_requests

    with open_hub(hub_dir) as store:
        rows = service_requests.list_requests(store, township=township, kind=kind, state=state)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("没有申请 / no requests", err=True)
    for row in rows:
        who = row["insured_id"] or (row["applicant"] or {}).get("name") or "-"
        click.echo(
            f"{row['tx_id']}  {row['created_at'][:16]}  {row['township']:<8}"
            f" {row['clinic']:<10} {KIND_NAMES.get(row['kind'], row['kind'])} {row['kind']:<20}"
            f" {who:<16} {STATE_NAMES.get(row['state'], row['state'])} {row['state']}"
        )


@requests.command("show")
@hub_dir_option
@click.argument("tx_id")
@click.option(
    "--show-id-number",
    is_flag=True,
    help="Open the sealed ID number of an enrolment with the county's encryption key.",
)
@json_option
def requests_show(hub_dir: Path, tx_id: str, show_id_number: bool, as_json: bool) -> None:
    """One request: its details, photos, follow-ups and decisions; a complaint's
    settlement beside the county's recomputation."""
    from sync.hub.adapters.audit_log import append_audit
    from sync.hub.adapters.county_key import load_seal_key
    from sync.hub.services import service_requests

    with open_hub(hub_dir) as store, plain_errors():
        seal_key = load_seal_key(hub_dir) if show_id_number else None
        detail = service_requests.request_detail(store, tx_id, township=None, seal_key=seal_key)
        if detail["id_number"] is not None:
            # Audited as the console's opening is, before the number is shown: who (the
            # system user at the hub's shell), which request, when; never the number.
            append_audit(
                hub_dir,
                {
                    "at": _now().isoformat(),
                    "user": f"cli:{getpass.getuser()}",
                    "action": "open_id_number",
                    "request": tx_id,
                },
            )
    if as_json:
        print_json(detail)
        return
    applicant = detail["applicant"] or {}
    lines = [
        f"{KIND_NAMES.get(detail['kind'], detail['kind'])} {detail['kind']}  {detail['tx_id']}",
        f"  状态 state: {STATE_NAMES.get(detail['state'], detail['state'])} {detail['state']}",
        f"  诊所 clinic: {detail['clinic']} ({detail['township']}), seq {detail['seq']},"
        f" {detail['created_at']}",
        f"  参保人 insured: {detail['insured_id'] or '-'}",
    ]
    if applicant:
        lines.append(
            f"  申请人 applicant: {applicant.get('name')} {applicant.get('gender')}"
            f" {applicant.get('birth_date')} {applicant.get('id_number_masked')}"
        )
    if detail["id_number"]:
        lines.append(f"  身份证号 ID number: {detail['id_number']}")
        if detail["id_number_differs_from_mask"]:
            lines.append(
                "  注意：解密的身份证号与申请中的脱敏号码不一致，决定前请与卫生室核实"
                " / warning: the opened ID number is not the masked number the request"
                " shows; check with the clinic before deciding"
            )
    elif show_id_number and detail.get("id_number_problem"):
        lines.append(f"  身份证号 ID number: {detail['id_number_problem']}")
    lines.append(f"  内容 details: {detail['details']}")
    if detail["note"]:
        lines.append(f"  备注 note: {detail['note']}")
    for item in detail["attachments"]:
        got = "已收到 received" if item["received"] else "未收到 not received yet"
        lines.append(f"  照片 photo {item['sha256']} {item['type']} {item['bytes']} B: {got}")
    for follow_up in detail["follow_ups"]:
        lines.append(f"  补充材料 follow-up {follow_up['tx_id']}: {follow_up['note'] or ''}")
    if "settlement" in detail:
        s = detail["settlement"]
        lines.append(f"  结算 settlement {s['tx_id']}: device {s.get('device')}")
        lines.append(
            f"    县级重算 recomputed ({s.get('recomputation_status')}): {s.get('recomputed')}"
        )
    for decision in detail["decisions"]:
        lines.append(
            f"  决定 decision #{decision['serial']} {decision['outcome']} by"
            f" {decision['decided_by']} at {decision['decided_at']}: {decision['reason'] or ''}"
            f" {decision['result'] or ''}"
        )
    click.echo("\n".join(lines))


@requests.command("decide")
@hub_dir_option
@click.argument("tx_id")
@click.option("--approve", "outcome", flag_value="approved", help="Approve the request.")
@click.option("--reject", "outcome", flag_value="rejected", help="Reject it (give --reason).")
@click.option(
    "--more-info", "outcome", flag_value="more_info", help="Ask for more (give --reason)."
)
@click.option("--reason", help="Why (required unless approved); the resident reads it.")
@click.option("--insured-id", help="Enrolment: the new person's insured id (else one is made).")
@click.option("--waiting-until", help="Enrolment or renewal: a waiting period until YYYY-MM-DD.")
@click.option("--valid-from", help="Certificate or filing: valid from YYYY-MM-DD.")
@click.option("--valid-to", help="Certificate or filing: valid to YYYY-MM-DD.")
@click.option("--filing-no", help="Cross-region filing: its number (else one is made).")
@click.option("--answer", help="Complaint: the county's answer to the resident.")
@click.option(
    "--correction", is_flag=True, help="Complaint upheld: the settlement is to be corrected."
)
@click.option("--by", "decided_by", required=True, help="Who decides (a console user).")
@json_option
def requests_decide(
    hub_dir: Path,
    tx_id: str,
    outcome: str | None,
    reason: str | None,
    insured_id: str | None,
    waiting_until: str | None,
    valid_from: str | None,
    valid_to: str | None,
    filing_no: str | None,
    answer: str | None,
    correction: bool,
    decided_by: str,
    as_json: bool,
) -> None:
    """Decide a pending request: the decision is signed by the county and reaches the
    device at its next sync; an approved enrolment, renewal or chronic certificate is
    published at once in a new roster version."""
    from sync.hub.adapters.county_key import load_county_key
    from sync.hub.services import service_requests

    if outcome is None:
        raise click.UsageError("请选择 --approve、--reject 或 --more-info / choose one")
    with open_hub(hub_dir) as store, plain_errors():
        document = service_requests.decide(
            store,
            load_county_key(hub_dir),
            tx_id,
            outcome=outcome,
            reason=reason,
            decided_by=decided_by,
            township=None,
            now=_now(),
            insured_id=insured_id,
            waiting_until=waiting_until,
            valid_from=valid_from,
            valid_to=valid_to,
            filing_no=filing_no,
            answer=answer,
            correction=correction,
        )
    decision = document["decision"]
    if as_json:
        print_json(document)
        return
    click.echo(
        f"决定 #{decision['serial']} {STATE_NAMES[decision['outcome']]} / decision"
        f" #{decision['serial']} {decision['outcome']}: {tx_id}"
        + (f" {decision['result']}" if decision["result"] else "")
    )


@click.command("premiums")
@hub_dir_option
@click.option("--year", type=int, help="Only premiums for this insurance year.")
@click.option("--township", help="Only this township's clinics.")
@json_option
def premiums(hub_dir: Path, year: int | None, township: str | None, as_json: bool) -> None:
    """Premiums collected per clinic (参保缴费): counts, amounts by method, what the state
    paid, reversals, and the cash each clinic must hand over."""
    from edge.domain.money import format_yuan
    from sync.hub.services import service_requests

    with open_hub(hub_dir) as store:
        rows = service_requests.premium_totals(store, year=year, township=township)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("没有收缴记录 / no premiums collected", err=True)
    for row in rows:
        click.echo(
            f"{row['township']:<8} {row['clinic']:<10} {row['count']} 笔 payments,"
            f" {row['persons']} 人 persons: ¥{format_yuan(row['amount'])}"
            f" (现金 cash ¥{format_yuan(row['cash'])}, 移动支付 mobile"
            f" ¥{format_yuan(row['mobile'])}, 共济 family account"
            f" ¥{format_yuan(row['family_account'])}), 政府资助 state"
            f" ¥{format_yuan(row['state_paid'])}; 冲正 reversed {row['reversed_count']}"
            f" ¥{format_yuan(row['reversed_amount'])}; 应交现金 cash to hand over"
            f" ¥{format_yuan(row['cash_to_hand_over'])}"
        )
