"""Helpers of the sync agent and hub tests: real device stores, a real hub serving on a
loopback port with a fake clock, raw signed requests. No mocks."""

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from clock import NOW, FakeClock
from hub_server import serve_in_background

from edge import demo, services
from edge.adapters.identity import DeviceIdentity
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.documents import visit_from_json
from edge.domain.ledger import genesis_hash, new_record
from edge.domain.model import Visit
from sync import demo as sync_demo
from sync.hub.bootstrap import open_hub_store
from sync.hub.ports import HubStore
from sync.hub.server import RunningHub
from sync.protocol import API_PREFIX, sign_request

OPERATOR = "doc01"
RESIDENT = "32011500000001"
EMPLOYEE = "32011500000501"  # deductible 30000 fen on general visits
# Active, eligible demo persons, used in turn so that nobody passes the visits-per-day limit.
PERSONS = [
    "32011500000001",
    "32011500000002",
    "32011500000003",
    "32011500000004",
    "32011500000005",
    "32011500000006",
    "32011500000007",
    "32011500000008",
    "32011600000009",
    "32011600000010",
    "32011500000011",
    "32011500000022",
    "32011500000501",
    "32011500000502",
    "32011600000505",
    "32011700000508",
]


@dataclass
class Device:
    data_dir: Path
    store: SqliteDeviceStore
    identity: DeviceIdentity
    settled: int = 0

    def settle(self, now: datetime, insured_id: str | None = None, lines=None) -> dict:
        person = insured_id or PERSONS[self.settled % len(PERSONS)]
        self.settled += 1
        return services.settle_visit(
            self.store,
            self.identity,
            insured_id=person,
            visit=general_visit(now, lines),
            operator=OPERATOR,
            now=now,
        ).record

    def records(self) -> list[dict]:
        return list(self.store.records())


def general_visit(now: datetime, lines=None, **paying) -> Visit:
    """A general visit of `now`'s day; `paying`: use_personal_account=True and the like."""
    return visit_from_json(
        {
            "date": now.date().isoformat(),
            "visit_type": "general",
            "diagnoses": ["J06.900"],
            "lines": [
                {"code": code, "quantity": qty}
                for code, qty in lines or [("XJ01CAA040A001", "2"), ("110200005000000", "1")]
            ],
            **paying,
        }
    )


def paid_from_account(device: "Device", insured_id: str, now: datetime) -> dict:
    """A visit of `insured_id` paid from their personal account: the signed record."""
    record = services.settle_visit(
        device.store,
        device.identity,
        insured_id=insured_id,
        visit=general_visit(now, [("XJ01CAA040A001", "2")], use_personal_account=True),
        operator=OPERATOR,
        now=now,
    ).record
    assert record["body"]["result"]["personal_account"] > 0
    return record


def new_device(data_dir: Path, now: datetime = NOW) -> Device:
    """A device with the demo county installed and its identity made."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteDeviceStore.open(data_dir, create=True)
    list(demo.install(store, now))
    identity = services.init_device(store, data_dir, now - timedelta(hours=1))
    return Device(data_dir, store, identity)


def start_hub(hub_dir: Path, clock: FakeClock, *, tls: dict | None = None, **config) -> RunningHub:
    """The demo county's hub, serving on a free loopback port, reading `clock`; `config`
    adds to its app's (`RECONCILE_INTERVAL_S=60`, say); with `tls` (hub_server's
    `make_certificate`), over HTTPS."""
    sync_demo.install_demo_county(hub_dir, clock())
    return serve_in_background(hub_dir, config={"CLOCK": clock, **config}, tls=tls)


def enroll(device: Device, hub_dir: Path, hub_url: str, now: datetime, **slot) -> dict:
    """Provision a slot and enroll `device` into it (keywords: clinic_code, township, and
    hub_certificate: the PEM text to pin)."""
    return sync_demo.provision_and_enroll(
        device.store,
        device.identity,
        device.data_dir,
        hub_dir=hub_dir,
        hub_url=hub_url,
        now=now,
        **slot,
    )


@contextmanager
def hub_store(hub_dir: Path) -> Iterator[HubStore]:
    store = open_hub_store(hub_dir)
    try:
        yield store
    finally:
        store.close()


def hub_records(hub_dir: Path, device_id: str) -> list[dict]:
    with hub_store(hub_dir) as store:
        return list(store.records(device_id))


def append_signed_records(device: Device, bodies: list[dict], start: datetime) -> None:
    """Append settlements reusing real bodies, signed and chained exactly as the device does,
    fast: one transaction per thousand, synchronous=OFF on this one connection."""
    store, identity = device.store, device.identity
    store.db.execute("PRAGMA synchronous = OFF")
    try:
        done = 0
        while done < len(bodies):
            with store.write_transaction():
                head = store.ledger_head()
                seq, prev_hash = (head.seq, head.hash) if head else (0, None)
                prev_hash = prev_hash or genesis_hash(identity.public_key)
                for body in bodies[done : done + 1000]:
                    seq += 1
                    created_at = start + timedelta(seconds=seq)
                    record = new_record(
                        device_id=identity.device_id,
                        seq=seq,
                        kind="settlement",
                        tx_id=f"bulk-{seq}",
                        created_at=created_at.isoformat(),
                        prev_hash=prev_hash,
                        body=body,
                        private_key=identity.private_key,
                    )
                    store.append_record(
                        record,
                        day=created_at.date().isoformat(),
                        insured_id=body["insured_id"],
                        fund=body["result"]["fund"],
                    )
                    prev_hash = record["hash"]
                done += 1000
    finally:
        store.db.execute("PRAGMA synchronous = FULL")


def signed_call(
    hub_url: str,
    identity: DeviceIdentity,
    method: str,
    path: str,
    body: bytes,
    now: datetime,
    *,
    nonce: str = "nonce-0123456789",
    headers: dict | None = None,
    device_id: str | None = None,
) -> tuple[int, dict, dict]:
    """One raw request signed by `identity` (or claiming `device_id`); returns the status,
    the JSON answer and the signed headers (to replay them)."""
    signed = sign_request(
        identity.private_key,
        device_id=device_id or identity.device_id,
        method=method,
        path=API_PREFIX + path,
        body=body,
        now=now,
        nonce=nonce,
    )
    status, answer = raw_call(hub_url, method, path, body, {**signed, **(headers or {})})
    return status, answer, signed


def raw_call(hub_url: str, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
    parsed = urllib.parse.urlsplit(hub_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        connection.request(method, API_PREFIX + path, body=body or None, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return response.status, json.loads(data) if data else {}
