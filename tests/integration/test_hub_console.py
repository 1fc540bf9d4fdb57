"""The county hub's web console: sign-in, roles (coordinators see their township only),
CSRF, CSP without script, Chinese or English, provisioning, publishing with a diff,
reconciliation, CSV. On each hub store (`hub_backend`, tests/hub_fixtures.py)."""

import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from password_fixtures import legacy_hash
from sync_helpers import NOW, enroll, hub_store

from edge import demo as edge_demo
from edge import services
from edge.domain.money import format_yuan
from sync import agent
from sync.hub import console_auth, i18n
from sync.hub.services import county, reconciliation

PASSWORD = "correct horse 42"


@pytest.fixture
def hub(hub, hub_dir, make_device):
    """The shared hub (tests/hub_fixtures.py) with an admin, a coordinator of 秣陵街道, a
    slot in 谷里街道 awaiting enrollment, and ML-01's device in 秣陵街道, which has uploaded
    a settlement (its id: hub.device_id)."""
    with hub_store(hub_dir) as store:
        console_auth.add_user(store, "admin", PASSWORD, "admin", None, NOW)
        console_auth.add_user(store, "li", PASSWORD, "coordinator", "秣陵街道", NOW)
        county.provision(store, clinic_code="GL-01", township="谷里街道", now=NOW)
    device = make_device("device")
    enroll(device, hub_dir, hub.url, NOW, clinic_code="ML-01", township="秣陵街道")
    device.settle(NOW)
    assert agent.sync_once(device.store, device.identity, device.data_dir, NOW)["ok"]
    hub.device_id = device.identity.device_id
    return hub


def token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def post_sign_in(client, username: str, password: str = PASSWORD):
    page = client.get("/console/login").get_data(as_text=True)
    return client.post(
        "/console/login",
        data={"username": username, "password": password, "csrf_token": token(page)},
    )


def signed_in(hub, username: str):
    client = hub.app.test_client()
    assert post_sign_in(client, username).status_code == 302
    return client


def csrf_of(client, path="/console/") -> str:
    return token(client.get(path).get_data(as_text=True))


def in_english(client, path="/console/login"):
    client.post("/console/lang", data={"lang": "en", "csrf_token": csrf_of(client, path)})
    return client


class TestSignIn:
    def test_pages_need_a_signed_in_user(self, hub):
        answer = hub.app.test_client().get("/console/")
        assert answer.status_code == 302 and "/console/login" in answer.headers["Location"]

    def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(self, hub):
        client = hub.app.test_client()
        answer = post_sign_in(client, "admin", "nope")
        assert answer.status_code == 401
        assert "用户名或密码不正确。" in answer.get_data(as_text=True)
        answer = post_sign_in(in_english(client), "nobody")
        assert "Wrong user name or password." in answer.get_data(as_text=True)

    def test_repeated_failures_lock_the_user_out(self, hub, hub_dir):
        with hub_store(hub_dir) as store:
            for _ in range(console_auth.MAX_FAILURES):
                with pytest.raises(console_auth.SignInRefused):
                    console_auth.sign_in(store, "li", "wrong", NOW)
            with pytest.raises(console_auth.SignInRefused, match="locked"):
                console_auth.sign_in(store, "li", PASSWORD, NOW)
            later = NOW + console_auth.LOCKOUT + timedelta(seconds=1)
            assert console_auth.sign_in(store, "li", PASSWORD, later).township == "秣陵街道"

    def test_passwords_are_kept_as_slow_salted_hashes(self, hub, hub_dir):
        with hub_store(hub_dir) as store:
            stored = store.console_user("admin").password_hash
        assert stored.startswith("$scrypt$ln=14,r=8,p=1$") and PASSWORD not in stored
        assert console_auth.hash_password(PASSWORD) != console_auth.hash_password(PASSWORD)

    def test_a_password_hashed_in_the_older_format_still_signs_in(self, hub, hub_dir):
        older = legacy_hash(PASSWORD, "sync.hub.console_auth")
        with hub_store(hub_dir) as store, store.unit_of_work():
            store.add_console_user(
                "wang", older, "coordinator", "秣陵街道", "2026-01-05T08:00:00+08:00"
            )
        signed_in(hub, "wang")
        with hub_store(hub_dir) as store:
            assert console_auth.sign_in(store, "wang", PASSWORD, NOW).township == "秣陵街道"

    def test_a_post_without_the_csrf_token_is_refused(self, hub, hub_dir):
        client = signed_in(hub, "admin")
        answer = client.post("/console/admin/devices", data={"clinic_code": "X", "township": "Y"})
        assert answer.status_code == 400 and "表单已过期" in answer.get_data(as_text=True)
        forged = {"clinic_code": "X", "township": "Y", "csrf_token": "forged"}
        assert client.post("/console/admin/devices", data=forged).status_code == 400
        with hub_store(hub_dir) as store:
            assert "X" not in {slot.clinic_code for slot in store.slots()}

    def test_signing_in_over_https_needs_no_referer(self, hub):
        client = hub.app.test_client()  # Referrer-Policy: no-referrer, so browsers send none
        page = client.get("/console/login", base_url="https://hub.example").get_data(as_text=True)
        answer = client.post(
            "/console/login",
            base_url="https://hub.example",
            data={"username": "admin", "password": PASSWORD, "csrf_token": token(page)},
        )
        assert answer.status_code == 302

    def test_every_page_forbids_script_and_carries_none(self, hub):
        client = signed_in(hub, "admin")
        for path in (
            "/console/",
            "/console/reconciliation",
            "/console/admin/devices",
            "/console/admin/publish/catalog",
            f"/console/devices/{hub.device_id}",
            "/console/reports",
        ):
            answer = client.get(path)
            assert answer.status_code == 200, path
            policy = answer.headers["Content-Security-Policy"]
            assert "default-src 'none'" in policy and "script-src" not in policy
            assert "<script" not in answer.get_data(as_text=True)


class TestLanguage:
    def test_the_console_catalog_is_complete_and_compiled(self):
        assert i18n.CATALOGS.problems() == []

    def test_pages_are_in_chinese_until_english_is_chosen_which_outlasts_signing_in(self, hub):
        client = hub.app.test_client()
        page = client.get("/console/login").get_data(as_text=True)
        assert '<html lang="zh-Hans">' in page and "用户名" in page and "User name" not in page
        page = in_english(client).get("/console/login").get_data(as_text=True)
        assert '<html lang="en">' in page and "User name" in page and "用户名" not in page
        assert post_sign_in(client, "admin").status_code == 302
        page = client.get("/console/").get_data(as_text=True)
        assert "Fleet status" in page and "awaiting enrollment" in page and "中文" in page
        client.post("/console/lang", data={"lang": "zh", "csrf_token": token(page)})
        assert "设备状态" in client.get("/console/").get_data(as_text=True)

    def test_an_unknown_language_or_an_outside_address_is_ignored(self, hub):
        client = hub.app.test_client()
        page = client.get("/console/login").get_data(as_text=True)
        answer = client.post(
            "/console/lang",
            data={"lang": "fr", "next": "//elsewhere.example/", "csrf_token": token(page)},
        )
        assert answer.headers["Location"] == "/console/"
        assert "用户名" in client.get("/console/login").get_data(as_text=True)

    @pytest.mark.parametrize(
        "target", ["/console/\r\nSet-Cookie: x=1", "/%09/elsewhere.example/", "/\t/elsewhere"]
    )
    def test_a_return_address_with_control_characters_is_ignored_not_a_500(self, hub, target):
        client = hub.app.test_client()
        page = client.get("/console/login").get_data(as_text=True)
        answer = client.post(
            "/console/lang", data={"lang": "en", "next": target, "csrf_token": token(page)}
        )
        assert answer.status_code == 302 and answer.headers["Location"] == "/console/"


class TestFleet:
    def test_the_fleet_page_shows_each_clinic(self, hub):
        page = signed_in(hub, "admin").get("/console/").get_data(as_text=True)
        assert "设备状态" in page
        assert "ML-01" in page and "GL-01" in page and hub.device_id in page
        assert "待登记" in page

    def test_a_coordinator_sees_only_their_township(self, hub):
        client = signed_in(hub, "li")
        page = client.get("/console/?township=谷里街道").get_data(as_text=True)
        assert "ML-01" in page and "GL-01" not in page

    def test_a_coordinator_cannot_open_admin_pages(self, hub):
        client = signed_in(hub, "li")
        assert client.get("/console/admin/devices").status_code == 403
        assert client.get("/console/admin/publish/policy").status_code == 403

    def test_a_coordinator_cannot_open_a_device_of_another_township(
        self, hub, make_enrolled_device
    ):
        other = make_enrolled_device("other", clinic_code="GL-02", township="谷里街道")
        client = signed_in(hub, "li")
        assert client.get(f"/console/devices/{other.identity.device_id}").status_code == 404
        assert client.get(f"/console/devices/{hub.device_id}").status_code == 200

    def test_the_settlements_csv_holds_the_uploaded_settlement(self, hub):
        answer = signed_in(hub, "li").get("/console/export/settlements.csv")
        lines = answer.get_data(as_text=True).lstrip("\ufeff").splitlines()
        assert answer.mimetype == "text/csv"
        assert lines[0].startswith("device_id,seq") and len(lines) == 2
        assert "medfee_sumamt,hifp_pay,hifmi_pay,maf_pay" in lines[0]  # national names
        assert lines[1].startswith(hub.device_id)

    def test_the_fleet_shows_the_payers_of_each_device_s_last_daily_close(
        self, hub, make_enrolled_device
    ):
        device = make_enrolled_device("closing", clinic_code="ML-02", township="秣陵街道")
        fund = device.settle(NOW)["body"]["result"]["fund"]
        services.close_day(device.store, device.identity, operator="doc01", now=NOW)
        assert agent.sync_once(device.store, device.identity, device.data_dir, NOW)["ok"]
        client = signed_in(hub, "li")
        page = client.get("/console/").get_data(as_text=True)
        assert "最近日结" in page and "hifp_pay" in page and format_yuan(fund) in page
        page = client.get(f"/console/devices/{device.identity.device_id}").get_data(as_text=True)
        assert "统筹基金" in page and "家庭共济" in page and "acct_mulaid_pay" in page
        page = (
            in_english(client, "/console/")
            .get(f"/console/devices/{device.identity.device_id}")
            .get_data(as_text=True)
        )
        assert "basic fund" in page and "Last daily close" in page


class TestAdmin:
    def test_provisioning_shows_the_code_once_and_revoking_stops_the_device(self, hub, hub_dir):
        client = signed_in(hub, "admin")
        page = client.post(
            "/console/admin/devices",
            data={
                "csrf_token": csrf_of(client, "/console/admin/devices"),
                "action": "provision",
                "clinic_code": "JN-07",
                "township": "江宁街道",
            },
        ).get_data(as_text=True)
        code = re.search(r'class="code">([A-Z0-9-]+)<', page).group(1)
        assert len(code) == 9
        client.post(
            "/console/admin/devices",
            data={
                "csrf_token": csrf_of(client, "/console/admin/devices"),
                "action": "revoke",
                "target": hub.device_id,
                "reason": "丢失 lost",
            },
        )
        with hub_store(hub_dir) as store:
            assert store.slot_by_device(hub.device_id).revoked_at is not None
            assert store.slot_by_code_hash(county.code_hash(code)).clinic_code == "JN-07"

    def test_a_catalog_is_previewed_as_a_diff_then_signed_and_published(self, hub, hub_dir):
        client = signed_in(hub, "admin")
        csv_text = Path(edge_demo.__file__).with_name("catalog.csv").read_text(encoding="utf-8")
        lines = csv_text.splitlines()
        lines[1] = lines[1].replace(",6.80,", ",7.10,")  # a price change
        changed = "\n".join(lines[:-1]) + "\n"  # and the last item gone
        page = client.post(
            "/console/admin/publish/catalog",
            data={
                "csrf_token": csrf_of(client, "/console/admin/publish/catalog"),
                "step": "preview",
                "version": "2026.12.1",
                "expires": "2027-03-01",
                "file": (io.BytesIO(changed.encode()), "catalog.csv"),
            },
            content_type="multipart/form-data",
        ).get_data(as_text=True)
        assert "删除 1" in page and "变更 1" in page
        assert "price: 6.80 → 7.10" in page
        staged = re.search(r'name="token" value="([^"]+)"', page).group(1)
        done = client.post(
            "/console/admin/publish/catalog",
            data={
                "csrf_token": csrf_of(client, "/console/admin/publish/catalog"),
                "step": "publish",
                "token": staged,
                "version": "2026.12.1",
                "expires": "2027-03-01",
            },
        )
        assert done.status_code == 200 and "已签名发布" in done.get_data(as_text=True)
        with hub_store(hub_dir) as store:
            assert store.latest_publication("catalog").version == "2026.12.1"

    def test_a_policy_with_a_mismatched_version_is_refused_with_the_reason(self, hub):
        client = signed_in(hub, "admin")
        document = edge_demo.load_json("policy.json")
        import json

        page = client.post(
            "/console/admin/publish/policy",
            data={
                "csrf_token": csrf_of(client, "/console/admin/publish/policy"),
                "step": "preview",
                "version": "2027.1",
                "expires": "2027-03-01",
                "file": (io.BytesIO(json.dumps(document).encode()), "policy.json"),
            },
            content_type="multipart/form-data",
        )
        staged = re.search(r'name="token" value="([^"]+)"', page.get_data(as_text=True))
        answer = client.post(
            "/console/admin/publish/policy",
            data={
                "csrf_token": csrf_of(client, "/console/admin/publish/policy"),
                "step": "publish",
                "token": staged.group(1),
                "version": "2027.1",
                "expires": "2027-03-01",
            },
        )
        assert answer.status_code == 400
        assert f"says version {document['version']}, not 2027.1" in answer.get_data(as_text=True)

    def test_the_reconciliation_page_lists_differences_with_both_amounts(
        self, hub, hub_dir, make_enrolled_device
    ):
        for index in range(2):
            device = make_enrolled_device(
                f"clinic-{index}", clinic_code=f"ML-1{index}", township="秣陵街道"
            )
            device.settle(NOW, "32011500000501", [("XA10ACE168A001", "5")])
            agent.sync_once(device.store, device.identity, device.data_dir, NOW)
        with hub_store(hub_dir) as store:
            reconciliation.reconcile_pending(store, NOW)
        page = signed_in(hub, "li").get("/console/reconciliation").get_data(as_text=True)
        assert "SETTLEMENT_DIFFERS" in page and "hifp_pay: 0 → 6400" in page  # the fund
