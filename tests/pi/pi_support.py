"""Boot a Raspberry Pi OS-like Debian root in systemd-nspawn (make test-pi, tests/pi).

The base root is built once with debootstrap and cached under /var/cache/clinic-pi/, keyed
by a hash of its parameters; it is built in a temporary directory and renamed, so an
interrupted build is never used. Each test run works on copies of it (cp --reflink=auto).
Commands run inside a booted container through nsenter (the host's PID 1 is not systemd,
so there is no machined/machinectl to ask).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

CACHE = Path(os.environ.get("CLINIC_PI_CACHE", "/var/cache/clinic-pi"))
SUITE = "bookworm"
MIRROR = os.environ.get("CLINIC_PI_MIRROR", "http://deb.debian.org/debian")
# What Raspberry Pi OS Lite has by default and the terminal relies on; the bundle brings
# the rest (pcscd, cage, xwayland, chromium, python3-venv, ...).
ROOT_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "systemd-timesyncd",
    "dbus",
    "udev",
    "sudo",
    "iproute2",
    "ca-certificates",
    "fake-hwclock",
    "python3",
    "procps",
    "kmod",
    "tzdata",
    "locales",
    "e2fsprogs",
    "util-linux",
    "less",
)
ROOT_FORMAT = 1  # bump to rebuild every cached root after changing how it is shaped
BOOT_TIMEOUT = 120.0


def log(message: str) -> None:
    print(f"[test-pi {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def deb_arch() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], check=True, capture_output=True, text=True
    ).stdout.strip()


def root_key() -> str:
    params = {
        "format": ROOT_FORMAT,
        "suite": SUITE,
        "mirror": MIRROR,
        "arch": deb_arch(),
        "variant": "minbase",
        "packages": sorted(ROOT_PACKAGES),
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _shape_root(root: Path) -> None:
    """What Raspberry Pi OS Lite sets up: a hostname, a time zone, apt without network."""
    (root / "etc/hostname").write_text("clinic-test\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 clinic-test\n")
    tz = root / "etc/localtime"
    tz.unlink(missing_ok=True)
    tz.symlink_to("/usr/share/zoneinfo/Asia/Shanghai")
    (root / "etc/timezone").write_text("Asia/Shanghai\n")
    # The container has no console login to wait for; a getty on the console would only
    # compete with nsenter's output.
    (root / "etc/systemd/system/console-getty.service").symlink_to("/dev/null")
    # The install must work with no downloaded package lists at all (offline bundle).
    for lists in (root / "var/lib/apt/lists").glob("*_Packages"):
        lists.unlink()
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)


def base_root() -> Path:
    """The cached bookworm root, built by debootstrap the first time (~3 minutes)."""
    final = CACHE / f"root-{root_key()}"
    if (final / "etc/os-release").exists():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f"building-{root_key()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"building the base root with debootstrap into {tmp} (about 3 minutes)")
    started = time.monotonic()
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(ROOT_PACKAGES)}",
            f"--arch={deb_arch()}",
            SUITE,
            str(tmp),
            MIRROR,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _shape_root(tmp)
    tmp.rename(final)
    log(f"base root ready in {time.monotonic() - started:.0f}s: {final}")
    return final


def copy_root(dest: Path, source: Path | None = None) -> Path:
    """A private copy of the base root (or of source) for one test run."""
    if dest.exists():
        remove_tree(dest)
    source = source or base_root()
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(dest)], check=True)
    return dest


def remove_tree(path: Path) -> None:
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


class DataPartition:
    """A real ext4 filesystem (sparse image, label clinic-data) loop-mounted on the host."""

    def __init__(self, image: Path, mountpoint: Path, size: str = "512M") -> None:
        self.image = image
        self.mountpoint = mountpoint
        subprocess.run(["truncate", "-s", size, str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "clinic-data", str(image)], check=True)
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.mounted = False
        self.mount()

    def mount(self) -> None:
        opts = "loop,noatime,commit=5"
        subprocess.run(["mount", "-o", opts, str(self.image), str(self.mountpoint)], check=True)
        self.mounted = True

    def umount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.mountpoint)], check=True)
            self.mounted = False


class Container:
    """One boot of a root directory with systemd-nspawn -b (no network unless asked)."""

    def __init__(
        self,
        root: Path,
        *,
        binds: Sequence[str] = (),
        read_only_binds: Sequence[str] = (),
        network: bool = False,
        volatile: str | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.root = root
        args = ["systemd-nspawn", "-D", str(root), "-b", "--register=no", "--keep-unit", "-q"]
        args += ["--machine=clinic-test", "--timezone=off", "--resolv-conf=off"]
        if not network:
            args.append("--private-network")
        if volatile:
            args.append(f"--volatile={volatile}")
        args += [f"--bind={spec}" for spec in binds]
        args += [f"--bind-ro={spec}" for spec in read_only_binds]
        self.log_file = log_file or Path(f"/tmp/clinic-pi-boot-{os.getpid()}.log")
        self._out = self.log_file.open("ab")
        log(f"booting {root}{' (volatile=' + volatile + ')' if volatile else ''}")
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT
        )
        self.leader = self._find_leader()
        self.wait_booted()

    def _find_leader(self) -> int:
        deadline = time.monotonic() + 30
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited at once; see {self.log_file}")
            pids = children.read_text().split() if children.exists() else []
            for pid in pids:
                try:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                except FileNotFoundError:
                    continue
                if comm == "systemd":
                    return int(pid)
            time.sleep(0.1)
        raise AssertionError(f"no systemd in the container after 30 s; see {self.log_file}")

    def wait_booted(self) -> None:
        started = time.monotonic()
        state = ""
        while time.monotonic() - started < BOOT_TIMEOUT:
            state = self.run(
                ["systemctl", "is-system-running"], check=False, timeout=30
            ).stdout.strip()
            if state in ("running", "degraded"):
                log(f"booted ({state}) in {time.monotonic() - started:.1f}s")
                return
            time.sleep(0.5)
        failed = self.run(["systemctl", "--failed", "--no-legend"], check=False).stdout
        raise AssertionError(f"the container did not boot (state {state!r}); failed: {failed}")

    def run(
        self,
        command: Sequence[str] | str,
        *,
        check: bool = True,
        timeout: float = 600,
        user: str | None = None,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command (a list, or a string for bash -c) as root (or user) inside."""
        argv = ["bash", "-c", command] if isinstance(command, str) else list(command)
        environment = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/root",
            **(env or {}),
        }
        prefix = ["nsenter", f"--target={self.leader}", "--all", "--root", "--wd"]
        prefix += ["env", "-i", *(f"{k}={v}" for k, v in environment.items())]
        if user:
            become = 'exec setpriv --reuid="$0" --regid="$(id -g "$0")" --init-groups "$@"'
            prefix += ["bash", "-c", become, user]
        result = subprocess.run(
            prefix + argv, capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"inside the container, {argv!r} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
            )
        return result

    def poweroff(self, timeout: float = 90) -> None:
        if self.process.poll() is None:
            self.run(["systemctl", "poweroff"], check=False, timeout=30)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log("poweroff timed out: killing the container")
                self.kill()
        self._out.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.poweroff()
        finally:
            self.kill()
