"""The root-side applier (`clinic release apply`) on a real device database, with a temp
folder as /opt/clinic, a stand-in systemctl whose "terminal" is a tiny real HTTP server
(healthy or not) and a stand-in clinic-install-release: switch, confirm, roll back by
itself, finish after a power cut, wait for a quiet terminal, refuse what must not run."""

import json
import os
import shutil
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from release_support import (
    RUNNING,
    enroll_offline,
    make_opt,
    place_ready,
    public_key_text,
    release_files,
    signed_release,
    trusted_by_root,
)
from sync_helpers import NOW, FakeClock, new_device

from edge.adapters.schema import known_migrations
from edge.adapters.sqlite_store import SchemaNewer, SqliteDeviceStore
from edge.console import main
from sync import release_apply
from sync.agent.releases import (
    FAILED,
    heartbeat_member,
    read_state,
    releases_dir,
)
from sync.protocol import key_fingerprint
from sync.release_apply import EXIT_LATER, LAST_SWITCH, SWITCH, Settings, apply


@pytest.fixture
def county_key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def device(tmp_path, county_key):
    made = new_device(tmp_path / "data")
    enroll_offline(made.store, made.identity.device_id, county_key, NOW)
    trusted_by_root(made.data_dir, tmp_path / "etc-clinic")
    made.settle(NOW - timedelta(hours=1))
    with made.store.write_transaction():
        made.store.db.execute("DELETE FROM outbox")  # as the county's acknowledgement does
    yield made
    made.store.close()


@pytest.fixture
def opt(tmp_path, device):
    made = make_opt(tmp_path / "opt", device.data_dir)
    subprocess.run([made.systemctl, "start", "clinic-terminal.service"], check=True)
    yield made
    subprocess.run([made.systemctl, "stop", "clinic-terminal.service"], check=True)


def settings(device, opt, **changes) -> Settings:
    values = dict(
        data_dir=device.data_dir,
        trust_file=device.data_dir.parent / "etc-clinic" / "county-release.pub",
        opt_dir=opt.root,
        systemctl=str(opt.systemctl),
        health_url=opt.health_url,
        gate_wait_s=0.5,
        gate_poll_s=0.1,
        health_wait_s=3.0,
        health_poll_s=0.2,
        health_passes=3,
        running=RUNNING,
    )
    return Settings(**{**values, **changes})


def ready(device, county_key, version="0.2.0", **kwargs):
    files = release_files(version)
    document = signed_release(version, files, county_key, NOW, **kwargs)
    return place_ready(device.data_dir, document, files)


def checked_install(device, config, version="0.2.0"):
    """The applier's steps up to the switch: staged, checked, installed."""
    staged = release_apply.stage(config, version)
    facts = release_apply.database_state(device.data_dir)
    release = release_apply.check_download(config, version, staged, facts, NOW)
    release_apply.install(config, version, staged, release_apply.Outcome(0, "x"))
    return release


def failed_record(device, version) -> dict:
    return json.loads((releases_dir(device.data_dir) / FAILED / version).read_text())


def head(device) -> tuple[int, str]:
    record = list(device.store.records())[-1]
    return record["seq"], record["hash"]


def test_a_healthy_release_is_switched_to_and_confirmed(device, opt, county_key):
    ready(device, county_key)
    clock = FakeClock(NOW)
    outcome = apply(settings(device, opt), clock)
    assert (outcome.code, outcome.state, outcome.version) == (0, "installed", "0.2.0")
    assert opt.venv_target() == str(opt.root / "releases/0.2.0/venv")
    assert os.readlink(opt.root / "previous") == str(opt.root / "releases" / RUNNING / "venv")
    assert "restart clinic-terminal.service" in opt.systemctl_calls()
    folder = releases_dir(device.data_dir)
    assert not (opt.root / "state" / SWITCH).exists() and not (folder / "0.2.0").exists()
    last = json.loads((folder / LAST_SWITCH).read_text())
    assert (last["from"], last["to"], last["result"]) == (RUNNING, "0.2.0", "installed")
    assert last["ledger_head"]["seq"] == head(device)[0]
    assert last["migrations"] == known_migrations()
    assert Path(last["backup"]).is_file()  # the pre-switch copy of the database
    assert read_state(device.data_dir)["state"] == "installed"
    assert heartbeat_member(device.data_dir)["release"]["state"] == "installed"
    # the next one: the release before the previous is deleted
    ready(device, county_key, "0.3.0")
    again = apply(settings(device, opt, running="0.2.0"), clock)
    assert again.state == "installed"
    assert sorted(p.name for p in (opt.root / "releases").iterdir()) == ["0.2.0", "0.3.0"]


def test_an_unhealthy_release_is_rolled_back_by_itself(device, opt, county_key):
    (opt.root / ".next-BROKEN").touch()
    before = head(device)
    ready(device, county_key)
    outcome = apply(settings(device, opt), FakeClock(NOW))
    assert (outcome.code, outcome.state) == (0, "rolled_back")
    assert opt.venv_target() == str(opt.root / "releases" / RUNNING / "venv")
    assert not (opt.root / "previous").exists()  # as it was before the switch
    assert not (opt.root / "releases/0.2.0").exists()
    assert failed_record(device, "0.2.0")["reason"].startswith("RELEASE_UNHEALTHY")
    assert read_state(device.data_dir)["state"] == "rolled_back"
    assert "退回" in read_state(device.data_dir)["message_zh"]
    calls = opt.systemctl_calls()
    assert calls.count("restart clinic-terminal.service") == 2  # to the new, back to the old
    assert calls[-2:] == ["reset-failed clinic-terminal.service", "restart clinic-terminal.service"]
    running = subprocess.run([opt.systemctl, "is-active", "clinic-terminal.service"])
    assert running.returncode == 0  # the old release answers again, start limit or not
    assert head(device) == before
    # the failed version is never taken again, even if it shows up once more
    ready(device, county_key)
    assert apply(settings(device, opt), FakeClock(NOW)).state == "nothing"
    assert not (releases_dir(device.data_dir) / "0.2.0").exists()


def test_a_terminal_that_could_not_be_restarted_is_not_taken_for_healthy(device, opt, county_key):
    """The old process still answering must not confirm a switch it never made."""
    ready(device, county_key)
    (opt.root / ".restart-refused").touch()
    outcome = apply(settings(device, opt), FakeClock(NOW))
    assert outcome.state == "rolled_back"
    assert "could not be restarted" in read_state(device.data_dir)["detail"]


def test_a_rollback_restores_the_database_the_failed_release_migrated(device, opt, county_key):
    (opt.root / ".next-BROKEN").touch()
    (opt.root / ".next-MIGRATE").touch()
    before = head(device)
    ready(device, county_key)
    outcome = apply(settings(device, opt), FakeClock(NOW))
    assert outcome.state == "rolled_back"
    assert "stop clinic-terminal.service" in opt.systemctl_calls()
    store = SqliteDeviceStore.open(device.data_dir)  # the old release opens it again
    try:
        assert list(store.records())[-1]["seq"] == before[0]
    finally:
        store.close()
    assert any(p.name.startswith("replaced-") for p in device.data_dir.iterdir())


def test_records_signed_on_the_new_schema_keep_the_new_release(device, opt, county_key):
    for marker in ("BROKEN", "MIGRATE", "SIGN"):
        (opt.root / f".next-{marker}").touch()
    ready(device, county_key)
    outcome = apply(settings(device, opt), FakeClock(NOW))
    assert outcome.state == "kept"
    assert opt.venv_target() == str(opt.root / "releases/0.2.0/venv")
    assert read_state(device.data_dir)["code"] == "RELEASE_KEPT_UNHEALTHY"
    assert not (releases_dir(device.data_dir) / FAILED / "0.2.0").exists()


def test_a_power_cut_after_the_switch_is_finished_at_boot(device, opt, county_key):
    ready(device, county_key)
    config = settings(device, opt)
    release = checked_install(device, config)
    release_apply.switch(config, release, release_apply.Outcome(0, "x"), NOW)  # ... cut
    assert (opt.root / "state" / SWITCH).exists()
    boot = apply(config, FakeClock(NOW))
    assert (boot.state, boot.version) == ("installed", "0.2.0")
    assert not (opt.root / "state" / SWITCH).exists()


def test_a_power_cut_before_the_link_moved_switches_at_boot(device, opt, county_key):
    (opt.root / ".next-BROKEN").touch()
    ready(device, county_key)
    config = settings(device, opt)
    release = checked_install(device, config)
    release_apply.switch(config, release, release_apply.Outcome(0, "x"), NOW)
    release_apply.point(opt.root / "venv", str(opt.root / "releases" / RUNNING / "venv"))
    boot = apply(config, FakeClock(NOW))  # switches, finds it unhealthy, goes back
    assert boot.state == "rolled_back"
    assert opt.venv_target() == str(opt.root / "releases" / RUNNING / "venv")


def test_the_switch_waits_for_the_outbox_and_gives_up_after_the_bound(device, opt, county_key):
    device.settle(NOW)  # one record not yet with the county
    ready(device, county_key)
    outcome = apply(settings(device, opt), FakeClock(NOW))
    assert (outcome.code, outcome.state) == (EXIT_LATER, "waiting")
    assert "not yet uploaded" in outcome.lines[-1]
    assert opt.venv_target() == str(opt.root / "releases" / RUNNING / "venv")
    assert "restart clinic-terminal.service" not in opt.systemctl_calls()
    assert (releases_dir(device.data_dir) / "0.2.0/READY").exists()  # taken again later
    with device.store.write_transaction():
        device.store.db.execute("DELETE FROM outbox")  # the county acknowledged it
    assert apply(settings(device, opt), FakeClock(NOW)).state == "installed"
    assert len((opt.root / ".install-calls").read_text().splitlines()) == 1  # installed once


def test_a_visit_being_built_holds_the_switch_but_an_abandoned_one_does_not(
    device, opt, county_key
):
    with device.store.write_transaction():
        device.store.db.execute(
            "INSERT INTO visit_draft (operator_id, draft_id, patient, started_at, updated_at)"
            " VALUES ('doc01', 'd1', '{}', ?, ?)",
            [NOW.isoformat(), NOW.isoformat()],
        )
    ready(device, county_key)
    clock = FakeClock(NOW + timedelta(minutes=3))
    outcome = apply(settings(device, opt), clock)
    assert outcome.state == "waiting" and "visit is being built" in outcome.lines[-1]
    clock.advance(minutes=8)  # 11 minutes untouched: abandoned
    assert apply(settings(device, opt), clock).state == "installed"


def refused(device, opt, version, code):
    outcome = apply(settings(device, opt), FakeClock(NOW))
    assert (outcome.code, outcome.state) == (0, "refused")
    assert failed_record(device, version)["reason"].startswith(code)
    assert read_state(device.data_dir)["code"] == code
    assert not (releases_dir(device.data_dir) / version).exists()  # the download is gone
    assert opt.venv_target() == str(opt.root / "releases" / RUNNING / "venv")
    assert not [c for c in opt.systemctl_calls() if not c.startswith(("start", "stop"))]


def test_a_release_signed_by_another_key_never_switches(device, opt):
    ready(device, Ed25519PrivateKey.generate())
    refused(device, opt, "0.2.0", "RELEASE_BAD_SIGNATURE")


def test_a_tampered_file_never_switches(device, opt, county_key):
    folder = ready(device, county_key)
    wheel = next(folder.glob("clinic_terminal-*.whl"))
    wheel.write_bytes(wheel.read_bytes().replace(b"project", b"trojan!"))
    refused(device, opt, "0.2.0", "RELEASE_FILE_MISMATCH")


def test_a_release_older_than_the_schema_never_switches(device, opt, county_key):
    ready(device, county_key, schema=known_migrations()[:-1])
    refused(device, opt, "0.2.0", "RELEASE_OLDER_THAN_SCHEMA")


def test_a_release_not_newer_never_switches(device, opt, county_key):
    ready(device, county_key, version=RUNNING)
    refused(device, opt, RUNNING, "RELEASE_NOT_NEWER")


def test_a_failed_install_never_switches_and_is_given_up_after_three_tries(device, opt, county_key):
    """A full disk or a killed pip is no fault of the release: the download is kept and
    tried again; the third failure in a row refuses the version for good."""
    (opt.root / ".install-fails").write_text("1")
    ready(device, county_key)
    for _ in range(release_apply.INSTALL_ATTEMPTS - 1):
        outcome = apply(settings(device, opt), FakeClock(NOW))
        assert (outcome.code, outcome.state) == (1, "error")
        assert read_state(device.data_dir)["code"] == "RELEASE_INSTALL_FAILED"
        assert (releases_dir(device.data_dir) / "0.2.0/READY").exists()
        assert not (releases_dir(device.data_dir) / FAILED).exists()
    refused(device, opt, "0.2.0", "RELEASE_INSTALL_FAILED")
    assert "no compiler" in failed_record(device, "0.2.0")["reason"]
    assert not (opt.root / "releases/0.2.0").exists()


def test_no_compiler_for_pyscard_waits_for_an_admin_then_goes_on(device, opt, county_key):
    (opt.root / ".install-fails").write_text("3")
    ready(device, county_key)
    outcome = apply(settings(device, opt), FakeClock(NOW))
    assert (outcome.code, outcome.state) == (1, "error")  # systemd runs it again later
    assert read_state(device.data_dir)["code"] == "RELEASE_NEEDS_BUILD"
    assert (releases_dir(device.data_dir) / "0.2.0/READY").exists()
    assert not (releases_dir(device.data_dir) / FAILED).exists()
    (opt.root / ".install-fails").unlink()  # install.sh from a bundle built the wheel
    assert apply(settings(device, opt), FakeClock(NOW)).state == "installed"


def test_nothing_waiting_changes_nothing(device, opt):
    outcome = apply(settings(device, opt), FakeClock(NOW))
    assert (outcome.code, outcome.state) == (0, "nothing")
    assert opt.systemctl_calls() == ["start clinic-terminal.service"]


def test_the_files_it_writes_in_the_data_directory_are_the_service_users(opt, county_key):
    """Root acts as the data directory's owner there: nothing root-owned is left behind."""
    nobody = 65534
    base = Path(tempfile.mkdtemp(prefix="release-owner-"))
    try:
        base.chmod(0o755)
        made = new_device(base / "data")
        enroll_offline(made.store, made.identity.device_id, county_key, NOW)
        made.store.close()
        for path in [base / "data", *(base / "data").rglob("*")]:
            os.chown(path, nobody, nobody)
        device_dir = base / "data"
        files = release_files("0.2.0")
        place_ready(device_dir, signed_release("0.2.0", files, county_key, NOW), files)
        for path in (device_dir / "releases").rglob("*"):
            os.chown(path, nobody, nobody)
        os.chown(device_dir / "releases", nobody, nobody)
        trust_file = trusted_by_root(device_dir, base / "etc-clinic")
        config = Settings(
            data_dir=device_dir, opt_dir=opt.root, systemctl=str(opt.systemctl),
            trust_file=trust_file,
            health_url=opt.health_url, gate_wait_s=0.5, gate_poll_s=0.1, health_wait_s=3.0,
            health_poll_s=0.2, running=RUNNING,
        )  # fmt: skip
        assert apply(config, FakeClock(NOW)).state == "installed"
        foreign = [p for p in device_dir.rglob("*") if p.stat().st_uid != nobody]
        assert foreign == []
    finally:
        shutil.rmtree(base)


# ---- the schema guard -------------------------------------------------------------------


def migrate_beyond_this_code(data_dir: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(data_dir / "clinic.db")
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
        " VALUES ('clinic-device', 'm999_future', 'now')"
    )
    conn.commit()
    conn.close()


def test_the_store_refuses_a_database_a_newer_release_migrated(device):
    device.store.close()
    migrate_beyond_this_code(device.data_dir)
    with pytest.raises(SchemaNewer) as refusal:
        SqliteDeviceStore.open(device.data_dir)
    assert refusal.value.unknown == ["m999_future"]
    assert "SCHEMA_NEWER" in str(refusal.value) and "数据库的结构比本软件版本新" in str(
        refusal.value
    )
    served = CliRunner().invoke(
        main, ["serve", "--data-dir", str(device.data_dir), "--no-sync", "--port", "0"]
    )
    assert served.exit_code != 0 and "SCHEMA_NEWER" in served.output
    device.store = SqliteDeviceStore(device.store.db)  # the fixture closes it again


def test_no_update_while_opt_is_on_the_read_only_roots_overlay():
    mountinfo = (
        "22 1 179:2 / / ro,relatime - ext4 /dev/mmcblk0p2 ro\n"
        "30 22 0:25 / / rw,relatime - overlay overlayroot rw,lowerdir=/media/root-ro\n"
        "31 30 179:3 / /var/lib/clinic rw,relatime - ext4 /dev/mmcblk0p3 rw\n"
    )
    assert release_apply.mount_type(Path("/opt/clinic"), mountinfo) == "overlay"
    assert release_apply.mount_type(Path("/var/lib/clinic/releases"), mountinfo) == "ext4"


# ---- with the real clinic-install-release and real pip ----------------------------------


def build_test_helpers():
    """The release-building test's real wheels and pyscard-like sdist (one copy of them)."""
    import importlib.util

    path = Path(__file__).with_name("test_release_build.py")
    spec = importlib.util.spec_from_file_location("release_build_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_real_install_script_installs_and_the_switch_holds(
    device, opt, county_key, tmp_path, monkeypatch
):
    from sync.releases import sign_release

    helpers = build_test_helpers()
    built = helpers.make_release(tmp_path / "built")  # version 9.1, unsigned, real wheels
    document = json.loads((built / "release.json").read_text())
    folder = releases_dir(device.data_dir) / "9.1"
    shutil.copytree(built, folder)
    (folder / "release.json").write_text(json.dumps(sign_release(document["manifest"], county_key)))
    (folder / "READY").write_bytes(b"")
    monkeypatch.setenv("CLINIC_WHEEL_CACHE", str(opt.root / "wheels"))
    monkeypatch.setenv("CLINIC_CURRENT_VENV", str(opt.root / "venv"))
    real = Path(__file__).parents[2] / "deploy/raspberry-pi/bin/clinic-install-release"
    config = settings(device, opt, install_script=real, arch="x86_64", python="cp311")
    outcome = apply(config, FakeClock(NOW))
    assert (outcome.code, outcome.state) == (0, "installed"), outcome.lines
    clinic = opt.root / "venv/bin/clinic"
    assert subprocess.check_output([clinic, "--version"], text=True) == "clinic, version 9.1\n"


def test_the_command_line_verifies_applies_and_tells_the_status(device, opt, county_key):
    ready(device, county_key)
    data = ["--data-dir", str(device.data_dir)]
    trust = ["--trust-file", str(settings(device, opt).trust_file)]
    runner = CliRunner()
    verified = runner.invoke(main, ["release", "verify", "0.2.0", *data, *trust])
    assert verified.exit_code == 0 and "可以安装 / installable" in verified.output
    applied = runner.invoke(
        main,
        ["release", "apply", *data, *trust, "--opt-dir", str(opt.root),
         "--systemctl", str(opt.systemctl),
         "--health-url", opt.health_url, "--gate-wait", "1", "--health-wait", "15", "--json"],
    )  # fmt: skip
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.output)["state"] == "installed"
    status_of = ["release", "status", *data, "--opt-dir", str(opt.root), "--json"]
    status = json.loads(runner.invoke(main, status_of).output)
    assert status["release"]["state"] == "installed"
    assert status["last_switch"]["result"] == "installed" and status["pending_switch"] is None
    text = runner.invoke(main, ["release", "status", *data]).output
    assert "latest release 0.2.0: installed" in text
    ready(device, Ed25519PrivateKey.generate(), "0.3.0")
    refused = runner.invoke(main, ["release", "verify", "0.3.0", *data])
    assert refused.exit_code == 1 and "签名" in refused.output


def test_a_release_is_refused_until_root_trusts_a_county_key(device, opt, county_key):
    """The key pinned in clinic.db is the service user's to change: root installs only what
    the key it recorded itself signed, and waits (the download kept) until there is one."""
    trust_file = settings(device, opt).trust_file
    trust_file.unlink()
    ready(device, county_key)
    outcome = apply(settings(device, opt), FakeClock(NOW))
    assert outcome.code == release_apply.EXIT_ERROR
    assert read_state(device.data_dir)["code"] == "RELEASE_UNTRUSTED"
    assert (releases_dir(device.data_dir) / "0.2.0" / "READY").exists()  # kept for later
    assert opt.venv_target() == str(opt.root / "releases" / RUNNING / "venv")
    release_apply.trust(device.data_dir, trust_file, None)
    assert apply(settings(device, opt), FakeClock(NOW)).state == "installed"


def test_a_trust_file_the_service_user_could_write_is_no_trust(device, opt, county_key):
    trusted = settings(device, opt).trust_file
    os.chown(trusted, 65534, 65534)
    ready(device, county_key)
    assert apply(settings(device, opt), FakeClock(NOW)).code == release_apply.EXIT_ERROR
    assert read_state(device.data_dir)["code"] == "RELEASE_UNTRUSTED"
    os.chown(trusted, 0, 0)
    trusted.parent.chmod(0o777)  # a folder anyone may write into
    assert apply(settings(device, opt), FakeClock(NOW)).code == release_apply.EXIT_ERROR


def test_a_release_signed_with_the_key_pinned_in_the_database_only_is_refused(
    device, opt, county_key
):
    """A service user who pins a key of their own in clinic.db and signs a release with it
    gets nothing installed: root checks with the key it recorded."""
    impostor = Ed25519PrivateKey.generate()
    with device.store.write_transaction():
        device.store.db.execute(
            "UPDATE sync_enrollment SET county_public_key = ?", [public_key_text(impostor)]
        )
    ready(device, impostor)
    outcome = apply(settings(device, opt), FakeClock(NOW))
    assert outcome.state == "refused"
    assert failed_record(device, "0.2.0")["reason"].startswith("RELEASE_BAD_SIGNATURE")
    assert opt.venv_target() == str(opt.root / "releases" / RUNNING / "venv")


def test_the_download_changed_after_staging_is_not_what_is_installed(device, opt, county_key):
    """Root checks and installs its own copy: a file swapped in the service user's download
    after the check cannot reach the install."""
    folder = ready(device, county_key)
    config = settings(device, opt)
    staged = release_apply.stage(config, "0.2.0")
    assert staged.stat().st_uid == 0 and staged.stat().st_mode & 0o077 == 0
    for wheel in folder.glob("*.whl"):
        wheel.write_bytes(b"swapped after the check")
    facts = release_apply.database_state(device.data_dir)
    release = release_apply.check_download(config, "0.2.0", staged, facts, NOW)
    assert release.version == "0.2.0"
    release_apply.install(config, "0.2.0", staged, release_apply.Outcome(0, "x"))
    assert not staged.exists()  # the staged copy is dropped after the install


def test_a_symlink_in_the_download_is_refused(device, opt, county_key):
    folder = ready(device, county_key)
    wheel = next(folder.glob("*.whl"))
    wheel.unlink()
    wheel.symlink_to("/etc/shadow")
    outcome = apply(settings(device, opt), FakeClock(NOW))
    assert outcome.state == "refused"
    assert failed_record(device, "0.2.0")["reason"].startswith("RELEASE_FILE_MISMATCH")
    assert not (opt.root / "staging").exists() or not any((opt.root / "staging").iterdir())


def test_trust_with_a_fingerprint_that_is_not_the_pinned_keys_records_nothing(device, opt):
    trust_file = settings(device, opt).trust_file
    trust_file.unlink()
    with pytest.raises(release_apply.ApplyError, match="nothing recorded"):
        release_apply.trust(device.data_dir, trust_file, "0000-0000-0000-0000")
    assert not trust_file.exists()
    pinned = release_apply.database_state(device.data_dir).county_key
    release_apply.trust(device.data_dir, trust_file, key_fingerprint(pinned).lower())
    assert trust_file.read_text().strip() == pinned


def test_a_switch_record_the_service_user_could_write_is_never_read(device, opt, county_key):
    """switch.json lives in root's OPT/state: one planted in the data directory changes
    nothing, and one in OPT/state naming a venv outside the releases is refused."""
    planted = {"to": "9.9", "to_target": str(device.data_dir), "from_target": "/tmp",
               "previous_before": "/tmp", "state": "rolling_back", "migrations": [],
               "ledger_head": {"seq": 0, "hash": None}}  # fmt: skip
    (releases_dir(device.data_dir)).mkdir(exist_ok=True)
    (releases_dir(device.data_dir) / SWITCH).write_text(json.dumps(planted))
    assert apply(settings(device, opt), FakeClock(NOW)).state == "nothing"
    assert opt.venv_target() == str(opt.root / "releases" / RUNNING / "venv")
    (opt.root / "state" / SWITCH).write_text(json.dumps(planted))
    outcome = apply(settings(device, opt), FakeClock(NOW))
    assert outcome.code == release_apply.EXIT_ERROR and "cannot be used" in outcome.lines[-1]
    assert opt.venv_target() == str(opt.root / "releases" / RUNNING / "venv")
