"""Use cases of premium collection at the village service point (参保缴费,
docs/service-point.md "Premiums on the device"): quote what a family owes for a year,
record a signed `premium`, reverse one once.

Like `edge.services`, each use case that writes is one `write_transaction` (the signed
record, its index rows and a family account's balance commit together or not at all),
takes its store through `edge.ports` and `now` as an argument.
"""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from edge import services
from edge.adapters.identity import DeviceIdentity
from edge.clock import CLINIC_TZ
from edge.domain.documents import InsuredPerson
from edge.domain.model import Rejection
from edge.domain.records import body_problem
from edge.domain.service_point import (
    MAX_PREMIUM_PERSONS,
    PAYMENT_METHODS,
    premium_due,
    premium_year_choices,
)
from edge.ports import DeviceStore

METHODS = PAYMENT_METHODS
MAX_NAME = 40  # characters of a payer's name
MAX_REFERENCE = 64  # characters of a mobile payment's reference
MAX_REASON = 200
ALL_STATE_PAID = "由政府全额资助，无需缴费 / paid in full by the state"


@dataclass(frozen=True)
class QuotedPerson:
    insured_id: str
    name: str
    categories: tuple[str, ...]
    due: int  # fen
    state_pays: int
    amount: int

    def to_json(self) -> dict[str, Any]:
        return {"insured_id": self.insured_id, "name": self.name,
                "categories": list(self.categories), "due": self.due,
                "state_pays": self.state_pays, "amount": self.amount}  # fmt: skip


@dataclass(frozen=True)
class PremiumQuote:
    year: int
    year_choices: tuple[int, ...]  # the years the operator may collect for, default first
    persons: tuple[QuotedPerson, ...]

    @property
    def amount(self) -> int:
        return sum(p.amount for p in self.persons)

    @property
    def state_paid(self) -> int:
        return sum(p.state_pays for p in self.persons)

    @property
    def all_state_paid(self) -> bool:
        """Nothing to take: the state pays every person's premium in full."""
        return self.amount == 0

    def to_json(self) -> dict[str, Any]:
        return {"year": self.year, "year_choices": list(self.year_choices),
                "persons": [p.to_json() for p in self.persons], "amount": self.amount,
                "state_paid": self.state_paid, "all_state_paid": self.all_state_paid}  # fmt: skip


def _today(now: datetime) -> date:
    return now.astimezone(CLINIC_TZ).date()


def premium_quote(
    store: DeviceStore, insured_ids: list[str], year: int | None, today: date
) -> PremiumQuote:
    """What each of `insured_ids` owes for `year` (default: the year being collected on
    `today`) under the installed policy's premium rule, or `Rejection`."""
    rule = store.current_policy().premiums
    if rule is None:
        raise Rejection(
            "NO_PREMIUM_RULE",
            "本终端的医保政策没有缴费标准，请先同步 / the installed policy has no premium rule:"
            " sync first",
        )
    choices = tuple(premium_year_choices(rule, today))
    year = choices[0] if year is None else year
    if year not in choices:
        offered = "、".join(str(y) for y in choices)
        raise Rejection(
            "YEAR_NOT_OFFERED",
            f"现在只能收取 {offered} 年度的保费 / only the premium of {offered} is collected now",
        )
    if not insured_ids:
        raise Rejection("BAD_INPUT", "请至少选择一位参保人 / name at least one insured person")
    if len(insured_ids) > MAX_PREMIUM_PERSONS:
        raise Rejection(
            "TOO_MANY_PERSONS",
            f"一次最多为 {MAX_PREMIUM_PERSONS} 人缴费 / at most {MAX_PREMIUM_PERSONS} persons"
            " in one payment",
        )
    if len(set(insured_ids)) != len(insured_ids):
        raise Rejection("BAD_INPUT", "同一参保人重复 / an insured person is named twice")
    return PremiumQuote(
        year,
        choices,
        tuple(_quoted(store, rule, insured_id, year, today) for insured_id in insured_ids),
    )


def _quoted(store: DeviceStore, rule: Any, insured_id: str, year: int, today: date) -> QuotedPerson:
    entry = store.insured_person(insured_id, with_accumulators=False)
    if entry is None:
        raise Rejection(
            "UNKNOWN_PERSON",
            f"参保人 {insured_id} 不在名册中 / {insured_id!r} is not in the roster",
        )
    try:
        due, state_pays, amount = premium_due(rule, entry.person, today)
    except Rejection as refused:  # an employee: name them
        raise Rejection(refused.code, f"{entry.name}（{insured_id}）: {refused.message}") from None
    paid = store.premium_paid(insured_id, year)
    if paid is not None:
        raise Rejection(
            "ALREADY_PAID",
            f"{entry.name}（{insured_id}）{year} 年度已缴费（记录 {paid}）"
            f" / already paid for {year}",
        )
    categories = tuple(sorted(entry.person.categories_on(today)))
    return QuotedPerson(insured_id, entry.name, categories, due, state_pays, amount)


def collect_premium(
    store: DeviceStore,
    identity: DeviceIdentity,
    *,
    operator: str,
    payer_name: str,
    payer_insured_id: str | None,
    insured_ids: list[str],
    year: int | None,
    method: str,
    reference: str | None,
    account_holder: str | None,
    now: datetime,
) -> services.Recorded:
    """Record one payment of the premiums of `insured_ids` for `year` as a signed
    `premium`, or raise `Rejection` with nothing written. A family account payment
    (家庭共济) takes the amount from `account_holder`'s personal account."""
    payer_name = (payer_name or "").strip()
    reference = (reference or "").strip() or None
    if not payer_name or len(payer_name) > MAX_NAME:
        raise Rejection("BAD_INPUT", f"请填写缴费人姓名（最多 {MAX_NAME} 字）/ the payer's name")
    if method not in METHODS:
        raise Rejection("BAD_INPUT", f"缴费方式只能是 {'/'.join(METHODS)} / unknown method")
    if method == "mobile" and reference is None:
        raise Rejection(
            "REFERENCE_REQUIRED", "移动支付须填写交易单号 / a mobile payment needs its reference"
        )
    if reference is not None and len(reference) > MAX_REFERENCE:
        raise Rejection("BAD_INPUT", f"交易单号最多 {MAX_REFERENCE} 字 / reference too long")
    if method != "family_account" and account_holder:
        raise Rejection(
            "BAD_INPUT", "只有家庭共济才填写账户持有人 / an account holder is for family_account"
        )
    with store.write_transaction():
        services._require_operator(store, operator)
        services._require_not_revoked(store)
        quote = premium_quote(store, insured_ids, year, _today(now))
        if quote.all_state_paid:
            raise Rejection("ALL_STATE_PAID", ALL_STATE_PAID)
        balance_after = None
        if method == "family_account":
            holder = _family_account_holder(store, account_holder, quote)
            if holder.person.account_balance < quote.amount:
                raise Rejection(
                    "INSUFFICIENT_BALANCE",
                    f"{holder.name} 的个人账户余额不足（余额 {holder.person.account_balance} 分，"
                    f"应缴 {quote.amount} 分）/ the personal account's balance is too low",
                )
            balance_after = holder.person.account_balance - quote.amount
            account_holder = holder.insured_id
        body = {
            "operator": operator,
            "year": quote.year,
            "payer": {"name": payer_name, "insured_id": payer_insured_id or None},
            "method": method,
            "reference": reference,
            "account_holder": account_holder if method == "family_account" else None,
            "persons": [p.to_json() for p in quote.persons],
            "amount": quote.amount,
            "state_paid": quote.state_paid,
            "account_balance_after": balance_after,
        }
        _require_well_formed("premium", body)
        record = services.append_record(store, identity, "premium", body, now)
        if balance_after is not None and account_holder is not None:
            store.set_account_balance(account_holder, balance_after)
    return services.Recorded(record)


def shared_account_holders(store: DeviceStore, insured_ids: list[str]) -> list[InsuredPerson]:
    """The employees in the roster who shared their personal account with every one of
    `insured_ids` (家庭共济; the roster's `family_account_holders`, as for a settlement):
    those who may pay these persons' premiums from it."""
    shared: dict[str, InsuredPerson] | None = None
    for insured_id in insured_ids:
        entry = store.insured_person(insured_id, with_accumulators=False)
        holders = services.family_account_holders(store, entry) if entry else []
        found = {h.insured_id: h for h in holders}
        shared = found if shared is None else {k: v for k, v in shared.items() if k in found}
    return list((shared or {}).values())


def _family_account_holder(
    store: DeviceStore, holder_id: str | None, quote: PremiumQuote
) -> InsuredPerson:
    """The employee whose personal account pays: one who shared it with every person of
    the payment; may be left out when exactly one did."""
    shared = {h.insured_id: h for h in shared_account_holders(
        store, [p.insured_id for p in quote.persons])}  # fmt: skip
    if holder_id is None and len(shared) == 1:
        holder_id = next(iter(shared))
    if holder_id is None or holder_id not in shared:
        raise Rejection(
            "FAMILY_ACCOUNT_NOT_SHARED",
            "没有职工把个人账户共济给所有这些参保人 / no employee has shared a personal account"
            " with every person of this payment"
            if not shared
            else f"{holder_id} 没有把个人账户共济给所有这些参保人"
            f"（可选：{'、'.join(sorted(shared))}）/ {holder_id!r} has not shared a personal"
            " account with every person",
        )
    return shared[holder_id]


def find_premium(store: DeviceStore, tx_or_seq: str) -> dict:
    """The signed `premium` record named by its tx_id or its seq, or `Rejection`."""
    record = None
    if tx_or_seq.isdigit():
        record = next(iter(store.records(after_seq=int(tx_or_seq) - 1)), None)
    else:
        record = store.record_by_tx(tx_or_seq)
    if (
        record is None
        or record["kind"] != "premium"
        or (tx_or_seq.isdigit() and record["seq"] != int(tx_or_seq))
    ):
        raise Rejection(
            "UNKNOWN_PREMIUM", f"本机没有缴费记录 {tx_or_seq} / no premium {tx_or_seq!r}"
        )
    return record


def reverse_premium(
    store: DeviceStore,
    identity: DeviceIdentity,
    tx_id_or_seq: str,
    *,
    operator: str,
    reason: str,
    now: datetime,
) -> services.Recorded:
    """Cancel a premium with a signed `premium_reversal` (once); a family account gets
    its money back."""
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON:
        raise Rejection(
            "BAD_INPUT", f"冲正须说明原因（最多 {MAX_REASON} 字）/ a reversal needs a reason"
        )
    with store.write_transaction():
        services._require_operator(store, operator)
        services._require_not_revoked(store)
        original = find_premium(store, tx_id_or_seq)
        rows = store.premium_rows(tx_id=original["tx_id"], limit=1)
        if rows and rows[0]["reversed_by"] is not None:
            raise Rejection(
                "ALREADY_REVERSED",
                f"缴费记录 {original['seq']} 已冲正（记录 {rows[0]['reversal_seq']}）"
                f" / premium {original['tx_id']} was already reversed",
            )
        body = original["body"]
        holder_id = body.get("account_holder")
        balance_after = None
        if body["method"] == "family_account" and holder_id:
            holder = store.insured_person(holder_id, with_accumulators=False)
            if holder is None:  # no account on this device to give the money back to
                raise Rejection(
                    "FAMILY_ACCOUNT_HOLDER_UNKNOWN",
                    f"家庭共济账户持有人 {holder_id} 已不在名册中，请联系县医保局退费"
                    f" / the account holder {holder_id!r} is no longer in the roster: the"
                    " county refunds it",
                )
            balance_after = holder.person.account_balance + body["amount"]
        reversal = {
            "reverses": original["tx_id"],
            "reverses_seq": original["seq"],
            "operator": operator,
            "reason": reason,
            "amount": body["amount"],
            "method": body["method"],
            "account_holder": holder_id if body["method"] == "family_account" else None,
            "account_balance_after": balance_after,
        }
        _require_well_formed("premium_reversal", reversal)
        record = services.append_record(store, identity, "premium_reversal", reversal, now)
        if balance_after is not None:
            store.set_account_balance(holder_id, balance_after)
    return services.Recorded(record)


def _require_well_formed(kind: str, body: dict) -> None:
    """Never sign a body the hub would take for malformed (a roster name or category
    longer than the record allows, say): refused, nothing written."""
    problem = body_problem(kind, body)
    if problem is not None:
        raise Rejection("BAD_INPUT", f"无法记录 / cannot be recorded: {problem}")


def premiums(
    store: DeviceStore, *, year: int | None = None, day: str | None = None, limit: int = 200
) -> list[dict]:
    """The premiums collected, newest first (of the insurance `year`, or collected on the
    China-time `day`), each with its reversal's tx_id and seq when it was reversed."""
    return store.premium_rows(year=year, day=day, limit=limit)


def premium(store: DeviceStore, tx_id: str) -> dict | None:
    """One premium as `premiums` lists it, with its signed record (`record`)."""
    rows = store.premium_rows(tx_id=tx_id, limit=1)
    if not rows:
        return None
    return {**rows[0], "record": store.record_by_tx(tx_id)}


def person_premiums(store: DeviceStore, insured_id: str, years: list[int]) -> list[dict]:
    """The premiums not reversed that paid `insured_id`'s insurance for one of `years`,
    newest first: what a renewal may name as the premium that paid it."""
    found = []
    for year in years:
        for row in store.premium_rows(year=year):
            if row["reversed_by"] is None and any(
                p["insured_id"] == insured_id for p in row["persons"]
            ):
                found.append(row)
    return sorted(found, key=lambda row: -row["seq"])
