"""The hub's device API over real HTTP on loopback: enrollment, request authentication,
ingest refusals and alarms, export. On each hub store (`hub_backend`, tests/hub_fixtures.py):
real SQLite files or a real PostgreSQL server, a fake clock, no mocks."""

import json
import re
import shutil
from datetime import timedelta

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sync_helpers import NOW, enroll, hub_records, hub_store, raw_call, signed_call

from edge.adapters.identity import DeviceIdentity
from edge.console import main
from edge.domain.ledger import b64url, raw_public_key
from edge.domain.model import Rejection
from sync import agent
from sync.agent.client import HubClient, HubRefusal
from sync.hub.services import county
from sync.protocol import HEADER_HUB_TIME, encode_batch


def provision(hub_dir, **options) -> county.Provisioned:
    with hub_store(hub_dir) as store:
        return county.provision(
            store,
            clinic_code=options.pop("clinic", "320115-009"),
            township=options.pop("township", "秣陵街道"),
            now=NOW,
            **options,
        )


def refusal(call) -> HubRefusal:
    with pytest.raises(HubRefusal) as refused:
        call()
    return refused.value


def alarms(hub_dir, device_id) -> list[tuple[str, int | None]]:
    with hub_store(hub_dir) as store:
        return [(a.code, a.seq) for a in store.alarms(device_id)]


def test_the_hub_keeps_its_data_in_the_store_of_hub_backend(hub, hub_dir, hub_backend):
    """What every scenario of these modules takes for granted: its hub is on that store."""
    import psycopg

    from sync.hub.adapters.postgresql import PgHubStore
    from sync.hub.adapters.sqlite import SqliteHubStore

    with hub_store(hub_dir) as store:
        county_name = county.county_of(store)["county"]
        kind = type(store)
    if hub_backend.name == "sqlite":
        assert kind is SqliteHubStore and (hub_dir / "hub.db").exists()
    else:
        assert kind is PgHubStore and not (hub_dir / "hub.db").exists()
        with psycopg.connect(hub_backend.database_url) as conn:
            assert conn.execute("SELECT name FROM county").fetchone() == (county_name,)


def test_installing_the_demo_county_again_publishes_nothing_new(hub, hub_dir, hub_clock):
    from sync.demo import install_demo_county

    again = install_demo_county(hub_dir, hub_clock() + timedelta(days=1))  # make demo, twice
    assert again["published"] == []


class TestEnrollment:
    def test_a_device_enrolls_its_own_id_and_key_and_pins_the_county_key(
        self, hub, hub_dir, device
    ):
        code = provision(hub_dir, clinic="320115-007", township="谷里街道").code
        details = agent.enroll(device.store, device.identity, device.data_dir, hub.url, code, NOW)
        assert details["device_id"] == device.identity.device_id
        assert (details["clinic_code"], details["township"]) == ("320115-007", "谷里街道")
        with hub_store(hub_dir) as store:
            slot = store.slot_by_device(device.identity.device_id)
            fingerprint = county.county_of(store)["fingerprint"]
        assert slot.public_key == device.identity.public_key_b64
        assert details["county_key_fingerprint"] == fingerprint
        status = agent.sync_status(device.store)
        assert status["enrolled"] and status["county_key_fingerprint"] == fingerprint
        event = device.records()[-1]
        assert (event["kind"], event["body"]["event"]) == ("event", "enrolled")

    def test_the_code_is_short_typeable_and_forgiving_of_case_and_dashes(
        self, hub, hub_dir, device
    ):
        code = provision(hub_dir).code
        assert re.fullmatch(r"[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}", code)
        typed = code.replace("-", "").lower()
        assert agent.enroll(device.store, device.identity, device.data_dir, hub.url, typed, NOW)

    def test_a_code_works_once(self, hub, hub_dir, device, other_device):
        code = provision(hub_dir).code
        agent.enroll(device.store, device.identity, device.data_dir, hub.url, code, NOW)
        error = refusal(
            lambda: agent.enroll(
                other_device.store, other_device.identity, other_device.data_dir, hub.url, code, NOW
            )
        )
        assert (error.code, error.status) == ("CODE_USED", 409)
        assert not agent.sync_status(other_device.store)["enrolled"]

    def test_a_retry_after_a_lost_answer_gets_the_same_answer(self, hub, hub_dir, device):
        code = provision(hub_dir).code
        client = HubClient(hub.url, device.identity)
        document = {
            "code": code,
            "device_id": device.identity.device_id,
            "public_key": device.identity.public_key_b64,
        }
        first, again = client.enroll(document, NOW), client.enroll(document, NOW)
        assert first == again

    def test_an_expired_code_is_refused(self, hub, hub_dir, device, hub_clock):
        code = provision(hub_dir, lifetime=timedelta(hours=1)).code
        hub_clock.advance(hours=2)
        error = refusal(
            lambda: agent.enroll(
                device.store, device.identity, device.data_dir, hub.url, code, hub_clock()
            )
        )
        assert error.code == "CODE_EXPIRED"

    def test_an_unknown_code_is_refused(self, hub, device):
        error = refusal(
            lambda: agent.enroll(
                device.store, device.identity, device.data_dir, hub.url, "ABCD-EFGH", NOW
            )
        )
        assert error.code == "CODE_UNKNOWN"
        assert "登记码" in error.message_zh

    def test_a_device_id_not_derived_from_its_key_is_refused(self, hub, hub_dir, device):
        code = provision(hub_dir).code
        impostor = DeviceIdentity("dev-000000000000", device.identity.private_key)
        error = refusal(
            lambda: HubClient(hub.url, impostor).enroll(
                {
                    "code": code,
                    "device_id": impostor.device_id,
                    "public_key": impostor.public_key_b64,
                },
                NOW,
            )
        )
        assert error.code == "DEVICE_ID_MISMATCH"

    def test_a_revoked_slot_code_is_refused(self, hub, hub_dir, device):
        provisioned = provision(hub_dir)
        with hub_store(hub_dir) as store:
            county.revoke(store, f"slot-{provisioned.slot_id}", NOW, "handed out by mistake")
        error = refusal(
            lambda: agent.enroll(
                device.store, device.identity, device.data_dir, hub.url, provisioned.code, NOW
            )
        )
        assert error.code == "SLOT_REVOKED"


class TestRequestAuthentication:
    def heartbeat_body(self) -> bytes:
        return json.dumps({"device_clock": NOW.isoformat()}).encode()

    def test_a_signed_fresh_request_is_answered(self, hub, enrolled_device):
        status, answer, _ = signed_call(
            hub.url, enrolled_device.identity, "POST", "/heartbeat", self.heartbeat_body(), NOW
        )
        assert status == 200 and answer["acked_seq"] == 0

    def test_a_captured_request_cannot_be_replayed(self, hub, enrolled_device):
        body = self.heartbeat_body()
        status, _, headers = signed_call(
            hub.url, enrolled_device.identity, "POST", "/heartbeat", body, NOW
        )
        assert status == 200
        status, answer = raw_call(hub.url, "POST", "/heartbeat", body, headers)
        assert (status, answer["error"]["code"]) == (401, "NONCE_REUSED")

    def test_a_stale_request_is_refused_and_told_the_hubs_time(self, hub, enrolled_device):
        status, answer, _ = signed_call(
            hub.url,
            enrolled_device.identity,
            "POST",
            "/heartbeat",
            self.heartbeat_body(),
            NOW - timedelta(minutes=10),
        )
        assert (status, answer["error"]["code"]) == (401, "STALE_TIMESTAMP")

    def test_the_hub_time_header_comes_with_every_answer(self, hub):
        import urllib.request

        with urllib.request.urlopen(hub.url + "/api/v1/time") as response:
            assert response.headers[HEADER_HUB_TIME] == NOW.isoformat()

    def test_a_body_changed_in_transit_is_refused(self, hub, enrolled_device):
        _, _, headers = signed_call(
            hub.url,
            enrolled_device.identity,
            "GET",
            "/updates/policy",
            b"",
            NOW,
            nonce="nonce-first-one",
        )
        status, answer = raw_call(hub.url, "POST", "/heartbeat", self.heartbeat_body(), headers)
        assert (status, answer["error"]["code"]) == (401, "BAD_SIGNATURE")

    def test_an_unknown_device_is_refused(self, hub):
        stranger = Ed25519PrivateKey.generate()
        identity = DeviceIdentity(
            "dev-" + b64url(raw_public_key(stranger.public_key()))[:12], stranger
        )
        status, answer, _ = signed_call(
            hub.url, identity, "POST", "/heartbeat", self.heartbeat_body(), NOW
        )
        assert (status, answer["error"]["code"]) == (401, "UNKNOWN_DEVICE")

    def test_an_unsigned_request_is_refused(self, hub):
        status, answer = raw_call(hub.url, "POST", "/records", b"", {})
        assert (status, answer["error"]["code"]) == (401, "UNSIGNED")

    def test_a_revoked_device_is_refused_and_stops_settling(self, hub, hub_dir, enrolled_device):
        with hub_store(hub_dir) as store:
            county.revoke(store, enrolled_device.identity.device_id, NOW, "stolen")
        enrolled_device.settle(NOW)
        report = agent.sync_once(
            enrolled_device.store, enrolled_device.identity, enrolled_device.data_dir, NOW
        )
        assert {e["code"] for e in report["errors"]} == {"DEVICE_REVOKED"}
        # the enrollment event, the visit, and the revocation the device signed when it heard
        assert enrolled_device.store.outbox_count() == 3
        assert enrolled_device.records()[-1]["body"]["event"] == "device_revoked"
        with pytest.raises(Rejection) as refused:  # the county withdrew it: no more visits
            enrolled_device.settle(NOW)
        assert refused.value.code == "DEVICE_REVOKED"
        assert enrolled_device.store.ledger_head().seq == 3
        status = agent.sync_status(enrolled_device.store)
        assert status["last_error"]["code"] == "DEVICE_REVOKED" and status["revoked"]

    def test_an_oversized_body_is_refused(self, hub, enrolled_device):
        body = b"x" * (9 * 2**20)
        status, answer, _ = signed_call(
            hub.url, enrolled_device.identity, "POST", "/records", body, NOW
        )
        assert (status, answer["error"]["code"]) == (413, "TOO_LARGE")


class TestIngest:
    @pytest.fixture
    def enrolled(self, enrolled_device):
        for second in range(4):
            enrolled_device.settle(NOW + timedelta(seconds=second))
        return enrolled_device

    def upload(self, hub, device, records, nonce="nonce-upload-0001"):
        body = encode_batch(json.dumps(r, ensure_ascii=False) for r in records)
        status, answer, _ = signed_call(
            hub.url,
            device.identity,
            "POST",
            "/records",
            body,
            NOW,
            nonce=nonce,
            headers={"Content-Encoding": "gzip"},
        )
        assert status == 200, answer
        return answer

    def test_a_batch_is_stored_once_and_a_replay_changes_nothing(self, hub, hub_dir, enrolled):
        records = enrolled.records()
        first = self.upload(hub, enrolled, records)
        again = self.upload(hub, enrolled, records, nonce="nonce-upload-0002")
        assert (first["acked_seq"], first["stored"]) == (5, 5)
        assert (again["acked_seq"], again["stored"], again["duplicates"]) == (5, 0, 5)
        assert [r["hash"] for r in hub_records(hub_dir, enrolled.identity.device_id)] == [
            r["hash"] for r in records
        ]

    def test_a_gap_is_held_until_it_is_filled(self, hub, hub_dir, enrolled):
        records = enrolled.records()
        held = self.upload(hub, enrolled, records[3:])
        assert (held["acked_seq"], held["held"]) == (0, 2)
        filled = self.upload(hub, enrolled, records[:3], nonce="nonce-upload-0002")
        assert (filled["acked_seq"], filled["held"]) == (5, 0)
        assert len(hub_records(hub_dir, enrolled.identity.device_id)) == 5

    def test_a_tampered_batch_is_refused_and_raises_an_alarm(self, hub, hub_dir, enrolled):
        records = enrolled.records()
        records[2]["body"]["result"]["fund"] += 100  # more money from the fund, unseen?
        answer = self.upload(hub, enrolled, records)
        assert answer["acked_seq"] == 2
        assert [(r["seq"], r["code"]) for r in answer["refused"]] == [(3, "RECORD_INVALID")]
        assert ("RECORD_INVALID", 3) in alarms(hub_dir, enrolled.identity.device_id)
        # The agent then sends the real records, and the hub takes them.
        report = agent.sync_once(enrolled.store, enrolled.identity, enrolled.data_dir, NOW)
        assert report["ok"] and report["acked_seq"] == 5

    def test_a_batch_replayed_from_another_device_is_refused(
        self, hub, hub_dir, enrolled, other_device
    ):
        enroll(other_device, hub_dir, hub.url, NOW, clinic_code="320115-002")
        answer = self.upload(hub, other_device, enrolled.records())
        assert {r["code"] for r in answer["refused"]} == {"RECORD_FOREIGN"}
        assert answer["acked_seq"] == 0
        assert hub_records(hub_dir, other_device.identity.device_id) == []
        assert ("RECORD_FOREIGN", 1) in alarms(hub_dir, other_device.identity.device_id)

    def test_a_device_restored_from_an_old_backup_raises_an_alarm(
        self, hub, hub_dir, enrolled, tmp_path
    ):
        enrolled.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        backup = tmp_path / "backup"
        shutil.copytree(enrolled.data_dir, backup)  # at seq 5, before the upload
        enrolled.settle(NOW + timedelta(minutes=1))
        assert agent.sync_once(enrolled.store, enrolled.identity, enrolled.data_dir, NOW)["ok"]
        restored = new_device_from(backup)
        restored.settle(NOW + timedelta(minutes=2))  # a different record 6
        report = agent.sync_once(restored.store, restored.identity, backup, NOW)
        assert "LEDGER_WENT_BACKWARDS" in {e["code"] for e in report["errors"]}
        assert ("LEDGER_WENT_BACKWARDS", 6) in alarms(hub_dir, enrolled.identity.device_id)
        kept = hub_records(hub_dir, enrolled.identity.device_id)
        assert [r["hash"] for r in kept] == [r["hash"] for r in enrolled.records()]
        restored.store.close()

    def test_the_hub_export_is_byte_for_byte_the_device_ledger_export(self, hub, hub_dir, enrolled):
        assert agent.sync_once(enrolled.store, enrolled.identity, enrolled.data_dir, NOW)["ok"]
        runner = CliRunner()
        from_hub = runner.invoke(
            main,
            ["hub", "export", "--data-dir", str(hub_dir), "--device", enrolled.identity.device_id],
        )
        from_device = runner.invoke(
            main, ["ledger", "export", "--data-dir", str(enrolled.data_dir)]
        )
        assert from_hub.exit_code == 0, from_hub.output
        assert from_hub.output == from_device.output
        assert len(from_hub.output.splitlines()) == 5


def new_device_from(data_dir):
    from sync_helpers import Device

    from edge import services
    from edge.adapters.sqlite_store import SqliteDeviceStore

    store = SqliteDeviceStore.open(data_dir)
    return Device(data_dir, store, services.load_identity(store, data_dir))
