"""Section `load`: many terminals at once against one county hub.

N simulated terminals, each with its own Ed25519 key, enrolled over HTTP with its own
one-time code and holding its own ledger of M signed, chained settlements (built with
`edge.domain.ledger.new_record`, no device database), upload their ledgers in batches, pull the
three kinds of update and send heartbeats, from a pool of client threads, for at most a
bounded time. Reported: records ingested per second, p50/p99 batch latency, and records
lost or duplicated (what the hub holds compared with what was sent).

Run against SQLite (waitress in the benchmark's process, as the demo's hub) and, when
the PostgreSQL server binaries are installed, the county's production shape: PostgreSQL
with fsync on behind `clinic hub serve` (`serve_production`), 10,000 terminals that really
enroll and upload over HTTP. Then the hub is filled to a million records (bulk-loaded
into PostgreSQL with COPY: the same devices' later records, short bodies) and the
console's fleet and device pages are timed, signed in as an admin over HTTP. Target: each
page's p99 under 300 ms (the batch latency is reported: with 32 clients at once it is
mostly waiting its turn).
Standalone against a running hub: `python -m benchmarks.load --hub URL --hub-dir DIR`.
"""

import argparse
import http.cookiejar
import importlib.util
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks.measure import percentile, target
from edge import demo, services
from edge.adapters.identity import DeviceIdentity, device_id_for
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.clock import system_clock
from edge.domain.documents import visit_from_json
from edge.domain.ledger import b64url, genesis_hash, new_record, raw_public_key
from sync.agent.client import HubClient
from sync.demo import install_demo_county
from sync.hub import console_auth
from sync.hub.bootstrap import DATABASE_URL_FILE, open_hub_store
from sync.hub.services import county
from sync.protocol import encode_batch

ROOT = Path(__file__).resolve().parent.parent
FULL = (2_000, 50)  # terminals, settlements each (SQLite)
QUICK = (50, 10)
# PostgreSQL, the county's shape: 10,000 terminals uploading over HTTP, then the hub filled
# to a million records in all by bulk-loading the same devices' later records.
PG_FULL = (10_000, 10)
PG_RECORDS = 1_000_000
PG_QUICK_RECORDS = 2_000
TOWNSHIPS = 20
BATCH_RECORDS = 25
CLIENT_THREADS = 32
# Enrollments in flight at once: every terminal here comes from one address (loopback),
# and the hub's throttle counts an attempt against its address until it succeeds.
ENROLLING_AT_ONCE = 4
_enrolling = threading.BoundedSemaphore(ENROLLING_AT_ONCE)
KINDS = ("catalog", "policy", "roster")
# The console's pages timed once the hub is loaded: how many of each, and the target.
PAGE_SAMPLES = 200
PAGE_P99_LIMIT_MS = 300.0
ADMIN, ADMIN_PASSWORD = "load-admin", "load-admin-password-2026"


_now = system_clock  # the load runs against hubs on the real clock


@dataclass
class Terminal:
    identity: DeviceIdentity
    code: str
    records: list[dict] = field(default_factory=list)


def settlement_body(workdir: Path) -> dict:
    """One real settlement body (settled through the device services once), reused."""
    data_dir = workdir / "body-device"
    data_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteDeviceStore.open(data_dir, create=True)
    try:
        now = _now()
        list(demo.install(store, now))
        identity = services.init_device(store, data_dir, now - timedelta(hours=1))
        visit = visit_from_json(
            {
                "date": now.date().isoformat(),
                "visit_type": "general",
                "diagnoses": ["J06.900"],
                "lines": [{"code": "XJ01CAA040A001", "quantity": "2"}],
            }
        )
        return services.settle_visit(
            store,
            identity,
            insured_id="32011500000001",
            visit=visit,
            operator="doc01",
            now=now,
        ).record["body"]
    finally:
        store.close()


def make_terminals(hub_dir: Path, count: int, settlements: int, body: dict) -> list[Terminal]:
    """Keys, provisioned slots (codes) and signed ledgers of `count` terminals."""
    terminals = []
    start = _now() - timedelta(days=1)
    store = open_hub_store(hub_dir)
    try:
        with store.unit_of_work():  # one transaction: setting up, not what is measured
            codes = [
                county.provision(
                    store,
                    clinic_code=f"LOAD-{index:05d}",
                    township=f"负载测试{index % TOWNSHIPS:02d}",
                    now=_now(),
                ).code
                for index in range(count)
            ]
        for index, code in enumerate(codes):
            key = Ed25519PrivateKey.generate()
            identity = DeviceIdentity(device_id_for(key.public_key()), key)
            terminal = Terminal(identity, code)
            prev = genesis_hash(key.public_key())
            for seq in range(1, settlements + 1):
                record = new_record(
                    device_id=identity.device_id,
                    seq=seq,
                    kind="settlement",
                    tx_id=f"load-{index}-{seq}",
                    created_at=(start + timedelta(seconds=seq)).isoformat(),
                    prev_hash=prev,
                    body=body,
                    private_key=key,
                )
                terminal.records.append(record)
                prev = record["hash"]
            terminals.append(terminal)
    finally:
        store.close()
    return terminals


def _record_text(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def run_terminal(hub_url: str, terminal: Terminal, versions: dict, latencies: list) -> int:
    """Enroll, upload the ledger in batches, pull updates, heartbeat; the acked seq."""
    client = HubClient(hub_url, terminal.identity, timeout_s=120)
    identity = terminal.identity
    with _enrolling:
        client.enroll(
            {
                "code": terminal.code,
                "device_id": identity.device_id,
                "public_key": b64url(raw_public_key(identity.public_key)),
            },
            _now(),
        )
    acked = 0
    for start in range(0, len(terminal.records), BATCH_RECORDS):
        batch = encode_batch(map(_record_text, terminal.records[start : start + BATCH_RECORDS]))
        began = time.perf_counter()
        answer = client.upload(batch, _now())
        latencies.append(time.perf_counter() - began)
        acked = answer["acked_seq"]
    for kind in KINDS:
        client.update(kind, versions.get(kind), _now())
    head = terminal.records[-1] if terminal.records else None
    client.heartbeat(
        {
            "device_clock": _now().isoformat(),
            "records_waiting": 0,
            "synced_seq": acked,
            "ledger_head": {"seq": head["seq"], "hash": head["hash"]} if head else {},
        },
        _now(),
    )
    return acked


def compare(hub_dir: Path, terminals: list[Terminal]) -> dict:
    """Records lost, duplicated or unexpected at the hub, against what was sent."""
    sent = {(t.identity.device_id, r["seq"]): r["hash"] for t in terminals for r in t.records}
    ours = {t.identity.device_id for t in terminals}
    store = open_hub_store(hub_dir)
    try:
        rows = [
            row
            for row in store.conn.execute("SELECT device_id, seq, hash FROM record")
            if row[0] in ours
        ]
    finally:
        store.close()
    held = {(d, s): h for d, s, h in rows}
    return {
        "sent": len(sent),
        "stored": len(rows),
        "lost": len(sent.keys() - held.keys()),
        "duplicated": len(rows) - len(held),
        "unexpected": sum(1 for k, h in held.items() if sent.get(k) != h),
    }


def run_load(
    hub_url: str,
    hub_dir: Path,
    *,
    terminals: int,
    settlements: int,
    duration_s: float,
    workdir: Path,
    threads: int = CLIENT_THREADS,
) -> dict:
    """Simulate the terminals against the hub at `hub_url` (whose data is `hub_dir`)."""
    fleet, build_s = build_fleet(hub_dir, workdir, terminals, settlements)
    return run_fleet(hub_url, hub_dir, fleet, build_s, duration_s=duration_s, threads=threads)


def build_fleet(
    hub_dir: Path, workdir: Path, terminals: int, settlements: int
) -> tuple[list[Terminal], float]:
    """The terminals, their slots provisioned at the hub; the seconds it took."""
    body = settlement_body(workdir)
    built = time.perf_counter()
    fleet = make_terminals(hub_dir, terminals, settlements, body)
    return fleet, time.perf_counter() - built


def run_fleet(
    hub_url: str,
    hub_dir: Path,
    fleet: list[Terminal],
    build_s: float,
    *,
    duration_s: float,
    threads: int = CLIENT_THREADS,
) -> dict:
    """Every terminal of `fleet` enrolls, uploads, pulls and beats, `threads` at once."""
    terminals, settlements = len(fleet), len(fleet[0].records) if fleet else 0
    store = open_hub_store(hub_dir)
    try:
        versions = {
            kind: p.version for kind in KINDS if (p := store.latest_publication(kind)) is not None
        }
    finally:
        store.close()
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + duration_s
    done: list[Terminal] = []
    lock = threading.Lock()

    def one(terminal: Terminal) -> None:
        if time.monotonic() > deadline:
            return
        try:
            acked = run_terminal(hub_url, terminal, versions, latencies)
        except Exception as error:  # count it, go on with the others
            with lock:
                errors.append(f"{type(error).__name__}: {error}")
            return
        with lock:
            done.append(terminal)
            if acked != len(terminal.records):
                errors.append(f"{terminal.identity.device_id} acked {acked}")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in as_completed([pool.submit(one, t) for t in fleet]):
            future.result()
    seconds = time.perf_counter() - started
    result = compare(hub_dir, done)  # the terminals that finished: every record acked
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1)

    return {
        "terminals": terminals,
        "settlements_each": settlements,
        "terminals_completed": len(done),
        "build_seconds": round(build_s, 1),
        "seconds": round(seconds, 2),
        "records_per_second": round(result["stored"] / seconds, 1) if seconds else 0.0,
        "batches": len(latencies),
        "batch_latency_p50_ms": pct(0.50) if latencies else None,
        "batch_latency_p99_ms": pct(0.99) if latencies else None,
        "errors": len(errors),
        "first_errors": errors[:5],
        **{k: result[k] for k in ("sent", "stored", "lost", "duplicated", "unexpected")},
    }


# ---- hubs to run against -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, alive: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url + "/api/v1/time", timeout=2).read()
            return
        except OSError:
            if not alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the hub at {url} did not come up") from None
            time.sleep(0.2)


def _pg_server_module():
    """tests/pg_server.py (a throwaway PostgreSQL server), loaded by path."""
    spec = importlib.util.spec_from_file_location("pg_server", ROOT / "tests" / "pg_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_against_sqlite(workdir: Path, **sizes) -> dict:
    from sync.hub.server import serve_in_background

    hub_dir = workdir / "hub-sqlite"
    install_demo_county(hub_dir, _now())
    running = serve_in_background(hub_dir, config={"RECONCILE_INTERVAL_S": None})
    try:
        return {
            "hub": "sqlite, waitress threaded",
            **run_load(running.url, hub_dir, workdir=workdir, **sizes),
        }
    finally:
        running.stop()


@contextmanager
def serve_production(hub_dir: Path, workdir: Path, workers: int = 2) -> Iterator[str]:
    """The hub in `hub_dir` behind the production server, on a free loopback port; its URL.
    The one place that starts it: `clinic hub serve` (gunicorn), as the county runs it."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    clinic = Path(sys.executable).parent / "clinic"
    command = [str(clinic), "hub", "serve", "--data-dir", str(hub_dir), "--port", str(port)]
    command += ["--reconcile-interval", "0", "--workers", str(workers), "--threads", "8"]
    with (workdir / "hub-server.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(url, lambda: process.poll() is None)
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def bulk_load_records(database: str, fleet: list[Terminal], total: int) -> dict:
    """Fill the hub to `total` records with COPY: each terminal's later records (seqs after
    the ones it uploaded), short bodies, spread evenly. Then ANALYZE, as autovacuum would."""
    import psycopg

    uploaded = sum(len(t.records) for t in fleet)
    per_device = max(0, -(-(total - uploaded) // max(1, len(fleet))))
    received = _now().isoformat()
    began = time.perf_counter()
    with psycopg.connect(database) as conn:
        with conn.cursor() as cursor:
            copy_sql = (
                "COPY record (device_id, seq, hash, kind, tx_id, created_at, received_at,"
                " record) FROM STDIN"
            )
            with cursor.copy(copy_sql) as copy:
                for index, terminal in enumerate(fleet):
                    device_id = terminal.identity.device_id
                    first = len(terminal.records) + 1
                    for seq in range(first, first + per_device):
                        tx_id = f"bulk-{index}-{seq}"
                        record = {"device_id": device_id, "seq": seq, "tx_id": tx_id, "bulk": 1}
                        copy.write_row(
                            (
                                device_id,
                                seq,
                                f"{index:016x}{seq:048x}",
                                "settlement",
                                tx_id,
                                received,
                                received,
                                json.dumps(record, separators=(",", ":")),
                            )
                        )
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")
        (count,) = conn.execute("SELECT count(*) FROM record").fetchone()
        (fsync,) = conn.execute("SHOW fsync").fetchone()
    return {
        "fsync": fsync,
        "bulk_loaded": per_device * len(fleet),
        "records_in_hub": count,
        "bulk_seconds": round(time.perf_counter() - began, 1),
    }


class ConsoleClient:
    """A signed-in console user over HTTP (cookie jar, the form's CSRF token)."""

    def __init__(self, url: str, username: str, password: str):
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        page = self.get("/console/login")
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if found is None:
            raise RuntimeError("the console's sign-in page has no CSRF token")
        form = {"username": username, "password": password, "csrf_token": found.group(1)}
        self.opener.open(self.url + "/console/login", urllib.parse.urlencode(form).encode())
        if "/console/logout" not in self.get("/console/"):
            raise RuntimeError(f"{username} could not sign in to the console")

    def get(self, path: str) -> str:
        with self.opener.open(self.url + path, timeout=60) as answer:
            return answer.read().decode()


def time_console_pages(url: str, hub_dir: Path, fleet: list[Terminal], samples: int) -> dict:
    """p50/p99 of the fleet page (pages and townships at random) and of a device's page
    (devices at random), one signed-in admin reading them one after another."""
    store = open_hub_store(hub_dir)
    try:
        with store.unit_of_work():
            console_auth.add_user(store, ADMIN, ADMIN_PASSWORD, "admin", None, _now())
    finally:
        store.close()
    client = ConsoleClient(url, ADMIN, ADMIN_PASSWORD)
    chooser = random.Random(20261126)
    pages = max(1, len(fleet) // 100)
    paths = {
        "fleet": lambda: f"/console/?page={chooser.randint(1, pages)}",
        "fleet_township": lambda: (
            "/console/?"
            + urllib.parse.urlencode({"township": f"负载测试{chooser.randrange(TOWNSHIPS):02d}"})
        ),
        "device": lambda: f"/console/devices/{chooser.choice(fleet).identity.device_id}",
    }
    report: dict = {}
    for name, path in paths.items():
        client.get(path())  # warm up
        timings, sizes = [], []
        for _ in range(samples):
            began = time.perf_counter()
            sizes.append(len(client.get(path())))
            timings.append((time.perf_counter() - began) * 1000)
        timings.sort()
        report[name] = {
            "n": samples,
            "p50_ms": round(percentile(timings, 0.50), 1),
            "p99_ms": round(percentile(timings, 0.99), 1),
            "max_bytes": max(sizes),
        }
    return report


def load_against_postgres(workdir: Path, *, records: int, workers: int = 2, **sizes) -> dict | None:
    """The county's shape: PostgreSQL (fsync on) behind the production server; the
    terminals upload over HTTP, then the hub is filled to `records` and its console timed."""
    pg_server = _pg_server_module()
    if pg_server.postgres_bin() is None:
        return None
    server = pg_server.start_server(durable=True)
    try:
        database = server.create_database("load")
        hub_dir = workdir / "hub-pg"
        install_demo_county_pg(hub_dir, database)
        fleet, build_s = build_fleet(
            hub_dir, workdir, sizes.pop("terminals"), sizes.pop("settlements")
        )
        with serve_production(hub_dir, workdir, workers) as url:
            hub = f"postgresql (fsync on), clinic hub serve: {workers} workers x 8 threads"
            report = {"hub": hub, **run_fleet(url, hub_dir, fleet, build_s, **sizes)}
            report.update(bulk_load_records(database, fleet, records))
            try:
                report["console"] = time_console_pages(url, hub_dir, fleet, PAGE_SAMPLES)
            except (OSError, RuntimeError) as error:  # an HTTP error is an OSError
                log = (workdir / "hub-server.log").read_text(errors="replace")[-4000:]
                raise RuntimeError(
                    f"the console failed: {error}; the server said:\n{log}"
                ) from None
        return report
    finally:
        server.stop()


def install_demo_county_pg(hub_dir: Path, database: str) -> None:
    """`sync.demo.install_demo_county` with the hub in PostgreSQL: hubs open through
    `open_hub_store`, which follows $CLINIC_HUB_DATABASE while it is set."""
    os.environ["CLINIC_HUB_DATABASE"] = database
    try:
        install_demo_county(hub_dir, _now())
    finally:
        del os.environ["CLINIC_HUB_DATABASE"]
    (hub_dir / DATABASE_URL_FILE).write_text(database + "\n")


def bench_load(ctx) -> dict:
    terminals, settlements = QUICK if ctx.quick else FULL
    duration_s = 60.0 if ctx.quick else 600.0
    sizes = {"terminals": terminals, "settlements": settlements, "duration_s": duration_s}
    runs = {"sqlite": load_against_sqlite(ctx.workdir / "sqlite", **sizes)}
    terminals, settlements = QUICK if ctx.quick else PG_FULL
    postgres = load_against_postgres(
        ctx.workdir / "pg",
        records=PG_QUICK_RECORDS if ctx.quick else PG_RECORDS,
        terminals=terminals,
        settlements=settlements,
        duration_s=120.0 if ctx.quick else 1800.0,
    )
    targets = {}
    if postgres is not None:
        runs["postgresql"] = postgres
        for page, timing in postgres["console"].items():
            targets[f"console_{page}_p99"] = target(
                timing["p99_ms"],
                PAGE_P99_LIMIT_MS,
                "ms",
                f"p99 of the console's {page} page, {postgres['records_in_hub']} records",
            )
    summary = [
        f"{name}: {r['records_per_second']} records/s, p99 batch {r['batch_latency_p99_ms']} ms,"
        f" {r['terminals_completed']}/{r['terminals']} terminals, lost {r['lost']},"
        f" duplicated {r['duplicated']}, errors {r['errors']} ({r['hub']})"
        for name, r in runs.items()
    ]
    if postgres is not None:
        summary.append(
            f"postgresql console with {postgres['records_in_hub']} records"
            f" ({postgres['bulk_loaded']} bulk-loaded): "
            + ", ".join(
                f"{page} p50 {t['p50_ms']} ms p99 {t['p99_ms']} ms"
                for page, t in postgres["console"].items()
            )
        )
    return {"runs": runs, "summary": summary, "targets": targets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    parser.add_argument("--hub", required=True, help="the hub's URL")
    parser.add_argument("--hub-dir", type=Path, required=True, help="the hub's data directory")
    parser.add_argument("--terminals", type=int, default=QUICK[0])
    parser.add_argument("--settlements", type=int, default=QUICK[1])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds at most")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="clinic-load-") as workdir:
        report = run_load(
            args.hub,
            args.hub_dir,
            terminals=args.terminals,
            settlements=args.settlements,
            duration_s=args.duration,
            workdir=Path(workdir),
        )
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
