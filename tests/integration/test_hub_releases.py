"""Software releases at the county hub: publishing a release directory (checked, signed,
kept whole or not at all), the offer and the files a device downloads over real HTTP
with its signed requests (resuming with Range), withdrawing, the heartbeat's `software`
member, and the console's rollout pages. On each hub store (`hub_backend`)."""

import hashlib
import http.server
import json
import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from console_support import PASSWORD, signed_in, token
from sync_helpers import NOW, FakeClock, hub_store, raw_call, signed_call

from edge.console import main
from sync.agent.client import HubClient, HubRefusal
from sync.hub import console_auth
from sync.hub.model import HubError
from sync.hub.services import county, releases
from sync.protocol import SyncError, iso, load_public_key
from sync.releases import ReleaseFile, make_release_manifest, verify_release

SCHEMA = ["m001_initial", "m002_more"]


def make_release_dir(
    folder: Path, version: str, *, arch: str = "aarch64", python: str = "cp311"
) -> Path:
    """A release directory as `clinic release build` makes it: the files (plain bytes
    named like wheels and an sdist) and release.json, its signature null."""
    folder.mkdir(parents=True)
    contents = {
        f"clinic_terminal-{version}-py3-none-any.whl": ("project", f"project {version}" * 50),
        "attrs-23.2.0-py3-none-any.whl": ("dependency", "attrs" * 4000),
        "pyscard-2.0.9.tar.gz": ("source", "pyscard sdist"),
    }
    files = []
    for name, (role, text) in contents.items():
        data = text.encode()
        (folder / name).write_bytes(data)
        files.append(ReleaseFile(name, hashlib.sha256(data).hexdigest(), len(data), role))
    manifest = make_release_manifest(
        version=version, arch=arch, python=python, schema=SCHEMA, files=files, published_at=NOW
    )
    (folder / "release.json").write_text(json.dumps({"manifest": manifest, "signature": None}))
    return folder


def county_public_key(store):
    return load_public_key(store.county().public_key)


def publish(hub_dir, folder, now=NOW):
    from sync.hub.adapters.county_key import load_county_key

    with hub_store(hub_dir) as store:
        return releases.publish(store, load_county_key(hub_dir), hub_dir, folder, now)


def refused(hub_dir, folder) -> str:
    with pytest.raises(HubError) as error:
        publish(hub_dir, folder)
    return str(error.value)


def enrolled_client(hub, hub_dir, device, township="秣陵街道") -> HubClient:
    with hub_store(hub_dir) as store:
        code = county.provision(store, clinic_code="ML-01", township=township, now=NOW).code
    client = HubClient(hub.url, device.identity)
    document = {
        "code": code,
        "device_id": device.identity.device_id,
        "public_key": device.identity.public_key_b64,
    }
    client.enroll(document, NOW)
    return client


def heartbeat(software) -> dict:
    return {"device_clock": iso(NOW), "records_waiting": 0, "software": software}


SOFTWARE = {
    "version": "0.2.0",
    "arch": "aarch64",
    "python": "cp311",
    "release": {"version": "0.3.0", "state": "downloading", "detail": "", "at": iso(NOW)},
}


class TestPublishing:
    def test_a_release_is_signed_kept_whole_and_listed(self, hub, hub_dir, tmp_path):
        published = publish(hub_dir, make_release_dir(tmp_path / "r", "0.2.0"))
        kept = hub_dir / "releases" / "0.2.0" / "aarch64"
        assert sorted(p.name for p in kept.iterdir()) == sorted(
            [*(p.name for p in (tmp_path / "r").iterdir())]
        )
        with hub_store(hub_dir) as store:
            release = verify_release(published.document, county_public_key(store))
            [listed] = store.releases()
        assert release.version == "0.2.0" and listed == published
        assert json.loads((kept / "release.json").read_text()) == published.document
        assert not [p for p in kept.parent.iterdir() if p.name.startswith(".incoming")]

    @pytest.mark.parametrize(
        "spoil, says",
        [
            (lambda d: (d / "attrs-23.2.0-py3-none-any.whl").write_bytes(b"altered"), "SHA-256"),
            (lambda d: (d / "pyscard-2.0.9.tar.gz").write_bytes(b"pyscard sdisT"), "SHA-256"),
            (lambda d: (d / "extra.whl").write_bytes(b"x"), "extra.whl"),
            (lambda d: (d / "pyscard-2.0.9.tar.gz").unlink(), "pyscard-2.0.9.tar.gz"),
            (lambda d: (d / "release.json").write_text("{"), "release.json"),
            (
                lambda d: (d / "release.json").write_text(
                    json.dumps({"manifest": {"v": 1}, "signature": None})
                ),
                "清单格式不正确",
            ),
        ],
    )
    def test_a_directory_that_does_not_match_its_manifest_is_refused_changing_nothing(
        self, hub, hub_dir, tmp_path, spoil, says
    ):
        folder = make_release_dir(tmp_path / "r", "0.2.0")
        spoil(folder)
        message = refused(hub_dir, folder)
        assert says in message and "未发布" in message and "nothing published" in message
        with hub_store(hub_dir) as store:
            assert store.releases() == []
        assert not (hub_dir / "releases").exists() or not list((hub_dir / "releases").iterdir())

    def test_a_version_not_newer_than_every_published_one_is_refused(self, hub, hub_dir, tmp_path):
        publish(hub_dir, make_release_dir(tmp_path / "a", "0.3.0"))
        for name, version in (("b", "0.3.0"), ("c", "0.2.5")):
            message = refused(hub_dir, make_release_dir(tmp_path / name, version))
            assert "not newer than the published 0.3.0" in message
        assert [p.name for p in (hub_dir / "releases").iterdir()] == ["0.3.0"]
        # another architecture or Python has its own line of versions
        publish(hub_dir, make_release_dir(tmp_path / "d", "0.2.5", arch="x86_64"))
        publish(hub_dir, make_release_dir(tmp_path / "e", "0.2.5", python="cp312"))
        with hub_store(hub_dir) as store:
            assert [(r.version, r.arch, r.python) for r in store.releases()] == [
                ("0.3.0", "aarch64", "cp311"),
                ("0.2.5", "x86_64", "cp311"),
                ("0.2.5", "aarch64", "cp312"),
            ]
        assert sorted(p.name for p in (hub_dir / "releases" / "0.3.0").iterdir()) == ["aarch64"]

    def test_a_folder_left_by_a_publication_that_crashed_is_replaced(self, hub, hub_dir, tmp_path):
        leftover = hub_dir / "releases" / "0.2.0" / "aarch64"
        leftover.mkdir(parents=True)
        (leftover / "half.whl").write_bytes(b"half")
        publish(hub_dir, make_release_dir(tmp_path / "r", "0.2.0"))
        assert not (leftover / "half.whl").exists() and (leftover / "release.json").exists()

    def test_the_offer_is_the_newest_not_withdrawn_release_newer_than_the_running_one(
        self, hub, hub_dir, tmp_path
    ):
        for version in ("0.2.0", "0.3.0"):
            publish(hub_dir, make_release_dir(tmp_path / version, version))
        with hub_store(hub_dir) as store:

            def offered(running="0.1.0", arch="aarch64", python="cp311"):
                document = releases.offer(store, arch=arch, python=python, running=running)
                return document and document["manifest"]["version"]

            assert offered() == "0.3.0"
            assert offered(running="0.3.0") is None
            assert offered(arch="x86_64") is None and offered(python="cp312") is None
            releases.withdraw(store, "0.3.0", "aarch64", NOW)
            assert offered() == "0.2.0" and offered(running="0.2.0") is None
            with pytest.raises(HubError):
                releases.withdraw(store, "9.9.9", "aarch64", NOW)

    def test_the_commands_publish_list_and_withdraw(self, hub, hub_dir, tmp_path, monkeypatch):
        monkeypatch.setenv("CLINIC_CLOCK", iso(NOW))
        runner = CliRunner()
        folder = make_release_dir(tmp_path / "r", "0.2.0")

        def run(*args):
            return runner.invoke(main, ["hub", "release", *args, "--data-dir", str(hub_dir)])

        done = run("publish", str(folder), "--json")
        assert done.exit_code == 0, done.output
        assert json.loads(done.output)["version"] == "0.2.0"
        again = run("publish", str(folder))
        assert again.exit_code == 1 and "不比已发布的 0.2.0 新" in again.output
        [row] = json.loads(run("list", "--json").output)
        assert row["files"] == 3 and row["withdrawn_at"] is None
        withdrawn = run("withdraw", "0.2.0", "--arch", "aarch64")
        assert withdrawn.exit_code == 0 and "已撤回" in withdrawn.output
        [row] = json.loads(run("list", "--json").output)
        assert row["withdrawn_at"] is not None


class TestDownload:
    def test_a_device_is_offered_the_release_and_downloads_every_file_resuming(
        self, hub, hub_dir, tmp_path, make_device
    ):
        folder = make_release_dir(tmp_path / "r", "0.2.0")
        publish(hub_dir, folder)
        device = make_device("device")
        client = enrolled_client(hub, hub_dir, device)
        document = client.release_offer("aarch64", "cp311", "0.1.0", NOW)
        release = verify_release(document, client.county_key)
        assert client.release_offer("aarch64", "cp311", "0.2.0", NOW) is None
        target = tmp_path / "download"
        target.mkdir()
        for entry in release.files:
            dest = target / entry.name
            if entry.role == "dependency":  # interrupted half-way: resumed with Range
                dest.write_bytes((folder / entry.name).read_bytes()[:1000])
            got = client.release_file("0.2.0", "aarch64", entry.name, dest, NOW, size=entry.size)
            assert got == entry.size
            assert hashlib.sha256(dest.read_bytes()).hexdigest() == entry.sha256

    def test_a_file_over_the_manifest_size_is_cut_off(self, hub, hub_dir, tmp_path, make_device):
        publish(hub_dir, make_release_dir(tmp_path / "r", "0.2.0"))
        client = enrolled_client(hub, hub_dir, make_device("device"))
        dest = tmp_path / "attrs.whl"
        with pytest.raises(SyncError) as error:
            client.release_file(
                "0.2.0", "aarch64", "attrs-23.2.0-py3-none-any.whl", dest, NOW, size=100
            )
        assert error.value.code == "RELEASE_FILE_MISMATCH"

    def test_a_partial_file_longer_than_the_hub_s_is_thrown_away(
        self, hub, hub_dir, tmp_path, make_device
    ):
        folder = make_release_dir(tmp_path / "r", "0.2.0")
        publish(hub_dir, folder)
        client = enrolled_client(hub, hub_dir, make_device("device"))
        name = "pyscard-2.0.9.tar.gz"
        dest = tmp_path / name
        dest.write_bytes(b"not this file at all")
        with pytest.raises(SyncError) as error:
            client.release_file("0.2.0", "aarch64", name, dest, NOW)
        assert error.value.retryable and not dest.exists()
        assert client.release_file("0.2.0", "aarch64", name, dest, NOW) == 13
        assert dest.read_bytes() == (folder / name).read_bytes()

    def test_a_download_cut_off_keeps_what_came_and_resumes(self, tmp_path, make_device):
        """A proxy in front of the hub that cuts long answers (a write timeout): the
        client says so (retryable) and the next call resumes with Range."""
        data = bytes(range(256)) * 40
        asked: list[str | None] = []

        class CuttingProxy(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                asked.append(self.headers.get("Range"))
                start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:] if start else data[:3000])  # cut at 3000

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CuttingProxy)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            device = make_device("device")
            client = HubClient(
                f"http://127.0.0.1:{server.server_port}",
                device.identity,
                county_key=device.identity.public_key_b64,  # file answers are not signed
            )
            dest = tmp_path / "big.whl"
            with pytest.raises(SyncError) as error:
                client.release_file("0.2.0", "aarch64", "big.whl", dest, NOW, size=len(data))
            assert error.value.retryable and "cut off at 3000" in error.value.detail
            assert dest.read_bytes() == data[:3000]
            got = client.release_file("0.2.0", "aarch64", "big.whl", dest, NOW, size=len(data))
            assert got == len(data) and dest.read_bytes() == data
            assert asked == [None, "bytes=3000-"]
        finally:
            server.shutdown()
            server.server_close()

    def test_a_hub_started_with_a_relative_data_directory_serves_the_files(
        self, hub, hub_dir, tmp_path, make_device, monkeypatch
    ):
        from sync_helpers import start_hub

        folder = make_release_dir(tmp_path / "r", "0.2.0")
        publish(hub_dir, folder)
        device = make_device("device")
        enrolled_client(hub, hub_dir, device)
        monkeypatch.chdir(hub_dir.parent)
        relative = start_hub(Path(hub_dir.name), FakeClock(NOW))
        try:
            client = HubClient(
                relative.url, device.identity, county_key=device.identity.public_key_b64
            )
            dest = tmp_path / "attrs.whl"
            client.release_file("0.2.0", "aarch64", "attrs-23.2.0-py3-none-any.whl", dest, NOW)
            assert dest.read_bytes() == (folder / "attrs-23.2.0-py3-none-any.whl").read_bytes()
        finally:
            relative.stop()

    @pytest.mark.parametrize(
        "path",
        [
            "/release/0.2.0/aarch64/nothing.whl",
            "/release/0.2.0/aarch64/../../../hub.db",
            "/release/0.2.0/aarch64/.hidden",
            "/release/0.2.0/aarch64/release.json",
            "/release/0.9.0/aarch64/attrs-23.2.0-py3-none-any.whl",
            "/release/0.2.0/x86_64/attrs-23.2.0-py3-none-any.whl",
        ],
    )
    def test_anything_but_a_file_the_manifest_names_is_not_found(
        self, hub, hub_dir, tmp_path, make_device, path
    ):
        publish(hub_dir, make_release_dir(tmp_path / "r", "0.2.0"))
        device = make_device("device")
        enrolled_client(hub, hub_dir, device)
        status, answer, _ = signed_call(hub.url, device.identity, "GET", path, b"", NOW)
        assert status == 404 and answer["error"]["code"] == "NOT_FOUND"

    def test_a_refusal_is_signed_and_raised_by_the_client(
        self, hub, hub_dir, tmp_path, make_device
    ):
        publish(hub_dir, make_release_dir(tmp_path / "r", "0.2.0"))
        client = enrolled_client(hub, hub_dir, make_device("device"))
        with pytest.raises(HubRefusal) as error:
            client.release_file("0.2.0", "aarch64", "nothing.whl", tmp_path / "x", NOW)
        assert error.value.code == "NOT_FOUND" and not (tmp_path / "x").exists()

    def test_requests_that_are_not_a_device_s_are_refused(self, hub, hub_dir, tmp_path):
        publish(hub_dir, make_release_dir(tmp_path / "r", "0.2.0"))
        for path in (
            "/release?arch=aarch64&python=cp311&running=0.1.0",
            "/release/0.2.0/aarch64/attrs-23.2.0-py3-none-any.whl",
        ):
            status, answer = raw_call(hub.url, "GET", path, b"", {})
            assert status == 401 and answer["error"]["code"] == "UNSIGNED"

    def test_a_malformed_offer_query_is_a_bad_request(self, hub, hub_dir, make_device):
        device = make_device("device")
        enrolled_client(hub, hub_dir, device)
        for n, query in enumerate(("arch=sparc&python=cp311&running=0.1", "arch=aarch64")):
            status, answer, _ = signed_call(
                hub.url, device.identity, "GET", f"/release?{query}", b"", NOW, nonce=f"n-{n:016}"
            )
            assert status == 400 and answer["error"]["code"] == "BAD_REQUEST"


class TestHeartbeat:
    def test_the_software_member_is_kept_with_the_heartbeat(self, hub, hub_dir, make_device):
        device = make_device("device")
        client = enrolled_client(hub, hub_dir, device)
        client.heartbeat(heartbeat(SOFTWARE), NOW)
        with hub_store(hub_dir) as store:
            slot = store.slot_by_device(device.identity.device_id)
            assert releases.software_of(slot) == SOFTWARE
            assert store.alarms(device.identity.device_id) == []

    def test_hub_status_shows_the_software_and_its_update(
        self, hub, hub_dir, make_device, monkeypatch
    ):
        monkeypatch.setenv("CLINIC_CLOCK", iso(NOW))
        enrolled_client(hub, hub_dir, make_device("device")).heartbeat(heartbeat(SOFTWARE), NOW)
        shown = CliRunner().invoke(main, ["hub", "status", "--data-dir", str(hub_dir)])
        assert shown.exit_code == 0 and "software 0.2.0 (0.3.0 downloading)" in shown.output
        [row] = json.loads(
            CliRunner().invoke(main, ["hub", "status", "--data-dir", str(hub_dir), "--json"]).output
        )
        assert row["software"] == SOFTWARE

    @pytest.mark.parametrize(
        "software",
        [
            "0.2.0",
            {**SOFTWARE, "arch": "sparc"},
            {**SOFTWARE, "version": "x" * 200},
            {**SOFTWARE, "extra": 1},
            {**SOFTWARE, "release": {**SOFTWARE["release"], "state": "exploded"}},
            {**SOFTWARE, "release": {**SOFTWARE["release"], "at": "yesterday"}},
            {**SOFTWARE, "release": {**SOFTWARE["release"], "detail": ["x"] * 50}},
        ],
    )
    def test_a_malformed_member_is_ignored_with_an_alarm_and_the_heartbeat_goes_on(
        self, hub, hub_dir, make_device, software
    ):
        device = make_device("device")
        client = enrolled_client(hub, hub_dir, device)
        answer = client.heartbeat(heartbeat(software), NOW)
        assert "acked_seq" in answer
        with hub_store(hub_dir) as store:
            slot = store.slot_by_device(device.identity.device_id)
            assert releases.software_of(slot) is None
            assert slot.heartbeat_doc["records_waiting"] == 0
            [alarm] = store.alarms(device.identity.device_id)
            assert alarm.code == "SOFTWARE_REPORT_MALFORMED"

    def test_a_long_detail_is_cut_to_its_bound(self, hub, hub_dir, make_device):
        device = make_device("device")
        client = enrolled_client(hub, hub_dir, device)
        long = {**SOFTWARE, "release": {**SOFTWARE["release"], "detail": "失败" * 400}}
        client.heartbeat(heartbeat(long), NOW)
        with hub_store(hub_dir) as store:
            slot = store.slot_by_device(device.identity.device_id)
            assert len(releases.software_of(slot)["release"]["detail"]) == releases.MAX_DETAIL


class TestConsole:
    @pytest.fixture
    def fleet(self, hub, hub_dir, tmp_path, make_device):
        """0.2.0 and 0.3.0 published; in 秣陵街道 one device runs 0.3.0, one rolled it
        back; in 谷里街道 one is downloading it."""
        with hub_store(hub_dir) as store:
            console_auth.add_user(store, "admin", PASSWORD, "admin", None, NOW)
            console_auth.add_user(store, "li", PASSWORD, "coordinator", "秣陵街道", NOW)
        for version in ("0.2.0", "0.3.0"):
            publish(hub_dir, make_release_dir(tmp_path / version, version))
        reports = {
            "ml1": ("秣陵街道", {**SOFTWARE, "version": "0.3.0", "release": None}),
            "ml2": (
                "秣陵街道",
                {
                    **SOFTWARE,
                    "release": {
                        "version": "0.3.0",
                        "state": "rolled_back",
                        "detail": "health check failed",
                        "at": iso(NOW),
                    },
                },
            ),
            "gl1": ("谷里街道", SOFTWARE),
        }
        ids = {}
        for name, (township, software) in reports.items():
            device = make_device(name)
            enrolled_client(hub, hub_dir, device, township).heartbeat(heartbeat(software), NOW)
            ids[name] = device.identity.device_id
        hub.ids = ids
        return hub

    def test_the_releases_page_counts_each_state_and_a_coordinator_sees_their_township(self, fleet):
        page = signed_in(fleet.app, "admin").get("/console/releases").get_data(as_text=True)
        assert "软件版本" in page and "0.3.0" in page and "0.2.0" in page
        rows = re.findall(r"<tr>\s*<td><a [^>]*>(0\.[23]\.0)</a>(.*?)</tr>", page, re.S)
        counts = {v: re.findall(r'class="num[^"]*">(\d+)</td>', rest) for v, rest in rows}
        # states: pending, downloading, ready, installing, installed, rolled back, refused
        assert counts["0.3.0"] == ["0", "1", "0", "0", "1", "1", "0"]
        assert counts["0.2.0"] == ["0", "0", "0", "0", "3", "0", "0"]
        page = signed_in(fleet.app, "li").get("/console/releases").get_data(as_text=True)
        rows = re.findall(r"<tr>\s*<td><a [^>]*>(0\.[23]\.0)</a>(.*?)</tr>", page, re.S)
        counts = {v: re.findall(r'class="num[^"]*">(\d+)</td>', rest) for v, rest in rows}
        assert counts["0.3.0"] == ["0", "0", "0", "0", "1", "1", "0"]

    def test_a_release_page_shows_each_device_and_the_reason_of_a_rollback(self, fleet):
        client = signed_in(fleet.app, "li")
        page = client.get("/console/releases/0.3.0/aarch64").get_data(as_text=True)
        assert fleet.ids["ml1"] in page and fleet.ids["ml2"] in page
        assert fleet.ids["gl1"] not in page  # another township
        assert "已回退" in page and "health check failed" in page
        assert "撤回" not in page  # coordinators do not withdraw
        assert client.get("/console/releases/9.9.9/aarch64").status_code == 404

    def test_the_fleet_page_shows_each_device_s_version_and_update(self, fleet):
        page = signed_in(fleet.app, "admin").get("/console/").get_data(as_text=True)
        assert "0.3.0: 已回退" in page and "0.3.0: 下载中" in page

    def test_an_admin_withdraws_a_release_a_coordinator_cannot(self, fleet, hub_dir):
        li = signed_in(fleet.app, "li")
        path = "/console/admin/releases/0.3.0/aarch64/withdraw"
        answer = li.post(path, data={"csrf_token": token(li.get("/console/").get_data(True))})
        assert answer.status_code == 403
        admin = signed_in(fleet.app, "admin")
        assert admin.post(path).status_code == 400  # no CSRF token
        page = admin.get("/console/releases/0.3.0/aarch64").get_data(as_text=True)
        answer = admin.post(path, data={"csrf_token": token(page)})
        assert answer.status_code == 302
        with hub_store(hub_dir) as store:
            assert store.release("0.3.0", "aarch64").withdrawn_at == iso(NOW)
            offered = releases.offer(store, arch="aarch64", python="cp311", running="0.1.0")
        assert offered["manifest"]["version"] == "0.2.0"
        page = admin.get("/console/releases/0.3.0/aarch64").get_data(as_text=True)
        assert "不再向设备提供" in page


def test_a_release_published_later_is_offered_at_the_next_request(
    hub, hub_dir, tmp_path, make_device, hub_clock
):
    client = enrolled_client(hub, hub_dir, make_device("device"))
    assert client.release_offer("aarch64", "cp311", "0.1.0", NOW) is None
    hub_clock.advance(hours=1)
    publish(hub_dir, make_release_dir(tmp_path / "r", "0.2.0"), NOW + timedelta(hours=1))
    later = NOW + timedelta(hours=1)
    assert (
        client.release_offer("aarch64", "cp311", "0.1.0", later)["manifest"]["version"] == "0.2.0"
    )
