"""The hub's device API under `/api/v1` (`docs/sync-protocol.md`): enrollment, signed
uploads and heartbeats, county updates, software releases, the hub's clock. Each view
authenticates the device, hands the request to a use case (`sync.hub.services`) with the
request's store and the hub's clock (`sync.hub.runtime`), and answers JSON; a `SyncError`
becomes its bilingual error document and HTTP status. Every answer (errors and 204
included) is signed by the county key over the request it answers
(`sync.protocol.sign_answer`), except a release file's bytes: they are streamed from disk
unsigned, the signed release manifest's SHA-256 covers them (`docs/releases.md`).
"""

import gzip
import json

from flask import Blueprint, Response, current_app, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from sync.hub.runtime import hub_runtime, hub_store
from sync.hub.services import (
    enrollment,
    publishing,
    releases,
    service_requests,
    statements,
    uploads,
)
from sync.protocol import (
    API_PREFIX,
    HEADER_DEVICE,
    HEADER_HUB_SIGNATURE,
    HEADER_HUB_TIME,
    HEADER_NONCE,
    SyncError,
    decode_batch,
    iso,
    sign_answer,
)
from sync.releases import FILE_NAME

HTTP_STATUS = {
    "BAD_REQUEST": 400,
    "DEVICE_ID_MISMATCH": 400,
    "UNSIGNED": 401,
    "UNKNOWN_DEVICE": 401,
    "BAD_SIGNATURE": 401,
    "STALE_TIMESTAMP": 401,
    "NONCE_REUSED": 401,
    "DEVICE_REVOKED": 403,
    "CODE_UNKNOWN": 403,
    "SLOT_REVOKED": 403,
    "NOT_FOUND": 404,
    "UNKNOWN_KIND": 404,
    "CODE_USED": 409,
    "ALREADY_ENROLLED": 409,
    "CODE_EXPIRED": 410,
    "TOO_LARGE": 413,
    "ATTACHMENT_TOO_LARGE": 413,
    "ATTACHMENT_HASH_MISMATCH": 400,
    "ATTACHMENT_TYPE": 415,
    "ATTACHMENT_UNKNOWN": 404,
    "BATCH_TOO_LARGE": 413,
    "ENROLL_THROTTLED": 429,
}
COMPRESS_ABOVE = 1024

api = Blueprint("api", __name__, url_prefix=API_PREFIX)


def _signed_path() -> str:
    """The path the device signed: as it asked for it, query string included."""
    query = request.query_string.decode("latin-1")
    return request.script_root + request.path + (f"?{query}" if query else "")


def _json(value: object, status: int = 200) -> Response:
    """Compressed (if asked) only once signed, in `_sign_answer`."""
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(data, status=status, mimetype="application/json")


def _body() -> bytes:
    return request.get_data(cache=False)


def _json_body(raw: bytes) -> dict:
    try:
        document = json.loads(raw)
    except ValueError:
        raise SyncError("BAD_REQUEST", "the body is not JSON") from None
    if not isinstance(document, dict):
        raise SyncError("BAD_REQUEST", "the body is not a JSON object")
    return document


def _authenticated(raw: bytes) -> str:
    runtime = hub_runtime()
    return enrollment.authenticate(
        hub_store(),
        request.headers,
        method=request.method,
        path=_signed_path(),
        body=raw,
        now=runtime.now(),
    )


def client_address() -> str:
    """Who sent the request, for throttles and alarms: the socket's peer, or behind a
    reverse proxy the hub trusts (`TRUST_PROXY`), the address that proxy appended last to
    X-Forwarded-For (anything before it is what the client claimed)."""
    peer = request.remote_addr or "unknown"
    if not current_app.config.get("TRUST_PROXY"):
        return peer
    forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
    return forwarded[-1][:64] or peer


@api.post("/enroll")
def enroll_device() -> Response:
    raw = _body()
    answer = enrollment.enroll(
        hub_store(),
        request.headers,
        method=request.method,
        path=_signed_path(),
        body=_json_body(raw),
        raw_body=raw,
        now=hub_runtime().now(),
        client=client_address(),
        encryption_key=hub_runtime().encryption_key,
    )
    return _json(answer)


@api.post("/records")
def upload_records() -> Response:
    raw = _body()
    device_id = _authenticated(raw)
    try:
        batch = decode_batch(raw, request.headers.get("Content-Encoding"))
    except SyncError as error:
        uploads.refuse_batch(hub_store(), device_id, error, hub_runtime().now())
        raise
    answer = uploads.ingest(hub_store(), device_id, batch, hub_runtime().now())
    hub_runtime().wake_reconciler()
    return _json(answer)


@api.post("/heartbeat")
def device_heartbeat() -> Response:
    raw = _body()
    if len(raw) > uploads.MAX_HEARTBEAT_BYTES:
        raise SyncError("TOO_LARGE", f"a heartbeat is at most {uploads.MAX_HEARTBEAT_BYTES} bytes")
    device_id = _authenticated(raw)
    return _json(uploads.heartbeat(hub_store(), device_id, _json_body(raw), hub_runtime().now()))


@api.get("/updates/<kind>")
def county_update(kind: str) -> Response:
    _authenticated(b"")
    update = publishing.update_for(
        hub_store(),
        hub_runtime().county_key,
        kind,
        since=request.args.get("since") or None,
        full=request.args.get("full") == "1",
    )
    if update is None:
        return Response(status=204)
    return _json(update)


@api.get("/release")
def release_offer() -> Response:
    _authenticated(b"")
    document = releases.offer(
        hub_store(),
        arch=request.args.get("arch", ""),
        python=request.args.get("python", ""),
        running=request.args.get("running", ""),
    )
    return _json({"release": document})


@api.get("/release/<version>/<arch>/<path:name>")
def release_file(version: str, arch: str, name: str) -> Response:
    _authenticated(b"")
    # Any name is routed here (a JSON refusal, not an HTML page), and only a plain file
    # name the release's manifest lists is ever made into a path.
    if not FILE_NAME.fullmatch(name) or ".." in name:
        raise SyncError("NOT_FOUND", "no such release file")
    published = hub_store().release(version, arch)
    # Withdrawn releases stay downloadable: a device may be half-way through one.
    if published is None or name not in {f["name"] for f in published.manifest["files"]}:
        raise SyncError("NOT_FOUND", f"no file {name} in release {version[:40]} for {arch[:20]}")
    # Absolute: Flask would take a relative data directory as relative to its package.
    path = (releases.release_folder(hub_runtime().data_dir, version, arch) / name).absolute()
    # Range requests answered (206), so that a device resumes an interrupted download.
    return send_file(
        path, mimetype="application/octet-stream", conditional=True, max_age=0, etag=False
    )


@api.get("/statement")
def clearing_statement() -> Response:
    """The county's signed clearing statement of the device's clinic for ?month=YYYY-MM
    (its latest revision; null while the month is not over). `docs/statements.md`."""
    device_id = _authenticated(b"")
    runtime = hub_runtime()
    document = statements.statement_for_device(
        hub_store(), runtime.county_key, device_id, request.args.get("month", ""), runtime.now()
    )
    return _json({"statement": document})


@api.post("/statement/reconciliation")
def statement_reconciliation() -> Response:
    """The device's comparison of a statement revision with its own ledger."""
    raw = _body()
    device_id = _authenticated(raw)
    return _json(
        statements.record_report(hub_store(), device_id, _json_body(raw), hub_runtime().now())
    )


@api.get("/encryption-key")
def encryption_key() -> Response:
    """The county's signed encryption key statement: what a device seals the ID number of
    an enrolment to (`docs/service-point.md`)."""
    _authenticated(b"")
    return _json({"county_encryption_key": hub_runtime().encryption_key})


@api.put("/attachments/<sha256>")
def upload_attachment(sha256: str) -> Response:
    """A photo a request of this device names (JPEG or PNG, at most 3 MiB), sent after
    the request itself; the request's size limit bounds the body before it is read."""
    raw = _body()
    device_id = _authenticated(raw)
    answer = service_requests.store_attachment(
        hub_store(),
        device_id,
        sha256,
        request.headers.get("Content-Type", ""),
        raw,
        hub_runtime().now(),
    )
    return _json(answer)


@api.get("/decisions")
def request_decisions() -> Response:
    """The county's signed decisions on this device's requests after ?after=SERIAL, at
    most 200 in serial order; `more` says whether to ask again."""
    device_id = _authenticated(b"")
    text = request.args.get("after", "0")
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise SyncError("BAD_REQUEST", "after must be a serial (a whole number)")
    return _json(service_requests.decisions_for(hub_store(), device_id, int(text)))


@api.get("/time")
def hub_time() -> Response:
    return _json({"hub_time": iso(hub_runtime().now())})


@api.after_request
def _sign_answer(response: Response) -> Response:
    runtime = hub_runtime()
    hub_time = iso(runtime.now())
    response.headers[HEADER_HUB_TIME] = hub_time
    response.headers["Cache-Control"] = "no-store"
    if response.direct_passthrough:
        # A release file streamed from disk: not read into memory to sign, not
        # compressed (a Range must count the file's own bytes). The signed manifest's
        # SHA-256 is what the device checks it against.
        return response
    data = response.get_data()
    # The device's nonce binds the answer to its request: a signed answer kept from
    # earlier does not verify for any other request.
    response.headers[HEADER_HUB_SIGNATURE] = sign_answer(
        runtime.county_key,
        method=request.method,
        path=_signed_path(),
        device_id=request.headers.get(HEADER_DEVICE, ""),
        nonce=request.headers.get(HEADER_NONCE, ""),
        status=response.status_code,
        body=data,
        hub_time=hub_time,
    )
    if len(data) > COMPRESS_ABOVE and "gzip" in request.headers.get("Accept-Encoding", ""):
        response.set_data(gzip.compress(data, compresslevel=6, mtime=0))
        response.headers["Content-Encoding"] = "gzip"
        response.headers["Vary"] = "Accept-Encoding"
    return response


@api.errorhandler(SyncError)
def _refused(error: SyncError) -> Response:
    return _json({"error": error.to_dict()}, HTTP_STATUS.get(error.code, 400))


@api.errorhandler(RequestEntityTooLarge)
def _too_large(_error: RequestEntityTooLarge) -> Response:
    return _json({"error": SyncError("TOO_LARGE").to_dict()}, 413)
