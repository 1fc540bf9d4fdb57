"""Section `settle`: a durable, signed settlement against a bare SQLite commit (the floor),
and verifying a long signed ledger."""

import random
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.context import BenchContext
from benchmarks.measure import summarize_ns, target
from edge import demo, services
from edge.adapters.identity import DeviceIdentity
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.documents import visit_from_json
from edge.domain.model import Visit

SETTLE_FLOOR_RATIO_TARGET = 2.0
VERIFY_TARGET_S = 60.0  # for 100,000 records
VERIFY_TARGET_RECORDS = 100_000

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=services.CLINIC_TZ)
OPERATOR = "doc01"

# Active, eligible demo persons: residents (plain, extreme poverty, low-income guarantee,
# severe disability) and employees with and without an account balance. Rotating through
# them keeps each one's visits per day low; the daily limit would only flag, never refuse.
PERSONS = [
    "32011500000001", "32011500000002", "32011500000003", "32011500000004",
    "32011500000005", "32011500000006", "32011500000007", "32011500000008",
    "32011600000009", "32011600000010", "32011500000011", "32011500000022",
    "32011500000501", "32011500000502", "32011600000505", "32011700000508",
]  # fmt: skip

# The floor's row: the ledger's index columns as INTEGERs and the record's JSON as TEXT.
_FLOOR_SCHEMA = """CREATE TABLE IF NOT EXISTS floor (
    seq INTEGER PRIMARY KEY, day INTEGER NOT NULL, fund INTEGER, queued INTEGER NOT NULL,
    record TEXT NOT NULL) STRICT"""
_FLOOR_INSERT = "INSERT INTO floor VALUES (?, ?, ?, ?, ?)"


def the_visit() -> Visit:
    """A general visit: amoxicillin x2 and a consultation (as in the services tests)."""
    return visit_from_json(
        {
            "date": NOW.date().isoformat(),
            "visit_type": "general",
            "diagnoses": ["J06.900"],
            "lines": [
                {"code": "XJ01CAA040A001", "quantity": "2"},
                {"code": "110200005000000", "quantity": "1"},
            ],
            "use_personal_account": False,
        }
    )


def demo_device(data_dir: Path) -> tuple[SqliteDeviceStore, DeviceIdentity]:
    """A real data directory: the demo county installed and a device identity made."""
    store = SqliteDeviceStore.open(data_dir, create=True)
    list(demo.install(store, NOW))
    identity = services.init_device(store, data_dir, NOW - timedelta(hours=1))
    return store, identity


class _Settler:
    """Settles the visit for the next person in turn, one second after the previous one."""

    def __init__(self, store: SqliteDeviceStore, identity: DeviceIdentity):
        self.store, self.identity, self.visit, self.count = store, identity, the_visit(), 0

    def __call__(self) -> services.Recorded:
        insured_id = PERSONS[self.count % len(PERSONS)]
        now = NOW + timedelta(seconds=self.count)
        self.count += 1
        return services.settle_visit(
            self.store, self.identity, insured_id=insured_id, visit=self.visit,
            operator=OPERATOR, now=now,
        )  # fmt: skip


def stored_record_bytes(store: SqliteDeviceStore) -> int:
    """Mean UTF-8 length of the settlement records stored so far."""
    row = store.db.execute(
        "SELECT round(avg(length(CAST(record AS BLOB)))) FROM ledger WHERE kind = 'settlement'"
    ).fetchone()
    return int(row[0])


def floor_connection(path: Path) -> sqlite3.Connection:
    """A bare connection with the store's durability settings (WAL, synchronous=FULL)."""
    conn = sqlite3.connect(path, isolation_level=None)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise RuntimeError(f"the floor database is in journal mode {mode!r}, not WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(_FLOOR_SCHEMA)
    return conn


class _Floor:
    """One INSERT of a ledger-sized row in its own BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, conn: sqlite3.Connection, record_bytes: int, seed: int):
        rng = random.Random(seed)
        alphabet = "0123456789abcdef"
        # A few distinct payloads of exactly the stored record's size (ASCII: 1 byte each).
        self.payloads = ["".join(rng.choices(alphabet, k=record_bytes)) for _ in range(8)]
        self.conn, self.count = conn, 0

    def __call__(self) -> None:
        self.count += 1
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                _FLOOR_INSERT,
                (None, 20261122, 1078, self.count, self.payloads[self.count % 8]),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def without_fsync(execute: Callable[..., Any], fn: Callable[[], object], calls: int) -> dict:
    """`fn` run `calls` times with synchronous=OFF and no auto-checkpoint on its connection
    (`execute` runs SQL there): the time without the disk (Python, signing, SQLite's own
    work), and how many WAL frames (pages) each commit appends."""
    execute("PRAGMA wal_checkpoint(TRUNCATE)")
    execute("PRAGMA wal_autocheckpoint = 0")
    execute("PRAGMA synchronous = OFF")
    try:
        clock = time.perf_counter_ns
        samples = []
        for _ in range(calls):
            start = clock()
            fn()
            samples.append(clock() - start)
        frames = execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    finally:
        execute("PRAGMA synchronous = FULL")
        execute("PRAGMA wal_autocheckpoint = 1000")
    return {**summarize_ns(samples), "wal_frames_per_commit": round(frames / calls, 1)}


def settle_latency(ctx: BenchContext) -> dict:
    """`services.settle_visit` (durable commit, Ed25519 signature) against the floor: a bare
    INSERT of a row of the stored record's size, committed with the same settings."""
    iterations = ctx.scale(300, 50)
    warmup = ctx.scale(20, 5)
    root = ctx.workdir / "settle"
    root.mkdir(parents=True, exist_ok=True)
    store, identity = demo_device(root / "device")
    # Start from an empty WAL, like the floor: the demo install's pages are not the
    # settlements' to checkpoint. The checkpoints the settlements cause are theirs.
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    floor_conn = floor_connection(root / "floor.db")
    try:
        settler = _Settler(store, identity)
        first = settler()
        if first.settlement is None or first.settlement.fund <= 0:
            raise RuntimeError("the benchmark visit no longer pays from the fund")
        for _ in range(warmup):
            settler()
        record_bytes = stored_record_bytes(store)
        floor = _Floor(floor_conn, record_bytes, ctx.seed)
        for _ in range(warmup):
            floor()

        settle_ns: list[int] = []
        floor_ns: list[int] = []
        clock = time.perf_counter_ns
        for i in range(iterations):
            # Interleaved, and which one runs first alternates, so disk noise (and a WAL
            # checkpoint of the other file) falls on both sides alike.
            for side in (0, 1) if i % 2 else (1, 0):
                start = clock()
                if side == 0:
                    settler()
                    settle_ns.append(clock() - start)
                else:
                    floor()
                    floor_ns.append(clock() - start)
        ledger_rows = store.db.execute("SELECT count(*) FROM ledger").fetchone()[0]
        flagged = store.db.execute(
            "SELECT count(*) FROM ledger WHERE json_array_length(record, '$.body.needs_review') > 0"
        ).fetchone()[0]
        calls = ctx.scale(100, 20)
        settle_off = without_fsync(store.db.execute, settler, calls)
        floor_off = without_fsync(floor_conn.execute, floor, calls)
        ledger_rows_after = store.db.execute("SELECT count(*) FROM ledger").fetchone()[0]
        if services.verify_ledger(store).count != ledger_rows_after:
            raise RuntimeError("the benchmark ledger does not verify")
    finally:
        floor_conn.close()
        store.close()

    settle_stats = summarize_ns(settle_ns)
    floor_stats = summarize_ns(floor_ns)
    ratio_p50 = settle_stats["p50_us"] / floor_stats["p50_us"]
    ratio_p99 = settle_stats["p99_us"] / floor_stats["p99_us"]
    return {
        "iterations": iterations,
        "persons": len(PERSONS),
        "record_bytes": record_bytes,
        "ledger_rows": ledger_rows,
        "records_flagged_for_review": flagged,
        "settle": settle_stats,
        "floor": floor_stats,
        "settle_without_fsync": settle_off,
        "floor_without_fsync": floor_off,
        "ratio_p50": round(ratio_p50, 3),
        "ratio_p99": round(ratio_p99, 3),
        "targets": {
            "settle_p50_ratio_to_floor": target(
                ratio_p50,
                SETTLE_FLOOR_RATIO_TARGET,
                "x",
                "settle_visit p50 / one-INSERT durable commit p50",
            ),
            "settle_p99_ratio_to_floor": target(
                ratio_p99,
                SETTLE_FLOOR_RATIO_TARGET,
                "x",
                "settle_visit p99 / one-INSERT durable commit p99",
            ),
        },
        "summary": [
            f"{iterations} settlements interleaved with {iterations} floor commits, "
            f"{len(PERSONS)} persons, record {record_bytes} bytes, WAL + synchronous=FULL",
            f"settle_visit      p50 {settle_stats['p50_us']:8.0f} us  "
            f"p99 {settle_stats['p99_us']:8.0f} us",
            f"INSERT floor      p50 {floor_stats['p50_us']:8.0f} us  "
            f"p99 {floor_stats['p99_us']:8.0f} us",
            f"ratio to floor    p50 {ratio_p50:.2f}x  p99 {ratio_p99:.2f}x",
            f"synchronous=OFF   settle p50 {settle_off['p50_us']:.0f} us, floor p50 "
            f"{floor_off['p50_us']:.0f} us (no disk); WAL pages per commit: settle "
            f"{settle_off['wal_frames_per_commit']}, floor {floor_off['wal_frames_per_commit']}",
        ],
    }


def build_ledger(data_dir: Path, records: int) -> dict:
    """A ledger of `records` signed settlement records.

    A few visits are settled through `services.settle_visit`; the rest are appended with
    the same record path (`services.append_record`: `new_record` signs, `store.append_record`
    stores it and queues it in the outbox), reusing those settlement bodies, in
    transactions of `batch` records with synchronous=OFF on this one connection. Settling
    each through the service would take hours: every settlement sums the fund since the
    last sync over the whole unsynced ledger (see the `settle` section's notes).
    """
    store, identity = demo_device(data_dir)
    start = time.perf_counter()
    try:
        settler = _Settler(store, identity)
        bodies = [settler().record["body"] for _ in range(min(len(PERSONS), records))]
        store.db.execute("PRAGMA synchronous = OFF")
        batch = 1000
        seq = len(bodies)
        while seq < records:
            with store.write_transaction():
                for _ in range(min(batch, records - seq)):
                    body = bodies[seq % len(bodies)]
                    created_at = NOW + timedelta(seconds=seq)
                    services.append_record(
                        store, identity, "settlement", body, created_at,
                        insured_id=body["insured_id"], fund=body["result"]["fund"],
                    )  # fmt: skip
                    seq += 1
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    return {"records": records, "settled_through_service": len(bodies),
            "batch": batch, "build_s": round(time.perf_counter() - start, 2)}  # fmt: skip


def ledger_verification(ctx: BenchContext) -> dict:
    """`services.verify_ledger` over a long ledger: read, parse, hash and check every
    signature; and the part of it that is reading and parsing alone."""
    records = ctx.scale(VERIFY_TARGET_RECORDS, 2_000)
    data_dir = ctx.workdir / "ledger-device"
    built = build_ledger(data_dir, records)

    store = SqliteDeviceStore.open(data_dir)  # the normal open: WAL, synchronous=FULL
    try:
        start = time.perf_counter()
        verification = services.verify_ledger(store)
        verify_s = time.perf_counter() - start
        if not verification.ok or verification.count != records:
            raise RuntimeError(f"the benchmark ledger does not verify: {verification}")
        start = time.perf_counter()
        read = sum(1 for _ in store.records())
        read_s = time.perf_counter() - start
        size_mb = (
            store.db.execute("SELECT sum(length(CAST(record AS BLOB))) FROM ledger").fetchone()[0]
            / 2**20
        )
    finally:
        store.close()
    if read != records:
        raise RuntimeError(f"read {read} records, expected {records}")

    rate = records / verify_s
    projected_s = VERIFY_TARGET_RECORDS / rate
    return {
        **built,
        "ledger_mb": round(size_mb, 1),
        "verify_s": round(verify_s, 3),
        "verify_records_per_s": round(rate),
        "read_parse_s": round(read_s, 3),
        "targets": {
            "verify_100k_s": target(
                projected_s,
                VERIFY_TARGET_S,
                "s",
                f"verify_ledger of {VERIFY_TARGET_RECORDS:,} records"
                + ("" if records == VERIFY_TARGET_RECORDS else f" (from {records:,})"),
            ),
        },
        "summary": [
            f"ledger of {records:,} records ({size_mb:.1f} MB of record JSON) built in "
            f"{built['build_s']:.1f} s: {built['settled_through_service']} settle_visit, "
            f"the rest signed and appended in batches of {built['batch']}, synchronous=OFF",
            f"verify_ledger     {verify_s:7.2f} s  {rate:9,.0f} records/s"
            f"  (100,000 in {projected_s:.1f} s)",
            f"  of which read + json.loads {read_s:.2f} s; hash + signature the rest",
        ],
    }


def bench_settle(ctx: BenchContext) -> dict:
    """Settlement latency against its floor, then the ledger verification rate."""
    latency = settle_latency(ctx)
    verification = ledger_verification(ctx)
    return {
        "latency": {k: v for k, v in latency.items() if k not in ("targets", "summary")},
        "verification": {k: v for k, v in verification.items() if k not in ("targets", "summary")},
        "targets": {**latency["targets"], **verification["targets"]},
        "summary": [*latency["summary"], *verification["summary"]],
    }
