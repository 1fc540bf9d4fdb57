"""TLS between the terminal and the hub: the hub's certificate pinned at enrollment, a hub
presenting another certificate refused before anything is sent, plain http:// refused
off this machine unless a lab allowed it, and the certificate `clinic hub init` makes."""

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from hub_server import make_certificate, serve_in_background
from sync_helpers import NOW, enroll, hub_records, hub_store

from edge.console import main
from sync import agent
from sync.agent import state
from sync.agent.client import HubClient
from sync.hub.services import county
from sync.protocol import SyncError


@pytest.fixture
def hub_backend(monkeypatch):
    """TLS is the same whatever the hub's store: SQLite only here."""
    from hub_fixtures import HubBackend

    monkeypatch.delenv("CLINIC_HUB_DATABASE", raising=False)
    return HubBackend("sqlite")


@pytest.fixture
def hub_tls(tmp_path) -> dict:
    return make_certificate(tmp_path / "tls", NOW)


@pytest.fixture
def impostor_tls(tmp_path) -> dict:
    """Another certificate for the same address: what someone else's hub would present."""
    return make_certificate(tmp_path / "impostor", NOW)


@pytest.fixture
def hub(hub_dir, hub_clock, hub_tls):
    from sync_helpers import start_hub

    running = start_hub(hub_dir, hub_clock, tls=hub_tls)
    yield running
    running.stop()


def pem(tls: dict) -> str:
    return Path(tls["certificate"]).read_text()


def test_a_pinned_device_refuses_a_hub_presenting_another_certificate(
    hub, hub_dir, hub_clock, device, hub_tls, impostor_tls
):
    enroll(device, hub_dir, hub.url, NOW, hub_certificate=pem(hub_tls))
    for _ in range(3):
        device.settle(NOW)
    status = agent.sync_status(device.store, NOW)
    assert status["hub_certificate_fingerprint"] == hub_tls["fingerprint"]
    assert not status["plain_http_lab"]

    # Someone answers at the hub's address with another certificate (same host name, same
    # hub behind it: only the certificate differs).
    seen: list[str] = []
    impostor = serve_in_background(hub_dir, config={"CLOCK": hub_clock}, tls=impostor_tls)
    impostor.app.before_request(lambda: seen.append("request"))
    before = (device.store.outbox_count(), device.store.device())
    try:
        report = agent.sync_once(
            device.store, device.identity, device.data_dir, NOW, hub_url=impostor.url
        )
    finally:
        impostor.stop()
    assert not report["ok"]
    assert {e["code"] for e in report["errors"]} == {"HUB_CERTIFICATE"}
    error = report["errors"][0]
    assert "证书" in error["message_zh"] and "certificate" in error["message"]
    assert seen == []  # nothing reached the other server's application
    assert (device.store.outbox_count(), device.store.device()) == before  # nothing moved
    assert hub_records(hub_dir, device.identity.device_id) == []

    # The real hub, with the pinned certificate: everything goes.
    report = agent.sync_once(device.store, device.identity, device.data_dir, NOW)
    assert report["ok"], report["errors"]
    assert device.store.outbox_count() == 0


def test_enrolling_with_a_pin_the_hub_does_not_match_saves_nothing(
    hub, hub_dir, device, impostor_tls
):
    with pytest.raises(SyncError) as refused:
        enroll(device, hub_dir, hub.url, NOW, hub_certificate=pem(impostor_tls))
    assert refused.value.code == "HUB_CERTIFICATE"
    assert state.enrollment(device.store) is None
    with hub_store(hub_dir) as store:
        assert all(slot.device_id is None for slot in store.slots())  # the code unused


def test_a_pin_that_is_not_a_certificate_is_refused_before_asking_the_hub(hub, hub_dir, device):
    with pytest.raises(SyncError) as refused:
        enroll(device, hub_dir, hub.url, NOW, hub_certificate="not a certificate")
    assert refused.value.code == "BAD_CERTIFICATE"
    assert "证书" in refused.value.message_zh


def test_an_https_hub_is_not_enrolled_or_pinned_without_its_certificate(
    hub, hub_dir, hub_clock, device, hub_tls
):
    # Trusting the system's CAs would let any certificate they sign answer for the county.
    with pytest.raises(SyncError) as refused:
        enroll(device, hub_dir, hub.url, NOW)
    assert refused.value.code == "HUB_CERTIFICATE_REQUIRED"
    assert "--hub-ca" in refused.value.message_zh and "pinned" in refused.value.message_en
    assert state.enrollment(device.store) is None
    enroll(device, hub_dir, hub.url, NOW, hub_certificate=pem(hub_tls))
    with pytest.raises(SyncError, match="HUB_CERTIFICATE_REQUIRED"):
        agent.pin_hub(device.store, device.identity, NOW, hub_certificate=None)
    assert state.enrollment(device.store).hub_certificate == pem(hub_tls)


@pytest.mark.parametrize(
    "url", ["http://192.0.2.10:8470", "http://hub.example.cn", "http://[2001:db8::1]:80"]
)
def test_plain_http_off_this_machine_is_refused_before_connecting(device, url):
    with pytest.raises(SyncError) as refused:
        agent.enroll(device.store, device.identity, device.data_dir, url, "CODE", NOW)
    assert refused.value.code == "PLAIN_HTTP_REFUSED"
    assert "http://" in refused.value.message_zh and "loopback" in refused.value.message_en
    assert state.enrollment(device.store) is None
    # Allowed only when a lab says so (no connection is made here).
    assert HubClient(url, device.identity, plain_http_lab=True).context is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:1", "http://127.9.9.9:1", "http://[::1]:1"])
def test_plain_http_to_this_machine_is_allowed(device, url):
    assert HubClient(url, device.identity).base_url == url
    assert HubClient("http://localhost:1", device.identity)


def test_a_lab_enrollment_over_plain_http_is_stored_and_shown(device, tmp_path, hub_clock):
    hub_dir = tmp_path / "lab-hub"
    from sync_helpers import start_hub

    # A lab hub on plain HTTP: by a name that is not loopback, refused before connecting;
    # allowed with the lab flag (reached on loopback here), which is stored and shown.
    running = start_hub(hub_dir, hub_clock)
    try:
        name_url = running.url.replace("127.0.0.1", "127.0.0.1.nip.invalid")
        with pytest.raises(SyncError, match="PLAIN_HTTP_REFUSED"):
            enroll(device, hub_dir, name_url, NOW)
        details = sync_lab_enroll(device, hub_dir, running.url)
    finally:
        running.stop()
    assert details["plain_http_lab"] is True
    status = agent.sync_status(device.store, NOW)
    assert status["plain_http_lab"] is True and status["hub_certificate_fingerprint"] is None
    result = CliRunner().invoke(main, ["sync", "status", "--data-dir", str(device.data_dir)])
    assert "plain http:// allowed for a lab" in result.output


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def sync_lab_enroll(device, hub_dir: Path, url: str) -> dict:
    with hub_store(hub_dir) as store:
        code = county.provision(store, clinic_code="C9", township="T", now=NOW).code
    return agent.enroll(
        device.store, device.identity, device.data_dir, url, code, NOW, plain_http_lab=True
    )


def test_clinic_hub_init_makes_a_certificate_devices_pin_through_the_command_line(
    tmp_path, hub_clock, device, monkeypatch
):
    monkeypatch.setenv("CLINIC_CLOCK", NOW.isoformat())
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir(mode=0o755)
    os.chmod(hub_dir, 0o755)  # an existing, world-readable folder
    runner = CliRunner()
    made = runner.invoke(
        main,
        ["hub", "init", "--data-dir", str(hub_dir), "--tls-host", "127.0.0.1",
         "--tls-host", "hub.county.example"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    certificate_path, key_path = hub_dir / "hub-tls.crt", hub_dir / "hub-tls.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["hub.county.example"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    fingerprint = certificate.fingerprint(certificate.signature_hash_algorithm).hex(":").upper()
    assert f"SHA-256 fingerprint {fingerprint}" in made.output

    tls = {"certificate": str(certificate_path), "key": str(key_path)}
    from sync.demo import install_demo_county

    install_demo_county(hub_dir, NOW)
    running = serve_in_background(hub_dir, config={"CLOCK": hub_clock}, tls=tls)
    try:
        with hub_store(hub_dir) as store:
            code = county.provision(store, clinic_code="C1", township="T", now=NOW).code
        enrolled = runner.invoke(
            main,
            ["enroll", "--data-dir", str(device.data_dir), "--hub", running.url, "--code", code,
             "--hub-ca", str(certificate_path)],
        )  # fmt: skip
        assert enrolled.exit_code == 0, enrolled.output
        assert f"pinned, SHA-256 {fingerprint}" in enrolled.output
        status = runner.invoke(main, ["sync", "status", "--data-dir", str(device.data_dir)])
        assert fingerprint in status.output

        # Renewal without a gap: the devices pin the old and the new certificate together
        # while the hub still serves the old one, then the hub switches.
        old_pem = certificate_path.read_text()
        renewed = runner.invoke(
            main, ["hub", "certificate", "--data-dir", str(hub_dir), "--tls-host", "127.0.0.1"]
        )
        assert renewed.exit_code == 0, renewed.output
        assert certificate_path.read_text() != old_pem
        both = tmp_path / "old-and-new.pem"
        both.write_text(old_pem + certificate_path.read_text())
        pinned = runner.invoke(
            main, ["sync", "pin", "--data-dir", str(device.data_dir), "--hub-ca", str(both)]
        )
        assert pinned.exit_code == 0, pinned.output
        synced = runner.invoke(main, ["sync", "once", "--data-dir", str(device.data_dir)])
        assert synced.exit_code == 0, synced.output  # the old certificate, still trusted
    finally:
        running.stop()
    running = serve_in_background(hub_dir, port=running.port, config={"CLOCK": hub_clock}, tls=tls)
    try:
        synced = runner.invoke(main, ["sync", "once", "--data-dir", str(device.data_dir)])
        assert synced.exit_code == 0, synced.output  # the new one

        # A device still pinned to the old certificate alone refuses the renewed hub.
        pinned = runner.invoke(
            main,
            ["sync", "pin", "--data-dir", str(device.data_dir), "--hub-ca",
             str(write(tmp_path / "old.pem", old_pem))],
        )  # fmt: skip
        assert pinned.exit_code == 0, pinned.output
        synced = runner.invoke(main, ["sync", "once", "--data-dir", str(device.data_dir)])
        assert synced.exit_code == 1
        assert "证书" in synced.output and "certificate" in synced.output
    finally:
        running.stop()
    events = [r["body"].get("event") for r in device.records() if r["kind"] == "event"]
    assert "hub_pinned" in events


def test_a_device_enrolled_over_plain_http_before_pinning_keeps_syncing_flagged(device):
    """m011: an enrollment made before TLS (plain http:// to a hub off this machine) is
    marked a lab's, so that the fleet keeps syncing and its status says so."""
    from edge.adapters.sqlite_store import SqliteDeviceStore

    with device.store.write_transaction():
        device.store.db.execute(
            "INSERT INTO sync_enrollment (id, hub_url, device_id, clinic_code, township,"
            " county_name, county_public_key, enrolled_at) VALUES"
            " (1, 'http://10.1.2.3:8470', ?, 'C1', 'T', 'X', 'k', 'then')",
            [device.identity.device_id],
        )
        device.store.db.execute(
            "DELETE FROM _sqlite_migrations WHERE name = 'm011_hub_certificate'"
        )
        device.store.db.execute("ALTER TABLE sync_enrollment DROP COLUMN hub_certificate")
        device.store.db.execute("ALTER TABLE sync_enrollment DROP COLUMN plain_http_lab")
    device.store.close()
    device.store = SqliteDeviceStore.open(device.data_dir)
    assert state.enrollment(device.store).plain_http_lab is True
