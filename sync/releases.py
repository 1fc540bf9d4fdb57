"""Signed software releases: what the county publishes so that terminals update themselves.
Pure.

A release is one version of this software for one machine architecture: the project's
own wheel and every locked dependency's file (wheels, and pyscard's source), each named
in a manifest with its size and SHA-256. The county key signs the manifest's canonical
bytes, as it signs county updates (`docs/releases.md`):

    {"manifest": {"v": 1, "kind": "release", "version": "0.2.0", "arch": "aarch64",
                  "python": "cp311", "schema": ["m001_…", …], "published_at": "…",
                  "files": [{"name", "sha256", "size", "role"}, …]},
     "signature": "…"}

`schema` lists the device database migrations the release knows. A device never installs
a release that is not newer than the one it runs, or that does not know every migration
its database has had: that release would run on a schema newer than itself.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from packaging.version import InvalidVersion, Version

from edge.domain.ledger import b64url, b64url_decode
from sync.protocol import MESSAGES, SyncError, canonical_json, iso, parse_time

RELEASE_FORMAT = 1
ARCHES = ("aarch64", "x86_64")
ROLES = ("project", "dependency", "source")
# Bounds, so that a malformed (even correctly signed) manifest cannot fill the data disk.
MAX_FILES = 200
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_RELEASE_BYTES = 256 * 1024 * 1024
# A plain file name (no folder, no leading dot), as wheels and sdists are named.
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
SHA256 = re.compile(r"[0-9a-f]{64}")
MIGRATION_NAME = re.compile(r"m[0-9]{3}_[a-z0-9_]{1,80}")

MESSAGES.update(
    {
        "RELEASE_MALFORMED": ("软件版本清单格式不正确", "the release manifest is malformed"),
        "RELEASE_BAD_SIGNATURE": (
            "软件版本的签名与县级公钥不符，已拒绝",
            "the release's signature does not verify with the pinned county key",
        ),
        "RELEASE_WRONG_ARCH": (
            "软件版本不适用于本机的处理器或 Python",
            "the release is for another architecture or Python",
        ),
        "RELEASE_NOT_NEWER": (
            "软件版本不比正在运行的新，已拒绝（防止回退）",
            "the release is not newer than the running version (rollback refused)",
        ),
        "RELEASE_OLDER_THAN_SCHEMA": (
            "软件版本比本机数据库的结构旧，不能安装",
            "the release does not know every migration this device's database has had",
        ),
        "RELEASE_FILE_MISMATCH": (
            "软件版本的文件与签名清单不符（被改动或不完整）",
            "a release file does not match the signed manifest (altered or incomplete)",
        ),
    }
)


@dataclass(frozen=True)
class ReleaseFile:
    name: str
    sha256: str
    size: int
    role: str


@dataclass(frozen=True)
class Release:
    version: str
    arch: str
    python: str
    schema: tuple[str, ...]
    published_at: datetime
    files: tuple[ReleaseFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)


def release_version(text: object) -> Version:
    """A release's version (PEP 440, as the wheel carries it): public, canonical form."""
    if not isinstance(text, str) or len(text) > 40:
        raise SyncError("RELEASE_MALFORMED", "version is not a string")
    try:
        version = Version(text)
    except InvalidVersion:
        raise SyncError("RELEASE_MALFORMED", f"version {text!r} is not a PEP 440 version") from None
    if version.local is not None or str(version) != text:
        raise SyncError("RELEASE_MALFORMED", f"version {text!r} is not in canonical form")
    return version


def is_newer(candidate: str, running: str) -> bool:
    return release_version(candidate) > Version(running)


# ---- building (publisher) ---------------------------------------------------------------


def make_release_manifest(
    *,
    version: str,
    arch: str,
    python: str,
    schema: Iterable[str],
    files: Iterable[ReleaseFile],
    published_at: datetime,
) -> dict:
    manifest = {
        "v": RELEASE_FORMAT,
        "kind": "release",
        "version": version,
        "arch": arch,
        "python": python,
        "schema": sorted(schema),
        "published_at": iso(published_at),
        "files": [
            {"name": f.name, "sha256": f.sha256, "size": f.size, "role": f.role}
            for f in sorted(files, key=lambda f: f.name)
        ],
    }
    release_of_manifest(manifest)  # the publisher refuses what a device would refuse
    return manifest


def sign_release(manifest: dict, county_key: Ed25519PrivateKey) -> dict:
    return {"manifest": manifest, "signature": b64url(county_key.sign(canonical_json(manifest)))}


# ---- checking (device, hub) ---------------------------------------------------------------


def _file_of(entry: object) -> ReleaseFile:
    if not isinstance(entry, dict) or set(entry) != {"name", "sha256", "size", "role"}:
        raise SyncError("RELEASE_MALFORMED", "a file entry is not {name, sha256, size, role}")
    name, digest, size, role = entry["name"], entry["sha256"], entry["size"], entry["role"]
    if not (isinstance(name, str) and FILE_NAME.fullmatch(name)) or ".." in name:
        raise SyncError("RELEASE_MALFORMED", f"file name {name!r} is not a plain file name")
    if not (isinstance(digest, str) and SHA256.fullmatch(digest)):
        raise SyncError("RELEASE_MALFORMED", f"{name}: sha256 is not 64 lowercase hex digits")
    if type(size) is not int or not 0 < size <= MAX_FILE_BYTES:
        raise SyncError("RELEASE_MALFORMED", f"{name}: size out of bounds")
    if role not in ROLES:
        raise SyncError("RELEASE_MALFORMED", f"{name}: role {role!r} unknown")
    return ReleaseFile(name, digest, size, role)


def release_of_manifest(manifest: object) -> Release:
    """The manifest's release, every member checked; `SyncError(RELEASE_MALFORMED)` else."""
    if not isinstance(manifest, dict) or manifest.get("v") != RELEASE_FORMAT:
        raise SyncError("RELEASE_MALFORMED", "not a release manifest of format 1")
    if manifest.get("kind") != "release":
        raise SyncError("RELEASE_MALFORMED", "kind is not release")
    version = manifest.get("version")
    release_version(version)
    arch, python = manifest.get("arch"), manifest.get("python")
    python_tag = isinstance(python, str) and re.fullmatch(r"cp3[0-9]{1,2}", python)
    if arch not in ARCHES or not python_tag:
        raise SyncError("RELEASE_MALFORMED", "arch or python unknown")
    schema = manifest.get("schema")
    if not isinstance(schema, list) or not schema or len(schema) > 1000:
        raise SyncError("RELEASE_MALFORMED", "schema is not a list of migrations")
    if not all(isinstance(name, str) and MIGRATION_NAME.fullmatch(name) for name in schema):
        raise SyncError("RELEASE_MALFORMED", "schema names a migration badly")
    try:
        published_at = parse_time(manifest.get("published_at"), "published_at")
    except SyncError:
        raise SyncError("RELEASE_MALFORMED", "published_at is not a date-time") from None
    entries = manifest.get("files")
    if not isinstance(entries, list) or not 0 < len(entries) <= MAX_FILES:
        raise SyncError("RELEASE_MALFORMED", f"files: 1 to {MAX_FILES} entries")
    files = tuple(_file_of(entry) for entry in entries)
    if len({f.name for f in files}) != len(files):
        raise SyncError("RELEASE_MALFORMED", "a file is named twice")
    if [f.role for f in files].count("project") != 1:
        raise SyncError("RELEASE_MALFORMED", "exactly one file must be the project's wheel")
    release = Release(str(version), str(arch), str(python), tuple(schema), published_at, files)
    if release.total_bytes > MAX_RELEASE_BYTES:
        raise SyncError("RELEASE_MALFORMED", "the release is too large")
    return release


def verify_release(document: object, county_key: Ed25519PublicKey) -> Release:
    """The signed release document, its signature checked against the pinned county key."""
    if not isinstance(document, dict):
        raise SyncError("RELEASE_MALFORMED", "not an object")
    manifest, signature = document.get("manifest"), document.get("signature")
    if not isinstance(manifest, dict) or not isinstance(signature, str):
        raise SyncError("RELEASE_MALFORMED", "manifest or signature missing")
    try:
        county_key.verify(b64url_decode(signature), canonical_json(manifest))
    except (InvalidSignature, ValueError, TypeError):
        raise SyncError("RELEASE_BAD_SIGNATURE") from None
    return release_of_manifest(manifest)


def installable_problem(
    release: Release, *, arch: str, python: str, running: str, database_schema: Sequence[str]
) -> SyncError | None:
    """Why this device must not install the release, or None."""
    if release.arch != arch or release.python != python:
        wanted = f"{release.arch}/{release.python} for {arch}/{python}"
        return SyncError("RELEASE_WRONG_ARCH", wanted)
    if not is_newer(release.version, running):
        return SyncError("RELEASE_NOT_NEWER", f"{release.version} offered, {running} running")
    unknown = sorted(set(database_schema) - set(release.schema))
    if unknown:
        lacking = f"{release.version} lacks {', '.join(unknown)}"
        return SyncError("RELEASE_OLDER_THAN_SCHEMA", lacking)
    return None
