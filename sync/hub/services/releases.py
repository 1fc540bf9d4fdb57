"""Software releases at the county hub (`docs/releases.md`): publishing a release
directory (checked, signed with the county key, its files kept under the hub's data
directory), the release a device is offered, withdrawing one, what devices report of
their software in heartbeats, and each release's rollout across the fleet.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.version import InvalidVersion, Version

from sync.hub.model import HubError, PublishedRelease, Slot
from sync.hub.ports import HubStore
from sync.protocol import MESSAGES, SyncError, iso, parse_time
from sync.releases import (
    ARCHES,
    Release,
    ReleaseFile,
    is_newer,
    release_of_manifest,
    release_version,
    sign_release,
)

RELEASE_FILE = "release.json"
RELEASES_DIR = "releases"  # in the hub's data directory: <version>/<arch>/<files>
CHUNK = 1024 * 1024
# What a heartbeat's `software` member may say (shared with the device part).
STATES = ("downloading", "ready", "installing", "installed", "rolled_back", "refused")
MAX_DETAIL = 300
# A running version as a device reports it: a development build may carry a local part.
REPORTED_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}")
PYTHON_TAG = re.compile(r"cp3[0-9]{1,2}")

MESSAGES.update(
    {
        # An alarm: the heartbeat is taken, its `software` member is not.
        "SOFTWARE_REPORT_MALFORMED": (
            "设备上报的软件版本信息格式不正确，已忽略",
            "the device's software report is malformed and was ignored",
        ),
    }
)


def releases_root(hub_dir: Path) -> Path:
    return Path(hub_dir) / RELEASES_DIR


def release_folder(hub_dir: Path, version: str, arch: str) -> Path:
    """Where a published release's files are; `version` and `arch` checked first, so that
    nothing from a request becomes a path unchecked."""
    release_version(version)
    if arch not in ARCHES:
        raise SyncError("NOT_FOUND", f"no architecture {arch!r}")
    return releases_root(hub_dir) / version / arch


def _refused(message_zh: str, message_en: str) -> HubError:
    return HubError(f"{message_zh}，未发布 / {message_en}, nothing published")


def read_release_dir(folder: Path) -> dict:
    """The manifest of a release directory whose files match it by name and size
    (nothing missing, nothing extra); HubError saying what does not. Their SHA-256 is
    checked on the copies the hub keeps (`_stage`)."""
    folder = Path(folder)
    try:
        document = json.loads((folder / RELEASE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _refused(
            f"{folder} 中没有可读的 {RELEASE_FILE}", f"no readable {RELEASE_FILE}: {error}"
        ) from None
    if not isinstance(document, dict) or set(document) != {"manifest", "signature"}:
        raise _refused(
            f"{RELEASE_FILE} 应为 {{manifest, signature}}",
            f"{RELEASE_FILE} is not {{manifest, signature}}",
        )
    manifest = document["manifest"]
    try:
        release = release_of_manifest(manifest)
    except SyncError as error:
        raise _refused(f"{error.message_zh}（{error.detail}）", error.message_en) from None
    present = {p.name for p in folder.iterdir()} - {RELEASE_FILE}
    named = {f.name for f in release.files}
    if present - named:
        extra = ", ".join(sorted(present - named)[:5])
        raise _refused(f"有清单之外的文件：{extra}", f"files the manifest does not name: {extra}")
    if named - present:
        missing = ", ".join(sorted(named - present)[:5])
        raise _refused(f"缺少文件：{missing}", f"files missing: {missing}")
    for entry in release.files:
        path = folder / entry.name
        if not path.is_file() or path.is_symlink():
            raise _refused(f"{entry.name} 不是普通文件", f"{entry.name} is not a plain file")
        if path.stat().st_size != entry.size:
            raise _refused(_MISMATCH_ZH.format(entry.name), _MISMATCH_EN.format(entry.name))
    return manifest


_MISMATCH_ZH = "{} 的大小或 SHA-256 与清单不符"
_MISMATCH_EN = "{}: size or SHA-256 differs from the manifest"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_checked(source: Path, target: Path, entry: ReleaseFile) -> None:
    """Copy one file, checking the bytes copied (not those read earlier) against the
    manifest, and put it on disk."""
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as reader, target.open("xb") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise _refused(_MISMATCH_ZH.format(entry.name), _MISMATCH_EN.format(entry.name))


def _stage(folder: Path, root: Path, document: dict, files: Sequence[ReleaseFile]) -> Path:
    """The release's files copied and checked into a temporary folder under `root`
    (the same file system as their place, so that a rename moves them there)."""
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".incoming-{secrets.token_hex(8)}"
    staging.mkdir()
    try:
        for entry in files:
            _copy_checked(folder / entry.name, staging / entry.name, entry)
        (staging / RELEASE_FILE).write_text(json.dumps(document, ensure_ascii=False, indent=1))
        _fsync_dir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _check_newer(store: HubStore, release: Release) -> None:
    for other in store.releases(release.arch):
        if other.python == release.python and not is_newer(release.version, other.version):
            raise _refused(
                f"版本 {release.version} 不比已发布的 {other.version} 新",
                f"{release.version} is not newer than the published {other.version}",
            )


def publish(
    store: HubStore, county_key: Ed25519PrivateKey, hub_dir: Path, folder: Path, now: datetime
) -> PublishedRelease:
    """Check a release directory (`clinic release build`), sign its manifest with the
    county key, keep its files in `releases/<version>/<arch>/` and record it. A release
    not newer than every one published for its architecture and Python is refused;
    a refusal changes nothing, and a crash leaves no half-published release."""
    manifest = read_release_dir(folder)
    release = release_of_manifest(manifest)
    document = sign_release(manifest, county_key)
    target = release_folder(hub_dir, release.version, release.arch)
    published = PublishedRelease(
        release.version,
        release.arch,
        release.python,
        manifest,
        document["signature"],
        iso(now),
        None,
    )
    _check_newer(store, release)  # before copying anything; again below, under the lock
    staging = _stage(folder, releases_root(hub_dir), document, release.files)
    try:
        with store.unit_of_work():
            _check_newer(store, release)
            store.add_release(published)
            # A folder left by a publication that crashed before its commit is not a
            # release (the database never recorded it): replaced.
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(exist_ok=True)
            staging.rename(target)
            _fsync_dir(target.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return published


def withdraw(store: HubStore, version: str, arch: str, now: datetime) -> PublishedRelease:
    """No longer offered to devices; devices that have it keep it."""
    with store.unit_of_work():
        release = store.release(version, arch)
        if release is None:
            raise HubError(f"没有版本 {version}（{arch}） / no release {version} for {arch}")
        store.withdraw_release(version, arch, iso(now))
    withdrawn = store.release(version, arch)
    assert withdrawn is not None
    return withdrawn


def offer(store: HubStore, *, arch: str, python: str, running: str) -> dict | None:
    """The signed document of the newest published, not withdrawn release for this
    architecture and Python that is newer than `running`; None when there is none."""
    if arch not in ARCHES or not PYTHON_TAG.fullmatch(python or ""):
        raise SyncError("BAD_REQUEST", "arch or python unknown")
    try:
        running_version = Version(running)
    except InvalidVersion:
        raise SyncError("BAD_REQUEST", f"running {running[:40]!r} is not a version") from None
    candidates = [r for r in store.releases(arch) if r.python == python and r.withdrawn_at is None]
    newest = max(candidates, key=lambda r: Version(r.version), default=None)
    if newest is None or Version(newest.version) <= running_version:
        return None
    return newest.document


# ---- what devices report ------------------------------------------------------------------


def _reported_version(value: object, what: str) -> str:
    if not (isinstance(value, str) and REPORTED_VERSION.fullmatch(value)):
        raise ValueError(f"{what} is not a version")
    return value


def software_report(value: object) -> dict:
    """A heartbeat's `software` member, checked and bounded; ValueError when malformed."""
    if not isinstance(value, dict) or not {"version", "arch", "python"} <= set(value):
        raise ValueError("software is not {version, arch, python, release}")
    if set(value) - {"version", "arch", "python", "release"}:
        raise ValueError("software has unknown members")
    if value["arch"] not in ARCHES or not (
        isinstance(value["python"], str) and PYTHON_TAG.fullmatch(value["python"])
    ):
        raise ValueError("software arch or python unknown")
    report = {
        "version": _reported_version(value["version"], "software.version"),
        "arch": value["arch"],
        "python": value["python"],
        "release": None,
    }
    state = value.get("release")
    if state is not None:
        if not isinstance(state, dict) or set(state) != {"version", "state", "detail", "at"}:
            raise ValueError("software.release is not {version, state, detail, at}")
        if state["state"] not in STATES:
            raise ValueError("software.release.state unknown")
        detail = state["detail"]
        if detail is not None and not isinstance(detail, str):
            raise ValueError("software.release.detail is not text")
        try:
            at = iso(parse_time(state["at"], "at"))
        except SyncError:
            raise ValueError("software.release.at is not a date-time") from None
        report["release"] = {
            "version": _reported_version(state["version"], "software.release.version"),
            "state": state["state"],
            "detail": (detail or "")[:MAX_DETAIL],
            "at": at,
        }
    return report


def software_of(slot: Slot) -> dict | None:
    software = slot.heartbeat_doc.get("software")
    return software if isinstance(software, dict) else None


def _runs_on(software: dict | None, release: PublishedRelease) -> bool:
    return (
        software is not None
        and software.get("arch") == release.arch
        and software.get("python") == release.python
    )


def device_release_state(slot: Slot, version: str, arch: str) -> str | None:
    """Where this device is with `version`: `installed` (it runs it or a newer one), a
    state it reported for it (downloading, ready, installing, rolled_back, refused), or
    None (nothing yet, another architecture, or not enrolled)."""
    software = software_of(slot)
    if software is None or software.get("arch") != arch:
        return None
    try:
        if Version(software["version"]) >= Version(version):
            return "installed"
    except (InvalidVersion, KeyError, TypeError):
        return None
    state = software.get("release")
    if isinstance(state, dict) and state.get("version") == version:
        return state.get("state") if state.get("state") != "installed" else None
    return None


def rollout(store: HubStore, slots: Sequence[Slot]) -> list[dict]:
    """Every release, newest first, with how many of `slots`' devices are in each state
    for it (`pending`: enrolled, on its architecture and Python, nothing yet)."""
    enrolled = [s for s in slots if s.device_id and s.revoked_at is None]
    rows = []
    for release in reversed(store.releases()):
        counts = dict.fromkeys((*STATES, "pending"), 0)
        for slot in enrolled:
            if not _runs_on(software_of(slot), release):
                continue
            state = device_release_state(slot, release.version, release.arch) or "pending"
            counts[state] = counts.get(state, 0) + 1
        rows.append({"release": release, "counts": counts})
    return rows
