"""requirements/*.txt, the hashed locks every venv is installed from (README,
"Dependencies"), agree with pyproject.toml and with each other."""

import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TOOLS = {"pip", "setuptools", "wheel"}


def parse_lock(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes) of each entry of a pip-compile --generate-hashes file."""
    entries: dict[str, tuple[str, set[str]]] = {}
    name = None
    for line in path.read_text().splitlines():
        text = line.strip().rstrip("\\").strip()
        if not text or text.startswith("#"):
            continue
        if not line[0].isspace():
            requirement = Requirement(text)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            name = canonicalize_name(requirement.name)
            assert name not in entries, f"{name} twice in {path.name}"
            entries[name] = (specifier.version, set())
        elif text.startswith("--hash=sha256:"):
            entries[name][1].add(text.removeprefix("--hash="))
        else:
            raise AssertionError(f"{path.name}: unexpected line {line!r}")
    return {name: (version, frozenset(hashes)) for name, (version, hashes) in entries.items()}


RUNTIME = parse_lock(REPO / "requirements/runtime.txt")
DEV = parse_lock(REPO / "requirements/dev.txt")


def declared(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in found if r.marker is None or r.marker.evaluate(default_environment())]


def test_every_entry_is_pinned_and_hashed():
    for lock in (RUNTIME, DEV):
        for name, (_, hashes) in lock.items():
            assert hashes, f"{name} has no hash"
        assert lock.keys() >= TOOLS  # --allow-unsafe: the packaging tools are locked too


def test_the_runtime_lock_satisfies_the_terminal_and_hub_requirements():
    for requirement in declared("pcsc"):
        name = canonicalize_name(requirement.name)
        assert name in RUNTIME, f"{requirement} is not in requirements/runtime.txt (make lock)"
        assert requirement.specifier.contains(RUNTIME[name][0], prereleases=True), requirement
    assert "pytest" not in RUNTIME and "playwright" not in RUNTIME


def test_the_dev_lock_is_the_runtime_lock_plus_the_dev_extra():
    for requirement in declared("pcsc", "dev"):
        name = canonicalize_name(requirement.name)
        assert name in DEV, f"{requirement} is not in requirements/dev.txt (make lock)"
        assert requirement.specifier.contains(DEV[name][0], prereleases=True), requirement
    # Every runtime package, at the same version with the same files.
    assert {name: DEV[name] for name in RUNTIME} == RUNTIME


def test_the_setuptools_in_the_lock_can_build_the_project():
    (build_requirement,) = [
        Requirement(r) for r in PYPROJECT["build-system"]["requires"] if "setuptools" in r
    ]
    assert build_requirement.specifier.contains(RUNTIME["setuptools"][0])
