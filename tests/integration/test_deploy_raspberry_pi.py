"""deploy/raspberry-pi: the scripts pass shellcheck, the units pass systemd-analyze verify,
and install.sh run twice against a scratch root changes nothing the second time."""

import http.server
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from deploy_support import DEPLOY, run_install, scratch_root, tree_state

UNITS = sorted(p.name for p in (DEPLOY / "systemd").iterdir())
SCRIPTS = [DEPLOY / "install.sh", DEPLOY / "build-bundle.sh", *sorted((DEPLOY / "bin").iterdir())]
SOURCED = [DEPLOY / "packages.sh"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = scratch_root(tmp_path_factory.mktemp("scratch") / "root")
    first = run_install(root)
    assert first.returncode == 0, first.stderr
    return root, first


def passwd_entry(root: Path, user: str) -> list[str]:
    for line in (root / "etc/passwd").read_text().splitlines():
        if line.split(":")[0] == user:
            return line.split(":")
    raise AssertionError(f"no user {user} in {root}/etc/passwd")


def test_every_script_passes_shellcheck():
    assert {p.name for p in SCRIPTS} == {
        "install.sh", "build-bundle.sh", "clinic", "clinic-healthcheck", "clinic-kiosk-browser",
        "clinic-nightly-backup", "clinic-install-release", "clinic-update", "clinic-overlay",
    }  # fmt: skip
    for script in SCRIPTS:
        assert script.read_text().startswith("#!/bin/"), script
        assert os.access(script, os.X_OK), f"{script} is not executable"
    done = subprocess.run(
        ["shellcheck", "--external-sources", *map(str, SCRIPTS + SOURCED)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_pipeline_ends_early_and_apt_never_takes_recommends():
    """`cmd | grep -q` (or `| head`) under pipefail fails at random: grep exits at the
    first match and cmd dies of SIGPIPE. And every apt install is --no-install-recommends
    (Recommends pull in avahi-daemon, cups-pk-helper, upower...)."""
    for script in SCRIPTS + SOURCED:
        text = script.read_text()
        for early in ("| grep -q", "| grep -m", "| head", "|head", "| sed -n 1p", "| read"):
            assert early not in text, f"{script.name}: '{early}'"
        for line in text.splitlines():
            if "install -y" in line or "-y install" in line:
                assert "--no-install-recommends" in line, f"{script.name}: {line.strip()}"
    install = (DEPLOY / "install.sh").read_text()
    assert install.count("install -y --no-install-recommends") == 2  # the bundle's, the network's
    bundle = (DEPLOY / "build-bundle.sh").read_text()
    assert 'APT::Install-Recommends "false";' in bundle and "-y install" in bundle


def test_the_first_run_installs_everything_under_the_root(installed):
    root, first = installed
    assert "install.sh: " in first.stdout and "change(s)" in first.stdout.splitlines()[-1]
    clinic = passwd_entry(root, "clinic")
    assert clinic[5:] == ["/var/lib/clinic", "/usr/sbin/nologin"]
    kiosk = passwd_entry(root, "clinic-kiosk")
    data = (root / "var/lib/clinic").stat()
    assert stat.S_IMODE(data.st_mode) == 0o700
    assert (data.st_uid, data.st_gid) == (int(clinic[2]), int(clinic[3]))
    home = (root / "home/clinic-kiosk").stat()
    assert stat.S_IMODE(home.st_mode) == 0o700 and home.st_uid == int(kiosk[2])
    groups = {line.split(":")[0]: line.split(":")[3].split(",")
              for line in (root / "etc/group").read_text().splitlines()}  # fmt: skip
    assert "clinic" in groups["dialout"]
    for unit in UNITS:
        assert (root / "etc/systemd/system" / unit).read_bytes() == (
            DEPLOY / "systemd" / unit
        ).read_bytes()
    wants = root / "etc/systemd/system"
    assert (wants / "multi-user.target.wants/clinic-terminal.service").is_symlink()
    assert (wants / "multi-user.target.wants/clinic-kiosk.service").is_symlink()
    assert (wants / "timers.target.wants/clinic-backup.timer").is_symlink()
    assert (wants / "timers.target.wants/clinic-healthcheck.timer").is_symlink()
    assert (wants / "timers.target.wants/clinic-update.timer").is_symlink()
    assert (wants / "paths.target.wants/clinic-update.path").is_symlink()
    assert (wants / "sockets.target.wants/pcscd.socket").is_symlink()
    for script in ("clinic-healthcheck", "clinic-nightly-backup", "clinic-kiosk-browser",
                   "clinic-update"):  # fmt: skip
        assert os.access(root / "opt/clinic/bin" / script, os.X_OK)
    assert os.access(root / "usr/local/bin/clinic", os.X_OK)
    assert (root / "etc/clinic/clinic.env").read_text().count("CLINIC_READER=pcsc://") == 1
    journald = (root / "etc/systemd/journald.conf.d/clinic.conf").read_text()
    assert "Storage=volatile" in journald and "RuntimeMaxUse=32M" in journald
    assert os.access(root / "usr/local/sbin/clinic-overlay", os.X_OK)
    hwclock = (root / "etc/default/fake-hwclock").read_text()
    assert "FILE=/var/lib/clinic/.system/fake-hwclock.data" in hwclock.splitlines()
    drop_in = root / "etc/systemd/system/fake-hwclock.service.d/clinic.conf"
    assert "RequiresMountsFor=/var/lib/clinic" in drop_in.read_text()
    system = (root / "var/lib/clinic/.system").stat()
    assert stat.S_IMODE(system.st_mode) == 0o700 and system.st_uid == 0
    assert (wants / "timers.target.wants/clinic-clock-save.timer").is_symlink()
    assert "pam_systemd.so" in (root / "etc/pam.d/clinic-kiosk").read_text()
    rules = (root / "etc/udev/rules.d/99-clinic-devices.rules").read_text()
    assert "/dev/clinic-scanner: not configured" in rules
    assert not (root / "opt/clinic/venv").exists()  # --root implies --no-venv
    assert os.access(root / "opt/clinic/bin/clinic-install-release", os.X_OK)
    for folder in ("releases", "wheels", "state"):
        assert (root / "opt/clinic" / folder).is_dir()
    assert "skipped: Debian packages" in first.stdout


def test_a_second_run_changes_nothing(installed):
    root, _ = installed
    before = tree_state(root)
    second = run_install(root)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1] == f"install.sh: nothing to change in {root}"
    assert "changed:" not in second.stdout
    assert tree_state(root) == before  # same bytes, modes, owners and mtimes, nothing added


def test_the_units_pass_systemd_analyze_verify(installed, tmp_path):
    """Verified inside a copy of the scratch root (systemd-analyze verify --root): the
    units find their targets there, and the programs they start must exist there: the
    scripts install.sh put in /opt/clinic/bin, and stand-ins for what pip (the clinic
    command) and apt (cage) install on a real terminal."""
    root = tmp_path / "root"
    shutil.copytree(installed[0], root, symlinks=True)
    for program in ("opt/clinic/venv/bin/clinic", "usr/bin/cage", "sbin/fake-hwclock", "bin/mkdir"):
        (root / program).parent.mkdir(parents=True, exist_ok=True)
        (root / program).write_text("#!/bin/sh\n")
        (root / program).chmod(0o755)
    done = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *UNITS],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""  # not even a warning (an unknown key, a bad value)
    # Each service's exposure may not get worse than measured (README: Hardening).
    for unit, ceiling in SECURITY_CEILINGS.items():
        security = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", f"--root={root}", unit],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        said = f"Overall exposure level for {unit}: "
        level = float(security.stdout.split(said)[1].split()[0])
        assert level <= ceiling, f"{unit}: {level} > {ceiling}"


SECURITY_CEILINGS = {
    "clinic-terminal.service": 1.5,
    "clinic-healthcheck.service": 1.9,
    "clinic-backup.service": 2.8,
    "clinic-kiosk.service": 4.2,
    "clinic-clock-save.service": 1.1,
    "clinic-update.service": 2.5,
}


def test_the_terminal_unit_is_hardened_and_ordered_after_pcscd():
    lines = set((DEPLOY / "systemd/clinic-terminal.service").read_text().splitlines())
    for expected in (
        "Restart=on-failure", "ProtectSystem=strict", "ReadWritePaths=/var/lib/clinic",
        "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes", "User=clinic",
        "Wants=pcscd.socket network-online.target",
        "After=pcscd.socket network-online.target time-sync.target",
        "MemoryDenyWriteExecute=yes", "ProtectClock=yes", "DeviceAllow=char-ttyUSB rw",
        "DeviceAllow=char-ttyACM rw", "SystemCallFilter=~@privileged @resources",
    ):  # fmt: skip
        assert expected in lines, expected
    kiosk = (DEPLOY / "systemd/clinic-kiosk.service").read_text()
    assert "cage -s -- /opt/clinic/bin/clinic-kiosk-browser" in kiosk
    for expected in ("Type=notify", "NotifyAccess=all", "WatchdogSec=60s", "TimeoutStartSec=4min",
                     "ExecStartPre=/opt/clinic/bin/clinic-kiosk-browser --check",
                     "Environment=HOME=/run/clinic-kiosk", "ProtectHome=read-only"):  # fmt: skip
        assert expected in kiosk.splitlines(), expected
    assert "--kiosk" in (DEPLOY / "bin/clinic-kiosk-browser").read_text()
    assert "OnCalendar=" in (DEPLOY / "systemd/clinic-backup.timer").read_text()


def test_udev_rules_follow_devices_conf_and_stay_put(tmp_path):
    root = scratch_root(tmp_path / "root")
    assert run_install(root).returncode == 0
    conf = root / "etc/clinic/devices.conf"
    text = conf.read_text()
    text = text.replace("SCANNER_USB_ID=\n", "SCANNER_USB_ID=0C2E:0B61\n")
    text = text.replace("PRINTER_USB_ID=\n", 'PRINTER_USB_ID="1a86:7523"\n')
    text = text.replace("PRINTER_SERIAL=\n", "PRINTER_SERIAL=PRN-0042\n")
    conf.write_text(text)
    changed = run_install(root)
    assert changed.returncode == 0, changed.stderr
    assert "changed: wrote /etc/udev/rules.d/99-clinic-devices.rules" in changed.stdout
    assert changed.stdout.splitlines()[-1] == f"install.sh: 1 change(s) in {root}"
    rules = (root / "etc/udev/rules.d/99-clinic-devices.rules").read_text()
    assert (
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="0c2e", ATTRS{idProduct}=="0b61",'
        ' SYMLINK+="clinic-scanner", GROUP="clinic", MODE="0660"'
    ) in rules
    assert (
        'ATTRS{idVendor}=="1a86", ATTRS{idProduct}=="7523", ATTRS{serial}=="PRN-0042",'
        ' SYMLINK+="clinic-printer"'
    ) in rules
    assert conf.read_text() == text  # the admin's file is never overwritten
    before = tree_state(root)
    assert run_install(root).stdout.splitlines()[-1].startswith("install.sh: nothing to change")
    assert tree_state(root) == before

    conf.write_text(text.replace("0C2E:0B61", "scanner"))
    refused = run_install(root)
    assert refused.returncode == 1
    assert "SCANNER_USB_ID=scanner" in refused.stderr and "VENDOR:PRODUCT" in refused.stderr
    assert (root / "etc/udev/rules.d/99-clinic-devices.rules").read_text() == rules


def test_a_failed_reload_is_done_again_by_the_next_run(tmp_path):
    """The apply step (--apply: run with --root, against stand-ins for systemctl and
    udevadm) keeps what it applied as stamps written only after success: a udev reload
    that failed is retried by the next run, which then reports it; a third run does
    nothing. The terminal is restarted once for new software or settings, else started."""
    root = scratch_root(tmp_path / "root")
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    stub(
        bin_dir, "systemctl",
        'case "$1" in --root=*) exec /usr/bin/systemctl "$@" ;; esac\n'
        f'echo "systemctl $*" >> {log}\n'
        '[ "$1" != show ] || echo no',
    )  # fmt: skip
    failed_once = tmp_path / "udevadm-failed"
    stub(
        bin_dir, "udevadm",
        f'[ "$*" = "control --ping" ] && exit 0\necho "udevadm $*" >> {log}\n'
        f'if [ "$2" = --reload-rules ] && [ ! -e {failed_once} ]; then\n'
        f'  touch {failed_once}; echo "udevadm: simulated failure" >&2; exit 1\nfi',
    )  # fmt: skip

    first = run_install(root, "--apply", path=bin_dir)
    assert first.returncode != 0 and "simulated failure" in first.stderr
    assert "systemctl daemon-reload" in log.read_text()
    assert not (root / "opt/clinic/state/udev-rules").exists()

    second = run_install(root, "--apply", path=bin_dir)
    assert second.returncode == 0, second.stderr
    assert "changed: reloaded the udev rules" in second.stdout
    assert "changed: restarted systemd-journald (its settings)" in second.stdout
    assert "changed: reloaded systemd" not in second.stdout  # nothing left to load
    assert "not started: clinic-terminal" in second.stdout
    assert second.stdout.splitlines()[-1] == f"install.sh: 2 change(s) in {root}"
    assert log.read_text().count("udevadm control --reload-rules") == 2
    assert "udevadm trigger --subsystem-match=tty --action=add" in log.read_text()

    before = tree_state(root)
    third = run_install(root, "--apply", path=bin_dir)
    assert third.stdout.splitlines()[-1] == f"install.sh: nothing to change in {root}"
    assert tree_state(root) == before
    assert log.read_text().count("udevadm control --reload-rules") == 2

    (root / "var/lib/clinic/clinic.db").write_bytes(b"")  # the device is set up
    fourth = run_install(root, "--apply", path=bin_dir)
    assert "changed: restarted clinic-terminal" in fourth.stdout
    assert log.read_text().splitlines()[-1] == "systemctl restart clinic-terminal.service"
    fifth = run_install(root, "--apply", path=bin_dir)
    assert fifth.stdout.splitlines()[-1] == f"install.sh: nothing to change in {root}"
    assert log.read_text().splitlines()[-1] == "systemctl start clinic-terminal.service"


def fake_bundle(folder: Path, arch: str) -> Path:
    (folder / "debs").mkdir(parents=True)
    (folder / "debs/Packages").write_text("")
    (folder / "BUNDLE.json").write_text(json.dumps({"format": 1, "arch": arch,
        "debian": "bookworm", "version": "0.1.0", "built_at": "2026-01-01T00:00:00Z"}))  # fmt: skip
    sums = subprocess.run(["sha256sum", "BUNDLE.json", "debs/Packages"], cwd=folder,
                          capture_output=True, text=True, check=True)  # fmt: skip
    (folder / "SHA256SUMS").write_text(sums.stdout)
    return folder


def test_a_bundle_for_another_machine_or_damaged_is_refused_changing_nothing(tmp_path):
    root = scratch_root(tmp_path / "root")
    before = tree_state(root)
    machine = subprocess.check_output(["dpkg", "--print-architecture"], text=True).strip()
    other = "arm64" if machine != "arm64" else "amd64"
    refused = run_install(root, "--bundle", str(fake_bundle(tmp_path / "other", other)))
    assert refused.returncode == 1
    assert f"离线安装包是给 {other} 的，本机是 {machine}" in refused.stderr
    assert f"the bundle is for {other}, this machine is {machine}" in refused.stderr
    assert tree_state(root) == before

    damaged = fake_bundle(tmp_path / "damaged", machine)
    (damaged / "debs/Packages").write_text("Package: evil\n")
    refused = run_install(root, "--bundle", str(damaged))
    assert refused.returncode == 1
    assert (
        "离线安装包已损坏或不完整" in refused.stderr and "debs/Packages: FAILED" in refused.stderr
    )
    assert tree_state(root) == before

    good = fake_bundle(tmp_path / "good", machine)
    accepted = run_install(root, "--bundle", str(good))
    assert accepted.returncode == 0, accepted.stderr
    assert f"checking the bundle {good} ({machine})" in accepted.stdout

    # The machine runs a newer release (an update came): an older bundle changes nothing.
    venv = root / "opt/clinic/releases/9.0/venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python").symlink_to(sys.executable)
    (venv / ".clinic-release.json").write_text(json.dumps({"manifest": {"version": "9.0"}}))
    (root / "opt/clinic/venv").symlink_to(venv)
    (good / "release").mkdir()
    (good / "release/release.json").write_text(json.dumps({"manifest": {"version": "0.1.0"}}))
    before = tree_state(root)
    older = run_install(root, "--bundle", str(good))
    assert older.returncode == 1
    assert "本机运行的软件版本 9.0 比安装包里的 0.1.0 新" in older.stderr
    assert "this machine runs 9.0, newer than the bundle's 0.1.0" in older.stderr
    assert tree_state(root) == before


def test_install_refuses_bad_arguments(tmp_path):
    assert run_install(tmp_path / "missing").returncode == 1
    (tmp_path / "empty").mkdir()
    done = run_install(tmp_path / "empty")
    assert done.returncode == 1 and "etc/passwd" in done.stderr
    usage = subprocess.run(["bash", str(DEPLOY / "install.sh"), "--help"], capture_output=True)
    assert usage.returncode == 0 and b"--root DIR" in usage.stdout


# ---- the scripts' behaviour ------------------------------------------------------------------


def stub(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{body}\n")
    (folder / name).chmod(0o755)


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_the_health_check_restarts_the_terminal_after_three_failures(tmp_path):
    bin_dir, log = tmp_path / "bin", tmp_path / "systemctl.log"
    stub(bin_dir, "systemctl", f'echo "$*" >> {log}\nexit "${{STUB_ACTIVE:-0}}"')
    server = http.server.HTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    up = f"http://127.0.0.1:{server.server_port}/signin"
    with socket_closed() as down_port:
        down = f"http://127.0.0.1:{down_port}/signin"

        def check(url: str, active: int = 0) -> str:
            env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                   "RUNTIME_DIRECTORY": str(tmp_path / "run"), "CLINIC_HEALTH_URL": url,
                   "STUB_ACTIVE": str(active)}  # fmt: skip
            done = subprocess.run(
                [str(DEPLOY / "bin/clinic-healthcheck")], env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        try:
            assert check(up) == ""
            assert "1 of 3" in check(down)
            assert "2 of 3" in check(down)
            assert "restarting clinic-terminal.service" in check(down)
            assert log.read_text().splitlines()[-1] == "restart clinic-terminal.service"
            assert "1 of 3" in check(down)  # counting starts again after a restart
            assert check(up) == "" and not (tmp_path / "run/failures").exists()
            assert "not active" in check(down, active=3)  # a stopped terminal is left alone
            assert "restart" not in log.read_text().splitlines()[-1]
        finally:
            server.shutdown()
            server.server_close()


class socket_closed:
    """A local port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def __exit__(self, *exc_info):
        return False


def test_the_kiosk_opens_chromium_full_screen_on_the_terminal_ui(tmp_path):
    bin_dir, args = tmp_path / "bin", tmp_path / "chromium.args"
    stub(bin_dir, "curl", "exit 0")
    stub(bin_dir, "chromium", f'printf "%s\\n" "$@" > {args}')
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "XDG_RUNTIME_DIR": str(tmp_path)}
    done = subprocess.run(
        [str(DEPLOY / "bin/clinic-kiosk-browser")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    given = args.read_text().splitlines()
    assert given[:2] == ["--kiosk", "http://127.0.0.1:8080/"]
    assert "--ozone-platform=wayland" in given and "--noerrdialogs" in given
    assert not list(tmp_path.glob("clinic-kiosk.*"))  # the throwaway profile is gone


@pytest.fixture
def service_owned():
    """A data directory owned by another user (nobody), as /var/lib/clinic is the clinic
    user's, and a stand-in for the clinic program that records who ran it, with what. In
    /var/tmp: pytest's own folders are closed to other users."""
    top = Path(tempfile.mkdtemp(prefix="clinic-deploy-", dir="/var/tmp"))
    data_dir = top / "device"
    data_dir.mkdir(parents=True, mode=0o700)
    nobody = int(subprocess.check_output(["id", "-u", "nobody"]))
    nogroup = int(subprocess.check_output(["id", "-g", "nobody"]))
    os.chown(data_dir, nobody, nogroup)
    calls = top / "calls"
    calls.mkdir(mode=0o777)
    calls.chmod(0o777)
    venv_bin = top / "venv" / "bin"
    stub(
        venv_bin,
        "clinic",
        f'echo "$(id -u):$(id -g) HOME=$HOME DATA=$CLINIC_DATA_DIR $*" >> {calls}/log\n'
        'touch "$CLINIC_DATA_DIR/made-by-clinic"\n'
        '[ -z "${FAIL:-}" ] || exit 4',
    )
    for path in (top, top / "venv", venv_bin):
        path.chmod(0o755)
    try:
        yield data_dir, nobody, nogroup, venv_bin / "clinic", calls / "log"
    finally:
        shutil.rmtree(top)


def test_the_admin_command_runs_as_the_service_user(service_owned):
    """`sudo clinic …` through /usr/local/bin/clinic runs as the service user, so it never
    leaves root's files in the data directory (the terminal could not open them)."""
    data_dir, nobody, nogroup, program, log = service_owned
    env = {**os.environ, "CLINIC_VENV": str(program.parent.parent), "CLINIC_USER": "nobody",
           "CLINIC_DATA_DIR": str(data_dir)}  # fmt: skip
    done = subprocess.run(
        [str(DEPLOY / "bin/clinic"), "doctor", "--json"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert log.read_text() == f"{nobody}:{nogroup} HOME={data_dir} DATA={data_dir} doctor --json\n"
    assert (data_dir / "made-by-clinic").stat().st_uid == nobody
    as_root = subprocess.run(
        [str(DEPLOY / "bin/clinic"), "device", "show"], env={**env, "CLINIC_AS_ROOT": "1"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert as_root.returncode == 0 and log.read_text().splitlines()[-1].startswith("0:0 ")


def test_after_an_enrollment_root_records_the_county_key_for_releases(service_owned):
    """`sudo clinic enroll …` enrolls as the service user, then root records the pinned
    county key (`clinic release trust`, as root); a failed enrollment records nothing."""
    data_dir, nobody, nogroup, program, log = service_owned
    env = {**os.environ, "CLINIC_VENV": str(program.parent.parent), "CLINIC_USER": "nobody",
           "CLINIC_DATA_DIR": str(data_dir)}  # fmt: skip
    done = subprocess.run(
        [str(DEPLOY / "bin/clinic"), "enroll", "--code", "ABCD-EFGH"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        f"{nobody}:{nogroup} HOME={data_dir} DATA={data_dir} enroll --code ABCD-EFGH",
        f"0:0 HOME={os.environ['HOME']} DATA={data_dir}"
        f" release trust --just-enrolled --data-dir {data_dir}",
    ]
    failing = subprocess.run(
        [str(DEPLOY / "bin/clinic"), "enroll", "--fail"], env={**env, "FAIL": "1"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert failing.returncode != 0
    assert "release trust" not in log.read_text().splitlines()[-1]


def test_the_nightly_backup_backs_up_locally_as_the_service_user(service_owned):
    data_dir, nobody, nogroup, program, log = service_owned
    env = {**os.environ, "CLINIC_BIN": str(program), "CLINIC_USER": "nobody",
           "CLINIC_DATA_DIR": str(data_dir), "CLINIC_BACKUP_LABEL": "NO-SUCH-STICK-LABEL",
           "CLINIC_LOCAL_KEEP": "2", "RUNTIME_DIRECTORY": str(data_dir.parent / "run")}  # fmt: skip
    done = subprocess.run(
        [str(DEPLOY / "bin/clinic-nightly-backup")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "no USB stick labelled NO-SUCH-STICK-LABEL" in done.stdout
    assert log.read_text() == (
        f"{nobody}:{nogroup} HOME={data_dir} DATA={data_dir} backup --data-dir {data_dir}"
        f" --to {data_dir}/backups --keep 2\n"
    )
