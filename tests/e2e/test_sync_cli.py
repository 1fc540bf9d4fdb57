"""`clinic hub …`, `clinic enroll`, `clinic sync …`: what county staff and operators type."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_json
from hub_server import serve_in_background

from edge import demo as edge_demo
from edge.console import main

CLINIC = Path(sys.executable).with_name("clinic")
EXPIRES = "2099-01-01"


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def hub_dir(tmp_path) -> Path:
    directory = tmp_path / "hub"
    run("hub", "init", "--data-dir", str(directory), "--county", "江宁区")
    return directory


@pytest.fixture
def published(hub_dir, tmp_path) -> Path:
    policy = write_json(tmp_path / "policy.json", edge_demo.load_json("policy.json"))
    roster = write_json(tmp_path / "roster.json", edge_demo.load_json("roster.json"))
    catalog = Path(edge_demo.__file__).with_name("catalog.csv")
    run("hub", "publish", "policy", str(policy), "--expires", EXPIRES, "--data-dir", str(hub_dir))
    run(
        "hub",
        "publish",
        "catalog",
        str(catalog),
        "--version",
        edge_demo.DEMO_CATALOG_VERSION,
        "--expires",
        EXPIRES,
        "--data-dir",
        str(hub_dir),
    )
    run("hub", "publish", "roster", str(roster), "--expires", EXPIRES, "--data-dir", str(hub_dir))
    return hub_dir


@pytest.fixture
def serving(published):
    running = serve_in_background(published)
    yield running
    running.stop()


@pytest.fixture
def device_dir(tmp_path) -> Path:
    directory = tmp_path / "device"
    run("init", "--demo", "--data-dir", str(directory))
    return directory


def provision(hub_dir, clinic="320115-003", township="秣陵街道") -> str:
    result = run(
        "hub",
        "provision",
        "--clinic",
        clinic,
        "--township",
        township,
        "--json",
        "--data-dir",
        str(hub_dir),
    )
    return json.loads(result.output)["code"]


class TestHubCommands:
    def test_init_makes_a_county_key_readable_only_by_its_owner(self, hub_dir):
        assert oct((hub_dir / "county.key").stat().st_mode & 0o777) == "0o600"

    def test_init_twice_is_refused_in_one_line(self, hub_dir):
        result = run("hub", "init", "--data-dir", str(hub_dir), ok=False)
        assert result.exit_code == 1
        assert "already holds the hub of 江宁区" in result.output
        assert "Traceback" not in result.output

    def test_a_hub_command_without_a_hub_says_how_to_make_one(self, tmp_path):
        result = run("hub", "status", "--data-dir", str(tmp_path / "none"), ok=False)
        assert result.exit_code == 1 and "clinic hub init" in result.output

    def test_the_hub_directory_comes_from_the_environment(self, hub_dir):
        result = CliRunner().invoke(
            main, ["hub", "status", "--json"], env={"CLINIC_HUB_DIR": str(hub_dir)}
        )
        assert result.exit_code == 0 and json.loads(result.output) == []

    def test_provision_prints_a_one_time_code(self, hub_dir):
        result = run(
            "hub",
            "provision",
            "--clinic",
            "320115-003",
            "--township",
            "秣陵街道",
            "--data-dir",
            str(hub_dir),
        )
        assert "enrollment code" in result.output and "fingerprint" in result.output
        assert len(provision(hub_dir)) == 9

    def test_publishing_an_older_version_is_refused_and_changes_nothing(self, published, tmp_path):
        older = write_json(
            tmp_path / "old.json", {**edge_demo.load_json("policy.json"), "version": "2025.9"}
        )
        result = run(
            "hub",
            "publish",
            "policy",
            str(older),
            "--expires",
            EXPIRES,
            "--data-dir",
            str(published),
            ok=False,
        )
        published_version = edge_demo.policy_document()["version"]
        assert result.exit_code == 1
        assert f"not newer than the published {published_version}" in result.output

    def test_publishing_a_broken_catalog_names_the_line_and_changes_nothing(
        self, published, tmp_path
    ):
        broken = tmp_path / "broken.csv"
        broken.write_text("code,name,kind,class,price\nA1,药,drug,A,1.00\nB2,药,drug,Z,1\n")
        result = run(
            "hub",
            "publish",
            "catalog",
            str(broken),
            "--version",
            "2027.1",
            "--expires",
            EXPIRES,
            "--data-dir",
            str(published),
            ok=False,
        )
        assert result.exit_code == 1 and "line 3" in result.output

    def test_status_lists_slots_filtered_by_township(self, hub_dir):
        provision(hub_dir, "A-1", "秣陵街道")
        provision(hub_dir, "B-1", "谷里街道")
        rows = json.loads(
            run(
                "hub", "status", "--json", "--township", "谷里街道", "--data-dir", str(hub_dir)
            ).output
        )
        assert [(r["clinic_code"], r["state"]) for r in rows] == [("B-1", "awaiting_enrollment")]

    def test_revoke_of_an_unknown_device_is_one_clear_line(self, hub_dir):
        result = run("hub", "revoke", "dev-nope", "--data-dir", str(hub_dir), ok=False)
        assert result.exit_code == 1 and "no device or slot 'dev-nope'" in result.output

    def test_a_console_user_is_added_with_a_hashed_password(self, hub_dir):
        run(
            "hub",
            "user",
            "li",
            "--role",
            "coordinator",
            "--township",
            "秣陵街道",
            "--password",
            "long enough",
            "--data-dir",
            str(hub_dir),
        )
        from sync.hub.adapters.sqlite import SqliteHubStore

        store = SqliteHubStore.open(hub_dir)
        try:
            user = store.console_user("li")
        finally:
            store.close()
        assert (user.role, user.township) == ("coordinator", "秣陵街道")
        assert "long enough" not in user.password_hash

    def test_a_coordinator_without_a_township_is_refused(self, hub_dir):
        result = run(
            "hub",
            "user",
            "wang",
            "--role",
            "coordinator",
            "--password",
            "long enough",
            "--data-dir",
            str(hub_dir),
            ok=False,
        )
        assert result.exit_code == 1 and "needs a --township" in result.output


class TestDeviceCommands:
    def test_enroll_then_sync_once_then_status(self, serving, published, device_dir):
        code = provision(published)
        enrolled = run(
            "enroll", "--hub", serving.url, "--code", code, "--json", "--data-dir", str(device_dir)
        )
        details = json.loads(enrolled.output)
        assert details["clinic_code"] == "320115-003"
        report = json.loads(run("sync", "once", "--json", "--data-dir", str(device_dir)).output)
        assert report["ok"] and report["acked_seq"] == 1
        status = json.loads(run("sync", "status", "--json", "--data-dir", str(device_dir)).output)
        assert status["enrolled"] and status["records_waiting"] == 0
        plain = run("sync", "status", "--data-dir", str(device_dir)).output
        assert "clinic 320115-003" in plain
        rows = json.loads(run("hub", "status", "--json", "--data-dir", str(published)).output)
        assert rows[0]["device_id"] == details["device_id"] and rows[0]["acked_seq"] == 1
        csv_text = run("hub", "report", "settlements", "--data-dir", str(published)).output
        assert csv_text.splitlines()[0].startswith("\ufeffdevice_id,seq,tx_id")

    def test_a_code_used_twice_is_refused_in_both_languages(
        self, serving, published, device_dir, tmp_path
    ):
        code = provision(published)
        run("enroll", "--hub", serving.url, "--code", code, "--data-dir", str(device_dir))
        other = tmp_path / "other"
        run("init", "--demo", "--data-dir", str(other))
        result = run(
            "enroll", "--hub", serving.url, "--code", code, "--data-dir", str(other), ok=False
        )
        assert result.exit_code == 1
        assert "already used" in result.output and "登记码已被使用" in result.output

    def test_sync_once_with_an_unreachable_hub_exits_1_saying_so(
        self, serving, published, device_dir
    ):
        run(
            "enroll",
            "--hub",
            serving.url,
            "--code",
            provision(published),
            "--data-dir",
            str(device_dir),
        )
        result = run(
            "sync", "once", "--hub", "http://127.0.0.1:9", "--data-dir", str(device_dir), ok=False
        )
        assert result.exit_code == 1 and "无法连接县级平台" in result.output

    def test_sync_once_before_enrolling_says_how_to_enroll(self, device_dir):
        result = run("sync", "once", "--data-dir", str(device_dir), ok=False)
        assert result.exit_code == 1 and "clinic enroll" in result.output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_hub_serve_answers_on_the_port_it_was_given(published):
    port = free_port()
    server = subprocess.Popen(
        [str(CLINIC), "hub", "serve", "--port", str(port), "--data-dir", str(published)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/time") as answer:
                    assert "hub_time" in json.loads(answer.read())
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=40)  # gunicorn stops gracefully within 30 s
        server.stderr.close()
