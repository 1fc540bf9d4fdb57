"""Use cases on the device: gather inputs from the store, call pure code, apply outputs.

Each money-moving use case is one `write_transaction`: the signed record, the
accumulators and the outbox row commit together or not at all. `now` is always an
argument (an aware datetime); only the shell reads the clock.
"""

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.adapters.identity import (
    DeviceIdentity,
    IdentityError,
    create_key_file,
    device_id_for,
    load_private_key,
)
from edge.clock import CLINIC_TZ
from edge.domain import offline_risk
from edge.domain import records as rec
from edge.domain.documents import InsuredPerson
from edge.domain.ledger import (
    Verification,
    b64url,
    b64url_decode,
    genesis_hash,
    new_record_with_text,
    raw_public_key,
    verify_chain,
)
from edge.domain.model import Rejection, Settlement, Visit
from edge.domain.record_time import record_time
from edge.domain.settlement import settle
from edge.ports import DeviceRow, DeviceStore, LedgerHead

MAX_VISIT_TOTAL = 100_000_000  # fen: ¥1,000,000, far above any village visit


def quote_visit(
    store: DeviceStore, insured_id: str, visit: Visit, family_account_holder: str | None = None
) -> Settlement:
    """What settling `visit` would give now, without recording anything."""
    entry = store.insured_person(insured_id, with_accumulators=False)
    if entry is None:
        raise Rejection("UNKNOWN_PERSON", f"insured person {insured_id!r} is not in the roster")
    holder = family_holder(store, entry, visit, family_account_holder)
    return settle(
        store.current_policy(),
        store.catalog_items(line.code for line in visit.lines),
        entry.person,
        store.accumulators(insured_id, visit.date, visit.visit_type, holder),
        visit,
    )


def family_account_holders(store: DeviceStore, entry: InsuredPerson) -> list[InsuredPerson]:
    """The employees in the roster who share their personal account with `entry` (家庭共济)."""
    holders = []
    for holder_id in entry.family_account_holders:
        holder = store.insured_person(holder_id, with_accumulators=False)
        if holder is not None and holder.person.insurance_type == "employee":
            holders.append(holder)
    return holders


def family_account_holder_of(store: DeviceStore, record: dict) -> str | None:
    """Whose shared account the family account of a settlement was, or of the settlement a
    reversal gives back (None without one, and in version 1 records)."""
    body = record["body"]
    if record["kind"] == "reversal":
        original = store.record_by_tx(body.get("reverses", ""))
        body = original["body"] if original is not None else {}
    return body.get("visit", {}).get("family_account_holder")


def family_holder(
    store: DeviceStore, entry: InsuredPerson, visit: Visit, holder_id: str | None
) -> str | None:
    """Whose account the family account is: none unless the visit uses it, and then one
    of the employees who authorised `entry` to (refused otherwise, nothing written)."""
    if not visit.use_family_account:
        return None
    shared = [h.insured_id for h in family_account_holders(store, entry)]
    if holder_id is None and len(shared) == 1:
        return shared[0]
    if holder_id not in shared:
        raise Rejection(
            "FAMILY_ACCOUNT_NOT_SHARED",
            f"no employee has shared a personal account with {entry.insured_id}"
            if not shared
            else f"{holder_id!r} has not shared a personal account with {entry.insured_id}"
            f" (those who have: {', '.join(shared)})",
        )
    return holder_id


def card_holder(store: DeviceStore, insured_id: str, card_no: str) -> str:
    """The insured id of a card that matches the roster (a replaced card is refused)."""
    entry = store.insured_person(insured_id, with_accumulators=False)
    if entry is None:
        raise Rejection("UNKNOWN_PERSON", f"the card's holder {insured_id!r} is not in the roster")
    if entry.card_no != card_no:
        raise Rejection(
            "CARD_NOT_IN_ROSTER",
            f"card {card_no} is not the card on the roster for {insured_id} ({entry.card_no})",
        )
    return insured_id


# ---- identity ------------------------------------------------------------------------------


def init_device(store: DeviceStore, data_dir: Path, now: datetime) -> DeviceIdentity:
    """Make the device's key pair; the private key goes to a 0600 file, never the database."""
    if store.device() is not None:
        raise IdentityError("this device already has an identity ('clinic device show')")
    key = create_key_file(data_dir)
    identity = DeviceIdentity(device_id_for(key.public_key()), key)
    store.create_device(identity.device_id, identity.public_key_b64, _stamp(now))
    return identity


def load_identity(store: DeviceStore, data_dir: Path) -> DeviceIdentity:
    """The identity to sign with; refuses a key that is not the one the ledger began with."""
    device = store.device()
    if device is None:
        raise IdentityError("this device has no identity yet: run 'clinic device init'")
    key = load_private_key(data_dir)
    if b64url(raw_public_key(key.public_key())) != device.public_key:
        raise IdentityError(
            "the device key file does not belong to this device's ledger: settlement is"
            " stopped; restore the original key file"
        )
    return DeviceIdentity(device.device_id, key)


def public_key_of(store: DeviceStore) -> Ed25519PublicKey:
    device = store.device()
    if device is None:
        raise IdentityError("this device has no identity yet: run 'clinic device init'")
    return Ed25519PublicKey.from_public_bytes(b64url_decode(device.public_key))


# ---- settle / reverse / close ------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    record: dict

    @property
    def needs_review(self) -> list[str]:
        return self.record["body"].get("needs_review", [])


@dataclass(frozen=True)
class Settled(Recorded):
    settlement: Settlement


def settle_visit(
    store: DeviceStore,
    identity: DeviceIdentity,
    *,
    insured_id: str,
    visit: Visit,
    operator: str,
    now: datetime,
    family_account_holder: str | None = None,
) -> Settled:
    """Settle and record one visit, or raise `Rejection` with nothing written.
    `family_account_holder`: whose shared account pays when the visit uses the family
    account (may be left out when only one employee shares theirs)."""
    with store.write_transaction():
        _require_operator(store, operator)
        _require_not_revoked(store)
        position = _next_position(store, identity, now, operator)
        today = position.created_at.date()
        if visit.date > today:
            raise Rejection("BAD_INPUT", f"visit.date {visit.date} is after today ({today})")
        entry = store.insured_person(insured_id, with_accumulators=False)
        if entry is None:
            raise Rejection("UNKNOWN_PERSON", f"insured person {insured_id!r} is not in the roster")
        holder = family_holder(store, entry, visit, family_account_holder)
        unknown = store.unknown_diagnoses(visit.diagnoses)
        if unknown:  # never sign a diagnosis the county's list does not know
            raise Rejection(
                "UNKNOWN_DIAGNOSIS",
                f"diagnosis {', '.join(unknown)} is not in this terminal's diagnosis list",
            )
        policy = store.current_policy()
        catalog_version = store.catalog_version()
        catalog = store.catalog_items((line.code for line in visit.lines), catalog_version)
        before = store.accumulators(insured_id, visit.date, visit.visit_type, holder)
        result = settle(policy, catalog, entry.person, before, visit)
        if result.total > MAX_VISIT_TOTAL:
            raise Rejection(
                "AMOUNT_TOO_LARGE", f"a visit of {result.total} fen is beyond what a clinic settles"
            )

        device = position.device
        needs_review = offline_risk.review_reasons(
            policy.offline_limits,
            now=position.created_at,
            last_sync=datetime.fromisoformat(device.last_sync_at or device.created_at),
            fund_since_sync=device.unsynced_fund + result.fund,
            visits_today=store.settlements_on(insured_id, today.isoformat()) + 1,
        )
        lines = [
            {"code": item.code, "name": item.name, "price": str(item.price), "unit": item.unit,
             "quantity": str(line.quantity)}
            for line in result.lines
            for item in [catalog[line.code]]
        ]  # fmt: skip
        body = rec.settlement_body(
            insured_id=insured_id,
            operator=operator,
            visit=rec.visit_to_json(visit, lines, holder),
            catalog_version=catalog_version,
            policy_version=policy.version,
            accumulators_before=rec.accumulators_to_json(before, entry.person.account_balance),
            result=result,
            needs_review=needs_review,
        )
        record = _append(store, identity, position, "settlement", body,
                         insured_id=insured_id, fund=result.fund)  # fmt: skip
        store.set_accumulators(
            insured_id, visit.date, visit.visit_type, body["result"]["accumulators_after"],
            before=body["accumulators_before"], family_holder=holder,
        )  # fmt: skip
    return Settled(record, result)


def reverse_settlement(
    store: DeviceStore,
    identity: DeviceIdentity,
    *,
    tx_id: str,
    reason: str,
    operator: str,
    now: datetime,
) -> Recorded:
    """Cancel a settlement with a signed reversal that gives its accumulators back."""
    if not reason.strip():
        raise Rejection("BAD_INPUT", "a reversal needs a reason")
    with store.write_transaction():
        _require_operator(store, operator)
        _require_not_revoked(store)
        original = store.record_by_tx(tx_id)
        if original is None or original["kind"] != "settlement":
            raise Rejection("UNKNOWN_SETTLEMENT", f"no settlement {tx_id!r} on this device")
        already = store.reversal_of(tx_id)
        if already is not None:
            raise Rejection(
                "ALREADY_REVERSED", f"settlement {tx_id} was already reversed by record {already}"
            )
        position = _next_position(store, identity, now, operator)
        body = original["body"]
        insured_id = body["insured_id"]
        visit_date = date.fromisoformat(body["visit"]["date"])
        visit_type = body["visit"]["visit_type"]
        holder = body["visit"].get("family_account_holder")  # version 1 records have none
        current = store.accumulators(insured_id, visit_date, visit_type, holder)
        entry = store.insured_person(insured_id, with_accumulators=False)
        balance = entry.person.account_balance if entry else 0
        current_figures = rec.accumulators_to_json(current, balance)
        after = rec.restored_accumulators(
            body["accumulators_before"], body["result"]["accumulators_after"], current_figures
        )
        record = _append(
            store, identity, position, "reversal",
            rec.reversal_body(original, reason=reason, operator=operator, accumulators_after=after),
            insured_id=insured_id, fund=body["result"]["fund"], reverses=tx_id,
        )  # fmt: skip
        if entry is not None:
            store.set_accumulators(
                insured_id, visit_date, visit_type, after, before=current_figures,
                family_holder=holder,
            )  # fmt: skip
    return Recorded(record)


def close_day(
    store: DeviceStore, identity: DeviceIdentity, *, operator: str, now: datetime
) -> Recorded:
    """The Z report: totals of everything since the previous daily close, signed."""
    with store.write_transaction():
        _require_operator(store, operator)
        position = _next_position(store, identity, now, operator)
        since = list(store.records(after_seq=store.last_seq_of_kind("daily_close")))
        day = rec.closed_business_day(since, position.created_at.date().isoformat())
        body = rec.daily_close_body(
            since, business_day=day, operator=operator, originals=premium_originals(store, since)
        )
        return Recorded(_append(store, identity, position, "daily_close", body))


def premium_originals(store: DeviceStore, records: list[dict]) -> dict[str, dict]:
    """The premiums, by tx_id, that the premium reversals among `records` undo: a close
    takes back their persons and state share."""
    originals = {}
    for record in records:
        if record["kind"] == "premium_reversal":
            original = store.record_by_tx(record["body"]["reverses"])
            if original is not None:
                originals[original["tx_id"]] = original
    return originals


# ---- month and year closes (docs/ledger.md) ------------------------------------------------


def month_records(store: DeviceStore, month: str) -> list[dict]:
    """Every record created in `month` (China time), in seq order: record times only
    move forward, so they are one run of seqs."""
    first = f"{month}-01"
    last = f"{month}-31"  # the ledger's `day` is the China-time date; no month has more
    return [
        r for r in store.records_between_days(first, last)
        if rec.month_of(r["created_at"]) == month
    ]  # fmt: skip


def _check_period(pattern: re.Pattern[str], value: str, shape: str) -> None:
    if not pattern.fullmatch(value or ""):
        raise Rejection("BAD_INPUT", f"{value!r} is not a {shape} (形如 {shape})")


def period_facts(store: DeviceStore, records: list[dict]) -> tuple[dict[str, str], dict[str, dict]]:
    """The roster's insurance type of each insured person in `records`, and the
    settlements and premiums their reversals undo (by tx_id), for
    `rec.period_close_body`."""
    insurance: dict[str, str] = {}
    originals: dict[str, dict] = {}
    for record in records:
        insured_id = record["body"].get("insured_id")
        if record["kind"] in ("settlement", "reversal") and insured_id not in insurance:
            entry = store.insured_person(insured_id, with_accumulators=False)
            insurance[insured_id] = entry.person.insurance_type if entry else ""
        if record["kind"] == "reversal":
            original = store.record_by_tx(record["body"]["reverses"])
            if original is not None:
                originals[original["tx_id"]] = original
    return insurance, {**originals, **premium_originals(store, records)}


def closes_of_month(store: DeviceStore, month: str) -> list[dict]:
    """The signed `monthly_close` records of `month` (normally one)."""
    return [r for r in store.records_of_kind("monthly_close") if r["body"].get("month") == month]


def _require_ended(period: str, current: str) -> None:
    if period >= current:
        raise Rejection(
            "PERIOD_NOT_ENDED",
            f"{period} has not ended yet in China time ({period} 尚未结束，结束后才能结账)",
        )


def close_month(
    store: DeviceStore, identity: DeviceIdentity, *, operator: str, now: datetime,
    month: str | None = None,
) -> Recorded:  # fmt: skip
    """The month close (月结): totals of every record created in `month` (default: the
    month before `now`'s, China time), signed. Only once the month has ended; when some
    settlement or reversal of the month is not yet in a daily close, that daily close is
    signed first (the same as `close_day` would), so that every day is closed under the
    month. A month is closed once."""
    current = now.astimezone(CLINIC_TZ).strftime("%Y-%m")
    month = month or rec.previous_month(current)
    _check_period(rec.MONTH, month, "YYYY-MM")
    _require_ended(month, current)
    with store.write_transaction():
        _require_operator(store, operator)
        already = closes_of_month(store, month)
        if already:
            raise Rejection(
                "ALREADY_CLOSED",
                f"month {month} was closed by record {already[0]['seq']} (本月已月结)",
            )
        records = month_records(store, month)
        money = [r["seq"] for r in records if r["kind"] in rec.CLOSED_KINDS]
        if money and max(money) > store.last_seq_of_kind("daily_close"):
            close_day(store, identity, operator=operator, now=now)
        body = _month_body(store, month, records, operator)
        position = _next_position(store, identity, now, operator)
        return Recorded(_append(store, identity, position, "monthly_close", body))


def _month_body(store: DeviceStore, month: str, records: list[dict], operator: str) -> dict:
    money = [r["seq"] for r in records if r["kind"] in rec.CLOSED_KINDS]
    daily = [
        r for r in store.records_of_kind("daily_close")
        if (money and r["body"]["from_seq"] is not None
            and r["body"]["from_seq"] <= max(money) and r["body"]["to_seq"] >= min(money))
        or (not money and r["body"]["business_day"][:7] == month)
    ]  # fmt: skip
    insurance, originals = period_facts(store, records)
    return rec.monthly_close_body(
        records, month=month, operator=operator, daily_closes=daily,
        insurance_types=insurance, originals=originals,
    )  # fmt: skip


def month_preview(store: DeviceStore, month: str, operator: str = "") -> dict:
    """What a month close of `month` would sign now (month-to-date for the current month),
    unsigned: the terminal's month page and `clinic close-month --preview` show it."""
    _check_period(rec.MONTH, month, "YYYY-MM")
    return _month_body(store, month, month_records(store, month), operator)


def close_year(
    store: DeviceStore, identity: DeviceIdentity, *, operator: str, now: datetime,
    year: str | None = None,
) -> Recorded:  # fmt: skip
    """The year close (年结) of `year` (default: the year before `now`'s): only once it
    has ended; every month of it that has records and no month close yet is closed first,
    in order, so the year close covers its month closes. A year is closed once."""
    current = now.astimezone(CLINIC_TZ).strftime("%Y")
    year = year or str(int(current) - 1)
    _check_period(rec.YEAR, year, "YYYY")
    _require_ended(year, current)
    with store.write_transaction():
        _require_operator(store, operator)
        done = [r for r in store.records_of_kind("yearly_close") if r["body"].get("year") == year]
        if done:
            raise Rejection(
                "ALREADY_CLOSED", f"year {year} was closed by record {done[0]['seq']} (本年已年结)"
            )
        records = store.records_between_days(f"{year}-01-01", f"{year}-12-31")
        records = [r for r in records if rec.month_of(r["created_at"])[:4] == year]
        for month in sorted({rec.month_of(r["created_at"]) for r in records}):
            if not closes_of_month(store, month):
                close_month(store, identity, operator=operator, now=now, month=month)
        monthly = [
            r for r in store.records_of_kind("monthly_close")
            if r["body"].get("month", "")[:4] == year
        ]  # fmt: skip
        insurance, originals = period_facts(store, records)
        body = rec.yearly_close_body(
            records, year=year, operator=operator, monthly_closes=monthly,
            insurance_types=insurance, originals=originals,
        )  # fmt: skip
        position = _next_position(store, identity, now, operator)
        return Recorded(_append(store, identity, position, "yearly_close", body))


def record_event(
    store: DeviceStore, identity: DeviceIdentity, event: dict, now: datetime
) -> Recorded:
    """A signed audit event (catalog applied, operator locked out, enrollment …)."""
    return Recorded(append_record(store, identity, "event", event, now))


def append_record(
    store: DeviceStore, identity: DeviceIdentity, kind: str, body: dict, now: datetime,
    **index,
) -> dict:  # fmt: skip
    """Sign and append one record as it stands (no settlement rules applied): events,
    and tools that rebuild a ledger. Joins the caller's write transaction if one is open."""
    with store.write_transaction():
        position = _next_position(store, identity, now, body.get("operator", ""))
        return _append(store, identity, position, kind, body, **index)


def verify_ledger(store: DeviceStore, public_key: Ed25519PublicKey | None = None) -> Verification:
    return verify_chain(store.records(), public_key or public_key_of(store))


# ---- inside a write transaction --------------------------------------------------------


def _require_operator(store: DeviceStore, operator: str) -> None:
    if store.active_operator(operator) is None:
        raise Rejection("UNKNOWN_OPERATOR", f"operator {operator!r} is unknown or disabled")


def _require_not_revoked(store: DeviceStore) -> None:
    """The county has withdrawn this device (its hub said so to the sync agent): it
    settles and reverses no more."""
    since = store.revoked_since()
    if since is not None:
        raise Rejection("DEVICE_REVOKED", f"the county revoked this device (known since {since})")


@dataclass(frozen=True)
class _Position:
    """Where the next record goes: its time, the chain's head and the device, read once."""

    created_at: datetime
    head: LedgerHead | None
    device: DeviceRow


def _next_position(
    store: DeviceStore, identity: DeviceIdentity, now: datetime, operator: str
) -> _Position:
    """A clock found behind the ledger is signed as an event; record times stay monotonic."""
    head, device = store.ledger_head(), store.device()
    if device is None:
        raise IdentityError("this device has no identity yet: run 'clinic device init'")
    last = datetime.fromisoformat(head.created_at) if head else None
    timing = record_time(now.astimezone(CLINIC_TZ), last)
    if head is not None and timing.clock_behind and device.clock_behind_since is None:
        event = {
            "event": "clock_behind",
            "device_clock": _stamp(now),
            "last_record_at": head.created_at,
            "operator": operator,
        }
        position = _Position(timing.created_at, head, device)
        record = _append(store, identity, position, "event", event)
        store.set_clock_behind_since(head.created_at)
        head = LedgerHead(record["seq"], record["hash"], record["created_at"])
    elif not timing.clock_behind and device.clock_behind_since is not None:
        store.set_clock_behind_since(None)
    return _Position(timing.created_at, head, device)


def _append(
    store: DeviceStore, identity: DeviceIdentity, position: _Position, kind: str,
    body: dict, **index,
) -> dict:  # fmt: skip
    head = position.head
    record, text = new_record_with_text(
        device_id=identity.device_id,
        seq=head.seq + 1 if head else 1,
        kind=kind,
        tx_id=str(uuid.uuid4()),
        created_at=position.created_at.isoformat(),
        prev_hash=head.hash if head else genesis_hash(identity.public_key),
        body=body,
        private_key=identity.private_key,
    )
    store.append_record(record, day=position.created_at.date().isoformat(), text=text, **index)
    return record


def _stamp(now: datetime) -> str:
    return now.astimezone(CLINIC_TZ).replace(microsecond=0).isoformat()
