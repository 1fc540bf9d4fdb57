"""Signing in to the terminal UI: PINs, lockout, roles, sessions, CSRF, security headers."""

import re
from datetime import timedelta

import pytest
from password_fixtures import legacy_hash
from web_support import NOW, PINS, store_of

from edge import services
from edge.adapters.sqlite_store import SqliteDeviceStore

pytest_plugins = ["web_fixtures"]  # the web UI fixtures

GET_PAGES = ["/settle", "/records", "/close", "/status", "/tester", "/admin"]
LOCKOUT = timedelta(minutes=15)


class TestSignIn:
    def test_the_sign_in_page_lists_the_active_operators_in_chinese(self, client):
        page = client.get("/signin").get_data(as_text=True)
        assert "请选择操作员" in page and "登录" in page
        for name in ("王医生", "李协管员", "县医保管理员", "测试员"):
            assert name in page

    def test_a_doctor_with_the_right_pin_lands_on_the_settle_page(self, auth):
        response = auth.sign_in("doc01")
        assert response.status_code == 302 and response.headers["Location"] == "/settle"
        page = auth.client.get("/settle").get_data(as_text=True)
        assert "王医生" in page and "门诊结算" in page

    @pytest.mark.parametrize(
        ("operator", "home"),
        [("coord01", "/status"), ("admin01", "/admin"), ("test01", "/settle")],
    )
    def test_each_role_lands_on_its_own_page(self, auth, operator, home):
        assert auth.sign_in(operator).headers["Location"] == home

    def test_a_wrong_pin_is_refused_and_says_how_many_tries_are_left(self, auth):
        response = auth.sign_in("doc01", "9999")
        assert response.status_code == 401
        assert "密码错误。再错4次将被锁定。" in response.get_data(as_text=True)
        assert auth.client.get("/settle").status_code == 302

    def test_a_pin_is_stored_as_a_salted_scrypt_hash(self, app):
        store = store_of(app)
        try:
            hashes = dict(store.db.execute("SELECT operator_id, pin_hash FROM operator"))
        finally:
            store.close()
        assert all(h.startswith("$scrypt$ln=4,r=8,p=1$") for h in hashes.values())
        assert all(PINS[o] not in h.split("$", 3)[-1] for o, h in hashes.items())
        salts = {h.split("$")[3] for h in hashes.values()}
        assert len(salts) == len(hashes)

    def test_a_pin_hashed_in_the_older_format_signs_in_and_is_hashed_again(self, app, auth):
        from web_ui import accounts

        older = legacy_hash("1111", "web_ui.accounts.hash_pin(cost=4)")  # doc01's PIN
        store = store_of(app)
        try:
            with store.write_transaction():
                store.db.execute(
                    "UPDATE operator SET pin_hash = ? WHERE operator_id = 'doc01'", [older]
                )
            assert auth.sign_in("doc01").headers["Location"] == "/settle"
            (stored,) = store.db.execute(
                "SELECT pin_hash FROM operator WHERE operator_id = 'doc01'"
            ).fetchone()
        finally:
            store.close()
        assert stored.startswith("$scrypt$ln=4,r=8,p=1$")
        assert accounts.pin_matches("1111", stored)

    def test_five_wrong_pins_lock_the_operator_and_sign_the_lockout(self, auth, app, clock):
        for _ in range(4):
            auth.sign_in("doc01", "0000")
        response = auth.sign_in("doc01", "0000")
        assert "密码错误次数过多：该操作员已锁定至 09:45。" in response.get_data(as_text=True)
        store = store_of(app)
        try:
            events = [r for r in store.records() if r["kind"] == "event"]
            assert services.verify_ledger(store).ok
        finally:
            store.close()
        assert events[-1]["body"] == {
            "event": "operator_locked_out",
            "operator": "doc01",
            "failures": 5,
            "locked_until": "2026-11-22T09:45:00+08:00",
        }

    def test_a_locked_operator_cannot_sign_in_until_the_lockout_ends(self, auth, clock):
        for _ in range(5):
            auth.sign_in("doc01", "0000")
        refused = auth.sign_in("doc01")
        assert refused.status_code == 401 and "已锁定" in refused.get_data(as_text=True)
        clock.advance(minutes=16)
        assert auth.sign_in("doc01").headers["Location"] == "/settle"

    def test_a_right_pin_resets_the_count_of_wrong_ones(self, auth):
        for _ in range(4):
            auth.sign_in("doc01", "0000")
        auth.sign_in("doc01")
        auth.sign_out()
        assert "再错4次" in auth.sign_in("doc01", "0000").get_data(as_text=True)

    def test_an_operator_without_a_pin_is_told_to_ask_the_administrator(self, auth, app):
        store = store_of(app)
        try:
            store.add_operator("doc02", "赵医生", "doctor")
        finally:
            store.close()
        page = auth.sign_in("doc02", "1234").get_data(as_text=True)
        assert "此操作员尚未设置密码" in page

    def test_signing_out_ends_the_session(self, doctor):
        assert doctor.sign_out().headers["Location"] == "/signin"
        assert doctor.client.get("/settle").status_code == 302

    def test_a_next_address_outside_the_terminal_is_ignored(self, auth):
        token = auth.token
        response = auth.client.post(
            "/signin?next=//evil.example/",
            data={"operator": "doc01", "pin": "1111", "csrf_token": token},
        )
        assert response.headers["Location"] == "/settle"


class TestSessions:
    def test_an_idle_session_times_out_and_says_so(self, doctor, clock):
        clock.advance(minutes=16)
        response = doctor.client.get("/settle")
        assert response.status_code == 302 and response.headers["Location"].startswith("/signin")
        page = doctor.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "已15分钟未操作，屏幕已锁定。王医生，请输入密码回到刚才的页面" in page

    def test_activity_keeps_the_session_alive(self, doctor, clock):
        for _ in range(3):
            clock.advance(minutes=10)
            assert doctor.client.get("/records").status_code == 200

    def test_requests_that_change_nothing_send_no_session_back(self, doctor, clock):
        """An overlapping response carrying the session as it first saw it would undo a
        flash or a chosen patient written by another request meanwhile."""
        clock.advance(minutes=5)
        for path in ("/static/css/app.css", "/api/card"):
            with doctor.client.get(path) as response:
                assert response.status_code == 200 and "Set-Cookie" not in response.headers
        assert "Set-Cookie" in doctor.client.get("/records").headers  # last_seen moved
        clock.advance(seconds=30)
        assert "Set-Cookie" not in doctor.client.get("/records").headers  # within a minute

    def test_card_polling_alone_does_not_keep_the_session_alive(self, doctor, clock):
        for _ in range(2):
            clock.advance(minutes=7)
            assert doctor.client.get("/api/card").status_code == 200
        clock.advance(minutes=2)
        assert doctor.client.get("/api/card").status_code == 401

    def test_a_disabled_operator_is_signed_out_at_the_next_request(self, doctor, app):
        store = store_of(app)
        try:
            store.db.execute("UPDATE operator SET active = 0 WHERE operator_id = 'doc01'")
        finally:
            store.close()
        assert doctor.client.get("/settle").status_code == 302


class TestRoles:
    @pytest.mark.parametrize("path", GET_PAGES)
    def test_every_page_needs_signing_in(self, client, path):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/signin?next=")

    @pytest.mark.parametrize("path", ["/api/card", "/api/catalog?q=amxl", "/api/diagnoses?q=J"])
    def test_the_json_endpoints_answer_401_when_signed_out(self, client, path):
        response = client.get(path)
        assert response.status_code == 401 and response.json["error"]["code"] == "SIGNED_OUT"

    @pytest.mark.parametrize(
        ("operator", "allowed", "refused"),
        [
            ("doc01", ["/settle", "/records", "/close", "/tester"], ["/status", "/admin"]),
            ("coord01", ["/status", "/records", "/tester"], ["/settle", "/close", "/admin"]),
            ("admin01", ["/admin", "/status", "/tester"], ["/settle", "/records", "/close"]),
            ("test01", ["/settle", "/records", "/close", "/status", "/tester"], ["/admin"]),
        ],
    )
    def test_each_role_opens_only_its_pages(self, auth, operator, allowed, refused):
        auth.sign_in(operator)
        for path in allowed:
            assert auth.client.get(path).status_code == 200, path
        for path in refused:
            assert auth.client.get(path).status_code == 403, path

    def test_a_doctor_opening_an_admin_page_is_told_in_plain_chinese(self, doctor):
        response = doctor.client.get("/admin")
        page = response.get_data(as_text=True)
        assert response.status_code == 403
        assert "您的角色无权打开此页面。" in page and "Traceback" not in page

    def test_a_doctor_cannot_post_to_admin_actions(self, doctor):
        assert doctor.post("/admin/backup").status_code == 403
        assert doctor.post("/admin/operators/doc01/active", {"active": "0"}).status_code == 403

    def test_outside_demo_mode_only_testers_open_the_tester_panel(self, web_dir, clock):
        from web_support import Auth, app_config

        from web_ui.app import create_app

        app = create_app(app_config(web_dir, clock, DEMO=False, CARD_READER="emulated://"))
        auth = Auth(app.test_client())
        auth.sign_in("doc01")
        assert auth.client.get("/tester").status_code == 403
        auth.sign_out()
        auth.sign_in("test01")
        assert auth.client.get("/tester").status_code == 200


class TestCsrfAndHeaders:
    def test_a_form_without_its_csrf_token_is_refused(self, client):
        response = client.post("/signin", data={"operator": "doc01", "pin": "1111"})
        assert response.status_code == 400
        assert "表单已过期或不是本终端提交的" in response.get_data(as_text=True)

    def test_a_json_write_without_its_csrf_header_is_refused(self, doctor):
        response = doctor.client.post("/api/quote", json={"visit_type": "general", "lines": []})
        assert response.status_code == 400 and response.json["error"]["code"] == "CSRF"

    def test_a_csrf_token_of_another_session_is_refused(self, doctor, app):
        other = app.test_client()
        from web_support import csrf_token

        foreign = csrf_token(other)
        response = doctor.client.post("/settle/clear", data={"csrf_token": foreign})
        assert response.status_code == 400

    def test_every_form_in_every_page_carries_a_csrf_token(self, auth):
        for operator, pages in [
            ("test01", ["/settle", "/records", "/close", "/status", "/tester"]),
            ("admin01", ["/admin"]),
        ]:
            auth.sign_in(operator)
            for path in pages:
                page = auth.client.get(path).get_data(as_text=True)
                for form in re.findall(r"<form[^>]*>.*?</form>", page, re.S):
                    if 'method="get"' in form:
                        continue
                    assert 'name="csrf_token"' in form, (path, form[:120])
            auth.sign_out()

    @pytest.mark.parametrize("path", ["/signin", "/settle", "/static/css/app.css"])
    def test_responses_carry_security_headers_and_a_strict_csp(self, doctor, path):
        response = doctor.client.get(path)
        response.close()
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "http" not in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"

    def test_pages_with_personal_data_are_not_cached(self, doctor):
        assert doctor.client.get("/settle").headers["Cache-Control"] == "no-store"

    def test_the_session_cookie_is_http_only_and_same_site_strict(self, auth):
        response = auth.sign_in("doc01")
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


class TestSignInRaces:
    """Two sign-ins of one operator at once (two tabs, or a guesser and the doctor): the
    lock set by one is honoured by the other, which read the operator before it existed.
    The other sign-in is interleaved inside the PIN check, where a real hash takes time."""

    @pytest.fixture
    def stores(self, web_dir):
        first, second = SqliteDeviceStore.open(web_dir), SqliteDeviceStore.open(web_dir)
        yield first, second
        first.close()
        second.close()

    def lock_out_during_the_pin_check(self, monkeypatch, web_dir, other_store):
        from web_ui import accounts

        real_check = accounts.pin_matches

        def pin_matches_while_a_guesser_locks_the_operator(pin, stored):
            monkeypatch.setattr(accounts, "pin_matches", real_check)  # the guesser's checks
            for _ in range(accounts.MAX_FAILURES):
                guess = accounts.sign_in(
                    other_store, web_dir, "doc01", "0000", now=NOW, lockout=LOCKOUT
                )
            assert guess.error == "LOCKED_OUT"
            return real_check(pin, stored)

        monkeypatch.setattr(accounts, "pin_matches", pin_matches_while_a_guesser_locks_the_operator)

    def test_the_right_pin_checked_while_the_operator_was_locked_does_not_unlock(
        self, monkeypatch, web_dir, stores
    ):
        from web_ui import accounts

        store, other = stores
        self.lock_out_during_the_pin_check(monkeypatch, web_dir, other)
        result = accounts.sign_in(store, web_dir, "doc01", PINS["doc01"], now=NOW, lockout=LOCKOUT)
        assert result.error == "LOCKED_OUT" and result.operator is None
        assert accounts.get_operator(store, "doc01").locked_at(NOW)

    def test_a_wrong_pin_checked_while_the_operator_was_locked_counts_nothing(
        self, monkeypatch, web_dir, stores
    ):
        from web_ui import accounts

        store, other = stores
        self.lock_out_during_the_pin_check(monkeypatch, web_dir, other)
        result = accounts.sign_in(store, web_dir, "doc01", "0000", now=NOW, lockout=LOCKOUT)
        assert result.error == "LOCKED_OUT"
        operator = accounts.get_operator(store, "doc01")
        assert operator.failed_attempts == 0 and operator.locked_at(NOW)
        lockouts = [r for r in store.records() if r["body"].get("event") == "operator_locked_out"]
        assert len(lockouts) == 1  # the guesser's; the late wrong PIN signs no second one
