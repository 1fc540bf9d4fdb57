"""Section `ui`: the terminal UI's two hot paths, measured server-side through the Flask
test client (the whole WSGI request: routing, session, CSRF, services, templates):

- confirm → receipt shown: POST /api/settle (a durable, signed settlement) followed by
  GET of the receipt page it points to;
- the live preview: one POST /api/quote round trip, as the settle page sends on every
  change of a line.
"""

import re
import secrets
import time
from datetime import timedelta

from benchmarks.context import BenchContext
from benchmarks.measure import summarize_ns, target
from benchmarks.settle import NOW, PERSONS, _Floor, demo_device, floor_connection
from web_ui import drafts
from web_ui.app import create_app

TARGET_MS = 50.0
VISIT = {
    "visit_type": "general",
    "diagnoses": ["J06.900"],
    "lines": [
        {"code": "XJ01CAA040A001", "quantity": "2"},
        {"code": "110200005000000", "quantity": "1"},
        {"code": "XR05XAA202A001", "quantity": "1"},
    ],
    "use_personal_account": False,
}
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


class _Clock:
    """One second per call, so records keep their order as in the settle section."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self):
        self.now += timedelta(seconds=1)
        return self.now


def _signed_in_client(app):
    client = app.test_client()
    token = _CSRF.search(client.get("/signin").get_data(as_text=True)).group(1)
    client.post("/signin", data={"operator": "doc01", "pin": "1111", "csrf_token": token})
    token = _CSRF.search(client.get("/settle").get_data(as_text=True)).group(1)
    return client, {"X-CSRFToken": token}


def _choose(store, insured_id: str) -> None:
    """The patient as the card read leaves them: the operator's visit being built, with a
    fresh one-time visit token."""
    patient = {"insured_id": insured_id, "via": "card", "visit_token": secrets.token_hex(16)}
    drafts.start(store, "doc01", patient, NOW)


def bench_ui(ctx: BenchContext) -> dict:
    iterations = ctx.scale(200, 30)
    warmup = ctx.scale(10, 3)
    data_dir = ctx.workdir / "ui" / "device"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    store, _identity = demo_device(data_dir)
    app = create_app(
        {"DATA_DIR": data_dir, "DEMO": True, "SECRET_KEY": "bench", "CLOCK": _Clock(),
         "PIN_HASH_COST": 4, "PRINTER": None}
    )  # fmt: skip
    client, headers = _signed_in_client(app)

    def confirm_to_receipt(i: int) -> int:
        _choose(store, PERSONS[i % len(PERSONS)])  # the card read: not timed
        start = time.perf_counter_ns()
        answer = client.post("/api/settle", json=VISIT, headers=headers)
        if answer.status_code != 200:
            raise RuntimeError(f"settle {answer.status_code}: {answer.get_data(as_text=True)}")
        receipt = client.get(answer.json["receipt_url"])
        elapsed = time.perf_counter_ns() - start
        if receipt.status_code != 200:
            raise RuntimeError(f"receipt {receipt.status_code}")
        return elapsed

    def preview(_i: int) -> int:
        start = time.perf_counter_ns()
        answer = client.post("/api/quote", json=VISIT, headers=headers)
        elapsed = time.perf_counter_ns() - start
        if answer.status_code != 200 or not answer.json["ok"]:
            raise RuntimeError(f"quote answered {answer.status_code}")
        return elapsed

    for i in range(warmup):
        confirm_to_receipt(i)
    settle_ns = [confirm_to_receipt(i) for i in range(iterations)]
    _choose(store, PERSONS[0])
    for i in range(warmup):
        preview(i)
    quote_ns = [preview(i) for i in range(iterations)]

    # The physical floor in the same run: one bare durable INSERT of a ledger-sized row.
    floor_conn = floor_connection(ctx.workdir / "ui" / "floor.db")
    try:
        floor = _Floor(floor_conn, 2000, ctx.seed)
        for _ in range(warmup):
            floor()
        floor_ns = []
        for _ in range(iterations):
            start = time.perf_counter_ns()
            floor()
            floor_ns.append(time.perf_counter_ns() - start)
    finally:
        floor_conn.close()
        store.close()

    settle_stats, quote_stats = summarize_ns(settle_ns), summarize_ns(quote_ns)
    floor_stats = summarize_ns(floor_ns)
    ratio = settle_stats["p50_us"] / floor_stats["p50_us"]
    return {
        "confirm_to_receipt": settle_stats,
        "live_preview": quote_stats,
        "durable_insert_floor": floor_stats,
        "confirm_to_receipt_over_floor_p50": round(ratio, 2),
        "summary": [
            f"confirm → receipt shown: p50 {settle_stats['p50_us'] / 1000:.1f} ms,"
            f" p90 {settle_stats['p90_us'] / 1000:.1f} ms ({iterations} visits)",
            f"live preview round trip: p50 {quote_stats['p50_us'] / 1000:.1f} ms,"
            f" p90 {quote_stats['p90_us'] / 1000:.1f} ms",
            f"bare durable insert (floor): p50 {floor_stats['p50_us'] / 1000:.1f} ms;"
            f" confirm → receipt is {ratio:.1f}× the floor",
        ],
        "targets": {
            "ui_confirm_to_receipt_p90": target(
                settle_stats["p90_us"] / 1000, TARGET_MS, "ms",
                "POST /api/settle + GET /receipt/<tx>, server-side, 90th percentile",
            ),
            "ui_live_preview_p90": target(
                quote_stats["p90_us"] / 1000, TARGET_MS, "ms",
                "POST /api/quote, server-side, 90th percentile",
            ),
        },
    }  # fmt: skip
