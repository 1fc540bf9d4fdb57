"""Large roster and alias imports are staged beside the installed data and swapped in:
settling goes on meanwhile, a crash leaves the old data, the next import cleans up."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import pytest
from clock import NOW
from deploy_support import new_device, settle

from benchmarks.roster_data import roster_import_command, write_roster_json
from edge.adapters.sqlite_store import StoreError

EMPLOYEE = "32011500000502"  # has a personal account balance; not in the generated rosters
GENERATED = "9" + "0" * 13


def large_roster(path: Path, count: int, version: str) -> Path:
    return write_roster_json(path, count, version, NOW.date())


def start_roster_import(path: Path, data_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        roster_import_command(sys.executable, data_dir, path, NOW.isoformat()),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def leftovers(store) -> list:
    return store.db.execute(
        "SELECT type, name FROM sqlite_master WHERE name LIKE '%\\_staged' ESCAPE '\\'"
        " OR name LIKE '%\\_retired' ESCAPE '\\' OR name = 'roster_figure'"
    ).fetchall()


def staged_count(store, table: str) -> int:
    with suppress(sqlite3.OperationalError):  # not made yet, or already swapped
        return store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return 0


def balance(store, insured_id: str) -> int:
    return store.insured_person(insured_id, with_accumulators=False).person.account_balance


@pytest.fixture
def device(tmp_path):
    data_dir = tmp_path / "device"
    store, identity = new_device(data_dir)
    yield data_dir, store, identity
    store.close()


def next_version(store) -> str:
    return store.roster_version() + ".1"


class TestLargeRosterImports:
    def test_settling_goes_on_while_a_large_roster_is_imported(self, device, tmp_path):
        data_dir, store, identity = device
        version = next_version(store)
        path = large_roster(tmp_path / "roster.json", 60_000, version)
        before = store.db.execute("SELECT count(*) FROM person").fetchone()[0]
        start_balance = balance(store, EMPLOYEE)
        importer = start_roster_import(path, data_dir)
        waits, moment, debited = [], NOW, False
        while importer.poll() is None:
            moment += timedelta(seconds=1)
            started = time.perf_counter()
            settle(store, identity, moment)
            waits.append(time.perf_counter() - started)
            if not debited and staged_count(store, "roster_id_staged") > 0:
                # a settlement paying from the personal account while the roster is
                # staged (the store's own write of it): the swap must not undo it
                with store.write_transaction():
                    store.db.execute(
                        "UPDATE person SET account_balance = account_balance - 100"
                        " WHERE insured_id = ?",
                        [EMPLOYEE],
                    )
                debited = True
            time.sleep(0.02)
        _out, err = importer.communicate()
        assert importer.returncode == 0, err.decode()
        assert debited
        longest = max(waits)
        print(f"\n{len(waits)} settles during the roster import, longest {longest * 1000:.0f} ms"
              f" (the {waits.index(longest) + 1}th)")  # fmt: skip
        assert len(waits) > 20 and longest < 1.0
        assert store.roster_version() == version
        assert store.db.execute("SELECT count(*) FROM person").fetchone()[0] == before + 60_000
        assert balance(store, EMPLOYEE) == start_balance - 100
        figures = store.accumulators(f"9{499:013d}", NOW.date(), "general")
        assert (figures.deductible_used, figures.fund_paid, figures.assistance_paid) == (499, 7, 3)
        assert leftovers(store) == []
        # the accumulators' references still name the installed table, and hold
        fks = store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'accumulator'")
        assert "REFERENCES person(" in fks.fetchone()[0]
        assert store.db.execute("PRAGMA foreign_key_check").fetchall() == []
        settle(store, identity, moment + timedelta(seconds=1), insured_id=f"9{7:013d}")

    def test_a_crash_mid_import_leaves_the_old_roster_and_the_next_import_works(
        self, device, tmp_path
    ):
        data_dir, store, identity = device
        version, installed = next_version(store), store.roster_version()
        path = large_roster(tmp_path / "roster.json", 30_000, version)
        before = store.db.execute("SELECT * FROM person ORDER BY insured_id").fetchall()
        importer = start_roster_import(path, data_dir)
        deadline = time.monotonic() + 120
        while staged_count(store, "roster_id_staged") < 3000 and time.monotonic() < deadline:
            assert importer.poll() is None
            time.sleep(0.05)
        importer.kill()  # the power cut, mid-import
        importer.communicate()
        assert staged_count(store, "roster_id_staged") >= 3000  # it was well under way
        assert store.roster_version() == installed
        assert store.db.execute("SELECT * FROM person ORDER BY insured_id").fetchall() == before
        assert store.insured_person(GENERATED) is None
        # settling never noticed, the staging trigger left behind included
        settle(store, identity, NOW + timedelta(minutes=1))
        with store.write_transaction():
            store.db.execute(
                "UPDATE person SET account_balance = account_balance - 1 WHERE insured_id = ?",
                [EMPLOYEE],
            )
        done = start_roster_import(path, data_dir)
        _out, err = done.communicate(timeout=300)
        assert done.returncode == 0, err.decode()
        assert store.roster_version() == version
        assert store.insured_person(GENERATED) is not None
        assert leftovers(store) == []


class TestStagedAliasImports:
    def test_a_bad_row_mid_list_leaves_the_installed_list_and_nothing_staged(self, device):
        _data_dir, store, _identity = device
        version = store.alias_version()
        rows = store.db.execute("SELECT * FROM search_alias ORDER BY 1, 2, 3").fetchall()
        good = [("item", f"别名{index}", "XJ01CAA040A001") for index in range(3000)]
        with pytest.raises(StoreError, match="unknown list"):
            store.import_aliases(
                [*good, ("drawer", "坏", "X")], version + ".1", source="test", now=NOW
            )
        assert store.alias_version() == version
        assert store.db.execute("SELECT * FROM search_alias ORDER BY 1, 2, 3").fetchall() == rows
        assert leftovers(store) == []
        assert store.import_aliases(good, version + ".1", source="test", now=NOW) == 3000
        assert store.alias_version() == version + ".1"
        (count,) = store.db.execute("SELECT count(DISTINCT alias) FROM search_alias").fetchone()
        assert count == 3000
        assert leftovers(store) == []


class TestRosterFiguresAfterTheSwap:
    def test_a_crash_after_the_swap_leaves_the_figures_for_the_next_import(
        self, device, tmp_path, monkeypatch
    ):
        _data_dir, store, _identity = device
        version = next_version(store)
        document = json.loads(large_roster(tmp_path / "r.json", 3000, version).read_text())
        merge = type(store).merge_pending_roster_figures
        calls = []

        def power_cut_after_the_swap(self):
            calls.append(1)
            if len(calls) == 2:  # the merge after the swap
                raise KeyboardInterrupt("power cut")
            merge(self)

        monkeypatch.setattr(type(store), "merge_pending_roster_figures", power_cut_after_the_swap)
        with pytest.raises(KeyboardInterrupt):
            store.import_roster(document, now=NOW)
        monkeypatch.undo()
        assert store.roster_version() == version  # the persons went in, in one swap
        last = f"9{2999:013d}"
        assert store.insured_person(last) is not None
        assert store.accumulators(last, NOW.date(), "general").deductible_used == 0
        (pending,) = store.db.execute("SELECT count(*) FROM roster_figure").fetchone()
        assert pending == 3000 * 5  # assistance, ci_selfpay, ci_paid, general, chronic
        store.merge_pending_roster_figures()  # the sync agent's next pass, or the next import
        figures = store.accumulators(last, NOW.date(), "general")
        assert (figures.deductible_used, figures.fund_paid, figures.assistance_paid) == (499, 7, 3)
        assert leftovers(store) == []
