"""The village service point's requests on the device (docs/service-point.md, "On the
device"): take a request as a signed `service_request` record with its photos, list
them with their state, and apply the county's signed decisions.

A request is checked whole before anything is written; a refusal (`Rejection`, its
message Chinese first) leaves no record and no photo file behind. The ID number of an
enrolment is sealed to the county's encryption key at once and never kept in clear.
"""

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge import services
from edge.adapters.attachments import PART_PREFIX, AttachmentFiles
from edge.adapters.identity import DeviceIdentity
from edge.adapters.sealing import seal
from edge.clock import CLINIC_TZ
from edge.domain import records as rec
from edge.domain import service_point as sp
from edge.domain.ledger import b64url_decode, canonical
from edge.domain.model import Rejection
from edge.ports import RequestStore

STATES = ("pending", "submitted", "approved", "rejected", "more_info")
MAX_LABEL = 40  # characters of a photo's label


def _refuse(code: str, zh: str, en: str) -> Rejection:
    return Rejection(code, f"{zh} / {en}")


# ---- a new request ---------------------------------------------------------------------------


def new_request(
    store: RequestStore,
    identity: DeviceIdentity,
    data_dir: Path,
    *,
    kind: str,
    operator: str,
    insured_id: str | None = None,
    applicant: dict | None = None,
    id_number: str | None = None,
    details: dict,
    photos: Sequence[tuple[bytes, str]] = (),
    note: str | None = None,
    follow_up_of: str | None = None,
    now: datetime,
) -> services.Recorded:
    """Check, seal, keep the photos, then sign and append one `service_request`.
    `photos`: (bytes, label) each, JPEG or PNG; `id_number` only for an enrolment (it is
    sealed, never stored or shown)."""
    if kind not in sp.REQUEST_KINDS:
        raise _refuse("BAD_REQUEST_KIND", f"没有这种申请：{kind!r}", f"no request kind {kind!r}")
    attachments, blobs = _checked_photos(kind, photos)
    files = AttachmentFiles(data_dir)
    written: list[str] = []
    try:
        with store.write_transaction():
            services._require_operator(store, operator)
            services._require_not_revoked(store)
            body = _body(
                store,
                kind=kind,
                operator=operator,
                insured_id=insured_id,
                applicant=applicant,
                id_number=id_number,
                details=details,
                attachments=attachments,
                note=note,
                follow_up_of=follow_up_of,
            )
            # The photos are on disk before the record that names them is signed.
            for data in blobs:
                digest, new = files.store(data)
                if new:
                    written.append(digest)
            record = services.append_record(
                store, identity, "service_request", body, now, insured_id=body["insured_id"]
            )
    except BaseException:
        if written:
            # Refused or failed: the photos no stored request names go again (another
            # request naming the same photo may have committed meanwhile: its file stays).
            # A stray file left when even this fails is taken by the next sweep.
            with contextlib.suppress(Exception):
                sweep_unnamed_photos(store, data_dir)
        raise
    return services.Recorded(record)


def sweep_unnamed_photos(store: RequestStore, data_dir: Path) -> int:
    """Remove the photo files no stored request names, and unfinished ones: left by a crash
    between writing a request's photos and committing it. Photos are written inside the
    request's write transaction, so none is in flight while this holds the lock. Returns
    how many files it removed."""
    files = AttachmentFiles(data_dir)
    removed = 0
    with store.write_transaction():
        for name in files.stored_names():
            if name.startswith(PART_PREFIX) or (
                sp.is_sha256_hex(name) and not store.attachment_named(name)
            ):
                files.remove_name(name)
                removed += 1
    return removed


def _checked_photos(
    kind: str, photos: Sequence[tuple[bytes, str]]
) -> tuple[list[dict], list[bytes]]:
    photos = list(photos or [])
    if len(photos) > sp.MAX_ATTACHMENTS:
        raise _refuse(
            "TOO_MANY_PHOTOS",
            f"照片最多 {sp.MAX_ATTACHMENTS} 张",
            f"at most {sp.MAX_ATTACHMENTS} photos",
        )
    if kind == "chronic_certificate" and not photos:
        raise _refuse(
            "PHOTO_REQUIRED",
            "慢病申请至少需要一张诊断证明照片",
            "a chronic-disease application needs at least one photo",
        )
    attachments, blobs, total = [], [], 0
    for index, (data, label) in enumerate(photos, 1):
        if not isinstance(data, bytes | bytearray) or not data:
            raise _refuse("BAD_PHOTO", f"第 {index} 张照片是空的", f"photo {index} is empty")
        data = bytes(data)
        content_type = sp.attachment_type(data)
        if content_type is None:
            raise _refuse(
                "PHOTO_TYPE",
                f"第 {index} 张照片不是 JPEG 或 PNG 图片",
                f"photo {index} is not a JPEG or PNG image",
            )
        if len(data) > sp.MAX_ATTACHMENT_BYTES:
            raise _refuse(
                "PHOTO_TOO_LARGE",
                f"第 {index} 张照片超过 3 MB",
                f"photo {index} is over 3 MiB ({len(data)} bytes)",
            )
        total += len(data)
        if total > sp.MAX_REQUEST_BYTES:
            raise _refuse(
                "PHOTOS_TOO_LARGE", "照片合计超过 12 MB", "the photos are over 12 MiB in all"
            )
        label = (label or "").strip() or f"照片{index}"
        if len(label) > MAX_LABEL:
            raise _refuse(
                "BAD_PHOTO",
                f"第 {index} 张照片的说明太长（最多 {MAX_LABEL} 字）",
                f"photo {index}'s label is over {MAX_LABEL} characters",
            )
        attachments.append(
            {
                "sha256": hashlib.sha256(data).hexdigest(),
                "type": content_type,
                "bytes": len(data),
                "label": label,
            }
        )
        blobs.append(data)
    return attachments, blobs


def _body(
    store: RequestStore,
    *,
    kind: str,
    operator: str,
    insured_id: str | None,
    applicant: dict | None,
    id_number: str | None,
    details: dict,
    attachments: list[dict],
    note: str | None,
    follow_up_of: str | None,
) -> dict:
    """The record's body (the store indexes it as it appends it); refused on any problem."""
    if not isinstance(details, dict):
        raise _refuse("BAD_INPUT", "申请内容不完整", "the request's details are not an object")
    problem = sp.details_problem(kind, details)
    if problem:
        raise _refuse("BAD_INPUT", f"申请内容有误：{problem}", f"the request's details: {problem}")
    sealed = None
    if kind == "enrolment":
        if insured_id:
            raise _refuse(
                "BAD_INPUT",
                "参保登记不填医保编号（由县医保局编号）",
                "an enrolment has no insured id (the county gives one)",
            )
        key = store.county_encryption_key()
        if key is None:
            raise _refuse(
                "ENCRYPTION_KEY_MISSING",
                "先同步一次以取得县医保局的加密公钥",
                "sync once first to get the county's encryption key",
            )
        applicant = _applicant(applicant, id_number)
        sealed = seal(id_number, key)  # type: ignore[arg-type]  # checked by _applicant
    else:
        if applicant is not None or id_number:
            raise _refuse(
                "BAD_INPUT",
                "只有参保登记才填申请人和身份证号",
                "only an enrolment takes an applicant and an ID number",
            )
        entry = store.insured_person(insured_id or "", with_accumulators=False)
        if entry is None:
            raise _refuse(
                "UNKNOWN_PERSON",
                f"名册中没有参保人 {insured_id!r}",
                f"insured person {insured_id!r} is not in the roster",
            )
    if kind == "complaint":
        _check_complaint(store, details, insured_id)
    if kind == "renewal" and details.get("premium_tx_id") is not None:
        _check_renewal_premium(store, details, insured_id)
    if follow_up_of is not None:
        _check_follow_up(store, follow_up_of, kind)
    if note is not None:
        note = note.strip() or None
    body = {
        "kind": kind,
        "operator": operator,
        "insured_id": insured_id or None,
        "applicant": applicant,
        "sealed_id_number": sealed,
        "details": details,
        "attachments": attachments,
        "note": note,
        "follow_up_of": follow_up_of,
    }
    problem = rec.body_problem("service_request", body)
    if problem:
        raise _refuse("BAD_INPUT", f"申请不完整：{problem}", f"the request is not valid: {problem}")
    return body


def _applicant(applicant: dict | None, id_number: str | None) -> dict:
    """The applicant as the record keeps it: masked ID only, checked against the number."""
    if not isinstance(applicant, dict):
        raise _refuse(
            "BAD_INPUT",
            "参保登记需要申请人的姓名、性别和出生日期",
            "an enrolment needs the applicant's name, gender and birth date",
        )
    if not id_number:
        raise _refuse(
            "ID_NUMBER_REQUIRED",
            "参保登记需要身份证号",
            "an enrolment needs the applicant's ID number",
        )
    id_number = id_number.strip().upper()
    problem = sp.id_number_problem(id_number)
    if problem:  # bilingual already, and it never repeats the number
        raise Rejection("BAD_ID_NUMBER", problem)
    name = str(applicant.get("name") or "").strip()
    gender = applicant.get("gender")
    birth = str(applicant.get("birth_date") or "")
    if not name or gender not in ("M", "F"):
        raise _refuse(
            "BAD_INPUT",
            "请填写申请人的姓名和性别（M/F）",
            "the applicant's name and gender (M or F) are required",
        )
    try:
        born = date.fromisoformat(birth)
    except ValueError:
        raise _refuse(
            "BAD_INPUT", "出生日期应形如 YYYY-MM-DD", "the birth date must be YYYY-MM-DD"
        ) from None
    # The number holds the birth date (digits 7-14) and the gender (17th: odd for men).
    if id_number[6:14] != born.strftime("%Y%m%d"):
        raise _refuse(
            "ID_NUMBER_MISMATCH",
            "身份证号中的出生日期与所填不符",
            "the ID number's birth date is not the one given",
        )
    if ("M" if int(id_number[16]) % 2 else "F") != gender:
        raise _refuse(
            "ID_NUMBER_MISMATCH",
            "身份证号中的性别与所填不符",
            "the ID number's gender is not the one given",
        )
    return {
        "name": name,
        "gender": gender,
        "birth_date": born.isoformat(),
        "id_number_masked": sp.mask_id_number(id_number),
    }


def _check_complaint(store: RequestStore, details: dict, insured_id: str | None) -> None:
    settlement = store.record_by_tx(str(details.get("settlement_tx_id")))
    if settlement is None or settlement["kind"] != "settlement":
        raise _refuse(
            "UNKNOWN_SETTLEMENT",
            "本机台账中没有这笔结算",
            f"no settlement {details.get('settlement_tx_id')!r} on this device",
        )
    if settlement["seq"] != details.get("settlement_seq"):
        raise _refuse(
            "BAD_INPUT", "结算流水号与交易号不符", "settlement_seq is not that settlement's seq"
        )
    if settlement["body"]["insured_id"] != insured_id:
        raise _refuse(
            "BAD_INPUT",
            "申诉人不是这笔结算的参保人",
            "the complaint's insured person is not the settlement's",
        )
    reversed_by = store.reversal_of(settlement["tx_id"])
    if reversed_by is not None:
        raise _refuse(
            "ALREADY_REVERSED",
            f"这笔结算已被冲销（流水号 {reversed_by}）",
            f"the settlement was reversed by record {reversed_by}",
        )


def _check_renewal_premium(store: RequestStore, details: dict, insured_id: str | None) -> None:
    """The premium a renewal names must be what paid it: a premium of this ledger, not
    reversed, for this person and the year renewed (the county renews on its strength)."""
    tx_id = str(details["premium_tx_id"])
    premium = store.record_by_tx(tx_id)
    if premium is None or premium["kind"] != "premium":
        raise _refuse(
            "UNKNOWN_PREMIUM", "本机台账中没有这笔缴费", f"no premium {tx_id!r} on this device"
        )
    rows = store.premium_rows(tx_id=tx_id, limit=1)
    if rows and rows[0]["reversed_by"] is not None:
        raise _refuse(
            "PREMIUM_REVERSED",
            f"这笔缴费（记录 {premium['seq']}）已冲正，不能用于续保",
            f"premium {premium['seq']} was reversed: it cannot pay a renewal",
        )
    if insured_id not in [p.get("insured_id") for p in premium["body"]["persons"]]:
        raise _refuse(
            "PREMIUM_OTHER_PERSON",
            f"这笔缴费（记录 {premium['seq']}）不包括该参保人",
            f"premium {premium['seq']} does not cover this insured person",
        )
    if premium["body"]["year"] != details.get("year"):
        raise _refuse(
            "PREMIUM_OTHER_YEAR",
            f"这笔缴费是 {premium['body']['year']} 年度的，不是续保的 {details.get('year')} 年度",
            f"premium {premium['seq']} is for {premium['body']['year']},"
            f" not the year renewed ({details.get('year')})",
        )


def _check_follow_up(store: RequestStore, tx_id: str, kind: str) -> None:
    rows = store.request_rows(tx_id=tx_id, limit=1)
    if not rows:
        raise _refuse("UNKNOWN_REQUEST", "本机没有这项申请", f"no request {tx_id!r} on this device")
    if rows[0]["kind"] != kind:
        raise _refuse(
            "BAD_INPUT",
            "补充材料须与原申请同类",
            f"a follow-up of a {rows[0]['kind']} request is a {rows[0]['kind']}",
        )
    if rows[0]["state"] != "more_info":
        raise _refuse(
            "NOT_ASKED",
            "县医保局没有要求这项申请补充材料",
            "the county has not asked for more on this request",
        )


# ---- what the device shows -------------------------------------------------------------------


@dataclass(frozen=True)
class RequestView:
    tx_id: str
    seq: int
    kind: str
    created_at: str
    insured_id: str | None
    name: str | None
    state: str  # pending | submitted | approved | rejected | more_info
    reason: str | None
    result: dict | None
    decided_at: str | None
    attachments: list[dict] = field(default_factory=list)
    follow_ups: list[str] = field(default_factory=list)
    follow_up_of: str | None = None
    details: dict = field(default_factory=dict)
    applicant: dict | None = None  # masked: never the ID number
    operator: str = ""
    note: str | None = None
    decisions: list[dict] = field(default_factory=list)  # {serial, outcome, reason, …}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def requests(
    store: RequestStore, *, kind: str | None = None, state: str | None = None, limit: int = 200
) -> list[RequestView]:
    """The device's requests, newest first."""
    if state is not None and state not in STATES:
        raise _refuse("BAD_INPUT", f"没有这种状态：{state!r}", f"no state {state!r}")
    if kind is not None and kind not in sp.REQUEST_KINDS:
        raise _refuse("BAD_REQUEST_KIND", f"没有这种申请：{kind!r}", f"no request kind {kind!r}")
    return [
        _view(store, row, full=False)
        for row in store.request_rows(kind=kind, state=state, limit=limit)
    ]


def request(store: RequestStore, tx_id: str) -> RequestView:
    """One request by tx_id (or its ledger seq), with its photos, follow-ups and decisions."""
    rows = store.request_rows(tx_id=tx_id, limit=1)
    if not rows and tx_id.isdigit():
        rows = store.request_rows(seq=int(tx_id), limit=1)
    if not rows:
        raise _refuse("UNKNOWN_REQUEST", "本机没有这项申请", f"no request {tx_id!r} on this device")
    return _view(store, rows[0], full=True)


def _view(store: RequestStore, row: dict, *, full: bool) -> RequestView:
    record = store.record_by_tx(row["tx_id"]) or {"body": {}}
    body = record["body"]
    decisions = []
    if full:
        for document in store.request_decisions(row["tx_id"]):
            decision = document["decision"]
            decisions.append(
                {
                    "serial": decision["serial"],
                    "outcome": decision["outcome"],
                    "reason": decision.get("reason"),
                    "result": decision.get("result"),
                    "decided_at": decision["decided_at"],
                    "received_at": document["received_at"],
                }
            )
    return RequestView(
        tx_id=row["tx_id"],
        seq=row["seq"],
        kind=row["kind"],
        created_at=row["created_at"],
        insured_id=row["insured_id"],
        name=row["name"],
        state=row["state"],
        reason=row["reason"],
        result=row["result"],
        decided_at=row["decided_at"],
        attachments=store.request_attachments(row["tx_id"]),
        follow_ups=store.request_follow_ups(row["tx_id"]) if full else [],
        follow_up_of=row["follow_up_of"],
        details=dict(body.get("details") or {}),
        applicant=body.get("applicant"),
        operator=body.get("operator", ""),
        note=body.get("note"),
        decisions=decisions,
    )


# ---- the county's decisions ------------------------------------------------------------------


def apply_decision(
    store: RequestStore,
    identity: DeviceIdentity,
    document: Any,
    county_public_key_b64: str,
    now: datetime,
) -> str:
    """Keep one signed decision of the county (`docs/service-point.md`) and sign a
    `request_decided` event: "applied", or "known" for a serial already kept. Refused
    (`Rejection` with a code, nothing changed): a document that is not one, a signature
    the pinned county key did not make, another device's, or one for a request this
    device never made."""
    if not isinstance(document, dict) or set(document) != {"decision", "signature"}:
        raise _refuse(
            "BAD_DECISION",
            "县医保局的决定格式有误",
            "not a decision document {decision, signature}",
        )
    decision = document["decision"]
    problem = sp.decision_problem(decision) if isinstance(decision, dict) else "not an object"
    if problem:
        raise _refuse(
            "BAD_DECISION",
            f"县医保局的决定格式有误：{problem}",
            f"the decision is not valid: {problem}",
        )
    try:
        key = Ed25519PublicKey.from_public_bytes(b64url_decode(county_public_key_b64))
        key.verify(b64url_decode(str(document["signature"])), canonical(decision))
    except (InvalidSignature, ValueError, TypeError):
        raise _refuse(
            "BAD_DECISION_SIGNATURE",
            "决定的签名不是县医保局的",
            "the decision is not signed by the county's key",
        ) from None
    if decision["device_id"] != identity.device_id:
        raise _refuse(
            "DECISION_OTHER_DEVICE",
            "这项决定是给另一台设备的",
            f"the decision is for device {decision['device_id']}",
        )
    with store.write_transaction():
        known = store.decision(decision["serial"])
        if known is not None:
            if known["decision"] != decision:
                raise _refuse(
                    "DECISION_CONFLICT",
                    "同一编号的决定内容不同",
                    f"decision {decision['serial']} differs from the one kept",
                )
            return "known"
        rows = store.request_rows(tx_id=decision["request_tx_id"], limit=1)
        if not rows:
            raise _refuse(
                "UNKNOWN_REQUEST",
                "本机没有这项申请",
                f"no request {decision['request_tx_id']!r} on this device",
            )
        if rows[0]["kind"] != decision["request_kind"]:
            raise _refuse(
                "BAD_DECISION",
                "决定的申请类别与本机申请不符",
                "the decision's request_kind is not the request's",
            )
        store.save_decision(document, _stamp(now))
        event = {
            "event": "request_decided",
            "request_tx_id": decision["request_tx_id"],
            "serial": decision["serial"],
            "outcome": decision["outcome"],
        }
        services.record_event(store, identity, event, now)
    return "applied"


def _stamp(now: datetime) -> str:
    return now.astimezone(CLINIC_TZ).replace(microsecond=0).isoformat()
