"""Timing helpers shared by the sections: samples, percentiles, targets, child processes."""

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def time_calls(fn: Callable[[], object], calls: int, warmup: int) -> list[int]:
    """Nanoseconds taken by each of `calls` calls of `fn`, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    gc.collect()
    clock = time.perf_counter_ns
    samples = [0] * calls
    for i in range(calls):
        start = clock()
        fn()
        samples[i] = clock() - start
    return samples


def percentile(sorted_samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted samples (fraction 0.99 for p99)."""
    if not sorted_samples:
        raise ValueError("no samples")
    rank = max(1, -(-len(sorted_samples) * fraction // 1))  # ceil, at least 1
    return sorted_samples[int(rank) - 1]


def summarize_ns(samples: Sequence[int]) -> dict:
    """Count, mean, p50, p90, p99, min and max of nanosecond samples, in microseconds."""
    ordered = sorted(samples)
    us = 1000.0
    return {
        "n": len(ordered),
        "mean_us": round(sum(ordered) / len(ordered) / us, 2),
        "p50_us": round(percentile(ordered, 0.50) / us, 2),
        "p90_us": round(percentile(ordered, 0.90) / us, 2),
        "p99_us": round(percentile(ordered, 0.99) / us, 2),
        "min_us": round(ordered[0] / us, 2),
        "max_us": round(ordered[-1] / us, 2),
    }


def target(value: float, limit: float, unit: str, description: str) -> dict:
    """A reported (not asserted) target: passed when `value` is below `limit`."""
    return {
        "value": round(value, 3),
        "limit": limit,
        "unit": unit,
        "passed": value < limit,
        "description": description,
    }


@dataclass(frozen=True)
class ChildRun:
    """A finished child process with its own resource usage (not its siblings')."""

    args: list[str]
    returncode: int
    wall_seconds: float
    max_rss_mb: float
    user_seconds: float
    system_seconds: float
    stdout: str
    stderr: str

    def check(self) -> "ChildRun":
        if self.returncode != 0:
            raise RuntimeError(
                f"{' '.join(self.args)} exited {self.returncode}:\n{self.stdout}{self.stderr}"
            )
        return self


# Runs argv[2:] and writes its wall clock and rusage to argv[1]. Linux charges a process
# with the peak RSS of the address space it had before exec, so a child started straight
# from this (large) process would report at least our own peak; this launcher is small,
# and the command it starts is measured on its own through RUSAGE_CHILDREN.
_LAUNCHER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "wall": wall, "maxrss": usage.ru_maxrss,
               "utime": usage.ru_utime, "stime": usage.ru_stime}, out)
"""


def run_child(args: list[str]) -> ChildRun:
    """Run `args` to completion and measure that command alone: wall clock, CPU, peak RSS."""
    with (
        tempfile.TemporaryDirectory() as scratch,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        result_path = os.path.join(scratch, "rusage.json")
        launcher = [sys.executable, "-c", _LAUNCHER, result_path, *args]
        subprocess.run(launcher, stdout=out, stderr=err, stdin=subprocess.DEVNULL, check=True)
        with open(result_path) as handle:
            measured = json.load(handle)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", errors="replace")
        stderr = err.read().decode("utf-8", errors="replace")
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss_bytes = measured["maxrss"] * (1 if sys.platform == "darwin" else 1024)
    return ChildRun(
        args=list(args),
        returncode=measured["code"],
        wall_seconds=measured["wall"],
        max_rss_mb=rss_bytes / 2**20,
        user_seconds=measured["utime"],
        system_seconds=measured["stime"],
        stdout=stdout,
        stderr=stderr,
    )
