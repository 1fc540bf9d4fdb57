"""The wire protocol shared by the sync agent and the county hub. Pure: no I/O, no clock.

- Every request after enrollment is signed by the device key over its method, path,
  body hash, timestamp and a random nonce; the hub refuses a timestamp outside
  `MAX_CLOCK_DIFFERENCE` of its own clock and a nonce it has seen, so a captured request
  cannot be replayed.
- Every answer of the hub's device API is signed by the county key the device pinned at
  enrollment, over the request it answers (method, path, device, nonce), its status, body
  and the hub's time, so that nothing else can answer for the hub and an old answer does
  not fit a new request.
- Ledger records travel as JSON Lines, gzip-compressed, in bounded batches.
- Errors carry a stable `code` and a message in Chinese and English.
"""

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.domain.ledger import b64url, b64url_decode

PROTOCOL = "clinic-sync-1"
API_PREFIX = "/api/v1"

HEADER_DEVICE = "X-Clinic-Device"
HEADER_TIMESTAMP = "X-Clinic-Timestamp"
HEADER_NONCE = "X-Clinic-Nonce"
HEADER_SIGNATURE = "X-Clinic-Signature"
HEADER_HUB_TIME = "X-Clinic-Hub-Time"
HEADER_HUB_SIGNATURE = "X-Clinic-Hub-Signature"
ANSWER_PROTOCOL = "clinic-sync-1-answer"

MAX_CLOCK_DIFFERENCE = timedelta(minutes=5)
BATCH_CONTENT_TYPE = "application/x-ndjson"

# Upload batches: bounded in records and in uncompressed bytes.
MAX_BATCH_RECORDS = 1000
MAX_BATCH_BYTES = 4 * 2**20
# What the hub accepts in one request body, before and after decompression.
MAX_REQUEST_BYTES = 8 * 2**20
MAX_DECOMPRESSED_BYTES = 16 * 2**20


# ---- errors ------------------------------------------------------------------------------

# code -> (中文, English). Users see both; scripts match on the code.
MESSAGES: dict[str, tuple[str, str]] = {
    "BAD_REQUEST": ("请求格式不正确", "the request is malformed"),
    "TOO_LARGE": ("请求太大", "the request is too large"),
    "UNSIGNED": ("请求没有设备签名", "the request carries no device signature"),
    "UNKNOWN_DEVICE": ("这台设备未在县级平台登记", "this device is not enrolled at the county hub"),
    "DEVICE_REVOKED": ("这台设备已被县级平台停用", "this device has been revoked by the county"),
    "BAD_SIGNATURE": ("请求签名无效", "the request signature does not verify"),
    "STALE_TIMESTAMP": (
        "请求时间与县级平台时钟相差太大（过期或被重放）",
        "the request's time is too far from the hub's clock (stale or replayed)",
    ),
    "NONCE_REUSED": (
        "这个请求已经收到过（可能被重放）",
        "this request was already received (replay)",
    ),
    "CODE_UNKNOWN": ("登记码不正确", "the enrollment code is not known"),
    "CODE_USED": ("登记码已被使用", "the enrollment code was already used"),
    "CODE_EXPIRED": ("登记码已过期", "the enrollment code has expired"),
    "SLOT_REVOKED": ("这个设备位已被停用", "this device slot has been revoked"),
    "ENROLL_THROTTLED": (
        "登记尝试失败次数过多，请稍后再试",
        "too many failed enrollment attempts: try again later",
    ),
    "DEVICE_ID_MISMATCH": (
        "设备编号与设备公钥不符",
        "the device id does not belong to the device's public key",
    ),
    "ALREADY_ENROLLED": ("这台设备已经登记过", "this device is already enrolled"),
    "RECORD_MALFORMED": ("记录格式不正确", "a record is malformed"),
    "RECORD_FOREIGN": ("批次中含有其他设备的记录", "the batch carries another device's records"),
    "RECORD_INVALID": ("记录的哈希或签名不正确（被篡改）", "a record's hash or signature is wrong"),
    "BODY_MALFORMED": (
        "记录内容格式不正确：已作为证据保存，不参与核算",
        "a signed record's body is malformed: kept as evidence, left out of reconciliation",
    ),
    "RECOMPUTE_FAILED": (
        "县级平台无法重算这条记录：已标记，不参与核算",
        "the hub could not recompute this record: flagged, left out of reconciliation",
    ),
    "BATCH_TOO_LARGE": (
        "一批上传的记录太多，全部未保存",
        f"too many records in one batch (at most {MAX_BATCH_RECORDS}): none was stored",
    ),
    "HELD_LIMIT": (
        "缺号之后暂存的记录太多：请先补传缺少的记录",
        "too many records held beyond a gap: send the missing records first",
    ),
    "CHAIN_BROKEN": ("记录链断开", "a record does not chain to the one before it"),
    "LEDGER_WENT_BACKWARDS": (
        "设备账本倒退（可能从旧备份恢复）",
        "the device's ledger went backwards (restored from an old backup?)",
    ),
    "UNKNOWN_KIND": ("未知的更新类型", "unknown update kind"),
    "NO_UPDATE": ("县级平台尚未发布此类数据", "the county has published nothing of this kind"),
    "NOT_FOUND": ("未找到", "not found"),
    "ATTACHMENT_HASH_MISMATCH": (
        "照片内容与其 SHA-256 不符，未保存",
        "the photo's bytes do not match its SHA-256: not stored",
    ),
    "ATTACHMENT_TOO_LARGE": (
        "照片太大（每张最多 3 MiB），未保存",
        "the photo is too large (at most 3 MiB): not stored",
    ),
    "ATTACHMENT_TYPE": (
        "照片只能是 JPEG 或 PNG，未保存",
        "a photo must be JPEG or PNG: not stored",
    ),
    "ATTACHMENT_UNKNOWN": (
        "这台设备的申请中没有这张照片，未保存",
        "no request of this device names this photo: not stored",
    ),
    "HUB_UNREACHABLE": ("无法连接县级平台", "the county hub cannot be reached"),
    "HUB_ERROR": ("县级平台出错", "the county hub failed"),
    "BAD_RESPONSE": ("县级平台的回答不正确", "the county hub's answer is malformed"),
    "BAD_STATEMENT": (
        "县级结算单不是县级密钥签发的，或不是本卫生室本月的：未采用",
        "the clearing statement is not signed by the county key, or not this clinic's month:"
        " not used",
    ),
    "NOT_ENROLLED": (
        "本设备尚未登记到县级平台：请运行 clinic enroll",
        "this device is not enrolled with a county hub: run 'clinic enroll'",
    ),
    "BUSY": ("另一次同步正在进行", "another sync is running"),
    "PLAIN_HTTP_REFUSED": (
        "拒绝用不加密的 http:// 连接县级平台（只允许本机地址）：请用 https://，"
        "或仅在实验环境中明确允许",
        "plain http:// to the county hub is refused (loopback only): use https://,"
        " or allow it explicitly for a lab",
    ),
    "HUB_CERTIFICATE": (
        "县级平台的证书与本设备登记时固定的证书不符（可能被冒充）：未发送任何数据",
        "the county hub's certificate is not the one this device pinned at enrollment"
        " (impersonation?): nothing was sent",
    ),
    "HUB_CERTIFICATE_REQUIRED": (
        "https:// 的县级平台须在登记时固定其证书或 CA：请用 --hub-ca 指定证书文件"
        "（或在登记页面粘贴证书）",
        "an https:// hub needs its certificate or CA pinned at enrollment: give the"
        " certificate file with --hub-ca (or paste it on the enrollment form)",
    ),
    "BAD_CERTIFICATE": (
        "证书文件不正确（需要 PEM 格式的证书）",
        "the certificate file is not valid (a PEM certificate is needed)",
    ),
    "ANSWER_UNSIGNED": (
        "县级平台的回答没有签名（可能不是县级平台在回答）",
        "the hub's answer is not signed by the county (something else may be answering)",
    ),
    "BAD_ANSWER_SIGNATURE": (
        "县级平台的回答签名无效（可能被伪造或重放）",
        "the hub's answer does not verify with the county key (forged or replayed)",
    ),
    "ACK_MISMATCH": (
        "县级平台确认的记录与本机账本不符，待上传记录未清除",
        "the hub acknowledged records that do not match this device's ledger;"
        " nothing was removed from the outbox",
    ),
    # the service point's requests, on the device's side (docs/service-point.md)
    "BAD_ENCRYPTION_KEY": (
        "县医保局的加密公钥声明不是县级密钥签发的：未采用",
        "the county encryption key statement is not signed by the county key: not pinned",
    ),
    "ENCRYPTION_KEY_CHANGED": (
        "县级平台提供的加密公钥与本机固定的不同：未采用",
        "the hub offers another county encryption key than the one pinned: not used",
    ),
    "ATTACHMENT_MISSING": (
        "申请的照片在本机丢失或已损坏，无法上传",
        "a request's photo is missing or damaged on this device: it cannot be uploaded",
    ),
    "BAD_DECISION": (
        "县医保局的审批决定无效（签名、设备或申请不符）：未采用",
        "a county decision is not valid (signature, device or request): not used",
    ),
}


class SyncError(Exception):
    """A refusal or failure with a stable code, in plain Chinese and English."""

    def __init__(self, code: str, detail: str = "", *, retryable: bool = False):
        zh, en = MESSAGES.get(code, (code, code))
        self.code = code
        self.detail = detail
        self.message_zh = zh
        self.message_en = en + (f": {detail}" if detail else "")
        self.retryable = retryable
        self.version: str | None = None  # the update version a refusal is about, if any
        super().__init__(f"{code}: {self.message_en} / {zh}")

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "message": self.message_en,
            "message_zh": self.message_zh,
            "detail": self.detail,
        }


# ---- canonical JSON and digests --------------------------------------------------------


def canonical_json(value: object) -> bytes:
    """Sorted, compact UTF-8 JSON: the form that is hashed and signed (as in ledger.md)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_fingerprint(public_key_b64: str) -> str:
    """A short, readable fingerprint of a public key, to compare by eye or over the phone."""
    digest = sha256_hex(b64url_decode(public_key_b64))[:16].upper()
    return "-".join(digest[i : i + 4] for i in range(0, 16, 4))


def certificate_fingerprint(pem: bytes | str) -> str:
    """The SHA-256 fingerprint of a PEM certificate's first certificate, as browsers and
    `openssl x509 -fingerprint -sha256` show it (AB:CD:…)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    data = pem.encode() if isinstance(pem, str) else pem
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError as error:
        raise SyncError("BAD_CERTIFICATE", str(error)) from None
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def load_public_key(public_key_b64: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(b64url_decode(public_key_b64))
    except (ValueError, TypeError) as error:
        raise SyncError("BAD_REQUEST", f"not an Ed25519 public key ({error})") from None


# ---- request signing ---------------------------------------------------------------------


def signing_payload(
    *, method: str, path: str, body_sha256: str, timestamp: str, nonce: str, device_id: str
) -> bytes:
    """The bytes a device signs for one request. `path` includes any query string."""
    return "\n".join(
        [PROTOCOL, method.upper(), path, body_sha256, timestamp, nonce, device_id]
    ).encode()


def sign_request(
    private_key: Ed25519PrivateKey,
    *,
    device_id: str,
    method: str,
    path: str,
    body: bytes,
    now: datetime,
    nonce: str,
) -> dict[str, str]:
    """The headers that authenticate one request; `nonce` must be fresh and random."""
    timestamp = str(int(now.timestamp()))
    payload = signing_payload(
        method=method,
        path=path,
        body_sha256=sha256_hex(body),
        timestamp=timestamp,
        nonce=nonce,
        device_id=device_id,
    )
    return {
        HEADER_DEVICE: device_id,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: b64url(private_key.sign(payload)),
    }


@dataclass(frozen=True)
class SignedRequest:
    """What a request's headers claim, before anything is checked."""

    device_id: str
    timestamp: str
    nonce: str
    signature: str


class RequestHeaders(Protocol):
    """A request's headers as the hub reads them: a `Mapping[str, str]` or werkzeug's
    case-insensitive `Headers`."""

    def get(self, key: str, /) -> str | None: ...


def signed_request_of(headers: RequestHeaders) -> SignedRequest:
    values = [
        headers.get(h) for h in (HEADER_DEVICE, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
    ]
    device_id, timestamp, nonce, signature = values
    if not (device_id and timestamp and nonce and signature):
        raise SyncError("UNSIGNED")
    digits = timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
    if not (digits and 8 <= len(nonce) <= 64 and len(device_id) <= 64):
        raise SyncError("BAD_REQUEST", "the signature headers are malformed")
    return SignedRequest(device_id, timestamp, nonce, signature)


def verify_request(
    public_key: Ed25519PublicKey,
    claimed: SignedRequest,
    *,
    method: str,
    path: str,
    body: bytes,
    now: datetime,
) -> None:
    """Raise `SyncError` unless the request is signed by `public_key` and fresh.

    The caller still has to record the nonce (a database does that atomically)."""
    payload = signing_payload(
        method=method,
        path=path,
        body_sha256=sha256_hex(body),
        timestamp=claimed.timestamp,
        nonce=claimed.nonce,
        device_id=claimed.device_id,
    )
    try:
        public_key.verify(b64url_decode(claimed.signature), payload)
    except (InvalidSignature, ValueError):
        raise SyncError("BAD_SIGNATURE") from None
    # Compared as whole seconds: an absurd timestamp (999999999999) is no date at all.
    sent = int(claimed.timestamp)
    if abs(sent - now.timestamp()) > MAX_CLOCK_DIFFERENCE.total_seconds():
        raise SyncError(
            "STALE_TIMESTAMP",
            f"signed at {_moment(sent)}, the hub's clock reads {now.isoformat()}",
        )


def _moment(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        return f"{seconds} seconds after 1970"


# ---- answer signing ------------------------------------------------------------------------


def answer_payload(
    *,
    method: str,
    path: str,
    device_id: str,
    nonce: str,
    status: int,
    body_sha256: str,
    hub_time: str,
) -> bytes:
    """The bytes the county key signs for one answer: the request it answers (the device's
    nonce makes it fit that request only), its status, its body and the hub's time."""
    fields = [ANSWER_PROTOCOL, method.upper(), path, device_id, nonce, str(status)]
    return "\n".join([*fields, body_sha256, hub_time]).encode()


def sign_answer(
    county_key: Ed25519PrivateKey,
    *,
    method: str,
    path: str,
    device_id: str,
    nonce: str,
    status: int,
    body: bytes,
    hub_time: str,
) -> str:
    """`X-Clinic-Hub-Signature` of an answer; `body` as before any Content-Encoding."""
    payload = answer_payload(
        method=method,
        path=path,
        device_id=device_id,
        nonce=nonce,
        status=status,
        body_sha256=sha256_hex(body),
        hub_time=hub_time,
    )
    return b64url(county_key.sign(payload))


def verify_answer(
    county_key: Ed25519PublicKey,
    *,
    signature: str | None,
    hub_time: str | None,
    method: str,
    path: str,
    device_id: str,
    nonce: str,
    status: int,
    body: bytes,
) -> None:
    """Raise a retryable `SyncError` unless the answer is signed by the county key for
    exactly this request, status and body. Nothing of an answer counts before this."""
    if not signature or hub_time is None:
        raise SyncError("ANSWER_UNSIGNED", f"HTTP {status}", retryable=True)
    payload = answer_payload(
        method=method,
        path=path,
        device_id=device_id,
        nonce=nonce,
        status=status,
        body_sha256=sha256_hex(body),
        hub_time=hub_time,
    )
    try:
        county_key.verify(b64url_decode(signature), payload)
    except (InvalidSignature, ValueError, TypeError):
        raise SyncError("BAD_ANSWER_SIGNATURE", f"HTTP {status}", retryable=True) from None


# ---- record batches ----------------------------------------------------------------------


def encode_batch(record_texts: Iterable[str]) -> bytes:
    """Records (as their stored JSON text) as gzip-compressed JSON Lines."""
    data = "".join(text + "\n" for text in record_texts).encode()
    return gzip.compress(data, compresslevel=6, mtime=0)


def decode_batch(
    body: bytes,
    content_encoding: str | None,
    *,
    limit: int = MAX_DECOMPRESSED_BYTES,
    max_records: int = MAX_BATCH_RECORDS,
) -> list[object]:
    """The parsed lines of an upload; refuses a body that inflates past `limit` or holds
    more than `max_records` lines (counted before any is parsed)."""
    if (content_encoding or "").lower() == "gzip":
        inflater = zlib.decompressobj(wbits=31)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error as error:
            raise SyncError("BAD_REQUEST", f"the body is not valid gzip ({error})") from None
        if len(data) > limit or inflater.unconsumed_tail:
            raise SyncError("TOO_LARGE", f"more than {limit} bytes once decompressed")
        if not inflater.eof:
            raise SyncError("BAD_REQUEST", "the gzip body is truncated")
    elif content_encoding:
        raise SyncError("BAD_REQUEST", f"unsupported Content-Encoding {content_encoding!r}")
    else:
        data = body
    lines = data.split(b"\n")
    count = sum(1 for line in lines if line.strip())
    if count > max_records:
        raise SyncError("BATCH_TOO_LARGE", f"{count} records")
    records: list[object] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise SyncError("BAD_REQUEST", f"line {number} is not JSON") from None
    return records


# ---- time ------------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat()


def parse_time(value: object, what: str) -> datetime:
    """An aware datetime from ISO text; naive or malformed values are refused."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment
    raise SyncError("BAD_REQUEST", f"{what} must be an ISO date-time with a UTC offset")
