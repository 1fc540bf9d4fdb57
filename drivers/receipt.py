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
from dataclasses import dataclass, field
from datetime import datetime

import segno
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from drivers import escpos
from drivers.base45 import b45decode, b45encode
from edge.domain.ledger import b64url, b64url_decode, canonical
from edge.domain.money import format_yuan
from edge.domain.records import MONEY_FIELDS

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
VISIT_TYPES = {
    "general": "普通门诊 general",
    "chronic": "慢特病门诊 chronic",
    "two_diseases": "两病门诊 two diseases",
}
# The payers of the one-stop chain (settlement-rules-v2.md), Chinese first; a supplement
# is printed by the national field it pays as, its own name on the line below.
PAYERS = {
    "fund": "统筹基金 fund",
    "critical_illness": "大病保险 critical",
    "assistance": "医疗救助 assistance",
    "cvlserv_pay": "公务员补助 civil srv",
    "oth_pay": "优抚补助 veterans",
    "personal_account": "个人账户 account",
    "family_account": "家庭共济 family",
}
SUPPLEMENTS = {
    "veterans_second_compensation": "优抚二次补偿",
    "civil_servant_subsidy": "公务员医疗补助",
}


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
) -> Receipt:
    """The receipt for a settlement, a reversal or a daily close. `family_holder_name`:
    the name of the employee whose shared account the family account was (the settlement's
    `visit.family_account_holder`; a reversal's caller looks it up in the settlement it
    reverses); without it the receipt names them by insured id when the record does."""
    kind = record.get("kind")
    body = record["body"]
    rule = Line("-" * width)
    operator = body.get("operator", "")
    operator_text = f"{operator_name} ({operator})" if operator_name else operator
    head = [
        Line(clinic, "center", bold=True),
        Line(f"设备 {record['device_id']}"),
        Line(f"流水号 seq {record['seq']}"),
        Line(f"时间 {_local_time(record['created_at'])}"),
        Line(f"操作员 {operator_text}"),
    ]
    if kind == "settlement":
        holder = family_holder_name or body["visit"].get("family_account_holder")
        title, middle = "医保结算单", _settlement(body, width, rule, holder)
    elif kind == "reversal":
        title, middle = "医保结算冲销单", _reversal(body, width, rule, family_holder_name)
    elif kind == "daily_close":
        title, middle = "日结单", _daily_close(body, width, rule)
    else:
        raise ReceiptError("NOT_PRINTABLE", f"a {kind!r} record has no receipt")
    subtitle = {"settlement": "Settlement receipt", "reversal": "Settlement reversal",
                "daily_close": "Daily close"}[kind]  # fmt: skip
    qr = receipt_qr_payload(record)
    tail: list[Line | QrCode] = [
        rule,
        *_wrapped("交易号 tx ", record["tx_id"], width),
        Line(f"哈希 hash {record['hash'][:16]}"),
    ]
    if _fits(qr, "L"):
        tail += [QrCode(qr), Line("扫码验签 scan to verify", "center")]
    else:
        tail += [
            Line("记录过长无法生成二维码", "center"),
            Line("verify with the ledger export", "center"),
        ]
    heading = [Line(title, "center", bold=True, big=True), Line(subtitle, "center")]
    blocks: list[Line | QrCode] = [*heading, *head, rule, *middle, *tail]
    return Receipt(tuple(_fit(blocks, width)), width, title)


def _fit(blocks: list[Line | QrCode], width: int) -> list[Line | QrCode]:
    """Lines wider than the paper (a long clinic or item name) go on over several lines."""
    fitted: list[Line | QrCode] = []
    for block in blocks:
        columns = width // 2 if isinstance(block, Line) and block.big else width
        if isinstance(block, QrCode) or escpos.display_width(block.text) <= columns:
            fitted.append(block)
            continue
        for piece in _wrapped("", block.text, columns):
            fitted.append(Line(piece.text, block.align, block.bold, block.big))
    return fitted


def _settlement(body: dict, width: int, rule: Line, holder: str | None) -> list[Line]:
    result = body["result"]
    visit = body["visit"]
    lines = [
        Line(f"参保人 insured {body['insured_id']}"),
        Line(f"就诊 date {visit['date']}"),
        Line(f"类型 type {VISIT_TYPES.get(visit['visit_type'], visit['visit_type'])}"),
        rule,
    ]
    amounts = result["lines"]
    for index, item in enumerate(visit["lines"]):
        amount = amounts[index]["amount"] if index < len(amounts) else None
        if amount is None or amounts[index]["code"] != item["code"]:
            raise ReceiptError("BAD_RECORD", f"line {index} has no matching result")
        lines.append(Line(item["name"]))
        lines.append(_columns(f"  ¥{item['price']} x {item['quantity']}{item['unit']}",
                              format_yuan(amount), width))  # fmt: skip
    lines += [rule, _columns("合计 total", format_yuan(result["total"]), width, bold=True)]
    lines += _chain_rows(result, width, holder)
    lines.append(_columns("现金 cash", format_yuan(result["cash"]), width, bold=True))
    if not result.get("eligible", True):
        lines.append(Line("不享受医保待遇 not eligible"))
    if body.get("needs_review"):
        lines.append(Line("待县级复核 needs county review"))
    return lines


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


def _reversal(body: dict, width: int, rule: Line, holder: str | None) -> list[Line]:
    amounts = body["amounts"]
    lines = [
        Line(f"参保人 insured {body['insured_id']}"),
        Line(f"冲销原流水 reverses seq {body['reverses_seq']}"),
        *_wrapped("原交易 ", body["reverses"], width),
        *_wrapped("原因 reason ", body["reason"], width),
        rule,
        _columns("退还合计 total", format_yuan(-amounts["total"]), width, bold=True),
    ]
    for payer in MONEY_FIELDS[1:-1]:
        if payer == "family_account":
            lines += _family_rows(amounts.get(payer, 0), width, holder, sign=-1)
        else:
            lines += _payer_row(payer, amounts.get(payer, 0), width, sign=-1)
    lines.append(_columns("现金 cash", format_yuan(-amounts["cash"]), width, bold=True))
    return lines


def _daily_close(body: dict, width: int, rule: Line) -> list[Line]:
    lines = [
        Line(f"营业日 business day {body['business_day']}"),
        Line(f"流水范围 seq {body['from_seq']} .. {body['to_seq']}"),
    ]
    blocks = (body["settlements"], body["reversals"], body["net"])
    shown = [name for name in MONEY_FIELDS
             if name in ("total", "cash") or any(t.get(name, 0) for t in blocks)]  # fmt: skip
    for label, totals in (("结算 settlements", body["settlements"]),
                          ("冲销 reversals", body["reversals"])):  # fmt: skip
        lines += [rule, _columns(label, f"{totals['count']} 笔", width, bold=True)]
        lines += _money_rows(totals, width, shown)
    lines += [rule, Line("净额 net", bold=True), *_money_rows(body["net"], width, shown)]
    if body.get("needs_review"):
        lines.append(Line(f"待县级复核 needs review: {body['needs_review']}"))
    return lines


CLOSE_LABELS = {
    "total": "  合计 total",
    "fund": "  统筹 fund",
    "critical_illness": "  大病 critical",
    "assistance": "  救助 assistance",
    "cvlserv_pay": "  公务员 civil srv",
    "oth_pay": "  优抚 veterans",
    "personal_account": "  个账 account",
    "family_account": "  共济 family",
    "cash": "  现金 cash",
}


def _money_rows(totals: dict, width: int, shown: list[str]) -> list[Line]:
    """A close's totals: the total and the cash, and each payer that is not 0 somewhere
    in the close (a version 1 close names five amounts)."""
    return [_columns(CLOSE_LABELS[name], format_yuan(totals.get(name, 0)), width)
            for name in shown]  # fmt: skip


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


def _local_time(created_at: str) -> str:
    """The record's own wall-clock time (the clinic's zone), without the offset."""
    return datetime.fromisoformat(created_at).strftime("%Y-%m-%d %H:%M:%S")


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
