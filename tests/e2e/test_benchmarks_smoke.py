"""`make bench` must not rot: every section runs in quick mode and reports its targets."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_benchmark_section_runs_in_quick_mode(tmp_path):
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(report_path)],
        cwd=ROOT, capture_output=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    report = json.loads(report_path.read_text())
    from benchmarks.__main__ import SECTIONS

    assert set(report["sections"]) == set(SECTIONS)
    assert report["targets_total"] >= len(SECTIONS)
