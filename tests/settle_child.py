"""A real process that settles visits on a device's data directory, for the robustness tests.

After each money-moving call *returns* (its write transaction has committed) it writes one
line to standard output and flushes it, so the parent knows what the device promised:

    S <tx_id>    a settlement was recorded
    R <tx_id>    a reversal was recorded (the tx_id is the reversal record's)
    C <tx_id>    a daily close was recorded
    J <code>     a visit was refused (nothing written)

Modes (run with the project's interpreter, `sys.executable`):

    run DATA_DIR SEED            settle/reverse/close in a loop until killed
    burst DATA_DIR SEED COUNT    print READY, wait for a line on stdin, then COUNT settles
                                 (no reversals), print DONE and exit 0
    zygote DATA_DIR              import everything once, then serve commands on stdin:
                                 "fork SEED" forks a fresh process running `run DATA_DIR SEED`
                                 and answers "P <pid>"; "reap PID" waits for it and answers
                                 "X <exit status>". Python's start-up and imports cost about
                                 half a second, which 200+ kills cannot pay one by one; a
                                 forked process is still a separate process with its own
                                 SQLite connection, killed by SIGKILL like any other.
"""

import os
import random
import sys
import traceback
from pathlib import Path

from clock import real_now

from edge import services
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.documents import visit_from_json
from edge.domain.model import Rejection

# Every demo person settles a general visit (ineligible ones are recorded with fund 0).
GENERAL_PERSONS = [
    "32011500000001", "32011500000002", "32011500000003", "32011500000004",
    "32011500000005", "32011500000006", "32011500000007", "32011500000008",
    "32011600000009", "32011600000010", "32011500000011", "32011500000012",
    "32011500000013", "32011700000014", "32011700000015", "32011700000016",
    "32011500000017", "32011500000018", "32011600000019", "32011600000020",
    "32011600000021", "32011500000022", "32011500000023", "32011600000024",
    "32011700000025", "32011500000501", "32011500000502", "32011500000503",
    "32011600000504", "32011600000505", "32011500000506", "32011700000507",
    "32011700000508", "32011500000509",
    # version 2's chain: a veteran, a civil servant, a daughter whose account is shared,
    # a dated low-income guarantee, critical illness near its threshold
    "32011500000026", "32011500000510", "32011500000511", "32011500000029",
    "32011500000028", "32011500000027",
]  # fmt: skip
FAMILY_ACCOUNT_USERS = {"32011500000027"}  # pays from a daughter's shared account
# Persons with a hypertension (I10.x00) chronic certificate.
CHRONIC_PERSONS = [
    "32011500000002", "32011500000003", "32011600000009", "32011600000010", "32011500000506",
    "32011500000028",
]  # fmt: skip
GENERAL_LINES = [
    [("XJ01CAA040A001", "2"), ("110200005000000", "1")],
    [("XJ01CAA040A001", "1"), ("110200005000000", "1"), ("XR05XAA202A001", "1")],
    [("110200005000000", "1")],
    [("XJ01CAA040A001", "3"), ("XR05XAA202A001", "2")],
]
CHRONIC_LINES = [
    [("XC08CAB128A001", "2"), ("XC08CAB129A001", "1"), ("250302002000000", "1")],
    [("XC08CAB128A001", "1")],
]
OPERATORS = ["doc01", "coord01", "admin01"]


now = real_now  # the parent checks the books against the same real clock


def random_visit(rng: random.Random) -> tuple[str, object]:
    if rng.random() < 0.2:
        insured_id = rng.choice(CHRONIC_PERSONS)
        visit_type, diagnoses, lines = "chronic", ["I10.x00"], rng.choice(CHRONIC_LINES)
    else:
        insured_id = rng.choice(GENERAL_PERSONS)
        visit_type, diagnoses, lines = "general", ["J06.900"], rng.choice(GENERAL_LINES)
    visit = visit_from_json(
        {
            "date": now().date().isoformat(),
            "visit_type": visit_type,
            "diagnoses": diagnoses,
            "lines": [{"code": code, "quantity": qty} for code, qty in lines],
            "use_personal_account": rng.random() < 0.7,
            "use_family_account": insured_id in FAMILY_ACCOUNT_USERS and rng.random() < 0.8,
        }
    )
    return insured_id, visit


def say(line: str) -> None:
    """One line, one write(2) (atomic on a pipe), before anything else happens."""
    os.write(1, (line + "\n").encode())


def settle_one(store, identity, rng: random.Random) -> str:
    insured_id, visit = random_visit(rng)
    recorded = services.settle_visit(
        store, identity, insured_id=insured_id, visit=visit,
        operator=rng.choice(OPERATORS), now=now(),
    )  # fmt: skip
    return recorded.record["tx_id"]


def run(data_dir: Path, seed: int, limit: int | None = None) -> None:
    rng = random.Random(seed)
    store = SqliteDeviceStore.open(data_dir)
    identity = services.load_identity(store, data_dir)
    done = 0
    while limit is None or done < limit:
        done += 1
        roll = rng.random()
        try:
            if roll < 0.15:
                candidates = [
                    tx for (tx,) in store.db.execute(
                        "SELECT tx_id FROM ledger WHERE kind = 'settlement' AND tx_id NOT IN"
                        " (SELECT reverses FROM ledger WHERE reverses IS NOT NULL)"
                        " ORDER BY seq DESC LIMIT 50"
                    )
                ]  # fmt: skip
                if candidates:
                    recorded = services.reverse_settlement(
                        store, identity, tx_id=rng.choice(candidates),
                        reason="wrong items entered", operator="doc01", now=now(),
                    )  # fmt: skip
                    say(f"R {recorded.record['tx_id']}")
                    continue
            if roll > 0.97:
                recorded = services.close_day(store, identity, operator="coord01", now=now())
                say(f"C {recorded.record['tx_id']}")
                continue
            say(f"S {settle_one(store, identity, rng)}")
        except Rejection as rejection:
            say(f"J {rejection.code}")


def burst(data_dir: Path, seed: int, count: int) -> None:
    rng = random.Random(seed)
    store = SqliteDeviceStore.open(data_dir)
    identity = services.load_identity(store, data_dir)
    say("READY")
    sys.stdin.readline()
    for _ in range(count):
        try:
            say(f"S {settle_one(store, identity, rng)}")
        except Exception as error:  # reported, and the parent fails the test
            say(f"E {type(error).__name__}: {error}")
    store.close()
    say("DONE")


def zygote(data_dir: Path) -> None:
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "fork":
            pid = os.fork()
            if pid == 0:
                status = 0
                try:
                    run(data_dir, int(argument))
                except BaseException as error:
                    say(f"E {type(error).__name__}: {error}")
                    traceback.print_exc()
                    status = 1
                finally:
                    os._exit(status)
            say(f"P {pid}")
        elif command == "reap":
            _, status = os.waitpid(int(argument), 0)
            say(f"X {os.waitstatus_to_exitcode(status)}")


def main(argv: list[str]) -> None:
    mode, data_dir = argv[0], Path(argv[1])
    if mode == "run":
        try:
            run(data_dir, int(argv[2]), int(argv[3]) if len(argv) > 3 else None)
        except Exception as error:
            say(f"E {type(error).__name__}: {error}")
            raise
    elif mode == "burst":
        burst(data_dir, int(argv[2]), int(argv[3]))
    elif mode == "zygote":
        zygote(data_dir)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
