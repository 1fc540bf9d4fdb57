"""`clinic premium collect|reverse|show|list` as real processes on a demo device (the
clock given by CLINIC_CLOCK), and the premiums in `clinic close-day` and the receipt."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from clock import NOW

CLINIC = Path(sys.executable).with_name("clinic")
ZHANG, CHEN, LI, TANG = "32011500000001", "32011500000005", "32011500000002", "32011500000502"


@pytest.fixture
def env(tmp_path):
    env = {**os.environ, "CLINIC_DATA_DIR": str(tmp_path / "device"),
           "CLINIC_CLOCK": NOW.isoformat()}  # fmt: skip
    done = subprocess.run(
        [str(CLINIC), "init", "--demo"], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return env


def clinic(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLINIC), *args], env=env, capture_output=True, timeout=60, text=True)


def ok_json(env, *args: str):
    done = clinic(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_collect_show_list_reverse_and_the_close(env):
    quote = ok_json(env, "premium", "collect", "--insured-id", ZHANG, "--insured-id", CHEN,
                    "--quote-only")  # fmt: skip
    assert quote["year"] == NOW.year + 1 and quote["amount"] == 40000
    assert quote["persons"][1]["state_pays"] == 40000 and not quote["all_state_paid"]

    paid = ok_json(env, "premium", "collect", "--insured-id", ZHANG, "--insured-id", CHEN,
                   "--insured-id", LI, "--payer-name", "张建国", "--payer-insured-id", ZHANG,
                   "--operator", "doc01")  # fmt: skip
    assert paid["kind"] == "premium" and paid["amount"] == 80000 and paid["state_paid"] == 40000
    assert paid["payer"] == {"name": "张建国", "insured_id": ZHANG} and paid["method"] == "cash"

    shown = ok_json(env, "premium", "show", str(paid["seq"]))
    assert shown["tx_id"] == paid["tx_id"] and shown["record"]["hash"] == paid["hash"]
    assert shown["reversed_by"] is None
    listed = ok_json(env, "premium", "list", "--year", str(NOW.year + 1))
    assert [row["tx_id"] for row in listed] == [paid["tx_id"]]
    assert ok_json(env, "premium", "list", "--day", NOW.date().isoformat())[0]["seq"] == 1

    again = clinic(env, "premium", "collect", "--insured-id", LI, "--payer-name", "李秀英",
                   "--operator", "doc01")  # fmt: skip
    assert again.returncode == 1 and "ALREADY_PAID" in again.stderr

    reversed_ = ok_json(env, "premium", "reverse", paid["tx_id"], "--reason", "收错人",
                        "--operator", "doc01")  # fmt: skip
    assert reversed_["kind"] == "premium_reversal" and reversed_["reverses_seq"] == paid["seq"]
    twice = clinic(env, "premium", "reverse", str(paid["seq"]), "--reason", "x", "--operator",
                   "doc01")  # fmt: skip
    assert twice.returncode == 1 and "ALREADY_REVERSED" in twice.stderr
    assert ok_json(env, "premium", "show", paid["tx_id"])["reversal_seq"] == reversed_["seq"]

    mobile = ok_json(env, "premium", "collect", "--insured-id", LI, "--payer-name", "李秀英",
                     "--method", "mobile", "--reference", "WX900",
                     "--operator", "doc01")  # fmt: skip
    human = clinic(env, "premium", "list")
    assert human.returncode == 0 and "已冲正" in human.stdout and "WX900" in human.stdout

    close = ok_json(env, "close-day", "--operator", "doc01")
    assert close["premiums"]["collected"]["count"] == 2
    assert close["premiums"]["net"] == {"amount": 40000, "cash": 0, "mobile": 40000,
                                        "family_account": 0, "state_paid": 0}  # fmt: skip
    receipt = clinic(env, "receipt", "show", str(mobile["seq"]))
    assert receipt.returncode == 0 and "收费凭证" in receipt.stdout and "WX900" in receipt.stdout
    payload = re.search(r"\[QR (YBR1:[^\]]+)\]", receipt.stdout).group(1)
    key = ok_json(env, "device", "show")["public_key"]
    verified = clinic(env, "receipt", "verify", payload, "--public-key", key)
    assert verified.returncode == 0 and "genuine: premium" in verified.stdout
    assert "李秀英" in verified.stdout and "¥400.00" in verified.stdout
    day = clinic(env, "receipt", "show", str(close["seq"]))
    assert "收取保费 2笔" in day.stdout and "保费应上缴现金" in day.stdout


def test_refusals_are_one_line_and_write_nothing(env):
    for args, code in [
        (["--insured-id", CHEN], "ALL_STATE_PAID"),
        (["--insured-id", TANG], "NOT_RESIDENT"),
        (["--insured-id", ZHANG, "--method", "mobile"], "REFERENCE_REQUIRED"),
        (["--insured-id", ZHANG, "--year", str(NOW.year + 2)], "YEAR_NOT_OFFERED"),
    ]:
        done = clinic(env, "premium", "collect", *args, "--payer-name", "某人", "--operator",
                      "doc01")  # fmt: skip
        assert done.returncode == 1 and code in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert "由政府全额资助" in clinic(env, "premium", "collect", "--insured-id", CHEN,
                                       "--quote-only").stdout  # fmt: skip
    assert ok_json(env, "premium", "list") == []
    missing = clinic(env, "premium", "collect", "--insured-id", ZHANG)
    assert missing.returncode == 2 and "--payer-name" in missing.stderr
    unknown = clinic(env, "premium", "show", "99")
    assert unknown.returncode == 1 and "UNKNOWN_PREMIUM" in unknown.stderr
