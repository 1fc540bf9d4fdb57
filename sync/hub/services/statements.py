"""The county's clearing statements (`docs/statements.md`): for each clinic and month,
what the county owes the clinic by its own recomputation — the total (3201 对总账's
shape) and one detail row per settlement and reversal (3202 对明细账's) — signed by the
county key, revised when a late upload or a changed recomputation changes it (the new
revision says what changed), with the status a county admin sets (draft → agreed →
paid, with the payment's reference and date), and the devices' reconciliation reports.

A statement is built when it is asked for (the device API, the console, the commands):
the current figures are computed and, if they differ from the latest revision's, kept
as a new revision. A month is stated only once it is over (China time).
"""

from collections.abc import Iterable
from datetime import date, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.domain.records import MONEY_FIELDS, NATIONAL_NAMES, body_problem, payer_amounts
from sync.hub.model import HubError, Slot, StatementReport, StatementRevision
from sync.hub.ports import HubStore
from sync.protocol import SyncError, iso
from sync.statements import (
    FORMAT_VERSION,
    KIND,
    PAYERS,
    month_bounds,
    month_is_over,
    month_of,
    normalized_report,
    parse_month,
    report_problem,
    sign_statement,
    zero_amounts,
)

BUILT_BY = "hub"  # the actor of a revision the hub built itself
MAX_REFERENCE = 64
# What the county's recomputation said of a settlement; "pending" while it has not run.
COUNTY_STATUSES = ("ok", "differs", "not_recomputable", "refused", "pending")


def national(amounts: dict) -> dict[str, int]:
    """Amounts by MONEY_FIELDS as national payer names; a payer not named is 0."""
    return {NATIONAL_NAMES[name]: amounts.get(name, 0) for name in MONEY_FIELDS}


def negated(amounts: dict[str, int]) -> dict[str, int]:
    return {name: -value for name, value in amounts.items()}


def clinic_slots(store: HubStore, clinic_code: str) -> list[Slot]:
    """Every slot of the clinic (a replaced or revoked device's uploads still count)."""
    return [s for s in store.slots() if s.clinic_code == clinic_code]


def clinic_township(store: HubStore, clinic_code: str) -> str:
    slots = clinic_slots(store, clinic_code)
    if not slots:
        raise HubError(f"no clinic {clinic_code!r} at this hub / 本县没有此卫生室")
    return slots[0].township


def check_month(month: str, now: datetime) -> str:
    try:
        parse_month(month)
    except SyncError:
        raise HubError(f"{month!r} is not a month: YYYY-MM / 月份应为 YYYY-MM") from None
    if not month_is_over(month, now):
        raise HubError(f"{month} is not over yet / {month} 尚未结束，不能出结算单")
    return month


# ---- building ------------------------------------------------------------------------------


class _People:
    """The insurance type of each insured person, as the county's roster has them."""

    def __init__(self, store: HubStore):
        self.store = store
        self.known: dict[str, str | None] = {}

    def insutype(self, insured_id: object) -> str | None:
        if not isinstance(insured_id, str):
            return None
        if insured_id not in self.known:
            person = self.store.person(insured_id)
            value = person[0].get("insurance_type") if person else None
            self.known[insured_id] = value if isinstance(value, str) else None
        return self.known[insured_id]


def _county_side(store: HubStore, device_id: str, tx_id: str) -> tuple[str, dict | None]:
    """(the county's status, its amounts by national name or None when it has none)."""
    recomputed = store.recomputation_of(device_id, tx_id)
    if recomputed is None:
        return "pending", None
    status, hub_result = recomputed
    return status, national(payer_amounts(hub_result)) if hub_result else None


def _settlement_row(store: HubStore, people: _People, device_id: str, record: dict) -> dict:
    body = record["body"]
    device = national(payer_amounts(body["result"]))
    status, county = _county_side(store, device_id, record["tx_id"])
    return _row(
        record,
        device_id,
        kind="settlement",
        psn_no=body.get("insured_id"),
        insutype=people.insutype(body.get("insured_id")),
        med_type=(body.get("visit") or {}).get("visit_type"),
        county=county,
        device=device,
        county_status=status,
        reversal_of=None,
    )


def _reversal_row(store: HubStore, people: _People, device_id: str, record: dict) -> dict:
    """A reversal, in the month it was made: its amounts negative, so the detail sums to
    the total. The county's amounts are its own of the settlement it takes back."""
    body = record["body"]
    target = body.get("reverses")
    original = store.record_by_tx(device_id, target) if isinstance(target, str) else None
    device = negated(national(body.get("amounts") or {}))
    status, county = (
        _county_side(store, device_id, target) if original is not None else ("pending", None)
    )
    visit = (original or {}).get("body", {}).get("visit") or {}
    return _row(
        record,
        device_id,
        kind="reversal",
        psn_no=body.get("insured_id"),
        insutype=people.insutype(body.get("insured_id")),
        med_type=visit.get("visit_type"),
        county=None if county is None else negated(county),
        device=device,
        county_status=status,
        reversal_of=target if isinstance(target, str) else None,
    )


def _row(
    record: dict,
    device_id: str,
    *,
    kind: str,
    psn_no: object,
    insutype: str | None,
    med_type: object,
    county: dict | None,
    device: dict,
    county_status: str,
    reversal_of: str | None,
) -> dict:
    # Without a recomputation of its own the county states the device's figures, and
    # `county_status` says so.
    amounts = county if county is not None else device
    return {
        "tx_id": record["tx_id"],
        "device_id": device_id,
        "seq": record["seq"],
        "kind": kind,
        "setl_time": record["created_at"],
        "psn_no": psn_no if isinstance(psn_no, str) else None,
        "insutype": insutype,
        "med_type": med_type if isinstance(med_type, str) else None,
        **amounts,
        "device_amounts": None if amounts == device else device,
        "county_status": county_status,
        "reversal_of": reversal_of,
    }


def _month_rows(store: HubStore, device_ids: Iterable[str], month: str) -> list[dict]:
    start, end = month_bounds(month)
    # created_at is compared as text: a day's margin each side, then each record's own
    # China-time month decides.
    window = (iso(start - timedelta(days=1)), iso(end + timedelta(days=1)))
    people, rows = _People(store), []
    for device_id in device_ids:
        for record in store.month_records(device_id, ("settlement", "reversal"), *window):
            if month_of(record.get("created_at", "")) != month:
                continue
            if body_problem(record["kind"], record["body"]) is not None:
                continue  # one stored before bodies were checked: never computed with
            make = _settlement_row if record["kind"] == "settlement" else _reversal_row
            rows.append(make(store, people, device_id, record))
    rows.sort(key=lambda r: (r["setl_time"], r["device_id"], r["seq"]))
    return rows


def total_of(detail: list[dict]) -> dict:
    """3201's shape: the net count of settlements, and each payer's sum over the detail
    (reversals negative)."""
    settlements = sum(1 for r in detail if r["kind"] == "settlement")
    reversals = len(detail) - settlements
    total = {
        "count": settlements - reversals,
        "settlement_count": settlements,
        "reversal_count": reversals,
        **zero_amounts(),
    }
    for row in detail:
        for payer in PAYERS:
            total[payer] += row[payer]
    return total


def current_content(store: HubStore, slots: list[Slot], month: str) -> tuple[list[str], dict]:
    """(the clinic's device ids, {"total", "detail", "differing"}) as the county's figures
    stand now; `slots`: the clinic's."""
    device_ids = sorted({s.device_id for s in slots if s.device_id})
    detail = _month_rows(store, device_ids, month)
    return device_ids, {
        "total": total_of(detail),
        "detail": detail,
        "differing": sum(1 for r in detail if r["device_amounts"] is not None),
    }


def changes_between(before: list[dict], after: list[dict]) -> list[dict]:
    """What changed from one revision's detail to the next's, by tx_id: a row added (a
    late upload), removed, or its amounts changed (a recomputation)."""
    old, new = {r["tx_id"]: r for r in before}, {r["tx_id"]: r for r in after}

    def amounts(row: dict) -> dict:
        return {
            **{payer: row[payer] for payer in PAYERS},
            "device_amounts": row["device_amounts"],
            "county_status": row["county_status"],
        }

    changes = []
    for tx_id in sorted(old.keys() | new.keys()):
        was, now = old.get(tx_id), new.get(tx_id)
        then = None if was is None else amounts(was)
        since = None if now is None else amounts(now)
        if then != since:
            what = "added" if was is None else "removed" if now is None else "changed"
            changes.append({"tx_id": tx_id, "what": what, "before": then, "after": since})
    return changes


def refresh(
    store: HubStore,
    clinic_code: str,
    month: str,
    now: datetime,
    slots: list[Slot] | None = None,
) -> StatementRevision:
    """The clinic's statement for `month` as it stands: the latest revision, or a new one
    when the county's figures changed since (a first one when there is none). `slots`:
    the clinic's, when the caller has read them already."""
    check_month(month, now)
    slots = clinic_slots(store, clinic_code) if slots is None else slots
    if not slots:
        raise HubError(f"no clinic {clinic_code!r} at this hub / 本县没有此卫生室")
    with store.unit_of_work():
        device_ids, content = current_content(store, slots, month)
        latest = store.latest_statement(clinic_code, month)
        if latest is not None and (
            latest.device_ids == device_ids
            and {k: latest.content.get(k) for k in content} == content
        ):
            return latest
        revision = 1 if latest is None else latest.revision + 1
        content["supersedes"] = None if latest is None else latest.revision
        content["changes"] = (
            [] if latest is None else changes_between(latest.content["detail"], content["detail"])
        )
        statement = StatementRevision(
            clinic_code, month, revision, iso(now), device_ids, content,
            "draft", None, None, None, None,
        )  # fmt: skip
        if store.add_statement(statement):
            store.add_statement_event(
                clinic_code,
                month,
                revision,
                "built" if latest is None else "revised",
                BUILT_BY,
                iso(now),
                {"changes": len(content["changes"]), "total": content["total"]},
            )
    found = store.latest_statement(clinic_code, month)
    if found is None:
        raise HubError(f"the statement of {clinic_code} {month} vanished")
    return found


def document(statement: StatementRevision, county_name: str) -> dict:
    """The statement as the county signs it (`docs/statements.md`)."""
    content = statement.content
    return {
        "v": FORMAT_VERSION,
        "kind": KIND,
        "county": county_name,
        "clinic": statement.clinic_code,
        "device_ids": statement.device_ids,
        "month": statement.month,
        "revision": statement.revision,
        "supersedes": content.get("supersedes"),
        "changes": content.get("changes", []),
        "built_at": statement.built_at,
        "status": statement.status,
        "payment": None
        if statement.status != "paid"
        else {"reference": statement.payment_reference, "paid_on": statement.paid_on},
        "total": content["total"],
        "detail": content["detail"],
    }


def signed(store: HubStore, statement: StatementRevision, county_key: Ed25519PrivateKey) -> dict:
    county = store.county()
    return sign_statement(document(statement, county.name if county else ""), county_key)


# ---- status ---------------------------------------------------------------------------------


def set_status(
    store: HubStore,
    *,
    clinic_code: str,
    month: str,
    revision: int | None,
    status: str,
    by: str,
    now: datetime,
    reference: str | None = None,
    paid_on: str | None = None,
) -> StatementRevision:
    """Move the latest revision from draft to agreed, or from agreed to paid (with the
    payment's reference and date). `revision`: the one the admin looked at; refused when
    a newer one exists (a late upload changed the figures since)."""
    latest = refresh(store, clinic_code, month, now)
    if revision is None:
        raise HubError("which revision was checked? / 请指明核对的是第几版结算单")
    if revision != latest.revision:
        raise HubError(
            f"revision {latest.revision} replaced revision {revision}: review it first"
            f" / 结算单已更新为第 {latest.revision} 版，请先核对"
        )
    payment_reference = paid = None
    if status == "agreed":
        if latest.status != "draft":
            raise HubError(f"the statement is {latest.status}, not a draft / 结算单不是草稿")
    elif status == "paid":
        if latest.status != "agreed":
            raise HubError("only an agreed statement is paid / 结算单须先确认才能支付")
        payment_reference = (reference or "").strip()
        if not payment_reference or len(payment_reference) > MAX_REFERENCE:
            raise HubError(
                f"a payment needs its reference (at most {MAX_REFERENCE} characters)"
                " / 请填写支付凭证号"
            )
        try:
            paid = date.fromisoformat(paid_on or "").isoformat()
        except ValueError:
            raise HubError(
                "the payment date must be YYYY-MM-DD / 支付日期应为 YYYY-MM-DD"
            ) from None
    else:
        raise HubError(f"unknown status {status!r}: agreed or paid")
    with store.unit_of_work():
        newest = store.latest_statement(clinic_code, month)
        moved = newest is None or newest.revision != latest.revision
        if moved or not store.set_statement_status(
            clinic_code,
            month,
            latest.revision,
            status=status,
            payment_reference=payment_reference,
            paid_on=paid,
            by=by,
            at=iso(now),
            expected=latest.status,
        ):  # a late upload or another admin got there first
            raise HubError("the statement changed meanwhile / 结算单刚被更新，请重新核对")
        store.add_statement_event(
            clinic_code, month, latest.revision, status, by, iso(now),
            {"reference": payment_reference, "paid_on": paid} if status == "paid" else {},
        )  # fmt: skip
    found = store.statement_revision(clinic_code, month, latest.revision)
    if found is None:
        raise HubError(f"the statement of {clinic_code} {month} vanished")
    return found


# ---- the devices' reconciliation reports -------------------------------------------------


def record_report(store: HubStore, device_id: str, report: object, now: datetime) -> dict:
    """Keep a device's reconciliation of a statement revision against its own ledger."""
    problem = report_problem(report)
    if problem is not None:
        raise SyncError("BAD_REQUEST", problem)
    assert isinstance(report, dict)
    slot = store.slot_by_device(device_id)
    if slot is None:
        raise SyncError("UNKNOWN_DEVICE")
    kept = normalized_report(report)
    with store.unit_of_work():
        if store.statement_revision(slot.clinic_code, kept["month"], kept["revision"]) is None:
            raise SyncError("NOT_FOUND", f"no statement revision {kept['revision']}")
        earlier = [
            r.report for r in store.statement_reports(slot.clinic_code, kept["month"])
            if r.revision == kept["revision"] and r.device_id == device_id
        ]  # fmt: skip
        if earlier == [kept]:  # the same report again (a retry): no new event
            return {"recorded": True}
        store.save_statement_report(
            StatementReport(
                slot.clinic_code, kept["month"], kept["revision"], device_id, iso(now),
                kept["agrees"], kept,
            )
        )  # fmt: skip
        store.add_statement_event(
            slot.clinic_code, kept["month"], kept["revision"],
            "device_agrees" if kept["agrees"] else "device_disagrees", device_id, iso(now),
            {"differences": len(kept["differences"]),
             "missing_at_county": len(kept["missing_at_county"]),
             "missing_on_device": len(kept["missing_on_device"])},
        )  # fmt: skip
    return {"recorded": True}


def statement_for_device(
    store: HubStore, county_key: Ed25519PrivateKey, device_id: str, month: str, now: datetime
) -> dict | None:
    """The signed latest revision of the device's clinic for `month`; None while the
    month is not over."""
    parse_month(month)
    slot = store.slot_by_device(device_id)
    if slot is None:
        raise SyncError("UNKNOWN_DEVICE")
    if not month_is_over(month, now):
        return None
    if slot.enrolled_at is not None and month < (month_of(slot.enrolled_at) or ""):
        return None  # before this device: nothing to state, and nothing built or kept
    return signed(store, refresh(store, slot.clinic_code, month, now), county_key)


# ---- views -----------------------------------------------------------------------------------


def reconciliation_view(store: HubStore, statement: StatementRevision) -> list[dict]:
    """Each device's latest report on the month, with both sides' figures of every
    difference and the detail row's other facts (who, when), for the coordinator."""
    rows_by_tx = {r["tx_id"]: r for r in statement.content["detail"]}
    latest: dict[str, StatementReport] = {}
    for report in store.statement_reports(statement.clinic_code, statement.month):
        latest.setdefault(report.device_id, report)
    views = []
    for device_id, report in sorted(latest.items()):
        differences = [
            {**entry, "row": rows_by_tx.get(entry["tx_id"])}
            for entry in report.report["differences"]
        ]
        views.append(
            {
                "device_id": device_id,
                "revision": report.revision,
                "current": report.revision == statement.revision,
                "received_at": report.received_at,
                "agrees": report.agrees,
                "differences": differences,
                "missing_at_county": report.report["missing_at_county"],
                "missing_on_device": report.report["missing_on_device"],
            }
        )
    return views


def clearing(store: HubStore, month: str, now: datetime, township: str | None = None) -> list[dict]:
    """Every clinic's statement for `month` (of one township): status, payment, totals,
    recomputation differences, and whether its devices agree."""
    check_month(month, now)
    # A clinic's slots of every township: its statement covers them all.
    visible = {slot.clinic_code for slot in store.slots(township)}
    clinics: dict[str, list[Slot]] = {}
    for slot in store.slots():
        if slot.clinic_code in visible:
            clinics.setdefault(slot.clinic_code, []).append(slot)
    rows = []
    for clinic_code, slots in sorted(clinics.items(), key=lambda c: (c[1][0].township, c[0])):
        clinic_township_name = slots[0].township
        statement = refresh(store, clinic_code, month, now, slots)
        views = reconciliation_view(store, statement)
        current = [v for v in views if v["current"]]
        rows.append(
            {
                "clinic_code": clinic_code,
                "township": clinic_township_name,
                "month": month,
                "revision": statement.revision,
                "status": statement.status,
                "payment_reference": statement.payment_reference,
                "paid_on": statement.paid_on,
                "total": statement.content["total"],
                "differing": statement.content.get("differing", 0),
                # None: no device reported on this revision yet.
                "devices_agree": None if not current else all(v["agrees"] for v in current),
            }
        )
    return rows
