"""The village service point's walkthrough (sync/demo_service_point.py, `clinic
demo-service-point`) on a real demo hub (each hub store: `hub_backend`) and a real demo
terminal: each step's facts, checked against the stores themselves, not only that it ran.

- the enrolment made offline reaches the hub, is approved, the hub's roster version moves
  on, the device installs it and the new resident's visit settles by the insured number
  the county gave; the county's recomputation of that visit agrees;
- a chronic visit is refused CHRONIC_NOT_CERTIFIED before the approval and settles as a
  chronic visit under the new certificate after it; the rejected application's reason is
  on the device;
- the family premium (one 特困 person paying nothing) at the hub and in the 日结, before
  and after its reversal;
- no ID number in clear: not in any file under the walkthrough's folder (the device's
  clinic.db with its -wal and -shm, the photos, the ledger export, the hub's files), not in
  what it printed, not in any log line; the hub holds the sealed form, which the county's
  seal key opens to the number.
"""

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from clock import NOW
from sync_helpers import hub_store

from edge import demo
from edge.adapters.sealing import KEY_FILE, open_sealed, read_sealing_key
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.console import main
from edge.domain.service_point import next_roster_version, premium_year_choices
from sync import demo_service_point as walk
from sync.hub.services import service_requests as hub_requests
from sync.hub.services.reconciliation import reconcile_pending

ID_NUMBER = walk.demo_id_number()


def every_file(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def postgresql_rows(url: str) -> str:
    """Every row of every table of the hub's PostgreSQL database, as text."""
    import psycopg

    with psycopg.connect(url) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema ="
            " current_schema() AND table_type = 'BASE TABLE'"
        )]  # fmt: skip
        return "\n".join(
            f"{table}: {row[0]}"
            for table in tables
            for row in conn.execute(f'SELECT t::text FROM "{table}" t')
        )


@pytest.fixture
def walked(tmp_path, hub_backend, caplog, capfd):
    """The walkthrough's facts, its printed lines and every log line of the run."""
    caplog.set_level(logging.DEBUG)  # every logger, the hub's and the agent's included
    lines: list[str] = []
    facts = walk.run_service_point(tmp_path / "walk", NOW, lines.append)
    captured = capfd.readouterr()
    logs = [record.getMessage() for record in caplog.records]
    logs += [captured.out, captured.err]
    return {"facts": facts, "lines": lines, "logs": logs, "base": tmp_path / "walk"}


def test_the_walkthrough_enrols_decides_settles_and_reverses(walked, hub_backend):
    facts, lines = walked["facts"], walked["lines"]
    day = NOW.date()
    hub_dir = Path(facts["hub_dir"])

    # (a) offline: the enrolment is pending, sealed to the county's key.
    enrolment = facts["enrolment"]
    assert enrolment["state_offline"] == "pending"
    assert enrolment["id_number_masked"] == ID_NUMBER[:6] + "*" * 8 + ID_NUMBER[-4:]
    # the premium: three persons, the 特困 one paid by the state, the year the policy offers
    rule_year = premium_year_choices(_premium_rule(facts), day)[0]
    premium = facts["premium"]
    assert premium["year"] == rule_year
    by_person = {p["insured_id"]: p for p in premium["persons"]}
    assert set(by_person) == set(walk.FAMILY)
    poor = by_person["32011500000005"]  # 陈志强, extreme_poverty: the state pays it all
    assert poor["amount"] == 0 and poor["state_pays"] == poor["due"] == 40000
    for insured_id in ("32011500000001", "32011500000011"):
        assert by_person[insured_id] == {
            "insured_id": insured_id, "due": 40000, "state_pays": 0, "amount": 40000,
        }  # fmt: skip
    assert premium["amount"] == 80000 and premium["state_paid"] == 40000
    assert premium["receipt_verified_tx_id"] == premium["tx_id"]
    assert facts["chronic_refused_before"] == "CHRONIC_NOT_CERTIFIED"
    offline = facts["offline_sync"]  # the hub was really out of reach: all of it waited
    assert offline["errors"] and offline["records_waiting"] >= 5

    # (b) the sync: everything uploaded and pending at the county, both photos there.
    assert set(facts["upload"]["states"].values()) == {"submitted"}
    assert set(facts["hub_pending"]) == {
        enrolment["tx_id"],
        facts["chronic"]["tx_id"],
        facts["rejected"]["tx_id"],
    }
    assert facts["hub_photos"] == [
        {"content_type": "image/png", "bytes": facts[key]["photo_bytes"]}
        for key in ("chronic", "rejected")
    ]
    before = facts["hub_premiums_before_reversal"]
    assert (before["count"], before["amount"], before["cash"]) == (1, 80000, 80000)
    assert before["state_paid"] == 40000 and before["cash_to_hand_over"] == 80000

    # (c) + (d): two approvals, two roster versions; the device installed the last.
    roster_before = demo.roster_document(day)["version"]
    assert facts["roster_before"] == roster_before
    first = next_roster_version(roster_before)  # the enrolment's
    assert facts["enrolment"]["decision"]["result"]["roster_version"] == first
    assert facts["chronic"]["decision"]["result"]["roster_version"] == next_roster_version(first)
    assert facts["hub_roster"] == next_roster_version(first)
    assert facts["roster_after"] == facts["hub_roster"]
    assert facts["enrolment"]["state"] == "approved"
    assert facts["chronic"]["state"] == "approved"
    assert facts["rejected"]["state"] == "rejected"
    assert facts["rejected"]["reason"] == walk.REJECT_REASON
    assert any(walk.REJECT_REASON in line for line in lines)  # the terminal says why

    # (e) the new resident, by the insured number the county gave, settles; so does the
    # chronic visit under the certificate; the rejected person's is still refused.
    resident = facts["new_resident"]
    assert resident["insured_id"] == facts["enrolment"]["result"]["insured_id"]
    assert resident["name"] == walk.APPLICANT["name"]
    assert resident["id_number_masked"] == enrolment["id_number_masked"]
    certificate = facts["chronic"]["result"]
    a_year_on = day.replace(year=day.year + 1) - timedelta(days=1)  # NOW is no 29 February
    assert certificate["disease_code"] == walk.CHRONIC[1]
    assert certificate["valid_from"] == day.isoformat()
    assert certificate["valid_to"] == a_year_on.isoformat()
    device = SqliteDeviceStore.open(Path(facts["data_dir"]))
    try:
        person = device.insured_person(walk.CHRONIC[0], with_accumulators=False).person
        assert [(c.disease_code, c.valid_from, c.valid_to) for c in person.chronic_certs] == [
            (walk.CHRONIC[1], day, a_year_on)
        ]
        assert device.insured_person(resident["insured_id"]) is not None
        for visit in (resident["visit"], facts["chronic"]["visit"]):
            record = device.record_by_tx(visit["tx_id"])
            assert record["kind"] == "settlement"
            assert record["body"]["insured_id"] == visit["insured_id"]
            amounts = visit["amounts"]
            assert amounts["total"] == visit["total"] > 0
            assert sum(v for k, v in amounts.items() if k != "total") == visit["total"]
            assert amounts["fund"] > 0  # insured: the fund pays its share
        assert facts["chronic"]["visit"]["visit_type"] == "chronic"
        assert (
            device.record_by_tx(facts["chronic"]["visit"]["tx_id"])["body"]["visit"]["visit_type"]
            == "chronic"
        )
    finally:
        device.close()
    assert facts["rejected"]["visit_refused"] == "CHRONIC_NOT_CERTIFIED"
    # The county recomputes both visits with its own roster: they agree.
    with hub_store(hub_dir) as store:
        reconcile_pending(store, NOW + timedelta(days=1))
        for visit in (resident["visit"], facts["chronic"]["visit"]):
            status, _ = store.recomputation_of(facts["device_id"], visit["tx_id"])
            assert status == "ok", visit

    # (f) the reversal: the 日结 and the county's totals.
    close = facts["daily_close"]["premiums"]
    assert close["collected"]["count"] == 1 and close["collected"]["persons"] == 3
    assert close["collected"]["amount"] == close["collected"]["cash"] == 80000
    assert close["collected"]["state_paid"] == 40000
    assert close["reversed"]["count"] == 1
    assert close["reversed"]["amount"] == close["reversed"]["cash"] == 80000
    assert close["net"]["amount"] == close["net"]["cash"] == 0
    after = facts["hub_premiums_after_reversal"]
    assert after["reversed_count"] == 1 and after["reversed_amount"] == 80000
    assert after["cash_to_hand_over"] == 0
    assert any("应上缴现金" in line for line in lines)


def _premium_rule(facts: dict):
    device = SqliteDeviceStore.open(Path(facts["data_dir"]))
    try:
        return device.current_policy().premiums
    finally:
        device.close()


def test_no_id_number_in_clear_anywhere(walked, hub_backend):
    facts, base = walked["facts"], walked["base"]
    data_dir = Path(facts["data_dir"])
    export = data_dir / "ledger-export.jsonl"
    done = CliRunner().invoke(
        main, ["ledger", "export", "--data-dir", str(data_dir), "-o", str(export)]
    )
    assert done.exit_code == 0, done.output
    assert facts["enrolment"]["seq"] <= len(export.read_text().splitlines())
    files = every_file(base)
    names = {path.name for path in files}
    assert {"clinic.db", "ledger-export.jsonl"} <= names
    assert any(path.parent.name == "attachments" for path in files)  # the photos
    clear = [ID_NUMBER.encode(), ID_NUMBER[:17].encode(), ID_NUMBER.encode("utf-16-le")]
    for path in files:
        data = path.read_bytes()
        assert not any(number in data for number in clear), path
    shown = "\n".join(walked["lines"] + walked["logs"]) + json.dumps(facts, ensure_ascii=False)
    assert ID_NUMBER not in shown and ID_NUMBER[:17] not in shown
    if hub_backend.database_url:  # the hub's data is not in its folder: every row of it
        dumped = postgresql_rows(hub_backend.database_url)
        assert "service_request" in dumped and facts["enrolment"]["tx_id"] in dumped
        assert ID_NUMBER[:17] not in dumped
    # The hub holds the sealed form only; the county's seal key opens it.
    seal_key = read_sealing_key(Path(facts["hub_dir"]) / KEY_FILE)
    tx_id = facts["enrolment"]["tx_id"]
    with hub_store(Path(facts["hub_dir"])) as store:
        sealed = store.service_request(tx_id)["sealed_id_number"]
        detail = hub_requests.request_detail(store, tx_id, township=None)
        opened = hub_requests.request_detail(store, tx_id, township=None, seal_key=seal_key)
    assert ID_NUMBER not in json.dumps(detail, ensure_ascii=False, default=str)
    assert sealed["key_id"] == facts["enrolment"]["key_id"]
    assert open_sealed(sealed, seal_key) == opened["id_number"] == ID_NUMBER
