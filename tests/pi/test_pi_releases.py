"""Signed releases on the test Raspberry Pi (docs/releases.md): the county publishes the
next version on the hub inside the container; the device downloads it, switches to it, and
rolls a deliberately broken one back by itself, with the ledger intact."""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pi_device import DATA_DIR, Pi, ledger, terminal_answers, wait_for
from pi_support import log

REPO = Path(__file__).resolve().parents[2]
HOST_CLINIC = Path(sys.executable).with_name("clinic")
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "dist", "build", "*.egg-info", "__pycache__", ".*_cache", "demo-data"
)
# A switch installs a venv from the release's wheels, waits for the gate, restarts and
# checks the terminal several times: minutes on a slow machine.
SWITCH_TIMEOUT = 600


def next_version(running: str, step: int) -> str:
    major, minor, patch = (int(part) for part in running.split(".")[:3])
    return f"{major}.{minor}.{patch + step}"


def build_release(pi: Pi, version: str, *, broken: bool = False) -> str:
    """A copy of this checkout at `version`, built with `clinic release build` (no index:
    the dependencies are the bundle's own release files); copied into the device's root."""
    source = pi.work / f"source-{version}"
    shutil.copytree(REPO, source, ignore=COPY_IGNORE)
    pyproject = source / "pyproject.toml"
    text, count = re.subn(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text())
    assert count == 1, "no version line in pyproject.toml"
    pyproject.write_text(text)
    if broken:  # installs and imports, but the terminal's UI never starts
        app = source / "web_ui" / "app.py"
        text, count = re.subn(
            r"(?m)^(def create_app\(.*\n)",
            r'\1    raise RuntimeError("a deliberately broken release (test-pi)")\n',
            app.read_text(),
        )
        assert count == 1, "no create_app in web_ui/app.py"
        app.write_text(text)
    out = pi.work / f"release-{version}"
    assert pi.bundle is not None, "the release tests need the bundle's dependency files"
    subprocess.run(
        [
            str(HOST_CLINIC),
            "release",
            "build",
            "--arch",
            platform.machine(),
            "--out",
            str(out),
            "--source",
            str(source),
            "--find-links",
            str(pi.bundle / "release"),
            "--no-index",
        ],
        check=True,
        cwd=source,
    )
    inside = f"/root/release-{version}"
    shutil.copytree(out, pi.root / inside.lstrip("/"))
    log(f"built release {version}{' (broken)' if broken else ''}")
    return inside


def venv_target(pi: Pi) -> str:
    return pi.booted.run(["readlink", "/opt/clinic/venv"]).stdout.strip()


def running_version(pi: Pi) -> str:
    return pi.booted.run(["/opt/clinic/venv/bin/clinic", "--version"]).stdout.split()[-1]


def fetched(pi: Pi) -> bool:
    """What the agent does in the background, now instead of at its next run (False: go on
    checking)."""
    pi.clinic("release", "fetch", check=False)
    return False


def test_a_published_release_reaches_the_device_which_switches_to_it(pi: Pi):
    box = pi.booted
    pi.start_hub()
    before = ledger(pi)
    current = running_version(pi)
    version = next_version(current, 1)
    pi.hub("release", "publish", build_release(pi, version))
    took = wait_for(
        f"the device switching to release {version} (/opt/clinic/venv -> releases/{version})",
        lambda: fetched(pi) or venv_target(pi).endswith(f"/releases/{version}/venv"),
        SWITCH_TIMEOUT,
        every=10,
    )
    log(f"switched to {version} within {took:.0f}s of publishing")
    assert running_version(pi) == version
    terminal_answers(box)
    previous = box.run(["readlink", "/opt/clinic/previous"]).stdout.strip()
    assert previous.endswith(f"/releases/{current}/venv"), previous
    after = ledger(pi)
    assert (after["records"], after["last_hash"]) == (before["records"], before["last_hash"])


def test_a_broken_release_is_rolled_back_by_the_device(pi: Pi):
    box = pi.booted
    pi.start_hub()
    before = ledger(pi)
    current = running_version(pi)
    good_target = venv_target(pi)
    version = next_version(current, 1)
    pi.hub("release", "publish", build_release(pi, version, broken=True))
    failed = f"{DATA_DIR}/releases/failed/{version}"
    took = wait_for(
        f"the device rolling back the broken release {version} ({failed} written)",
        lambda: fetched(pi) or box.run(["test", "-f", failed], check=False).returncode == 0,
        SWITCH_TIMEOUT,
        every=10,
    )
    log(f"rolled back {version} within {took:.0f}s of publishing")
    record = json.loads(box.run(["cat", failed]).stdout)
    log(f"the device's reason: {record.get('reason')}")
    journal = box.run(["journalctl", "-u", "clinic-terminal.service", "-o", "cat"]).stdout
    assert "deliberately broken release" in journal, "the broken release never ran"
    assert venv_target(pi) == good_target, "the device is not back on the previous release"
    assert running_version(pi) == current
    terminal_answers(box, timeout=120)
    after = ledger(pi)
    assert (after["records"], after["last_hash"]) == (before["records"], before["last_hash"])
