"""`clinic doctor`: each failure it checks for, staged on a real device, is reported."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from deploy_support import (
    NOW,
    break_chain,
    mark_synced,
    new_device,
    pcscd_without_readers,
    settle,
    settle_many,
)
from pcsc_fixtures import private_pcscd

from drivers.printer import PrinterError
from edge import demo
from edge import maintenance as m
from edge.adapters.identity import KEY_FILE
from edge.adapters.sqlite_store import DATABASE_FILE
from edge.console import main
from edge.domain.ledger import Verification
from edge.maintenance_cli import DEVICE_PROBES

CLINIC = Path(sys.executable).with_name("clinic")
LATER = NOW + timedelta(hours=1)
BUILT = date(2026, 11, 1)


def options(tmp_path: Path, **changes) -> m.DoctorOptions:
    values = {
        "reader_url": "emulated://",
        "printer_url": f"emulated://{tmp_path}/receipts.bin",
        "service": None,  # no systemd unit in a test
        "not_before": BUILT,
        **changes,
    }
    return m.DoctorOptions(**values)


def statuses(checks) -> dict[str, str]:
    return {check.name: check.status for check in checks}


def finding(checks, name: str) -> m.Finding:
    return next(check.finding for check in checks if check.name == name)


@pytest.fixture
def device(tmp_path):
    data_dir = tmp_path / "device"
    store, identity = new_device(data_dir)
    settle_many(store, identity, 3)
    mark_synced(store, 3, NOW + timedelta(minutes=10))
    yield data_dir, store, identity
    store.close()


def test_a_healthy_device_passes_every_check(device, tmp_path):
    data_dir, _, _ = device
    checks = m.run_doctor(data_dir, LATER, options(tmp_path), DEVICE_PROBES)
    assert [c.name for c in checks] == list(m.LABELS)
    expected = {name: m.OK for name in m.LABELS} | {"service": m.SKIPPED}
    # The data directory's own filesystem decides that one (tmp_path may be a tmpfs).
    expected["storage"] = m.check_storage(
        exists=True, fs_type=m.filesystem_type(data_dir), mode=0o700, owner="", foreign=[]
    ).status
    assert statuses(checks) == expected
    assert finding(checks, "ledger").message.en == "3 records, chain intact"
    versions = f"catalog {demo.DEMO_CATALOG_VERSION}, policy {demo.policy_document()['version']}"
    assert versions in finding(checks, "versions").message.en
    assert not m.doctor_failed(checks) or expected["storage"] == m.ERROR


def test_a_key_readable_by_others_is_an_error(device, tmp_path):
    data_dir, _, _ = device
    os.chmod(data_dir / KEY_FILE, 0o644)
    checks = m.run_doctor(data_dir, LATER, options(tmp_path), DEVICE_PROBES)
    key = finding(checks, "key")
    assert key.status == m.ERROR and "mode 644" in key.message.en
    assert "chmod 600" in key.advice.en and "chmod 600" in key.advice.zh
    assert m.doctor_failed(checks)


def test_a_missing_or_foreign_key_is_an_error(device, tmp_path):
    data_dir, _, _ = device
    other_dir = tmp_path / "other"
    other, _ = new_device(other_dir)
    other.close()
    shutil.copy(other_dir / KEY_FILE, data_dir / KEY_FILE)
    key = finding(m.run_doctor(data_dir, LATER, options(tmp_path), DEVICE_PROBES), "key")
    assert key.status == m.ERROR and "does not belong" in key.message.en
    (data_dir / KEY_FILE).unlink()
    key = finding(m.run_doctor(data_dir, LATER, options(tmp_path), DEVICE_PROBES), "key")
    assert key.status == m.ERROR and "missing" in key.message.en and "restore" in key.advice.en


def test_a_broken_chain_is_an_error_naming_the_record(device, tmp_path):
    data_dir, _, _ = device
    break_chain(data_dir, 2)
    checks = m.run_doctor(data_dir, LATER, options(tmp_path), DEVICE_PROBES)
    ledger = finding(checks, "ledger")
    assert ledger.status == m.ERROR and "broken at seq 2" in ledger.message.en
    assert "第 2 条" in ledger.message.zh and "ledger export" in ledger.advice.en
    assert statuses(checks)["database"] == m.OK  # SQLite itself is fine


def test_a_damaged_database_file_is_an_error(device, tmp_path):
    data_dir, store, _ = device
    store.close()
    database = data_dir / DATABASE_FILE
    data = bytearray(database.read_bytes())
    data[4096:8192] = b"\xa5" * 4096  # page 2 overwritten with garbage
    database.write_bytes(bytes(data))
    checks = m.run_doctor(data_dir, LATER, options(tmp_path), DEVICE_PROBES)
    assert statuses(checks)["database"] == m.ERROR
    assert "clinic restore" in finding(checks, "database").advice.en
    assert m.doctor_failed(checks)


def test_no_device_data_at_all_is_an_error(tmp_path):
    checks = m.run_doctor(tmp_path / "nothing", LATER, options(tmp_path), DEVICE_PROBES)
    found = statuses(checks)
    assert found["storage"] == found["database"] == found["key"] == m.ERROR
    assert found["ledger"] == found["sync"] == m.SKIPPED


def test_the_printer_problems_are_reported(device, tmp_path):
    data_dir, _, _ = device

    def printer(status: str | None) -> m.Finding:
        url = f"emulated://{tmp_path}/r.bin?status={status}" if status else None
        return finding(
            m.run_doctor(data_dir, LATER, options(tmp_path, printer_url=url), DEVICE_PROBES),
            "printer",
        )

    paper = printer("paper_out")
    assert paper.status == m.ERROR and "PAPER_OUT" in paper.message.en
    assert "缺纸" in paper.message.zh
    off = printer("silent")
    assert off.status == m.ERROR and "NO_ANSWER" in off.message.en
    assert printer("near_end").status == m.WARNING
    assert printer(None).status == m.SKIPPED


def test_a_full_disk_by_the_thresholds(device, tmp_path):
    data_dir, _, _ = device
    huge = 10**18
    checks = m.run_doctor(data_dir, LATER, options(tmp_path, disk_error_bytes=huge), DEVICE_PROBES)
    disk = finding(checks, "disk")
    assert disk.status == m.ERROR and "almost full" in disk.message.en
    assert m.doctor_failed(checks)
    low = finding(
        m.run_doctor(data_dir, LATER, options(tmp_path, disk_warn_bytes=huge), DEVICE_PROBES),
        "disk",
    )
    assert low.status == m.WARNING


def test_a_full_disk_on_a_tiny_filesystem(device, tmp_path):
    """The device's files copied onto a 4 MB tmpfs (a private mount namespace; we are
    root), and clinic doctor run there with the default thresholds."""
    data_dir, store, _ = device
    store.close()
    mount = tmp_path / "tiny"
    mount.mkdir()
    script = (
        'mount -t tmpfs -o size=4m,mode=0700 tmpfs "$1" && cp -a "$2"/. "$1"/'
        ' && exec "$3" doctor --json --service "" --reader emulated:// --data-dir "$1"'
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(mount), str(data_dir), str(CLINIC)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    report = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert report["disk"]["status"] == m.ERROR
    assert "almost full" in report["disk"]["message"]["en"]
    assert report["storage"]["status"] == m.ERROR  # and a RAM filesystem loses the data
    assert "tmpfs" in report["storage"]["message"]["en"]
    assert report["ledger"]["status"] == m.OK


def storage_in_namespace(data_dir: Path, script: str, *cmdlines: Path) -> dict:
    """Runs `script` (sh: $1 is the data directory) in a private mount namespace (we are
    root), then clinic doctor on "$DATA" (default $1); its storage check."""
    boot = " ".join(f"--boot-cmdline {c}" for c in cmdlines) or "--boot-cmdline /dev/null"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'DATA="$1"; {script}\n exec "$2" doctor --json --service "" --reader emulated://'
         f' --data-dir "$DATA" {boot}',
         "sh", str(data_dir), str(CLINIC)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout, done.stderr
    return next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "storage")


@pytest.fixture
def on_disk(device):
    """The device in /var/tmp: on this machine's disk, not on a tmpfs /tmp."""
    data_dir, store, _ = device
    store.close()
    top = Path(tempfile.mkdtemp(prefix="clinic-doctor-", dir="/var/tmp"))
    shutil.copytree(data_dir, top / "device")
    assert m.filesystem_type(top) not in ("tmpfs", "overlay")
    yield top / "device"
    shutil.rmtree(top)


def test_data_on_an_overlay_is_an_error(on_disk):
    """overlayroot's way: the data folder read-only below, a tmpfs as the writable layer."""
    script = (
        'mkdir -p "$1.ram" "$1.merged" && mount -t tmpfs tmpfs "$1.ram"'
        ' && mkdir "$1.ram/upper" "$1.ram/work"'
        ' && mount -t overlay overlay -o "lowerdir=$1,upperdir=$1.ram/upper,workdir=$1.ram/work"'
        ' "$1.merged" && chmod 700 "$1.merged" && DATA="$1.merged"'
    )
    storage = storage_in_namespace(on_disk, script)
    assert storage["status"] == m.ERROR, storage
    assert "the data is on overlay" in storage["message"]["en"]
    assert "叠加文件系统" in storage["message"]["zh"]


def test_an_overlayroot_configured_for_the_next_boot(on_disk, tmp_path):
    """As raspi-config writes it (recurse defaults to 1) the data would be in RAM after the
    next boot: an error; recurse=0 keeps it on disk, but only on a mount of its own."""
    raspi = tmp_path / "cmdline.txt"
    raspi.write_text("console=tty1 root=PARTUUID=abc-02 rootwait overlayroot=tmpfs\n")
    fixed = tmp_path / "fixed-cmdline.txt"
    fixed.write_text("overlayroot=tmpfs:recurse=0 console=tty1 root=PARTUUID=abc-02 rootwait\n")
    own_mount = 'mount --bind "$1" "$1"'

    assert storage_in_namespace(on_disk, own_mount)["status"] == m.OK
    assert storage_in_namespace(on_disk, own_mount, fixed)["status"] == m.OK
    default = storage_in_namespace(on_disk, own_mount, raspi)
    assert default["status"] == m.ERROR and "recurse=0 is missing" in default["message"]["en"]
    assert f"{raspi}: overlayroot=tmpfs" in default["message"]["en"]
    on_root = storage_in_namespace(on_disk, "true", fixed)
    assert on_root["status"] == m.ERROR and "not its own mount" in on_root["message"]["en"]
    assert "数据目录不是单独的分区" in on_root["message"]["zh"]


def test_a_root_owned_system_folder_is_not_foreign(tmp_path):
    """fake-hwclock's saved time lives in DATA_DIR/.system, root's (see deploy/raspberry-pi)."""
    from edge.maintenance import probes

    data_dir = tmp_path / "device"
    data_dir.mkdir(mode=0o700)
    os.chown(data_dir, int(subprocess.check_output(["id", "-u", "nobody"])), -1)
    (data_dir / ".system").mkdir(mode=0o700)
    (data_dir / "stray").write_text("")
    found = probes.storage(data_dir, ())
    assert found.status == m.ERROR and "stray" in found.message.en
    assert ".system" not in found.message.en
    (data_dir / "stray").unlink()
    assert probes.storage(data_dir, ()).status in (m.OK, m.ERROR)  # ERROR only on a tmpfs
    assert "not owned" not in probes.storage(data_dir, ()).message.en


def test_no_card_reader_is_an_error(device, tmp_path):
    """A real pcscd that knows no reader: clinic doctor --reader pcsc:// says so."""
    data_dir, store, _ = device
    store.close()
    with pcscd_without_readers(tmp_path / "pcscd") as env:
        done = subprocess.run(
            [str(CLINIC), "doctor", "--json", "--service", "", "--reader", "pcsc://",
             "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env},
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    reader = next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "reader")
    assert reader["status"] == m.ERROR
    assert "NO_READER" in reader["message"]["en"] and "没有连接读卡器" in reader["message"]["zh"]
    assert reader["advice"]["en"]


def test_a_reader_pcscd_knows_is_ok(device, tmp_path):
    data_dir, store, _ = device
    store.close()
    with private_pcscd(tmp_path / "pcscd") as daemon:
        done = subprocess.run(
            [str(CLINIC), "doctor", "--json", "--service", "", "--reader", "pcsc://",
             "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=60, env={**os.environ, **daemon.env},
        )  # fmt: skip
    reader = next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "reader")
    assert reader["status"] == m.OK, reader
    unavailable = m.run_doctor(
        data_dir, LATER, options(tmp_path, reader_url="nope://"), DEVICE_PROBES
    )
    assert finding(unavailable, "reader").status == m.ERROR


def test_the_cli_exit_status_and_json(tmp_path):
    """Exit 0 when nothing is an error, 1 otherwise. The device lives in /var/tmp, on
    persistent storage, so that the storage check does not depend on /tmp being a tmpfs."""
    data_dir = Path(tempfile.mkdtemp(prefix="clinic-doctor-", dir="/var/tmp")) / "device"
    try:
        store, identity = new_device(data_dir, datetime.now(NOW.tzinfo))
        settle(store, identity, datetime.now(NOW.tzinfo) - timedelta(minutes=1))
        mark_synced(store, 1, datetime.now(NOW.tzinfo))
        store.close()
        args = ["doctor", "--data-dir", str(data_dir), "--service", "", "--reader", "emulated://"]
        runner = CliRunner()
        healthy = runner.invoke(main, [*args, "--json"])
        report = json.loads(healthy.stdout)
        assert healthy.exit_code == 0, report
        assert report["ok"] is True
        assert {c["status"] for c in report["checks"]} <= {m.OK, m.WARNING, m.SKIPPED}

        os.chmod(data_dir / KEY_FILE, 0o640)
        broken = runner.invoke(main, args, env={"CLINIC_DOCTOR_DISK_ERROR_MB": str(10**12)})
        assert broken.exit_code == 1
        text = broken.stdout
        assert "ERROR    设备密钥 device key" in text and "chmod 600" in text
        assert "ERROR    磁盘空间 disk space" in text
        assert "处理 what to do:" in text and "个错误" in text
    finally:
        shutil.rmtree(data_dir.parent)


# ---- the pure checks ---------------------------------------------------------------------------


def test_service_states():
    assert m.check_service("active").status == m.OK
    assert m.check_service("activating").status == m.WARNING
    failed = m.check_service("failed")
    assert failed.status == m.ERROR and "systemctl restart clinic-terminal" in failed.advice.en
    assert m.check_service(None).status == m.SKIPPED


def test_storage_rules():
    good = {"exists": True, "fs_type": "ext4", "mode": 0o700, "owner": "clinic", "foreign": []}
    assert m.check_storage(**good).status == m.OK
    assert m.check_storage(**good | {"fs_type": "tmpfs"}).status == m.ERROR
    overlay = m.check_storage(**good | {"fs_type": "overlay"})
    assert overlay.status == m.ERROR and "lost at the next reboot" in overlay.message.en
    assert "重启即丢失" in overlay.message.zh and "clinic-overlay enable" in overlay.advice.en
    assert m.check_storage(**good | {"mode": 0o755}).status == m.WARNING
    root_owned = m.check_storage(**good | {"foreign": ["clinic.db-wal"]})
    assert root_owned.status == m.ERROR and "chown -R clinic:" in root_owned.advice.en
    both = m.check_storage(**good | {"mode": 0o750, "fs_type": "tmpfs"})
    assert both.status == m.ERROR and "tmpfs" in both.message.en and "750" in both.message.en


def test_overlayroot_rules():
    """Debian's overlayroot puts every mount in RAM unless told recurse=0, and the root
    always: only recurse=0 with the data on a mount of its own keeps the data on disk."""
    assert m.overlayroot_setting("console=tty1 overlayroot=tmpfs root=/dev/mmcblk0p2") == "tmpfs"
    assert m.overlayroot_setting("a=1 overlayroot=tmpfs overlayroot=disabled") == "disabled"
    assert m.overlayroot_setting("console=tty1 root=/dev/mmcblk0p2 rootwait") is None
    keeps = m.overlayroot_keeps_data
    assert keeps(None, own_mount=False) and keeps("disabled", own_mount=False)
    assert keeps("", own_mount=False)
    assert keeps("tmpfs:recurse=0", own_mount=True)
    assert keeps("tmpfs:swap=1,recurse=0", own_mount=True)
    assert not keeps("tmpfs:recurse=0", own_mount=False)  # the root itself is in RAM
    for setting in (
        "tmpfs",
        "tmpfs:recurse=1",
        "tmpfs:swap=1",
        "/dev/sda2",
        "device:dev=/dev/sda2",
    ):
        assert not keeps(setting, own_mount=True), setting

    good = {"exists": True, "fs_type": "ext4", "mode": 0o700, "owner": "clinic", "foreign": []}
    cmdline = "/boot/firmware/cmdline.txt"
    fixed = m.check_storage(**good, overlayroot=[(cmdline, "tmpfs:recurse=0")])
    assert fixed.status == m.OK
    raspi_config = m.check_storage(**good, overlayroot=[(cmdline, "tmpfs")])
    assert raspi_config.status == m.ERROR
    assert "overlayroot=tmpfs" in raspi_config.message.en
    assert "recurse=0 is missing" in raspi_config.message.en
    assert "缺少 recurse=0" in raspi_config.message.zh and "下次启动后" in raspi_config.message.zh
    on_root = m.check_storage(**good, own_mount=False, overlayroot=[(cmdline, "tmpfs:recurse=0")])
    assert on_root.status == m.ERROR and "not its own mount" in on_root.message.en
    assert m.check_storage(**good, own_mount=False).status == m.OK  # no overlay at all


def test_clock_rules():
    last = NOW
    ok = m.check_clock(NOW + timedelta(minutes=1), last_record_at=last, clock_behind_since=None,
                       not_before=BUILT)  # fmt: skip
    assert ok.status == m.OK
    behind = m.check_clock(NOW - timedelta(days=2), last_record_at=last,
                           clock_behind_since=None, not_before=BUILT)  # fmt: skip
    assert behind.status == m.WARNING and "before the last ledger record" in behind.message.en
    assert "clock_behind" in behind.advice.en and "DS3231" in behind.advice.en
    reset = m.check_clock(datetime(1970, 1, 1, tzinfo=NOW.tzinfo), last_record_at=None,
                          clock_behind_since=None, not_before=BUILT)  # fmt: skip
    assert reset.status == m.WARNING and "before this software was built" in reset.message.en
    flagged = m.check_clock(NOW, last_record_at=last, clock_behind_since=NOW.isoformat(),
                            not_before=BUILT)  # fmt: skip
    assert flagged.status == m.WARNING


def test_a_saved_clock_in_ram_is_a_warning(tmp_path):
    warned = m.check_clock(NOW, last_record_at=NOW, clock_behind_since=None, not_before=BUILT,
                           saved_in_ram="/etc/fake-hwclock.data")  # fmt: skip
    assert warned.status == m.WARNING and "/etc/fake-hwclock.data" in warned.message.en
    assert "只读根分区" in warned.message.zh and "DS3231" in warned.advice.en

    from edge.maintenance import probes

    program = tmp_path / "fake-hwclock"
    program.write_text("")
    defaults = tmp_path / "default-fake-hwclock"
    defaults.write_text("# comment\nFILE=/var/lib/clinic/.system/fake-hwclock.data\n")
    paths = probes.HwclockPaths((program,), defaults, tmp_path / "rtc0")
    cmdline = tmp_path / "cmdline.txt"
    cmdline.write_text("overlayroot=tmpfs:recurse=0 rootwait\n")
    data_dir = tmp_path / "device"  # on the root here: not a mount of its own
    saved = probes.saved_clock_in_ram(data_dir, [cmdline], paths)
    assert saved == "/var/lib/clinic/.system/fake-hwclock.data"
    defaults.unlink()
    assert probes.saved_clock_in_ram(data_dir, [cmdline], paths) == "/etc/fake-hwclock.data"
    assert probes.saved_clock_in_ram(data_dir, [], paths) is None  # no overlay
    (tmp_path / "rtc0").write_text("")
    assert probes.saved_clock_in_ram(data_dir, [cmdline], paths) is None  # a real RTC
    (tmp_path / "rtc0").unlink()
    program.unlink()
    assert probes.saved_clock_in_ram(data_dir, [cmdline], paths) is None  # no fake-hwclock


def test_sync_rules():
    fresh = m.check_sync(NOW, last_sync_at=NOW - timedelta(hours=2), max_hours=None, waiting=4)
    assert fresh.status == m.OK and "4 records waiting" in fresh.message.en
    stale = m.check_sync(NOW, last_sync_at=NOW - timedelta(hours=25), max_hours=None, waiting=0)
    assert stale.status == m.WARNING and "24 h" in stale.message.en
    policy = m.check_sync(NOW, last_sync_at=NOW - timedelta(hours=25), max_hours=72, waiting=0)
    assert policy.status == m.OK
    never = m.check_sync(NOW, last_sync_at=None, max_hours=72, waiting=1)
    assert never.status == m.WARNING and "clinic enroll" in never.advice.en
    photos = [("ab" * 32, "ATTACHMENT_MISSING"), ("cd" * 32, "ATTACHMENT_TYPE")]
    aside = m.check_sync(NOW, last_sync_at=NOW - timedelta(hours=2), max_hours=None, waiting=0,
                         photos_set_aside=photos)  # fmt: skip
    assert aside.status == m.WARNING and "2 张申请照片未能上传" in aside.message.zh
    assert "abababababab ATTACHMENT_MISSING; cdcdcdcdcdcd ATTACHMENT_TYPE" in aside.message.en
    assert "clinic sync status" in aside.advice.en


def test_version_rules():
    now = NOW
    listed = m.check_versions(
        {"catalog": ("2026.11.1", None), "policy": ("2026.1", "2027-01-01T00:00:00+08:00"),
         "roster": ("2026.11.1", None)}, now,
    )  # fmt: skip
    assert listed.status == m.OK
    expired = m.check_versions({"policy": ("2026.1", "2026-11-01T00:00:00+08:00")}, now)
    assert expired.status == m.WARNING and "expired" in expired.message.en
    missing = m.check_versions({"catalog": (None, None), "policy": ("2026.1", None)}, now)
    assert missing.status == m.ERROR and "no catalog installed" in missing.message.en


def test_disk_ledger_and_reader_findings():
    assert m.check_disk(600_000_000, 10**10, warn_bytes=5 * 10**8, error_bytes=10**8).status == "ok"
    assert m.check_disk(200_000_000, 10**10, warn_bytes=5 * 10**8, error_bytes=10**8).status == (
        m.WARNING
    )
    assert m.check_ledger(Verification(0)).status == m.OK
    assert m.check_ledger(Verification(4, 5, "bad signature")).status == m.ERROR
    cover = m.PrinterFacts(problem=PrinterError("COVER_OPEN"))
    printer = m.check_printer("/dev/clinic-printer", cover)
    assert printer.status == m.ERROR and "COVER_OPEN" in printer.message.en


def test_the_reader_and_printer_are_seen_through_the_probes_given(device, tmp_path):
    """The doctor imports no driver: what it says of the reader and the printer is what
    the probes it is handed found."""
    data_dir, _, _ = device
    asked = []

    def reader(url, today):
        asked.append((url, today))
        return m.ReaderFacts(card_present=True)

    def printer(url):
        asked.append(url)
        return m.PrinterFacts(paper_near_end=True)

    probes = m.DeviceProbes(reader=reader, printer=printer)
    checks = m.run_doctor(data_dir, LATER, options(tmp_path, printer_url="p://"), probes)
    assert asked == [("emulated://", LATER.date()), "p://"]
    assert finding(checks, "reader").message.en == "emulated:// is connected, a card is in it"
    assert finding(checks, "printer").status == m.WARNING
    unplugged = m.DeviceProbes(reader=reader, printer=lambda url: 1 / 0)
    checks = m.run_doctor(data_dir, LATER, options(tmp_path, printer_url="p://"), unplugged)
    assert "could not be checked" in finding(checks, "printer").message.en
