"""The `release` job: a newer signed release of this software, downloaded in the
background (as the unprivileged service user) for the root-side applier
(`sync.release_apply`) to install (`docs/releases.md`, "On the device").

What it leaves in the data directory, `releases/`:

- `.download-<version>/`: a download in progress (resumed on the next run);
- `<version>/` with `release.json` (the signed document), every file of the manifest and
  `READY`: complete and checked. The folder is renamed into place with `READY` inside, so
  that `clinic-update.path` (PathExistsGlob=…/releases/*/READY) sees one rename;
- `failed/<version>`: a version this device refused to install or rolled back (written by
  the applier): never downloaded again;
- `state.json`: the latest state of a release on this device, which the heartbeat sends
  and `clinic sync status` / `clinic release status` show.

The job runs apart from the upload job (its own lock and interval), so that a 30 MB
download never delays an upload, and not in "sync now".
"""

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Protocol

from edge.adapters.schema import applied_migrations
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.maintenance.checks import DISK_ERROR_MB
from sync.agent import state
from sync.planner import backoff_delay
from sync.protocol import MESSAGES, SyncError, iso, load_public_key
from sync.releases import Release, installable_problem, release_version, verify_release

RELEASE_JOB = "release"
RELEASES = "releases"
READY = "READY"
DOCUMENT = "release.json"
STATE_FILE = "state.json"
FAILED = "failed"
DOWNLOAD_PREFIX = ".download-"
# The doctor's error threshold for free space on the data partition: a download never
# leaves less than this.
DISK_ERROR_BYTES = DISK_ERROR_MB * 1_000_000
STATES = ("downloading", "ready", "installing", "installed", "rolled_back", "refused")
DETAIL_CHARS = 200  # the heartbeat's `software` member stays small (hub bound: 1 KiB)

MESSAGES.update(
    {
        "RELEASE_NO_ROOM": (
            "数据分区空间不足，暂不下载软件新版本",
            "not enough free space on the data partition to download the release",
        ),
        "RELEASE_INSTALL_FAILED": (
            "软件新版本安装失败，继续使用当前版本",
            "the release could not be installed; the running version stays",
        ),
        "RELEASE_UNHEALTHY": (
            "切换到新版本后终端没有正常响应，已自动退回原版本",
            "the terminal did not answer after the switch: switched back by itself",
        ),
        "RELEASE_KEPT_UNHEALTHY": (
            "新版本健康检查未通过，但数据库已按新版本升级并记有新记录，保留新版本：请联系县里",
            "the health check failed, but the database holds new records on the new"
            " release's schema: the new release stays; call the county",
        ),
        "RELEASE_NEEDS_BUILD": (
            "新版本需要编译 pyscard，但本机没有编译器："
            "请管理员用离线安装包运行 install.sh，之后自动继续",
            "the release needs pyscard built and this terminal has no compiler: an admin runs"
            " install.sh from a bundle, then the update goes on by itself",
        ),
        "RELEASE_UNTRUSTED": (
            "本机还没有由 root 记下县级软件签名公钥：运行"
            " sudo clinic release trust --fingerprint 县里给的指纹，之后自动继续",
            "root has not recorded the county key for releases on this terminal: run sudo"
            " clinic release trust --fingerprint AS-THE-COUNTY-GAVE-IT, then the update goes on",
        ),
        "RELEASE_ROOT_VOLATILE": (
            "只读根文件系统（overlay）开启时不能更新软件：写入只在内存里，重启后就没了",
            "no update while the read-only root (overlay) is on: the install would live in"
            " RAM and be gone after a reboot",
        ),
    }
)


class ReleaseSource(Protocol):
    """The hub's two release calls (`sync.agent.client.HubClient`)."""

    def release_offer(self, arch: str, python: str, running: str, now: datetime) -> dict | None:
        """The newest signed release document newer than `running`, or None."""
        ...

    def release_file(
        self, version: str, arch: str, name: str, dest_path: Path, now: datetime, *, size: int
    ) -> int:
        """Stream one file of the release to `dest_path` (resuming a partial one), at most
        `size` bytes; answers the bytes now there."""
        ...


# ---- this machine ---------------------------------------------------------------------


def running_version() -> str:
    return metadata.version("clinic-terminal")


def installed_version() -> str | None:
    """The running version, or None in a bare checkout (not installed: no updates)."""
    try:
        return running_version()
    except metadata.PackageNotFoundError:
        return None


def machine_arch() -> str:
    machine = platform.machine().lower()
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine)


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


# ---- the files in the data directory ----------------------------------------------------


def releases_dir(data_dir: Path) -> Path:
    return Path(data_dir) / RELEASES


def failed_versions(data_dir: Path) -> set[str]:
    folder = releases_dir(data_dir) / FAILED
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def write_atomically(path: Path, data: bytes) -> None:
    """Written beside and renamed over, synced: a power cut leaves the old or the new."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def ensure_releases_dir(data_dir: Path) -> Path:
    folder = releases_dir(data_dir)
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def read_state(data_dir: Path) -> dict | None:
    try:
        value = json.loads((releases_dir(data_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_state(
    data_dir: Path, version: str, what: str, now: datetime, error: SyncError | None = None
) -> dict:
    """The latest state of a release on this device (`STATES`), with why (bilingual)."""
    value = {
        "version": version,
        "state": what,
        "detail": None if error is None else f"{error.code}: {error.message_en}"[:DETAIL_CHARS],
        "code": None if error is None else error.code,
        "message_zh": None if error is None else error.message_zh,
        "at": iso(now),
    }
    ensure_releases_dir(data_dir)
    write_atomically(releases_dir(data_dir) / STATE_FILE, json.dumps(value).encode())
    return value


def heartbeat_member(data_dir: Path) -> dict | None:
    """The heartbeat's `software` member (docs/sync-protocol.md); None in a bare checkout."""
    version = installed_version()
    if version is None:
        return None
    latest = read_state(data_dir)
    release = None
    if latest is not None and latest.get("state") in STATES:
        release = {key: latest.get(key) for key in ("version", "state", "detail", "at")}
    return {
        "version": version,
        "arch": machine_arch(),
        "python": python_tag(),
        "release": release,
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_matches(path: Path, size: int, sha256: str) -> bool:
    try:
        return path.stat().st_size == size and sha256_of(path) == sha256
    except OSError:
        return False


def ready_versions(data_dir: Path) -> list[str]:
    """Complete downloads (`<version>/READY`), oldest first."""
    folder = releases_dir(data_dir)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        if entry.name.startswith(".") or entry.name == FAILED or not entry.is_dir():
            continue
        if (entry / READY).exists():
            with contextlib.suppress(SyncError):
                found.append((release_version(entry.name), entry.name))
    return [name for _, name in sorted(found)]


# ---- the job ----------------------------------------------------------------------------


def pull_release(
    store: SqliteDeviceStore,
    source: ReleaseSource,
    data_dir: Path,
    county_public_key: str,
    now: datetime,
    *,
    running: str | None = None,
    arch: str | None = None,
    python: str | None = None,
    disk_error_bytes: int = DISK_ERROR_BYTES,
) -> dict | None:
    """Ask the hub for a newer release; verify it and download it. Returns the state
    written (`write_state`), or None when nothing is offered. A file that does not match
    the manifest is deleted and raises RELEASE_FILE_MISMATCH (the job backs off and tries
    again later); a release this device must not install is `refused`, not downloaded."""
    running = running or installed_version()
    if running is None:
        return None  # a bare checkout updates with git, not with releases
    arch, python = arch or machine_arch(), python or python_tag()
    waiting = [v for v in ready_versions(data_dir) if v not in failed_versions(data_dir)]
    if waiting:  # the applier has not taken it yet: nothing more to fetch
        latest = read_state(data_dir)
        if latest and latest.get("version") == waiting[-1] and latest.get("state") == "ready":
            return latest
        return write_state(data_dir, waiting[-1], "ready", now)
    offer = source.release_offer(arch, python, running, now)
    if offer is None:
        return None
    claimed = _claimed_version(offer)
    if claimed in failed_versions(data_dir):
        return None  # rolled back or refused here once: never again
    try:
        release = verify_release(offer, load_public_key(county_public_key))
        schema = applied_migrations(store.db.conn)
        problem = installable_problem(
            release, arch=arch, python=python, running=running, database_schema=schema
        )
        if problem is not None:
            raise problem
    except SyncError as error:
        if not error.code.startswith("RELEASE_") or claimed is None:
            raise  # no version to report it under: the job's error (and backoff)
        return _refused(data_dir, claimed, error, now)
    partial = ensure_releases_dir(data_dir) / f"{DOWNLOAD_PREFIX}{release.version}"
    partial.mkdir(mode=0o700, exist_ok=True)
    _drop_other_downloads(data_dir, partial)
    missing = [f for f in release.files if not file_matches(partial / f.name, f.size, f.sha256)]
    free = shutil.disk_usage(data_dir).free
    if free - sum(f.size for f in missing) < disk_error_bytes:
        needs = release.total_bytes // 1_000_000
        detail = f"{free // 1_000_000} MB free, the release needs {needs} MB"
        return _refused(data_dir, release.version, SyncError("RELEASE_NO_ROOM", detail), now)
    write_state(data_dir, release.version, "downloading", now)
    for file in missing:
        dest = partial / file.name
        if dest.exists() and dest.stat().st_size >= file.size:
            dest.unlink()  # complete but wrong: start this file again
        source.release_file(release.version, release.arch, file.name, dest, now, size=file.size)
        if not file_matches(dest, file.size, file.sha256):
            dest.unlink(missing_ok=True)
            again = f"{file.name} (deleted: downloaded again later)"
            raise SyncError("RELEASE_FILE_MISMATCH", again)
    return _complete(data_dir, partial, release, offer, now)


def _claimed_version(offer: object) -> str | None:
    """The version an offer names, when it is one (the heartbeat may report it)."""
    manifest = offer.get("manifest") if isinstance(offer, dict) else None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    try:
        release_version(version)
    except SyncError:
        return None
    return str(version)


def _refused(data_dir: Path, version: str, error: SyncError, now: datetime) -> dict:
    latest = read_state(data_dir)
    if latest and (latest.get("version"), latest.get("state"), latest.get("code")) == (
        version,
        "refused",
        error.code,
    ):
        return latest  # the same refusal again: keep when it was first seen
    return write_state(data_dir, version, "refused", now, error)


def _drop_other_downloads(data_dir: Path, keep: Path) -> None:
    """A download of another version (one the hub no longer offers) is of no use."""
    for entry in releases_dir(data_dir).iterdir():
        if entry.name.startswith(DOWNLOAD_PREFIX) and entry != keep:
            shutil.rmtree(entry, ignore_errors=True)


def _complete(
    data_dir: Path, partial: Path, release: Release, document: dict, now: datetime
) -> dict:
    """Every file checked: the signed document, then READY, then the folder renamed into
    place — the applier sees a release only once it is whole."""
    names = {f.name for f in release.files}
    for entry in partial.iterdir():
        if entry.name not in names:
            entry.unlink()
    for name in names:
        with open(partial / name, "rb") as handle:
            os.fsync(handle.fileno())
    write_atomically(partial / DOCUMENT, json.dumps(document, ensure_ascii=False).encode())
    write_atomically(partial / READY, b"")
    final = releases_dir(data_dir) / release.version
    if final.exists():  # left over from an earlier, interrupted attempt
        shutil.rmtree(final)
    os.rename(partial, final)
    fsync_dir(final.parent)
    return write_state(data_dir, release.version, "ready", now)


def run_release_job(
    store: SqliteDeviceStore,
    source: ReleaseSource,
    data_dir: Path,
    enrollment: state.Enrollment,
    now: datetime,
    rng: Callable[[], float],
) -> dict | None:
    """One run of the job, its outcome kept in `sync_job` (with a backoff after a failure,
    as the other jobs)."""
    try:
        result = pull_release(store, source, data_dir, enrollment.county_public_key, now)
    except (SyncError, OSError) as error:
        if not isinstance(error, SyncError):
            error = SyncError("AGENT_ERROR", f"{type(error).__name__}: {error}")
        failures = state.job_states(store).get(RELEASE_JOB, state.JobState(RELEASE_JOB)).failures
        delay = backoff_delay(failures + 1, rng)
        state.record_job_outcome(
            store,
            RELEASE_JOB,
            now,
            error_code=error.code,
            error=error.message_en,
            next_attempt_at=now + timedelta(seconds=delay),
        )
        return None
    state.record_job_outcome(store, RELEASE_JOB, now)
    return result


def data_dir_of(store: SqliteDeviceStore) -> Path:
    """The data directory of an open store (the folder of its database file)."""
    row = store.db.execute("PRAGMA database_list").fetchone()
    return Path(row[2]).parent


def software_status(store: SqliteDeviceStore) -> dict:
    """What `clinic sync status` shows of the software: the running version and the latest
    release's state here, with why in both languages."""
    data_dir = data_dir_of(store)
    return {
        "version": installed_version(),
        "arch": machine_arch(),
        "python": python_tag(),
        "release": read_state(data_dir),
        "failed": sorted(failed_versions(data_dir)),
    }
