"""Receipts: what a ledger record prints as (a pure function of the record and the clinic
and operator names), its ESC/POS bytes, and the QR code that lets anyone verify a printed
receipt offline against the device's public key.

The receipt QR code (text, QR alphanumeric mode):

    YBR1:<base45( signature (64 bytes) || raw DEFLATE(canonical(record), zdict=ZDICT_V1) )>

`canonical(record)` is exactly the bytes the device signed (`ledger.md`), so a verifier
inflates them, checks the Ed25519 signature with the device's public key, and has the
record; its `hash` is the SHA-256 of the same bytes. `ZDICT_V1` is a preset DEFLATE
dictionary of the record's keys, fixed for ever for "YBR1" (a change needs "YBR2").
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import segno
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from drivers import escpos
from drivers.base45 import b45decode, b45encode
from edge.domain import records as rec
from edge.domain import reports
from edge.domain.ledger import b64url, b64url_decode, canonical
from edge.domain.money import format_yuan
from edge.domain.records import MONEY_FIELDS
from edge.services import premium_originals

QR_PREFIX = "YBR1:"
MAX_RECORD_BYTES = 64 * 1024  # a record inflating to more is not a receipt
ZDICT_V1 = (
    b'"reverses":"","reverses_seq":1,"reason":"","amounts":{"business_day":"","from_seq":'
    b'"to_seq":"settlements":{"count":"reversals":{"net":{"daily_close","reversal",'
    b'{"body":{"accumulators_before":{"account_balance":0,"assistance_paid":0,'
    b'"deductible_used":0,"fund_paid":0},"catalog_version":"2026.","insured_id":"320",'
    b'"needs_review":[],"operator":"doc","policy_version":"2026.","result":{'
    b'"accumulators_after":{"account_balance":0,"assistance_paid":0,"deductible_used":0,'
    b'"fund_paid":0},"assistance":0,"cash":0,"deductible_applied":0,"eligible":true,'
    b'"fulamt_total":0,"fund":0,"inscp_total":0,"lines":[{"amount":0,"code":"X",'
    b'"fulamt_ownpay":0,"inscp":0,"overlmt_selfpay":0,"preselfpay":0,"reasons":[]},'
    b'{"amount":0,"code":"","fulamt_ownpay":0,"inscp":0,"overlmt_selfpay":0,'
    b'"preselfpay":0,"reasons":[]}],"overlmt_total":0,"personal_account":0,'
    b'"policy_selfpay":0,"preselfpay_total":0,"total":0,"warnings":[]},"rules_version":1,'
    b'"visit":{"date":"2026-","diagnoses":[],"lines":[{"code":"X","name":"","price":"",'
    b'"quantity":"1","unit":""},{"code":"","name":"","price":"","quantity":"1","unit":""}],'
    b'"use_personal_account":false,"visit_type":"general"}},"created_at":"2026-T:+08:00",'
    b'"device_id":"dev-","kind":"settlement","prev_hash":"","seq":1,"tx_id":"","v":1}'
)
# The receipt is Chinese only (the national 医保结算单); the labels of its payers, visit and
# insurance types are the 日结's (edge/domain/reports.py). A supplement is printed by the
# national field it pays as, its own name on the line below.
VISIT_TYPES = reports.VISIT_TYPES
INSURANCE_TYPES = reports.INSURANCE_TYPES
PAYERS = {name: label for name, label in reports.PAYERS.items() if name not in ("total", "cash")}
SUPPLEMENTS = {
    "veterans_second_compensation": "优抚二次补偿",
    "civil_servant_subsidy": "公务员医疗补助",
}
ITEM_CLASSES = {"A": "甲类", "B": "乙类", "C": "丙类"}
# The premium receipt (收费凭证): how each payment method and the policy's assistance
# categories print; a category it does not know prints by its own name.
PREMIUM_METHODS = reports.PREMIUM_METHODS
CATEGORIES = {
    "extreme_poverty": "特困人员", "low_income_guarantee": "低保对象",
    "severe_disability": "重度残疾", "low_income": "低收入人口",
    "disabled_veteran": "伤残退役军人", "civil_servant": "公务员",
}  # fmt: skip


@dataclass(frozen=True)
class ReceiptFacts:
    """What a receipt shows beyond its record, looked up by the caller: the patient (from
    the roster), the diagnoses' names, each item's class (甲/乙/丙, from the catalog), the
    fund's annual cap for the visit's insurance and visit type (from the policy), and for
    a daily close its report (`edge.domain.reports.close_report`)."""

    patient_name: str = ""
    id_number_masked: str = ""
    insurance_type: str = ""  # "employee" | "resident"
    diagnoses: tuple[tuple[str, str], ...] = ()  # (code, name)
    item_classes: Mapping[str, str] = field(default_factory=dict)  # code -> A | B | C
    annual_cap: int | None = None
    close_report: reports.CloseReport | None = None


def receipt_facts(
    store: Any,
    record: dict,
    *,
    diagnosis_names: Callable[[list[str]], Mapping[str, str]] = lambda codes: {},
) -> ReceiptFacts:
    """What a receipt shows beyond its record, read from the device's store (an
    `edge.ports.DeviceStore`): the roster's name, masked ID and insurance type, each item's
    class in the installed catalog, the policy's annual cap for the visit, and for a daily
    close the report of the records it covers (names and insurance types included).
    `diagnosis_names` gives the names of diagnosis codes."""
    body = record["body"]
    kind = record["kind"]
    if kind == "daily_close":
        return ReceiptFacts(close_report=close_report_of(store, record))
    if kind in ("monthly_close", "yearly_close", "premium", "premium_reversal"):
        return ReceiptFacts()  # its body holds all the receipt shows
    entry = store.insured_person(body["insured_id"], with_accumulators=False)
    facts = ReceiptFacts()
    if entry is not None:
        facts = ReceiptFacts(
            patient_name=entry.name,
            id_number_masked=entry.id_number_masked or "",
            insurance_type=entry.person.insurance_type,
        )
    if kind != "settlement":
        return facts
    visit = body["visit"]
    items = store.catalog_items(line["code"] for line in visit["lines"])
    cap = None
    if entry is not None:
        benefit = store.current_policy().benefits.get(
            (entry.person.insurance_type, visit["visit_type"])
        )
        cap = benefit.annual_cap if benefit is not None else None
    names = diagnosis_names(list(visit.get("diagnoses", [])))
    return ReceiptFacts(
        patient_name=facts.patient_name,
        id_number_masked=facts.id_number_masked,
        insurance_type=facts.insurance_type,
        diagnoses=tuple((code, names.get(code, "")) for code in visit.get("diagnoses", [])),
        item_classes={code: item.item_class for code, item in items.items()},
        annual_cap=cap,
    )


def close_report_of(
    store: Any, record: dict | None, *, now: str = "", operator: str = ""
) -> reports.CloseReport:
    """The 日结 report of a signed close `record`, or with `record` None the preview of
    the close `operator` would sign at `now` (the same body `services.close_day` signs)."""
    if record is None:
        since = list(store.records(after_seq=store.last_seq_of_kind("daily_close")))
        day = rec.closed_business_day(since, now[:10])
        body = rec.daily_close_body(
            since, business_day=day, operator=operator, originals=premium_originals(store, since)
        )
        covered, device_id, created_at = since, store.device().device_id, now
    else:
        body = record["body"]
        low = body.get("from_seq")
        covered = []
        for r in store.records(after_seq=low - 1) if low is not None else ():
            if r["seq"] > body["to_seq"]:
                break  # the records after the close are not its
            covered.append(r)
        device_id, created_at = record["device_id"], record["created_at"]
    people: dict[str, reports.Person] = {}
    originals: dict[str, dict] = {}
    for r in covered:
        insured_id = r["body"].get("insured_id")
        if insured_id and insured_id not in people:
            entry = store.insured_person(insured_id, with_accumulators=False)
            people[insured_id] = reports.Person(
                entry.name if entry else "", entry.person.insurance_type if entry else ""
            )
        if r["kind"] == "reversal":
            original = store.record_by_tx(r["body"]["reverses"])
            if original is not None:
                originals[original["tx_id"]] = original
    signer = store.active_operator(body.get("operator", ""))
    return reports.close_report(
        body, covered, device_id=device_id, created_at=created_at, people=people,
        originals=originals, operator_name=signer[0] if signer else "",
        seq=record["seq"] if record else None, record_hash=record["hash"] if record else "",
        signed=record is not None,
    )  # fmt: skip


class ReceiptError(Exception):
    """A receipt cannot be made or verified; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


# ---- the receipt QR code ---------------------------------------------------------------------


def receipt_qr_payload(record: dict) -> str:
    """The QR text for a sealed record (it must carry its `sig`)."""
    signature = b64url_decode(record["sig"])
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=ZDICT_V1)
    packed = deflate.compress(canonical(record)) + deflate.flush()
    return QR_PREFIX + b45encode(signature + packed)


@dataclass(frozen=True)
class VerifiedReceipt:
    record: dict  # with its recomputed `hash` and its `sig`
    hash: str


def verify_receipt_qr(payload: str, public_key: Ed25519PublicKey) -> VerifiedReceipt:
    """The signed record a receipt's QR code carries, if the device's key signed it."""
    text = payload.strip()
    if not text.startswith(QR_PREFIX):
        raise ReceiptError("BAD_QR", "not a receipt QR code (it starts with YBR1:)")
    try:
        raw = b45decode(text[len(QR_PREFIX) :])
    except ValueError as error:
        raise ReceiptError("BAD_QR", f"not base45: {error}") from None
    if len(raw) <= 64 + 2:
        raise ReceiptError("BAD_QR", "too short to hold a signature and a record")
    signature, packed = raw[:64], raw[64:]
    inflate = zlib.decompressobj(-15, zdict=ZDICT_V1)
    try:
        data = inflate.decompress(packed, MAX_RECORD_BYTES)
    except zlib.error as error:
        raise ReceiptError("BAD_QR", f"the record does not inflate: {error}") from None
    if inflate.unconsumed_tail or not inflate.eof or inflate.unused_data or not data:
        raise ReceiptError("BAD_QR", "the record is empty, cut, too large or followed by more")
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        raise ReceiptError(
            "BAD_SIGNATURE", "the receipt was not signed by this device's key, or was altered"
        ) from None
    record = json.loads(data.decode("utf-8"))  # signed by the device: canonical JSON
    digest = hashlib.sha256(data).hexdigest()
    return VerifiedReceipt({**record, "hash": digest, "sig": b64url(signature)}, digest)


# ---- layout ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    text: str
    align: str = "left"
    bold: bool = False
    big: bool = False


@dataclass(frozen=True)
class QrCode:
    payload: str


@dataclass(frozen=True)
class Receipt:
    blocks: tuple[Line | QrCode, ...]
    width: int = 32
    title: str = field(default="", compare=False)

    def text(self) -> str:
        """The receipt as plain text, exactly as `escpos.render_text` shows its bytes."""
        out = []
        for block in self.blocks:
            if isinstance(block, QrCode):
                out.append(f"[QR {block.payload}]")
            else:
                columns = self.width // 2 if block.big else self.width
                out.append(escpos.place(block.text, columns, block.align))
        return "\n".join(out)


def layout_receipt(
    record: dict,
    *,
    clinic: str,
    operator_name: str | None = None,
    width: int = 32,
    family_holder_name: str | None = None,
    facts: ReceiptFacts | None = None,
) -> Receipt:
    """The receipt (Chinese only) for a settlement (医保结算单), a reversal (冲销单), a
    premium (收费凭证) or its reversal (收费冲正凭证), or a close (日结单, 月结单, 年结单).
    `facts`: what the record does not hold (the patient's name and masked ID, insurance
    type, diagnoses' names, item classes, the annual cap, the close's report); without
    them the receipt shows what the record has. `family_holder_name`:
    the name of the employee whose shared account the family account was (the settlement's
    `visit.family_account_holder`; a reversal's caller looks it up in the settlement it
    reverses); without it the receipt names them by insured id when the record does."""
    facts = facts or ReceiptFacts()
    kind = record.get("kind")
    body = record["body"]
    rule = Line("-" * width)
    operator = body.get("operator", "")
    head = [
        Line(clinic, "center", bold=True),
        Line(f"设备 {record['device_id']}"),
        Line(f"流水号 {record['seq']}"),
        Line(f"时间 {reports.chinese_time(record['created_at'])}"),
        Line(f"操作员 {operator_name or operator}"),
    ]
    if kind == "settlement":
        holder = family_holder_name or body["visit"].get("family_account_holder")
        title, middle = "医保结算单", _settlement(body, width, rule, holder, facts)
    elif kind == "reversal":
        title, middle = "医保结算冲销单", _reversal(body, width, rule, family_holder_name, facts)
    elif kind == "daily_close":
        title, middle = "日结单", _daily_close(record, width, facts, operator_name)
        head = [Line(clinic, "center", bold=True)]
    elif kind in ("monthly_close", "yearly_close"):
        title = reports.period_title(body)
        middle = [Line(p.text, p.align, p.bold) for p in reports.period_lines(
            body, width, device_id=record["device_id"], operator_name=operator_name or "",
            created_at=record["created_at"])]  # fmt: skip
        head = [Line(clinic, "center", bold=True)]
    elif kind == "premium":
        title, middle = "收费凭证", _premium(body, width, rule, family_holder_name)
    elif kind == "premium_reversal":
        title, middle = "收费冲正凭证", _premium_reversal(body, width, rule, family_holder_name)
    else:
        raise ReceiptError("NOT_PRINTABLE", f"a {kind!r} record has no receipt")
    qr = receipt_qr_payload(record)
    tail: list[Line | QrCode] = [
        rule,
        *_wrapped("交易号 ", record["tx_id"], width),
        Line(f"校验码 {record['hash'][:16]}"),
    ]
    if _fits(qr, "L"):
        tail += [QrCode(qr), Line("扫码验签", "center")]
    else:
        tail += [Line("记录过长无法生成二维码", "center"), Line("请用台账导出核验", "center")]
    heading = [Line(title, "center", bold=True, big=True)]
    blocks: list[Line | QrCode] = [*heading, *head, rule, *middle, *tail]
    return Receipt(tuple(_fit(blocks, width)), width, title)


def _fit(blocks: list[Line | QrCode], width: int) -> list[Line | QrCode]:
    """Lines wider than the paper (a long clinic or item name) go on over several lines;
    control characters in them are dropped (`escpos.printable`), so the layout is what
    prints."""
    fitted: list[Line | QrCode] = []
    for block in blocks:
        if isinstance(block, Line):
            block = Line(escpos.printable(block.text), block.align, block.bold, block.big)
        columns = width // 2 if isinstance(block, Line) and block.big else width
        if isinstance(block, QrCode) or escpos.display_width(block.text) <= columns:
            fitted.append(block)
            continue
        for piece in _wrapped("", block.text, columns):
            fitted.append(Line(piece.text, block.align, block.bold, block.big))
    return fitted


def _patient(body: dict, facts: ReceiptFacts, width: int) -> list[Line]:
    lines = []
    if facts.patient_name:
        lines.append(Line(f"姓名 {facts.patient_name}"))
    if facts.id_number_masked:
        lines.append(Line(f"身份证号 {facts.id_number_masked}"))
    lines.append(Line(f"医保编号 {body['insured_id']}"))
    if facts.insurance_type:
        insurance = INSURANCE_TYPES.get(facts.insurance_type, facts.insurance_type)
        lines.append(Line(f"险种 {insurance}"))
    return lines


def _settlement(
    body: dict, width: int, rule: Line, holder: str | None, facts: ReceiptFacts
) -> list[Line]:
    result = body["result"]
    visit = body["visit"]
    names = dict(facts.diagnoses)
    lines = [
        *_patient(body, facts, width),
        Line(f"门诊类别 {VISIT_TYPES.get(visit['visit_type'], visit['visit_type'])}"),
        Line(f"就诊日期 {reports.chinese_day(visit['date'])}"),
    ]
    for index, code in enumerate(visit.get("diagnoses", [])):
        label = "诊断 " if index == 0 else "     "
        lines += _wrapped(label, f"{code} {names.get(code, '')}".strip(), width)
    lines += [rule, _columns("项目  类别 单价×数量", "金额", width)]
    amounts = result["lines"]
    for index, item in enumerate(visit["lines"]):
        amount = amounts[index] if index < len(amounts) else None
        if amount is None or amount["code"] != item["code"]:
            raise ReceiptError("BAD_RECORD", f"line {index} has no matching result")
        item_class = ITEM_CLASSES.get(facts.item_classes.get(item["code"], ""), "")
        lines.append(Line(item["name"]))
        price = f"¥{item['price']}×{item['quantity']}{item['unit']}"
        lines.append(_columns("  " + " ".join(filter(None, (item_class, price))),
                              format_yuan(amount["amount"]), width))  # fmt: skip
        own = amount["preselfpay"] + amount["overlmt_selfpay"]
        lines.append(_columns(f"  自付 {format_yuan(own)}",
                              f"自费 {format_yuan(amount['fulamt_ownpay'])}", width))  # fmt: skip
    own_total = result.get("preselfpay_total", 0) + result.get("overlmt_total", 0)
    lines += [
        rule,
        _columns("医疗费总额", format_yuan(result["total"]), width, bold=True),
        _columns("  其中 自付", format_yuan(own_total), width),
        _columns("       自费", format_yuan(result.get("fulamt_total", 0)), width),
        _columns("       政策内个人负担", format_yuan(result.get("policy_selfpay", 0)), width),
    ]
    if result.get("deductible_applied"):
        lines.append(_columns("       含起付线", format_yuan(result["deductible_applied"]), width))
    lines += _chain_rows(result, width, holder)
    lines.append(_columns("现金支付", format_yuan(result["cash"]), width, bold=True))
    if not result.get("eligible", True):
        lines.append(Line("不享受医保待遇"))
    if body.get("needs_review"):
        lines.append(Line("待县级复核"))
    lines += [rule, *_year_rows(body, facts, width)]
    return lines


def _year_rows(body: dict, facts: ReceiptFacts, width: int) -> list[Line]:
    """The personal account's balance after the visit (employees, or anyone with one) and
    the year so far of the fund for the visit's type: used, and left of the annual cap."""
    after = body["result"].get("accumulators_after", {})
    rows = []
    if facts.insurance_type == "employee" or after.get("account_balance"):
        rows.append(_columns("个人账户余额", format_yuan(after.get("account_balance", 0)), width))
    visit_type = VISIT_TYPES.get(body["visit"]["visit_type"], "")
    used = after.get("fund_paid", 0)
    rows.append(_columns(f"本年{visit_type}统筹已用", format_yuan(used), width))
    if facts.annual_cap is not None:
        rows.append(_columns("本年统筹剩余", format_yuan(max(0, facts.annual_cap - used)), width))
    return rows


FUND_LIMITS = {
    "visit_cap": "本次统筹支付已达单次限额",
    "day_cap": "本次统筹支付已达当日限额",
    "annual_cap": "本次统筹支付已达年度限额",
}


def _chain_rows(result: dict, width: int, holder: str | None) -> list[Line]:
    """Every payer between the total and the cash that paid, in the chain's order: the
    fund (with the cap that held it back below it), critical illness, assistance, each
    supplement (its own name below it), the personal account and the family account
    (whose account below it). A version 1 result has none of the payers version 2 added."""
    rows = _payer_row("fund", result["fund"], width)
    if result.get("fund_limited_by") in FUND_LIMITS:  # why the fund paid no more
        rows += _wrapped("  ", FUND_LIMITS[result["fund_limited_by"]], width)
    for payer in ("critical_illness", "assistance"):
        rows += _payer_row(payer, result.get(payer, 0), width)
    for paid in result.get("supplements", []):
        row = _payer_row(paid["pays_as"], paid["amount"], width)
        if row:
            rows += [*row, *_wrapped("  ", SUPPLEMENTS.get(paid["name"], paid["name"]), width)]
    rows += _payer_row("personal_account", result.get("personal_account", 0), width)
    rows += _family_rows(result.get("family_account", 0), width, holder)
    return rows


def _payer_row(payer: str, fen: int, width: int, sign: int = 1) -> list[Line]:
    if not fen:
        return []
    return [_columns(PAYERS.get(payer, payer), format_yuan(sign * fen), width)]


def _family_rows(fen: int, width: int, holder: str | None, sign: int = 1) -> list[Line]:
    rows = _payer_row("family_account", fen, width, sign)
    if rows and holder:
        rows += _wrapped("  ", f"{holder}的个人账户", width)
    return rows


def _reversal(
    body: dict, width: int, rule: Line, holder: str | None, facts: ReceiptFacts
) -> list[Line]:
    amounts = body["amounts"]
    lines = [
        *_patient(body, facts, width),
        Line(f"冲销原流水号 {body['reverses_seq']}"),
        *_wrapped("原交易号 ", body["reverses"], width),
        *_wrapped("冲销原因 ", body["reason"], width),
        rule,
        _columns("退还合计", format_yuan(-amounts["total"]), width, bold=True),
    ]
    for payer in MONEY_FIELDS[1:-1]:
        if payer == "family_account":
            lines += _family_rows(amounts.get(payer, 0), width, holder, sign=-1)
        else:
            lines += _payer_row(payer, amounts.get(payer, 0), width, sign=-1)
    lines.append(_columns("退还现金", format_yuan(-amounts["cash"]), width, bold=True))
    return lines


def _premium(body: dict, width: int, rule: Line, holder: str | None) -> list[Line]:
    """The 收费凭证 of a premium: the year, the payer, each person covered with what was
    due, what the state pays and what was paid, then the totals and how it was paid."""
    payer = body["payer"]
    lines = [
        Line(f"城乡居民医保 {body['year']}年度保费"),
        *_wrapped("缴费人 ", payer["name"], width),
    ]
    if payer.get("insured_id"):
        lines.append(Line(f"  医保编号 {payer['insured_id']}"))
    lines.append(rule)
    for person in body["persons"]:
        lines += [
            _columns(person["name"], person["insured_id"], width),
            _columns("  应缴", format_yuan(person["due"]), width),
        ]
        if person["state_pays"]:
            labels = "、".join(CATEGORIES.get(c, c) for c in person.get("categories", []))
            lines.append(_columns("  政府资助", format_yuan(person["state_pays"]), width))
            if labels:
                lines += _wrapped("    ", labels, width)
        lines.append(_columns("  个人缴纳", format_yuan(person["amount"]), width))
    lines += [
        rule,
        _columns(f"参保人 {len(body['persons'])}人", "", width),
        _columns("政府资助合计", format_yuan(body["state_paid"]), width),
        _columns("实收金额", format_yuan(body["amount"]), width, bold=True),
        *_method_rows(body, width, holder),
    ]
    return lines


def _method_rows(body: dict, width: int, holder: str | None) -> list[Line]:
    method = body["method"]
    rows = [Line(f"缴费方式 {PREMIUM_METHODS.get(method, method)}")]
    if body.get("reference"):
        rows += _wrapped("交易单号 ", body["reference"], width)
    if method == "family_account":
        rows += _wrapped("  ", f"{holder or body.get('account_holder') or ''}的个人账户", width)
        if body.get("account_balance_after") is not None:
            rows.append(_columns("  账户余额", format_yuan(body["account_balance_after"]), width))
    return rows


def _premium_reversal(body: dict, width: int, rule: Line, holder: str | None) -> list[Line]:
    return [
        Line(f"冲正原流水号 {body['reverses_seq']}"),
        *_wrapped("原交易号 ", body["reverses"], width),
        *_wrapped("冲正原因 ", body["reason"], width),
        rule,
        _columns("退还金额", format_yuan(-body["amount"]), width, bold=True),
        *_method_rows(body, width, holder),
    ]


def _daily_close(
    record: dict, width: int, facts: ReceiptFacts, operator_name: str | None
) -> list[Line]:
    """The 日结 (`edge.domain.reports`): from the facts' report, else from the close record
    alone (its totals, without the transaction list)."""
    report = facts.close_report or reports.close_report(
        record["body"], None, device_id=record["device_id"], created_at=record["created_at"],
        operator_name=operator_name or "", seq=record["seq"], record_hash=record["hash"],
    )  # fmt: skip
    return [Line(p.text, p.align, p.bold) for p in reports.report_lines(report, width)]


def _columns(left: str, right: str, width: int, bold: bool = False) -> Line:
    gap = max(1, width - escpos.display_width(left) - escpos.display_width(right))
    return Line(left + " " * gap + right, bold=bold)


def _wrapped(label: str, value: str, width: int) -> list[Line]:
    """`label value`, continued on indented lines when it is wider than the paper."""
    lines, current = [], label
    for ch in value:
        if escpos.display_width(current + ch) > width:
            lines.append(Line(current))
            current = "  "
        current += ch
    return [*lines, Line(current)]


# ---- the request slip (业务申请回执) ------------------------------------------------------------

REQUEST_KINDS = {
    "enrolment": "参保登记",
    "renewal": "参保续保",
    "chronic_certificate": "门诊慢特病申请",
    "cross_region_filing": "异地就医备案",
    "complaint": "结算申诉复核",
}
REQUEST_STATES = {
    "pending": "待上传",
    "submitted": "已提交，等待县医保局审核",
    "approved": "已批准",
    "rejected": "已退回",
    "more_info": "需补充材料",
}
FILING_TYPES = {
    "long_term_residence": "异地长期居住",
    "retiree_relocated": "退休异地安置",
    "referral": "转诊转院",
    "posted_worker": "常驻异地工作",
    "temporary": "临时外出就医",
}
GENDERS = {"M": "男", "F": "女"}


def layout_request_slip(
    view: Mapping[str, Any], *, clinic: str, device_id: str, width: int = 32
) -> Receipt:
    """The slip a resident takes home for a request (`edge.service_requests.RequestView`
    as a dict): what was asked, when, its number, and where it stands, with the county's
    reason. Masked data only: the ID number never, even sealed."""
    rule = Line("-" * width)
    details = view.get("details") or {}
    kind = view["kind"]
    lines: list[Line | QrCode] = [
        Line("业务申请回执", "center", bold=True, big=True),
        Line(clinic, "center", bold=True),
        Line(f"设备 {device_id}"),
        Line(f"申请类别 {REQUEST_KINDS.get(kind, kind)}"),
        Line(f"申请时间 {reports.chinese_time(view['created_at'])}"),
        Line(f"流水号 {view['seq']}"),
        rule,
    ]
    applicant = view.get("applicant")
    if view.get("name"):
        lines.append(Line(f"姓名 {view['name']}"))
    if applicant:
        lines.append(Line(f"性别 {GENDERS.get(applicant['gender'], '')}"
                          f"  出生 {reports.chinese_day(applicant['birth_date'])}"))  # fmt: skip
        lines.append(Line(f"身份证号 {applicant['id_number_masked']}"))
    if view.get("insured_id"):
        lines.append(Line(f"医保编号 {view['insured_id']}"))
    lines += _request_details(kind, details, width)
    if view.get("attachments"):
        lines.append(Line(f"附件照片 {len(view['attachments'])} 张"))
    state = view["state"]
    lines += [rule, Line(f"状态 {REQUEST_STATES.get(state, state)}", bold=True)]
    if view.get("decided_at"):
        lines.append(Line(f"审核时间 {reports.chinese_time(view['decided_at'])}"))
    if view.get("reason"):
        lines += _wrapped("原因 ", view["reason"], width)
    result = view.get("result") or {}
    if state == "approved" and result.get("insured_id"):
        lines.append(Line(f"医保编号 {result['insured_id']}"))
        lines.append(Line("名册更新后即可就医结算"))
    if result.get("filing_no"):
        lines.append(Line(f"备案号 {result['filing_no']}"))
    if result.get("valid_from"):
        lines.append(Line(f"有效期 {result['valid_from']} 至 {result.get('valid_to') or '长期'}"))
    if result.get("answer"):
        lines += _wrapped("答复 ", result["answer"], width)
    lines += [
        rule,
        *_wrapped("申请编号 ", view["tx_id"], width),
        Line("请妥善保管，查询时出示", "center"),
    ]
    return Receipt(tuple(_fit(lines, width)), width, "业务申请回执")


def _request_details(kind: str, details: Mapping[str, Any], width: int) -> list[Line]:
    if kind == "renewal":
        return [Line(f"续保年度 {details.get('year')}")]
    if kind == "chronic_certificate":
        scheme = "两病" if details.get("scheme") == "two_diseases" else "门诊慢特病"
        return [*_wrapped("病种 ", f"{details.get('disease_code')} {details.get('disease_name')}",
                          width), Line(f"类别 {scheme}")]  # fmt: skip
    if kind == "cross_region_filing":
        filing = details.get("filing_type", "")
        return [Line(f"备案类型 {FILING_TYPES.get(filing, filing)}"),
                *_wrapped("就医地 ", str(details.get("destination", "")), width),
                Line(f"开始日期 {details.get('valid_from')}")]  # fmt: skip
    if kind == "complaint":
        return [Line(f"申诉结算 流水号 {details.get('settlement_seq')}"),
                *_wrapped("理由 ", str(details.get("grounds", "")), width)]  # fmt: skip
    return []


# ---- ESC/POS ----------------------------------------------------------------------------------


def receipt_escpos(receipt: Receipt, *, paper_dots: int = 384, qr: str = "native") -> bytes:
    """The printer bytes. `qr`: "native" (the printer draws it, GS ( k) or "raster" (we
    draw it, GS v 0, for printers without a QR generator)."""
    out = bytearray(escpos.initialise())
    for block in receipt.blocks:
        if isinstance(block, QrCode):
            out += escpos.align("center") + _qr_bytes(block.payload, paper_dots, qr)
            continue
        out += escpos.align(block.align) + escpos.bold(block.bold) + escpos.size(block.big)
        out += escpos.text_line(block.text)
    out += escpos.size(False) + escpos.bold(False) + escpos.feed(2) + escpos.cut()
    return bytes(out)


def _qr_bytes(payload: str, paper_dots: int, mode: str) -> bytes:
    code = segno.make_qr(payload, error="M", boost_error=False) if _fits(payload, "M") else (
        segno.make_qr(payload, error="L", boost_error=False))  # fmt: skip
    modules = code.symbol_size(border=4)[0]
    module_size = max(1, min(8, int(paper_dots // modules)))
    if mode == "native":
        return escpos.qr_code(payload.encode("ascii"), module_size=module_size,
                              error=code.error.upper())  # fmt: skip
    rows = []
    for row in code.matrix_iter(scale=module_size, border=4):
        rows.append([bool(bit) for bit in row])
    return escpos.raster_image(rows)


def _fits(payload: str, error: str) -> bool:
    try:
        segno.make_qr(payload, error=error, boost_error=False)
    except segno.DataOverflowError:
        return False
    return True
