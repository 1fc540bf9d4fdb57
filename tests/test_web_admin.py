"""The status page, the tester panel and administration: operators, backup, enrollment."""

import sqlite3
import sys
import types

import pytest
from web_support import NOW, Auth, store_of

import sync

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


class FakeAgent(types.ModuleType):
    """`sync.agent`'s interface, answering what a hub would, and remembering the calls."""

    def __init__(self) -> None:
        super().__init__("sync.agent")
        self.calls: list[tuple] = []

    def enroll(self, store, identity, data_dir, hub_url, code, now):
        self.calls.append(("enroll", hub_url, code, identity.device_id, now))
        if code == "BADCODE":
            raise RuntimeError("the hub refused the code")
        return {"hub": hub_url, "county": "DEMO"}

    def sync_once(self, store, identity, data_dir, now, hub_url=None):
        self.calls.append(("sync_once", identity.device_id, now))
        return {"uploaded": 3, "acknowledged_seq": 3}

    def sync_status(self, store, now=None):
        return {"enrolled": True, "hub_url": "http://127.0.0.1:9/", "county_name": "演示县",
                "clinic_code": "C001", "last_success_at": "2026-11-22T09:00:00+08:00",
                "last_attempt_at": "2026-11-22T09:00:00+08:00", "last_error": None,
                "installed": {"catalog": {"expired": True}}, "refused_updates": []}  # fmt: skip

    def start_scheduler(self, data_dir):
        return None


@pytest.fixture
def agent(monkeypatch) -> FakeAgent:
    fake = FakeAgent()
    monkeypatch.setattr(sync, "agent", fake, raising=False)
    monkeypatch.setitem(sys.modules, "sync.agent", fake)
    return fake


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
        assert "2026.11.1" in page and "2026.1" in page  # catalog, roster / policy
        assert '<dd id="waiting">1</dd>' in page
        assert "完整：已核验1条记录。" in page
        assert "就绪，已插卡" in page and "emulated://" in page  # card reader
        assert 'id="printer-state">就绪' in page

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

    def test_sync_now_runs_the_agent_once_and_shows_its_answer(self, auth, agent):
        auth.sign_in("coord01")
        page = auth.client.get("/status").get_data(as_text=True)
        assert "在线" in page and "演示县 C001" in page and 'id="sync-now"' in page
        assert "目录已过期" in page
        response = auth.post("/status/sync")
        page = auth.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "同步完成：uploaded: 3, acknowledged_seq: 3" in page
        assert agent.calls[0][0] == "sync_once" and agent.calls[0][2] == NOW

    def test_the_real_agent_says_the_terminal_is_not_enrolled_yet(self, auth):
        auth.sign_in("coord01")
        page = auth.client.get("/status").get_data(as_text=True)
        assert "尚未向县级平台注册" in page
        response = auth.post("/status/sync")
        page = auth.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "同步失败：" in page and "[NOT_ENROLLED]" in page

    def test_a_doctor_cannot_run_sync(self, doctor, agent):
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
            ({"operator_id": "d9", "name": "x", "role": "doctor", "pin": "12"}, "PIN为4至8位数字"),
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
            assert copy.execute("SELECT count(*) FROM person").fetchone()[0] == 34

    def test_enrollment_hands_the_hub_and_code_to_the_sync_agent(self, admin, agent):
        response = admin.post("/admin/enroll", {"hub_url": "http://127.0.0.1:9/", "code": "X7K2"})
        page = admin.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "已向县级平台注册：hub: http://127.0.0.1:9/, county: DEMO" in page
        assert agent.calls[0][:3] == ("enroll", "http://127.0.0.1:9/", "X7K2")

    def test_a_refused_enrollment_is_shown_not_raised(self, admin, agent):
        response = admin.post(
            "/admin/enroll", {"hub_url": "http://127.0.0.1:9/", "code": "BADCODE"}
        )
        page = admin.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "注册失败：the hub refused the code" in page

    def test_enrollment_needs_an_address_and_a_code(self, admin, agent):
        response = admin.post("/admin/enroll", {"hub_url": "ftp://x", "code": ""})
        page = admin.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "请填写平台地址" in page and agent.calls == []

    def test_without_the_sync_agent_enrollment_is_not_available(self, admin, no_sync_agent):
        page = admin.client.get("/admin").get_data(as_text=True)
        assert 'id="sync-unavailable"' in page
        response = admin.post("/admin/enroll", {"hub_url": "http://127.0.0.1:9/", "code": "X"})
        page = admin.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "同步不可用" in page
