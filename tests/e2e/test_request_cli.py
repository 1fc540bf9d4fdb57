"""`clinic request …` as real processes: an enrolment whose ID number comes on standard
input (never an argument) and is on no disk in clear, a chronic application with photos,
a complaint naming a settlement, the lists, refusals that change nothing, and the slip
printed on a serial printer (a pty with the printer emulator on its other end)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clock import NOW
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from drivers.printer import PrinterEmulator
from edge.adapters.sealing import open_sealed, public_key_b64
from edge.adapters.sqlite_store import SqliteDeviceStore
from sync.agent import state

CLINIC = Path(sys.executable).with_name("clinic")
ID_NUMBER = "320115199003070027"  # GB 11643, born 1990-03-07, a woman
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 300


def clinic(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLINIC), *args, "--data-dir", str(data_dir)] if args[0] != "init" else
        [str(CLINIC), *args],
        input=stdin.encode(), capture_output=True, timeout=60,
        env={**os.environ, "CLINIC_DATA_DIR": str(data_dir), "CLINIC_CLOCK": NOW.isoformat()},
    )  # fmt: skip


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@pytest.fixture(scope="module")
def county_seal() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


@pytest.fixture
def device(tmp_path, county_seal) -> Path:
    data_dir = tmp_path / "device"
    ok(clinic(data_dir, "init", "--demo"))
    # The key the agent pins from the county's signed statement (tests/integration cover
    # the pinning itself against a real hub).
    store = SqliteDeviceStore.open(data_dir)
    try:
        with store.write_transaction():
            state.save_enrollment(store, state.Enrollment(
                hub_url="http://127.0.0.1:9", device_id=store.device().device_id, slot_id=1,
                clinic_code="C1", township="T1", county_name="Demo", county_public_key="k",
                enrolled_at=NOW.isoformat(), clock_offset_s=0,
                county_encryption_key=public_key_b64(county_seal),
            ))  # fmt: skip
    finally:
        store.close()
    return data_dir


def ledger(data_dir: Path) -> list[dict]:
    return [json.loads(line) for line in ok(clinic(data_dir, "ledger", "export")).splitlines()]


def test_an_enrolment_takes_the_id_number_on_stdin_and_keeps_it_sealed_only(
    device, county_seal, tmp_path
):
    new = clinic(device, "request", "new", "enrolment", "--operator", "doc01", "--name", "王小梅",
                 "--gender", "F", "--birth-date", "1990-03-07", "--id-number-file", "-",
                 "--village", "东村", "--json", stdin=ID_NUMBER + "\n")  # fmt: skip
    view = json.loads(ok(new))
    assert view["state"] == "pending" and view["applicant"]["id_number_masked"] == (
        "320115********0027"
    )
    (record,) = [r for r in ledger(device) if r["kind"] == "service_request"]
    assert open_sealed(record["body"]["sealed_id_number"], county_seal) == ID_NUMBER

    # From a file too; never in what is printed, the ledger export or any file of the device.
    id_file = tmp_path / "id.txt"
    id_file.write_text(ID_NUMBER)
    again = clinic(device, "request", "new", "enrolment", "--operator", "doc01", "--name", "王小梅",
                   "--gender", "F", "--birth-date", "1990-03-07", "--id-number-file",
                   str(id_file))  # fmt: skip
    assert "申请已记录" in ok(again) and ID_NUMBER not in again.stdout.decode()
    id_file.unlink()
    outputs = [
        ok(clinic(device, "request", "list", "--json")),
        ok(clinic(device, "request", "show", view["tx_id"], "--json")),
        ok(clinic(device, "request", "slip", view["tx_id"])),
        ok(clinic(device, "ledger", "export")),
    ]
    assert not any(ID_NUMBER in text for text in outputs)
    for path in device.rglob("*"):
        if path.is_file():
            assert ID_NUMBER.encode() not in path.read_bytes(), path


def test_a_wrong_id_number_or_a_missing_one_is_refused_and_nothing_is_recorded(device):
    before = ledger(device)
    wrong = ID_NUMBER[:-1] + "5"
    bad = clinic(device, "request", "new", "enrolment", "--operator", "doc01", "--name", "王小梅",
                 "--gender", "F", "--birth-date", "1990-03-07", "--id-number-file", "-",
                 stdin=wrong)  # fmt: skip
    assert bad.returncode == 1 and "BAD_ID_NUMBER" in bad.stderr.decode()
    assert "身份证号码校验位不对" in bad.stderr.decode() and wrong not in bad.stderr.decode()
    missing = clinic(device, "request", "new", "enrolment", "--operator", "doc01",
                     "--name", "王小梅", "--gender", "F", "--birth-date", "1990-03-07")  # fmt: skip
    assert missing.returncode == 1 and "ID_NUMBER_REQUIRED" in missing.stderr.decode()
    assert ledger(device) == before


def test_a_chronic_application_with_photos_and_its_slip_on_a_serial_printer(device, tmp_path):
    (tmp_path / "scan.png").write_bytes(PNG)
    (tmp_path / "page.jpg").write_bytes(JPEG)
    view = json.loads(ok(clinic(
        device, "request", "new", "chronic_certificate", "--operator", "doc01",
        "--insured-id", "32011500000002", "--disease-code", "I10", "--disease-name", "高血压",
        "--scheme", "two_diseases", "--photo", f"{tmp_path / 'scan.png'}:诊断证明",
        "--photo", str(tmp_path / "page.jpg"), "--note", "两病门诊", "--json",
    )))  # fmt: skip
    assert [(a["type"], a["label"]) for a in view["attachments"]] == [
        ("image/png", "诊断证明"), ("image/jpeg", "照片2"),
    ]  # fmt: skip
    assert (device / "attachments" / view["attachments"][0]["sha256"]).read_bytes() == PNG

    master, slave = os.openpty()
    emulator = PrinterEmulator(tmp_path / "printed.bin").serve_fd(master)
    try:
        printed = clinic(device, "request", "slip", str(view["seq"]), "--printer",
                         os.ttyname(slave), "--clinic", "张村卫生室")  # fmt: skip
    finally:
        emulator.stop()
        os.close(slave)
        os.close(master)
    assert f"slip of request {view['seq']} printed" in ok(printed)
    text = emulator.text(width=32)
    for expected in ("业务申请回执", "张村卫生室", "门诊慢特病申请", "类别 两病", "附件照片 2 张",
                     "待上传", "申请编号"):  # fmt: skip
        assert expected in text, text


def test_a_complaint_names_a_settlement_by_seq_and_bad_photos_are_refused(device, tmp_path):
    visit = {"insured_id": "32011500000001", "operator": "doc01", "visit": {
        "date": NOW.date().isoformat(), "visit_type": "general", "diagnoses": ["J06.900"],
        "lines": [{"code": "XJ01CAA040A001", "quantity": "2"}]}}  # fmt: skip
    ok(clinic(device, "settle", stdin=json.dumps(visit)))
    (settlement,) = [r for r in ledger(device) if r["kind"] == "settlement"]
    complaint = json.loads(ok(clinic(
        device, "request", "new", "complaint", "--operator", "doc01",
        "--settlement", str(settlement["seq"]), "--grounds", "自付比例不对", "--json",
    )))  # fmt: skip
    assert complaint["insured_id"] == "32011500000001"
    assert complaint["details"]["settlement_tx_id"] == settlement["tx_id"]

    before = ledger(device)
    (tmp_path / "doc.gif").write_bytes(b"GIF89a" + b"\x00" * 50)
    gif = clinic(device, "request", "new", "chronic_certificate", "--operator", "doc01",
                 "--insured-id", "32011500000002", "--disease-code", "I10",
                 "--disease-name", "高血压", "--photo", str(tmp_path / "doc.gif"))  # fmt: skip
    assert gif.returncode == 1 and "PHOTO_TYPE" in gif.stderr.decode()
    assert "不是 JPEG 或 PNG" in gif.stderr.decode()
    unknown = clinic(device, "request", "new", "renewal", "--operator", "doc01",
                     "--insured-id", "99999999999999", "--year", "2027")  # fmt: skip
    assert unknown.returncode == 1 and "UNKNOWN_PERSON" in unknown.stderr.decode()
    assert ledger(device) == before
    assert not (device / "attachments").exists()

    listed = json.loads(ok(clinic(device, "request", "list", "--kind", "complaint",
                                  "--state", "pending", "--json")))  # fmt: skip
    assert [v["tx_id"] for v in listed] == [complaint["tx_id"]]
    shown = ok(clinic(device, "request", "show", complaint["tx_id"]))
    assert "complaint" in shown and "pending" in shown


def test_a_renewal_names_the_premium_that_paid_it(device):
    year = NOW.year + 1  # the demo policy collects next year's premium on the test day
    paid = json.loads(ok(clinic(
        device, "premium", "collect", "--insured-id", "32011500000001", "--payer-name", "张建国",
        "--operator", "doc01", "--year", str(year), "--json",
    )))  # fmt: skip
    other = json.loads(ok(clinic(
        device, "premium", "collect", "--insured-id", "32011500000002", "--payer-name", "李秀英",
        "--operator", "doc01", "--year", str(year), "--json",
    )))  # fmt: skip

    def renewal(*args: str) -> subprocess.CompletedProcess:
        return clinic(device, "request", "new", "renewal", "--operator", "doc01",
                      "--insured-id", "32011500000001", *args)  # fmt: skip

    before = ledger(device)
    wrong_person = renewal("--year", str(year), "--premium", str(other["seq"]))
    assert wrong_person.returncode == 1 and "PREMIUM_OTHER_PERSON" in wrong_person.stderr.decode()
    assert "不包括该参保人" in wrong_person.stderr.decode()
    wrong_year = renewal("--year", str(NOW.year), "--premium", paid["tx_id"])
    assert wrong_year.returncode == 1 and "PREMIUM_OTHER_YEAR" in wrong_year.stderr.decode()
    unknown = renewal("--year", str(year), "--premium", "999")
    assert unknown.returncode == 1 and "UNKNOWN_PREMIUM" in unknown.stderr.decode()
    not_renewal = clinic(
        device,
        "request",
        "new",
        "cross_region_filing",
        "--operator",
        "doc01",
        "--insured-id",
        "32011500000001",
        "--premium",
        str(paid["seq"]),
    )
    assert not_renewal.returncode == 2 and "--premium" in not_renewal.stderr.decode()
    assert ledger(device) == before

    view = json.loads(ok(renewal("--year", str(year), "--premium", str(paid["seq"]), "--json")))
    assert view["details"] == {"year": year, "premium_tx_id": paid["tx_id"]}
