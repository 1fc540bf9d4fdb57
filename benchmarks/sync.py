"""Section `sync`: uploading a backlog of signed settlements to a county hub over loopback
HTTP, against the floor measured in the same run — a bare HTTP POST of the same bytes
to the same server, answered without looking at them — and bytes per record on the wire.

The backlog reuses a few hundred real settlement bodies, so gzip finds more repetition
than in a real clinic's records: read the bytes per record as a lower bound.
"""

import json
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from benchmarks.context import BenchContext
from benchmarks.measure import target
from edge import demo, services
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.documents import visit_from_json
from edge.domain.ledger import genesis_hash, new_record
from sync import agent
from sync.agent import jobs
from sync.agent import state as agent_state
from sync.agent.client import HubClient
from sync.demo import install_demo_county, provision_and_enroll
from sync.hub.app import create_app
from sync.planner import plan_batch
from sync.protocol import BATCH_CONTENT_TYPE, encode_batch


class QuietRequestHandler(WSGIRequestHandler):
    """No access log lines (the benchmark serves thousands of requests)."""

    def log(self, type: str, message: str, *args) -> None:
        pass


NOW = datetime(2026, 11, 22, 9, 30, tzinfo=services.CLINIC_TZ)
FULL_RECORDS = 20_000
QUICK_RECORDS = 2_000
SETTLED_THROUGH_SERVICE = 200
UPLOAD_TARGET_S = 60.0  # 20,000 settlements (weeks of a busy clinic) within a minute
BYTES_PER_RECORD_TARGET = 1000.0
PERSONS = [
    "32011500000001",
    "32011500000003",
    "32011500000005",
    "32011500000501",
    "32011500000502",
    "32011600000009",
    "32011500000022",
    "32011700000508",
]


@Request.application
def sink(request: Request) -> Response:
    """The floor: read the body, answer at once."""
    request.get_data()
    return Response(b"{}", mimetype="application/json")


def build_device(data_dir: Path, records: int):
    """A device whose outbox holds `records` signed settlements: a few settled through
    `services.settle_visit`, the rest signed and chained the same way with reused bodies
    (synchronous=OFF on this one connection, a transaction per thousand)."""
    data_dir.mkdir(parents=True)
    store = SqliteDeviceStore.open(data_dir, create=True)
    list(demo.install(store, NOW))
    identity = services.init_device(store, data_dir, NOW - timedelta(hours=1))
    visit = visit_from_json(
        {
            "date": NOW.date().isoformat(),
            "visit_type": "general",
            "diagnoses": ["J06.900"],
            "lines": [
                {"code": "XJ01CAA040A001", "quantity": "2"},
                {"code": "110200005000000", "quantity": "1"},
            ],
        }
    )
    bodies = []
    for index in range(min(SETTLED_THROUGH_SERVICE, records)):
        recorded = services.settle_visit(
            store,
            identity,
            insured_id=PERSONS[index % len(PERSONS)],
            visit=visit,
            operator="doc01",
            now=NOW + timedelta(seconds=index),
        )
        bodies.append(recorded.record["body"])
    store.db.execute("PRAGMA synchronous = OFF")
    while (head := store.ledger_head()).seq < records:
        with store.write_transaction():
            seq, prev = head.seq, head.hash or genesis_hash(identity.public_key)
            for _ in range(min(1000, records - head.seq)):
                seq += 1
                body = bodies[seq % len(bodies)]
                created_at = (NOW + timedelta(seconds=seq)).isoformat()
                record = new_record(
                    device_id=identity.device_id,
                    seq=seq,
                    kind="settlement",
                    tx_id=f"bench-{seq}",
                    created_at=created_at,
                    prev_hash=prev,
                    body=body,
                    private_key=identity.private_key,
                )
                store.append_record(
                    record,
                    day=created_at[:10],
                    insured_id=body["insured_id"],
                    fund=body["result"]["fund"],
                )
                prev = record["hash"]
    store.db.execute("PRAGMA synchronous = FULL")
    return store, identity


def bare_posts(url: str, batches: list[bytes]) -> float:
    """Seconds to POST every batch, as they are, to the sink (same client library)."""
    start = time.perf_counter()
    for body in batches:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": BATCH_CONTENT_TYPE, "Content-Encoding": "gzip"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            json.loads(answer.read())
    return time.perf_counter() - start


def bench_sync(ctx: BenchContext) -> dict:
    records = ctx.scale(FULL_RECORDS, QUICK_RECORDS)
    with tempfile.TemporaryDirectory(dir=ctx.workdir, prefix="sync-") as scratch:
        root = Path(scratch)
        build_start = time.perf_counter()
        store, identity = build_device(root / "device", records)
        build_s = time.perf_counter() - build_start
        hub_dir = root / "hub"
        install_demo_county(hub_dir, NOW)
        hub_app = create_app({"HUB_DATA_DIR": str(hub_dir), "CLOCK": lambda: NOW, "CONSOLE": False})
        wsgi = DispatcherMiddleware(hub_app, {"/bench": sink})
        server = make_server(
            "127.0.0.1", 0, wsgi, threaded=True, request_handler=QuietRequestHandler
        )
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            provision_and_enroll(
                store, identity, root / "device", hub_dir=hub_dir, hub_url=url, now=NOW
            )
            head = store.ledger_head().seq
            rows = store.db.execute("SELECT seq, record FROM ledger ORDER BY seq").fetchall()
            raw_bytes = sum(len(text.encode()) + 1 for _, text in rows)
            batches, position = [], 0
            while position < len(rows):
                batch = plan_batch(rows[position:])
                batches.append(encode_batch(text for _, text in batch))
                position += len(batch)

            floor_s = bare_posts(url + "/bench/sink", batches)
            county_key = agent_state.enrollment(store).county_public_key
            client = HubClient(url, identity, county_key=county_key)
            report = jobs.new_report(NOW, url)
            start = time.perf_counter()
            agent.upload_outbox(store, client, NOW, report)
            upload_s = time.perf_counter() - start
            if report["acked_seq"] != head or store.outbox_count():
                raise RuntimeError(f"the upload stopped at {report['acked_seq']} of {head}")
            floor_again_s = bare_posts(url + "/bench/sink", batches)
        finally:
            server.shutdown()
            thread.join()
            server.server_close()
            store.close()

    floor_s = min(floor_s, floor_again_s)
    wire_bytes = client.bytes_sent
    rate = head / upload_s
    projected_s = FULL_RECORDS / rate
    per_record = wire_bytes / head
    return {
        "records": head,
        "batches": report["batches"],
        "build_s": round(build_s, 2),
        "upload_s": round(upload_s, 3),
        "upload_records_per_s": round(rate),
        "bare_post_s": round(floor_s, 3),
        "bare_post_records_per_s": round(head / floor_s),
        "ratio_to_bare_post": round(upload_s / floor_s, 2),
        "wire_bytes": wire_bytes,
        "wire_bytes_per_record": round(per_record, 1),
        "json_bytes_per_record": round(raw_bytes / head, 1),
        "targets": {
            "upload_20k_s": target(
                projected_s,
                UPLOAD_TARGET_S,
                "s",
                f"upload of {FULL_RECORDS:,} signed settlements"
                + ("" if head >= FULL_RECORDS else f" (from {head:,})"),
            ),
            "wire_bytes_per_record": target(
                per_record,
                BYTES_PER_RECORD_TARGET,
                "B",
                "gzip JSON Lines bytes on the wire per record",
            ),
        },
        "summary": [
            f"{head:,} records in {report['batches']} batches (outbox built in {build_s:.1f} s)",
            f"upload (sign, gzip, verify every record, store, ack)  {upload_s:7.2f} s"
            f"  {rate:9,.0f} records/s",
            f"bare POST of the same bytes to the same server        {floor_s:7.2f} s"
            f"  {head / floor_s:9,.0f} records/s",
            f"ratio to the bare POST {upload_s / floor_s:.1f}x; on the wire {per_record:.0f}"
            f" B/record (JSON {raw_bytes / head:.0f} B/record)",
        ],
    }
