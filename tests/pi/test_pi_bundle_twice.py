"""Two installs from the same bundle give the same Debian packages and Python packages."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from pi_device import BUNDLE_IN, Pi
from pi_support import copy_root, log, remove_tree


def packages(root: Path) -> list[str]:
    done = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package} ${Version}\n"],
        check=True,
        capture_output=True,
        text=True,
    )
    return sorted(done.stdout.splitlines())


def pip_freeze(root: Path) -> list[str]:
    """pip freeze, but for pyscard, built on the device from the bundle's sdist: its line
    names the wheel cache folder (the sdist's sha256, which must match) and the local
    wheel's own hash, which differs from build to build (timestamps, build paths)."""
    done = subprocess.run(
        ["chroot", str(root), "/opt/clinic/venv/bin/python", "-m", "pip", "freeze", "--all"],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    return sorted(
        re.sub(r"(/pyscard-[^#]*)#sha256=[0-9a-f]+$", r"\1", line)
        for line in done.stdout.splitlines()
    )


def test_two_installs_from_the_same_bundle_are_identical(pi: Pi):
    assert pi.bundle is not None, "needs the bundle (CLINIC_PI_BUNDLE)"
    second = copy_root(pi.work / "root-second")
    started = time.monotonic()
    try:
        # Not booted (quicker): the same script with --no-systemctl; no network either.
        done = subprocess.run(
            [
                "systemd-nspawn",
                "-D",
                str(second),
                "-q",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "--timezone=off",
                "--resolv-conf=off",
                f"--bind-ro={pi.bundle}:{BUNDLE_IN}",
                f"{BUNDLE_IN}/deploy/raspberry-pi/install.sh",
                "--bundle",
                BUNDLE_IN,
                "--no-systemctl",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert done.returncode == 0, (
            f"the second install failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-3000:]}"
        )
        log(f"second install (not booted) in {time.monotonic() - started:.0f}s")
        first_packages, second_packages = packages(pi.root), packages(second)
        assert first_packages == second_packages, (
            "the two installs' package lists differ: "
            f"{sorted(set(first_packages) ^ set(second_packages))}"
        )
        first_pip, second_pip = pip_freeze(pi.root), pip_freeze(second)
        assert first_pip == second_pip, (
            f"the two installs' pip freeze differ: {sorted(set(first_pip) ^ set(second_pip))}"
        )
        log(f"identical: {len(first_packages)} Debian packages, {len(first_pip)} Python ones")
    finally:
        remove_tree(second)
