"""A real, throwaway PostgreSQL server for the hub's tests and benchmarks.

`initdb` + `pg_ctl` from Debian's `postgresql` package (/usr/lib/postgresql/*/bin) in a
scratch directory (`$TMPDIR/clinic-pg-*`), on a free loopback port, as the `postgres` user
when running as root (postgres refuses to run as root). One server per process (started on
first use); every test gets a fresh database. Durability is off: it is a test server.

Nothing outlives the run: the session fixture stops the server and removes its directory
at session end, pass or fail; atexit does it for an interrupted run (Ctrl-C), a SIGTERM
handler for a terminated one. A process killed outright (SIGKILL) cannot clean up, so each
start first removes the clusters of earlier runs whose owner is gone: every directory
records its owner's pid and start time (`owner`), and a cluster whose owner no longer runs
has its postmaster stopped and its directory removed.
"""

import atexit
import contextlib
import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PREFIX = "clinic-pg-"
OWNER_FILE = "owner"
# A directory without an owner file (made before owners were recorded, or by a start that
# has not written it yet) is only removed once it is this old and its postmaster is dead.
UNOWNED_GRACE_S = 600


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), None if there is no such
    process or it has ended (a zombie): with the pid, it names one process even after the
    pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # from field 3, after the command name
    return None if fields[0] in ("Z", "X") else fields[19]


def owner_alive(base: Path) -> bool | None:
    """Whether the process that made the cluster in `base` still runs (None: no owner file)."""
    try:
        pid, start = (base / OWNER_FILE).read_text().split()
    except (OSError, ValueError):
        return None
    return process_start(int(pid)) == start


def postmaster_pid(data: Path) -> int | None:
    """The pid of the postmaster serving `data`, if one runs: the first line of
    postmaster.pid, only if that process works in `data` (the pid may be reused)."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        if os.readlink(f"/proc/{pid}/cwd") == str(data):
            return pid
    except (OSError, ValueError, IndexError):
        pass
    return None


def kill_postmaster(data: Path, timeout: float = 10) -> None:
    """Stop the postmaster of `data`, if one runs: SIGQUIT (immediate shutdown, which
    ends its backends too), SIGKILL if it is still there after `timeout` seconds."""
    pid = postmaster_pid(data)
    if pid is None:
        return
    for signum in (signal.SIGQUIT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        deadline = time.monotonic() + timeout
        while postmaster_pid(data) == pid and time.monotonic() < deadline:
            time.sleep(0.05)
        if postmaster_pid(data) != pid:
            return


def remove_stale_clusters(directory: Path, now: float | None = None) -> list[Path]:
    """Stop and remove the clusters under `directory` left by earlier runs: those whose
    owner is gone, and those without an owner whose postmaster is dead and which are
    older than UNOWNED_GRACE_S. A cluster whose owner runs is another run's: left alone.
    Returns the directories removed."""
    now = time.time() if now is None else now
    removed = []
    for base in sorted(directory.glob(PREFIX + "*")):
        if not base.is_dir() or base.is_symlink():
            continue
        alive = owner_alive(base)
        if alive:
            continue
        if alive is None:
            with contextlib.suppress(OSError):
                if postmaster_pid(base / "data") is not None:
                    continue  # unowned, and served: maybe an older version's live run
                if now - base.stat().st_mtime < UNOWNED_GRACE_S:
                    continue  # maybe a start that has not written its owner file yet
        kill_postmaster(base / "data")
        shutil.rmtree(base, ignore_errors=True)
        if not base.exists():
            removed.append(base)
    return removed


@dataclass
class PostgresServer:
    bin_dir: Path
    base: Path
    port: int
    user: str = "postgres"
    _as_user: tuple[str, ...] = ()
    _counter = itertools.count(1)
    # Only the process that started the server stops it (not a forked child's atexit).
    owner_pid: int = field(default_factory=os.getpid)
    stopped: bool = False
    durable: bool = False  # fsync on, as a county runs it (the load benchmark)

    @property
    def data(self) -> Path:
        return self.base / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as_user, *args], check=True, capture_output=True, text=True, timeout=120
        )

    def start(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        )
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base}"
        options += " -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.base / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        """Stop the server and remove its directory; again, or in another process: nothing."""
        if self.stopped or os.getpid() != self.owner_pid:
            return
        self.stopped = True
        try:
            if postmaster_pid(self.data) is not None:
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    self._run(
                        str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                        "-t", "30", "stop",
                    )  # fmt: skip
                kill_postmaster(self.data)  # if pg_ctl could not
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def create_database(self, prefix: str = "hub") -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


_server: PostgresServer | None = None


def start_server(durable: bool = False) -> PostgresServer:
    """Start a server (the caller stops it), after removing what earlier runs left;
    `durable`: with fsync on (a test server has it off)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
    scratch = Path(tempfile.gettempdir())
    for stale in remove_stale_clusters(scratch):
        print(f"pg_server: removed {stale}, left by an earlier run", file=sys.stderr)
    base = Path(tempfile.mkdtemp(prefix=PREFIX, dir=scratch))
    (base / OWNER_FILE).write_text(f"{os.getpid()} {process_start(os.getpid())}\n")
    as_user: tuple[str, ...] = ()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        as_user = ("runuser", "-u", "postgres", "--")
    server = PostgresServer(bin_dir, base, _free_port(), _as_user=as_user, durable=durable)
    try:
        server.start()
    except BaseException as error:
        server.stop()
        if isinstance(error, subprocess.CalledProcessError):
            output = error.stderr or error.stdout
            raise RuntimeError(f"PostgreSQL did not start: {output}") from None
        raise
    return server


def _stop_on_sigterm(signum, frame) -> None:
    """SIGTERM (a CI timeout, `kill`): stop the server, then die of SIGTERM as before."""
    stop_shared_server()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def shared_server() -> PostgresServer:
    """This process's server, started on first use; stopped by `stop_shared_server`, at
    the latest when the process exits or is sent SIGTERM."""
    global _server
    if _server is None or _server.stopped:
        _server = start_server()
        atexit.register(stop_shared_server)
        with contextlib.suppress(ValueError):  # not the main thread: atexit only
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _stop_on_sigterm)
    return _server


def stop_shared_server() -> None:
    if _server is not None:
        _server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    # make test installs Debian's postgresql: a missing server is a failure, never a skip
    assert postgres_bin() is not None, "PostgreSQL server binaries are not installed"
    try:
        yield shared_server()
    finally:
        stop_shared_server()  # at session end, whatever the tests did


@pytest.fixture
def pg_url(postgres) -> str:
    """A fresh, empty database for one test."""
    return postgres.create_database()


@pytest.fixture
def pg_backend(pg_url, monkeypatch) -> str:
    """Every hub this test makes keeps its data in a fresh PostgreSQL database: hubs are
    opened through `open_hub_store`, which follows $CLINIC_HUB_DATABASE."""
    monkeypatch.setenv("CLINIC_HUB_DATABASE", pg_url)
    return pg_url
