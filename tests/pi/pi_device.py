"""The test Raspberry Pi (a root, its data partition, the current boot) and the checks' helpers."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pi_support import Container, DataPartition, copy_root, log

DATA_DIR = "/var/lib/clinic"
BUNDLE_IN = "/media/stick/pi-bundle"
HUB_DIR = "/srv/clinic-hub"
HUB_URL = "http://127.0.0.1:8470"
VENV_CLINIC = "/opt/clinic/venv/bin/clinic"
# For working on these tests: a root where the install already ran (e.g. a kept run's
# /var/tmp/clinic-pi-run/root): copied instead of installing from the bundle.
INSTALLED_ROOT = os.environ.get("CLINIC_PI_INSTALLED_ROOT", "")


def bundle_path() -> Path:
    value = os.environ.get("CLINIC_PI_BUNDLE", "")
    bundle = Path(value)
    if not value or not (bundle / "BUNDLE.json").is_file():
        raise pytest.UsageError(
            f"CLINIC_PI_BUNDLE={value!r} is not an offline bundle (no BUNDLE.json): run "
            "`make test-pi`, which builds dist/pi-bundle-ARCH, or set PI_BUNDLE=DIR"
        )
    return bundle.resolve()


class Pi:
    """The test Raspberry Pi: a root directory, its data partition, the current boot."""

    def __init__(self, work: Path, bundle: Path | None) -> None:
        self.work = work
        self.bundle = bundle
        self.root = copy_root(work / "root", Path(INSTALLED_ROOT) if INSTALLED_ROOT else None)
        self.install_seconds = 0.0
        self.data = DataPartition(work / "data.img", work / "data")
        if INSTALLED_ROOT:  # what install.sh would have done to the new partition
            entry = next(
                line.split(":")
                for line in (self.root / "etc/passwd").read_text().splitlines()
                if line.startswith("clinic:")
            )
            os.chown(self.data.mountpoint, int(entry[2]), int(entry[3]))
            self.data.mountpoint.chmod(0o700)
        self.container: Container | None = None
        self.boots = 0

    def boot(
        self, *, volatile: str | None = None, data_partition: bool = True, bundle: bool = False
    ) -> Container:
        self.poweroff()
        binds = [f"{self.data.mountpoint}:{DATA_DIR}"] if data_partition else []
        self.boots += 1
        self.container = Container(
            self.root,
            binds=binds,
            volatile=volatile,
            log_file=self.work / f"boot-{self.boots}.log",
            read_only_binds=[f"{self.bundle}:{BUNDLE_IN}"] if bundle and self.bundle else [],
        )
        return self.container

    @property
    def booted(self) -> Container:
        if self.container is None or self.container.process.poll() is not None:
            return self.boot()
        return self.container

    def poweroff(self) -> None:
        if self.container is not None:
            self.container.poweroff()
            self.container.kill()
            self.container = None

    def hub(self, *args: str) -> str:
        """`clinic hub …` on the county hub that runs inside the same container."""
        return self.booted.run([VENV_CLINIC, "hub", *args, "--data-dir", HUB_DIR]).stdout

    def start_hub(self) -> None:
        """`clinic hub serve` on loopback (plain HTTP there), a transient unit of this boot."""
        box = self.booted
        if box.run(["systemctl", "is-active", "--quiet", "test-hub"], check=False).returncode:
            box.run(
                [
                    "systemd-run",
                    "--unit=test-hub",
                    "--collect",
                    VENV_CLINIC,
                    "hub",
                    "serve",
                    "--data-dir",
                    HUB_DIR,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "8470",
                ]
            )
        url = f"{HUB_URL}/api/v1/"
        started = time.monotonic()
        while box.run(["curl", "-s", "-o", "/dev/null", url], check=False).returncode:
            assert time.monotonic() - started < 60, "the hub did not answer within 60 s"
            time.sleep(0.5)

    def clinic(self, *args: str, check: bool = True, input: str | None = None):
        """`sudo clinic …` on the device: /usr/local/bin/clinic, as the service user."""
        return self.booted.run(["clinic", *args], check=check, input=input)

    def close(self) -> None:
        self.poweroff()
        self.data.umount()


def install_from_bundle(pi: Pi) -> float:
    """install.sh --bundle, in the booted root with no network; returns the seconds."""
    started = time.monotonic()
    box = pi.boot(bundle=True)
    done = box.run(
        [f"{BUNDLE_IN}/deploy/raspberry-pi/install.sh", "--bundle", BUNDLE_IN], timeout=1800
    )
    took = time.monotonic() - started
    log(f"offline install done in {took:.0f}s")
    (pi.work / "install.log").write_text(done.stdout + done.stderr)
    return took


SIGNIN = "http://127.0.0.1:8080/signin"


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 1.0) -> float:
    """Seconds until check() held; fails naming what did not happen."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def http_status(box: Container, url: str = SIGNIN) -> str:
    done = box.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url],
        check=False,
    )
    return done.stdout.strip()


def terminal_answers(box: Container, timeout: float = 60) -> float:
    return wait_for(
        f"the terminal answering 200 on {SIGNIN}", lambda: http_status(box) == "200", timeout
    )


def ledger(pi: Pi) -> dict:
    """`clinic ledger verify`: the chain checks out; its length and head hash."""
    done = pi.clinic("ledger", "verify", check=False)
    intact = re.match(r"ledger intact: (\d+) records, last hash (\S+)", done.stdout)
    assert done.returncode == 0 and intact, f"the ledger does not verify: {done}"
    return {"records": int(intact.group(1)), "last_hash": intact.group(2)}
