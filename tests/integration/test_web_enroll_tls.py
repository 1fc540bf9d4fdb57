"""The admin page's enrollment pins the hub's certificate (pasted PEM), refuses plain
http:// off this machine unless the lab box is ticked, and the status page shows both."""

from pathlib import Path

import pytest
from clock import NOW
from hub_server import make_certificate
from sync_helpers import hub_store, start_hub
from web_support import Auth

from sync.demo import DEMO_CLINIC, DEMO_TOWNSHIP
from sync.hub.services import county

pytest_plugins = ["web_fixtures"]  # the web UI fixtures


@pytest.fixture
def admin(auth) -> Auth:
    auth.sign_in("admin01")
    return auth


@pytest.fixture
def tls(tmp_path) -> dict:
    return make_certificate(tmp_path / "tls", NOW)


@pytest.fixture
def hub(tmp_path, clock, tls):
    """The demo county's hub over HTTPS, on the web UI's clock."""
    running = start_hub(tmp_path / "hub", clock, tls=tls)
    yield running
    running.stop()


def code_for(hub_dir: Path, clock) -> str:
    with hub_store(hub_dir) as store:
        return county.provision(
            store, clinic_code=DEMO_CLINIC, township=DEMO_TOWNSHIP, now=clock()
        ).code


def enroll(admin: Auth, form: dict) -> str:
    response = admin.post("/admin/enroll", form)
    return admin.client.get(response.headers["Location"]).get_data(as_text=True)


def test_enrollment_pins_the_pasted_certificate_and_the_status_page_shows_it(
    admin, hub, tmp_path, clock, tls
):
    assert 'name="hub_certificate"' in admin.client.get("/admin").get_data(as_text=True)
    other = make_certificate(tmp_path / "other", NOW)
    code = code_for(tmp_path / "hub", clock)
    page = enroll(
        admin,
        {
            "hub_url": hub.url,
            "code": code,
            "hub_certificate": Path(other["certificate"]).read_text(),
        },
    )
    assert "注册失败：" in page and "证书" in page and "Traceback" not in page
    page = enroll(
        admin,
        {"hub_url": hub.url, "code": code, "hub_certificate": Path(tls["certificate"]).read_text()},
    )
    assert "已向县级平台注册：" in page
    admin.sign_out()
    admin.sign_in("coord01")
    status = admin.client.get("/status").get_data(as_text=True)
    assert tls["fingerprint"] in status and 'id="plain-http-lab"' not in status


def test_plain_http_off_this_machine_needs_the_lab_box(admin, tmp_path, clock):
    page = enroll(admin, {"hub_url": "http://192.0.2.7:8470", "code": "ANYCODE"})
    assert "注册失败：" in page and "http://" in page and "实验环境" in page
    running = start_hub(tmp_path / "lab-hub", clock)  # plain HTTP, on loopback here
    try:
        code = code_for(tmp_path / "lab-hub", clock)
        page = enroll(admin, {"hub_url": running.url, "code": code, "plain_http_lab": "1"})
    finally:
        running.stop()
    assert "已向县级平台注册：" in page
    admin.sign_out()
    admin.sign_in("coord01")
    status = admin.client.get("/status").get_data(as_text=True)
    assert 'id="plain-http-lab"' in status and "明文" in status
