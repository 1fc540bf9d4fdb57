"""What every section is handed: the run's size, a scratch directory, shared artefacts."""

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BenchContext:
    """The run's parameters, plus artefacts that one section builds and later ones reuse."""

    items: int  # catalog size
    quick: bool
    seed: int
    workdir: Path  # scratch space, removed after the run
    # Built once by whichever section first needs it (see benchmarks.catalog).
    shared: dict[str, Any] = field(default_factory=dict)

    def scale(self, full: int, quick: int) -> int:
        """An iteration count: `full` for a real run, `quick` for a smoke run."""
        return quick if self.quick else full

    def clinic_command(self) -> list[str]:
        """The project's real `clinic` console script, from the running venv."""
        beside = Path(sys.executable).parent / "clinic"
        if beside.exists():
            return [str(beside)]
        found = shutil.which("clinic")
        if found is None:
            raise RuntimeError("the clinic console script is not installed: run 'make bench'")
        return [found]
