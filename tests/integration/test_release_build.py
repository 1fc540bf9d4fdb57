"""`clinic release build` (sync/release_build.py) and the terminal's installer of a release,
deploy/raspberry-pi/bin/clinic-install-release, with real pip and real wheels and sources
made here (no network: a wheelhouse and a lock of this test's own)."""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from clock import NOW
from deploy_support import DEPLOY, REPO

from edge.adapters.schema import known_migrations
from sync.protocol import SyncError
from sync.release_build import build_release, split_lock
from sync.releases import ReleaseFile, make_release_manifest, release_of_manifest

INSTALL_RELEASE = DEPLOY / "bin" / "clinic-install-release"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_wheel(
    folder: Path, name: str, version: str, files: dict[str, str],
    tag: str = "py3-none-any", scripts: dict[str, str] | None = None,
) -> Path:  # fmt: skip
    """A real wheel, as setuptools would make it (pip installs it)."""
    dist = f"{name.replace('-', '_')}-{version}"
    info = {
        "METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        "WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if scripts:
        lines = "".join(f"{command} = {target}\n" for command, target in scripts.items())
        info["entry_points.txt"] = "[console_scripts]\n" + lines
    members = {**files, **{f"{dist}.dist-info/{key}": text for key, text in info.items()}}
    record = "".join(f"{path},,\n" for path in members) + f"{dist}.dist-info/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in {**members, f"{dist}.dist-info/RECORD": record}.items():
            archive.writestr(member, text)
    return path


# A PEP 517 backend in the source itself: the sdist builds without setuptools or network.
BACKEND = """
import base64, hashlib, zipfile

NAME, VERSION = "pyscard", "2.3.1"
DIST = f"{NAME}-{VERSION}"
FILES = {"smartcard/__init__.py": "BUILT_HERE = True\\n"}
META = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n"

def prepare_metadata_for_build_wheel(directory, config_settings=None):
    import os
    os.makedirs(f"{directory}/{DIST}.dist-info")
    with open(f"{directory}/{DIST}.dist-info/METADATA", "w") as out:
        out.write(META)
    return f"{DIST}.dist-info"

def build_wheel(directory, config_settings=None, metadata_directory=None):
    name = f"{DIST}-cp311-cp311-linux_x86_64.whl"
    wheel = ("Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: false\\n"
             "Tag: cp311-cp311-linux_x86_64\\n")
    members = {**FILES, f"{DIST}.dist-info/METADATA": META, f"{DIST}.dist-info/WHEEL": wheel}
    with zipfile.ZipFile(f"{directory}/{name}", "w") as archive:
        for member, text in members.items():
            archive.writestr(member, text)
        archive.writestr(f"{DIST}.dist-info/RECORD", "".join(f"{m},,\\n" for m in members))
    return name
"""


def make_sdist(folder: Path) -> Path:
    """pyscard's source, as a test double: `pyscard-2.3.1.tar.gz`."""
    members = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
        'backend-path = ["."]\n\n[project]\nname = "pyscard"\nversion = "2.3.1"\n',
        "PKG-INFO": "Metadata-Version: 2.1\nName: pyscard\nVersion: 2.3.1\n",
        "backend.py": BACKEND,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pyscard-2.3.1.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in members.items():
            data = text.encode()
            entry = tarfile.TarInfo(f"pyscard-2.3.1/{name}")
            entry.size = len(data)
            archive.addfile(entry, io.BytesIO(data))
    return path


# ---- clinic release build -------------------------------------------------------------------


def test_split_lock_takes_whole_entries():
    lock = (
        "# header\nabc==1.0 \\\n    --hash=sha256:aa\n    # via x\n"
        "pyscard==2.3.1 \\\n    --hash=sha256:bb\n    # via clinic\n"
        "zed==2 \\\n    --hash=sha256:cc\n\n# The following packages are unsafe\npip==26 \\\n"
        "    --hash=sha256:dd\n"
    )
    rest, chosen = split_lock(lock, ("pyscard",))
    assert chosen == "pyscard==2.3.1 \\\n    --hash=sha256:bb\n    # via clinic\n"
    assert "pyscard" not in rest and "abc==1.0" in rest and "pip==26" in rest
    assert len(rest) + len(chosen) == len(lock)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> tuple[Path, Path]:
    """A wheelhouse and its hashed lock: a pure wheel, a compiled one (one file per
    machine), and pyscard's source."""
    house = tmp_path_factory.mktemp("wheelhouse")
    tiny = make_wheel(house, "tinydep", "1.0", {"tinydep.py": "VALUE = 'tiny'\n"})
    built = make_wheel(house / "x", "fastdep", "2.0", {"fastdep.py": "FAST = True\n"})
    hashes = []
    for arch in ("x86_64", "aarch64"):
        machine = house / f"fastdep-2.0-cp311-cp311-manylinux_2_17_{arch}.manylinux2014_{arch}.whl"
        machine.write_bytes(built.read_bytes() + arch.encode())  # a different file per machine
        hashes.append(sha256(machine))
    (house / "x" / built.name).unlink()
    (house / "x").rmdir()
    sdist = make_sdist(house)
    lock = house.parent / f"{house.name}.txt"
    lock.write_text(
        f"fastdep==2.0 \\\n    --hash=sha256:{hashes[0]} \\\n    --hash=sha256:{hashes[1]}\n"
        f"    # via clinic-terminal\npyscard==2.3.1 \\\n    --hash=sha256:{sha256(sdist)}\n"
        f"tinydep==1.0 \\\n    --hash=sha256:{sha256(tiny)}\n"
    )
    return house, lock


@pytest.mark.parametrize("arch", ["aarch64", "x86_64"])
def test_a_release_holds_the_project_wheel_and_the_locked_files_for_its_machine(
    tmp_path, wheelhouse, arch
):
    house, lock = wheelhouse
    out = tmp_path / "release"
    lines: list[str] = []
    document = build_release(
        REPO, out, arch=arch, python="cp311", published_at=NOW, lock=lock,
        find_links=[house], no_index=True, progress=lines.append,
    )  # fmt: skip
    assert document["signature"] is None
    assert json.loads((out / "release.json").read_text()) == document
    release = release_of_manifest(document["manifest"])
    version = subprocess.check_output(
        [sys.executable, "-c", "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))"
         "['project']['version'])"], cwd=REPO, text=True,
    ).strip()  # fmt: skip
    assert (release.version, release.arch, release.python) == (version, arch, "cp311")
    assert list(release.schema) == known_migrations() and "m011_hub_certificate" in release.schema
    assert release.published_at == NOW
    roles = {f.name: f.role for f in release.files}
    assert roles == {
        f"clinic_terminal-{version}-py3-none-any.whl": "project",
        f"fastdep-2.0-cp311-cp311-manylinux_2_17_{arch}.manylinux2014_{arch}.whl": "dependency",
        "tinydep-1.0-py3-none-any.whl": "dependency",
        "pyscard-2.3.1.tar.gz": "source",
    }
    assert sorted(p.name for p in out.iterdir()) == sorted([*roles, "release.json"])
    for f in release.files:
        assert (f.sha256, f.size) == (sha256(out / f.name), (out / f.name).stat().st_size)
    with zipfile.ZipFile(out / f"clinic_terminal-{version}-py3-none-any.whl") as wheel:
        names = wheel.namelist()
    assert (
        "sync/release_build.py" in names
        and "web_ui/translations/zh/LC_MESSAGES/messages.mo" in names
    )
    assert not any(name.startswith(("tests/", ".venv/")) for name in names)
    assert any("pip" in line and "download" in line for line in lines)


def test_the_build_refuses_a_folder_that_is_not_empty_and_a_file_not_locked(tmp_path, wheelhouse):
    house, lock = wheelhouse
    out = tmp_path / "used"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(SyncError) as refused:
        build_release(REPO, out, arch="x86_64", python="cp311", published_at=NOW, lock=lock,
                      find_links=[house], no_index=True, progress=lambda line: None)  # fmt: skip
    assert (
        refused.value.code == "RELEASE_OUT_NOT_EMPTY"
        and "输出目录不是空的" in refused.value.message_zh
    )
    assert sorted(p.name for p in out.iterdir()) == ["something"]

    bad = tmp_path / "bad-lock.txt"  # tinydep's hash is not its file's: pip must refuse it
    bad.write_text(
        lock.read_text().replace(sha256(house / "tinydep-1.0-py3-none-any.whl"), "2" * 64)
    )
    with pytest.raises(SyncError) as failed:
        build_release(
            REPO, tmp_path / "new", arch="x86_64", python="cp311", published_at=NOW, lock=bad,
            find_links=[house], no_index=True, progress=lambda line: None,
        )  # fmt: skip
    assert failed.value.code == "RELEASE_BUILD_FAILED"
    assert not (tmp_path / "new" / "release.json").exists()


def test_clinic_release_build_command_line(tmp_path, wheelhouse):
    house, lock = wheelhouse
    out = tmp_path / "cli-release"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "clinic"), "release", "build", "--arch", "aarch64",
         "--out", str(out), "--source", str(REPO), "--lock", str(lock), "--find-links",
         str(house), "--no-index"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.startswith(f"{out}: release ") and "for aarch64/cp311, 4 files" in done.stdout
    )
    assert "release: the locked wheels for aarch64/cp311" in done.stderr  # progress on stderr
    again = subprocess.run(
        [str(Path(sys.executable).parent / "clinic"), "release", "build", "--arch", "aarch64",
         "--out", str(out)], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 1 and "RELEASE_OUT_NOT_EMPTY" in again.stderr


# ---- clinic-install-release -----------------------------------------------------------------


FAKE_CLINIC = """
import smartcard, tinydep

def main():
    print("clinic, version 9.1")
"""


def make_release(folder: Path) -> Path:
    """A release directory (unsigned) whose `clinic` needs its dependency and pyscard."""
    files = [
        make_wheel(folder, "clinic-terminal", "9.1", {"fakeclinic.py": FAKE_CLINIC},
                   scripts={"clinic": "fakeclinic:main"}),
        make_wheel(folder, "tinydep", "1.0", {"tinydep.py": "VALUE = 'tiny'\n"}),
        make_sdist(folder),
    ]  # fmt: skip
    roles = ["project", "dependency", "source"]
    entries = [ReleaseFile(p.name, sha256(p), p.stat().st_size, role)
               for p, role in zip(files, roles, strict=True)]  # fmt: skip
    manifest = make_release_manifest(
        version="9.1", arch="x86_64", python="cp311", schema=known_migrations(), published_at=NOW,
        files=entries,
    )  # fmt: skip
    (folder / "release.json").write_text(json.dumps({"manifest": manifest, "signature": None}))
    return folder


def install_release(release: Path, target: Path, opt: Path, compiler: str = "gcc"):
    env = {**os.environ, "CLINIC_WHEEL_CACHE": str(opt / "wheels"),
           "CLINIC_CURRENT_VENV": str(opt / "venv"), "CC": compiler}  # fmt: skip
    return subprocess.run([str(INSTALL_RELEASE), str(release), str(target)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_release_installs_into_a_new_venv_with_its_source_built_once(tmp_path):
    release, opt = make_release(tmp_path / "release"), tmp_path / "opt"
    target = opt / "releases/9.1/venv"
    done = install_release(release, target, opt)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"installed release 9.1 in {target}" in done.stdout
    assert subprocess.check_output([target / "bin/clinic", "--version"], text=True) == (
        "clinic, version 9.1\n"
    )
    assert (target / ".clinic-release.json").read_bytes() == (release / "release.json").read_bytes()
    source_sha = sha256(release / "pyscard-2.3.1.tar.gz")
    cached = list((opt / "wheels" / source_sha).glob("*.whl"))
    assert [p.name for p in cached] == ["pyscard-2.3.1-cp311-cp311-linux_x86_64.whl"]
    frozen = subprocess.check_output([target / "bin/python", "-m", "pip", "freeze", "--all"],
                                     text=True)  # fmt: skip
    # By name and version, not by where the release lay: installs compare equal.
    assert {"clinic-terminal==9.1", "tinydep==1.0", "pyscard==2.3.1"} <= set(frozen.split())
    assert "file:" not in frozen

    # Again, elsewhere, with no compiler: pyscard's wheel comes from the cache.
    again = install_release(release, opt / "releases/9.1b/venv", opt, compiler="/nonexistent/cc")
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stdout
    # An interrupted earlier install in the target is replaced.
    (opt / "releases/9.1b/venv/.clinic-release.json").unlink()
    redo = install_release(release, opt / "releases/9.1b/venv", opt)
    assert redo.returncode == 0 and "removing" in redo.stdout


def test_no_compiler_and_no_cached_wheel_exits_3_before_changing_anything(tmp_path):
    release, opt = make_release(tmp_path / "release"), tmp_path / "opt"
    target = opt / "releases/9.1/venv"
    done = install_release(release, target, opt, compiler="/nonexistent/cc")
    assert done.returncode == 3
    assert "需要编译，但本机没有编译器" in done.stderr and "there is no compiler" in done.stderr
    assert not target.exists()


def test_a_file_that_is_not_the_manifests_is_refused(tmp_path):
    release, opt = make_release(tmp_path / "release"), tmp_path / "opt"
    wheel = release / "tinydep-1.0-py3-none-any.whl"
    data = bytearray(wheel.read_bytes())
    data[-30] ^= 1  # same size, other bytes
    wheel.write_bytes(bytes(data))
    target = opt / "releases/9.1/venv"
    done = install_release(release, target, opt)
    assert done.returncode != 0 and "THESE PACKAGES DO NOT MATCH THE HASHES" in done.stderr
    assert not (target / ".clinic-release.json").exists()

    (opt / "releases/9.0/venv").mkdir(parents=True)
    (opt / "venv").symlink_to(opt / "releases/9.0/venv")
    running = install_release(make_release(tmp_path / "other"), opt / "releases/9.0/venv", opt)
    assert running.returncode == 2 and "is the running venv" in running.stderr
    assert list((opt / "releases/9.0/venv").iterdir()) == []
