"""Something that answers for the county hub without being it: a real HTTP server on
loopback stands between the device and the real hub and answers on its own (unsigned,
signed by another key, signed but acknowledging records the device does not hold, an old
signed answer replayed to a new request, an unsigned revocation). In each case the device
moves nothing: its outbox, sync mark, unsynced fund (the offline limit) and last sync
time stay as they were, an event says what was refused, and the real hub still works."""

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sync_helpers import NOW, FakeClock, enroll, new_device, start_hub

from edge.adapters.sealing import encryption_key_statement, public_key_b64
from sync import agent
from sync.agent import state as agent_state
from sync.agent.client import HubClient
from sync.hub.adapters.county_key import load_county_key
from sync.protocol import (
    HEADER_DEVICE,
    HEADER_HUB_SIGNATURE,
    HEADER_HUB_TIME,
    HEADER_NONCE,
    iso,
    load_public_key,
    sign_answer,
    verify_answer,
)

LATER = NOW + timedelta(minutes=4)  # within the real hub's clock window


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes


class FakeHub:
    """A tiny HTTP server on loopback; `answer(request)` decides every answer."""

    def __init__(self, answer: Callable[[Request], Answer]):
        self.answer = answer
        self.requests: list[Request] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command, self.path, dict(self.headers), self.rfile.read(length)
                )
                fake.requests.append(request)
                answer = fake.answer(request)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = _handle

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def signed(key, request: Request, status: int, document: dict | None) -> Answer:
    """An answer signed by `key` for exactly this request, as the hub signs its own."""
    body = b"" if document is None else json.dumps(document).encode()
    hub_time = iso(LATER)
    signature = sign_answer(
        key,
        method=request.method,
        path=request.path,
        device_id=request.headers.get(HEADER_DEVICE, ""),
        nonce=request.headers.get(HEADER_NONCE, ""),
        status=status,
        body=body,
        hub_time=hub_time,
    )
    headers = {"Content-Type": "application/json", HEADER_HUB_TIME: hub_time}
    return Answer(status, {**headers, HEADER_HUB_SIGNATURE: signature}, body)


def unsigned(status: int, document: dict) -> Answer:
    headers = {"Content-Type": "application/json", HEADER_HUB_TIME: iso(LATER)}
    return Answer(status, headers, json.dumps(document).encode())


def forward(hub_url: str, request: Request) -> Answer:
    """The request passed on to the real hub as it came, and its answer as it came."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
    headers["Accept-Encoding"] = "identity"
    forwarded = urllib.request.Request(
        hub_url + request.path,
        data=request.body if request.method != "GET" else None,
        headers=headers,
        method=request.method,
    )
    try:
        with urllib.request.urlopen(forwarded, timeout=10) as response:
            status, answer_headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, body = error.code, error.headers, error.read()
    keep = ("Content-Type", HEADER_HUB_TIME, HEADER_HUB_SIGNATURE)
    return Answer(status, {k: answer_headers[k] for k in keep if k in answer_headers}, body)


@pytest.fixture
def clock():
    return FakeClock(NOW)


@pytest.fixture
def hub_dir(tmp_path):
    return tmp_path / "hub"


@pytest.fixture
def hub(hub_dir, clock):
    running = start_hub(hub_dir, clock)
    yield running
    running.stop()


@pytest.fixture
def device(tmp_path, hub, hub_dir):
    """Enrolled and synced once; then three visits settled offline, waiting to go."""
    made = new_device(tmp_path / "device")
    enroll(made, hub_dir, hub.url, NOW)
    assert sync(made, NOW)["ok"]
    for minute in range(1, 4):
        made.settle(NOW + timedelta(minutes=minute))
    yield made
    made.store.close()


@pytest.fixture
def fake():
    started: list[FakeHub] = []

    def start(answer: Callable[[Request], Answer]) -> FakeHub:
        started.append(FakeHub(answer))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def sync(device, now=LATER, hub_url=None) -> dict:
    return agent.sync_once(device.store, device.identity, device.data_dir, now, hub_url=hub_url)


def sync_state(device) -> dict:
    row = device.store.device()
    outbox = [seq for (seq,) in device.store.db.execute("SELECT seq FROM outbox ORDER BY seq")]
    return {
        "outbox": outbox,
        "synced_seq": row.synced_seq,
        "unsynced_fund": row.unsynced_fund,
        "last_sync_at": row.last_sync_at,
    }


def refused_events(device, after_seq: int) -> list[dict]:
    return [
        r["body"]
        for r in device.records()
        if r["seq"] > after_seq and r["body"].get("event") == "hub_answer_refused"
    ]


def assert_nothing_moved(device, before: dict, report: dict, codes: set[str]) -> None:
    after = sync_state(device)
    head_before = before["outbox"][-1]
    events = refused_events(device, head_before)
    assert events and {e["code"] for e in events} <= codes
    # Only signed events (the refusals, a refused county update) joined the outbox;
    # nothing left it.
    new = [r for r in device.records() if r["seq"] > head_before]
    assert {r["kind"] for r in new} == {"event"}
    assert after["outbox"] == before["outbox"] + [r["seq"] for r in new]
    assert (after["synced_seq"], after["unsynced_fund"], after["last_sync_at"]) == (
        before["synced_seq"],
        before["unsynced_fund"],
        before["last_sync_at"],
    )
    assert not report["ok"]
    upload = [e for e in report["errors"] if e["job"] == "upload"]
    assert upload and upload[0]["code"] in codes and upload[0]["message_zh"]


def test_the_waiting_visits_are_what_the_scenarios_protect(device):
    before = sync_state(device)
    assert before["outbox"] == [2, 3, 4] and before["synced_seq"] == 1
    assert before["unsynced_fund"] > 0 and before["last_sync_at"] is not None


def test_an_unsigned_acknowledgement_of_everything_moves_nothing(device, fake):
    server = fake(lambda request: unsigned(200, {"acked_seq": 1_000_000, "hub_time": iso(LATER)}))
    before = sync_state(device)
    report = sync(device, hub_url=server.url)
    assert_nothing_moved(device, before, report, {"ANSWER_UNSIGNED"})
    assert server.requests  # it was asked, and its answer did not count
    assert agent.sync_status(device.store, LATER)["connection"]["state"] == "offline"


def test_a_correctly_signed_answer_with_a_wrong_hash_moves_nothing(device, hub_dir, fake):
    county_key = load_county_key(hub_dir)  # the real county key: only the hash is wrong
    head = device.store.ledger_head()
    server = fake(
        lambda request: signed(
            county_key, request, 200, {"acked_seq": head.seq, "acked_hash": "0" * 64}
        )
    )
    before = sync_state(device)
    report = sync(device, hub_url=server.url)
    assert_nothing_moved(device, before, report, {"ACK_MISMATCH"})
    assert "县级平台确认的记录与本机账本不符" in report["errors"][0]["message_zh"]


def test_a_signed_acknowledgement_past_the_ledgers_head_moves_nothing(device, hub_dir, fake):
    county_key = load_county_key(hub_dir)
    head = device.store.ledger_head()
    server = fake(
        lambda request: signed(
            county_key, request, 200, {"acked_seq": 1_000_000, "acked_hash": head.hash}
        )
    )
    before = sync_state(device)
    report = sync(device, hub_url=server.url)
    assert_nothing_moved(device, before, report, {"ACK_MISMATCH"})


def test_an_answer_signed_by_another_key_moves_nothing(device, fake):
    other_key = Ed25519PrivateKey.generate()
    head = device.store.ledger_head()
    server = fake(
        lambda request: signed(
            other_key, request, 200, {"acked_seq": head.seq, "acked_hash": head.hash}
        )
    )
    before = sync_state(device)
    report = sync(device, hub_url=server.url)
    assert_nothing_moved(device, before, report, {"BAD_ANSWER_SIGNATURE"})


def test_an_old_signed_answer_replayed_to_a_new_request_moves_nothing(device, hub, fake):
    """The real hub's own answer to the upload, kept back from the device (it saw a failed
    request), is then replayed to the device's next requests: signed by the county, the
    right seq and hash, but for another request."""
    kept: dict[str, Answer] = {}

    def record_then_replay(request: Request) -> Answer:
        route = request.path.split("?")[0]
        if route not in kept:
            kept[route] = forward(hub.url, request)
            return unsigned(502, {"error": "gateway"})  # the device sees a failure
        return kept[route]

    server = fake(record_then_replay)
    before = sync_state(device)
    first = sync(device, hub_url=server.url)
    assert {e["code"] for e in first["errors"]} == {"HUB_ERROR"}
    assert sync_state(device) == before
    upload = json.loads(kept["/api/v1/records"].body)
    assert upload["acked_seq"] == device.store.ledger_head().seq  # the hub took them all

    report = sync(device, hub_url=server.url)
    assert_nothing_moved(device, before, report, {"BAD_ANSWER_SIGNATURE"})


def test_an_unsigned_revocation_neither_revokes_nor_moves_anything(device, fake):
    revoked = {
        "error": {
            "code": "DEVICE_REVOKED",
            "message": "this device has been revoked by the county",
            "message_zh": "这台设备已被县级平台停用",
            "detail": "",
        }
    }
    server = fake(lambda request: unsigned(403, revoked))
    before = sync_state(device)
    report = sync(device, hub_url=server.url)
    assert_nothing_moved(device, before, report, {"ANSWER_UNSIGNED"})
    assert agent_state.revocation(device.store) is None
    device.settle(LATER)  # settling goes on


def test_refusals_are_recorded_once_in_a_row_and_the_real_hub_then_takes_everything(device, fake):
    server = fake(lambda request: unsigned(200, {"acked_seq": 1_000_000}))
    head = device.store.ledger_head().seq
    sync(device, hub_url=server.url)
    events = len(refused_events(device, head))
    sync(device, hub_url=server.url)
    # upload, updates, decisions, heartbeat (no photo to send: the hub is not asked)
    assert len(refused_events(device, head)) == events == 4

    report = sync(device)  # the enrolled, real hub
    assert report["ok"], report["errors"]
    after = sync_state(device)
    assert after["outbox"] == [] and after["unsynced_fund"] == 0
    assert after["synced_seq"] == device.store.ledger_head().seq
    assert after["last_sync_at"] == agent_state.stamp(LATER)


def test_enrollment_refuses_an_answer_not_signed_by_the_key_it_names(tmp_path, fake):
    """Trust on first use, but the answer must at least come from the key it pins."""
    fresh = new_device(tmp_path / "fresh")
    named = Ed25519PrivateKey.generate()

    def enrollment_answer(request: Request) -> Answer:
        from edge.domain.ledger import b64url, raw_public_key

        document = {
            "device_id": fresh.identity.device_id,
            "clinic_code": "320115-009",
            "township": "秣陵街道",
            "county_name": "演示县",
            "county_public_key": b64url(raw_public_key(named.public_key())),
            "enrolled_at": iso(NOW),
        }
        return signed(Ed25519PrivateKey.generate(), request, 200, document)

    server = fake(enrollment_answer)
    with pytest.raises(Exception) as refused:
        agent.enroll(fresh.store, fresh.identity, fresh.data_dir, server.url, "ABCD-EFGH", NOW)
    assert getattr(refused.value, "code", None) == "BAD_ANSWER_SIGNATURE"
    assert agent_state.enrollment(fresh.store) is None
    fresh.store.close()


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/heartbeat", json.dumps({"device_clock": NOW.isoformat()}).encode()),
        ("GET", "/updates/policy?since=9999", b""),  # 204: nothing newer
        ("GET", "/updates/nonsense", b""),  # 404 UNKNOWN_KIND
    ],
)
def test_every_answer_of_the_real_hub_verifies_for_its_own_request_only(
    device, hub, method, path, body
):
    enrollment = agent_state.enrollment(device.store)
    client = HubClient(hub.url, device.identity, county_key=enrollment.county_public_key)
    nonces = iter(["nonce-answer-0001", "nonce-answer-0002"])
    client.nonce = lambda: next(nonces)
    try:
        if method == "GET":
            client._call(method, path, b"", NOW)
        else:
            client._call(method, path, body, NOW, "application/json")
    except Exception as error:  # a refusal still came signed, or it would say so
        assert getattr(error, "code", None) not in ("ANSWER_UNSIGNED", "BAD_ANSWER_SIGNATURE")
    answer = client._last_answer
    key = load_public_key(enrollment.county_public_key)
    fields = {
        "signature": answer.headers.get(HEADER_HUB_SIGNATURE),
        "hub_time": answer.headers.get(HEADER_HUB_TIME),
        "method": answer.method,
        "path": answer.path,
        "device_id": device.identity.device_id,
        "status": answer.status,
        "body": answer.body,
    }
    verify_answer(key, nonce="nonce-answer-0001", **fields)
    with pytest.raises(Exception, match="BAD_ANSWER_SIGNATURE"):
        verify_answer(key, nonce="nonce-answer-0002", **fields)


def test_the_hubs_time_answer_is_signed_too(hub, hub_dir):
    with urllib.request.urlopen(hub.url + "/api/v1/time") as response:
        body, headers = response.read(), response.headers
    verify_answer(
        load_county_key(hub_dir).public_key(),
        signature=headers[HEADER_HUB_SIGNATURE],
        hub_time=headers[HEADER_HUB_TIME],
        method="GET",
        path="/api/v1/time",
        device_id="",
        nonce="",
        status=200,
        body=body,
    )


# ---- the service point's endpoints (docs/sync-protocol.md) ------------------------------


def unpin(device) -> None:
    with device.store.write_transaction():
        device.store.db.execute("UPDATE sync_enrollment SET county_encryption_key = NULL")


NEW_ENDPOINTS = ("/api/v1/encryption-key", "/api/v1/decisions", "/api/v1/attachments/")


def test_a_hub_older_than_the_service_point_is_no_error(device, hub, fake):
    """Its web server's plain 404 for the new endpoints means nothing is offered."""

    def older(request: Request) -> Answer:
        if request.path.startswith(NEW_ENDPOINTS):
            return Answer(404, {"Content-Type": "text/html"}, b"<h1>Not Found</h1>")
        return forward(hub.url, request)

    unpin(device)
    server = fake(older)
    report = sync(device, hub_url=server.url)
    assert report["ok"], report
    assert any(r.path.startswith("/api/v1/decisions") for r in server.requests)
    assert device.store.county_encryption_key() is None
    assert sync_state(device)["outbox"] == []


def test_forged_decisions_and_encryption_keys_count_for_nothing(device, hub, hub_dir, fake):
    county_key = load_county_key(hub_dir)
    impostor = Ed25519PrivateKey.generate()
    statement = encryption_key_statement(
        public_key_b64(X25519PrivateKey.generate()), impostor, LATER
    )

    def forging(request: Request) -> Answer:
        if request.path.startswith("/api/v1/encryption-key"):  # the answer signed, not the key
            return signed(county_key, request, 200, {"county_encryption_key": statement})
        if request.path.startswith("/api/v1/decisions"):
            return unsigned(200, {"decisions": [{"decision": {"serial": 1}}], "more": False})
        return forward(hub.url, request)

    unpin(device)
    server = fake(forging)
    head = device.store.ledger_head().seq
    report = sync(device, hub_url=server.url)
    assert {e["job"]: e["code"] for e in report["errors"]} == {"decisions": "BAD_ENCRYPTION_KEY"}
    assert device.store.county_encryption_key() is None
    # With a key pinned the job asks for the decisions: an unsigned answer is no answer.
    agent_state.pin_encryption_key(device.store, public_key_b64(X25519PrivateKey.generate()))
    report = sync(device, hub_url=server.url)
    assert {e["job"]: e["code"] for e in report["errors"]} == {"decisions": "ANSWER_UNSIGNED"}
    assert device.store.last_decision_serial() == 0
    assert [e["job"] for e in refused_events(device, head)] == ["decisions"]
