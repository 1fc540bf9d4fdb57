"""The `clinic` command line, run as a real process where stdin/stdout/exit codes matter."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from clock import NOW
from conftest import item, quote_doc, write_json

from edge.console import main

CLINIC = Path(sys.executable).with_name("clinic")


def clinic(*args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLINIC), *args],
        input=stdin.encode(),
        capture_output=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


GOOD = quote_doc([("A1", "2")], [item("A1", "12.50")])
UNKNOWN = quote_doc([("NOPE", "1")], [item("A1", "1")])


class TestQuote:
    def test_a_document_in_gives_the_settlement_out(self):
        done = clinic("quote", stdin=json.dumps(GOOD))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["fund"] == 1375
        assert done.stderr == b""

    def test_a_rejection_exits_2_with_only_the_error_on_stdout(self):
        done = clinic("quote", stdin=json.dumps(UNKNOWN))
        assert done.returncode == 2
        assert json.loads(done.stdout) == {
            "error": {
                "code": "UNKNOWN_ITEM",
                "message": "item 'NOPE' is not in the catalog",
                "line": 0,
            }
        }

    @pytest.mark.parametrize("stdin", ["", "not json", "\xff\xfe"])
    def test_garbage_is_bad_input_never_a_traceback(self, stdin):
        done = clinic("quote", stdin=stdin)
        assert done.returncode == 2
        assert json.loads(done.stdout)["error"]["code"] == "BAD_INPUT"
        assert b"Traceback" not in done.stderr

    def test_invalid_utf8_is_bad_input(self):
        done = subprocess.run(
            [str(CLINIC), "quote"], input=b'{"policy": "\xff"}', capture_output=True, timeout=60
        )
        assert done.returncode == 2
        assert json.loads(done.stdout)["error"]["code"] == "BAD_INPUT"

    def test_invalid_utf8_inside_a_string_is_bad_input_too(self):
        bad = json.dumps(GOOD, ensure_ascii=False).replace("药品A1", "药品\udcffA1")
        raw = bad.encode("utf-8", errors="surrogateescape")  # the lone byte 0xFF in a name
        for args in (["quote"], ["quote", "--jsonl"]):
            done = subprocess.run([str(CLINIC), *args], input=raw + b"\n", capture_output=True,
                                  timeout=60)  # fmt: skip
            error = json.loads(done.stdout)["error"]
            assert error["code"] == "BAD_INPUT" and "UTF-8" in error["message"], args

    def test_jsonl_answers_every_line_in_order_and_exits_0(self):
        lines = [json.dumps(GOOD), "{", json.dumps(UNKNOWN), json.dumps(GOOD)]
        done = clinic("quote", "--jsonl", stdin="\n".join(lines) + "\n")
        assert done.returncode == 0
        results = [json.loads(line) for line in done.stdout.decode().splitlines()]
        assert [r.get("error", {}).get("code", r.get("fund")) for r in results] == [
            1375,
            "BAD_INPUT",
            "UNKNOWN_ITEM",
            1375,
        ]

    def test_chinese_stays_readable_in_the_output(self):
        doc = quote_doc([("A1", "1")], [item("A1", "1")], person={"status": "suspended"})
        done = clinic("quote", stdin=json.dumps(doc, ensure_ascii=False))
        assert json.loads(done.stdout)["warnings"][0]["code"] == "NOT_ELIGIBLE"


class TestInitAndLookups:
    def test_init_demo_then_search_and_show(self, tmp_path):
        data_dir = tmp_path / "device"
        done = clinic(
            "init", "--demo",
            env={"CLINIC_DATA_DIR": str(data_dir), "CLINIC_CLOCK": NOW.isoformat()},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (data_dir / "clinic.db").exists()
        assert oct(data_dir.stat().st_mode & 0o777) == "0o700"

        hits = json.loads(
            run("catalog", "search", "amxl", "--json", "--data-dir", str(data_dir)).output
        )
        assert hits[0]["name"] == "阿莫西林胶囊"
        assert hits[0]["matched"] == "initials"

        shown = run("roster", "show", "32011600000504", "--json", "--data-dir", str(data_dir))
        person = json.loads(shown.output)
        assert person["insurance_type"] == "employee"
        assert {"year": NOW.year, "scope": "general", "deductible_used": 12000, "fund_paid": 0} in (
            person["accumulators"]
        )
        assert "*" in person["id_number_masked"]

    def test_init_twice_changes_nothing(self, tmp_path):
        data_dir = str(tmp_path / "device")
        assert run("init", "--demo", "--data-dir", data_dir).exit_code == 0
        again = run("init", "--demo", "--data-dir", data_dir)
        assert again.exit_code == 0
        assert "installed" not in again.output

    def test_commands_on_a_missing_device_say_to_init(self, tmp_path):
        done = clinic("catalog", "search", "amxl", "--data-dir", str(tmp_path / "none"))
        assert done.returncode == 1
        assert b"clinic init" in done.stderr
        assert not (tmp_path / "none").exists()

    def test_an_unknown_person_is_a_clear_error(self, tmp_path):
        data_dir = str(tmp_path / "device")
        run("init", "--demo", "--data-dir", data_dir)
        done = clinic("roster", "show", "nobody", "--data-dir", data_dir)
        assert done.returncode == 1
        assert b"not in the roster" in done.stderr

    def test_a_human_search_prints_one_line_per_item(self, tmp_path):
        data_dir = str(tmp_path / "device")
        run("init", "--demo", "--data-dir", data_dir)
        output = run("catalog", "search", "yiban", "--data-dir", data_dir).output
        assert "一般诊疗费" in output


class TestCatalogImport:
    def test_a_json_catalog_imports_and_a_bad_one_changes_nothing(self, tmp_path):
        data_dir = str(tmp_path / "device")
        run("init", "--data-dir", data_dir)
        good = write_json(tmp_path / "c.json", {"version": "2027.1", "items": [item("A1", "1")]})
        assert (
            "1 items installed"
            in run("catalog", "import", str(good), "--data-dir", data_dir).output
        )

        bad = write_json(
            tmp_path / "b.json", {"version": "2027.2", "items": [item("B1", "1", kind="food")]}
        )
        done = clinic("catalog", "import", str(bad), "--data-dir", data_dir)
        assert done.returncode == 1
        assert b"items[0].kind" in done.stderr and b"nothing changed" in done.stderr
        hits = json.loads(run("catalog", "search", "A1", "--json", "--data-dir", data_dir).output)
        assert [h["code"] for h in hits] == ["A1"]

    def test_a_csv_catalog_needs_a_version(self, tmp_path):
        data_dir = str(tmp_path / "device")
        run("init", "--data-dir", data_dir)
        path = tmp_path / "c.csv"
        path.write_text("code,name,kind,class,price\nA1,阿司匹林肠溶片,drug,A,0.12\n", "utf-8")
        done = clinic("catalog", "import", str(path), "--data-dir", data_dir)
        assert done.returncode == 2
        assert b"--version" in done.stderr
        ok = clinic("catalog", "import", str(path), "--version", "1", "--data-dir", data_dir)
        assert ok.returncode == 0, ok.stderr


def test_demo_walkthrough_settles_verifies_and_syncs_with_the_local_hub(tmp_path):
    args = ("demo", "--walkthrough", "--hub-port", "0", "--data-dir", str(tmp_path / "demo"))
    done = clinic(*args)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "阿莫西林胶囊" in out and "enrolled as clinic" in out
    from sync.hub.adapters.sqlite import SqliteHubStore

    hub = SqliteHubStore.open(tmp_path / "demo" / "hub")
    try:
        assert hub.console_user("county-admin").role == "admin"
        assert hub.console_user("molin-coord").township == "秣陵街道"
    finally:
        hub.close()
    assert "NOT_ELIGIBLE" in out and "CHRONIC_NOT_CERTIFIED" in out
    assert "intact: True" in out and "daily close" in out
    for payer in ("大病保险", "医疗救助", "优抚补助", "公务员补助", "个人账户", "家庭共济账户"):
        assert payer in out, payer  # the walkthrough settles one of each of the chain
    assert "统筹基金已达单次限额" in out
    records = int(out.split("daily close #")[1].split(":")[0])
    assert f"acknowledged up to seq {records}" in out
    again = clinic(*args)
    assert again.returncode == 0, again.stderr
    settled_again = again.stdout.decode().count("recorded as seq")
    assert f"acknowledged up to seq {records + settled_again + 1}" in again.stdout.decode()


def test_demo_serves_the_terminal_ui_and_prints_the_pins(tmp_path):
    command = [str(CLINIC), "demo", "--port", "0", "--hub-port", "0",
               "--data-dir", str(tmp_path / "demo")]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as demo:
        try:
            lines = []
            for raw in demo.stdout:
                lines.append(raw.decode())
                if "clinic terminal UI on" in lines[-1]:
                    break
            url = lines[-1].split(" on ")[1].split("/ ")[0]
            assert any("doc01" in line for line in lines)
            with urllib.request.urlopen(url + "/") as response:
                assert response.status == 200
                assert "村卫生室" in response.read().decode()
        finally:
            demo.terminate()
            demo.wait(timeout=30)


def test_every_package_command_is_on_clinic_whatever_was_imported_first():
    """The packages' command modules import edge; `edge.console` puts them all on `clinic`,
    so importing one of them first (as a fresh process may) breaks nothing."""
    script = (
        "import drivers.cli, sync.cli, sync.release_cli, web_ui.cli, edge.maintenance_cli\n"
        "from edge.console import main\n"
        "print(' '.join(sorted(main.commands)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    commands = set(result.stdout.split())
    assert {"settle", "card", "receipt", "doctor", "serve", "sync", "hub", "enroll",
            "release"} <= commands  # fmt: skip
