"""One installed test Raspberry Pi for the whole `make test-pi` session (pi_device.Pi)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pi_device import INSTALLED_ROOT, Pi, bundle_path, install_from_bundle
from pi_support import remove_tree


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    work = Path(os.environ.get("CLINIC_PI_WORK", "/var/tmp/clinic-pi-run"))
    if work.exists():
        subprocess.run(["umount", "-q", str(work / "data")], check=False)
        remove_tree(work)
    work.mkdir(parents=True)
    yield work
    if os.environ.get("CLINIC_PI_KEEP") != "1":
        remove_tree(work)


@pytest.fixture(scope="session")
def pi(work_dir) -> Iterator[Pi]:
    """Installed from the bundle with no network, booted, data partition mounted."""
    device = Pi(work_dir, None if INSTALLED_ROOT else bundle_path())
    try:
        if not INSTALLED_ROOT:
            device.install_seconds = install_from_bundle(device)
        device.boot()  # without the bundle: the stick is unplugged after the install
        yield device
    finally:
        device.close()
