"""The village service point at the county (`docs/service-point.md`): the requests and
premiums devices upload, indexed at ingest (`sync.hub.service_index`); the queue the
county decides from; the county's signed decisions, which devices fetch; approved
enrolments, renewals and certificates published at once in a new roster version; the
premiums collected per clinic with the cash each must hand over.
"""

import hashlib
from datetime import date, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edge.adapters.sealing import open_sealed
from edge.domain.ledger import b64url
from edge.domain.records import MONEY_FIELDS, NATIONAL_NAMES, payer_amounts
from edge.domain.service_point import (
    MAX_ATTACHMENT_BYTES,
    OUTCOMES,
    REQUEST_KINDS,
    ROSTER_KINDS,
    attachment_type,
    decision_problem,
    is_sha256_hex,
    mask_id_number,
    next_roster_version,
)
from sync.hub.model import HubError, HubStoreError
from sync.hub.ports import HubStore
from sync.hub.services import publishing
from sync.protocol import SyncError, canonical_json, iso

KINDS = REQUEST_KINDS
STATES = ("pending", *OUTCOMES)
DECISIONS_PAGE = 200
# A roster republished for a decision whose newest one has expired stays valid this long.
ROSTER_VALIDITY = timedelta(days=90)


class RequestNotFound(HubError):
    """No such request, or not one of the township the caller may see (the same answer:
    a coordinator learns nothing of other townships)."""


# ---- the queue ------------------------------------------------------------------------


def _summary(row: dict) -> dict:
    """A request as listed: never the sealed ID number, only whether there is one."""
    summary = {k: v for k, v in row.items() if k != "sealed_id_number"}
    summary["id_number_sealed"] = row["sealed_id_number"] is not None
    return summary


def list_requests(
    store: HubStore,
    *,
    township: str | None,
    kind: str | None,
    state: str | None,
    limit: int = 500,
) -> list[dict]:
    """The requests of `township` (None: all; a coordinator passes their own), oldest
    first; a follow-up is shown with the request it answers, not on its own."""
    if kind is not None and kind not in KINDS:
        raise HubError(f"未知的申请类型 / unknown request kind {kind!r}: {', '.join(KINDS)}")
    if state is not None and state not in STATES:
        raise HubError(f"未知的状态 / unknown state {state!r}: {', '.join(STATES)}")
    rows = store.service_requests(township=township, kind=kind, state=state, limit=limit)
    return [_summary(row) for row in rows]


def _request_of(store: HubStore, tx_id: str, township: str | None) -> dict:
    row = store.service_request(tx_id)
    if row is None or (township is not None and row["township"] != township):
        raise RequestNotFound(f"没有这个申请 / no request {tx_id!r}")
    return row


def request_detail(
    store: HubStore,
    tx_id: str,
    *,
    township: str | None,
    seal_key: X25519PrivateKey | None = None,
) -> dict:
    """One request as the county decides it: its photos (received or not), the follow-ups
    that answer it, the decisions so far; for a complaint, the settlement it names and
    the county's recomputation of it beside the device's amounts. The ID number is opened
    only with `seal_key` (shown on demand, never logged)."""
    row = _request_of(store, tx_id, township)
    detail = _summary(row)
    detail["id_number"] = None
    detail["id_number_differs_from_mask"] = False
    if seal_key is not None and row["sealed_id_number"] is not None:
        try:
            detail["id_number"] = open_sealed(row["sealed_id_number"], seal_key)
        except (ValueError, KeyError, TypeError) as error:
            detail["id_number_problem"] = f"无法解密 / cannot be opened: {type(error).__name__}"
        else:
            # The mask was typed beside the number on the device: one that is not this
            # number's means the record (or the device) is not to be trusted as it is.
            masked = (row["applicant"] or {}).get("id_number_masked")
            detail["id_number_differs_from_mask"] = masked != mask_id_number(detail["id_number"])
    follow_ups = [
        _summary(r)
        for r in store.service_requests(follow_ups_of=tx_id, limit=50)
        if r["device_id"] == row["device_id"]
    ]
    named = [a for r in [row, *follow_ups] for a in r["attachments"]]
    received = store.attachments_received(
        row["device_id"], (a["sha256"] for a in named if isinstance(a.get("sha256"), str))
    )
    detail["attachments"] = _attachments(row["attachments"], received)
    for follow_up in follow_ups:
        follow_up["attachments"] = _attachments(follow_up["attachments"], received)
    detail["follow_ups"] = follow_ups
    detail["decisions"] = [d["decision"] for d in store.decisions_of_request(tx_id)]
    if row["kind"] == "complaint":
        detail["settlement"] = _disputed_settlement(store, row)
    return detail


def _attachments(named: list[dict], received: dict[str, tuple[str, int, str]]) -> list[dict]:
    shown = []
    for item in named:
        sha = item.get("sha256")
        got = received.get(sha) if isinstance(sha, str) else None
        shown.append(
            {
                "sha256": sha,
                "type": item.get("type"),
                "bytes": item.get("bytes"),
                "label": item.get("label"),
                "received": got is not None,
                "received_at": got[2] if got else None,
            }
        )
    return shown


def _payers(result: dict | None) -> dict[str, int] | None:
    """A settlement result's split by national payer name ({hifp_pay: fen, …})."""
    if not isinstance(result, dict):
        return None
    amounts = payer_amounts(result)
    return {NATIONAL_NAMES[name]: amounts[name] for name in MONEY_FIELDS}


def _disputed_settlement(store: HubStore, row: dict) -> dict:
    """The settlement a complaint names (of the same device), and the county's figures."""
    settlement_tx = row["details"].get("settlement_tx_id")
    record = (
        store.record_by_tx(row["device_id"], settlement_tx)
        if isinstance(settlement_tx, str)
        else None
    )
    if record is None or record["kind"] != "settlement":
        return {"tx_id": settlement_tx, "found": False}
    recomputed = store.recomputation_of(row["device_id"], settlement_tx)
    return {
        "tx_id": settlement_tx,
        "found": True,
        "seq": record["seq"],
        "created_at": record["created_at"],
        "insured_id": record["body"].get("insured_id"),
        "visit": record["body"].get("visit"),
        "device": _payers(record["body"].get("result")),
        "recomputation_status": recomputed[0] if recomputed else None,
        "recomputed": _payers(recomputed[1]) if recomputed else None,
    }


def attachment(
    store: HubStore, sha256: str, *, township: str | None, device_id: str | None = None
) -> tuple[str, bytes]:
    """A received photo a request of `township` names (of `device_id`'s requests when
    given): (content type, bytes). Each device's copy is its own: the same bytes from
    two devices are two photos, each shown to whoever may see that device's request."""
    for holder in store.attachment_devices(sha256):
        if device_id is not None and holder != device_id:
            continue
        naming = [
            r
            for r in store.requests_naming_attachment(holder, sha256)
            if any(a.get("sha256") == sha256 for a in r["attachments"])
        ]
        kept = store.attachment(sha256, holder)
        if kept is not None and any(township is None or r["township"] == township for r in naming):
            return kept
    raise RequestNotFound(f"没有这张照片 / no photo {sha256[:16]}")


# ---- photos from the devices ----------------------------------------------------------


def store_attachment(
    store: HubStore, device_id: str, sha256: str, content_type: str, data: bytes, now: datetime
) -> dict:
    """Keep a photo an authenticated device uploads after the request naming it; a
    refusal stores nothing; a repeat is stored again (no change)."""
    if not is_sha256_hex(sha256):
        raise SyncError("ATTACHMENT_HASH_MISMATCH", "the name is not a SHA-256 in lower-case hex")
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise SyncError("ATTACHMENT_TOO_LARGE", f"{len(data)} bytes")
    kind = content_type.split(";")[0].strip().lower()
    if attachment_type(data) is None or attachment_type(data) != kind:
        raise SyncError("ATTACHMENT_TYPE", f"{kind[:40] or 'no type'}")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise SyncError("ATTACHMENT_HASH_MISMATCH")
    with store.unit_of_work():
        named = [
            a
            for r in store.requests_naming_attachment(device_id, sha256)
            for a in r["attachments"]
            if a.get("sha256") == sha256
        ]
        if not named:
            raise SyncError("ATTACHMENT_UNKNOWN", sha256[:16])
        if any(a.get("type") != kind or a.get("bytes") != len(data) for a in named):
            raise SyncError("ATTACHMENT_TYPE", "not the type or size the request names")
        store.add_attachment(sha256, device_id, kind, data, iso(now))
    return {"stored": True, "sha256": sha256}


# ---- decisions ------------------------------------------------------------------------


def decide(
    store: HubStore,
    county_key: Ed25519PrivateKey,
    tx_id: str,
    *,
    outcome: str,
    reason: str | None,
    decided_by: str,
    township: str | None,
    now: datetime,
    insured_id: str | None = None,
    waiting_until: str | None = None,
    valid_from: str | None = None,
    valid_to: str | None = None,
    filing_no: str | None = None,
    answer: str | None = None,
    correction: bool = False,
) -> dict:
    """Decide a pending request of `township` (None: any; an admin): sign the decision
    for its device, move the request to `outcome`; an approved enrolment, renewal or
    chronic certificate publishes the next roster version with the changed person, in
    the same transaction. Returns the signed decision document."""
    if outcome not in OUTCOMES:
        raise HubError(f"未知的决定 / unknown outcome {outcome!r}: {', '.join(OUTCOMES)}")
    reason = (reason or "").strip() or None
    if outcome != "approved" and reason is None:
        raise HubError("不批准或要求补充材料时必须写明原因 / a reason is required unless approved")
    if not decided_by:
        raise HubError("请写明决定人 / say who decides (--by)")
    for name, value in (
        ("waiting_until", waiting_until),
        ("valid_from", valid_from),
        ("valid_to", valid_to),
    ):
        if value is not None:
            _date(value, name)
    with store.unit_of_work():
        row = _request_of(store, tx_id, township)
        if row["state"] != "pending":
            raise HubError(
                f"这个申请不在待处理状态（{row['state']}）/ the request is {row['state']},"
                " not pending"
            )
        original = row["follow_up_of"] and store.service_request(row["follow_up_of"])
        if original and original["device_id"] == row["device_id"]:
            raise HubError(
                f"这是对申请 {original['tx_id']} 的补充材料，请处理原申请"
                f" / this answers request {original['tx_id']}: decide that one"
            )
        # Taken first: on PostgreSQL it locks decisions to the end of this unit of work, so
        # two approvals never build the same next roster version from the same base.
        serial = store.next_decision_serial()
        result = None
        # A complaint's answer travels whether it is upheld or the settlement stands.
        if outcome == "approved" or (row["kind"] == "complaint" and outcome == "rejected"):
            result = _result(
                store,
                county_key,
                row,
                outcome=outcome,
                now=now,
                insured_id=insured_id,
                waiting_until=waiting_until,
                valid_from=valid_from,
                valid_to=valid_to,
                filing_no=filing_no,
                answer=answer,
                correction=correction,
            )
        decision = {
            "v": 1,
            "kind": "request_decision",
            "serial": serial,
            "device_id": row["device_id"],
            "clinic": row["clinic"],
            "request_tx_id": tx_id,
            "request_kind": row["kind"],
            "outcome": outcome,
            "reason": reason,
            "decided_by": decided_by,
            "decided_at": iso(now),
            "result": result,
        }
        problem = decision_problem(decision)
        if problem is not None:  # e.g. a date the county typed that is not one
            raise HubError(f"决定格式不正确，未保存 / the decision is not well-formed: {problem}")
        document = {
            "decision": decision,
            "signature": b64url(county_key.sign(canonical_json(decision))),
        }
        store.add_decision(decision, document)
        if not store.set_request_state(tx_id, outcome, iso(now), expected="pending"):
            raise HubError("这个申请刚被别人处理过 / someone decided the request meanwhile")
    return document


def _date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise HubError(f"{name} 不是日期 / {name} is not a date YYYY-MM-DD: {value!r}") from None


def _result(
    store: HubStore,
    county_key: Ed25519PrivateKey,
    row: dict,
    *,
    outcome: str,
    now: datetime,
    insured_id: str | None,
    waiting_until: str | None,
    valid_from: str | None,
    valid_to: str | None,
    filing_no: str | None,
    answer: str | None,
    correction: bool,
) -> dict:
    kind, details = row["kind"], row["details"]
    if kind == "complaint":
        answer = (answer or "").strip()
        if not answer:
            raise HubError("投诉的答复不能为空 / a complaint needs an answer (--answer)")
        disputed = _disputed_settlement(store, row)
        return {
            "answer": answer,
            "recomputed": disputed.get("recomputed"),
            "device": disputed.get("device"),
            "correction": bool(correction) and outcome == "approved",
        }
    if kind == "cross_region_filing":
        start = valid_from or details.get("valid_from") or now.date().isoformat()
        end = valid_to if valid_to is not None else details.get("valid_to")
        return {
            "filing_no": filing_no or f"YD{now:%Y%m%d}{row['seq']:06d}",
            "valid_from": start,
            "valid_to": end,
        }
    if kind not in ROSTER_KINDS:
        raise HubError(f"不能批准这种申请 / cannot approve a request of kind {kind!r}")
    return _publish_person(
        store,
        county_key,
        row,
        now=now,
        insured_id=insured_id,
        waiting_until=waiting_until,
        valid_from=valid_from,
        valid_to=valid_to,
    )


def _publish_person(
    store: HubStore,
    county_key: Ed25519PrivateKey,
    row: dict,
    *,
    now: datetime,
    insured_id: str | None,
    waiting_until: str | None,
    valid_from: str | None,
    valid_to: str | None,
) -> dict:
    latest = store.latest_publication("roster")
    if latest is None:
        raise HubError("县医保局尚未发布参保名单 / the county has published no roster yet")
    persons = [dict(p) for p in latest.content.get("persons", [])]
    by_id = {p["insured_id"]: i for i, p in enumerate(persons)}
    kind, details = row["kind"], row["details"]
    result: dict[str, Any]
    if kind == "enrolment":
        person = _new_person(row, persons, insured_id, waiting_until)
        if person["insured_id"] in by_id:
            raise HubError(
                f"参保编号 {person['insured_id']} 已在名单中 / {person['insured_id']} is"
                " already on the roster"
            )
        persons.append(person)
        result = {"insured_id": person["insured_id"]}
    else:
        index = by_id.get(row["insured_id"] or "")
        if index is None:
            raise HubError(
                f"名单中没有参保人 {row['insured_id']} / {row['insured_id']} is not on the roster"
            )
        person = dict(persons[index])
        if kind == "renewal":
            person["status"] = "active"
            if waiting_until is not None:
                person["waiting_until"] = waiting_until
            result = {"year": details.get("year")}
        else:
            start = valid_from or now.date().isoformat()
            certificate = {
                "disease_code": details.get("disease_code"),
                "valid_from": start,
                "valid_to": valid_to,
            }
            person["chronic_certs"] = [
                c
                for c in person.get("chronic_certs") or []
                if c.get("disease_code") != certificate["disease_code"]
            ] + [certificate]
            result = {k: certificate[k] for k in ("disease_code", "valid_from", "valid_to")}
        # The county's running balance and figures, not the last roster's copy: money
        # spent since that roster must not come back when the device installs this one.
        # The balance names how far it counted each device's records (read first, under
        # the recomputation's lock): a device applies its later ones on top.
        counted = store.records_counted(person["insured_id"])
        kept = store.person(person["insured_id"])
        if kept is not None and ("account_balance" in person or kept[1]):
            person["account_balance"] = kept[1]
            person["account_as_of"] = counted
        figures = store.person_figures(person["insured_id"])
        if figures:
            person["accumulators"] = figures
        persons[index] = person
    version = next_roster_version(latest.version)
    expires_at = max(datetime.fromisoformat(latest.expires_at), now + ROSTER_VALIDITY)
    document = {**latest.content, "version": version, "persons": persons}
    try:
        publishing.publish(
            store,
            county_key,
            kind="roster",
            version=version,
            expires_at=expires_at,
            now=now,
            document=document,
            changed=[person["insured_id"]],
        )
    except (publishing.NotNewer, HubStoreError):
        # Another roster was published between reading the newest and adding this one.
        raise HubError(
            f"审批时参保名单刚被另一次发布更新，未作决定，请重新审批"
            f" / the roster was published meanwhile ({version} was taken): nothing was"
            " decided, decide again"
        ) from None
    return {**result, "roster_version": version}


def _new_person(
    row: dict, persons: list[dict], insured_id: str | None, waiting_until: str | None
) -> dict:
    applicant = row["applicant"] or {}
    masked = applicant.get("id_number_masked")
    if not isinstance(masked, str) or len(masked) != 18:
        raise HubError("申请中没有脱敏身份证号 / the request names no masked ID number")
    region = masked[:6]
    if insured_id is None:
        # region(6) + an 8-digit sequence after the roster's highest of that region
        taken = [
            int(p["insured_id"][6:])
            for p in persons
            if p["insured_id"].startswith(region)
            and len(p["insured_id"]) == 14
            and p["insured_id"][6:].isdigit()
        ]
        insured_id = f"{region}{max(taken, default=0) + 1:08d}"
    category = row["details"].get("category")
    person = {
        "insured_id": insured_id,
        "card_no": insured_id,
        "name": applicant.get("name"),
        "gender": applicant.get("gender"),
        "birth_date": applicant.get("birth_date"),
        "id_number_masked": masked,
        "insurance_type": "resident",
        "status": "active",
        "categories": [category] if isinstance(category, str) and category else [],
        "chronic_certs": [],
        "account_balance": 0,
        "region": region,
    }
    if waiting_until is not None:
        person["waiting_until"] = waiting_until
    return person


def decisions_for(store: HubStore, device_id: str, after: int, limit: int = DECISIONS_PAGE) -> dict:
    """A device's signed decisions with a serial above `after`, at most `limit`."""
    documents = store.decisions_for_device(device_id, max(after, 0), limit + 1)
    return {"decisions": documents[:limit], "more": len(documents) > limit}


# ---- premiums -------------------------------------------------------------------------


def premium_totals(store: HubStore, *, year: int | None, township: str | None) -> list[dict]:
    """Per clinic: the premiums collected (count, persons, amount by method, what the
    state paid), those reversed, and the cash the clinic must hand over (cash collected
    less cash given back), summed by the store."""
    totals = store.premium_sums(year=year, township=township)
    for clinic in totals:
        clinic["net_amount"] = clinic["amount"] - clinic["reversed_amount"]
        clinic["cash_to_hand_over"] = clinic["cash"] - clinic["reversed_cash"]
    return totals
