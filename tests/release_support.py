"""Helpers of the device release tests: signed releases made in the test (real files,
real hashes, the county key), a device enrolled without a hub, an /opt/clinic in a temp
folder, and stand-ins for systemctl (its "terminal" a tiny real HTTP server) and for
clinic-install-release."""

import hashlib
import json
import os
import socket
import sys
import textwrap
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.adapters.schema import known_migrations
from edge.domain.ledger import b64url, raw_public_key
from sync.agent import state
from sync.agent.releases import DOCUMENT, READY, machine_arch, python_tag, releases_dir
from sync.protocol import iso
from sync.releases import ReleaseFile, make_release_manifest, sign_release

RUNNING = "0.1.0"


def public_key_text(key: Ed25519PrivateKey) -> str:
    return b64url(raw_public_key(key.public_key()))


def enroll_offline(store, device_id: str, county_key: Ed25519PrivateKey, now: datetime) -> None:
    """The enrollment row a hub would have written: the county key pinned."""
    with store.write_transaction():
        state.save_enrollment(
            store,
            state.Enrollment(
                hub_url="http://127.0.0.1:9",
                device_id=device_id,
                slot_id=None,
                clinic_code="C001",
                township="T",
                county_name="County",
                county_public_key=public_key_text(county_key),
                enrolled_at=iso(now),
                clock_offset_s=0,
            ),
        )


def release_files(version: str, count: int = 2) -> dict[str, bytes]:
    """A project "wheel" and its dependencies: plain bytes (the device checks names,
    sizes and hashes; clinic-install-release is a stand-in here)."""
    files = {f"clinic_terminal-{version}-py3-none-any.whl": f"project {version}\n".encode() * 50}
    for index in range(1, count):
        files[f"dep{index}-1.0-py3-none-any.whl"] = os.urandom(2000)
    return files


def signed_release(
    version: str,
    files: dict[str, bytes],
    key: Ed25519PrivateKey,
    now: datetime,
    *,
    schema: list[str] | None = None,
) -> dict:
    entries = [
        ReleaseFile(
            name,
            hashlib.sha256(data).hexdigest(),
            len(data),
            "project" if name.startswith("clinic_terminal-") else "dependency",
        )
        for name, data in files.items()
    ]
    manifest = make_release_manifest(
        version=version,
        arch=machine_arch(),
        python=python_tag(),
        schema=schema or known_migrations(),
        files=entries,
        published_at=now,
    )
    return sign_release(manifest, key)


def place_ready(data_dir: Path, document: dict, files: dict[str, bytes]) -> Path:
    """A complete download, as the agent leaves it."""
    folder = releases_dir(data_dir) / document["manifest"]["version"]
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / DOCUMENT).write_text(json.dumps(document))
    (folder / READY).write_bytes(b"")
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Opt:
    """/opt/clinic in a temp folder, with release 0.1.0 installed and current, and the
    stand-ins. The "terminal" is healthy unless the current venv holds a file BROKEN;
    MIGRATE there makes its start migrate the database (m999_future), SIGN add a record."""

    root: Path
    systemctl: Path
    installer: Path
    calls: Path
    port: int

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/signin"

    def venv_target(self) -> str:
        return os.readlink(self.root / "venv")

    def systemctl_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


SYSTEMCTL = r"""#!{python}
# A stand-in systemctl: records its calls; restart/start/stop run a tiny HTTP server for
# the terminal unless the current release is BROKEN (then, like systemd after a crash
# loop, it refuses to start the unit again until reset-failed).
import json, os, signal, sqlite3, subprocess, sys, time
from pathlib import Path
opt, data, port = Path({opt!r}), Path({data!r}), {port}
pidfile = opt / ".terminal.pid"
with open(opt / ".systemctl-calls", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
def alive():
    try:
        stat = Path(f"/proc/{{int(pidfile.read_text())}}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
def stop():
    if alive():
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
        for _ in range(50):
            if not alive():
                break
            time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
def start():
    venv = Path(os.path.realpath(opt / "venv"))
    db = sqlite3.connect(data / "clinic.db")
    if (venv / "MIGRATE").exists():
        db.execute("INSERT OR IGNORE INTO _sqlite_migrations (migration_set, name, applied_at)"
                   " VALUES ('clinic-device', 'm999_future', 'now')")
    if (venv / "SIGN").exists():
        seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM ledger").fetchone()[0]
        db.execute("INSERT INTO ledger (seq, kind, tx_id, created_at, day, record)"
                   " VALUES (?, 'event', ?, 'now', 'today', ?)",
                   [seq, f"tx{{seq}}", json.dumps({{"hash": f"h{{seq}}"}})])
    db.commit()
    db.close()
    if (venv / "BROKEN").exists():  # it crashes in a loop: systemd gives up on the unit
        limit.touch()
        return
    site = opt / ".site"
    site.mkdir(exist_ok=True)
    (site / "signin").write_text("ok")
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
         "--directory", str(site)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pidfile.write_text(str(server.pid))
verb = sys.argv[1]
limit = opt / ".start-limit-hit"
if verb == "is-active":
    sys.exit(0 if alive() else 3)
if verb == "is-failed":
    sys.exit(0 if limit.exists() else 1)
if verb == "reset-failed":
    limit.unlink(missing_ok=True)
    sys.exit(0)
if verb in ("restart", "start") and limit.exists():
    sys.exit(1)  # "Start request repeated too quickly"
if verb == "restart" and (opt / ".restart-refused").exists():
    sys.exit(1)  # e.g. not allowed to manage units
if verb in ("restart", "stop"):
    stop()
if verb in ("restart", "start"):
    start()
"""

INSTALLER = """#!/bin/bash
# A stand-in clinic-install-release: a venv folder made at once (.install-fails: exit
# with the status it holds).
set -eu
if [ -e "{opt}/.install-fails" ]; then
    echo "no compiler / 缺少编译器" >&2
    exit "$(cat "{opt}/.install-fails")"
fi
mkdir -p "$2/bin"
cp "$1/release.json" "$2/"
for marker in BROKEN MIGRATE SIGN; do
    if [ -e "{opt}/.next-$marker" ]; then touch "$2/$marker"; fi
done
echo "$@" >>"{opt}/.install-calls"
"""


def make_opt(root: Path, data_dir: Path) -> Opt:
    (root / "releases" / RUNNING / "venv" / "bin").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "venv").symlink_to(root / "releases" / RUNNING / "venv")
    port = free_port()
    systemctl = root / "bin" / "systemctl"
    systemctl.write_text(
        SYSTEMCTL.format(python=sys.executable, opt=str(root), data=str(data_dir), port=port)
    )
    installer = root / "bin" / "clinic-install-release"
    installer.write_text(textwrap.dedent(INSTALLER.format(opt=root)))
    for program in (systemctl, installer):
        program.chmod(0o755)
    return Opt(root, systemctl, installer, root / ".systemctl-calls", port)


def trusted_by_root(data_dir: Path, folder: Path) -> Path:
    """`clinic release trust` as /usr/local/bin/clinic runs it after `enroll`: the pinned
    county key recorded in a root-owned folder (the stand-in for /etc/clinic)."""
    from sync import release_apply

    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    folder.chmod(0o755)
    trust_file = folder / "county-release.pub"
    release_apply.trust(data_dir, trust_file, None)
    return trust_file
