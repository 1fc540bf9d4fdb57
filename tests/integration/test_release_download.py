"""The agent's release job through a real hub on loopback: a release published at the hub
is offered, verified, downloaded with signed requests and left READY for the applier; a
file altered at the hub is deleted and fetched again later; what must not be installed
is refused without a download; the heartbeat reports the software; and the whole loop,
publish → download → switch, with the applier's stand-ins."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from release_support import RUNNING, make_opt, release_files, trusted_by_root
from sync_helpers import NOW, FakeClock, enroll, hub_store, new_device, start_hub

from edge.adapters.schema import known_migrations
from sync.agent import releases, state
from sync.agent.jobs import client_for, new_report, send_heartbeat, sync_once
from sync.agent.releases import FAILED, READY, pull_release, read_state, releases_dir
from sync.agent.scheduler import run_scheduled_job
from sync.hub.adapters.county_key import load_county_key
from sync.hub.services import releases as hub_releases
from sync.protocol import SyncError, load_public_key
from sync.release_apply import Settings, apply
from sync.releases import ReleaseFile, make_release_manifest, verify_release


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


def publish(hub_dir: Path, folder: Path, version: str, schema=None) -> dict:
    """A release directory as `clinic release build` makes it, published at the hub."""
    import hashlib

    files = release_files(version)
    folder.mkdir(parents=True)
    entries = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        role = "project" if name.startswith("clinic_terminal-") else "dependency"
        entries.append(ReleaseFile(name, hashlib.sha256(data).hexdigest(), len(data), role))
    manifest = make_release_manifest(
        version=version,
        arch=releases.machine_arch(),
        python=releases.python_tag(),
        schema=schema or known_migrations(),
        files=entries,
        published_at=NOW,
    )
    (folder / "release.json").write_text(json.dumps({"manifest": manifest, "signature": None}))
    with hub_store(hub_dir) as store:
        published = hub_releases.publish(store, load_county_key(hub_dir), hub_dir, folder, NOW)
    return published.document


def pull(device, **options):
    enrollment = state.enrollment(device.store)
    client = client_for(enrollment, device.identity, None)
    return pull_release(
        device.store, client, device.data_dir, enrollment.county_public_key, NOW, **options
    )


def test_a_published_release_is_downloaded_checked_and_left_ready(device, hub_dir, tmp_path, clock):
    document = publish(hub_dir, tmp_path / "r", "0.2.0")
    assert run_scheduled_job(device.data_dir, "release", clock) == {**read_state(device.data_dir)}
    folder = releases_dir(device.data_dir) / "0.2.0"
    assert (folder / READY).exists()
    assert not list(releases_dir(device.data_dir).glob(".download-*"))
    kept = json.loads((folder / "release.json").read_text())
    assert kept == document
    enrollment = state.enrollment(device.store)
    release = verify_release(kept, load_public_key(enrollment.county_public_key))
    for file in release.files:
        assert releases.file_matches(folder / file.name, file.size, file.sha256)
    assert read_state(device.data_dir)["state"] == "ready"
    # the next run asks for nothing more while the applier has not taken it
    assert pull(device)["state"] == "ready"
    # the heartbeat tells the county
    report = new_report(NOW, None)
    client = client_for(enrollment, device.identity, None)
    send_heartbeat(device.store, client, device.data_dir, NOW, report)
    with hub_store(hub_dir) as store:
        slot = store.slot_by_device(device.identity.device_id)
        software = hub_releases.software_of(slot)
    assert software["version"] == RUNNING
    assert software["release"]["version"] == "0.2.0"
    assert software["release"]["state"] == "ready"


def test_a_file_altered_at_the_hub_is_deleted_and_fetched_again_later(
    device, hub_dir, tmp_path, clock
):
    publish(hub_dir, tmp_path / "r", "0.2.0")
    kept = hub_dir / "releases" / "0.2.0" / releases.machine_arch()
    wheel = next(kept.glob("dep1-*.whl"))
    good = wheel.read_bytes()
    wheel.write_bytes(bytes(len(good)))  # same size, other bytes
    assert run_scheduled_job(device.data_dir, "release", clock) is None
    job = state.job_states(device.store)["release"]
    assert job.last_error_code == "RELEASE_FILE_MISMATCH" and job.next_attempt_at
    partial = releases_dir(device.data_dir) / ".download-0.2.0"
    assert not (partial / wheel.name).exists()  # the bad file is gone
    assert not (releases_dir(device.data_dir) / "0.2.0").exists()
    # the sync status shows the connection as fine: a download's trouble is apart
    from sync.agent.status import sync_status

    assert sync_status(device.store, NOW)["software"]["release"]["state"] == "downloading"
    wheel.write_bytes(good)
    clock.advance(hours=2)  # past the backoff
    assert run_scheduled_job(device.data_dir, "release", clock)["state"] == "ready"


def test_a_release_older_than_the_schema_is_refused_without_a_download(device, hub_dir, tmp_path):
    publish(hub_dir, tmp_path / "r", "0.2.0", schema=known_migrations()[:-1])
    result = pull(device)
    assert (result["state"], result["code"]) == ("refused", "RELEASE_OLDER_THAN_SCHEMA")
    assert result["message_zh"].startswith("软件版本比本机数据库的结构旧")
    assert not list(releases_dir(device.data_dir).glob("*0.2.0"))


def test_no_room_for_the_release_refuses_it_for_now(device, hub_dir, tmp_path):
    publish(hub_dir, tmp_path / "r", "0.2.0")
    result = pull(device, disk_error_bytes=shutil.disk_usage(device.data_dir).total)
    assert (result["state"], result["code"]) == ("refused", "RELEASE_NO_ROOM")
    assert pull(device)["state"] == "ready"  # room again: downloaded


def test_a_version_rolled_back_here_is_never_downloaded_again(device, hub_dir, tmp_path):
    publish(hub_dir, tmp_path / "r", "0.2.0")
    (releases_dir(device.data_dir) / FAILED).mkdir(parents=True)
    (releases_dir(device.data_dir) / FAILED / "0.2.0").write_text("{}")
    assert pull(device) is None
    assert not list(releases_dir(device.data_dir).glob("*0.2.0"))


def test_no_newer_release_offered_changes_nothing(device, hub_dir, tmp_path):
    assert pull(device) is None
    publish(hub_dir, tmp_path / "r", "0.2.0")
    assert pull(device, running="0.2.0") is None


def test_a_release_the_county_did_not_sign_is_refused(device, hub_dir, tmp_path):
    """What a hub in the middle could offer: the real release, its signature altered."""
    publish(hub_dir, tmp_path / "r", "0.2.0")
    enrollment = state.enrollment(device.store)
    client = client_for(enrollment, device.identity, None)

    class Forging:
        def release_offer(self, *args):
            document = client.release_offer(*args)
            signature = document["signature"]
            return {**document, "signature": ("A" if signature[0] != "A" else "B") + signature[1:]}

        release_file = client.release_file

    result = pull_release(
        device.store, Forging(), device.data_dir, enrollment.county_public_key, NOW
    )
    assert (result["state"], result["code"]) == ("refused", "RELEASE_BAD_SIGNATURE")
    assert not list(releases_dir(device.data_dir).glob("*0.2.0"))


def test_publish_download_switch_the_whole_loop(device, hub_dir, tmp_path, clock):
    publish(hub_dir, tmp_path / "r", "0.2.0")
    device.settle(NOW)
    assert run_scheduled_job(device.data_dir, "release", clock)["state"] == "ready"
    assert sync_once(device.store, device.identity, device.data_dir, NOW)["ok"]  # outbox empty
    opt = make_opt(tmp_path / "opt", device.data_dir)
    trust_file = trusted_by_root(device.data_dir, tmp_path / "etc-clinic")
    subprocess.run([opt.systemctl, "start", "clinic-terminal.service"], check=True)
    try:
        settings = Settings(
            data_dir=device.data_dir, opt_dir=opt.root, systemctl=str(opt.systemctl),
            trust_file=trust_file,
            health_url=opt.health_url, gate_wait_s=0.5, gate_poll_s=0.1, health_wait_s=3.0,
            health_poll_s=0.2, running=RUNNING,
        )  # fmt: skip
        outcome = apply(settings, clock)
    finally:
        subprocess.run([opt.systemctl, "stop", "clinic-terminal.service"], check=True)
    assert (outcome.code, outcome.state) == (0, "installed")
    assert opt.venv_target() == str(opt.root / "releases/0.2.0/venv")
    assert read_state(device.data_dir)["state"] == "installed"


def test_an_offer_without_a_version_is_the_jobs_error_not_a_state(device, hub_dir, tmp_path):
    class Garbled:
        def release_offer(self, *args):
            return {"manifest": {"v": 1, "version": "v-one"}, "signature": "x"}

        def release_file(self, *args, **kwargs):
            raise AssertionError("nothing to download")

    enrollment = state.enrollment(device.store)
    with pytest.raises(SyncError) as error:
        pull_release(device.store, Garbled(), device.data_dir, enrollment.county_public_key, NOW)
    assert error.value.code in ("RELEASE_MALFORMED", "RELEASE_BAD_SIGNATURE")
    assert read_state(device.data_dir) is None
