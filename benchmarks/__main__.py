"""`python -m benchmarks [--quick] [--items N] [--sections a,b] --out report.json`."""

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.catalog import (
    bench_catalog_import,
    bench_catalog_import_while_settling,
    bench_catalog_search,
)
from benchmarks.context import BenchContext
from benchmarks.load import bench_load
from benchmarks.quote import bench_quote
from benchmarks.settle import bench_settle
from benchmarks.sync import bench_sync
from benchmarks.ui import bench_ui

# Each section is `bench_<name>(ctx) -> dict`; later sections may reuse what earlier
# ones built (ctx.shared), so the order matters. Add new sections here.
SECTIONS: dict[str, Callable[[BenchContext], dict]] = {
    "quote": bench_quote,
    "catalog_import": bench_catalog_import,
    "catalog_search": bench_catalog_search,
    "catalog_import_settling": bench_catalog_import_while_settling,
    "settle": bench_settle,
    "ui": bench_ui,
    "sync": bench_sync,
    "load": bench_load,
}

FULL_ITEMS = 300_000
QUICK_ITEMS = 5_000
DEFAULT_SEED = 20261122


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    parser.add_argument(
        "--items", type=int, help=f"catalog size (default {FULL_ITEMS:,}; {QUICK_ITEMS:,} quick)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small smoke run: fewer items and iterations"
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {', '.join(SECTIONS)})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generated data seed")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections: {', '.join(unknown)}")
    if args.items is None:
        args.items = QUICK_ITEMS if args.quick else FULL_ITEMS
    if args.items < 1000:
        parser.error("--items must be at least 1000")
    return args


def environment() -> dict:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def run(args: argparse.Namespace) -> dict:
    """Run the chosen sections in a scratch directory; returns the report."""
    started = datetime.now(UTC)
    report: dict = {
        "started_at": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "items": args.items,
        "seed": args.seed,
        "environment": environment(),
        "sections": {},
    }
    with tempfile.TemporaryDirectory(prefix="clinic-bench-") as workdir:
        ctx = BenchContext(
            items=args.items, quick=args.quick, seed=args.seed, workdir=Path(workdir)
        )
        for name in SECTIONS:
            if name not in args.sections:
                continue
            print(f"== {name}", flush=True)
            start = time.perf_counter()
            result = SECTIONS[name](ctx)
            result["section_seconds"] = round(time.perf_counter() - start, 2)
            report["sections"][name] = result
            for line in result.get("summary", []):
                print(f"   {line}")
            for target_name, t in result.get("targets", {}).items():
                verdict = "PASS" if t["passed"] else "FAIL"
                print(f"   [{verdict}] {target_name}: {t['value']} {t['unit']} (< {t['limit']})")
    targets = [t for s in report["sections"].values() for t in s.get("targets", {}).values()]
    report["targets_passed"] = sum(t["passed"] for t in targets)
    report["targets_total"] = len(targets)
    report["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(
        f"== {report['targets_passed']}/{report['targets_total']} targets met"
        f" in {report['seconds']} s"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
