"""tests/pg_server.py leaves nothing behind: the server is stopped and its directory removed
when the session ends (tests failing or not), on SIGTERM and on an interrupt, and what a
killed run left is removed by the next start. The cleanup rules first, on stand-in
clusters (a `sleep` in the data directory plays the postmaster), then with real servers."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pg_server
import pytest
from pg_server import OWNER_FILE, UNOWNED_GRACE_S, postmaster_pid, remove_stale_clusters

TESTS = Path(__file__).resolve().parents[1]


def finished_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def cluster(directory: Path, name: str, owner: str | None) -> Path:
    """A stand-in cluster: `clinic-pg-NAME/data`, with an owner file when `owner` is given."""
    base = directory / f"{pg_server.PREFIX}{name}"
    (base / "data").mkdir(parents=True)
    if owner is not None:
        (base / OWNER_FILE).write_text(owner + "\n")
    return base


def serve(base: Path) -> subprocess.Popen:
    """A stand-in postmaster: a process working in the data directory, named in
    postmaster.pid as PostgreSQL does."""
    process = subprocess.Popen(["sleep", "120"], cwd=base / "data")
    (base / "data/postmaster.pid").write_text(f"{process.pid}\n{base / 'data'}\n")
    deadline = time.monotonic() + 5
    while postmaster_pid(base / "data") != process.pid:  # until its cwd is the data dir
        assert time.monotonic() < deadline, "the stand-in postmaster did not start"
        time.sleep(0.01)
    return process


def me() -> str:
    return f"{os.getpid()} {pg_server.process_start(os.getpid())}"


@pytest.fixture
def stand_ins():
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        process.kill()
        process.wait()


class TestStaleClusters:
    def test_a_cluster_whose_owner_is_gone_is_stopped_and_removed(self, tmp_path, stand_ins):
        base = cluster(tmp_path, "gone", owner=f"{finished_pid()} 12345")
        stand_ins.append(postmaster := serve(base))
        assert remove_stale_clusters(tmp_path) == [base]
        assert not base.exists()
        assert postmaster.wait(timeout=5) == -signal.SIGQUIT  # PostgreSQL's immediate stop

    def test_a_cluster_whose_owner_runs_is_left_alone(self, tmp_path, stand_ins):
        base = cluster(tmp_path, "mine", owner=me())
        stand_ins.append(postmaster := serve(base))
        unserved = cluster(tmp_path, "starting", owner=me())  # owner alive, no server yet
        assert remove_stale_clusters(tmp_path) == []
        assert base.exists() and unserved.exists() and postmaster.poll() is None

    def test_an_owner_pid_now_used_by_another_process_counts_as_gone(self, tmp_path):
        base = cluster(tmp_path, "reused", owner=f"{os.getpid()} 1")  # not when we started
        assert remove_stale_clusters(tmp_path) == [base]

    def test_a_process_that_is_not_the_postmaster_is_never_signalled(self, tmp_path, stand_ins):
        base = cluster(tmp_path, "pid-reused", owner=f"{finished_pid()} 1")
        stand_ins.append(other := subprocess.Popen(["sleep", "120"], cwd=tmp_path))
        (base / "data/postmaster.pid").write_text(f"{other.pid}\n")  # works elsewhere
        assert postmaster_pid(base / "data") is None
        assert remove_stale_clusters(tmp_path) == [base]
        time.sleep(0.1)
        assert other.poll() is None

    def test_an_unowned_cluster_goes_only_when_old_and_not_served(self, tmp_path, stand_ins):
        """Clusters made before owners were recorded, or by a start that is just writing
        its owner file."""
        old, recent = cluster(tmp_path, "old", None), cluster(tmp_path, "recent", None)
        served = cluster(tmp_path, "served", None)
        stand_ins.append(postmaster := serve(served))
        long_ago = time.time() - UNOWNED_GRACE_S - 60
        for base in (old, served):
            os.utime(base, (long_ago, long_ago))
        assert remove_stale_clusters(tmp_path) == [old]
        assert recent.exists() and served.exists() and postmaster.poll() is None

    def test_only_its_own_directories_are_looked_at(self, tmp_path):
        other = tmp_path / "clinic-other"
        other.mkdir()
        (tmp_path / f"{pg_server.PREFIX}file").write_text("not a cluster")
        assert remove_stale_clusters(tmp_path) == []
        assert other.exists() and (tmp_path / f"{pg_server.PREFIX}file").exists()


# ---- with real servers -------------------------------------------------------------------


@pytest.fixture
def scratch():
    """A scratch $TMPDIR the postgres user can reach (pytest's own folders are closed to
    other users)."""
    assert pg_server.postgres_bin() is not None, "PostgreSQL server binaries are not installed"
    top = Path(tempfile.mkdtemp(prefix="pg-server-test-", dir="/tmp"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        for base in top.glob(f"{pg_server.PREFIX}*"):
            pg_server.kill_postmaster(base / "data")
        shutil.rmtree(top)


def clusters(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{pg_server.PREFIX}*"))


def child(scratch: Path, code: str) -> subprocess.Popen:
    """A Python process with tests/ on its path and `scratch` as its $TMPDIR; what it
    prints is read from its stdout."""
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(TESTS)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE, text=True
    )


def pid_alive(pid: int) -> bool:
    return pg_server.process_start(pid) is not None


def test_the_next_start_removes_what_a_killed_run_left(scratch, monkeypatch):
    code = """
        import os, signal, pg_server
        server = pg_server.shared_server()
        print(pg_server.postmaster_pid(server.data), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    with child(scratch, code) as killed:
        postmaster = int(killed.stdout.readline())
        assert killed.wait(timeout=60) == -signal.SIGKILL
    (left,) = clusters(scratch)
    assert pid_alive(postmaster)  # a server nobody will stop

    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    server = pg_server.start_server()
    try:
        assert not left.exists() and clusters(scratch) == [server.base]
        assert not pid_alive(postmaster)
    finally:
        server.stop()
    assert clusters(scratch) == []


def test_sigterm_stops_the_server_and_removes_its_directory(scratch):
    code = """
        import time, pg_server
        server = pg_server.shared_server()
        print(pg_server.postmaster_pid(server.data), flush=True)
        time.sleep(120)
        """
    with child(scratch, code) as running:
        try:
            postmaster = int(running.stdout.readline())
            assert len(clusters(scratch)) == 1 and pid_alive(postmaster)
            running.send_signal(signal.SIGTERM)
            assert running.wait(timeout=60) == -signal.SIGTERM  # still dies of SIGTERM
        finally:
            running.kill()
            running.wait()
    assert clusters(scratch) == [] and not pid_alive(postmaster)


@pytest.mark.parametrize("ending", ["assert False", "raise KeyboardInterrupt"])
def test_a_session_whose_tests_fail_or_are_interrupted_leaves_nothing(scratch, ending):
    (scratch / "test_uses_postgres.py").write_text(
        textwrap.dedent(
            f"""
            import pg_server
            from pg_server import postgres  # noqa: F401

            def test_it(postgres):
                print("postmaster", pg_server.postmaster_pid(postgres.data), flush=True)
                {ending}
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "--rootdir", str(scratch), str(scratch / "test_uses_postgres.py")],
        env={**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(TESTS)},
        cwd=scratch, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == (1 if ending == "assert False" else 2), done.stdout + done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("postmaster")]
    postmaster = int(line.split()[1])  # the server was there
    assert clusters(scratch) == [] and not pid_alive(postmaster)
