"""The county console's sign-in, sessions and enrollment codes under attack: parallel
password guessing against a real HTTP hub stops at the lock-out, a copied session cookie
stops working at sign-out, demotion and a password change, enrollment codes cannot be
guessed at speed. On each hub store (`hub_backend`, tests/hub_fixtures.py)."""

import http.client
import json
import re
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sync_helpers import hub_store, signed_call

from edge.adapters.identity import DeviceIdentity, device_id_for
from sync import agent
from sync.agent.client import HubRefusal
from sync.hub import console_auth
from sync.hub.services import county, enrollment

PASSWORD = "correct horse 42"
WRONG_ZH = "用户名或密码不正确。"
LOCKED_ZH = "账户已锁定至"


@pytest.fixture
def hub(hub, hub_dir, hub_clock):
    """The shared hub (tests/hub_fixtures.py) with an admin and a coordinator."""
    with hub_store(hub_dir) as store:
        console_auth.add_user(store, "admin", PASSWORD, "admin", None, hub_clock())
        console_auth.add_user(store, "li", PASSWORD, "coordinator", "秣陵街道", hub_clock())
    return hub


# ---- signing in over HTTP ---------------------------------------------------------------


def http_sign_in(url: str, username: str, password: str) -> tuple[int, str]:
    """Sign in as a browser would, on its own connection: the form, then the POST."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        connection.request("GET", "/console/login")
        response = connection.getresponse()
        page = response.read().decode()
        cookie = response.getheader("Set-Cookie").split(";")[0]
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"username": username, "password": password, "csrf_token": csrf}
        )
        connection.request(
            "POST",
            "/console/login",
            body=form,
            headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
        )
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def outcome(status: int, page: str) -> str:
    if status == 302:
        return "signed in"
    if LOCKED_ZH in page:
        return "locked"
    assert WRONG_ZH in page, page
    return "wrong"


def test_parallel_waves_of_wrong_passwords_check_at_most_the_allowed_number(hub):
    outcomes = []
    with ThreadPoolExecutor(max_workers=16) as pool:
        for _wave in range(4):
            answers = pool.map(
                lambda i: http_sign_in(hub.url, "li", f"wrong password {i}"), range(16)
            )
            outcomes += [outcome(*answer) for answer in answers]
    assert outcomes.count("wrong") <= console_auth.MAX_FAILURES
    assert outcomes.count("locked") == len(outcomes) - outcomes.count("wrong")
    assert outcome(*http_sign_in(hub.url, "li", PASSWORD)) == "locked"


def test_the_lock_out_ends_and_the_right_password_then_signs_in(hub, hub_dir, hub_clock):
    for _ in range(console_auth.MAX_FAILURES):
        assert outcome(*http_sign_in(hub.url, "li", "wrong password")) == "wrong"
    assert outcome(*http_sign_in(hub.url, "li", PASSWORD)) == "locked"
    hub_clock.advance(seconds=console_auth.LOCKOUT.total_seconds() + 1)
    assert outcome(*http_sign_in(hub.url, "li", PASSWORD)) == "signed in"
    with hub_store(hub_dir) as store:
        user = store.console_user("li")
    assert (user.failures, user.locked_until) == (0, None)


def test_a_right_password_among_the_first_attempts_clears_the_count(hub, hub_dir):
    for _ in range(console_auth.MAX_FAILURES - 1):
        assert outcome(*http_sign_in(hub.url, "li", "wrong password")) == "wrong"
    assert outcome(*http_sign_in(hub.url, "li", PASSWORD)) == "signed in"
    for _ in range(console_auth.MAX_FAILURES - 1):
        assert outcome(*http_sign_in(hub.url, "li", "wrong password")) == "wrong"
    assert outcome(*http_sign_in(hub.url, "li", PASSWORD)) == "signed in"


# ---- sessions -----------------------------------------------------------------------------


def signed_in(hub, username: str, password: str = PASSWORD):
    client = hub.app.test_client()
    page = client.get("/console/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post(
        "/console/login", data={"username": username, "password": password, "csrf_token": csrf}
    )
    assert answer.status_code == 302
    return client


def stolen_copy(hub, client):
    """Another browser holding a copy of `client`'s session cookie."""
    thief = hub.app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    return thief


def may_see_the_fleet(client) -> bool:
    answer = client.get("/console/")
    assert answer.status_code in (200, 302)
    return answer.status_code == 200


def csrf_of(client) -> str:
    page = client.get("/console/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_signing_out_ends_every_copy_of_the_session(hub):
    client = signed_in(hub, "admin")
    elsewhere = signed_in(hub, "admin")
    thief = stolen_copy(hub, client)
    assert may_see_the_fleet(thief)
    answer = client.post("/console/logout", data={"csrf_token": csrf_of(client)})
    assert answer.status_code == 302
    assert not may_see_the_fleet(thief)
    assert not may_see_the_fleet(client)
    assert not may_see_the_fleet(elsewhere)  # signing out ends the user's every session
    assert may_see_the_fleet(signed_in(hub, "admin"))


def test_a_demotion_ends_the_users_sessions_at_once(hub, hub_dir, hub_clock):
    client = signed_in(hub, "admin")
    thief = stolen_copy(hub, client)
    assert client.get("/console/admin/devices").status_code == 200
    with hub_store(hub_dir) as store:
        console_auth.add_user(store, "admin", PASSWORD, "coordinator", "秣陵街道", hub_clock())
    assert not may_see_the_fleet(client)
    assert not may_see_the_fleet(thief)
    demoted = signed_in(hub, "admin")
    assert demoted.get("/console/admin/devices").status_code == 403


def test_a_password_change_ends_the_users_sessions_but_no_one_elses(hub, hub_dir, hub_clock):
    client = signed_in(hub, "li")
    other = signed_in(hub, "admin")
    thief = stolen_copy(hub, client)
    with hub_store(hub_dir) as store:
        console_auth.add_user(
            store, "li", "a new password 7", "coordinator", "秣陵街道", hub_clock()
        )
    assert not may_see_the_fleet(client) and not may_see_the_fleet(thief)
    assert may_see_the_fleet(other)
    assert may_see_the_fleet(signed_in(hub, "li", "a new password 7"))


def test_a_session_ends_when_idle_and_after_its_lifetime(hub, hub_clock):
    client = signed_in(hub, "admin")
    hub_clock.advance(seconds=console_auth.SESSION_IDLE.total_seconds() - 60)
    assert may_see_the_fleet(client)
    hub_clock.advance(seconds=console_auth.SESSION_IDLE.total_seconds() + 1)
    assert not may_see_the_fleet(client)

    client = signed_in(hub, "admin")  # in use all the time, it still ends with its lifetime
    step = console_auth.SESSION_IDLE - timedelta(minutes=1)
    used = timedelta(0)
    while used + step < console_auth.SESSION_LIFETIME:
        hub_clock.advance(seconds=step.total_seconds())
        used += step
        assert may_see_the_fleet(client)
    hub_clock.advance(seconds=step.total_seconds())
    assert not may_see_the_fleet(client)


def test_a_cookie_that_only_claims_a_user_signs_in_no_one(hub):
    """Before, the signed cookie carried the viewer itself: one signed under the hub's key
    (a leaked key, an old cookie) must not be taken at its word."""
    client = hub.app.test_client()
    client.get("/console/login")
    with client.session_transaction() as forged:
        forged["viewer"] = {"username": "admin", "role": "admin", "township": None}
        forged["sid"] = "made-up-session-id"
    assert not may_see_the_fleet(client)


def test_the_hub_keeps_only_a_hash_of_the_session_id(hub, hub_dir):
    client = signed_in(hub, "admin")
    with client.session_transaction() as cookie:
        session_id = cookie["sid"]
    with hub_store(hub_dir) as store:
        assert store.console_session(session_id) is None
        kept = store.console_session(console_auth.sha256_hex(session_id.encode()))
    assert kept is not None and kept.username == "admin"


# ---- enrollment codes ---------------------------------------------------------------------


def new_identity() -> DeviceIdentity:
    key = Ed25519PrivateKey.generate()
    return DeviceIdentity(device_id_for(key.public_key()), key)


def try_enroll(hub, clock, code: str, forwarded_for: str | None = None) -> tuple[int, dict]:
    identity = new_identity()
    document = {
        "code": code,
        "device_id": identity.device_id,
        "public_key": identity.public_key_b64,
    }
    body = json.dumps(document).encode()
    headers = {"Content-Type": "application/json"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    status, answer, _ = signed_call(
        hub.url, identity, "POST", "/enroll", body, clock(), nonce=uuid.uuid4().hex, headers=headers
    )
    return status, answer


def a_code(hub_dir, clock) -> str:
    with hub_store(hub_dir) as store:
        return county.provision(store, clinic_code="GL-09", township="谷里街道", now=clock()).code


def guesses(hub, clock, count: int, forwarded_for=lambda i: None) -> list[tuple[int, dict]]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(
            pool.map(
                lambda i: try_enroll(hub, clock, f"ZZZZ-{i:04d}", forwarded_for(i)), range(count)
            )
        )


def codes_of(answers) -> list[str]:
    return [answer["error"]["code"] for _status, answer in answers]


def enrollment_alarms(hub_dir) -> dict[str, tuple[str, str, int]]:
    with hub_store(hub_dir) as store:
        return {
            a.device_id: (a.code, a.detail, a.repeats)
            for a in store.alarms()
            if a.device_id.startswith(enrollment.ENROLLMENT_ALARM)
        }


def test_guessing_codes_at_speed_is_refused_after_the_budget(hub, hub_dir, hub_clock, make_device):
    code = a_code(hub_dir, hub_clock)
    # Without a trusted proxy, X-Forwarded-For is the client's own claim: ignored.
    answers = guesses(hub, hub_clock, 40, forwarded_for=lambda i: f"198.51.100.{i}")
    assert codes_of(answers).count("CODE_UNKNOWN") == enrollment.ENROLL_CLIENT_BUDGET
    throttled = [(s, a) for s, a in answers if a["error"]["code"] == "ENROLL_THROTTLED"]
    assert len(throttled) == 40 - enrollment.ENROLL_CLIENT_BUDGET
    status, answer = throttled[0]
    assert status == 429 and "登记尝试失败次数过多" in answer["error"]["message_zh"]
    assert "too many failed enrollment attempts" in answer["error"]["message"]

    code_, detail, repeats = enrollment_alarms(hub_dir)["enrollment:127.0.0.1"]
    assert code_ == "ENROLL_GUESSING" and "127.0.0.1" in detail
    assert repeats == 40 - enrollment.ENROLL_ALARM_AFTER + 1  # one per failure from the 5th

    # Even the right code waits for the window to end, and the terminal says why.
    assert try_enroll(hub, hub_clock, code)[0] == 429
    device = make_device("device")
    with pytest.raises(HubRefusal) as refused:
        agent.enroll(device.store, device.identity, device.data_dir, hub.url, code, hub_clock())
    assert refused.value.code == "ENROLL_THROTTLED" and "登记尝试失败次数过多" in str(refused.value)
    hub_clock.advance(seconds=enrollment.ENROLL_WINDOW.total_seconds())
    status, answer = try_enroll(hub, hub_clock, code)
    assert status == 200 and answer["clinic_code"] == "GL-09"


def test_a_few_mistakes_raise_no_alarm_and_a_success_gives_its_count_back(hub, hub_dir, hub_clock):
    for i in range(enrollment.ENROLL_ALARM_AFTER - 1):
        assert try_enroll(hub, hub_clock, f"ZZZZ-{i:04d}")[1]["error"]["code"] == "CODE_UNKNOWN"
    for _ in range(enrollment.ENROLL_CLIENT_BUDGET):  # a clinic enrolling many devices
        assert try_enroll(hub, hub_clock, a_code(hub_dir, hub_clock))[0] == 200
    assert enrollment_alarms(hub_dir) == {}


class TestBehindATrustedProxy:
    @pytest.fixture
    def hub_config(self) -> dict:
        return {"TRUST_PROXY": True}

    def test_a_valid_code_still_enrolls_from_another_client(self, hub, hub_dir, hub_clock):
        code = a_code(hub_dir, hub_clock)
        # The proxy appends the address it saw: what the client put before it is a claim.
        answers = guesses(hub, hub_clock, 20, forwarded_for=lambda i: f"10.9.9.{i}, 203.0.113.7")
        assert codes_of(answers).count("CODE_UNKNOWN") == enrollment.ENROLL_CLIENT_BUDGET
        assert try_enroll(hub, hub_clock, code, "203.0.113.7")[0] == 429
        assert "enrollment:203.0.113.7" in enrollment_alarms(hub_dir)
        status, answer = try_enroll(hub, hub_clock, code, "198.51.100.9")
        assert status == 200 and answer["clinic_code"] == "GL-09"

    def test_the_code_space_has_a_budget_of_all_clients_together(self, hub, hub_dir, hub_clock):
        code = a_code(hub_dir, hub_clock)
        per_client = enrollment.ENROLL_CLIENT_BUDGET
        clients = enrollment.ENROLL_GLOBAL_BUDGET // per_client + 2
        answers = guesses(
            hub, hub_clock, clients * per_client, forwarded_for=lambda i: f"10.0.{i % clients}.1"
        )
        assert codes_of(answers).count("CODE_UNKNOWN") == enrollment.ENROLL_GLOBAL_BUDGET
        assert try_enroll(hub, hub_clock, code, "198.51.100.9")[0] == 429
        code_, detail, _ = enrollment_alarms(hub_dir)["enrollment:*"]
        assert code_ == "ENROLL_THROTTLED" and "all clients" in detail
        hub_clock.advance(seconds=enrollment.ENROLL_WINDOW.total_seconds())
        assert try_enroll(hub, hub_clock, code, "198.51.100.9")[0] == 200


def test_old_windows_are_forgotten(hub, hub_dir, hub_clock):
    guesses(hub, hub_clock, 3)
    hub_clock.advance(seconds=3 * enrollment.ENROLL_WINDOW.total_seconds())
    guesses(hub, hub_clock, 1)
    with hub_store(hub_dir) as store:
        rows = store.conn.execute("SELECT scope, window_start FROM throttle").fetchall()
    assert len(rows) == 3 and len({window for _scope, window in rows}) == 1  # this window's


def test_the_admins_see_the_guessing_on_the_devices_page_and_clear_it(hub, hub_dir, hub_clock):
    guesses(hub, hub_clock, enrollment.ENROLL_ALARM_AFTER + 1)
    admin = signed_in(hub, "admin")
    page = admin.get("/console/admin/devices").get_data(as_text=True)
    assert "登记失败的尝试" in page and "127.0.0.1" in page and "可能有人在猜登记码" in page
    (alarm,) = [a for a in hub_store_alarms(hub_dir) if a.device_id == "enrollment:127.0.0.1"]
    answer = admin.post(
        f"/console/admin/alarms/{alarm.alarm_id}/clear",
        data={"csrf_token": csrf_of(admin), "back": "/console/admin/devices"},
    )
    assert answer.headers["Location"].endswith("/console/admin/devices")
    assert enrollment_alarms(hub_dir) == {}
    assert "登记失败的尝试" not in admin.get("/console/admin/devices").get_data(as_text=True)


def hub_store_alarms(hub_dir):
    with hub_store(hub_dir) as store:
        return store.alarms()
