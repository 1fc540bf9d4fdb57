"""The signed ledger survives power loss, full disks, tampering and concurrent writers.

Real SQLite files, real processes, the real `clinic` command line; nothing is mocked.
ledger.md is the contract: seq 1, 2, 3 … without gaps, each record chained to the one
before and signed by the device key, every reversal cancelling one earlier settlement.

One file past 500 lines because every proof here checks the same books the same way
(`assert_whole`): the device set-up, the expected accumulators and the verifier they
share are the proof's core, and splitting the scenarios apart would scatter it.
"""

import base64
import copy
import hashlib
import json
import os
import queue
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import independent_verifier
import pytest
from clock import real_now
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import demo, services
from edge.adapters.identity import IdentityError, load_private_key
from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore, StoreError
from edge.domain.documents import visit_from_json
from edge.domain.ledger import new_record
from edge.domain.model import Rejection

TESTS = Path(__file__).resolve().parents[1]
CHILD = TESTS / "settle_child.py"
CLINIC = Path(sys.executable).with_name("clinic")
PERSONS = [p["insured_id"] for p in demo.load_json("roster.json")["persons"]]


# ---- a device, visits --------------------------------------------------------------------


now = real_now  # settle_child.py's processes settle on the real clock too


def new_device(data_dir: Path):
    store = SqliteDeviceStore.open(data_dir, create=True)
    list(demo.install(store, now()))
    return store, services.init_device(store, data_dir, now())


def general_visit(use_account: bool = True):
    return visit_from_json(
        {
            "date": now().date().isoformat(),
            "visit_type": "general",
            "diagnoses": ["J06.900"],
            "lines": [
                {"code": "XJ01CAA040A001", "quantity": "2"},
                {"code": "110200005000000", "quantity": "1"},
            ],
            "use_personal_account": use_account,
        }
    )


def settle(store, identity, insured_id: str = "32011500000001", **kwargs):
    return services.settle_visit(
        store, identity, insured_id=insured_id, visit=general_visit(), operator="doc01",
        now=now(), **kwargs,
    )  # fmt: skip


# ---- what the database must show: the ledger implies everything else -----------------------


def installed_roster(db) -> dict:
    """The demo roster as the device installed it (its dates follow the install day)."""
    (installed_at,) = db.execute("SELECT installed_at FROM roster_version").fetchone()
    day = datetime.fromisoformat(installed_at + "+00:00").astimezone(services.CLINIC_TZ)
    return demo.roster_document(day.date())


def without_zeros(books: dict) -> dict:
    """A missing accumulator row reads as 0: the store writes only rows that change."""
    return {
        "accumulator": {k: v for k, v in books["accumulator"].items() if any(v)},
        "assistance": {k: v for k, v in books["assistance"].items() if v},
        "day": {k: v for k, v in books["day"].items() if v},
        "year": {k: v for k, v in books["year"].items() if v},
        "balance": books["balance"],
    }


def expected_books(records: list[dict], roster: dict) -> dict:
    """Accumulators and account balances as the roster's starting values plus the ledger:
    every payer's amount, the day's fund, the year's critical illness and supplements,
    and the family holders' balances."""
    deductible_fund: dict[tuple, list[int]] = {}
    assistance: dict[tuple, int] = {}
    day: dict[tuple, int] = {}
    year_figures: dict[tuple, int] = {}
    balance = {p["insured_id"]: p.get("account_balance", 0) for p in roster["persons"]}
    for person in roster["persons"]:
        for year, scopes in person.get("accumulators", {}).items():
            key = (person["insured_id"], int(year))
            for visit_type in ("general", "chronic"):
                if visit_type in scopes:
                    values = scopes[visit_type]
                    deductible_fund[(*key, visit_type)] = [
                        values.get("deductible_used", 0), values.get("fund_paid", 0)
                    ]  # fmt: skip
            if "assistance_paid" in scopes:
                assistance[key] = scopes["assistance_paid"]
            for name in ("ci_selfpay", "ci_paid"):
                year_figures[(*key, name)] = scopes.get(name, 0)
            for name, paid in scopes.get("supplements_paid", {}).items():
                year_figures[(*key, "supplement:" + name)] = paid

    settlements = {}

    def add(books: dict, key: tuple, amount: int) -> None:
        books[key] = books.get(key, 0) + amount

    def apply(body: dict, sign: int) -> None:
        insured_id, visit, result = body["insured_id"], body["visit"], body["result"]
        year = int(visit["date"][:4])
        pair = deductible_fund.setdefault((insured_id, year, visit["visit_type"]), [0, 0])
        pair[0] += sign * result["deductible_applied"]
        pair[1] += sign * result["fund"]
        add(assistance, (insured_id, year), sign * result["assistance"])
        add(day, (insured_id, visit["date"], visit["visit_type"]), sign * result["fund"])
        counted = result["accumulators_after"]["ci_selfpay"] - body["ci_selfpay_before"]
        add(year_figures, (insured_id, year, "ci_selfpay"), sign * counted)
        add(year_figures, (insured_id, year, "ci_paid"), sign * result["critical_illness"])
        for paid in result["supplements"]:
            add(year_figures, (insured_id, year, "supplement:" + paid["name"]),
                sign * paid["amount"])  # fmt: skip
        balance[insured_id] -= sign * result["personal_account"]
        if visit["family_account_holder"] is not None:
            balance[visit["family_account_holder"]] -= sign * result["family_account"]

    for record in records:
        if record["kind"] == "settlement":
            settlements[record["tx_id"]] = record["body"]
            apply(record["body"], +1)
        elif record["kind"] == "reversal":
            apply(settlements[record["body"]["reverses"]], -1)
    return without_zeros(
        {
            "accumulator": {k: tuple(v) for k, v in deductible_fund.items()},
            "assistance": assistance,
            "day": day,
            "year": year_figures,
            "balance": balance,
        }
    )


def stored_books(db) -> dict:
    return {
        "accumulator": {
            (i, y, t): (d, f)
            for i, y, t, d, f in db.execute(
                "SELECT insured_id, year, visit_type, deductible_used, fund_paid FROM accumulator"
            )
        },
        "assistance": {
            (i, y): a
            for i, y, a in db.execute(
                "SELECT insured_id, year, assistance_paid FROM assistance_accumulator"
            )
        },
        "day": {
            (i, d, t): f
            for i, d, t, f in db.execute(
                "SELECT insured_id, day, visit_type, fund_paid FROM day_accumulator"
            )
        },
        "year": {
            (i, y, n): a
            for i, y, n, a in db.execute(
                "SELECT insured_id, year, name, amount FROM year_accumulator"
            )
        },
        "balance": dict(db.execute("SELECT insured_id, account_balance FROM person")),
    }


def snapshot(store) -> dict:
    """Everything a settlement touches, for 'the failed one left nothing'."""
    return {
        "ledger": store.db.execute("SELECT count(*), max(seq) FROM ledger").fetchone(),
        "outbox": store.outbox_count(),
        **stored_books(store.db),
    }


def integrity(path: Path) -> list:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchall()


_FACTS = ("$.seq", "$.kind", "$.tx_id", "$.body.insured_id", "$.body.reverses",
          "$.body.visit.date", "$.body.visit.visit_type", "$.body.visit.family_account_holder",
          "$.body.accumulators_before.ci_selfpay", "$.body.result")  # fmt: skip


def ledger_facts(db) -> list[tuple[tuple, dict]]:
    """(index columns, the parts of the stored record that bookkeeping needs), in seq order.

    SQLite's JSON functions pick the fields out, so the 200-odd checks after the kills
    do not parse every record twice in Python (verify_ledger already does once).
    """
    facts = []
    paths = ", ".join(f"'{path}'" for path in _FACTS)
    for *columns, extracted in db.execute(
        f"SELECT seq, kind, tx_id, insured_id, reverses, json_extract(record, {paths})"
        " FROM ledger ORDER BY seq"
    ):
        (seq, kind, tx_id, insured_id, reverses, day, visit_type, holder, ci_selfpay_before,
         result) = json.loads(extracted)  # fmt: skip
        record = {
            "seq": seq, "kind": kind, "tx_id": tx_id,
            "body": {"insured_id": insured_id, "reverses": reverses, "result": result,
                     "ci_selfpay_before": ci_selfpay_before,
                     "visit": {"date": day, "visit_type": visit_type,
                               "family_account_holder": holder}},
        }  # fmt: skip
        facts.append((tuple(columns), record))
    return facts


def assert_whole(data_dir: Path, reported: dict[str, str] | None = None) -> int:
    """The data directory is one consistent state: what a reboot after a crash must find."""
    assert integrity(data_dir / DATABASE_FILE) == [("ok",)]
    store = SqliteDeviceStore.open(data_dir)
    try:
        store.db.execute("BEGIN")  # one snapshot for every check below
        verification = services.verify_ledger(store)
        assert verification.ok, verification
        facts = ledger_facts(store.db)
        records = [record for _, record in facts]
        assert len(records) == verification.count
        # The index columns agree with the signed records, seq 1..N.
        assert [columns for columns, _ in facts] == [
            (r["seq"], r["kind"], r["tx_id"], r["body"]["insured_id"], r["body"]["reverses"])
            for r in records
        ]
        assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
        # Every record was queued for upload in the same transaction.
        outbox = [s for (s,) in store.db.execute("SELECT seq FROM outbox ORDER BY seq")]
        assert outbox == [r["seq"] for r in records]
        # Accumulators and balances are exactly what the ledger implies.
        assert without_zeros(stored_books(store.db)) == expected_books(
            records, installed_roster(store.db)
        )
        kinds = {r["tx_id"]: r["kind"] for r in records}
        for tx_id, kind in (reported or {}).items():
            assert kinds.get(tx_id) == kind, f"reported {kind} {tx_id} is not in the ledger"
        store.db.execute("COMMIT")
        return len(records)
    finally:
        store.close()


# ---- 1. power loss ---------------------------------------------------------------------------

KINDS = {"S": "settlement", "R": "reversal", "C": "daily_close"}
# `make test-dates` repeats this proof at several dates with fewer kills: what it checks
# there is the books on that date, not the 220 moments again.
KILLS = int(os.environ.get("CLINIC_TEST_POWER_LOSS_KILLS", "220"))
FRESH_INTERPRETER_KILLS = 8  # the rest are forked from a pre-imported zygote (start-up cost)


def _pump(stream, lines: queue.Queue) -> None:
    for raw in stream:
        if raw.endswith(b"\n"):  # a line cut by the kill was never fully reported
            lines.put(raw.decode().rstrip("\n"))
    lines.put(None)


class FreshChild:
    """A new interpreter: kills land during start-up, store open and WAL recovery too."""

    def __init__(self, data_dir: Path, seed: int, stderr):
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), "run", str(data_dir), str(seed)],
            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.pid = self.proc.pid
        self.lines: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=_pump, args=(self.proc.stdout, self.lines))
        self.reader.start()

    def next_line(self, timeout: float) -> str | None:
        return self.lines.get(timeout=timeout)

    def finish(self) -> tuple[list[str], int]:
        status = self.proc.wait(timeout=30)
        self.reader.join(timeout=30)
        self.proc.stdout.close()
        rest = []
        while (line := self.lines.get_nowait()) is not None:
            rest.append(line)
        return rest, status


class Zygote:
    def __init__(self, data_dir: Path, stderr):
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), "zygote", str(data_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
        self.lines: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=_pump, args=(self.proc.stdout, self.lines))
        self.reader.start()

    def send(self, command: str) -> None:
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def fork(self, seed: int) -> "ForkedChild":
        self.send(f"fork {seed}")
        return ForkedChild(self)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)
        self.proc.stdout.close()


class ForkedChild:
    def __init__(self, zygote: Zygote):
        self.zygote = zygote
        self.early: list[str] = []
        while True:  # the child may print before the zygote names its pid
            line = zygote.lines.get(timeout=30)
            if line.startswith("P "):
                self.pid = int(line[2:])
                break
            self.early.append(line)

    def next_line(self, timeout: float) -> str | None:
        if self.early:
            return self.early.pop(0)
        return self.zygote.lines.get(timeout=timeout)

    def finish(self) -> tuple[list[str], int]:
        self.zygote.send(f"reap {self.pid}")
        rest = self.early
        while not (line := self.zygote.lines.get(timeout=30)).startswith("X "):
            rest.append(line)
        return rest, int(line[2:])


def test_power_loss_at_200_random_moments_never_leaves_a_half_written_or_broken_ledger(
    tmp_path,
):
    data_dir = tmp_path / "device"
    store, _ = new_device(data_dir)
    store.close()
    rng = random.Random(20261122)
    reported: dict[str, str] = {}
    stats = {"kills": 0, "mid_output": 0, "before_output": 0, "records": 0, "refused": 0}
    started = time.monotonic()
    with (tmp_path / "child-stderr.txt").open("wb") as stderr:
        zygote = Zygote(data_dir, stderr)
        try:
            for n in range(KILLS):
                seed = rng.randrange(2**32)
                if n < FRESH_INTERPRETER_KILLS:
                    child = FreshChild(data_dir, seed, stderr)
                else:
                    child = zygote.fork(seed)
                lines = []
                if rng.random() < 0.15:  # during start-up, store open or the first settle
                    time.sleep(rng.uniform(0, 0.03 if n >= FRESH_INTERPRETER_KILLS else 0.5))
                    stats["before_output"] += 1
                else:  # once it is producing output: mid-transaction, mid-commit, between
                    lines.append(child.next_line(timeout=30))
                    # Mostly within the next few transactions (a settle takes a few ms):
                    # every record makes each later check longer.
                    time.sleep(rng.uniform(0, 0.15 if rng.random() < 0.05 else 0.008))
                    stats["mid_output"] += 1
                os.kill(child.pid, signal.SIGKILL)
                rest, status = child.finish()
                lines += [line for line in rest if line is not None]
                errors = [line for line in lines if line is None or line.startswith("E ")]
                assert not errors, (errors, (tmp_path / "child-stderr.txt").read_text())
                assert status == -signal.SIGKILL, f"child {n} ended with {status}, not by the kill"
                stats["kills"] += 1
                for line in lines:
                    tag, _, tx_id = line.partition(" ")
                    if tag == "J":
                        stats["refused"] += 1
                    else:
                        reported[tx_id] = KINDS[tag]
                stats["records"] = assert_whole(data_dir, reported)
        finally:
            zygote.close()
    status, verdict = cli_verify(data_dir)  # and the operator's own check agrees
    assert (status, verdict["ok"], verdict["records"]) == (0, True, stats["records"])
    elapsed = time.monotonic() - started
    kinds = list(reported.values())
    print(f"\npower loss: {stats}, reported {len(kinds)} ({kinds.count('reversal')} reversals,"
          f" {kinds.count('daily_close')} daily closes) in {elapsed:.1f}s")  # fmt: skip
    assert stats["kills"] >= KILLS * 10 // 11  # 200 of the 220 by default
    assert kinds.count("settlement") >= KILLS * 10 // 11
    assert kinds.count("reversal") >= KILLS // 11
    # A kill between commit and print loses the report, never the record: the ledger
    # holds everything that was promised, and sometimes a little more.
    assert stats["records"] >= len(reported)


# ---- 2. disk full --------------------------------------------------------------------------


def _settle_until_it_fails(store, identity, limit: int = 10_000):
    """Settle until the disk is full: the failing one must leave nothing behind."""
    rng = random.Random(7)
    for count in range(limit):
        before = snapshot(store)
        try:
            settle(store, identity, insured_id=rng.choice(PERSONS))
        except Exception as error:
            return error, before, count
    pytest.fail(f"{limit} settlements fitted on a disk that was meant to fill up")


def _assert_clean_failure(error: Exception, store, before: dict, data_dir: Path) -> None:
    assert isinstance(error, (sqlite3.OperationalError, StoreError, IdentityError, Rejection)), (
        repr(error)
    )
    if isinstance(error, sqlite3.Error):
        assert "database or disk is full" in str(error), repr(error)
    assert not store.db.conn.in_transaction
    assert snapshot(store) == before  # seq count, outbox, accumulators, balances unchanged
    assert services.verify_ledger(store).ok
    assert store.db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert integrity(data_dir / DATABASE_FILE) == [("ok",)]  # and from a new connection


def _used_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir())


def test_a_full_filesystem_fails_the_settlement_cleanly_and_space_lets_the_next_one_through(
    tmp_path,
):
    seed_dir = tmp_path / "seed"
    store, identity = new_device(seed_dir)
    settle(store, identity)
    store.close()  # the last connection checkpoints the WAL into clinic.db
    size_kib = _used_bytes(seed_dir) // 1024 + 320  # room for the WAL of a few settlements
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(mount_point)],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        data_dir = mount_point / "device"
        shutil.copytree(seed_dir, data_dir)  # copy2: the key file stays 0600
        store = SqliteDeviceStore.open(data_dir)
        try:
            identity = services.load_identity(store, data_dir)
            error, before, settled = _settle_until_it_fails(store, identity)
            assert settled >= 1  # the disk had room for some before it filled
            _assert_clean_failure(error, store, before, data_dir)
            # Still full: the next attempt fails just as cleanly.
            error, before, settled = _settle_until_it_fails(store, identity)
            assert settled == 0
            _assert_clean_failure(error, store, before, data_dir)

            subprocess.run(
                ["mount", "-o", f"remount,size={size_kib + 4096}k", str(mount_point)],
                check=True, capture_output=True,
            )  # fmt: skip
            recorded = settle(store, identity, insured_id="32011500000502")
            assert recorded.record["seq"] == before["ledger"][1] + 1
            assert services.verify_ledger(store).ok
        finally:
            store.close()
        assert assert_whole(data_dir) == before["ledger"][0] + 1
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, capture_output=True)


def test_a_database_size_limit_fails_the_settlement_cleanly_and_raising_it_recovers(data_dir):
    store, identity = new_device(data_dir)
    try:
        settle(store, identity)
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages + 1}")
        error, before, _ = _settle_until_it_fails(store, identity)
        _assert_clean_failure(error, store, before, data_dir)

        store.db.execute("PRAGMA max_page_count = 1073741823")
        recorded = settle(store, identity, insured_id="32011600000505")
        assert recorded.record["seq"] == before["ledger"][1] + 1
    finally:
        store.close()
    assert assert_whole(data_dir) == before["ledger"][0] + 1


# ---- 3. tampering, found by `clinic ledger verify` -----------------------------------------


def clinic(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLINIC), *args], capture_output=True, timeout=60)


def cli_verify(data_dir: Path) -> tuple[int, dict]:
    done = clinic("ledger", "verify", "--data-dir", str(data_dir), "--json")
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, dict]:
    """A device with 13 records: settlements, a reversal, a daily close, more settlements."""
    data_dir = tmp_path_factory.mktemp("pristine") / "device"
    store, identity = new_device(data_dir)
    seqs: dict = {"settlements": []}
    try:
        for insured_id in [*PERSONS[:6], "32011500000501", "32011500000502"]:
            seqs["settlements"].append(settle(store, identity, insured_id=insured_id).record)
        reversed_record = seqs["settlements"][2]
        seqs["reversal"] = services.reverse_settlement(
            store, identity, tx_id=reversed_record["tx_id"], reason="wrong person",
            operator="doc01", now=now(),
        ).record  # fmt: skip
        seqs["reversed"] = reversed_record
        seqs["close"] = services.close_day(store, identity, operator="coord01", now=now()).record
        for insured_id in PERSONS[10:13]:
            seqs["settlements"].append(settle(store, identity, insured_id=insured_id).record)
        seqs["count"] = store.db.execute("SELECT count(*) FROM ledger").fetchone()[0]
    finally:
        store.close()
    assert seqs["count"] == 13
    return data_dir, seqs


@pytest.fixture
def device(pristine, tmp_path) -> tuple[Path, dict]:
    source, seqs = pristine
    copy_dir = tmp_path / "device"
    shutil.copytree(source, copy_dir)
    return copy_dir, seqs


@contextmanager
def attacker(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """What someone with the sqlite3 shell can do: drop the triggers, then anything."""
    conn = sqlite3.connect(data_dir / DATABASE_FILE, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute("DROP TRIGGER ledger_is_append_only_update")
        conn.execute("DROP TRIGGER ledger_is_append_only_delete")
        yield conn
        conn.execute("COMMIT")
    finally:
        conn.close()


def stored(conn, seq: int) -> dict:
    return json.loads(conn.execute("SELECT record FROM ledger WHERE seq = ?", [seq]).fetchone()[0])


def dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def rewrite(conn, seq: int, change: Callable[[dict], None]) -> None:
    record = stored(conn, seq)
    change(record)
    conn.execute("UPDATE ledger SET record = ? WHERE seq = ?", [dumps(record), seq])


def rehash(record: dict) -> None:
    """An attacker can recompute the hash; only the device key can make the signature."""
    unsigned = {k: v for k, v in record.items() if k not in ("hash", "sig")}
    record["hash"] = hashlib.sha256(
        json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def insert(conn, record: dict, *, index_reverses: bool = True) -> None:
    body = record["body"]
    conn.execute(
        "INSERT INTO ledger (seq, kind, tx_id, created_at, day, insured_id, fund, reverses,"
        " record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            record["seq"], record["kind"], record["tx_id"], record["created_at"],
            record["created_at"][:10], body.get("insured_id"),
            body.get("result", body.get("amounts", {})).get("fund"),
            body.get("reverses") if index_reverses else None, dumps(record),
        ],
    )  # fmt: skip
    conn.execute(
        "INSERT OR REPLACE INTO outbox VALUES (?, ?)", [record["seq"], record["created_at"]]
    )


def forge(conn, seq: int, key: Ed25519PrivateKey, *, kind: str = "settlement",
          body: dict | None = None, prev_hash: str | None = None,
          index_reverses: bool = True) -> dict:  # fmt: skip
    """A well-formed record chained on record `seq - 1`, signed with `key`."""
    previous = stored(conn, seq - 1)
    template = stored(conn, 1)
    record = new_record(
        device_id=previous["device_id"], seq=seq, kind=kind, tx_id=str(uuid.uuid4()),
        created_at=(datetime.fromisoformat(previous["created_at"]) + timedelta(seconds=5))
        .isoformat(),
        prev_hash=prev_hash or previous["hash"],
        body=body if body is not None else copy.deepcopy(template["body"]),
        private_key=key,
    )  # fmt: skip
    insert(conn, record, index_reverses=index_reverses)
    return record


def reversal_body(target_tx: str) -> dict:
    return {
        "reverses": target_tx, "reverses_seq": 1, "insured_id": "32011500000001",
        "operator": "doc01", "reason": "forged",
        "amounts": {"total": 1360, "fund": 748, "assistance": 0, "personal_account": 0,
                    "cash": 612},
        "accumulators_after": {"deductible_used": 0, "fund_paid": 0, "assistance_paid": 0,
                               "account_balance": 0},
    }  # fmt: skip


def _amount_in_body(conn, s):
    rewrite(conn, 4, lambda r: r["body"]["result"].update(fund=r["body"]["result"]["fund"] + 500))
    return 4, "hash"


def _amount_in_body_rehashed(conn, s):
    def change(record):
        record["body"]["result"]["cash"] -= 100
        record["body"]["result"]["fund"] += 100
        rehash(record)

    rewrite(conn, 5, change)
    return 5, "signature"


def _created_at(conn, s):
    stamp = datetime.fromisoformat(stored(conn, 6)["created_at"]) - timedelta(days=3)
    rewrite(conn, 6, lambda r: r.update(created_at=stamp.isoformat()))
    conn.execute("UPDATE ledger SET created_at = ? WHERE seq = 6", [stamp.isoformat()])
    return 6, "hash"


def _record_seq(conn, s):
    rewrite(conn, 7, lambda r: r.update(seq=70))
    return 7, "seq"


def _seq_column(conn, s):
    conn.execute("UPDATE ledger SET seq = 1000 WHERE seq = 7")
    return 7, "seq"


def _seq_column_and_record_seq(conn, s):
    """Record 3 moved to the end, claiming to be record 14."""
    rewrite(conn, 3, lambda r: r.update(seq=s["count"] + 1))
    conn.execute("UPDATE ledger SET seq = ? WHERE seq = 3", [s["count"] + 1])
    return 3, "seq"


def _delete_middle(conn, s):
    conn.execute("DELETE FROM ledger WHERE seq = 5")
    return 5, "seq"


def _delete_first(conn, s):
    conn.execute("DELETE FROM ledger WHERE seq = 1")
    return 1, "seq"


def _swap(conn, s):
    conn.execute("UPDATE ledger SET seq = -1 WHERE seq = 3")
    conn.execute("UPDATE ledger SET seq = 3 WHERE seq = 8")
    conn.execute("UPDATE ledger SET seq = 8 WHERE seq = -1")
    return 3, "seq"


def _swap_with_record_seqs(conn, s):
    first, second = stored(conn, 11), stored(conn, 12)
    first["seq"], second["seq"] = 12, 11
    conn.execute("DELETE FROM ledger WHERE seq IN (11, 12)")
    insert(conn, second)
    insert(conn, first)
    return 11, "prev_hash"


def _forged_append(conn, s):
    forge(conn, s["count"] + 1, Ed25519PrivateKey.generate())
    return s["count"] + 1, "signature"


def _forged_replacement(conn, s):
    conn.execute("DELETE FROM ledger WHERE seq = 4")
    forge(conn, 4, Ed25519PrivateKey.generate())
    return 4, "signature"


def _truncate_and_append_with_another_key(conn, s):
    conn.execute("DELETE FROM ledger WHERE seq >= 6")
    other = Ed25519PrivateKey.generate()
    for seq in range(6, 10):
        forge(conn, seq, other)
    return 6, "signature"


def _device_key(conn) -> Ed25519PrivateKey:
    return load_private_key(Path(conn.execute("PRAGMA database_list").fetchone()[2]).parent)


def _reversal_of_unknown_settlement(conn, s):
    forge(conn, s["count"] + 1, _device_key(conn), kind="reversal",
          body=reversal_body(str(uuid.uuid4())))  # fmt: skip
    return s["count"] + 1, "not an earlier settlement"


def _reversal_of_a_reversed_settlement(conn, s):
    # The `reverses` column is UNIQUE: the attacker leaves this one's index empty.
    forge(conn, s["count"] + 1, _device_key(conn), kind="reversal",
          body=reversal_body(s["reversed"]["tx_id"]), index_reverses=False)  # fmt: skip
    return s["count"] + 1, "reversed twice"


def _reversal_of_a_daily_close(conn, s):
    forge(conn, s["count"] + 1, _device_key(conn), kind="reversal",
          body=reversal_body(s["close"]["tx_id"]))  # fmt: skip
    return s["count"] + 1, "not an earlier settlement"


def _reversal_of_a_later_settlement(conn, s):
    key, n = _device_key(conn), s["count"]
    later_tx = str(uuid.uuid4())
    reversal = forge(conn, n + 1, key, kind="reversal", body=reversal_body(later_tx))
    settlement = stored(conn, 1)
    settlement["tx_id"] = later_tx
    later = new_record(
        device_id=settlement["device_id"], seq=n + 2, kind="settlement", tx_id=later_tx,
        created_at=reversal["created_at"], prev_hash=reversal["hash"],
        body=settlement["body"], private_key=key,
    )  # fmt: skip
    insert(conn, later)
    return n + 1, "not an earlier settlement"


TAMPERING = {
    "an amount inside the body": _amount_in_body,
    "an amount inside the body, hash recomputed": _amount_in_body_rehashed,
    "created_at (record and column)": _created_at,
    "the record's seq": _record_seq,
    "the seq column": _seq_column,
    "the seq column and the record's seq": _seq_column_and_record_seq,
    "a record deleted": _delete_middle,
    "the first record deleted": _delete_first,
    "two records swapped by seq column": _swap,
    "two records swapped, seqs rewritten": _swap_with_record_seqs,
    "a forged record appended (another key)": _forged_append,
    "a record replaced by a forged one (another key)": _forged_replacement,
    "the tail truncated and rewritten with another key": _truncate_and_append_with_another_key,
    "a reversal of an unknown settlement (device key)": _reversal_of_unknown_settlement,
    "a second reversal of a settlement (device key)": _reversal_of_a_reversed_settlement,
    "a reversal of a daily close (device key)": _reversal_of_a_daily_close,
    "a reversal before its settlement (device key)": _reversal_of_a_later_settlement,
}


def test_the_untouched_ledger_verifies_and_its_triggers_refuse_edits(device):
    data_dir, seqs = device
    status, verdict = cli_verify(data_dir)
    assert (status, verdict) == (
        0, {"ok": True, "records": seqs["count"], "first_bad_seq": None, "reason": None}
    )  # fmt: skip
    with closing(sqlite3.connect(data_dir / DATABASE_FILE)) as conn:
        for statement in ("UPDATE ledger SET fund = 0 WHERE seq = 2",
                          "DELETE FROM ledger WHERE seq = 13"):  # fmt: skip
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_clinic_ledger_verify_exits_1_naming_the_first_tampered_seq(device, tamper):
    data_dir, seqs = device
    with attacker(data_dir) as conn:
        expected_seq, reason_word = tamper(conn, seqs)
    status, verdict = cli_verify(data_dir)
    assert status == 1, verdict
    assert verdict["ok"] is False
    assert verdict["first_bad_seq"] == expected_seq, verdict
    assert verdict["records"] == expected_seq - 1
    assert reason_word in verdict["reason"], verdict


def test_the_broken_seq_is_named_in_plain_text_too(device):
    data_dir, seqs = device
    with attacker(data_dir) as conn:
        _delete_middle(conn, seqs)
    done = clinic("ledger", "verify", "--data-dir", str(data_dir))
    assert done.returncode == 1
    assert done.stderr.decode().startswith("ledger BROKEN at seq 5:")


# ---- 4. an independent verifier agrees --------------------------------------------------------


def test_the_independent_verifier_imports_nothing_from_edge():
    import ast

    tree = ast.parse((TESTS / "independent_verifier.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}  # fmt: skip
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} <= {
        "base64", "hashlib", "json", "sys", "cryptography"
    }  # fmt: skip


def _as_lines(records: list[dict]) -> list[str]:
    return [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]


def _replace_ledger(data_dir: Path, lines: list[str]) -> None:
    """The database tampered exactly like the export: its records, in this order, are `lines`."""
    with attacker(data_dir) as conn:
        conn.execute("DELETE FROM outbox")
        conn.execute("DELETE FROM ledger")
        for position, line in enumerate(lines, start=1):
            record = json.loads(line)
            conn.execute(
                "INSERT INTO ledger (seq, kind, tx_id, created_at, day, record)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [position, str(record.get("kind")), f"{position}:{record.get('tx_id')}",
                 str(record.get("created_at")), "", line],
            )  # fmt: skip


def _alter_amount(records, s, key):
    records[3]["body"]["result"]["fund"] += 1
    return 4


def _alter_operator_and_rehash(records, s, key):
    records[8]["body"]["operator"] = "doc99"
    rehash(records[8])
    return 9


def _drop_line(records, s, key):
    del records[6]
    return 7


def _swap_lines(records, s, key):
    records[1], records[2] = records[2], records[1]
    return 2


def _unicode_in_body(records, s, key):
    records[5]["body"]["operator"] = "王医生"
    return 6


def _append_double_reversal(records, s, key):
    last = records[-1]
    second = new_record(
        device_id=last["device_id"], seq=last["seq"] + 1, kind="reversal",
        tx_id=str(uuid.uuid4()), created_at=last["created_at"], prev_hash=last["hash"],
        body=reversal_body(s["reversed"]["tx_id"]), private_key=key,
    )  # fmt: skip
    records.append(second)
    return second["seq"]


ALTERATIONS = {
    "an amount": _alter_amount,
    "the operator, hash recomputed": _alter_operator_and_rehash,
    "a line dropped": _drop_line,
    "two lines swapped": _swap_lines,
    "non-ASCII text": _unicode_in_body,
    "a device-signed second reversal": _append_double_reversal,
}


@pytest.fixture(scope="module")
def exported(pristine) -> tuple[str, str]:
    """`clinic ledger export` of the pristine device, and its key from `clinic device show`."""
    data_dir, _ = pristine
    export = data_dir.parent / "ledger.jsonl"
    done = clinic("ledger", "export", "--data-dir", str(data_dir), "-o", str(export))
    assert done.returncode == 0, done.stderr
    shown = clinic("device", "show", "--data-dir", str(data_dir), "--json")
    assert shown.returncode == 0, shown.stderr
    return export.read_text(encoding="utf-8"), json.loads(shown.stdout)["public_key"]


def test_the_independent_verifier_accepts_the_export_of_a_real_device(pristine, exported, tmp_path):
    _, seqs = pristine
    text, public_key = exported
    assert len(base64.urlsafe_b64decode(public_key + "=")) == 32
    assert len(text.splitlines()) == seqs["count"]
    export = tmp_path / "ledger.jsonl"
    export.write_text(text, encoding="utf-8")
    verdict = independent_verifier.verify_export(str(export), public_key)
    assert verdict == {"ok": True, "records": seqs["count"], "first_bad_seq": None,
                       "reason": None}  # fmt: skip
    # As its own process too, the way an auditor would run it.
    alone = subprocess.run(
        [sys.executable, "-I", str(TESTS / "independent_verifier.py"), str(export), public_key],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["ok"] is True


@pytest.mark.parametrize("alter", ALTERATIONS.values(), ids=ALTERATIONS.keys())
def test_the_independent_verifier_and_clinic_agree_on_the_first_bad_seq(device, exported, alter):
    data_dir, seqs = device
    text, public_key = exported
    records = [json.loads(line) for line in text.splitlines()]
    expected_seq = alter(records, seqs, load_private_key(data_dir))
    altered = _as_lines(records)
    export = data_dir.parent / "altered.jsonl"
    export.write_text("\n".join(altered) + "\n", encoding="utf-8")

    independent = independent_verifier.verify_export(str(export), public_key)
    _replace_ledger(data_dir, altered)
    status, device_verdict = cli_verify(data_dir)

    assert status == 1
    assert independent["ok"] is False
    assert independent["first_bad_seq"] == device_verdict["first_bad_seq"] == expected_seq
    assert independent["records"] == device_verdict["records"] == expected_seq - 1


def _public_key(data_dir: Path) -> str:
    with closing(sqlite3.connect(data_dir / DATABASE_FILE)) as conn:
        return conn.execute("SELECT public_key FROM device").fetchone()[0]


# ---- 5. concurrent writers ---------------------------------------------------------------------

PROCESSES, THREADS, EACH = 4, 8, 25


@pytest.fixture(scope="module")
def concurrent_run(tmp_path_factory) -> dict:
    """4 processes and 8 threads (4 with their own store, 4 sharing one) settle at once."""
    data_dir = tmp_path_factory.mktemp("concurrent") / "device"
    store, _ = new_device(data_dir)
    store.close()
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), "burst", str(data_dir), str(seed), str(EACH)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for seed in range(PROCESSES)
    ]
    shared = SqliteDeviceStore.open(data_dir)
    own = [SqliteDeviceStore.open(data_dir) for _ in range(THREADS // 2)]
    stores = own + [shared] * (THREADS - len(own))
    identity = services.load_identity(shared, data_dir)
    results: list[list[str]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS + 1)

    def worker(index: int) -> None:
        rng = random.Random(1000 + index)
        try:
            start.wait(timeout=120)
        except threading.BrokenBarrierError:
            return  # the set-up failed; the fixture reports why
        for _ in range(EACH):
            try:
                recorded = settle(stores[index], identity, insured_id=rng.choice(PERSONS))
                results[index].append(recorded.record["tx_id"])
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for child in children:
            assert child.stdout.readline() == b"READY\n", child.stderr.read().decode()
        for child in children:  # go, all at once
            child.stdin.write(b"go\n")
            child.stdin.flush()
        start.wait(timeout=120)
        outputs = [child.communicate(timeout=120) for child in children]
        for thread in threads:
            thread.join(timeout=120)
    except BaseException:
        start.abort()
        for child in children:
            child.kill()
            child.communicate()
        raise
    finally:
        for s in [*own, shared]:
            s.close()
    reported = [tx for result in results for tx in result]
    for child, (out, err) in zip(children, outputs, strict=True):
        lines = out.decode().splitlines()
        assert child.returncode == 0 and lines[-1] == "DONE", err.decode()
        errors += [line for line in lines if line.startswith("E ")]
        reported += [line[2:] for line in lines if line.startswith("S ")]
    with closing(sqlite3.connect(data_dir / DATABASE_FILE)) as conn:
        records = [json.loads(r) for (r,) in conn.execute("SELECT record FROM ledger ORDER BY seq")]
    return {"data_dir": data_dir, "errors": errors, "reported": reported, "records": records}


def test_concurrent_processes_and_threads_settling_build_one_gapless_valid_chain(concurrent_run):
    run = concurrent_run
    assert not run["errors"], run["errors"]
    reported = run["reported"]
    assert len(reported) == len(set(reported)) == PROCESSES * EACH + THREADS * EACH
    total = assert_whole(run["data_dir"], {tx: "settlement" for tx in reported})
    records = run["records"]
    assert [r["seq"] for r in records] == list(range(1, total + 1))  # no gap, no repeat
    assert sorted(r["tx_id"] for r in records if r["kind"] == "settlement") == sorted(reported)
    # The independent verifier agrees on this bigger ledger too.
    public_key = _public_key(run["data_dir"])
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    assert independent_verifier.verify_records(lines, public_key) == {
        "ok": True, "records": total, "first_bad_seq": None, "reason": None
    }  # fmt: skip


def test_concurrent_settles_on_a_correct_clock_record_nothing_but_the_settlements(concurrent_run):
    """N == the settlements reported: no `clock_behind` event merely because a writer read
    the clock before it got the write lock (the CLI reads it before, too)."""
    records, reported = concurrent_run["records"], concurrent_run["reported"]
    extra = [
        (r["seq"], r["kind"], r["body"].get("event"), r["body"].get("device_clock"),
         r["body"].get("last_record_at"))
        for r in records
        if r["kind"] != "settlement"
    ]  # fmt: skip
    assert len(records) == len(reported), (
        f"{len(records)} records for {len(reported)} settlements; the others: {extra}"
    )


def test_a_settlement_that_waited_for_the_write_lock_is_not_recorded_as_a_clock_jump(data_dir):
    """The race behind the test above, made deterministic. A writer reads the clock and
    then waits for SQLite's write lock (`clinic settle` does the same: `now()`, then
    BEGIN IMMEDIATE with a 10 s busy timeout); another writer commits a second later.
    The clock never went back, so nothing but the two settlements may be signed."""
    store, identity = new_device(data_dir)
    waiting_store = SqliteDeviceStore.open(data_dir)
    blocker = sqlite3.connect(data_dir / DATABASE_FILE, isolation_level=None)
    clock_read = threading.Event()
    outcome: dict = {}

    def waiting_writer() -> None:
        moment = now()
        clock_read.set()
        try:
            outcome["record"] = services.settle_visit(
                waiting_store, identity, insured_id="32011500000005", visit=general_visit(),
                operator="doc01", now=moment,
            ).record  # fmt: skip
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=waiting_writer, daemon=True)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # a write in progress elsewhere
        thread.start()
        assert clock_read.wait(timeout=30)
        time.sleep(1.2)  # the waiting writer is blocked in BEGIN IMMEDIATE; a second passes
        blocker.execute("ROLLBACK")
        first = settle(store, identity, insured_id="32011500000001").record  # wins: the
        thread.join(timeout=30)  # waiting one polls the lock only every 100 ms by now
    finally:
        blocker.close()
        waiting_store.close()
        store.close()
    assert "error" not in outcome, outcome
    assert first["seq"] == 1  # the race went as staged
    with closing(SqliteDeviceStore.open(data_dir)) as reopened:
        records = [(r["seq"], r["kind"], r["body"].get("event")) for r in reopened.records()]
    assert records == [(1, "settlement", None), (2, "settlement", None)]


# ---- the device's own guards rest on the signed records, not on unsigned index columns -----


def _move_the_heads_seq_column(conn, s):
    conn.execute("UPDATE ledger SET seq = 100 WHERE seq = ?", [s["count"]])


def _clear_the_reverses_column(conn, s):
    conn.execute("UPDATE ledger SET reverses = NULL WHERE kind = 'reversal'")


def _settle_next(store, identity, s):
    return settle(store, identity, insured_id="32011500000502")


def _reverse_the_reversed_again(store, identity, s):
    return services.reverse_settlement(
        store, identity, tx_id=s["reversed"]["tx_id"], reason="again", operator="doc01",
        now=now(),
    )  # fmt: skip


INDEX_EDITS = {
    "the head's seq column moved, then a settlement": (_move_the_heads_seq_column, _settle_next),
    "a reversal's index cleared, then the same reversal": (
        _clear_the_reverses_column,
        _reverse_the_reversed_again,
    ),
}


@pytest.mark.parametrize("edit, action", INDEX_EDITS.values(), ids=INDEX_EDITS.keys())
def test_an_edited_index_column_never_makes_the_device_sign_a_record_its_verifier_rejects(
    device, edit, action
):
    """`clinic ledger verify` checks the signed records only, so these edits pass it; the
    device must then refuse to work, or go on signing a chain that still verifies."""
    data_dir, seqs = device
    with attacker(data_dir) as conn:
        edit(conn, seqs)
    store = SqliteDeviceStore.open(data_dir)
    try:
        assert services.verify_ledger(store).ok  # the signed records are untouched
        try:
            signed = action(store, services.load_identity(store, data_dir), seqs).record
        except (Rejection, StoreError, IdentityError):
            return  # refusing is a correct answer
        verification = services.verify_ledger(store)
        assert verification.ok, (
            f"the device signed {signed['kind']} seq {signed['seq']} and broke its own ledger:"
            f" {verification.reason}"
        )
    finally:
        store.close()
