"""The agent's HTTP client for the county hub: signs every request with the device key
and turns every way a request can fail into a `SyncError`.

Standard library only (`urllib`). A hub that says the request's time is stale tells its
own time; the client then signs with the device clock corrected by that offset (and the
offset is kept), so a device whose clock drifted can still sync while the drift is shown
to coordinators.

Every answer must be signed by the county key pinned at enrollment, for the request it
answers (`sync.protocol.verify_answer`); an answer that is not counts as no answer (a
retryable `SyncError`), so nothing else can acknowledge records, revoke the device or
correct its clock. Enrollment itself is trust on first use: its answer brings the key,
and is checked only against that key (it proves the answerer holds it). A release
file's bytes are the one answer that is not signed: the device checks them against the
signed release manifest's SHA-256 (`docs/releases.md`); its error answers are signed.

The connection: https:// trusts only the hub certificate or CA pinned at enrollment
(`hub_certificate`, PEM; enrollment requires one for https://, so only a device enrolled
before pinning existed trusts the system's CAs). Plain http:// is refused before
anything is sent, except to this machine (127.0.0.0/8, ::1, localhost: the demo) or when
the enrollment allowed it for a lab (`plain_http_lab`).
"""

import gzip
import http.client
import ipaddress
import json
import os
import secrets
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.adapters.identity import DeviceIdentity
from edge.domain.service_point import is_sha256_hex
from sync.protocol import (
    API_PREFIX,
    BATCH_CONTENT_TYPE,
    HEADER_HUB_SIGNATURE,
    HEADER_HUB_TIME,
    SyncError,
    load_public_key,
    sign_request,
    verify_answer,
)
from sync.releases import FILE_NAME, MAX_FILE_BYTES

DEFAULT_TIMEOUT_S = 30.0
DOWNLOAD_CHUNK = 64 * 1024
USER_AGENT = "clinic-sync-agent/1"


class HubRefusal(SyncError):
    """The hub answered and said no (4xx): retrying the same thing will not help."""

    def __init__(self, code: str, detail: str, status: int, hub_time: datetime | None):
        super().__init__(code, detail)
        self.status = status
        self.hub_time = hub_time


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def _hub_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(hub_certificate: str | None) -> ssl.SSLContext:
    """Trust only the pinned certificate or CA (PEM); the system's CAs without one."""
    if hub_certificate is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cadata=hub_certificate)
    except (ssl.SSLError, ValueError) as error:
        raise SyncError("BAD_CERTIFICATE", str(error)) from None


class HubClient:
    def __init__(
        self,
        base_url: str,
        identity: DeviceIdentity,
        *,
        county_key: str | None = None,
        clock_offset_s: int = 0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        nonce: Callable[[], str] = new_nonce,
        hub_certificate: str | None = None,
        plain_http_lab: bool = False,
    ):
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SyncError("BAD_REQUEST", f"the hub address {base_url!r} is not an http(s) URL")
        if parsed.scheme == "http" and not (plain_http_lab or is_loopback(parsed.hostname)):
            raise SyncError("PLAIN_HTTP_REFUSED", base_url)
        self.context = tls_context(hub_certificate) if parsed.scheme == "https" else None
        self.base_url = base_url.rstrip("/")
        self.base_path = parsed.path.rstrip("/")
        self.identity = identity
        # The pinned county key (base64url); None until enrollment brings it.
        self.county_key = None if county_key is None else load_public_key(county_key)
        self.clock_offset_s = clock_offset_s
        self.timeout_s = timeout_s
        self.nonce = nonce
        self.bytes_sent = 0

    # ---- the calls the agent makes ---------------------------------------------------------

    def enroll(self, document: dict, now: datetime) -> dict:
        """Trust on first use: the answer names the county key, is checked against it, and
        the key is pinned for this client's later calls."""
        body = json.dumps(document, ensure_ascii=False).encode()
        answer = _answered(
            self._call("POST", "/enroll", body, now, "application/json", enrolling=True)
        )
        key = answer.get("county_public_key")
        if not isinstance(key, str):
            raise SyncError("BAD_RESPONSE", "the enrollment answer names no county key")
        try:
            county_key = load_public_key(key)
        except SyncError:
            raise SyncError(
                "BAD_RESPONSE", "the enrollment answer's county key is not a key"
            ) from None
        self._verify(county_key, self._last_answer)
        self.county_key = county_key
        return answer

    def upload(self, gzipped_batch: bytes, now: datetime) -> dict:
        return _answered(
            self._call("POST", "/records", gzipped_batch, now, BATCH_CONTENT_TYPE, "gzip")
        )

    def heartbeat(self, document: dict, now: datetime) -> dict:
        return _answered(self._json("POST", "/heartbeat", document, now))

    def update(
        self,
        kind: str,
        since: str | None,
        now: datetime,
        *,
        full: bool = False,
    ) -> dict | None:
        query = {}
        if since is not None:
            query["since"] = since
        if full:
            query["full"] = "1"
        path = f"/updates/{kind}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        return self._call("GET", path, b"", now)

    def release_offer(self, arch: str, python: str, running: str, now: datetime) -> dict | None:
        """The signed release document the hub offers for this machine (the newest newer
        than `running`), unchecked: the caller verifies it (`sync.releases`); or None."""
        query = urllib.parse.urlencode({"arch": arch, "python": python, "running": running})
        answer = _answered(self._call("GET", f"/release?{query}", b"", now))
        document = answer.get("release")
        if document is not None and not isinstance(document, dict):
            raise SyncError("BAD_RESPONSE", "the release offer is not an object", retryable=True)
        return document

    def statement(self, month: str, now: datetime) -> dict | None:
        """The county's signed clearing statement of this device's clinic for `month`
        (`YYYY-MM`), its latest revision; None while the month is not over at the hub.
        Its signature is checked with the pinned county key (`sync.statements`), and
        that it is of `month` and covers this device; SyncError BAD_STATEMENT if not."""
        from sync.statements import verify_statement

        query = urllib.parse.urlencode({"month": month})
        answer = _answered(self._call("GET", f"/statement?{query}", b"", now))
        document = answer.get("statement")
        if document is None:
            return None
        if self.county_key is None:  # _call refuses before this; for the type checker
            raise SyncError("NOT_ENROLLED")
        verify_statement(document, self.county_key, month=month, device_id=self.identity.device_id)
        return document

    def report_reconciliation(self, document: dict, now: datetime) -> dict:
        """Tell the hub whether this device agrees with a statement revision
        (`docs/statements.md`, "The reconciliation report"); answers {"recorded": true}."""
        return _answered(self._json("POST", "/statement/reconciliation", document, now))

    # ---- the service point (docs/service-point.md) -----------------------------------------

    def encryption_key(self, now: datetime) -> dict | None:
        """The county's signed encryption key statement, unchecked (the caller verifies
        it with the pinned county key: `edge.adapters.sealing.verified_encryption_key`);
        None from a hub that does not offer one yet."""
        answer = self._optional("GET", "/encryption-key", now)
        if answer is None:
            return None
        statement = answer.get("county_encryption_key")
        if not isinstance(statement, dict):
            raise SyncError("BAD_RESPONSE", "the answer holds no encryption key statement")
        return statement

    def put_attachment(self, sha256: str, data: bytes, content_type: str, now: datetime) -> dict:
        """Upload one photo of a request the hub holds; answers {"stored": true} (again
        for a repeat)."""
        if not is_sha256_hex(sha256):
            raise SyncError("BAD_REQUEST", f"{sha256!r} is not a SHA-256 in hex")
        answer = _answered(self._call("PUT", f"/attachments/{sha256}", data, now, content_type))
        if answer.get("stored") is not True:
            raise SyncError("BAD_RESPONSE", "the hub did not say it stored the photo")
        return answer

    def decisions(self, after: int, now: datetime) -> dict:
        """This device's decisions after serial `after`: {"decisions": [signed documents,
        unchecked], "more": bool}; {"decisions": [], "more": False} from a hub that has no
        decisions to give yet."""
        path = f"/decisions?{urllib.parse.urlencode({'after': int(after)})}"
        answer = self._optional("GET", path, now)
        if answer is None:
            return {"decisions": [], "more": False}
        documents = answer.get("decisions")
        if not isinstance(documents, list) or not isinstance(answer.get("more"), bool):
            raise SyncError("BAD_RESPONSE", "the decisions answer is not {decisions, more}")
        return {"decisions": documents, "more": answer["more"]}

    def _optional(self, method: str, path: str, now: datetime) -> dict | None:
        """A call to an endpoint an older hub does not have: its 404 (signed or a bare
        web server page) means "nothing offered", never an error or a forged answer."""
        try:
            return _answered(self._call(method, path, b"", now))
        except SyncError as error:
            last = getattr(self, "_last_answer", None)
            if (
                error.code in ("ANSWER_UNSIGNED", "NOT_FOUND")
                and last is not None
                and (last.status == 404 and last.path.split("?")[0].endswith(path.split("?")[0]))
            ):
                return None
            raise

    def release_file(
        self,
        version: str,
        arch: str,
        name: str,
        dest_path: Path,
        now: datetime,
        *,
        size: int = MAX_FILE_BYTES,
    ) -> int:
        """Download one file of a release to `dest_path`, at most `size` bytes (the
        manifest's size); a partial `dest_path` is resumed with a Range request. Answers
        the bytes now in `dest_path`. Its hash is the caller's to check."""
        if not FILE_NAME.fullmatch(name) or ".." in name:
            raise SyncError("BAD_REQUEST", f"{name!r} is not a release file name")
        path = "/release/" + "/".join(urllib.parse.quote(p, safe="") for p in (version, arch, name))
        dest_path = Path(dest_path)
        have = dest_path.stat().st_size if dest_path.exists() else 0
        if have > size:  # not this file: start again
            dest_path.unlink()
            have = 0
        if have == size:
            return have
        try:
            return self._download(path, dest_path, have, size, now)
        except HubRefusal as refusal:
            if refusal.code != "STALE_TIMESTAMP" or refusal.hub_time is None:
                raise
            self.clock_offset_s = round((refusal.hub_time - now).total_seconds())
            return self._download(path, dest_path, have, size, now)

    def _download(self, path: str, dest: Path, have: int, size: int, now: datetime) -> int:
        if self.county_key is None:
            raise SyncError("NOT_ENROLLED", "no county key is pinned to check the hub's answers")
        full_path = self.base_path + API_PREFIX + path
        nonce = self.nonce()
        headers = sign_request(
            self.identity.private_key,
            device_id=self.identity.device_id,
            method="GET",
            path=full_path,
            body=b"",
            now=now + timedelta(seconds=self.clock_offset_s),
            nonce=nonce,
        )
        headers["User-Agent"] = USER_AGENT
        if have:
            headers["Range"] = f"bytes={have}-"
        request = urllib.request.Request(self.base_url + API_PREFIX + path, headers=headers)
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout_s, context=self.context
            ) as response:
                if response.status == 206:
                    if not (response.headers.get("Content-Range") or "").startswith(
                        f"bytes {have}-"
                    ):
                        raise SyncError("BAD_RESPONSE", "the hub resumed elsewhere", retryable=True)
                    mode = "ab"
                elif response.status == 200:
                    have, mode = 0, "wb"  # the whole file: start again
                else:
                    raise SyncError("BAD_RESPONSE", f"HTTP {response.status}", retryable=True)
                length = response.headers.get("Content-Length")
                expected = have + int(length) if length and length.isdigit() else None
                have = _stream_to(response, dest, mode, have, size)
                if expected is not None and have < expected:
                    # Cut off (a proxy's write timeout, the network): what came is kept,
                    # the next call resumes from there.
                    raise SyncError(
                        "HUB_UNREACHABLE",
                        f"{dest.name}: cut off at {have} of {expected} bytes",
                        retryable=True,
                    )
        except urllib.error.HTTPError as error:
            if error.code == 416:  # what we hold is longer than the hub's file: not it
                dest.unlink(missing_ok=True)
            data = _error_body(error)
            if error.code >= 500 or data is None:
                raise SyncError("HUB_ERROR", f"HTTP {error.code}", retryable=True) from None
            answer = _Answer("GET", full_path, nonce, error.code, error.headers, data)
            self._verify(self.county_key, answer)
            raise _error_of(error.code, error.headers, data) from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, ssl.SSLCertVerificationError):
                raise SyncError(
                    "HUB_CERTIFICATE", error.reason.verify_message or str(error.reason)
                ) from None
            raise SyncError("HUB_UNREACHABLE", str(error.reason), retryable=True) from None
        except (http.client.HTTPException, OSError) as error:
            raise SyncError(
                "HUB_UNREACHABLE", str(error) or type(error).__name__, retryable=True
            ) from None
        return have

    # ---- plumbing --------------------------------------------------------------------------

    _last_answer: "_Answer"

    def _json(self, method: str, path: str, document: dict, now: datetime) -> dict | None:
        body = json.dumps(document, ensure_ascii=False).encode()
        return self._call(method, path, body, now, "application/json")

    def _call(
        self,
        method: str,
        path: str,
        body: bytes,
        now: datetime,
        content_type: str | None = None,
        content_encoding: str | None = None,
        *,
        enrolling: bool = False,
    ) -> dict | None:
        if self.county_key is None and not enrolling:
            raise SyncError("NOT_ENROLLED", "no county key is pinned to check the hub's answers")
        send = (method, path, body, now, content_type, content_encoding, enrolling)
        try:
            return self._send(*send)
        except HubRefusal as refusal:
            if refusal.code != "STALE_TIMESTAMP" or refusal.hub_time is None:
                raise
            # Our clock is off (the hub signed that): sign with the hub's time from now on,
            # and try once more.
            self.clock_offset_s = round((refusal.hub_time - now).total_seconds())
            return self._send(*send)

    def _verify(self, county_key: Ed25519PublicKey | None, answer: "_Answer") -> None:
        if county_key is None:
            raise SyncError("NOT_ENROLLED", "no county key is pinned to check the hub's answers")
        verify_answer(
            county_key,
            signature=answer.headers.get(HEADER_HUB_SIGNATURE),
            hub_time=answer.headers.get(HEADER_HUB_TIME),
            method=answer.method,
            path=answer.path,
            device_id=self.identity.device_id,
            nonce=answer.nonce,
            status=answer.status,
            body=answer.body,
        )

    def _send(
        self,
        method: str,
        path: str,
        body: bytes,
        now: datetime,
        content_type: str | None,
        content_encoding: str | None,
        enrolling: bool,
    ) -> dict | None:
        full_path = self.base_path + API_PREFIX + path
        nonce = self.nonce()
        headers = sign_request(
            self.identity.private_key,
            device_id=self.identity.device_id,
            method=method,
            path=full_path,
            body=body,
            now=now + timedelta(seconds=self.clock_offset_s),
            nonce=nonce,
        )
        headers["User-Agent"] = USER_AGENT
        headers["Accept-Encoding"] = "gzip"
        if content_type:
            headers["Content-Type"] = content_type
        if content_encoding:
            headers["Content-Encoding"] = content_encoding
        request = urllib.request.Request(
            self.base_url + API_PREFIX + path,
            data=body if method != "GET" else None,
            headers=headers,
            method=method,
        )
        self.bytes_sent += len(body)
        refused = False
        data: bytes | None
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout_s, context=self.context
            ) as response:
                status, answer_headers = response.status, response.headers
                data = _read_body(response)
        except urllib.error.HTTPError as error:
            refused, status, answer_headers = True, error.code, error.headers
            data = _error_body(error)
        except urllib.error.URLError as error:
            if isinstance(error.reason, ssl.SSLCertVerificationError):
                # Checked in the handshake, before the request: nothing was sent.
                raise SyncError(
                    "HUB_CERTIFICATE", error.reason.verify_message or str(error.reason)
                ) from None
            raise SyncError(
                "HUB_UNREACHABLE", str(error.reason) or type(error).__name__, retryable=True
            ) from None
        except (http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise SyncError(
                "HUB_UNREACHABLE", str(reason) or type(error).__name__, retryable=True
            ) from None
        # A 5xx (the hub or a proxy before it failed), or an error whose body did not
        # arrive whole: nothing in it counts.
        if status >= 500 or data is None:
            raise SyncError("HUB_ERROR", f"HTTP {status}", retryable=True)
        self._last_answer = _Answer(method, full_path, nonce, status, answer_headers, data)
        if not enrolling:
            self._verify(self.county_key, self._last_answer)
        if refused:
            raise _error_of(status, answer_headers, data)
        if status == 204:
            return None
        try:
            answer = json.loads(data)
        except ValueError:
            raise SyncError("BAD_RESPONSE", "not JSON", retryable=True) from None
        if not isinstance(answer, dict):
            raise SyncError("BAD_RESPONSE", "not a JSON object", retryable=True)
        return answer


def _stream_to(response, dest: Path, mode: str, have: int, size: int) -> int:
    """Append (or write) the answer's bytes to `dest`, at most `size` in all; a local
    failure (a full disk) is the device's, not the hub's."""
    try:
        file = dest.open(mode)
    except OSError as error:
        raise SyncError("AGENT_ERROR", f"{dest}: {error}") from None
    with file:
        while chunk := response.read(DOWNLOAD_CHUNK):
            have += len(chunk)
            if have > size:
                raise SyncError("RELEASE_FILE_MISMATCH", f"{dest.name} is over {size} bytes")
            try:
                file.write(chunk)
            except OSError as error:
                raise SyncError("AGENT_ERROR", f"{dest}: {error}") from None
        try:
            file.flush()
            os.fsync(file.fileno())
        except OSError as error:
            raise SyncError("AGENT_ERROR", f"{dest}: {error}") from None
    return have


def _read_body(response) -> bytes:
    data = response.read()
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and len(data) != int(length):
        raise http.client.IncompleteRead(data, int(length) - len(data))
    if (response.headers.get("Content-Encoding") or "").lower() == "gzip":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise http.client.HTTPException(f"broken gzip answer: {error}") from None
    return data


def _error_body(error: urllib.error.HTTPError) -> bytes | None:
    if error.fp is None:
        return b""
    try:
        return _read_body(error)
    except (OSError, http.client.HTTPException):
        return None


@dataclass(frozen=True)
class _Answer:
    """An answer as it arrived, with the request it answers: what its signature covers."""

    method: str
    path: str
    nonce: str
    status: int
    headers: Message
    body: bytes


def _error_of(status: int, headers: Message | None, data: bytes) -> SyncError:
    hub_time = _hub_time(headers.get(HEADER_HUB_TIME) if headers else None)
    try:
        detail = json.loads(data)["error"]
        code, message = str(detail["code"]), str(detail.get("detail") or "")
    except (ValueError, KeyError, TypeError):
        code, message = "HUB_ERROR", f"HTTP {status}"
    if code == "HUB_ERROR":
        return SyncError("HUB_ERROR", f"HTTP {status} {message}".strip(), retryable=True)
    return HubRefusal(code, message, status, hub_time)


def _answered(answer: dict | None) -> dict:
    """Enrollment and uploads always answer with a document; an empty answer is wrong."""
    if answer is None:
        raise SyncError("BAD_RESPONSE", "the hub answered with no content")
    return answer
