"""Helpers for the web UI tests: a demo device, an app on it, signing in, CSRF tokens,
a mutable clock, and the app served by a real server (waitress) on a loopback port."""

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from clock import NOW, FakeClock

from edge import demo, services
from edge.adapters.sqlite_store import SqliteDeviceStore

PINS = {"doc01": "1111", "coord01": "2222", "admin01": "3333", "test01": "4444"}
FAST_PIN_COST = 4  # log2 of scrypt's N: fast tests; production uses 14

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def make_demo_device(data_dir: Path) -> None:
    """A data directory with the demo county installed and a device identity."""
    store = SqliteDeviceStore.open(data_dir, create=True)
    try:
        list(demo.install(store, NOW))
        services.init_device(store, data_dir, NOW - timedelta(hours=1))
    finally:
        store.close()


def app_config(data_dir: Path, clock: FakeClock, **extra) -> dict:
    return {
        "DATA_DIR": data_dir,
        "DEMO": True,
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "CLOCK": clock,
        "PIN_HASH_COST": FAST_PIN_COST,
        "CARD_WAIT_SECONDS": 0.05,
        "CLINIC_NAME": "测试村卫生室",
        **extra,
    }


def csrf_token(client, path: str = "/signin") -> str:
    """The CSRF token from any page's <meta name="csrf-token">."""
    page = client.get(path).get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


class Auth:
    """Signs the test client in and out, and posts forms and JSON with the CSRF token."""

    def __init__(self, client) -> None:
        self.client = client
        self._token: str | None = None

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = csrf_token(self.client)
        return self._token

    def sign_in(self, operator: str = "doc01", pin: str | None = None):
        self._token = None
        response = self.client.post(
            "/signin",
            data={"operator": operator, "pin": pin or PINS[operator], "csrf_token": self.token},
        )
        self._token = None  # a new session: a new token
        return response

    def sign_out(self):
        response = self.post("/signout")
        self._token = None
        return response

    def post(self, path: str, data: dict | None = None, **kwargs):
        return self.client.post(path, data={**(data or {}), "csrf_token": self.token}, **kwargs)

    def post_json(self, path: str, body: dict):
        return self.client.post(path, json=body, headers={"X-CSRFToken": self.token})


@contextmanager
def served(app) -> Iterator[str]:
    """The app behind waitress on 127.0.0.1 and a free port, in a thread; yields its URL."""
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4, ident="clinic-test")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        server.task_dispatcher.shutdown()
        thread.join(5)


def store_of(app) -> SqliteDeviceStore:
    return SqliteDeviceStore.open(app.config["DATA_DIR"])


@contextmanager
def enrolled_terminal(tmp_path: Path, clock, **config) -> Iterator[dict]:
    """A demo terminal enrolled with a real county hub on loopback, its sync agent running
    every half second and its UI served with `config`: the terminal's `url`, `app`,
    `clock`, `data_dir`, `hub_dir`, `hub_url`, and `stop_hub`/`start_hub` (the same port
    and data)."""
    from hub_server import serve_in_background
    from sync_helpers import start_hub

    from sync import agent
    from sync import demo as sync_demo
    from web_ui.app import create_app

    hub_dir, data_dir = tmp_path / "hub", tmp_path / "device"
    hub = {"running": start_hub(hub_dir, clock)}
    port = hub["running"].port
    make_demo_device(data_dir)
    store = SqliteDeviceStore.open(data_dir)
    try:
        sync_demo.provision_and_enroll(
            store,
            services.load_identity(store, data_dir),
            data_dir,
            hub_dir=hub_dir,
            hub_url=hub["running"].url,
            now=clock(),
        )
    finally:
        store.close()
    app = create_app(app_config(data_dir, clock, TESTING=False, **config))
    scheduler = agent.start_scheduler(
        data_dir,
        clock,
        intervals_s={"heartbeat": 0.5, "upload": 0.5, "updates": 60},
        first_run_after_s=0.1,
    )

    def stop_hub() -> None:
        hub["running"].stop()

    def start_hub_again() -> None:
        hub["running"] = serve_in_background(hub_dir, port=port, config={"CLOCK": clock})

    try:
        with served(app) as url:
            yield {
                "url": url,
                "app": app,
                "clock": clock,
                "data_dir": data_dir,
                "hub_dir": hub_dir,
                "hub_url": hub["running"].url,  # the same after start_hub
                "stop_hub": stop_hub,
                "start_hub": start_hub_again,
            }
    finally:
        scheduler.shutdown(wait=True)
        hub["running"].stop()
