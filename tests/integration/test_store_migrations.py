"""A device's `clinic.db` made by an earlier release migrates forward into the one schema.

`fixtures/device-2026-11/` was made by the code of 2026-11-26 (main before the schema had
one owner): the demo county installed, the terminal UI's own migration set applied, a PIN
set, the sync agent's tables made, one visit settled. Opening it now must keep every row
and every table working, and record the takeover as steps of the device's set.
"""

import gzip
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from clock import NOW

from edge import services
from edge.adapters.catalog_files import read_diagnoses
from edge.adapters.schema import migrations
from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore
from edge.demo import diagnoses_file
from edge.domain.documents import visit_from_json
from web_ui import accounts

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "device-2026-11"


@pytest.fixture
def old_device(tmp_path) -> Path:
    data_dir = tmp_path / "device"
    data_dir.mkdir(mode=0o700)
    with gzip.open(FIXTURE / "clinic.db.gz") as packed, open(data_dir / DATABASE_FILE, "wb") as db:
        shutil.copyfileobj(packed, db)
    shutil.copy(FIXTURE / "device.key", data_dir / "device.key")
    (data_dir / "device.key").chmod(0o600)
    return data_dir


def test_an_old_device_opens_into_the_one_schema_with_nothing_lost(old_device):
    store = SqliteDeviceStore.open(old_device)
    try:
        assert not migrations.pending(store.db)
        query = "SELECT name FROM _sqlite_migrations WHERE migration_set = 'clinic-device'"
        applied = {name for (name,) in store.db.execute(query)}
        assert "m005_terminal_ui" in applied
        assert services.verify_ledger(store).ok
        assert store.ledger_head().seq == 2
        signed_in = accounts.sign_in(
            store, old_device, "doc01", "1357", now=NOW, lockout=timedelta(minutes=15)
        )
        assert signed_in.operator is not None and signed_in.operator.operator_id == "doc01"
        (diagnoses,) = store.db.execute("SELECT count(*) FROM diagnosis").fetchone()
        assert diagnoses == store.load_diagnoses(read_diagnoses(diagnoses_file())) > 0
        visit = visit_from_json({"date": NOW.date().isoformat(), "visit_type": "general",
                                 "diagnoses": ["J06.900"], "lines": [
                                     {"code": "110200005000000", "quantity": "1"}]})  # fmt: skip
        identity = services.load_identity(store, old_device)
        recorded = services.settle_visit(store, identity, insured_id="32011500000001",
                                         visit=visit, operator="doc01", now=NOW)  # fmt: skip
        assert recorded.record["seq"] == 3 and services.verify_ledger(store).ok
    finally:
        store.close()


def test_a_new_device_gets_the_same_tables_as_an_old_one_brought_forward(old_device, tmp_path):
    def shape(data_dir: Path) -> dict:
        store = SqliteDeviceStore.open(data_dir, create=True)
        try:
            tables = [name for (name,) in store.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name != '_sqlite_migrations'")]  # fmt: skip
            return {t: [c.name for c in store.db[t].columns] for t in sorted(tables)}
        finally:
            store.close()

    new = shape(tmp_path / "new")
    old = shape(old_device)
    assert old == new


def _open_when_all_ready(data_dir: str, ready, results) -> None:
    try:
        ready.wait(60)  # every process imported and waiting: then all open at once
        SqliteDeviceStore.open(Path(data_dir)).close()
        results.put("ok")
    except Exception as error:  # reported to the parent, which fails the test
        results.put(f"{type(error).__name__}: {error}")


def test_processes_opening_an_old_device_at_once_all_open_it(tmp_path):
    """The scheduler, the doctor and a command may all be first to open an upgraded device:
    the migration steps run under the write lock, once.

    Fresh interpreters (spawn), as the terminal's processes are: a child forked from this
    test process would inherit whatever lock another thread of the test run held."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for round_ in range(5):
        data_dir = tmp_path / f"device-{round_}"
        data_dir.mkdir()
        with (
            gzip.open(FIXTURE / "clinic.db.gz") as packed,
            open(data_dir / DATABASE_FILE, "wb") as db,
        ):
            shutil.copyfileobj(packed, db)
        ready, results = context.Barrier(4), context.Queue()
        processes = [
            context.Process(target=_open_when_all_ready, args=(str(data_dir), ready, results))
            for _ in range(4)
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(30)
        assert outcomes == ["ok"] * 4
