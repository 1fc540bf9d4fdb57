"""deploy/raspberry-pi: the read-only root keeps the data partition a real mount
(clinic-overlay, install.sh's cmdline.txt check), the clock is saved on the data
partition, and the kiosk's browser script tells systemd (sd_notify) only when Chromium
shows the terminal's page: with stand-ins, and for real in a headless cage."""

import http.server
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from deploy_support import DEPLOY, run_install, scratch_root, tree_state

OVERLAY = DEPLOY / "bin/clinic-overlay"
BROWSER = DEPLOY / "bin/clinic-kiosk-browser"
RASPI_CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=5e3da3da-02 rootwait\n"


def stub(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{body}\n")
    (folder / name).chmod(0o755)
    return folder / name


@pytest.fixture
def boot(tmp_path):
    """A cmdline.txt as Raspberry Pi OS ships it, a stand-in raspi-config doing what
    do_overlayfs does to it (0: prepend overlayroot=tmpfs; 1: remove "overlayroot=tmpfs ",
    the literal it matches), and a data directory on this machine's disk."""
    cmdline = tmp_path / "cmdline.txt"
    cmdline.write_text(RASPI_CMDLINE)
    log = tmp_path / "raspi-config.log"
    raspi = stub(
        tmp_path / "bin",
        "raspi-config",
        f'echo "$*" >> {log}\n'
        f'[ "$3" = 0 ] && sed -i "s/^/overlayroot=tmpfs /" {cmdline}\n'
        f'[ "$3" = 1 ] && sed -i "s/overlayroot=tmpfs //" {cmdline}\n'
        "exit 0",
    )
    data = Path(tempfile.mkdtemp(prefix="clinic-overlay-", dir="/var/tmp"))
    env = {**os.environ, "CLINIC_CMDLINE": str(cmdline), "CLINIC_RASPI_CONFIG": str(raspi),
           "CLINIC_DATA_DIR": str(data), "CLINIC_PROC_CMDLINE": "/dev/null"}  # fmt: skip
    yield cmdline, log, data, env
    shutil.rmtree(data)


def overlay(env: dict, *commands: str, own_mount: bool = True) -> list[subprocess.CompletedProcess]:
    """Runs clinic-overlay COMMAND for each command, in a private mount namespace where
    the data directory is (own_mount) or is not a mount of its own."""
    bind = 'mount --bind "$CLINIC_DATA_DIR" "$CLINIC_DATA_DIR" && ' if own_mount else ""
    results = []
    for command in commands:
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f'{bind}exec "$0" "$1"', str(OVERLAY), command],
            env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        results.append(done)
    return results


def test_enable_writes_recurse_0_through_raspi_config_and_disable_removes_it(boot):
    cmdline, log, _, env = boot
    status, enable, again = overlay(env, "status", "enable", "enable")
    assert status.returncode == 0 and "overlayroot=(none)" in status.stdout
    assert enable.returncode == 0, enable.stderr
    assert cmdline.read_text() == "overlayroot=tmpfs:recurse=0 " + RASPI_CMDLINE
    assert log.read_text() == "nonint do_overlayfs 0\n"  # Raspberry Pi OS's own way first
    assert again.returncode == 0 and "already on" in again.stdout
    assert log.read_text() == "nonint do_overlayfs 0\n"
    (status,) = overlay(env, "status")
    assert status.returncode == 0 and "ok: the data's writes reach the disk" in status.stdout

    disable, again = overlay(env, "disable", "disable")
    assert disable.returncode == 0, disable.stderr
    # raspi-config's own sed leaves "overlayroot=tmpfs:recurse=0" alone: removed here.
    assert cmdline.read_text() == RASPI_CMDLINE
    assert log.read_text().splitlines()[-1] == "nonint do_overlayfs 1"
    assert again.returncode == 0 and "already off" in again.stdout


def test_enable_refuses_a_data_directory_on_the_root(boot):
    cmdline, log, _, env = boot
    (refused,) = overlay(env, "enable", own_mount=False)
    assert refused.returncode == 1
    assert "不是单独的数据分区" in refused.stderr and "not a mount of its own" in refused.stderr
    assert cmdline.read_text() == RASPI_CMDLINE and not log.exists()
    cmdline.unlink()
    (missing,) = overlay(env, "enable")
    assert missing.returncode == 1 and "找不到" in missing.stderr
    assert f"{cmdline} not found" in missing.stderr


def test_status_and_repair_of_what_raspi_config_wrote(boot):
    cmdline, log, _, env = boot
    cmdline.write_text("overlayroot=tmpfs " + RASPI_CMDLINE)
    (status,) = overlay(env, "status")
    assert status.returncode == 1 and "overlayroot=tmpfs (" in status.stdout
    assert "不会" in status.stderr and "would not" in status.stderr
    repair, again, status = overlay(env, "repair", "repair", "status")
    assert "overlayroot=tmpfs -> overlayroot=tmpfs:recurse=0" in repair.stdout
    assert cmdline.read_text() == "overlayroot=tmpfs:recurse=0 " + RASPI_CMDLINE
    assert again.returncode == 0 and again.stdout == ""
    assert status.returncode == 0
    (on_root,) = overlay(env, "status", own_mount=False)
    assert on_root.returncode == 1  # recurse=0, but the data is part of the root
    cmdline.write_text("overlayroot=tmpfs:swap=1,recurse=1 " + RASPI_CMDLINE)
    overlay(env, "repair")
    assert cmdline.read_text() == "overlayroot=tmpfs:swap=1,recurse=0 " + RASPI_CMDLINE
    assert not log.exists()  # repair never calls raspi-config


def test_a_read_only_boot_partition_is_refused_clearly(boot):
    cmdline, _, _, env = boot
    cmdline.write_text("overlayroot=tmpfs " + RASPI_CMDLINE)
    script = (
        'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && exec "$0" repair'
    )  # fmt: skip
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(OVERLAY),
         str(cmdline.parent)],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1
    assert "启动分区只读" in done.stderr and "mount -o remount,rw" in done.stderr
    assert cmdline.read_text() == "overlayroot=tmpfs " + RASPI_CMDLINE


def test_install_adds_recurse_0_and_seeds_the_saved_clock(tmp_path):
    root = scratch_root(tmp_path / "root")
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/cmdline.txt").write_text("overlayroot=tmpfs " + RASPI_CMDLINE)
    (root / "etc/fake-hwclock.data").write_text("2026-11-20 08:00:00\n")
    first = run_install(root)
    assert first.returncode == 0, first.stderr
    assert "changed: repaired: overlayroot=tmpfs -> overlayroot=tmpfs:recurse=0" in first.stdout
    assert (root / "boot/firmware/cmdline.txt").read_text() == (
        "overlayroot=tmpfs:recurse=0 " + RASPI_CMDLINE
    )
    saved = root / "var/lib/clinic/.system/fake-hwclock.data"
    assert saved.read_text() == "2026-11-20 08:00:00\n"
    before = tree_state(root)
    second = run_install(root)
    assert second.stdout.splitlines()[-1] == f"install.sh: nothing to change in {root}"
    assert tree_state(root) == before


# ---- the kiosk's browser ---------------------------------------------------------------------


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write("<html><body><h1>村卫生室 clinic</h1></body></html>".encode())

    def log_message(self, *args):
        pass


@contextmanager
def terminal_ui() -> Iterator[str]:
    # Threads, as the terminal (waitress): Chromium keeps idle preconnected sockets open.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def notify_socket(folder: Path) -> Iterator[tuple[str, socket.socket]]:
    """systemd's side of sd_notify: a datagram socket anyone may send to."""
    path = folder / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        path.chmod(0o777)
        sock.settimeout(0.5)
        yield str(path), sock


def messages_until(sock: socket.socket, wanted: str, process: subprocess.Popen, seconds: float):
    """The messages received until one holds `wanted` (or the time is up, or the process
    ended)."""
    got: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            if process.poll() is not None:
                break
            continue
        if wanted in got[-1]:
            break
    return got


def stop(process: subprocess.Popen) -> int:
    process.terminate()
    try:
        return process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(5)


def fake_chromium(bin_dir: Path, renderer: bool) -> None:
    """A stand-in for Chromium: records its flags, then lives (with a renderer child
    process when `renderer`) until the flag file's sibling `quit` appears."""
    spawn = "bash -c 'exec -a \"chromium --type=renderer\" sleep 600' &\n" if renderer else ""
    stub(
        bin_dir,
        "chromium",
        f'printf "%s\\n" "$@" > "$(dirname "$0")/flags"\n{spawn}'
        'while [ ! -e "$(dirname "$0")/quit" ]; do sleep 0.2; done\n'
        "kill $! 2>/dev/null; exit 7",
    )


def run_browser(tmp_path: Path, url: str, notify: str, **env: str) -> subprocess.Popen:
    runtime = tmp_path / "runtime"
    runtime.mkdir(exist_ok=True)
    return subprocess.Popen(
        [str(BROWSER)],
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "CLINIC_UI_URL": url,
             "XDG_RUNTIME_DIR": str(runtime), "NOTIFY_SOCKET": notify, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_ready_only_once_a_renderer_shows_the_page_then_watchdog_pings(tmp_path):
    fake_chromium(tmp_path / "bin", renderer=True)
    with terminal_ui() as url, notify_socket(tmp_path) as (address, sock):
        browser = run_browser(tmp_path, url, address)
        try:
            ready = messages_until(sock, "READY=1", browser, 20)
            assert ready and ready[-1] == f"READY=1\nSTATUS=Chromium shows {url}"
            assert messages_until(sock, "WATCHDOG=1", browser, 20)[-1] == "WATCHDOG=1"
            (tmp_path / "bin/quit").touch()
            assert browser.wait(20) == 7  # Chromium's own status: the unit fails, restarts
        finally:
            stop(browser)
    flags = (tmp_path / "bin/flags").read_text().splitlines()
    assert flags[:2] == ["--kiosk", url]
    assert "--disable-breakpad" in flags and "--disable-crash-reporter" in flags
    profile = next(f for f in flags if f.startswith("--user-data-dir="))
    assert profile.startswith(f"--user-data-dir={tmp_path / 'runtime'}/clinic-kiosk.")
    assert not list((tmp_path / "runtime").iterdir())  # the profile in RAM is gone


def test_no_renderer_no_ready(tmp_path):
    """A browser that never shows a page: systemd hears nothing, TimeoutStartSec= fails it."""
    fake_chromium(tmp_path / "bin", renderer=False)
    with terminal_ui() as url, notify_socket(tmp_path) as (address, sock):
        browser = run_browser(tmp_path, url, address)
        try:
            assert messages_until(sock, "READY=1", browser, 6) == []
            assert browser.poll() is None
        finally:
            assert stop(browser) != 0


def test_the_check_before_cage_wants_xwayland_and_chromium(tmp_path):
    fake_chromium(tmp_path / "bin", renderer=False)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    missing = subprocess.run(
        [str(BROWSER), "--check"], env={**env, "CLINIC_XWAYLAND": str(tmp_path / "Xwayland")},
        capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "没有安装 xwayland" in missing.stderr and "apt install xwayland" in missing.stderr
    xwayland = stub(tmp_path, "Xwayland", "exit 0")
    ok = subprocess.run(
        [str(BROWSER), "--check"], env={**env, "CLINIC_XWAYLAND": str(xwayland)},
        capture_output=True, text=True,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr


def test_a_real_chromium_in_a_headless_cage_says_ready(tmp_path):
    """cage (headless wlroots, pixman) running the script as `nobody` (cage refuses root),
    Chromium (with its sandbox) on a local page: READY=1, then a watchdog ping."""
    runtime = Path(tempfile.mkdtemp(prefix="clinic-kiosk-", dir="/var/tmp"))
    try:
        nobody = int(subprocess.check_output(["id", "-u", "nobody"]))
        nogroup = int(subprocess.check_output(["id", "-g", "nobody"]))
        os.chown(runtime, nobody, nogroup)
        runtime.chmod(0o700)
        log = tmp_path / "cage.log"
        with terminal_ui() as url, notify_socket(runtime) as (address, sock), log.open("w") as out:
            cage = subprocess.Popen(
                ["setpriv", f"--reuid={nobody}", f"--regid={nogroup}", "--clear-groups",
                 "cage", "--", str(BROWSER)],
                env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "NOTIFY_SOCKET": address,
                     "CLINIC_UI_URL": url, "WLR_BACKENDS": "headless",
                     "WLR_LIBINPUT_NO_DEVICES": "1", "WLR_RENDERER": "pixman", "HOME": "/"},
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                ready = messages_until(sock, "READY=1", cage, 60)
                assert ready and ready[-1].startswith("READY=1"), log.read_text()[-2000:]
                assert messages_until(sock, "WATCHDOG=1", cage, 20)[-1] == "WATCHDOG=1"
            finally:
                stop(cage)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
