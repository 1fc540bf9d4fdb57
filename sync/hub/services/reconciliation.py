"""Recomputation and reconciliation: every uploaded record, in order of arrival, settled
again by the county (`sync.hub.reconcile` decides) on its own data and running
accumulators; each difference becomes a reconciliation item.

A record flagged malformed at ingest is skipped. One record never stops the county's
recomputation: a record that fails unexpectedly is undone, flagged and alarmed, and the
pass goes on with the next.
"""

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from edge.domain.documents import policy_from_json
from edge.domain.model import Policy, Rejection
from edge.domain.records import account_movements, body_problem
from sync.hub import reconcile
from sync.hub.model import StoredRecord
from sync.hub.ports import HubStore
from sync.protocol import iso

log = logging.getLogger(__name__)


class _Versions:
    """Published policies parsed once per run; published catalog versions known."""

    def __init__(self, store: HubStore):
        self.store = store
        self.policies: dict[str, Policy | None] = {}
        self.catalogs: dict[str, bool] = {}

    def policy(self, version: str) -> Policy | None:
        if version not in self.policies:
            publication = self.store.publication("policy", version)
            self.policies[version] = (
                None if publication is None else policy_from_json(publication.content)
            )
        return self.policies[version]

    def has_catalog(self, version: str) -> bool:
        if version not in self.catalogs:
            self.catalogs[version] = self.store.publication("catalog", version) is not None
        return self.catalogs[version]


def reconcile_pending(store: HubStore, now: datetime, *, batch: int = 500) -> dict:
    """Recompute every record not yet recomputed, in order of arrival; returns counts by
    outcome (`ok`, `differs`, `not_recomputable`, `refused`, …)."""
    counts: Counter = Counter()
    versions = _Versions(store)
    while True:
        with store.unit_of_work():
            pending = store.records_to_recompute(batch)
            if not pending:
                break
            for stored in pending:
                counts[_recompute_guarded(store, versions, stored, now)] += 1
            store.mark_recomputed_through(pending[-1].position)
    return dict(counts)


def _recompute_guarded(
    store: HubStore, versions: _Versions, stored: StoredRecord, now: datetime
) -> str:
    if stored.malformed:
        return "malformed"
    # Checked again here for records stored before ingest checked bodies.
    problem = body_problem(stored.record["kind"], stored.record["body"])
    if problem is not None:
        detail = f"seq {stored.seq}: {problem}"
        store.flag_malformed(stored.device_id, [(stored.seq, detail)], iso(now))
        store.raise_alarm(stored.device_id, "BODY_MALFORMED", stored.seq, detail, iso(now))
        return "malformed"
    try:
        with store.savepoint():
            return _recompute_one(store, versions, stored.device_id, stored.record, now)
    except Exception as error:
        log.exception("recomputing %s seq %s failed", stored.device_id, stored.seq)
        problem = f"recomputation failed: {type(error).__name__}: {error}"[:500]
        store.flag_malformed(stored.device_id, [(stored.seq, problem)], iso(now))
        store.raise_alarm(stored.device_id, "RECOMPUTE_FAILED", stored.seq, problem, iso(now))
        return "failed"


def _recompute_one(
    store: HubStore, versions: _Versions, device_id: str, record: dict, now: datetime
) -> str:
    kind, body, seq, tx_id = record["kind"], record["body"], record["seq"], record["tx_id"]
    add_item = _item_adder(store, device_id, seq, tx_id, record, now)
    if kind == "settlement":
        return _recompute_settlement(store, versions, device_id, record, add_item)
    if kind == "reversal":
        return _apply_reversal(store, device_id, body, add_item)
    if kind == "premium":
        return _apply_premium_account(store, kind, body)
    if kind == "premium_reversal":
        problem = premium_reversal_problem(store, device_id, record)
        if problem is not None:
            add_item(
                reconcile.PREMIUM_REVERSAL_REFUSED,
                {"reverses": body.get("reverses"), "problem": problem},
            )
            return "differs"
        return _apply_premium_account(store, kind, body)
    if kind == "daily_close":
        previous = store.last_seq_of_kind(device_id, "daily_close", seq)
        covered = [
            r
            for r in store.records(device_id, after_seq=previous, to_seq=seq - 1, well_formed=True)
            if body_problem(r["kind"], r["body"]) is None  # one stored before bodies were checked
        ]
        originals = {}  # the premiums that premium reversals in the range undo
        for reversal in (r for r in covered if r["kind"] == "premium_reversal"):
            original = store.record_by_tx(device_id, reversal["body"]["reverses"])
            if original is not None:
                originals[original["tx_id"]] = original
        diff = reconcile.daily_close_differences(body, covered, originals)
        if diff:
            add_item(reconcile.DAILY_CLOSE_DIFFERS, {"fields": diff})
            return "differs"
        return "ok"
    return "not_a_settlement"


def _item_adder(
    store: HubStore, device_id: str, seq: int, tx_id: str, record: dict, now: datetime
) -> Callable[[str, dict], None]:
    body = record["body"]
    day = body.get("business_day") or str(record.get("created_at", ""))[:10] or None

    def add(code: str, details: dict) -> None:
        store.add_reconciliation_item(device_id, seq, tx_id, code, day, details, iso(now))

    return add


def _recompute_settlement(
    store: HubStore,
    versions: _Versions,
    device_id: str,
    record: dict,
    add_item: Callable[[str, dict], None],
) -> str:
    body = record["body"]
    device_result = body.get("result") or {}
    insured_id = body.get("insured_id")
    try:
        visit_date, visit_type = reconcile.visit_date_and_type(body)
        if not isinstance(insured_id, str):
            raise TypeError("no insured person")
    except (KeyError, TypeError, ValueError):
        add_item(
            reconcile.NOT_RECOMPUTABLE,
            {"reason": "the record holds no readable visit or insured person"},
        )
        store.save_recomputation(
            device_id, record["seq"], record["tx_id"], "not_recomputable", None
        )
        return "not_recomputable"
    if body.get("needs_review"):
        add_item(
            reconcile.NEEDS_REVIEW, {"reasons": body["needs_review"], "insured_id": insured_id}
        )
    policy = versions.policy(body.get("policy_version", ""))
    person = store.person(insured_id)
    # The family account the device let pay is the holder's, as the county keeps it.
    named_holder = reconcile.family_account_holder(body)
    holder = store.person(named_holder) if named_holder is not None else None
    missing = [
        what
        for what, present in (
            (f"policy {body.get('policy_version')}", policy is not None),
            (
                f"catalog {body.get('catalog_version')}",
                versions.has_catalog(body.get("catalog_version", "")),
            ),
            (f"insured person {insured_id}", person is not None),
            (f"insured person {named_holder}", named_holder is None or holder is not None),
        )
        if not present
    ]
    hub_result: dict | None = None
    if missing or policy is None or person is None:  # an absent one is in `missing`
        status = "not_recomputable"
        add_item(
            reconcile.NOT_RECOMPUTABLE,
            {
                "reason": "the hub does not have " + ", ".join(missing),
                "insured_id": insured_id,
                "device": _money(device_result),
            },
        )
    else:
        # A holder the county's roster does not have sharing their account pays nothing.
        paying = (
            named_holder
            if named_holder is not None
            and holder is not None
            and reconcile.shares_account(person[0], named_holder, holder[0])
            else None
        )
        before = store.balances(insured_id, visit_date, visit_type, paying)
        codes = [line.get("code") for line in body["visit"].get("lines", [])]
        items = store.published_items(body["catalog_version"], codes)
        try:
            settlement = reconcile.recompute(body, policy, items, person[0], before)
        except Rejection as rejection:
            status = "refused"
            add_item(
                reconcile.REFUSED_BY_COUNTY,
                {
                    "insured_id": insured_id,
                    "error": rejection.to_dict()["error"],
                    "device": _money(device_result),
                },
            )
        else:
            hub_result = {
                **settlement.to_dict(),
                "accumulators_before": reconcile.balances_as_json(before),
                "family_account_holder": paying,
            }
            diff = reconcile.differences(device_result, hub_result)
            status = "differs" if diff else "ok"
            if diff:
                add_item(
                    reconcile.SETTLEMENT_DIFFERS,
                    {
                        "insured_id": insured_id,
                        "fields": diff,
                        "accumulators_before": reconcile.balance_differences(
                            body.get("accumulators_before") or {}, before
                        ),
                    },
                )
            store.set_balances(
                insured_id, visit_date, visit_type, reconcile.balances_after(settlement), paying
            )
    if hub_result is None:
        # The county cannot settle it itself: its running figures follow the device's.
        current = store.balances(insured_id, visit_date, visit_type, named_holder)
        moved = reconcile.balances_moved(current, reconcile.device_movement(body))
        store.set_balances(insured_id, visit_date, visit_type, moved, named_holder)
    store.save_recomputation(device_id, record["seq"], record["tx_id"], status, hub_result)
    return status


def _apply_reversal(
    store: HubStore, device_id: str, body: dict, add_item: Callable[[str, dict], None]
) -> str:
    target = body.get("reverses")
    original = store.record_by_tx(device_id, target) if isinstance(target, str) else None
    if not isinstance(target, str) or original is None or original["kind"] != "settlement":
        add_item(reconcile.REVERSAL_UNKNOWN, {"reverses": target})
        return "differs"
    recomputed = store.recomputation_of(device_id, target)
    hub_result = recomputed[1] if recomputed else None
    try:
        visit_date, visit_type = reconcile.visit_date_and_type(original["body"])
    except (KeyError, TypeError, ValueError):
        return "ok"  # a settlement without a readable visit moved no figure of the county's
    insured_id = original["body"].get("insured_id")
    if not isinstance(insured_id, str):
        return "ok"  # nor one without a person
    if hub_result:
        # The county's own settlement is taken back, the holder's balance it debited too.
        holder = hub_result.get("family_account_holder")
        current = store.balances(insured_id, visit_date, visit_type, holder)
        restored = reconcile.balances_after_reversal(current, hub_result)
    else:
        holder = reconcile.family_account_holder(original["body"])
        current = store.balances(insured_id, visit_date, visit_type, holder)
        restored = reconcile.balances_unmoved(current, reconcile.device_movement(original["body"]))
    store.set_balances(insured_id, visit_date, visit_type, restored, holder)
    return "ok"


def premium_reversal_problem(store: HubStore, device_id: str, record: dict) -> str | None:
    """Why a premium reversal may not give anything back (None: it may): it must undo a
    premium of the same device, with that premium's amount, method and account holder,
    and be the reversal the county indexed for it (a premium is reversed once)."""
    body = record["body"]
    target = body.get("reverses")
    original = store.record_by_tx(device_id, target) if isinstance(target, str) else None
    if original is None or original["kind"] != "premium":
        return "names no premium of this device"
    for name in ("amount", "method", "account_holder"):
        if body.get(name) != original["body"].get(name):
            return f"its {name} is not the premium's"
    indexed = store.premium_of(device_id, target)
    if indexed is None or indexed["reversed_by"] != record["tx_id"]:
        return "the premium is reversed by another record"
    return None


def _apply_premium_account(store: HubStore, kind: str, body: dict) -> str:
    """A premium paid from an employee's personal account (家庭共济) takes it from the
    county's balance of that account, and its reversal gives it back, by the movement the
    device applied (`records.account_movements`): a later settlement using the account is
    recomputed on the same balance."""
    moved = account_movements(kind, body)
    for holder, amount in moved.items():
        store.move_account_balance(holder, amount)
    return "ok" if moved else "not_a_settlement"


def _money(result: dict) -> dict:
    return {name: result.get(name) for name in reconcile.COMPARED_FIELDS if name in result}
