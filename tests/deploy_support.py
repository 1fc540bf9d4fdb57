"""Helpers for the deployment and maintenance tests (doctor, backup, restore, install.sh)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from clock import NOW

from edge import services
from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore
from edge.domain.documents import visit_from_json

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy" / "raspberry-pi"
RESIDENT = "32011500000001"
POOR = "32011500000005"


def new_device(data_dir: Path, now: datetime = NOW):
    """A device with the demo county's data and an identity: (store, identity)."""
    from edge import demo

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = SqliteDeviceStore.open(data_dir, create=True)
    list(demo.install(store, now))
    identity = services.init_device(store, data_dir, now - timedelta(hours=1))
    return store, identity


def settle(store, identity, now: datetime = NOW, insured_id: str = RESIDENT) -> dict:
    visit = visit_from_json(
        {
            "date": now.date().isoformat(),
            "visit_type": "general",
            "diagnoses": ["J06.900"],
            "lines": [{"code": "XJ01CAA040A001", "quantity": "2"}],
        }
    )
    return services.settle_visit(
        store, identity, insured_id=insured_id, visit=visit, operator="doc01", now=now
    ).record


def settle_many(store, identity, count: int, start: datetime = NOW) -> list[dict]:
    people = [RESIDENT, POOR]
    return [
        settle(store, identity, start + timedelta(minutes=i), people[i % 2]) for i in range(count)
    ]


def mark_synced(store, seq: int, at: datetime) -> None:
    """What the sync agent records once the county hub acknowledged `seq`."""
    store.db.execute("UPDATE device SET synced_seq = ?, last_sync_at = ?", [seq, at.isoformat()])


def break_chain(data_dir: Path, seq: int) -> None:
    """Alter one signed record behind the device's back (the append-only triggers dropped)."""
    conn = sqlite3.connect(data_dir / DATABASE_FILE)
    try:
        conn.execute("DROP TRIGGER ledger_is_append_only_update")
        (text,) = conn.execute("SELECT record FROM ledger WHERE seq = ?", [seq]).fetchone()
        record = json.loads(text)
        record["body"]["result"]["fund"] += 100
        conn.execute("UPDATE ledger SET record = ? WHERE seq = ?", [json.dumps(record), seq])
        conn.commit()
    finally:
        conn.close()


def ledger_rows(data_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(data_dir / DATABASE_FILE)
    try:
        return conn.execute("SELECT seq, tx_id, record FROM ledger ORDER BY seq").fetchall()
    finally:
        conn.close()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (not followed): kind, content or link target, mode, owner,
    modification time in nanoseconds."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                content = file_sha256(path)
            else:
                content = None
            state[str(path.relative_to(root))] = (
                stat.S_IFMT(info.st_mode),
                content,
                stat.S_IMODE(info.st_mode),
                info.st_uid,
                info.st_gid,
                info.st_mtime_ns,
            )
    return state


def scratch_root(root: Path) -> Path:
    """A scratch system root for `install.sh --root`: this machine's user and group files
    (a fresh OS has its own) and its systemd units (pcscd.socket, the targets), which
    `systemctl --root` and `systemd-analyze verify --root` look up inside the root."""
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        if Path("/etc", name).exists():
            shutil.copy2(Path("/etc", name), root / "etc" / name)
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    return root


def run_install(root: Path, *extra: str, path: Path | None = None) -> subprocess.CompletedProcess:
    """install.sh --root ROOT; `path`: a folder of stand-in programs put first on PATH."""
    env = {**os.environ}
    if path is not None:
        env["PATH"] = f"{path}:{env['PATH']}"
    return subprocess.run(
        ["bash", str(DEPLOY / "install.sh"), "--root", str(root), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@contextmanager
def pcscd_without_readers(workdir: Path) -> Iterator[dict[str, str]]:
    """A private pcscd that knows no reader (no reader.conf entries, no USB readers), in
    its own mount namespace like tests/pcsc_fixtures.py's; yields the client's env."""
    conf, run = workdir / "reader.conf.d", workdir / "run"
    conf.mkdir(parents=True)
    run.mkdir()
    script = (
        'mkdir -p /run/pcscd && mount --bind "$1" /run/pcscd'
        ' && exec pcscd --foreground --config "$2"'
    )
    namespace = ["unshare", "--mount", "--propagation", "private"]
    log = workdir / "pcscd.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [*namespace, "sh", "-c", script, "sh", str(run), str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    socket_path = run / "pcscd.comm"
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pcscd did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield {"PCSCLITE_CSOCK_NAME": str(socket_path)}
    finally:
        daemon.terminate()
        try:
            daemon.wait(5)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)
