"""One device cannot stop the county: a correctly signed batch of malformed records is kept
as evidence, flagged and alarmed, and left out of recomputation and exports, while other
clinics' records go on being recomputed; floods of records, huge heartbeats, absurd seqs
and timestamps are refused clearly (4xx), never with a 500. On each hub store
(`hub_backend`, tests/hub_fixtures.py), over a real HTTP hub."""

import copy
import gzip
import json
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sync_helpers import NOW, hub_records, hub_store, raw_call, signed_call
from test_hub_console import signed_in

from edge.console import main
from edge.domain.ledger import b64url, genesis_hash, new_record
from edge.domain.records import daily_close_body
from sync import agent
from sync.hub import console_auth, reconcile
from sync.hub.services import reconciliation
from sync.protocol import API_PREFIX, sha256_hex, signing_payload

PASSWORD = "correct horse 42"


def chain_of(device, bodies: list[tuple[str, dict]], first: int = 1, prev: str | None = None):
    """Records signed and chained by `device`'s key, as its firmware would write them."""
    records, prev = [], prev or genesis_hash(device.identity.public_key)
    for seq, (kind, body) in enumerate(bodies, start=first):
        record = new_record(
            device_id=device.identity.device_id, seq=seq, kind=kind, tx_id=f"poison-{seq}",
            created_at=(NOW + timedelta(seconds=seq)).isoformat(), prev_hash=prev, body=body,
            private_key=device.identity.private_key,
        )  # fmt: skip
        records.append(record)
        prev = record["hash"]
    return records


def encoded(records) -> bytes:
    return gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())


def upload(hub, device, records, nonce="nonce-poison-0001"):
    body = records if isinstance(records, bytes) else encoded(records)
    status, answer, _ = signed_call(
        hub.url, device.identity, "POST", "/records", body, NOW, nonce=nonce,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"},
    )  # fmt: skip
    return status, answer


def poisoned_bodies(honest_settlement: dict) -> list[tuple[str, dict]]:
    """The issue's three bodies, each a real settlement's with one part broken, then a
    daily close over them (which made the recomputation raise TypeError on every pass)."""
    empty_visit, no_result, formula = (copy.deepcopy(honest_settlement) for _ in range(3))
    empty_visit["visit"] = []
    no_result["result"] = None
    formula["result"]["total"] = "=3+3"
    close = daily_close_body([], business_day=NOW.date().isoformat(), operator="doc01")
    return [("settlement", b) for b in (empty_visit, no_result, formula)] + [("daily_close", close)]


@pytest.fixture
def clinics(hub, hub_dir, make_enrolled_device):
    with hub_store(hub_dir) as store:
        console_auth.add_user(store, "admin", PASSWORD, "admin", None, NOW)
    return (
        make_enrolled_device("poisoner", clinic_code="ML-01"),
        make_enrolled_device("honest", clinic_code="GL-01"),
    )


def test_a_poisoned_batch_is_kept_flagged_and_skipped_and_others_are_still_recomputed(
    hub, hub_dir, clinics
):
    poisoner, honest = clinics
    template = honest.settle(NOW)["body"]
    records = chain_of(poisoner, poisoned_bodies(template))
    status, answer = upload(hub, poisoner, records)
    # Stored as evidence: the chain advances, the device is not stuck.
    assert status == 200, answer
    assert answer["acked_seq"] == 4 and answer["refused"] == []
    assert [(f["seq"], f["code"]) for f in answer["flagged"]] == [
        (1, "BODY_MALFORMED"), (2, "BODY_MALFORMED"), (3, "BODY_MALFORMED"),
    ]  # fmt: skip
    poisoner_id = poisoner.identity.device_id
    assert [r["seq"] for r in hub_records(hub_dir, poisoner_id)] == [1, 2, 3, 4]
    with hub_store(hub_dir) as store:
        flagged = store.malformed_records(poisoner_id)
        (alarm,) = [a for a in store.alarms(poisoner_id) if a.code == "BODY_MALFORMED"]
    assert sorted(flagged) == [1, 2, 3]
    assert "body.visit must be an object" in flagged[1]
    assert "body.result must be an object" in flagged[2]
    assert "body.result.total must be a whole number of fen" in flagged[3]
    assert alarm.seq == 1 and alarm.detail.startswith("3 records (seq 1, 2, 3)")

    # Another clinic's valid settlements, uploaded afterwards, are recomputed.
    more = [honest.settle(NOW + timedelta(minutes=n)) for n in range(2)]
    report = agent.sync_once(honest.store, honest.identity, honest.data_dir, NOW)
    assert report["ok"], report["errors"]
    result = CliRunner().invoke(main, ["hub", "reconcile", "--data-dir", str(hub_dir), "--json"])
    assert result.exit_code == 0, result.output
    with hub_store(hub_dir) as store:
        assert store.records_to_recompute(10) == []  # recomputed_through passed everything
        for record in more:
            recomputed = store.recomputation_of(honest.identity.device_id, record["tx_id"])
            assert recomputed is not None and recomputed[0] in ("ok", "differs")
        for tx_id in ("poison-1", "poison-2", "poison-3"):
            assert store.recomputation_of(poisoner_id, tx_id) is None  # never computed with
        close_items = [i for i in store.reconciliation_items([poisoner_id])]
    # The poisoner's close is compared with the well-formed records it covers: none.
    assert [i.code for i in close_items] == []

    # The settlements CSV answers, without the poisoned records.
    answer_ = signed_in(hub, "admin").get("/console/export/settlements.csv")
    assert answer_.status_code == 200
    text = answer_.get_data(as_text=True)
    assert "poison-" not in text
    assert all(record["tx_id"] in text for record in more)
    assert signed_in(hub, "admin").get(f"/console/devices/{poisoner_id}").status_code == 200


def test_a_record_the_recomputation_fails_on_is_flagged_and_the_pass_goes_on(
    hub, hub_dir, clinics, monkeypatch
):
    honest = clinics[1]
    victim, *others = [honest.settle(NOW + timedelta(minutes=n)) for n in range(3)]
    assert agent.sync_once(honest.store, honest.identity, honest.data_dir, NOW)["ok"]
    engine = reconcile.recompute

    def fails_on_the_victim(body, *args):
        if body is victim["body"] or body == victim["body"]:
            raise TypeError("an unexpected fault in one record")
        return engine(body, *args)

    monkeypatch.setattr(reconcile, "recompute", fails_on_the_victim)
    honest_id = honest.identity.device_id
    with hub_store(hub_dir) as store:
        counts = reconciliation.reconcile_pending(store, NOW)
        assert counts.get("failed") == 1, counts
        assert store.records_to_recompute(10) == []
        assert store.recomputation_of(honest_id, victim["tx_id"]) is None  # undone
        for record in others:
            assert store.recomputation_of(honest_id, record["tx_id"])[0] in ("ok", "differs")
        assert victim["seq"] in store.malformed_records(honest_id)
        (alarm,) = [a for a in store.alarms(honest_id) if a.code == "RECOMPUTE_FAILED"]
        assert alarm.seq == victim["seq"] and "TypeError" in alarm.detail


def test_a_flood_of_invalid_records_makes_a_handful_of_alarms_quickly(hub, hub_dir, clinics):
    flooder = clinics[0]
    flooder_id = flooder.identity.device_id
    good = chain_of(flooder, [("event", {"event": "test", "n": n}) for n in range(1000)])
    forged = [dict(r, sig="A" * 86) for r in good]  # right shape, wrong signature

    # 100,000 records in one batch: refused before anything is parsed, nothing stored.
    flood = [
        {
            "seq": n,
            "device_id": flooder_id,
            "kind": "event",
            "body": {},
            "hash": "x",
            "prev_hash": "y",
        }
        for n in range(1, 100_001)
    ]  # as small as an invalid record gets
    flood_body, forged_body = encoded(flood), encoded(forged)
    started = time.perf_counter()
    status, answer = upload(hub, flooder, flood_body, nonce="nonce-flood-00001")
    elapsed_flood = time.perf_counter() - started
    assert status == 413 and answer["error"]["code"] == "BATCH_TOO_LARGE", answer
    assert answer["error"]["message_zh"] and "100000 records" in answer["error"]["detail"]

    # The largest batch allowed, every record invalid: one alarm with the count.
    started = time.perf_counter()
    status, answer = upload(hub, flooder, forged_body, nonce="nonce-flood-00002")
    elapsed_batch = time.perf_counter() - started
    assert status == 200 and len(answer["refused"]) == 1000 and answer["acked_seq"] == 0
    with hub_store(hub_dir) as store:
        alarms = store.alarms(flooder_id)
    assert hub_records(hub_dir, flooder_id) == []
    assert sorted(a.code for a in alarms) == ["BATCH_TOO_LARGE", "RECORD_INVALID"]
    (invalid,) = [a for a in alarms if a.code == "RECORD_INVALID"]
    assert invalid.detail.startswith("1000 records (seq 1, 2, 3, 4, 5, …)")
    print(
        f"\n100,000 records ({len(flood_body) // 1024} KiB gzipped) in one batch refused in"
        f" {elapsed_flood:.2f} s;"
        f" 1,000 invalid records ingested in {elapsed_batch:.2f} s, {len(alarms)} alarms"
    )
    assert elapsed_flood < 5 and elapsed_batch < 5


def test_a_huge_heartbeat_is_refused_and_the_fleet_page_stays_small(hub, hub_dir, clinics):
    device = clinics[0]
    huge = json.dumps({"device_clock": NOW.isoformat(), "agent": "x" * (7 * 2**20)}).encode()
    status, answer, _ = signed_call(hub.url, device.identity, "POST", "/heartbeat", huge, NOW)
    assert status == 413 and answer["error"]["code"] == "TOO_LARGE", answer
    assert answer["error"]["message_zh"] == "请求太大"
    # Small enough as a whole, one field too large: refused, naming the field.
    padded = json.dumps(
        {"device_clock": NOW.isoformat(), "versions": {"catalog": "v" * 2000}}
    ).encode()
    status, answer, _ = signed_call(
        hub.url, device.identity, "POST", "/heartbeat", padded, NOW, nonce="nonce-heartbeat-2"
    )
    assert status == 413 and "versions" in answer["error"]["detail"], answer
    with hub_store(hub_dir) as store:
        assert store.slot_by_device(device.identity.device_id).heartbeat is None
    page = signed_in(hub, "admin").get("/console/")
    assert page.status_code == 200 and len(page.get_data()) < 100_000


@pytest.mark.parametrize("seq", [2**63, 2**64])
def test_a_seq_beyond_64_bits_is_refused_not_a_500(hub, hub_dir, clinics, seq):
    device = clinics[0]
    (record,) = chain_of(device, [("event", {"event": "test"})])
    status, answer = upload(hub, device, [dict(record, seq=seq), record])
    assert status == 200, answer
    assert [(r["seq"], r["code"]) for r in answer["refused"]] == [(None, "RECORD_MALFORMED")]
    assert answer["acked_seq"] == 1
    beat = {"device_clock": NOW.isoformat(), "ledger_head": {"seq": seq, "hash": "x"}}
    status, answer, _ = signed_call(
        hub.url, device.identity, "POST", "/heartbeat", json.dumps(beat).encode(), NOW,
        nonce="nonce-heartbeat-huge-seq",
    )  # fmt: skip
    assert status == 200 and answer["acked_seq"] == 1, answer


def test_an_absurd_timestamp_is_refused_as_stale_not_a_500(hub, clinics):
    device = clinics[0]
    timestamp, nonce = "999999999999", "nonce-absurd-0001"
    payload = signing_payload(
        method="POST", path=API_PREFIX + "/heartbeat", body_sha256=sha256_hex(b"{}"),
        timestamp=timestamp, nonce=nonce, device_id=device.identity.device_id,
    )  # fmt: skip
    headers = {
        "X-Clinic-Device": device.identity.device_id,
        "X-Clinic-Timestamp": timestamp,
        "X-Clinic-Nonce": nonce,
        "X-Clinic-Signature": b64url(device.identity.private_key.sign(payload)),
    }
    status, answer = raw_call(hub.url, "POST", "/heartbeat", b"{}", headers)
    assert status == 401 and answer["error"]["code"] == "STALE_TIMESTAMP", answer
    assert answer["error"]["message_zh"].startswith("请求时间")


def test_records_stored_before_bodies_were_checked_are_flagged_when_recomputed(
    hub, hub_dir, clinics
):
    # A hub upgraded with poisoned records already stored (and not flagged) at ingest.
    poisoner, honest = clinics
    records = chain_of(poisoner, poisoned_bodies(honest.settle(NOW)["body"]))
    poisoner_id = poisoner.identity.device_id
    with hub_store(hub_dir) as store, store.unit_of_work():
        store.add_records(poisoner_id, records, NOW.isoformat())
    assert agent.sync_once(honest.store, honest.identity, honest.data_dir, NOW)["ok"]
    with hub_store(hub_dir) as store:
        counts = reconciliation.reconcile_pending(store, NOW)
        assert counts["malformed"] == 3 and "failed" not in counts, counts
        assert sorted(store.malformed_records(poisoner_id)) == [1, 2, 3]
        assert store.records_to_recompute(10) == []
    answer = signed_in(hub, "admin").get("/console/export/settlements.csv")
    assert answer.status_code == 200 and "poison-" not in answer.get_data(as_text=True)


class TestTheBackgroundRecomputation:
    @pytest.fixture
    def hub_config(self) -> dict:
        return {"RECONCILE_INTERVAL_S": 60}  # and soon after each upload

    def test_it_goes_on_past_a_poisoned_batch(self, hub, hub_dir, clinics):
        poisoner, honest = clinics
        status, _answer = upload(hub, poisoner, chain_of(poisoner, poisoned_bodies(
            honest.settle(NOW)["body"])))  # fmt: skip
        assert status == 200
        assert agent.sync_once(honest.store, honest.identity, honest.data_dir, NOW)["ok"]
        settled = honest.records()[-1]
        deadline = time.monotonic() + 20
        with hub_store(hub_dir) as store:
            while store.recomputation_of(honest.identity.device_id, settled["tx_id"]) is None:
                assert time.monotonic() < deadline, "the background recomputation stopped"
                time.sleep(0.1)
            assert store.records_to_recompute(10) == []
