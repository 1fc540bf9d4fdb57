"""The root-side applier of downloaded releases: `clinic release apply`, run as root by
clinic-update.service when the agent has left a complete download
(`DATA_DIR/releases/<version>/READY`, see `sync.agent.releases`), and at boot.

In order (docs/releases.md, "On the device"):

1. a switch left unconfirmed (a power cut, a crash) is finished first: health check, then
   confirmed or rolled back;
2. the newest READY release is verified again as root: the signature against the county
   key pinned in clinic.db, every file's size and hash, `installable_problem` (newer than
   the running version, knows every migration the database has had). A refusal writes
   `releases/failed/<version>` and deletes the download;
3. it is installed beside the running one (`OPT/bin/clinic-install-release DIR
   OPT/releases/<version>/venv`);
4. the applier waits until the outbox is empty and no visit is being built (no
   `visit_draft` row updated in the last 10 minutes: an abandoned draft must not block
   updates forever), polling; after a bounded wait it exits 75 and systemd tries again;
5. it records the switch (`OPT/state/switch.json`, root's) and a pre-switch backup of the database,
   points `OPT/previous` at the running release and `OPT/venv` at the new one (each by the
   rename of a symlink) and restarts the terminal;
6. health check: the unit active and the sign-in page answering, several times in a row
   within a bounded time. Healthy: confirmed (`installed`). Not: switched back by itself,
   the pre-switch database restored when the new release migrated it and no record was
   signed since; `releases/failed/<version>` written.

Everything it writes in the data directory is written as the directory's owner (the
service user), so that the terminal can still use it and the doctor finds no foreign files.
"""

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from edge.adapters.schema import applied_migrations
from edge.adapters.sqlite_store import DATABASE_FILE, StoreError
from edge.maintenance import MaintenanceError, backup, restore
from sync.agent.releases import (
    DOCUMENT,
    DOWNLOAD_PREFIX,
    FAILED,
    READY,
    failed_versions,
    file_matches,
    machine_arch,
    python_tag,
    ready_versions,
    releases_dir,
    running_version,
    write_atomically,
    write_state,
)
from sync.protocol import SyncError, iso, key_fingerprint, load_public_key
from sync.releases import Release, installable_problem, release_version, verify_release

# In OPT/state/ (root's: the applier trusts nothing the service user can write), exists
# only while a switch is unconfirmed.
SWITCH = "switch.json"
LAST_SWITCH = "last-switch.json"
PRE_SWITCH = "pre-switch"  # the pre-switch backup's folder, in releases/
LOCK = "apply.lock"  # OPT/state/apply.lock: one applier (or install.sh) at a time
# The county key root trusts for releases, written by root (`clinic release trust`, run by
# /usr/local/bin/clinic after `enroll`): the service user owns clinic.db and the data
# directory, so neither the key pinned there nor a file there decides what root installs.
TRUST_FILE = Path("/etc/clinic/county-release.pub")
MAX_DOCUMENT_BYTES = 1 << 20
STAGING = "staging"  # OPT/staging/<version>/: root's own copy of a download
INSTALLED_MARK = "INSTALLED"  # in OPT/releases/<version>/, once clinic-install-release succeeded
EXIT_OK, EXIT_ERROR, EXIT_LATER = 0, 1, 75  # 75: EX_TEMPFAIL, systemd runs it again later
# clinic-install-release: a source package (pyscard) not in the wheel cache, no compiler
EXIT_NEEDS_BUILD = 3
INSTALL_ATTEMPTS = 3  # an install that fails this often is the release's fault


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    opt_dir: Path = Path("/opt/clinic")
    systemctl: str = "systemctl"
    unit: str = "clinic-terminal.service"
    health_url: str = "http://127.0.0.1:8080/signin"
    install_script: Path | None = None  # default: OPT/bin/clinic-install-release
    gate_wait_s: float = 30 * 60
    gate_poll_s: float = 15.0
    draft_quiet_s: float = 10 * 60  # a draft untouched this long is abandoned
    health_wait_s: float = 180.0
    health_poll_s: float = 3.0
    health_passes: int = 3
    trust_file: Path = TRUST_FILE
    # this machine (overridable for tests)
    running: str | None = None
    arch: str | None = None
    python: str | None = None

    @property
    def installer(self) -> Path:
        return self.install_script or self.opt_dir / "bin" / "clinic-install-release"

    @property
    def state_dir(self) -> Path:
        return self.opt_dir / "state"

    @property
    def venv_link(self) -> Path:
        return self.opt_dir / "venv"

    @property
    def previous_link(self) -> Path:
        return self.opt_dir / "previous"


@dataclass
class Outcome:
    code: int
    state: str  # nothing | waiting | installed | rolled_back | refused | kept | error
    version: str | None = None
    lines: list[str] = field(default_factory=list)
    echo: Callable[[str], None] | None = None  # each line as it happens (the journal)

    def say(self, zh: str, en: str) -> None:
        self.lines.append(f"{zh} / {en}")
        if self.echo is not None:
            self.echo(self.lines[-1])


class ApplyError(Exception):
    """Something outside the release is wrong (the layout, the database): nothing switched."""


# ---- the data directory, as its owner --------------------------------------------------------


@contextlib.contextmanager
def as_owner(data_dir: Path) -> Iterator[None]:
    """Root acting in the data directory as its owner (the service user): files it creates
    there stay the terminal's own. A no-op when not root or the owner is root."""
    owner = Path(data_dir).stat()
    mask = os.umask(0o077)  # the data directory's files are the service's alone
    try:
        if os.geteuid() != 0 or owner.st_uid == 0:
            yield
            return
        os.setegid(owner.st_gid)
        os.seteuid(owner.st_uid)
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)
    finally:
        os.umask(mask)


@dataclass(frozen=True)
class DatabaseState:
    county_key: str | None
    outbox: int
    latest_draft_at: datetime | None
    head_seq: int
    head_hash: str | None
    migrations: tuple[str, ...]


def database_state(data_dir: Path) -> DatabaseState:
    """Read clinic.db without changing it (and without the store: its schema may be one
    this code does not know, after a newer release migrated it)."""
    path = Path(data_dir) / DATABASE_FILE
    if not path.is_file():
        raise ApplyError(f"no device database at {path}")
    conn = sqlite3.connect(path, timeout=30)
    try:
        enrollment = conn.execute("SELECT county_public_key FROM sync_enrollment").fetchone()
        (outbox,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
        drafts = [row[0] for row in conn.execute("SELECT updated_at FROM visit_draft")]
        head = conn.execute("SELECT seq, record FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return DatabaseState(
            county_key=enrollment[0] if enrollment else None,
            outbox=outbox,
            latest_draft_at=max(map(datetime.fromisoformat, drafts), default=None),
            head_seq=head[0] if head else 0,
            head_hash=json.loads(head[1]).get("hash") if head else None,
            migrations=tuple(applied_migrations(conn)),
        )
    except (sqlite3.Error, ValueError, TypeError, AttributeError) as error:
        raise ApplyError(f"cannot read {path}: {error}") from None
    finally:
        conn.close()


def mark_failed(data_dir: Path, version: str, reason: str, now: datetime) -> None:
    folder = releases_dir(data_dir) / FAILED
    folder.mkdir(mode=0o700, exist_ok=True)
    record = {"version": version, "reason": reason, "at": iso(now)}
    write_atomically(folder / version, json.dumps(record, ensure_ascii=False).encode())


def drop_download(data_dir: Path, version: str) -> None:
    for name in (version, f"{DOWNLOAD_PREFIX}{version}"):
        shutil.rmtree(releases_dir(data_dir) / name, ignore_errors=True)


# ---- checking a download as root -------------------------------------------------------------


def _root_owned(path: Path, *, directory: bool) -> bool:
    info = path.lstat()  # never through a symlink
    kind = stat.S_ISDIR if directory else stat.S_ISREG
    return kind(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022


def trusted_county_key(trust_file: Path) -> str:
    """The county key root recorded for releases (`trust`): a root-owned file in a
    root-owned folder that no one else may write."""
    try:
        sound = _root_owned(trust_file.parent, directory=True)
        sound = sound and _root_owned(trust_file, directory=False)
        key = trust_file.read_text().strip() if sound else ""
    except OSError:
        key = ""
    if not key:
        raise SyncError("RELEASE_UNTRUSTED", str(trust_file))
    return key


def trust(data_dir: Path, trust_file: Path, fingerprint: str | None) -> str:
    """Root records the county key pinned at enrollment as the key releases must be signed
    with. `fingerprint` (as `clinic enroll` and the county print it) must match, unless
    None: /usr/local/bin/clinic right after the enrollment it watched."""
    with as_owner(data_dir):
        facts = database_state(data_dir)
    if facts.county_key is None:
        raise SyncError("NOT_ENROLLED", "no county key is pinned: enroll first")
    load_public_key(facts.county_key)
    found = key_fingerprint(facts.county_key)
    if fingerprint is not None and fingerprint.strip().upper() != found:
        raise ApplyError(f"the pinned county key is {found}, not {fingerprint}: nothing recorded")
    folder = trust_file.parent
    if not _root_owned(folder, directory=True):
        raise ApplyError(f"{folder} is not a folder of root's alone")
    temporary = folder / f".{trust_file.name}.new"
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(facts.county_key + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, trust_file)
    return facts.county_key


def _copy_plain_file(source: Path, target: Path, limit: int) -> None:
    """Copy a regular file (never a symlink's target, never a FIFO), refusing more than
    `limit` bytes."""
    try:
        descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise SyncError("RELEASE_FILE_MISMATCH", f"{source.name}: {error.strerror}") from None
    with os.fdopen(descriptor, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            raise SyncError("RELEASE_FILE_MISMATCH", f"{source.name} is not a plain file")
        with open(target, "xb") as writer:
            while chunk := reader.read(1 << 20):
                writer.write(chunk)
                if writer.tell() > limit:
                    raise SyncError("RELEASE_FILE_MISMATCH", f"{source.name} is too large")


def stage(settings: Settings, version: str) -> Path:
    """Root's own copy of the download in OPT/staging/<version>/: its signature checked
    first (with the key root trusts), then each file copied, at most its signed size. The
    copy is checked and installed from there, so the service user, who owns the download,
    cannot change a file between the check and the install."""
    source = releases_dir(settings.data_dir) / version
    staged = settings.opt_dir / STAGING / version
    shutil.rmtree(staged.parent, ignore_errors=True)  # one staged release at a time
    staged.mkdir(mode=0o700, parents=True)
    _copy_plain_file(source / DOCUMENT, staged / DOCUMENT, MAX_DOCUMENT_BYTES)
    try:
        document = json.loads((staged / DOCUMENT).read_text())
    except ValueError as error:
        raise SyncError("RELEASE_MALFORMED", f"{DOCUMENT}: {error}") from None
    release = verify_release(document, load_public_key(trusted_county_key(settings.trust_file)))
    for file in release.files:  # plain names, checked by verify_release
        _copy_plain_file(source / file.name, staged / file.name, file.size)
    return staged


def check_download(
    settings: Settings, version: str, folder: Path, facts: DatabaseState, now: datetime
) -> Release:
    """The release in `folder` checked as the applier does: SyncError if it must not be
    installed here. Signed with the key root trusts, every file its size and hash."""
    try:
        document = json.loads((folder / DOCUMENT).read_text())
    except (OSError, ValueError) as error:
        raise SyncError("RELEASE_MALFORMED", f"{DOCUMENT}: {error}") from None
    release = verify_release(document, load_public_key(trusted_county_key(settings.trust_file)))
    if release.version != version:
        raise SyncError("RELEASE_MALFORMED", f"{version}/ holds release {release.version}")
    for file in release.files:
        if not file_matches(folder / file.name, file.size, file.sha256):
            raise SyncError("RELEASE_FILE_MISMATCH", file.name)
    problem = installable_problem(
        release,
        arch=settings.arch or machine_arch(),
        python=settings.python or python_tag(),
        running=settings.running or running_version(),
        database_schema=facts.migrations,
    )
    if problem is not None:
        raise problem
    return release


# ---- the installed layout -----------------------------------------------------------------

VOLATILE_TYPES = ("overlay", "tmpfs", "ramfs")


def mount_type(path: Path, mountinfo: str) -> str | None:
    """The file-system type of the mount holding `path`, from /proc/self/mountinfo."""
    best, found = -1, None
    target = os.path.realpath(path)
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        point = parts[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # a later mount on the same point covers it
            best, found = len(point), rest.split()[0]
    return found


def require_persistent(opt_dir: Path) -> None:
    """Under the read-only root (overlayroot) /opt/clinic is an overlay whose writes live
    in RAM: a release installed there, and the switch, would be gone after a reboot while
    the database may have been migrated. So no update then."""
    try:
        kind = mount_type(opt_dir, Path("/proc/self/mountinfo").read_text())
    except OSError:
        return
    if kind in VOLATILE_TYPES:
        raise SyncError("RELEASE_ROOT_VOLATILE", f"{opt_dir} is on {kind}")


def link_target(link: Path) -> str | None:
    try:
        return os.readlink(link)
    except FileNotFoundError:
        return None
    except OSError:  # a real folder, not a symlink: the layout before releases
        raise ApplyError(
            f"{link} is not a symlink: install.sh has not set up the release layout"
        ) from None


def point(link: Path, target: str | None) -> None:
    """Make `link` point at `target` by renaming a new symlink over it (atomic)."""
    if target is None:
        link.unlink(missing_ok=True)
        return
    fresh = link.with_name(f".{link.name}.new")
    fresh.unlink(missing_ok=True)
    fresh.symlink_to(target)
    os.replace(fresh, link)
    descriptor = os.open(link.parent, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def release_home(settings: Settings, version: str) -> Path:
    return settings.opt_dir / "releases" / version


def prune_releases(settings: Settings) -> None:
    """Keep the current release and the previous one; delete older ones."""
    folder = settings.opt_dir / "releases"
    if not folder.is_dir():
        return
    keep = set()
    for link in (settings.venv_link, settings.previous_link):
        if link.is_symlink():
            keep.add(Path(os.path.realpath(link)).parent)
    for entry in folder.iterdir():
        if entry.is_dir() and entry.resolve() not in keep:
            shutil.rmtree(entry, ignore_errors=True)


def install(settings: Settings, version: str, source: Path, outcome: Outcome) -> None:
    """clinic-install-release SOURCE OPT/releases/<version>/venv (once: a retry after the
    gate gave up finds it installed); the staged copy is dropped after."""
    home = release_home(settings, version)
    if (home / INSTALLED_MARK).exists():
        shutil.rmtree(source.parent, ignore_errors=True)
        return
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    try:
        done = subprocess.run(
            [str(settings.installer), str(source), str(home / "venv")],
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(source.parent, ignore_errors=True)
    attempts = settings.state_dir / f"install-attempts-{version}"
    if done.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        detail = f"exit {done.returncode}: {' | '.join(tail)}"
        if done.returncode == EXIT_NEEDS_BUILD:  # this terminal's lack, not the release's
            raise ApplyError(SyncError("RELEASE_NEEDS_BUILD", detail))
        # A full disk or a killed pip is no fault of the release: tried again, and given
        # up for good only after INSTALL_ATTEMPTS failures.
        settings.state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        failures = len(attempts.read_text().split()) + 1 if attempts.exists() else 1
        if failures < INSTALL_ATTEMPTS:
            attempts.write_text("x " * failures)
            raise ApplyError(SyncError("RELEASE_INSTALL_FAILED", f"{detail} (try {failures})"))
        attempts.unlink(missing_ok=True)
        raise SyncError("RELEASE_INSTALL_FAILED", detail)
    attempts.unlink(missing_ok=True)
    (home / INSTALLED_MARK).write_text(f"{version}\n")
    outcome.say(f"已安装 {version}", f"installed {version} into {home / 'venv'}")


# ---- waiting for a quiet moment --------------------------------------------------------------


def quiet(facts: DatabaseState, now: datetime, draft_quiet_s: float) -> str | None:
    """Why the terminal is busy (records not yet with the county, a visit being built), or
    None. A draft untouched for `draft_quiet_s` counts as abandoned."""
    if facts.outbox:
        return f"{facts.outbox} record(s) not yet uploaded"
    if facts.latest_draft_at and now - facts.latest_draft_at < timedelta(seconds=draft_quiet_s):
        return f"a visit is being built (last change {iso(facts.latest_draft_at)})"
    return None


def wait_until_quiet(
    settings: Settings, clock: Callable[[], datetime], sleep: Callable[[float], None]
) -> str | None:
    """Poll until quiet; None when it is, else why not after `gate_wait_s`."""
    deadline = time.monotonic() + settings.gate_wait_s
    while True:
        with as_owner(settings.data_dir):
            busy = quiet(database_state(settings.data_dir), clock(), settings.draft_quiet_s)
        if busy is None or time.monotonic() >= deadline:
            return busy
        sleep(settings.gate_poll_s)


# ---- health ----------------------------------------------------------------------------------


def systemctl(settings: Settings, *args: str) -> int:
    return subprocess.run([settings.systemctl, *args], capture_output=True).returncode


def restart(settings: Settings) -> bool:
    """Restart the terminal, even one systemd gave up on: a broken release crashing in a
    loop hits the unit's start limit, and then a plain restart is refused."""
    systemctl(settings, "reset-failed", settings.unit)
    return systemctl(settings, "restart", settings.unit) == 0


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 200 <= response.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def healthy(settings: Settings, sleep: Callable[[float], None]) -> tuple[bool, str]:
    """The unit active and its page answering `health_passes` times in a row, within
    `health_wait_s`; else why not."""
    deadline = time.monotonic() + settings.health_wait_s
    passes, why = 0, "not checked"
    while True:
        if systemctl(settings, "is-failed", "--quiet", settings.unit) == 0:
            return False, f"{settings.unit} failed"  # systemd gave up on it: no use waiting
        if systemctl(settings, "is-active", "--quiet", settings.unit) != 0:
            passes, why = 0, f"{settings.unit} is not active"
        elif not answers(settings.health_url):
            passes, why = 0, f"{settings.health_url} does not answer"
        else:
            passes += 1
            if passes >= settings.health_passes:
                return True, ""
        if time.monotonic() >= deadline:
            return False, why
        sleep(settings.health_poll_s)


# ---- the switch ------------------------------------------------------------------------------


def read_switch(settings: Settings) -> dict | None:
    """The unconfirmed switch, if any (OPT/state/switch.json: root's alone), its version
    and targets checked against the layout before anything acts on them."""
    path = settings.state_dir / SWITCH
    try:
        value = json.loads(path.read_text())
        release_version(value["to"])
        if value["to_target"] != str(release_home(settings, value["to"]) / "venv"):
            raise ValueError("to_target is not the release's venv")
        homes = str(settings.opt_dir / "releases") + "/"
        for name in ("from_target", "previous_before"):
            if value.get(name) is not None and not str(value[name]).startswith(homes):
                raise ValueError(f"{name} is not a release's venv")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, SyncError) as error:
        raise ApplyError(f"{path} cannot be used: {error}") from None
    return value


def save_switch(settings: Settings, record: dict) -> None:
    settings.state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    write_atomically(settings.state_dir / SWITCH, json.dumps(record, indent=1).encode())


def close_switch(settings: Settings, record: dict, result: str, now: datetime) -> None:
    """The switch is over: kept as the data directory's last-switch.json (for `clinic
    release status`; never read by the applier), with its result."""
    record = {**record, "result": result, "finished_at": iso(now)}
    with as_owner(settings.data_dir):
        folder = releases_dir(settings.data_dir)
        write_atomically(folder / LAST_SWITCH, json.dumps(record, indent=1).encode())
    (settings.state_dir / SWITCH).unlink(missing_ok=True)


def switch(settings: Settings, release: Release, outcome: Outcome, now: datetime) -> dict:
    """Record the switch and a pre-switch backup, then point the links at the new release
    and restart the terminal. Returns the switch record."""
    from_target = link_target(settings.venv_link)
    if from_target is None:
        raise ApplyError(f"{settings.venv_link} does not exist: no release is installed")
    previous_before = link_target(settings.previous_link)
    to_target = str(release_home(settings, release.version) / "venv")
    data_dir = settings.data_dir
    with as_owner(data_dir):
        facts = database_state(data_dir)
        copies = releases_dir(data_dir) / PRE_SWITCH
        shutil.rmtree(copies, ignore_errors=True)  # only this switch's copy is of use
        try:
            made = backup(data_dir, copies, keep=1, now=now)
        except (MaintenanceError, StoreError, sqlite3.Error, OSError) as error:
            raise ApplyError(f"no pre-switch backup, so no switch: {error}") from None
        record: dict = {
            "from": settings.running or running_version(),
            "from_target": from_target,
            "to": release.version,
            "to_target": to_target,
            "previous_before": previous_before,
            "ledger_head": {"seq": facts.head_seq, "hash": facts.head_hash},
            "migrations": list(facts.migrations),
            "backup": str(made.path),
            "at": iso(now),
            "state": "switching",
        }
    # previous first, then the record: while switch.json exists, OPT/previous is the
    # release known to work (clinic-update runs the applier from it)
    point(settings.previous_link, from_target)
    save_switch(settings, record)
    point(settings.venv_link, to_target)
    # not restarted, the old process would still answer the health check
    record["restarted"] = restart(settings)
    outcome.say(
        f"已切换到 {release.version}，正在检查终端", f"switched to {release.version}: checking"
    )
    return record


def finish(
    settings: Settings,
    record: dict,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
    outcome: Outcome,
) -> None:
    """Health check after a switch: confirm it, or switch back by itself. Also what a boot
    does with a switch left unconfirmed (a power cut loses nothing)."""
    version = str(record["to"])
    outcome.version = version
    if record.get("state") != "rolling_back":
        if link_target(settings.venv_link) != record["to_target"]:  # cut before the switch
            point(settings.venv_link, record["to_target"])
            record["restarted"] = restart(settings)
        if record.get("restarted", True):  # after a boot the new release started anew
            ok, why = healthy(settings, sleep)
        else:
            ok, why = False, f"{settings.unit} could not be restarted"
        now = clock()
        if ok:
            with as_owner(settings.data_dir):
                write_state(settings.data_dir, version, "installed", now)
                drop_download(settings.data_dir, version)
            close_switch(settings, record, "installed", now)
            prune_releases(settings)
            outcome.state = "installed"
            outcome.say(f"已更新到 {version}，终端运行正常", f"updated to {version}: healthy")
            return
        record = {**record, "state": "rolling_back", "why": why}
        save_switch(settings, record)
    roll_back(settings, record, clock(), outcome)


def roll_back(settings: Settings, record: dict, now: datetime, outcome: Outcome) -> None:
    version, why = str(record["to"]), str(record.get("why") or "")
    data_dir = settings.data_dir
    # stopped first: a record the new release signs after the head was read would be lost
    # by restoring the pre-switch database
    if systemctl(settings, "stop", settings.unit) != 0:
        raise ApplyError(f"{settings.unit} could not be stopped: rollback tried again later")
    with as_owner(data_dir):
        facts = database_state(data_dir)
    migrated = set(facts.migrations) - set(record["migrations"])
    head = record["ledger_head"]
    moved = (facts.head_seq, facts.head_hash) != (head["seq"], head["hash"])
    if migrated and moved:
        # Records signed on the new schema: restoring would lose them, and the old release
        # cannot open this database (SCHEMA_NEWER). The new release stays; the county sees it.
        keep(settings, record, why, now, outcome)
        return
    point(settings.venv_link, record["from_target"])
    point(settings.previous_link, record.get("previous_before"))
    if migrated:  # nothing signed since the switch: the pre-switch database, as it was
        try:
            with as_owner(data_dir):
                restore(data_dir, Path(record["backup"]), now=now)
        except (MaintenanceError, StoreError, sqlite3.Error, OSError) as lost:
            # the old release cannot open the migrated database: the new one must stay
            point(settings.previous_link, record["from_target"])
            point(settings.venv_link, record["to_target"])
            why = f"{why}; pre-switch database not restored: {lost}"
            keep(settings, record, why, now, outcome)
            return
        outcome.say("已恢复切换前的数据库", "the pre-switch database was restored")
    restart(settings)
    unhealthy = SyncError("RELEASE_UNHEALTHY", why)
    with as_owner(data_dir):
        mark_failed(data_dir, version, f"{unhealthy.code}: {unhealthy.message_en}", now)
        write_state(data_dir, version, "rolled_back", now, unhealthy)
        drop_download(data_dir, version)
    close_switch(settings, record, "rolled_back", now)
    shutil.rmtree(release_home(settings, version), ignore_errors=True)
    outcome.state = "rolled_back"
    outcome.say(unhealthy.message_zh, unhealthy.message_en)


def keep(settings: Settings, record: dict, why: str, now: datetime, outcome: Outcome) -> None:
    """Unhealthy, but only the new release can open the database: it stays, restarted,
    reported as installed with RELEASE_KEPT_UNHEALTHY."""
    version, data_dir = str(record["to"]), settings.data_dir
    error = SyncError("RELEASE_KEPT_UNHEALTHY", why)
    restart(settings)
    with as_owner(data_dir):
        write_state(data_dir, version, "installed", now, error)
        drop_download(data_dir, version)
    close_switch(settings, record, "kept", now)
    prune_releases(settings)
    outcome.state = "kept"
    outcome.say(error.message_zh, error.message_en)


# ---- one run ---------------------------------------------------------------------------------


@contextlib.contextmanager
def apply_lock(settings: Settings) -> Iterator[bool]:
    """OPT/state/apply.lock (root's; install.sh takes it too)."""
    settings.state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    handle = open(settings.state_dir / LOCK, "a")  # noqa: SIM115 (held across the yield)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        handle.close()


def apply(
    settings: Settings,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None] = time.sleep,
    echo: Callable[[str], None] | None = None,
) -> Outcome:
    """One run of the applier (see the module's doc). Exit code in `Outcome.code`; each
    line it says also goes to `echo` as it happens."""
    outcome = Outcome(EXIT_OK, "nothing", echo=echo)
    with apply_lock(settings) as locked:
        if not locked:
            outcome.code, outcome.state = EXIT_LATER, "waiting"
            outcome.say("另一个更新正在进行", "another apply is running")
            return outcome
        try:
            pending = read_switch(settings)
            if pending is not None:
                finish(settings, pending, clock, sleep, outcome)
                return outcome
            _apply_ready(settings, clock, sleep, outcome)
        except (ApplyError, OSError) as error:
            outcome.code, outcome.state = EXIT_ERROR, "error"
            outcome.say("未能更新，未切换", f"not updated, nothing switched: {error}")
        finally:
            shutil.rmtree(settings.opt_dir / STAGING, ignore_errors=True)
    return outcome


def _apply_ready(
    settings: Settings,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
    outcome: Outcome,
) -> None:
    data_dir = settings.data_dir
    with as_owner(data_dir):
        failed = failed_versions(data_dir)
        ready = ready_versions(data_dir)
        for version in ready[:-1]:  # superseded by a newer download
            drop_download(data_dir, version)
    if not ready or ready[-1] in failed:
        if ready:
            with as_owner(data_dir):
                drop_download(data_dir, ready[-1])
        outcome.say("没有待安装的新版本", "no release is waiting")
        return
    version = outcome.version = ready[-1]
    try:
        require_persistent(settings.opt_dir)
        trusted_county_key(settings.trust_file)
    except SyncError as error:  # not the release's fault: kept, tried again later
        with as_owner(data_dir):
            write_state(data_dir, version, "refused", clock(), error)
        raise ApplyError(f"{error.message_zh} / {error.message_en}") from None
    try:
        staged = stage(settings, version)
        with as_owner(data_dir):
            facts = database_state(data_dir)
        release = check_download(settings, version, staged, facts, clock())
        with as_owner(data_dir):
            write_state(data_dir, version, "installing", clock())
        install(settings, version, staged, outcome)
    except ApplyError as waits:  # kept, and tried again once an admin ran install.sh
        reason = waits.args[0]
        if isinstance(reason, SyncError):
            with as_owner(data_dir):
                write_state(data_dir, version, "refused", clock(), reason)
            raise ApplyError(f"{reason.message_zh} / {reason.message_en}") from None
        raise
    except SyncError as error:
        with as_owner(data_dir):
            mark_failed(data_dir, version, f"{error.code}: {error.message_en}", clock())
            write_state(data_dir, version, "refused", clock(), error)
            drop_download(data_dir, version)
        outcome.state = "refused"
        outcome.say(
            f"拒绝安装 {version}：{error.message_zh}", f"{version} refused: {error.message_en}"
        )
        return
    outcome.say(
        "等待终端空闲（记录已上传、无正在录入的就诊）",
        "waiting for the terminal to be idle (outbox empty, no visit being built)",
    )
    busy = wait_until_quiet(settings, clock, sleep)
    if busy is not None:
        outcome.code, outcome.state = EXIT_LATER, "waiting"
        outcome.say(
            "终端正忙（记录未上传或正在录入就诊），稍后再试",
            f"the terminal is busy ({busy}): trying again later",
        )
        return
    record = switch(settings, release, outcome, clock())
    finish(settings, record, clock, sleep, outcome)


def pending_ready(data_dir: Path) -> list[str]:
    """READY downloads not marked failed (for `clinic release status`)."""
    failed = failed_versions(data_dir)
    return [v for v in ready_versions(data_dir) if v not in failed]


__all__ = ["READY", "Settings", "apply", "check_download", "pending_ready"]
