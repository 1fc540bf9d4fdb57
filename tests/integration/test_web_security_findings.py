"""The terminal UI's low findings of the attacker's probe, each reproduced: a foreign
`Host` (DNS rebinding), sessions that outlived sign-out and a PIN reset, off-site or
broken `next` redirects, idle connections that froze the server, control bytes reaching
the printer, formula prefixes the CSV guard missed, and JSON bodies that gave a 500."""

import csv
import io
import json
import os
import socket
import threading
import time
from urllib.parse import urljoin, urlsplit

import pytest
from web_support import FakeClock, app_config, store_of

from drivers import escpos
from drivers.printer import PrinterEmulator
from edge.domain.spreadsheet import FORMULA_PREFIXES, safe_cell
from sync.hub.services import reports
from web_ui import accounts

pytest_plugins = ["web_fixtures"]  # the web UI fixtures

POOR_CARD = "A32011505"  # 陈志强
AMOXICILLIN = "XJ01CAA040A001"


def sql(app, statement: str, params=()) -> list:
    store = store_of(app)
    try:
        with store.write_transaction():
            return store.db.execute(statement, list(params)).fetchall()
    finally:
        store.close()


class TestTrustedHost:
    def test_a_foreign_host_gets_a_clear_400_in_chinese(self, client):
        answer = client.get("/signin", headers={"Host": "evil.example"})
        assert answer.status_code == 400 and "Set-Cookie" not in answer.headers
        assert "本终端只接受它自己的地址" in answer.get_data(as_text=True)
        assert "answers only under its own address" in answer.get_data(as_text=True)

    def test_signing_in_under_a_foreign_host_changes_nothing(self, client, app):
        """The rebinding page works under its own name: its cookies and form token too."""
        before = sql(app, "SELECT * FROM operator ORDER BY operator_id")
        evil = {"Host": "evil.example:8080"}
        page = client.get("/signin", headers=evil).get_data(as_text=True)
        assert 'name="csrf-token"' not in page
        answer = client.post("/signin", data={"operator": "doc01", "pin": "1111"}, headers=evil)
        assert answer.status_code == 400 and "本终端只接受" in answer.get_data(as_text=True)
        assert sql(app, "SELECT * FROM operator ORDER BY operator_id") == before
        assert client.get("/settle", headers=evil).status_code == 400

    def test_the_api_answers_a_foreign_host_in_json(self, doctor):
        answer = doctor.client.post(
            "/api/quote", json={}, headers={"Host": "evil.example", "X-CSRFToken": doctor.token}
        )
        assert answer.status_code == 400 and answer.json["error"]["code"] == "UNTRUSTED_HOST"

    @pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost", "[::1]:8080", "LOCALHOST"])
    def test_the_loopback_names_are_served(self, client, host):
        assert client.get("/signin", headers={"Host": host}).status_code == 200

    def test_a_configured_kiosk_host_is_served(self, web_dir):
        from web_ui.app import create_app

        app = create_app(app_config(web_dir, FakeClock(), KIOSK_HOSTS=["kiosk.clinic"]))
        client = app.test_client()
        assert client.get("/signin", headers={"Host": "kiosk.clinic:8080"}).status_code == 200
        assert client.get("/signin", headers={"Host": "evil.example"}).status_code == 400


class TestSessionsEnd:
    def test_a_copied_cookie_is_worthless_after_sign_out(self, doctor):
        copied = doctor.client.get_cookie("session").value
        assert doctor.client.get("/settle").status_code == 200
        doctor.sign_out()
        doctor.client.set_cookie("session", copied)
        answer = doctor.client.get("/settle")
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/signin")

    def test_a_pin_reset_by_an_admin_ends_the_operators_sessions(self, doctor, app):
        admin = app.test_client()
        from web_support import Auth

        admin_auth = Auth(admin)
        admin_auth.sign_in("admin01")
        assert doctor.client.get("/settle").status_code == 200
        answer = admin_auth.post("/admin/operators/doc01/pin", {"pin": "5678"})
        assert answer.status_code == 302
        assert doctor.client.get("/settle").status_code == 302
        assert admin.get("/admin").status_code == 200  # the admin's own session goes on
        doctor.sign_in("doc01", "5678")
        assert doctor.client.get("/settle").status_code == 200

    def test_a_pin_set_from_the_command_line_ends_the_sessions(self, doctor, app):
        store = store_of(app)
        try:
            accounts.set_pin(store, app.config["DATA_DIR"], "doc01", "2468", now=app.config[
                "CLOCK"](), by="cli", cost=4)  # fmt: skip
        finally:
            store.close()
        assert doctor.client.get("/settle").status_code == 302

    def test_an_admin_who_resets_their_own_pin_stays_signed_in_alone(self, app):
        from web_support import Auth

        first, second = Auth(app.test_client()), Auth(app.test_client())
        first.sign_in("admin01")
        second.sign_in("admin01")
        assert first.post("/admin/operators/admin01/pin", {"pin": "9753"}).status_code == 302
        assert first.client.get("/admin").status_code == 200
        assert second.client.get("/admin").status_code == 302

    def test_locking_the_screen_ends_the_session_too(self, doctor):
        copied = doctor.client.get_cookie("session").value
        doctor.client.post("/lock", data={"next": "/settle"})
        doctor.client.set_cookie("session", copied)
        assert doctor.client.get("/settle").status_code == 302


BAD_NEXT = [
    "/%09/evil.example/",
    "//evil.example/",
    "/%5Cevil.example/",
    "/\\evil.example/",
    "https://evil.example/",
    "/settle%0D%0ASet-Cookie:%20x=1",
    "/%0A/evil.example",
    "%20//evil.example",
    "/%E3%80%80/evil.example",  # an ideographic space
]


def stays_here(location: str) -> bool:
    target = urlsplit(urljoin("http://localhost/signin", location))
    return target.netloc == "localhost" and not any(c in location for c in "\t\r\n\\")


class TestSafeNext:
    @pytest.mark.parametrize("target", BAD_NEXT)
    def test_signing_in_never_leaves_the_site(self, auth, target):
        token = auth.token
        answer = auth.client.post(
            f"/signin?next={target}", data={"operator": "doc01", "pin": "1111", "csrf_token": token}
        )
        assert answer.status_code == 302
        assert answer.headers["Location"] == "/settle"

    @pytest.mark.parametrize("target", BAD_NEXT)
    def test_the_language_switch_never_leaves_the_site(self, auth, target):
        answer = auth.client.post(
            "/lang",
            data=f"lang=en&csrf_token={auth.token}&next={target}",
            content_type="application/x-www-form-urlencoded",
        )
        assert answer.status_code == 302 and stays_here(answer.headers["Location"])

    @pytest.mark.parametrize("target", BAD_NEXT)
    def test_locking_never_leads_off_the_site(self, doctor, target):
        answer = doctor.client.post(
            "/lock", data=f"next={target}", content_type="application/x-www-form-urlencoded"
        )
        assert answer.status_code == 302 and stays_here(answer.headers["Location"])
        signin = doctor.client.post(
            answer.headers["Location"],
            data={"operator": "doc01", "pin": "1111", "csrf_token": doctor.token},
        )
        assert signin.status_code == 302 and signin.headers["Location"] in ("/", "/settle")

    def test_a_local_next_is_still_followed(self, auth):
        token = auth.token
        answer = auth.client.post(
            "/signin?next=/records%3Fday%3D1",
            data={"operator": "doc01", "pin": "1111", "csrf_token": token},
        )
        assert answer.headers["Location"] == "/records?day=1"


class TestIdleConnections:
    def test_150_idle_connections_do_not_freeze_the_ui(self, app):
        from web_ui.cli import create_web_server

        server = create_web_server(app, "127.0.0.1", 0, 4)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        idle = []
        try:
            for _ in range(150):
                idle.append(socket.create_connection(("127.0.0.1", server.effective_port), 5))
            time.sleep(0.5)  # waitress has accepted them all by now
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", server.effective_port), 5) as sock:
                sock.sendall(
                    b"GET /signin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                sock.settimeout(5)
                first = sock.recv(64)
            assert first.startswith(b"HTTP/1.1 200")
            assert time.monotonic() - started < 3
        finally:
            for sock in idle:
                sock.close()
            server.close()
            server.task_dispatcher.shutdown()
            thread.join(5)


DRAWER_KICK = "\x1bp\x00\x19\xfa"  # ESC p 0 25 250
PAPER_CUT = "\x1dV\x00"  # GS V 0: full cut
NASTY = DRAWER_KICK + PAPER_CUT + "\x7f\x85\x9b\t\r"


class TestPrinterText:
    @pytest.fixture
    def printing_app(self, web_dir):
        """The terminal with its printer on a real pseudo-terminal, the emulator at the other
        end of the line, and control bytes in every name that reaches the paper."""
        from web_ui.app import create_app

        master, slave = os.openpty()
        emulator = PrinterEmulator(web_dir / "printed.bin").serve_fd(master)
        app = create_app(
            app_config(
                web_dir,
                FakeClock(),
                PRINTER=os.ttyname(slave),
                PRINT_RECEIPT_AFTER_SETTLE=False,
                CLINIC_NAME="测试村" + PAPER_CUT + "卫生室",
            )
        )
        sql(app, "UPDATE catalog_item SET name = name || ? WHERE code = ?", [NASTY, AMOXICILLIN])
        sql(app, "UPDATE person SET name = ? || name WHERE card_no = ?", [DRAWER_KICK, POOR_CARD])
        sql(app, "UPDATE operator SET name = name || ? WHERE operator_id = 'doc01'", [NASTY])
        app.emulator = emulator
        yield app
        emulator.stop()
        os.close(slave)
        os.close(master)

    def test_no_control_byte_of_a_name_reaches_the_printer(self, printing_app):
        from web_support import Auth

        doctor = Auth(printing_app.test_client())
        doctor.sign_in("doc01")
        doctor.post("/tester/insert", {"card": POOR_CARD})
        doctor.post("/settle/card")
        visit = {"visit_type": "general", "diagnoses": ["J06.900"],
                 "lines": [{"code": AMOXICILLIN, "quantity": "1"}]}  # fmt: skip
        settled = doctor.post_json("/api/settle", visit)
        assert settled.status_code == 200, settled.get_data(as_text=True)
        printed = doctor.post(f"/receipt/{settled.json['tx_id']}/print")
        assert printed.status_code == 302
        assert printing_app.emulator.wait_for_cuts(1, 5)
        data = printing_app.emulator.printed()
        commands = escpos.parse(data)
        names = [c.name for c in commands]
        assert "unknown" not in names
        assert names.count("cut") == 1 and names[-1] == "cut"  # only the driver's own cut
        assert b"\x1bp" not in data and b"\x1dV\x00" not in data
        for command in commands:
            if command.name == "text":
                assert not any(b < 0x20 or b == 0x7F for b in command.data)
        text = escpos.render_text(data)
        # the commands' printable argument bytes remain, as harmless text
        assert "测试村V卫生室" in text and "操作员 王医生púV" in text
        assert "阿莫西林胶囊púV" in text and "姓名 pú陈志强" in text


class TestCsvFormulaGuard:
    @pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
    def test_every_formula_prefix_is_neutralised(self, prefix):
        assert (
            safe_cell(prefix + 'HYPERLINK("http://evil")')
            == "'" + prefix + 'HYPERLINK("http://evil")'
        )

    def test_numbers_and_plain_text_stay_as_they_are(self):
        assert (
            safe_cell(-1200) == -1200
            and safe_cell("陈志强") == "陈志强"
            and safe_cell(None) is None
        )

    def test_the_hubs_csv_writer_guards_every_cell(self):
        values = [p + "1+1" for p in FORMULA_PREFIXES]
        columns = tuple(f"c{i}" for i in range(len(values)))
        text = reports._csv(columns, [dict(zip(columns, values, strict=True))])
        (row,) = list(csv.reader(io.StringIO(text)))[1:]
        assert row == ["'" + v for v in values]


class TestJsonBodies:
    def test_deeply_nested_json_to_the_quote_is_a_clear_400(self, doctor):
        body = "[" * 50_000 + "]" * 50_000
        answer = doctor.client.post(
            "/api/quote", data=body, content_type="application/json",
            headers={"X-CSRFToken": doctor.token},
        )  # fmt: skip
        assert answer.status_code == 400
        assert answer.json["error"]["code"] == "BAD_JSON"
        assert "嵌套层数过多" in answer.json["error"]["message"]

    @pytest.mark.parametrize("path", ["/api/quote", "/api/settle", "/api/draft", "/api/bundles"])
    def test_moderately_nested_json_is_refused_everywhere(self, doctor, path):
        nested: object = {"code": AMOXICILLIN}
        for _ in range(40):
            nested = {"lines": [nested]}
        answer = doctor.client.post(
            path, data=json.dumps(nested), content_type="application/json",
            headers={"X-CSRFToken": doctor.token},
        )  # fmt: skip
        assert answer.status_code == 400 and answer.json["error"]["code"] == "BAD_JSON"

    def test_an_oversized_body_is_a_clear_413(self, doctor):
        body = json.dumps({"lines": [{"code": "X" * 1000}] * 400})
        answer = doctor.client.post(
            "/api/quote", data=body, content_type="application/json",
            headers={"X-CSRFToken": doctor.token},
        )  # fmt: skip
        assert answer.status_code == 413
        assert answer.json["error"]["message"] == "请求内容过大。"

    def test_malformed_json_is_a_clear_400(self, doctor):
        answer = doctor.client.post(
            "/api/quote", data="{\"lines\": [", content_type="application/json",
            headers={"X-CSRFToken": doctor.token},
        )  # fmt: skip
        assert answer.status_code == 400 and answer.json["error"]["code"] == "BAD_JSON"
