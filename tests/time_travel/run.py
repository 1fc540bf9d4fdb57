"""`make test-dates`: the date-sensitive tests, `clinic demo --walkthrough` and `clinic
demo-service-point`, run with the wall clock of every Python process moved to the moments
most likely to break them, under several machine time zones. Settlement days, accumulator
years and validity checks must follow China time whatever the date and the machine's zone.

    python tests/time_travel/run.py [--only NAME] [PYTEST ARGS...]

Each run sets CLINIC_TEST_TIME_SHIFT_S (read by `sitecustomize.py` beside this file) and
TZ, checks that a child process really reads the moved clock and runs the tests; the
walkthrough is tests/e2e/test_cli.py's, which runs `clinic demo --walkthrough` twice as
child processes; the service point's is tests/e2e/test_demo_service_point.py's (the premium
year the policy offers and the certificate's year on that day). PostgreSQL and Chromium
keep the real clock, so their tests are not part of these runs: the hub's scenarios run on
SQLite only here (-m "not postgresql" leaves out their PostgreSQL runs,
tests/hub_fixtures.py).
"""

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# The tests whose outcome could depend on the date: engine, services, store, demo county,
# sync agent and hub (on SQLite), the web UI through Flask's client, the command line, the
# ledger's books, the on-site commands, cards and vouchers on the emulated reader. The
# three moments most likely to break them run them all, the others the core.
CORE = [
    "tests/unit/test_clock.py",
    "tests/integration/test_services.py",
    "tests/integration/test_demo_county.py",
    "tests/integration/test_sync_agent.py",
    "tests/integration/test_hub_reconcile.py",
    "tests/integration/test_web_settle.py",
    "tests/integration/test_web_records.py",
    "tests/e2e/test_cli.py::test_demo_walkthrough_settles_verifies_and_syncs_with_the_local_hub",
    "tests/e2e/test_demo_service_point.py",
]
TESTS = [
    "tests/unit/test_clock.py",
    "tests/unit/test_engine.py",
    "tests/integration/test_services.py",
    "tests/integration/test_store.py",
    "tests/integration/test_demo_county.py",
    "tests/integration/test_sync_agent.py",
    "tests/e2e/test_sync_cli.py",
    "tests/unit/test_sync_updates.py",
    "tests/unit/test_sync_protocol.py",
    "tests/integration/test_hub_api.py",
    "tests/unit/test_hub_ingest.py",
    "tests/integration/test_hub_reconcile.py",
    "tests/integration/test_hub_console.py",
    "tests/integration/test_web_auth.py",
    "tests/integration/test_web_settle.py",
    "tests/integration/test_web_records.py",
    "tests/integration/test_web_admin.py",
    "tests/e2e/test_cli.py",
    "tests/integration/test_maintenance_doctor.py",
    "tests/integration/test_maintenance_backup.py",
    "tests/integration/test_drivers_vouchers.py",
    "tests/integration/test_drivers_receipts.py",
    "tests/integration/test_ledger_robustness.py",
    "tests/e2e/test_demo_service_point.py",
]


@dataclass(frozen=True)
class Moment:
    name: str
    at: str  # ISO 8601 with offset; "now" for the real time
    tz: str  # the machine's zone (TZ) during the run
    why: str
    tests: tuple[str, ...] = tuple(TESTS)


MOMENTS = [
    Moment("utc-still-31st", "2026-12-31T17:30:00+00:00", "UTC",
           "01:30 on New Year's Day in China while UTC (and the machine) is on the 31st"),
    Moment("year-end-china", "2026-12-31T23:50:00+08:00", "America/Los_Angeles",
           "the last minutes of a year in China; the machine's zone is a day behind",
           tuple(CORE)),
    Moment("new-year", "2027-01-01T00:05:00+08:00", "Asia/Shanghai",
           "the first minutes of a new year: new accumulators, first visits of the year"),
    Moment("leap-day", "2028-02-29T10:00:00+08:00", "America/Los_Angeles",
           "29 February: birthdays, one-year and ten-year validity on a leap day"),
    Moment("years-ahead", "2035-06-15T10:00:00+08:00", "UTC",
           "years after the demo files were written", tuple(CORE)),
    Moment("today-los-angeles", "now", "America/Los_Angeles",
           "the real date, the machine in a zone 15 or 16 hours behind China", tuple(CORE)),
]  # fmt: skip


def shift_for(moment: Moment) -> float:
    if moment.at == "now":
        return 0.0
    return datetime.fromisoformat(moment.at).timestamp() - time.time()


def environment(moment: Moment) -> dict:
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "TZ": moment.tz}
    env["CLINIC_TEST_TIME_SHIFT_S"] = f"{shift_for(moment):.3f}"
    env.pop("CLINIC_CLOCK", None)  # the product's own clock, moved
    env["CLINIC_TEST_POWER_LOSS_KILLS"] = "40"
    return env


def check_the_clock_moved(moment: Moment, env: dict) -> str | None:
    """A child process must read the moved clock, in China time and in the machine's zone."""
    probe = subprocess.run(
        [sys.executable, "-c", "import datetime, time; print(time.time())"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    expected = time.time() + shift_for(moment)
    if abs(float(probe.stdout) - expected) > 60:
        return f"a child process reads {probe.stdout.strip()}, not {expected:.0f}"
    return None


def run(moment: Moment, pytest_args: list[str]) -> list[str]:
    env = environment(moment)
    shown = "the real time" if moment.at == "now" else moment.at
    print(f"\n=== {moment.name}: {shown}, TZ={moment.tz} ({moment.why})", flush=True)
    problems = []
    if problem := check_the_clock_moved(moment, env):
        return [problem]
    paths = [arg for arg in pytest_args if not arg.startswith("-")] or list(moment.tests)
    options = [arg for arg in pytest_args if arg.startswith("-")]
    tests = subprocess.run(
        # time_machine is imported before pytest starts (sitecustomize), too early for
        # pytest to rewrite its plugin's asserts: that warning alone is not an error here.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not postgresql",
         "-W", "ignore::pytest.PytestAssertRewriteWarning", *options, *paths],
        env=env, cwd=ROOT,
    )  # fmt: skip
    if tests.returncode != 0:
        problems.append(f"pytest exited {tests.returncode}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=[m.name for m in MOMENTS], action="append")
    options, pytest_args = parser.parse_known_args()
    chosen = [m for m in MOMENTS if not options.only or m.name in options.only]
    started = time.monotonic()
    failed = {}
    for moment in chosen:
        problems = run(moment, pytest_args)
        if problems:
            failed[moment.name] = problems
    print(f"\n=== {len(chosen)} moments in {time.monotonic() - started:.0f} s")
    for name, problems in failed.items():
        for problem in problems:
            print(f"FAILED at {name}: {problem}")
    if not failed:
        print("every moment passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
