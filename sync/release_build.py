"""`clinic release build`: a release directory from a checkout (docs/releases.md).

The directory holds `release.json` (`{"manifest": …, "signature": null}`, the county signs
it when it publishes) and every file the manifest names: the project's wheel built from the
checkout, every file of the hashed runtime lock for the target machine (wheels only,
downloaded for that architecture and Python, whatever machine builds), and pyscard's
locked source, which a terminal builds once against its own libpcsclite.

pip does the downloading, with `--require-hashes --no-deps`: a file comes in only when
the lock names it with that hash. Progress goes to standard error.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from packaging.utils import parse_wheel_filename

from edge.adapters.schema import known_migrations
from sync.protocol import MESSAGES, SyncError
from sync.releases import ARCHES, ReleaseFile, make_release_manifest

RELEASE_FILE = "release.json"
# Locked packages without a Linux wheel: shipped as source, built on the terminal.
SOURCE_PACKAGES = ("pyscard",)
# Debian bookworm (and Raspberry Pi OS bookworm) has glibc 2.36: any manylinux wheel up to
# that runs there, the legacy manylinux2014 name included.
GLIBC = (2, 36)
# What a checkout holds besides the source (venvs, caches, earlier builds).
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
              ".hypothesis", "test-artifacts", "demo-data")  # fmt: skip

MESSAGES.update(
    {
        "RELEASE_BUILD_FAILED": ("软件版本构建失败", "building the release failed"),
        "RELEASE_OUT_NOT_EMPTY": (
            "输出目录不是空的，已拒绝（不会覆盖）",
            "the output directory is not empty (nothing is overwritten)",
        ),
    }
)

Progress = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def platform_tags(arch: str) -> list[str]:
    return [f"manylinux2014_{arch}"] + [
        f"manylinux_2_{minor}_{arch}" for minor in range(17, GLIBC[1] + 1)
    ]


def split_lock(text: str, names: Sequence[str]) -> tuple[str, str]:
    """A pip-compile lock cut in two: the entries of the other packages, and those of
    `names` (each entry is its `name==version` line and the indented lines under it)."""
    rest: list[str] = []
    chosen: list[str] = []
    target = rest
    for line in text.splitlines(keepends=True):
        if line[:1].strip() and not line.startswith("#"):
            name = line.split("==")[0].strip().lower()
            target = chosen if name in names else rest
        elif not line.startswith(" "):
            target = rest
        target.append(line)
    return "".join(rest), "".join(chosen)


def file_entry(path: Path, role: str) -> ReleaseFile:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return ReleaseFile(path.name, digest.hexdigest(), path.stat().st_size, role)


def _run(command: list[str], progress: Progress) -> None:
    progress("$ " + " ".join(command))
    # Fixed times in the archives: the same checkout gives the same wheel, byte for byte.
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
    done = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, env=env)
    if done.returncode != 0:
        raise SyncError("RELEASE_BUILD_FAILED", f"pip {command[4]} exited {done.returncode}")


def build_release(
    checkout: Path,
    out: Path,
    *,
    arch: str,
    python: str,
    published_at: datetime,
    lock: Path | None = None,
    find_links: Sequence[Path] = (),
    no_index: bool = False,
    progress: Progress = _stderr,
) -> dict:
    """Fill the empty (or new) folder `out` with a release; its unsigned document."""
    if arch not in ARCHES:
        raise SyncError("RELEASE_MALFORMED", f"arch {arch!r}: one of {', '.join(ARCHES)}")
    if not python.startswith("cp3") or not python[3:].isdigit():
        raise SyncError("RELEASE_MALFORMED", f"python {python!r}: e.g. cp311")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SyncError("RELEASE_OUT_NOT_EMPTY", str(out))
    out.mkdir(parents=True, exist_ok=True)
    lock = lock or checkout / "requirements" / "runtime.txt"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    index = ["--no-index"] if no_index else []
    for folder in find_links:
        index += ["--find-links", str(folder)]
    files: list[ReleaseFile] = []
    with tempfile.TemporaryDirectory(prefix="clinic-release-") as scratch:
        work = Path(scratch)
        progress(f"release: the project's wheel from {checkout}")
        # The locked setuptools of this venv builds it: no isolated env fetching another.
        # From a clean copy: setuptools reuses build/ and never drops a deleted module there.
        copy, built = work / "source", work / "project"
        shutil.copytree(checkout, copy, ignore=shutil.ignore_patterns(*NOT_SOURCE))
        _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(built),
              str(copy)], progress)  # fmt: skip
        (wheel,) = built.glob("*.whl")
        version = str(parse_wheel_filename(wheel.name)[1])
        shutil.move(wheel, out / wheel.name)
        files.append(file_entry(out / wheel.name, "project"))

        binaries, sources = split_lock(lock.read_text(), SOURCE_PACKAGES)
        (work / "binaries.txt").write_text(binaries)
        (work / "sources.txt").write_text(sources)
        progress(f"release: the locked wheels for {arch}/{python} from {lock}")
        platforms = [option for tag in platform_tags(arch) for option in ("--platform", tag)]
        abis = ["--abi", python, "--abi", "abi3", "--abi", "none"]
        downloaded = work / "downloads"
        _run([*pip, "download", *index, "--require-hashes", "--no-deps",
              "--only-binary=:all:", *platforms, "--python-version", python[2] + "." + python[3:],
              "--implementation", "cp", *abis, "-d", str(downloaded),
              "-r", str(work / "binaries.txt")], progress)  # fmt: skip
        wheels = set(downloaded.iterdir())
        if sources.strip():
            progress(f"release: the locked sources of {', '.join(SOURCE_PACKAGES)}")
            _run([*pip, "download", *index, "--require-hashes", "--no-deps",
                  "--no-build-isolation", "--no-binary", ",".join(SOURCE_PACKAGES),
                  "-d", str(downloaded), "-r", str(work / "sources.txt")], progress)  # fmt: skip
        for path in sorted(downloaded.iterdir()):
            shutil.move(path, out / path.name)
            files.append(file_entry(out / path.name, "dependency" if path in wheels else "source"))

    manifest = make_release_manifest(
        version=version, arch=arch, python=python, schema=known_migrations(), files=files,
        published_at=published_at,
    )  # fmt: skip
    document = {"manifest": manifest, "signature": None}
    write_document(out / RELEASE_FILE, document)
    total = sum(f.size for f in files)
    progress(f"release {version} for {arch}/{python}: {len(files)} files, {total} bytes in {out}")
    return document


def write_document(path: Path, document: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
