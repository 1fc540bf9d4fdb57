"""The status page, the tester panel and administration: operators, backup, enrollment."""

import re
import sqlite3
import sys
from pathlib import Path

import pytest
from sync_helpers import hub_records, hub_store, start_hub
from web_support import Auth, store_of

import sync
from edge import demo
from sync.demo import DEMO_CLINIC, DEMO_COUNTY, DEMO_TOWNSHIP
from sync.hub.services import county

pytest_plugins = ["web_fixtures"]  # the web UI fixtures


@pytest.fixture
def admin(auth) -> Auth:
    auth.sign_in("admin01")
    return auth


@pytest.fixture
def no_sync_agent(monkeypatch):
    """A build without `sync.agent`: importing it fails."""
    monkeypatch.delattr(sync, "agent", raising=False)
    monkeypatch.setitem(sys.modules, "sync.agent", None)


@pytest.fixture
def hub(tmp_path, clock):
    """The demo county's hub on a loopback port, on the web UI's clock."""
    running = start_hub(tmp_path / "hub", clock)
    yield running
    running.stop()


def enrollment_code(hub_dir: Path, clock) -> str:
    """A slot provisioned at the hub for the demo clinic, and its one-time code."""
    with hub_store(hub_dir) as store:
        return county.provision(
            store, clinic_code=DEMO_CLINIC, township=DEMO_TOWNSHIP, now=clock()
        ).code


def device_id(auth: Auth) -> str:
    store = store_of(auth.client.application)
    try:
        return store.device().device_id
    finally:
        store.close()


def flashed(auth: Auth, response) -> str:
    return auth.client.get(response.headers["Location"]).get_data(as_text=True)


class TestStatus:
    def test_the_status_page_shows_versions_waiting_records_and_the_ledger(self, auth):
        auth.sign_in("doc01")
        auth.post("/tester/insert", {"card": "A32011501"})
        auth.post("/settle/card")
        line = {"code": "XJ01CAA040A001", "quantity": "1"}
        auth.post_json("/api/settle", {"visit_type": "general", "lines": [line]})
        auth.sign_out()
        auth.sign_in("coord01")
        page = auth.client.get("/status").get_data(as_text=True)
        assert demo.DEMO_CATALOG_VERSION in page and demo.policy_document()["version"] in page
        assert '<dd id="waiting">1</dd>' in page
        assert "完整：已核验1条记录。" in page
        assert "就绪，已插卡" in page and "emulated://" in page  # card reader
        assert 'id="printer-state">就绪' in page

    def test_the_status_page_shows_the_software_and_a_rolled_back_release(
        self, auth, web_dir, clock
    ):
        from sync.agent.releases import running_version, write_state
        from sync.protocol import SyncError

        auth.sign_in("coord01")
        page = auth.client.get("/status").get_data(as_text=True)
        assert f'<dd id="software"><span class="mono">{running_version()}</span></dd>' in page
        write_state(web_dir, "0.9.0", "rolled_back", clock(), SyncError("RELEASE_UNHEALTHY"))
        page = auth.client.get("/status").get_data(as_text=True)
        assert "新版本 0.9.0：已退回原版本" in page
        assert "切换到新版本后终端没有正常响应" in page

    def test_the_status_page_warns_when_the_terminal_was_offline_too_long(self, auth, clock):
        clock.advance(hours=80)
        auth.sign_in("coord01")
        page = auth.client.get("/status").get_data(as_text=True)
        assert "本终端与县级平台未同步时间过长" in page

    def test_a_printer_that_does_not_answer_is_shown(self, web_dir, clock):
        from web_support import app_config

        from web_ui.app import create_app

        url = f"emulated://{web_dir / 'p.bin'}?status=silent"
        auth = Auth(create_app(app_config(web_dir, clock, PRINTER=url)).test_client())
        auth.sign_in("coord01")
        page = auth.client.get("/status").get_data(as_text=True)
        assert "打印机无响应（未开机或未连接）" in page

    def test_without_the_sync_agent_the_page_says_sync_is_not_available(self, auth, no_sync_agent):
        auth.sign_in("coord01")
        page = auth.client.get("/status").get_data(as_text=True)
        assert "同步不可用" in page and 'id="sync-now"' not in page
        response = auth.post("/status/sync")
        assert "同步不可用" in auth.client.get(response.headers["Location"]).get_data(as_text=True)

    def test_sync_now_uploads_to_the_hub_and_shows_its_answer(self, auth, hub, tmp_path, clock):
        auth.sign_in("admin01")
        code = enrollment_code(tmp_path / "hub", clock)
        auth.post("/admin/enroll", {"hub_url": hub.url, "code": code})
        auth.sign_out()
        auth.sign_in("doc01")
        auth.post("/tester/insert", {"card": "A32011501"})
        auth.post("/settle/card")
        line = {"code": "XJ01CAA040A001", "quantity": "1"}
        settled = auth.post_json("/api/settle", {"visit_type": "general", "lines": [line]}).json
        auth.sign_out()
        auth.sign_in("coord01")
        page = auth.client.get("/status").get_data(as_text=True)
        assert DEMO_COUNTY in page and DEMO_CLINIC in page and 'id="sync-now"' in page
        page = flashed(auth, auth.post("/status/sync"))
        assert "同步完成：" in page
        assert '<dd id="waiting">0</dd>' in page  # the outbox is empty: the hub has it all
        assert [r["tx_id"] for r in hub_records(tmp_path / "hub", device_id(auth))][-1] == (
            settled["tx_id"]
        )
        assert re.search(r'id="sync-status" class="ok">\s*在线', page)

    def test_the_real_agent_says_the_terminal_is_not_enrolled_yet(self, auth):
        auth.sign_in("coord01")
        page = auth.client.get("/status").get_data(as_text=True)
        assert "尚未向县级平台注册" in page
        response = auth.post("/status/sync")
        page = auth.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "同步失败：本终端尚未向县级平台注册" in page
        assert "[NOT_ENROLLED]" not in page  # plain words, no codes in brackets

    def test_a_doctor_cannot_run_sync(self, doctor):
        assert doctor.post("/status/sync").status_code == 403


class TestTesterPanel:
    def test_the_panel_lists_a_card_per_demo_person_and_the_broken_ones(self, doctor):
        page = doctor.client.get("/tester").get_data(as_text=True)
        for name in ("A32011501", "B32011552", "malformed-tlv", "expired", "pulled"):
            assert f'data-card="{name}"' in page

    def test_inserting_and_removing_a_card_drives_the_emulated_reader(self, doctor):
        doctor.post("/tester/insert", {"card": "A32011517"})
        assert "读卡器中：A32011517" in doctor.client.get("/tester").get_data(as_text=True)
        assert doctor.client.get("/api/card").json["present"] is True
        doctor.post("/tester/remove")
        assert "读卡器中没有卡。" in doctor.client.get("/tester").get_data(as_text=True)
        assert doctor.client.get("/api/card").json["present"] is False

    def test_an_unknown_card_name_is_explained(self, doctor):
        response = doctor.post("/tester/insert", {"card": "nosuch"})
        assert "没有这张演示卡" in doctor.client.get(response.headers["Location"]).get_data(
            as_text=True
        )

    def test_a_demo_e_voucher_is_made_and_shown_as_a_qr_code(self, doctor):
        response = doctor.post("/tester/voucher", {"insured_id": "32011500000001"})
        page = doctor.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "YBV1." in page and "/tester/voucher.svg?token=YBV1." in page
        token = page.split('id="voucher-token-text" rows="3">')[1].split("<")[0]
        svg = doctor.client.get(f"/tester/voucher.svg?token={token}")
        assert svg.mimetype == "image/svg+xml"
        doctor.post("/settle/voucher", {"token": token})
        assert "张建国" in doctor.client.get("/settle").get_data(as_text=True)


class TestOperators:
    def test_the_admin_page_shows_the_device_identity_and_operators(self, admin, app):
        store = store_of(app)
        try:
            device = store.device()
        finally:
            store.close()
        page = admin.client.get("/admin").get_data(as_text=True)
        assert device.device_id in page and device.public_key in page
        for operator_id in ("doc01", "coord01", "admin01", "test01"):
            assert f'data-operator="{operator_id}"' in page

    def test_an_added_operator_signs_in_with_the_pin_given(self, admin):
        form = {"operator_id": "doc02", "name": "赵医生", "role": "doctor", "pin": "246810"}
        response = admin.post("/admin/operators", form)
        assert "已添加操作员。" in admin.client.get(response.headers["Location"]).get_data(
            as_text=True
        )
        admin.sign_out()
        assert admin.sign_in("doc02", "246810").headers["Location"] == "/settle"

    @pytest.mark.parametrize(
        ("form", "message"),
        [
            ({"operator_id": "doc01", "name": "x", "role": "doctor", "pin": "1234"}, "已存在"),
            ({"operator_id": "a b", "name": "x", "role": "doctor", "pin": "1234"}, "操作员编号为"),
            (
                {"operator_id": "d9", "name": " ", "role": "doctor", "pin": "1234"},
                "请填写操作员姓名",
            ),
            ({"operator_id": "d9", "name": "x", "role": "boss", "pin": "1234"}, "请选择角色"),
            ({"operator_id": "d9", "name": "x", "role": "doctor", "pin": "12"}, "密码为4至8位数字"),
        ],
    )
    def test_a_bad_new_operator_is_refused_with_the_reason(self, admin, form, message):
        response = admin.post("/admin/operators", form)
        assert message in admin.client.get(response.headers["Location"]).get_data(as_text=True)

    def test_resetting_a_pin_replaces_the_old_one_and_lifts_a_lockout(self, admin, app):
        admin.sign_out()
        for _ in range(5):
            admin.sign_in("doc01", "0000")
        admin.sign_in("admin01")
        admin.post("/admin/operators/doc01/pin", {"pin": "8642"})
        admin.sign_out()
        assert admin.sign_in("doc01", "1111").status_code == 401
        assert admin.sign_in("doc01", "8642").headers["Location"] == "/settle"
        store = store_of(app)
        try:
            events = [r["body"]["event"] for r in store.records() if r["kind"] == "event"]
        finally:
            store.close()
        assert events == ["operator_locked_out", "operator_pin_set"]

    def test_a_disabled_operator_cannot_sign_in_and_can_be_enabled_again(self, admin):
        admin.post("/admin/operators/doc01/active", {"active": "0"})
        admin.sign_out()
        assert "请选择本终端的操作员" in admin.sign_in("doc01").get_data(as_text=True)
        admin.sign_in("admin01")
        admin.post("/admin/operators/doc01/active", {"active": "1"})
        admin.sign_out()
        assert admin.sign_in("doc01").status_code == 302

    def test_an_admin_cannot_disable_themself(self, admin):
        response = admin.post("/admin/operators/admin01/active", {"active": "0"})
        page = admin.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "不能停用自己的账号。" in page

    def test_resetting_the_pin_of_an_unknown_operator_is_refused(self, admin):
        response = admin.post("/admin/operators/nobody/pin", {"pin": "1234"})
        page = admin.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "请选择本终端的操作员" in page


class TestBackupAndEnrollment:
    def test_backup_now_writes_a_consistent_copy_into_backups(self, admin, web_dir):
        response = admin.post("/admin/backup")
        page = admin.client.get(response.headers["Location"]).get_data(as_text=True)
        (backup,) = (web_dir / "backups").glob("clinic-*.db")
        assert backup.name == "clinic-20261122-093000.db" and backup.name in page
        assert oct(backup.stat().st_mode & 0o777) == "0o600"
        with sqlite3.connect(backup) as copy:
            assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            persons = len(demo.load_json("roster.json")["persons"])
            assert copy.execute("SELECT count(*) FROM person").fetchone()[0] == persons

    def test_enrollment_with_a_one_time_code_joins_the_county(self, admin, hub, tmp_path, clock):
        code = enrollment_code(tmp_path / "hub", clock)
        page = flashed(admin, admin.post("/admin/enroll", {"hub_url": hub.url, "code": code}))
        assert "已向县级平台注册：" in page and DEMO_COUNTY in page and DEMO_CLINIC in page
        with hub_store(tmp_path / "hub") as store:
            assert store.slot_by_device(device_id(admin)) is not None
        again = flashed(admin, admin.post("/admin/enroll", {"hub_url": hub.url, "code": code}))
        assert "注册失败：" in again  # the code was used up

    def test_a_refused_enrollment_is_shown_not_raised(self, admin, hub):
        page = flashed(admin, admin.post("/admin/enroll", {"hub_url": hub.url, "code": "BADCODE"}))
        assert "注册失败：" in page and "Traceback" not in page

    def test_enrollment_needs_an_address_and_a_code(self, admin, hub):
        page = flashed(admin, admin.post("/admin/enroll", {"hub_url": "ftp://x", "code": ""}))
        assert "请填写平台地址" in page
        assert "尚未向县级平台注册" in admin.client.get("/status").get_data(as_text=True)

    def test_without_the_sync_agent_enrollment_is_not_available(self, admin, no_sync_agent):
        page = admin.client.get("/admin").get_data(as_text=True)
        assert 'id="sync-unavailable"' in page
        response = admin.post("/admin/enroll", {"hub_url": "http://127.0.0.1:9/", "code": "X"})
        page = admin.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "同步不可用" in page
