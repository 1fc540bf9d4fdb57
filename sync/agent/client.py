"""The agent's HTTP client for the county hub: signs every request with the device key
and turns every way a request can fail into a `SyncError`.

Standard library only (`urllib`). A hub that says the request's time is stale tells its
own time; the client then signs with the device clock corrected by that offset (and the
offset is kept), so a device whose clock drifted can still sync while the drift is shown
to coordinators.

The connection: https:// trusts only the hub certificate or CA pinned at enrollment
(`hub_certificate`, PEM; without one, the system's CAs). Plain http:// is refused before
anything is sent, except to this machine (127.0.0.0/8, ::1, localhost: the demo) or when
the enrollment allowed it for a lab (`plain_http_lab`).
"""

import gzip
import http.client
import ipaddress
import json
import secrets
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta

from edge.adapters.identity import DeviceIdentity
from sync.protocol import (
    API_PREFIX,
    BATCH_CONTENT_TYPE,
    HEADER_HUB_TIME,
    SyncError,
    sign_request,
)

DEFAULT_TIMEOUT_S = 30.0
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
        self.clock_offset_s = clock_offset_s
        self.timeout_s = timeout_s
        self.nonce = nonce
        self.bytes_sent = 0

    # ---- the calls the agent makes ---------------------------------------------------------

    def enroll(self, document: dict, now: datetime) -> dict:
        return _answered(self._json("POST", "/enroll", document, now))

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

    # ---- plumbing --------------------------------------------------------------------------

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
    ) -> dict | None:
        try:
            return self._send(method, path, body, now, content_type, content_encoding)
        except HubRefusal as refusal:
            if refusal.code != "STALE_TIMESTAMP" or refusal.hub_time is None:
                raise
            # Our clock is off: sign with the hub's time from now on, and try once more.
            self.clock_offset_s = round((refusal.hub_time - now).total_seconds())
            return self._send(method, path, body, now, content_type, content_encoding)

    def _send(
        self,
        method: str,
        path: str,
        body: bytes,
        now: datetime,
        content_type: str | None,
        content_encoding: str | None,
    ) -> dict | None:
        full_path = self.base_path + API_PREFIX + path
        headers = sign_request(
            self.identity.private_key,
            device_id=self.identity.device_id,
            method=method,
            path=full_path,
            body=body,
            now=now + timedelta(seconds=self.clock_offset_s),
            nonce=self.nonce(),
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
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout_s, context=self.context
            ) as response:
                status = response.status
                data = _read_body(response)
        except urllib.error.HTTPError as error:
            raise _error_of(error) from None
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
        if status == 204:
            return None
        try:
            answer = json.loads(data)
        except ValueError:
            raise SyncError("BAD_RESPONSE", "not JSON", retryable=True) from None
        if not isinstance(answer, dict):
            raise SyncError("BAD_RESPONSE", "not a JSON object", retryable=True)
        return answer


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


def _error_of(error: urllib.error.HTTPError) -> SyncError:
    hub_time = _hub_time(error.headers.get(HEADER_HUB_TIME) if error.headers else None)
    try:
        data = _read_body(error)
        detail = json.loads(data)["error"]
        code, message = str(detail["code"]), str(detail.get("detail") or "")
    except (ValueError, KeyError, TypeError, OSError, http.client.HTTPException):
        code, message = "HUB_ERROR", f"HTTP {error.code}"
    if error.code >= 500 or code == "HUB_ERROR":
        return SyncError("HUB_ERROR", f"HTTP {error.code} {message}".strip(), retryable=True)
    return HubRefusal(code, message, error.code, hub_time)


def _answered(answer: dict | None) -> dict:
    """Enrollment and uploads always answer with a document; an empty answer is wrong."""
    if answer is None:
        raise SyncError("BAD_RESPONSE", "the hub answered with no content")
    return answer
