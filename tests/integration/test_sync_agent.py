"""The sync agent against a real hub on loopback: uploads and acknowledgements, county
updates applied or refused (and the device keeps working), status, backoff, the clock."""

import copy
import time
from datetime import datetime, timedelta
from importlib import resources

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hub_server import serve_in_background
from sync_helpers import (
    NOW,
    RESIDENT,
    Device,
    FakeClock,
    enroll,
    hub_records,
    hub_store,
    new_device,
    start_hub,
)

from edge import demo as edge_demo
from edge import services
from edge.adapters.catalog_files import open_catalog_file
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.model import Visit, VisitLine
from sync import agent
from sync.agent import jobs
from sync.agent import state as agent_state
from sync.agent.client import HubClient
from sync.hub.adapters.county_key import load_county_key
from sync.hub.bootstrap import init_hub
from sync.hub.services import publishing, reports

EXPIRES = NOW + timedelta(days=90)


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
    made = new_device(tmp_path / "device")
    enroll(made, hub_dir, hub.url, NOW)
    yield made
    made.store.close()


def sync(device, now=NOW, **kwargs) -> dict:
    return agent.sync_once(device.store, device.identity, device.data_dir, now, **kwargs)


def demo_catalog_items(change=None):
    """The demo catalog's items, as a county admin would publish them next."""
    with resources.as_file(resources.files(edge_demo.__name__).joinpath("catalog.csv")) as path:
        items = list(open_catalog_file(path).items)
    return change(items) if change else items


def publish(hub_dir, kind, version, *, expires_at=EXPIRES, now=NOW, key=None, **content):
    with hub_store(hub_dir) as store:
        return publishing.publish(
            store,
            key or load_county_key(hub_dir),
            kind=kind,
            version=version,
            expires_at=expires_at,
            now=now,
            **content,
        )


def repriced(items):
    from dataclasses import replace
    from decimal import Decimal

    first = replace(items[0], price=items[0].price + Decimal("1"))
    extra = replace(items[1], code="ZZ-NEW-ITEM-01", name="新增药品")
    return [first, *items[1:], extra]


def events(device, name) -> list[dict]:
    return [
        r["body"]
        for r in device.records()
        if r["kind"] == "event" and r["body"].get("event") == name
    ]


class TestUpload:
    def test_sync_once_uploads_the_outbox_and_records_the_acknowledgement(self, device, hub_dir):
        for second in range(5):
            device.settle(NOW + timedelta(seconds=second))
        report = sync(device)
        assert report["ok"], report["errors"]
        assert (report["sent"], report["uploaded"], report["acked_seq"]) == (6, 6, 6)
        row = device.store.device()
        assert (row.synced_seq, row.unsynced_fund, device.store.outbox_count()) == (6, 0, 0)
        assert row.last_sync_at == NOW.isoformat()
        assert [r["hash"] for r in hub_records(hub_dir, row.device_id)] == [
            r["hash"] for r in device.records()
        ]

    def test_a_visit_settled_after_the_upload_waits_with_its_fund(self, device):
        sync(device)
        record = device.settle(NOW)
        row = device.store.device()
        assert device.store.outbox_count() == 1
        assert row.unsynced_fund == record["body"]["result"]["fund"] > 0

    def test_the_ledger_itself_stays_whole_after_the_outbox_empties(self, device):
        for second in range(3):
            device.settle(NOW + timedelta(seconds=second))
        sync(device)
        assert len(device.records()) == 4 and device.store.outbox_count() == 0

    def test_a_backlog_goes_in_bounded_batches_in_order(self, device, hub_dir):
        for second in range(20):
            device.settle(NOW + timedelta(seconds=second))
        enrollment = agent_state.enrollment(device.store)
        client = HubClient(
            enrollment.hub_url, device.identity, county_key=enrollment.county_public_key
        )
        report = jobs.new_report(NOW, enrollment.hub_url)
        agent.upload_outbox(device.store, client, NOW, report, max_records=6)
        assert (report["batches"], report["sent"], report["acked_seq"]) == (4, 21, 21)
        stored = hub_records(hub_dir, device.identity.device_id)
        assert [r["seq"] for r in stored] == list(range(1, 22))

    def test_a_hub_that_lost_records_gets_them_again_from_the_ledger(
        self, device, hub, hub_dir, tmp_path, clock
    ):
        device.settle(NOW)
        sync(device)
        # The county restores its hub from a backup taken before this device enrolled.
        hub.stop()
        fresh_dir = tmp_path / "restored-hub"
        import shutil

        shutil.copytree(hub_dir, fresh_dir)
        with hub_store(fresh_dir) as store:
            store.conn.execute("DROP TRIGGER record_is_append_only_delete")
            store.conn.execute("DELETE FROM record")
            store.conn.execute("UPDATE slot SET head_seq = 0, head_hash = NULL")
        restored = serve_in_background(fresh_dir, config={"CLOCK": clock})
        try:
            device.settle(NOW + timedelta(seconds=5))
            report = sync(device, hub_url=restored.url)
            assert report["ok"], report["errors"]
            assert len(hub_records(fresh_dir, device.identity.device_id)) == 3
        finally:
            restored.stop()


class TestUpdates:
    def test_a_device_of_the_version_1_demo_moves_to_version_2_by_sync(
        self, tmp_path, hub, hub_dir
    ):
        """A terminal installed before the demo county's version 2 policy (2026.1, the ¥6
        fee, no caps) gets the hub's 2026.2, catalog and roster by sync, and settles the
        one-stop chain from then on."""
        data_dir = tmp_path / "old-terminal"
        data_dir.mkdir()
        store = SqliteDeviceStore.open(data_dir, create=True)
        store.import_policy(edge_demo.load_json("policy-2026.1.json"), now=NOW)
        list(edge_demo.install(store, NOW))
        old = Device(data_dir, store, services.init_device(store, data_dir, NOW))
        try:
            enroll(old, hub_dir, hub.url, NOW)
            assert store.policy_version() == "2026.1"
            report = sync(old)
            assert {u["kind"]: u["version"] for u in report["updates_applied"]}["policy"] == (
                "2026.2"
            )
            assert (store.current_policy().rules, store.policy_version()) == (2, "2026.2")
            visit = Visit(NOW.date(), "general", ("J06.900",), (
                VisitLine("110200005000000", "1"), VisitLine("XJ01CAA040A001", "3"),
                VisitLine("XJ01CAA040A002", "2"),
            ))  # fmt: skip
            settled = services.settle_visit(
                store, old.identity, insured_id=RESIDENT, visit=visit, operator="doc01", now=NOW
            ).settlement
            assert (settled.fund_fixed_total, settled.fund_limited_by) == (800, "visit_cap")
        finally:
            store.close()

    def test_a_new_catalog_arrives_as_a_delta_and_is_signed_as_an_event(self, device, hub_dir):
        publish(hub_dir, "catalog", "2026.12.1", items=demo_catalog_items(repriced))
        report = sync(device)
        assert report["updates_applied"] == [
            {"kind": "catalog", "version": "2026.12.1", "format": "delta"}
        ]
        assert device.store.catalog_version() == "2026.12.1"
        assert device.store.catalog_items(["ZZ-NEW-ITEM-01"])
        status = agent.sync_status(device.store, NOW)
        assert status["installed"]["catalog"] == {
            "version": "2026.12.1",
            "source": "county",
            "expires_at": EXPIRES.isoformat(),
            "expired": False,
        }
        (event,) = events(device, "update_applied")
        assert (event["kind"], event["version"], event["replaces"]) == (
            "catalog",
            "2026.12.1",
            edge_demo.DEMO_CATALOG_VERSION,
        )

    def test_new_policy_and_roster_versions_are_installed(self, device, hub_dir):
        policy = {**edge_demo.load_json("policy.json"), "version": "2026.3"}
        policy["benefits"]["resident"]["general"]["ratio"] = "0.60"
        roster = copy.deepcopy(edge_demo.load_json("roster.json"))
        roster["version"] = "2026.12.1"
        roster["persons"][0]["status"] = "suspended"
        publish(hub_dir, "policy", "2026.3", document=policy)
        publish(hub_dir, "roster", "2026.12.1", document=roster)
        report = sync(device)
        assert {(u["kind"], u["version"], u["format"]) for u in report["updates_applied"]} == {
            ("policy", "2026.3", "full"),
            ("roster", "2026.12.1", "delta"),
        }
        assert device.store.current_policy().version == "2026.3"
        assert device.store.insured_person(RESIDENT).person.status == "suspended"

    def test_nothing_new_means_nothing_applied(self, device):
        assert sync(device)["updates_applied"] == []

    def assert_refused_and_still_working(self, device, report, kind, code, kept_version):
        assert [(r["kind"], r["code"]) for r in report["updates_refused"]] == [(kind, code)]
        installed = {
            "catalog": device.store.catalog_version,
            "policy": device.store.policy_version,
            "roster": device.store.roster_version,
        }[kind]()
        assert installed == kept_version
        status = agent.sync_status(device.store, NOW)
        assert status["refused_updates"][0]["code"] == code
        assert status["refused_updates"][0]["message_zh"]
        (event,) = events(device, "update_refused")
        assert (event["kind"], event["code"]) == (kind, code)
        assert device.settle(NOW + timedelta(minutes=1))["kind"] == "settlement"

    def test_an_update_signed_by_another_key_is_refused(self, device, hub_dir):
        impostor = Ed25519PrivateKey.generate()
        publish(
            hub_dir,
            "policy",
            "2026.3",
            key=impostor,
            document={**edge_demo.load_json("policy.json"), "version": "2026.3"},
        )
        report = sync(device)
        self.assert_refused_and_still_working(
            device, report, "policy", "UPDATE_BAD_SIGNATURE", "2026.2"
        )

    def test_an_update_whose_content_was_altered_is_refused(self, device, hub_dir):
        publish(
            hub_dir,
            "policy",
            "2026.3",
            document={**edge_demo.load_json("policy.json"), "version": "2026.3"},
        )
        with hub_store(hub_dir) as store:
            store.conn.execute(
                "UPDATE publication SET content = replace(content, '\"0.55\"', '\"0.95\"')"
                " WHERE kind = 'policy' AND version = '2026.3'"
            )
        report = sync(device)
        self.assert_refused_and_still_working(
            device, report, "policy", "UPDATE_HASH_MISMATCH", "2026.2"
        )

    def test_an_older_version_than_the_installed_one_is_refused(self, device):
        newer = {**edge_demo.load_json("policy.json"), "version": "2026.5"}
        device.store.import_policy(
            newer, now=NOW
        )  # installed on site, newer than the county's 2026.2
        report = sync(device)
        self.assert_refused_and_still_working(device, report, "policy", "UPDATE_OLDER", "2026.5")

    def test_an_expired_update_is_refused(self, device, hub_dir, clock):
        publish(
            hub_dir,
            "catalog",
            "2026.12.1",
            items=demo_catalog_items(repriced),
            expires_at=NOW + timedelta(days=1),
        )
        later = NOW + timedelta(days=2)
        clock.now = later
        report = agent.sync_once(device.store, device.identity, device.data_dir, later)
        assert [(r["kind"], r["code"]) for r in report["updates_refused"]] == [
            ("catalog", "UPDATE_EXPIRED")
        ]
        assert device.store.catalog_version() == edge_demo.DEMO_CATALOG_VERSION
        assert device.settle(later)["kind"] == "settlement"

    def test_a_refusal_repeated_every_round_is_signed_once(self, device):
        device.store.import_policy(
            {**edge_demo.load_json("policy.json"), "version": "2026.5"}, now=NOW
        )
        for _ in range(3):
            sync(device)
        assert len(events(device, "update_refused")) == 1
        assert agent.sync_status(device.store)["refused_updates"][0]["repeats"] == 3


def test_a_delta_that_does_not_fit_the_installed_catalog_falls_back_to_the_full_one(
    tmp_path, clock
):
    """The county's 2026.11.1 is not the one this device installed on site: the delta is
    refused, and the full signed 2026.12.1 is installed instead."""
    hub_dir = tmp_path / "hub"
    init_hub(hub_dir, "示范县", NOW)
    # The county's 2026.11.1 lacks the demo catalog's last item, and so does 2026.12.1.
    publish(
        hub_dir,
        "catalog",
        edge_demo.DEMO_CATALOG_VERSION,
        items=demo_catalog_items(lambda items: items[:-1]),
    )
    publish(
        hub_dir,
        "catalog",
        "2026.12.1",
        items=demo_catalog_items(lambda items: repriced(items[:-1])),
    )
    running = serve_in_background(hub_dir, config={"CLOCK": clock})
    device = new_device(tmp_path / "device")
    try:
        enroll(device, hub_dir, running.url, NOW)
        report = sync(device)
        assert [r["code"] for r in report["updates_refused"]] == ["DELTA_RESULT_MISMATCH"]
        assert report["updates_applied"] == [
            {"kind": "catalog", "version": "2026.12.1", "format": "full"}
        ]
        assert device.store.catalog_version() == "2026.12.1"
    finally:
        device.store.close()
        running.stop()


class TestStatusAndBackoff:
    def test_status_shows_what_the_status_page_needs(self, device):
        device.settle(NOW)
        before = agent.sync_status(device.store, NOW)
        assert before["enrolled"] and before["records_waiting"] == 2
        assert before["last_sync_at"] is None and before["last_error"] is None
        assert before["installed"]["policy"]["source"] == "local"
        sync(device)
        after = agent.sync_status(device.store, NOW)
        assert (after["records_waiting"], after["synced_seq"]) == (0, 2)
        assert after["last_success_at"] == after["last_sync_at"] == NOW.isoformat()
        assert set(after["jobs"]) == set(agent.JOBS)

    def test_an_unreachable_hub_is_reported_and_each_job_backs_off(self, device, tmp_path):
        dead = "http://127.0.0.1:9"  # discard port: nothing listens
        report = sync(device, hub_url=dead)
        assert not report["ok"]
        assert {e["code"] for e in report["errors"]} == {"HUB_UNREACHABLE"}
        status = agent.sync_status(device.store, NOW)
        assert status["last_error"]["code"] == "HUB_UNREACHABLE"
        for job in agent.JOBS:
            state = status["jobs"][job]
            if job == "attachments":  # no photo to send: the hub was not asked
                assert state["failures"] == 0
                continue
            assert state["failures"] == 1
            wait = (datetime.fromisoformat(state["next_attempt_at"]) - NOW).total_seconds()
            assert 15 <= wait <= 30  # the first retry: between half and all of 30 s
        assert (
            agent.run_scheduled_job(device.data_dir, "upload", lambda: NOW) is None
        )  # waits it out

    def test_a_job_due_again_runs_and_success_resets_its_backoff(self, device):
        sync(device, hub_url="http://127.0.0.1:9")
        later = NOW + timedelta(minutes=1)
        report = agent.run_scheduled_job(device.data_dir, "upload", lambda: later)
        assert report["ok"]
        state = agent.sync_status(device.store)["jobs"]["upload"]
        assert (state["failures"], state["next_attempt_at"]) == (0, None)

    def test_a_job_already_running_is_not_started_twice(self, device):
        lock = jobs.job_lock(device.data_dir, "upload")
        with lock:
            assert agent.run_scheduled_job(device.data_dir, "upload", lambda: NOW) is None

    def test_sync_without_enrollment_says_so_in_both_languages(self, tmp_path):
        lonely = new_device(tmp_path / "lonely")
        report = sync(lonely)
        assert report["errors"][0]["code"] == "NOT_ENROLLED"
        assert "clinic enroll" in report["errors"][0]["message_zh"]
        lonely.store.close()

    def test_a_device_clock_hours_off_still_syncs_and_the_skew_is_shown(self, device, hub_dir):
        skewed = NOW + timedelta(hours=3)
        device.settle(skewed)
        report = agent.sync_once(device.store, device.identity, device.data_dir, skewed)
        assert report["ok"], report["errors"]
        assert agent.sync_status(device.store)["clock_offset_s"] == -3 * 3600
        with hub_store(hub_dir) as store:
            (row,) = reports.fleet_status(store, NOW)
        assert row["clock_skew_s"] == 3 * 3600

    def test_the_scheduler_uploads_in_the_background(self, device):
        device.settle(NOW)
        scheduler = agent.start_scheduler(
            device.data_dir,
            lambda: NOW,
            {"upload": 0.2, "updates": 3600, "heartbeat": 3600},
            first_run_after_s=0,
        )
        try:
            deadline = time.monotonic() + 20
            while device.store.outbox_count() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            scheduler.shutdown()
        assert device.store.outbox_count() == 0
