"""`clinic serve` and `clinic set-pin`."""

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from web_support import make_demo_device

from edge import demo
from edge.console import main
from web_ui import accounts
from web_ui.cli import serve

CLINIC = Path(sys.executable).with_name("clinic")


def test_serve_listens_on_loopback_port_8080_by_default():
    defaults = {p.name: p.default for p in serve.params}
    assert defaults["host"] == "127.0.0.1" and defaults["port"] == 8080
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    for option in ("--data-dir", "--host", "--port", "--reader", "--printer", "--demo"):
        assert option in help_text


@pytest.mark.parametrize(
    ("args", "paper", "auto_print"),
    [([], "58", True), (["--paper", "80", "--no-auto-print"], "80", False)],
)
def test_serve_sets_the_paper_and_whether_the_form_prints_by_itself(
    monkeypatch, tmp_path, args, paper, auto_print
):
    from edge.adapters.sqlite_store import StoreError

    seen = {}

    def create_app(config):
        seen.update(config)
        raise StoreError("stop here")

    monkeypatch.setattr("web_ui.app.create_app", create_app)
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 1 and "stop here" in result.output
    assert seen["PAPER"] == paper and seen["PRINT_RECEIPT_AFTER_SETTLE"] is auto_print


def test_serve_refuses_a_data_dir_without_device_data(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 1 and "clinic init" in result.output


def test_set_pin_sets_the_pin_the_terminal_checks(tmp_path):
    data_dir = tmp_path / "device"
    make_demo_device(data_dir)
    result = CliRunner().invoke(
        main, ["set-pin", "--data-dir", str(data_dir), "admin01"], input="97531\n97531\n"
    )
    assert result.exit_code == 0, result.output
    from edge.adapters.sqlite_store import SqliteDeviceStore

    store = SqliteDeviceStore.open(data_dir)
    try:
        (stored,) = store.db.execute(
            "SELECT pin_hash FROM operator WHERE operator_id = 'admin01'"
        ).fetchone()
    finally:
        store.close()
    assert accounts.pin_matches("97531", stored)


def test_set_pin_refuses_a_pin_that_is_not_4_to_8_digits(tmp_path):
    data_dir = tmp_path / "device"
    make_demo_device(data_dir)
    result = CliRunner().invoke(
        main, ["set-pin", "--data-dir", str(data_dir), "admin01", "--pin", "12ab"]
    )
    assert result.exit_code == 1 and "BAD_PIN_FORMAT" in result.output


def test_serve_demo_creates_the_demo_device_prints_the_pins_and_serves(tmp_path):
    data_dir = tmp_path / "demo"
    with subprocess.Popen(
        [str(CLINIC), "serve", "--demo", "--data-dir", str(data_dir), "--port", "0",
         "--no-sync"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:  # fmt: skip
        try:
            lines = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                line = process.stdout.readline()
                lines.append(line)
                if "http://" in line or not line:
                    break
            output = "".join(lines)
            persons = len(demo.load_json("roster.json")["persons"])
            assert "doc01    1111" in output
            assert f"roster: {persons} insured persons installed" in output
            port = re.search(r"http://127\.0\.0\.1:(\d+)/", output)
            assert port, output
            url = f"http://127.0.0.1:{port.group(1)}/signin"
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200 and "王医生" in response.read().decode()
        finally:
            process.terminate()
            process.wait(10)


def test_the_package_offers_create_app():
    import web_ui
    from web_ui.app import create_app

    assert web_ui.create_app is create_app
