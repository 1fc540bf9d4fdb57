"""The status strip on every page, against a real hub on loopback: 在线 / 离线 · N笔待上传 ·
上次同步 HH:MM / 设备已停用, kept true by the agent's scheduled jobs (run here on the
test's hand-moved clock) without anyone pressing sync; a revoked device settles and
reverses no more; times in Chinese local form, errors in plain words."""

import re
from datetime import timedelta

import pytest
from hub_server import serve_in_background
from sync_helpers import NOW, OPERATOR, PERSONS, general_visit, hub_store, start_hub
from web_support import Auth

from edge import services
from edge.domain.model import Rejection
from sync import agent
from sync import demo as sync_demo
from sync.agent import state as agent_state
from sync.hub.services import county
from web_ui import status as web_status

pytest_plugins = ["web_fixtures"]  # the web UI fixtures

ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


class Hub:
    """The demo county's hub on a loopback port that a test can stop and start again."""

    def __init__(self, hub_dir, clock):
        self.hub_dir, self.clock = hub_dir, clock
        self.running = start_hub(hub_dir, clock)
        self.port = self.running.port
        self.url = self.running.url

    def stop(self):
        if self.running is not None:
            self.running.stop()
            self.running = None

    def start(self):
        self.running = serve_in_background(
            self.hub_dir, port=self.port, config={"CLOCK": self.clock}
        )


@pytest.fixture
def hub(tmp_path, clock):
    running = Hub(tmp_path / "hub", clock)
    yield running
    running.stop()


@pytest.fixture
def terminal(web_dir, hub, clock):
    """The web UI's device enrolled with the hub, and synced once."""
    store = store_of_dir(web_dir)
    identity = services.load_identity(store, web_dir)
    sync_demo.provision_and_enroll(
        store, identity, web_dir, hub_dir=hub.hub_dir, hub_url=hub.url, now=clock()
    )
    assert agent.sync_once(store, identity, web_dir, clock())["ok"]
    yield store, identity
    store.close()


def store_of_dir(data_dir):
    from edge.adapters.sqlite_store import SqliteDeviceStore

    return SqliteDeviceStore.open(data_dir)


def settle(store, identity, clock, n=0) -> dict:
    return services.settle_visit(
        store,
        identity,
        insured_id=PERSONS[n],
        visit=general_visit(clock()),
        operator=OPERATOR,
        now=clock(),
    ).record


def scheduled(web_dir, clock, *jobs):
    """The scheduler's next turn: the clock moves past any backoff, then each job runs."""
    clock.advance(seconds=31)
    return [agent.run_scheduled_job(web_dir, job, clock) for job in jobs]


def strip(auth: Auth) -> dict:
    answer = auth.client.get("/api/status-strip")
    assert answer.status_code == 200
    return answer.json


def page_strip(auth: Auth, path: str = "/settle") -> str:
    page = auth.client.get(path).get_data(as_text=True)
    match = re.search(r'<div id="status-strip".*?</div>', page, re.S)
    assert match, f"no status strip on {path}"
    return match.group(0)


class TestOnlineAndOffline:
    def test_a_synced_terminal_says_online_with_the_last_sync_time(self, doctor, terminal):
        state = strip(doctor)
        assert state["state"] == "online" and state["text"] == "在线 · 上次同步 09:30"
        html = page_strip(doctor)
        assert 'data-state="online"' in html and "在线" in html and "立即同步" in html

    def test_hub_stopped_says_offline_with_records_waiting_within_a_minute(
        self, doctor, terminal, hub, clock, web_dir
    ):
        store, identity = terminal
        hub.stop()
        clock.advance(minutes=5)
        settle(store, identity, clock)
        # Nobody presses anything: the next heartbeat (30 s) finds the hub gone.
        (heartbeat,) = scheduled(web_dir, clock, "heartbeat")
        assert heartbeat is not None and not heartbeat["ok"]
        state = strip(doctor)
        assert state["state"] == "offline"
        assert state["text"] == "离线 · 1笔待上传 · 上次同步 09:30"
        assert "连不上县级平台" in state["message"]
        for text in (state["text"], state["message"], page_strip(doctor)):
            assert "Errno" not in text and "[" not in text and not ISO_TIME.search(text)

    def test_hub_back_says_online_within_a_minute_and_uploads_by_itself(
        self, doctor, terminal, hub, clock, web_dir
    ):
        store, identity = terminal
        hub.stop()
        settle(store, identity, clock)
        # The hub stays down for five minutes: every job backs off, some for long.
        for _ in range(10):
            scheduled(web_dir, clock, "upload", "updates", "heartbeat")
        assert strip(doctor)["state"] == "offline"
        hub.start()
        (heartbeat,) = scheduled(web_dir, clock, "heartbeat")
        assert heartbeat is not None and heartbeat["ok"]
        assert strip(doctor)["state"] == "online"
        # The upload no longer waits out its backoff: its next turn sends the record.
        (upload,) = scheduled(web_dir, clock, "upload")
        assert upload is not None and upload["uploaded"] == 1
        state = strip(doctor)
        assert state["waiting"] == 0
        assert state["text"] == f"在线 · 上次同步 {clock().strftime('%H:%M')}"

    def test_without_a_recent_answer_the_terminal_is_not_called_online(
        self, doctor, terminal, clock
    ):
        clock.advance(minutes=3)  # the agent has not run since: nobody knows
        assert strip(doctor)["state"] == "offline"

    def test_an_old_sync_shows_its_date(self, doctor, terminal, clock, hub):
        hub.stop()
        clock.advance(days=2)
        synced = clock() - timedelta(days=2)
        year = f"{synced.year}年" if synced.year != clock().year else ""
        assert strip(doctor)["last_sync"] == f"{year}{synced.month}月{synced.day}日 09:30"


class TestInEnglish:
    def test_the_strip_speaks_the_operators_language(self, doctor, terminal, hub, clock, web_dir):
        doctor.post("/lang", {"lang": "en", "next": "/settle"})
        assert strip(doctor)["text"] == "Online · last sync 09:30"
        hub.stop()
        clock.advance(days=1)
        scheduled(web_dir, clock, "heartbeat")
        synced = NOW  # the terminal fixture's sync
        day = f"{synced:%b} {synced.day}" + (
            f", {synced.year}" if synced.year != clock().year else ""
        )
        assert strip(doctor)["text"] == f"Offline · last sync {day} 09:30"  # nothing waiting


class TestSyncNow:
    def test_a_doctor_may_sync_now_and_reads_one_plain_sentence(self, doctor, terminal, hub, clock):
        hub.stop()
        answer = doctor.post_json("/api/sync-now", {}).json
        assert not answer["ok"]
        assert answer["message"] == "连不上县级平台。可以照常离线结算，网络恢复后记录会自动上传。"
        assert answer["strip"]["state"] == "offline"
        hub.start()
        clock.advance(seconds=5)
        answer = doctor.post_json("/api/sync-now", {}).json
        assert answer["ok"] and answer["message"] == "同步完成。"
        assert answer["strip"]["state"] == "online"

    def test_an_impostor_at_the_hubs_address_is_no_hub(self, doctor, terminal, hub, clock):
        """Something answers at the hub's address, unsigned, acknowledging everything: the
        doctor reads that the hub cannot be reached, and the visit still waits."""
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Impostor(BaseHTTPRequestHandler):
            def _answer(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b'{"acked_seq": 1000000}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        store, identity = terminal
        settle(store, identity, clock)
        hub.stop()
        impostor = ThreadingHTTPServer(("127.0.0.1", hub.port), Impostor)
        threading.Thread(target=impostor.serve_forever, daemon=True).start()
        try:
            answer = doctor.post_json("/api/sync-now", {}).json
        finally:
            impostor.shutdown()
            impostor.server_close()
        assert not answer["ok"]
        assert answer["message"] == "连不上县级平台。可以照常离线结算，网络恢复后记录会自动上传。"
        assert answer["strip"]["state"] == "offline" and answer["strip"]["waiting"] >= 1
        assert store.device().unsynced_fund > 0

    def test_without_script_the_strip_form_flashes_and_returns(self, doctor, terminal, hub):
        hub.stop()
        response = doctor.post("/api/sync-now", {"next": "/records"})
        assert response.status_code == 302 and response.headers["Location"].endswith("/records")
        page = doctor.client.get("/records").get_data(as_text=True)
        assert page.count("连不上县级平台。") == 1

    def test_the_status_page_says_it_once_with_the_detail_for_the_coordinator(
        self, auth, terminal, hub
    ):
        hub.stop()
        auth.sign_in("coord01")
        response = auth.post("/status/sync")
        page = auth.client.get(response.headers["Location"]).get_data(as_text=True)
        assert page.count("同步失败：") == 1
        assert "Errno" not in page.split('id="sync-detail"')[0]  # only the detail line has it
        assert page.count('id="sync-detail"') == 1 and "HUB_UNREACHABLE" in page
        assert re.search(r'id="sync-status" class="warning">\s*离线', page)
        assert not ISO_TIME.search(page.split("<main")[1])


class TestRevoked:
    @pytest.fixture
    def revoked(self, terminal, hub, clock, web_dir):
        store, identity = terminal
        tx = settle(store, identity, clock)["tx_id"]
        with hub_store(hub.hub_dir) as hub_db:
            county.revoke(hub_db, identity.device_id, clock(), "lost")
        (heartbeat,) = scheduled(web_dir, clock, "heartbeat")
        assert heartbeat["errors"][0]["code"] == "DEVICE_REVOKED"
        return tx

    def test_the_strip_says_device_withdrawn(self, doctor, revoked):
        state = strip(doctor)
        assert state["state"] == "revoked" and state["label"] == "设备已停用"
        assert "结算和冲销都已停止" in state["message"] and not state["can_sync"]
        html = page_strip(doctor)
        assert "设备已停用" in html and 'class="status-strip danger"' in html

    def test_settling_is_refused_with_the_message_and_nothing_is_written(
        self, doctor, terminal, revoked, clock
    ):
        store, identity = terminal
        head = store.ledger_head().seq
        doctor.post("/tester/insert", {"card": "A32011501"})
        doctor.post("/settle/card")
        line = {"code": "XJ01CAA040A001", "quantity": "1"}
        answer = doctor.post_json("/api/settle", {"visit_type": "general", "lines": [line]})
        assert answer.status_code == 422
        (error,) = answer.json["errors"]
        assert error["code"] == "DEVICE_REVOKED"
        assert error["message"].startswith("设备已停用：县医保局已停用本终端，不能再结算或冲销")
        with pytest.raises(Rejection) as refused:
            settle(store, identity, clock, 1)
        assert refused.value.code == "DEVICE_REVOKED"
        assert store.ledger_head().seq == head

    def test_reversing_is_refused_too(self, doctor, terminal, revoked, clock):
        store, _ = terminal
        head = store.ledger_head().seq
        response = doctor.post(f"/records/{revoked}/reverse", {"reason": "录入错误"})
        page = doctor.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "设备已停用：县医保局已停用本终端" in page
        assert store.ledger_head().seq == head and store.reversal_of(revoked) is None

    def test_the_revocation_is_signed_once_and_survives_the_hub_going_away(
        self, doctor, terminal, revoked, hub, clock, web_dir
    ):
        store, _ = terminal
        scheduled(web_dir, clock, "upload", "heartbeat")
        events = [r["body"] for r in store.records() if r["kind"] == "event"]
        assert [e["event"] for e in events].count("device_revoked") == 1
        hub.stop()
        scheduled(web_dir, clock, "heartbeat")
        assert strip(doctor)["state"] == "revoked"  # unreachable does not mean reinstated


class TestStaleData:
    def test_expired_county_data_is_named_on_the_strip(self, doctor, terminal, clock):
        store, _ = terminal
        scheduled_at = clock()
        agent_state.save_installed(
            store,
            agent_state.Installed(
                kind="catalog",
                version=store.catalog_version(),
                update_format="full",
                expires_at=(scheduled_at + timedelta(minutes=1)).isoformat(),
                content_sha256="0" * 64,
                installed_at=scheduled_at.isoformat(),
            ),
        )
        assert strip(doctor)["stale"] == []
        clock.advance(minutes=1)  # the minute the catalog expires, the strip says so
        state = strip(doctor)
        assert state["stale"] == ["目录已过期：请同步，或向县医保局索取新版本。"]
        assert state["level"] == "warning"
        assert "目录已过期" in page_strip(doctor)

    def test_an_expired_alias_list_does_not_make_the_terminal_stale(self, doctor, terminal, clock):
        """Search only knows fewer nicknames: nothing the doctor must act on, and settling
        goes on; the status page names it for the coordinator."""
        store, _ = terminal
        scheduled_at = clock()
        agent_state.save_installed(
            store,
            agent_state.Installed(
                kind="aliases",
                version=store.alias_version(),
                update_format="full",
                expires_at=(scheduled_at + timedelta(minutes=1)).isoformat(),
                content_sha256="0" * 64,
                installed_at=scheduled_at.isoformat(),
            ),
        )
        clock.advance(minutes=2)
        before = strip(doctor)
        assert before["stale"] == [] and "搜索别名" not in page_strip(doctor)
        doctor.sign_out()
        doctor.sign_in("coord01")
        page = doctor.client.get("/status").get_data(as_text=True)
        assert "aliases" not in page
        assert re.search(r"<th>搜索别名</th><td class=\"mono\">", page)
        assert "搜索别名已过期" in page


class TestLocalTime:
    @pytest.mark.parametrize(
        ("stamp", "expected"),
        [
            ("2026-11-22T14:05:09+08:00", "14:05"),
            ("2026-11-22T06:05:09+00:00", "14:05"),
            ("2026-11-21T23:59:00+08:00", "11月21日 23:59"),
            ("2025-12-31T08:00:00+08:00", "2025年12月31日 08:00"),
        ],
    )
    def test_times_are_chinese_local_times(self, app, stamp, expected):
        from datetime import datetime

        moment = datetime.fromisoformat("2026-11-22T20:00:00+08:00")
        with app.test_request_context("/"):
            assert web_status.local_time(stamp, moment) == expected


class TestStatusPage:
    def test_offline_is_said_once_by_the_strip_with_the_detail_for_the_technician(
        self, auth, terminal, hub, clock, web_dir
    ):
        hub.stop()
        scheduled(web_dir, clock, "heartbeat")
        auth.sign_in("coord01")
        page = auth.client.get("/status").get_data(as_text=True)
        assert page.count("连不上县级平台") == 1  # the strip; the page adds only the detail
        assert 'id="sync-error"' not in page
        detail = re.search(r'id="sync-detail">(.*?)</p>', page, re.S).group(1)
        assert "HUB_UNREACHABLE" in detail
        assert not ISO_TIME.search(page.split("<main")[1])

    def test_a_revoked_device_is_named_on_the_status_page(
        self, auth, terminal, hub, clock, web_dir
    ):
        _, identity = terminal
        with hub_store(hub.hub_dir) as hub_db:
            county.revoke(hub_db, identity.device_id, clock(), "lost")
        scheduled(web_dir, clock, "heartbeat")
        auth.sign_in("coord01")
        page = auth.client.get("/status").get_data(as_text=True)
        assert re.search(r'id="sync-status" class="warning">\s*设备已停用', page)
        assert page.count("县医保局已停用本终端") == 1  # the strip says why, once
        assert "DEVICE_REVOKED" in page  # the detail for the technician
