"""Exactly-once upload through a hostile network, and a large backlog in one go.

A fault-injecting TCP proxy cuts connections before, during and after the hub commits,
delays them and answers 500s, in random order. After hundreds of faulty sync rounds and
one clean one, the hub must hold exactly the device's records: none lost, none twice,
the same hashes. On each hub store (`hub_backend`, tests/hub_fixtures.py), over HTTPS:
the hub serves its own certificate (as `clinic hub init --tls-host` makes it), which the
device pinned at enrollment."""

import random
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hub_server import make_certificate
from sync_faults import FAULTS, FaultyProxy
from sync_helpers import NOW, PERSONS, enroll, hub_store, start_hub

from edge import services
from edge.domain.ledger import verify_chain
from sync import agent

# Fifty on PostgreSQL, as before: every kind of fault still happens, in a sixth of the time.
FAULTY_ROUNDS = {"sqlite": 300, "postgresql": 50}
BACKLOG = 20_000


@pytest.fixture
def hub_tls(tmp_path) -> dict:
    return make_certificate(tmp_path / "tls", NOW)


@pytest.fixture
def hub(hub_dir, hub_clock, hub_config, hub_tls):
    """The demo county's hub over HTTPS."""
    running = start_hub(hub_dir, hub_clock, tls=hub_tls, **hub_config)
    yield running
    running.stop()


@pytest.fixture
def enrolled_device(hub, hub_dir, device, hub_tls):
    """`device`, enrolled over HTTPS with the hub's certificate pinned."""
    assert hub.url.startswith("https://")
    pem = Path(hub_tls["certificate"]).read_text()
    details = enroll(device, hub_dir, hub.url, NOW, hub_certificate=pem)
    assert details["hub_certificate_fingerprint"] == hub_tls["fingerprint"]
    return device


def compare(device, hub_dir) -> dict:
    """Lost, duplicated and unexpected records between the device's ledger and the hub."""
    on_device = {r["seq"]: r["hash"] for r in device.records()}
    with hub_store(hub_dir) as store:
        device_id = device.identity.device_id
        rows = store.conn.execute(
            "SELECT seq, hash FROM record WHERE device_id = ? ORDER BY seq", [device_id]
        ).fetchall()
        held_back = store.conn.execute("SELECT count(*) FROM held_record").fetchone()[0]
        chain = verify_chain(store.records(device_id), services.public_key_of(device.store))
    at_hub = dict(rows)
    return {
        "lost": len(on_device.keys() - at_hub.keys()),
        "duplicated": len(rows) - len(at_hub),
        "unexpected": sum(1 for seq, h in at_hub.items() if on_device.get(seq) != h),
        "held_back": held_back,
        "hub_chain_ok": chain.ok and chain.count == len(on_device),
    }


def test_hundreds_of_faulty_rounds_then_a_clean_one_lose_nothing_and_repeat_nothing(
    enrolled_device, hub, hub_dir, hub_clock, hub_backend, hub_tls
):
    device = enrolled_device
    rounds = FAULTY_ROUNDS[hub_backend.name]
    proxy = FaultyProxy(hub.port, seed=20261122, tls=hub_tls)
    assert proxy.url.startswith("https://")
    rng = random.Random(11)
    now = NOW
    failed_rounds = 0
    try:
        for round_number in range(rounds):
            for _ in range(rng.choice((0, 1, 1, 2))):
                now += timedelta(seconds=7)
                device.settle(now, PERSONS[rng.randrange(len(PERSONS))])
            if round_number % 50 == 49:
                services.close_day(device.store, device.identity, operator="doc01", now=now)
            hub_clock.now = now
            report = agent.sync_once(
                device.store, device.identity, device.data_dir, now, hub_url=proxy.url
            )
            failed_rounds += not report["ok"]
        proxy.faulty = False
        clean = agent.sync_once(
            device.store, device.identity, device.data_dir, now, hub_url=proxy.url
        )
    finally:
        proxy.close()
    assert clean["ok"], clean["errors"]
    assert set(proxy.seen) == set(FAULTS), proxy.seen  # every kind of fault happened
    assert failed_rounds > rounds // 2  # the network really was hostile
    assert compare(device, hub_dir) == {
        "lost": 0,
        "duplicated": 0,
        "unexpected": 0,
        "held_back": 0,
        "hub_chain_ok": True,
    }
    row = device.store.device()
    assert device.store.outbox_count() == 0
    assert row.synced_seq == device.store.ledger_head().seq
    assert row.unsynced_fund == 0


def test_a_backlog_of_20000_settlements_uploads_in_order_in_one_go(enrolled_device, hub_dir):
    device = enrolled_device
    real = [device.settle(NOW + timedelta(seconds=s)) for s in range(200)]
    bodies = [real[i % len(real)]["body"] for i in range(BACKLOG - len(real))]
    from sync_helpers import append_signed_records

    append_signed_records(device, bodies, NOW + timedelta(minutes=10))
    head = device.store.ledger_head().seq
    assert head == BACKLOG + 1  # and the enrollment event

    started = time.perf_counter()
    report = agent.sync_once(device.store, device.identity, device.data_dir, NOW)
    seconds = time.perf_counter() - started
    assert report["ok"], report["errors"]
    assert (report["sent"], report["uploaded"], report["acked_seq"]) == (head, head, head)
    assert report["batches"] == -(-head // 1000)
    assert compare(device, hub_dir)["lost"] == 0
    assert device.store.outbox_count() == 0
    assert seconds < 60, f"{head} records took {seconds:.1f} s"
