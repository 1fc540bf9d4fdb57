"""The PostgreSQL hub store itself: migrations, uniqueness by the database, ingest from
several processes at once, the recomputation barrier, `clinic hub init --database`, and
the hub under gunicorn with two workers. A real PostgreSQL server (tests/pg_server.py).

The hub's behaviour scenarios run against this store and SQLite's alike (`hub_backend`,
tests/hub_fixtures.py): test_hub_api.py, test_hub_console.py, test_hub_reconcile.py and
test_sync_faults.py."""

import dataclasses
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from record_chains import chain
from sync_helpers import NOW, new_device

from edge.adapters.identity import device_id_for
from edge.console import main
from edge.domain.ledger import b64url, raw_public_key
from sync import agent
from sync.hub.adapters.postgresql import PgHubStore
from sync.hub.adapters.postgresql_migrations import MIGRATIONS
from sync.hub.bootstrap import DATABASE_URL_FILE, init_hub, open_hub_store
from sync.hub.model import HubStoreError, Publication
from sync.hub.services import county, uploads
from sync.protocol import iso

ROOT = Path(__file__).resolve().parents[2]


def enrolled_key(store: PgHubStore) -> tuple[Ed25519PrivateKey, str]:
    """A device key enrolled straight into a new slot."""
    key = Ed25519PrivateKey.generate()
    device_id = device_id_for(key.public_key())
    with store.unit_of_work():
        slot_id = store.add_slot("320115-001", "秣陵街道", f"h-{device_id}", iso(NOW), iso(NOW))
        store.enroll_slot(slot_id, device_id, b64url(raw_public_key(key.public_key())), iso(NOW))
    return key, device_id


@pytest.fixture
def hub_dir(tmp_path) -> Path:
    return tmp_path / "hub"


@pytest.fixture
def store(pg_url, hub_dir):
    init_hub(hub_dir, "示范县", NOW, pg_url)
    opened = PgHubStore.open(pg_url)
    yield opened
    opened.close()


def test_the_schema_is_a_versioned_list_of_steps_recorded_in_a_table(pg_url):
    with pytest.raises(HubStoreError, match="no county hub"):
        PgHubStore.open(pg_url)
    PgHubStore.open(pg_url, create=True).close()
    PgHubStore.open(pg_url).close()  # nothing left to apply
    with psycopg.connect(pg_url) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migration")]
    assert versions == [version for version, _name, _steps in MIGRATIONS]


def test_uniqueness_and_append_only_are_the_databases_job(store):
    key, device_id = enrolled_key(store)
    records = chain(2, key=key, device=device_id)
    with store.unit_of_work():
        store.add_records(device_id, records, iso(NOW))
        store.add_records(device_id, records, iso(NOW))  # ON CONFLICT DO NOTHING
    assert [r["seq"] for r in store.records(device_id)] == [1, 2]
    raw = store.conn.raw
    with pytest.raises(psycopg.errors.UniqueViolation):
        raw.execute(
            "INSERT INTO record (device_id, seq, hash, kind, tx_id, created_at, received_at,"
            " record) VALUES (%s, 1, 'x', 'event', 't', '', '', '{}')",
            [device_id],
        )
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        raw.execute("DELETE FROM record")


def test_a_second_publication_of_a_version_is_refused_and_the_unit_goes_on(store):
    first = Publication("policy", "9.1", iso(NOW), iso(NOW), {"v": 1}, "sig", {"c": 1})
    with store.unit_of_work():
        store.add_publication(first)
        with pytest.raises(HubStoreError, match="already published"):
            store.add_publication(first)
        store.add_publication(dataclasses.replace(first, version="9.2"))
    assert store.latest_publication("policy").version == "9.2"
    assert [p.version for p in store.publications("policy")] == ["9.1", "9.2"]


def _ingest_worker(url: str, device_id: str, batches: list, seed: int, barrier, results) -> None:
    store = PgHubStore.connect(url)
    try:
        order = list(batches)
        random.Random(seed).shuffle(order)
        barrier.wait(timeout=60)
        results.put([uploads.ingest(store, device_id, batch, NOW)["stored"] for batch in order])
    finally:
        store.close()


def test_processes_ingesting_the_same_batches_at_once_store_each_record_once(store, pg_url):
    key, device_id = enrolled_key(store)
    records = chain(400, key=key, device=device_id)
    # Overlapping batches, each process in its own order: a replay storm.
    batches = [records[start : start + 60] for start in range(0, 400, 40)]
    context = multiprocessing.get_context("spawn")
    workers = 4
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [
        context.Process(
            target=_ingest_worker, args=(pg_url, device_id, batches, seed, barrier, results)
        )
        for seed in range(workers)
    ]
    for process in processes:
        process.start()
    stored = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert sum(map(sum, stored)) == 400  # every record stored by exactly one request
    rows = store.conn.execute(
        "SELECT seq, count(*) FROM record WHERE device_id = ? GROUP BY seq", [device_id]
    ).fetchall()
    assert sorted(seq for seq, _n in rows) == list(range(1, 401))
    assert {n for _seq, n in rows} == {1}
    assert store.slot_by_device(device_id).head_seq == 400
    assert store.held_records(device_id) == {}
    assert store.alarms(device_id) == []


def test_recomputation_waits_for_an_ingest_that_commits_late(store, pg_url):
    key, device_id = enrolled_key(store)
    other_key, other_id = enrolled_key(store)
    slow = PgHubStore.connect(pg_url)
    reconciler = PgHubStore.connect(pg_url)
    try:
        seen: list = []
        with slow.unit_of_work():
            slow.add_records(device_id, chain(1, key=key, device=device_id), iso(NOW))
            with store.unit_of_work():  # a later ingest commits first
                store.add_records(other_id, chain(1, key=other_key, device=other_id), iso(NOW))

            def recompute():
                with reconciler.unit_of_work():
                    seen.extend(r.position for r in reconciler.records_to_recompute(100))

            thread = threading.Thread(target=recompute)
            thread.start()
            thread.join(0.5)
            assert thread.is_alive()  # held at the barrier until the slow one ends
        thread.join(10)
        assert len(seen) == 2 and seen == sorted(seen)  # the earlier position is not skipped
    finally:
        slow.close()
        reconciler.close()


def test_clinic_hub_init_with_a_database_records_it_and_every_command_uses_it(tmp_path, pg_url):
    hub_dir = tmp_path / "hub"
    runner = CliRunner()
    result = runner.invoke(
        main, ["hub", "init", "--data-dir", str(hub_dir), "--database", pg_url, "--json"]
    )
    assert result.exit_code == 0, result.output
    url_file = hub_dir / DATABASE_URL_FILE
    assert url_file.read_text().strip() == pg_url
    assert url_file.stat().st_mode & 0o077 == 0
    assert (hub_dir / "county.key").exists() and not (hub_dir / "hub.db").exists()
    result = runner.invoke(
        main,
        ["hub", "provision", "--data-dir", str(hub_dir), "--clinic", "C1", "--township", "T"],
    )
    assert result.exit_code == 0, result.output
    store = open_hub_store(hub_dir)
    try:
        assert isinstance(store, PgHubStore) and len(store.slots()) == 1
    finally:
        store.close()
    again = runner.invoke(main, ["hub", "init", "--data-dir", str(hub_dir), "--database", pg_url])
    assert again.exit_code != 0 and "already" in again.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gunicorn_workers_serve_one_postgresql_hub(tmp_path, pg_backend):
    from sync.demo import install_demo_county

    database = pg_backend
    hub_dir = tmp_path / "hub"
    install_demo_county(hub_dir, NOW)  # in the database $CLINIC_HUB_DATABASE names
    (hub_dir / DATABASE_URL_FILE).write_text(database)  # gunicorn finds it here
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "CLINIC_HUB_DATABASE"},
        "CLINIC_HUB_DIR": str(hub_dir),
        "CLINIC_HUB_RECONCILE_INTERVAL_S": "1",
        "CLINIC_CLOCK": NOW.isoformat(),  # every worker's clock starts at the test's
        "PYTHONPATH": str(ROOT),
    }
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "sync.hub.app:create_app_from_env()",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    device = new_device(tmp_path / "device")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/api/v1/time", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no gunicorn"
                time.sleep(0.2)
        with _opened(database) as hub:
            code = county.provision(hub, clinic_code="C1", township="T", now=NOW).code
        now = NOW + timedelta(seconds=1)
        agent.enroll(device.store, device.identity, device.data_dir, url, code, now)
        for _ in range(5):
            device.settle(now)
        report = agent.sync_once(device.store, device.identity, device.data_dir, now, hub_url=url)
        assert report["ok"], report["errors"]
        head = device.store.ledger_head().seq
        with _opened(database) as hub:
            assert [r["seq"] for r in hub.records(device.identity.device_id)] == list(
                range(1, head + 1)
            )
    finally:
        device.store.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


class _opened:
    def __init__(self, url: str):
        self.store = PgHubStore.open(url)

    def __enter__(self) -> PgHubStore:
        return self.store

    def __exit__(self, *_exc) -> None:
        self.store.close()
