"""QR e-vouchers (电子凭证): a token that names an insured person, expires, and is signed
by the county's Ed25519 key, checked offline against the county public key the device
pinned. Pure: tokens are text in, `Voucher` or `VoucherError` out, and `now` is an argument.

    YBV1.<payload>.<signature>

`payload` is base64url (no padding) of compact, key-sorted UTF-8 JSON
{"county", "exp", "iat", "insured_id", "nonce"} (times in Unix seconds); `signature` is
base64url of the Ed25519 signature of the ASCII bytes "YBV1.<payload>". The nonce makes
each voucher unique, so a terminal can refuse a voucher it has already used.
"""

from __future__ import annotations

import binascii
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.domain.ledger import b64url, b64url_decode

PREFIX = "YBV1."
CLOCK_SKEW = timedelta(minutes=5)  # a voucher issued this far "in the future" still passes
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_INSURED_ID = re.compile(r"[0-9]{8,20}")

MESSAGES: dict[str, tuple[str, str]] = {
    "NO_SCAN": ("没有扫到二维码", "nothing was scanned in time"),
    "GARBAGE": ("不是医保电子凭证二维码", "this is not an insurance e-voucher QR code"),
    "TRUNCATED": ("二维码内容不完整，请重新扫描", "the scan is incomplete: scan the code again"),
    "UNSUPPORTED_VERSION": ("电子凭证版本不受支持", "this e-voucher version is not supported"),
    "BAD_SIGNATURE": (
        "电子凭证签名无效（不是本县签发或已被篡改）",
        "the e-voucher's signature is not valid (not issued by this county, or altered)",
    ),
    "BAD_PAYLOAD": ("电子凭证内容无效", "the e-voucher's content is not valid"),
    "EXPIRED": (
        "电子凭证已过期，请刷新后重新出示",
        "the e-voucher has expired: refresh it and scan again",
    ),
    "NOT_YET_VALID": (
        "电子凭证尚未生效（请检查终端时钟）",
        "the e-voucher is not valid yet (check the terminal's clock)",
    ),
    "SCANNER_ERROR": ("扫码枪连接出错", "the QR scanner's port failed"),
}


class VoucherError(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        self.message_zh, self.message_en = MESSAGES[code]
        suffix = f": {detail}" if detail else ""
        super().__init__(f"{code} {self.message_zh} / {self.message_en}{suffix}")

    def to_dict(self) -> dict:
        return {"code": self.code, "message_zh": self.message_zh,
                "message_en": self.message_en, "detail": self.detail}  # fmt: skip


@dataclass(frozen=True)
class Voucher:
    insured_id: str
    county: str
    issued_at: datetime
    expires_at: datetime
    nonce: str

    def to_dict(self) -> dict:
        return {"insured_id": self.insured_id, "county": self.county,
                "issued_at": self.issued_at.isoformat(), "expires_at": self.expires_at.isoformat(),
                "nonce": self.nonce}  # fmt: skip


def mint_voucher(
    county_key: Ed25519PrivateKey,
    *,
    insured_id: str,
    county: str,
    now: datetime,
    valid_for: timedelta = timedelta(minutes=10),
    nonce: str | None = None,
) -> str:
    """A signed voucher token (what the county's app shows as a QR code)."""
    if _INSURED_ID.fullmatch(insured_id) is None:
        raise ValueError(f"insured number {insured_id!r} is not 8..20 digits")
    issued = int(now.timestamp())
    payload = {"county": county, "exp": issued + int(valid_for.total_seconds()), "iat": issued,
               "insured_id": insured_id, "nonce": nonce or secrets.token_hex(8)}  # fmt: skip
    body = PREFIX + b64url(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    return body + "." + b64url(county_key.sign(body.encode("ascii")))


def verify_voucher(token: str, county_public_key: Ed25519PublicKey, now: datetime) -> Voucher:
    """The voucher in `token` if the county signed it and it is valid at `now`."""
    signed, payload_b64, signature = _split(token.strip())
    try:
        county_public_key.verify(signature, signed.encode("ascii"))
    except InvalidSignature:
        raise VoucherError("BAD_SIGNATURE") from None
    payload = _payload(payload_b64)
    moment = int(now.timestamp())
    try:
        issued = datetime.fromtimestamp(payload["iat"], now.tzinfo)
        expires = datetime.fromtimestamp(payload["exp"], now.tzinfo)
    except (OverflowError, OSError, ValueError):
        raise VoucherError("BAD_PAYLOAD", "a time is out of range") from None
    if payload["exp"] <= payload["iat"]:
        raise VoucherError("BAD_PAYLOAD", "it expires before it was issued")
    if moment >= payload["exp"]:
        raise VoucherError("EXPIRED", f"expired at {expires.isoformat()}")
    if payload["iat"] > moment + CLOCK_SKEW.total_seconds():
        raise VoucherError("NOT_YET_VALID", f"issued at {issued.isoformat()}")
    return Voucher(payload["insured_id"], payload["county"], issued, expires, payload["nonce"])


def _split(token: str) -> tuple[str, str, bytes]:
    if not token.startswith(PREFIX):
        if re.match(r"YBV[0-9]+\.", token):
            raise VoucherError("UNSUPPORTED_VERSION", token.split(".", 1)[0])
        if token and PREFIX.startswith(token):
            raise VoucherError("TRUNCATED", f"{len(token)} characters")
        raise VoucherError("GARBAGE", _preview(token))
    parts = token[len(PREFIX) :].split(".")
    if any(_B64URL.fullmatch(part) is None for part in parts):
        raise VoucherError("GARBAGE", _preview(token))
    if len(parts) == 1 or not parts[1]:
        raise VoucherError("TRUNCATED", "the signature is missing")
    if len(parts) > 2:
        raise VoucherError("GARBAGE", "too many parts")
    try:
        signature = b64url_decode(parts[1])
    except (binascii.Error, ValueError):
        raise VoucherError("TRUNCATED", "the signature is cut") from None
    if len(signature) < 64:
        raise VoucherError("TRUNCATED", f"the signature has {len(signature)} of 64 bytes")
    if len(signature) > 64:
        raise VoucherError("GARBAGE", "the signature is too long")
    return PREFIX + parts[0], parts[0], signature


def _payload(payload_b64: str) -> dict:
    try:
        payload = json.loads(b64url_decode(payload_b64).decode("utf-8"))
    except (binascii.Error, ValueError):
        raise VoucherError("BAD_PAYLOAD", "not base64url JSON") from None
    if not isinstance(payload, dict):
        raise VoucherError("BAD_PAYLOAD", "not a JSON object")
    for key, kind in (("county", str), ("exp", int), ("iat", int), ("insured_id", str),
                      ("nonce", str)):  # fmt: skip
        value = payload.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise VoucherError("BAD_PAYLOAD", f"{key!r} is missing or not a {kind.__name__}")
    if _INSURED_ID.fullmatch(payload["insured_id"]) is None:
        raise VoucherError("BAD_PAYLOAD", f"insured number {payload['insured_id']!r}")
    return payload


def _preview(text: str) -> str:
    return repr(text[:24] + ("…" if len(text) > 24 else ""))


def load_public_key(text: str) -> Ed25519PublicKey:
    """A county public key given as base64url of its raw 32 bytes (as `ledger.md` keys)."""
    try:
        raw = b64url_decode(text.strip())
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValueError("a public key is base64url of 32 raw bytes") from None
