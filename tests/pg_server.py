"""A real, throwaway PostgreSQL server for the hub's tests and benchmarks.

`initdb` + `pg_ctl` from Debian's `postgresql` package (/usr/lib/postgresql/*/bin) in a
scratch directory, on a free loopback port, as the `postgres` user when running as root
(postgres refuses to run as root). One server per process (started on first use, stopped
at exit); every test gets a fresh database. Durability is off: it is a test server.
"""

import atexit
import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
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


@dataclass
class PostgresServer:
    bin_dir: Path
    base: Path
    port: int
    user: str = "postgres"
    _as_user: tuple[str, ...] = ()
    _counter = itertools.count(1)

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
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
        )
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
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    def create_database(self, prefix: str = "hub") -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


_server: PostgresServer | None = None


def start_server() -> PostgresServer:
    """Start a server (the caller stops it)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="clinic-pg-"))
    as_user: tuple[str, ...] = ()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        as_user = ("runuser", "-u", "postgres", "--")
    server = PostgresServer(bin_dir, base, _free_port(), _as_user=as_user)
    try:
        server.start()
    except subprocess.CalledProcessError as error:
        server.stop()
        raise RuntimeError(f"PostgreSQL did not start: {error.stderr or error.stdout}") from None
    return server


def shared_server() -> PostgresServer:
    """This process's server, started on first use and stopped when the process exits."""
    global _server
    if _server is None:
        _server = start_server()
        atexit.register(_server.stop)
    return _server


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    # make test installs Debian's postgresql: a missing server is a failure, never a skip
    assert postgres_bin() is not None, "PostgreSQL server binaries are not installed"
    return shared_server()


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
