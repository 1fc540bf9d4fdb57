"""The terminal's data findings of the security review, each reproduced on real files:
imports that never block settling, files only the service can read, a restore that
cannot roll the ledger back, clear errors instead of tracebacks, diagnosis codes checked,
versions that cannot jump absurdly ahead."""

import dataclasses
import errno
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from deploy_support import NOW, file_sha256, ledger_rows, settle, settle_many

from edge import demo, maintenance, services
from edge.adapters.identity import KEY_FILE
from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore, StoreError
from edge.console import main
from edge.domain.documents import visit_from_json
from edge.domain.model import Rejection
from edge.maintenance import MaintenanceError
from sync.hub.adapters.county_key import COUNTY_KEY_FILE
from sync.hub.bootstrap import init_hub, open_hub_store
from sync.hub.model import HubError
from sync.hub.services.publishing import publish
from sync.protocol import SyncError
from sync.updates import (
    catalog_content,
    catalog_item_to_json,
    make_manifest,
    sign_update,
    verify_update,
)

RESIDENT = "32011500000001"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def device(tmp_path):
    from deploy_support import new_device

    data_dir = tmp_path / "device"
    store, identity = new_device(data_dir)
    yield data_dir, store, identity
    store.close()


# ---- database files 0600 whatever the folder and umask ----------------------------------


class TestPrivateFiles:
    def test_a_device_made_in_an_open_folder_under_a_lax_umask_is_owner_only(self, tmp_path):
        data_dir = tmp_path / "open"
        data_dir.mkdir(mode=0o755)
        old = os.umask(0o022)
        try:
            store = SqliteDeviceStore.open(data_dir, create=True)
            services.init_device(store, data_dir, NOW)
            store.db.execute("CREATE TABLE scratch (x)")  # something in the -wal
            backup = maintenance.backup(data_dir, tmp_path / "stick", now=NOW).path
            names = sorted(p.name for p in data_dir.iterdir() if p.is_file())
            db = DATABASE_FILE
            assert names == [db, f"{db}-shm", f"{db}-wal", KEY_FILE]
            assert {name: mode(data_dir / name) for name in names} == dict.fromkeys(names, 0o600)
            assert mode(backup) == 0o600
            store.close()
        finally:
            os.umask(old)

    def test_an_existing_world_readable_database_is_made_private_on_open(self, device):
        data_dir, store, _identity = device
        store.close()
        for name in (DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm"):
            if (data_dir / name).exists():
                os.chmod(data_dir / name, 0o644)
        SqliteDeviceStore.open(data_dir).close()
        assert mode(data_dir / DATABASE_FILE) == 0o600

    @pytest.mark.parametrize("hub_backend", ["sqlite"], indirect=True)
    def test_hub_init_into_an_existing_0755_folder_keeps_roster_and_hashes_private(
        self, tmp_path, hub_backend
    ):
        hub_dir = tmp_path / "hub"
        hub_dir.mkdir(mode=0o755)
        old = os.umask(0o022)
        try:
            done = CliRunner().invoke(
                main, ["hub", "init", "--data-dir", str(hub_dir), "--county", "江宁区"]
            )
            assert done.exit_code == 0, done.output
            files = [p for p in hub_dir.iterdir() if p.is_file()]
            assert {p.name for p in files} >= {"hub.db", COUNTY_KEY_FILE}
            assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
        finally:
            os.umask(old)


# ---- restore guard -----------------------------------------------------------------------


class TestRestoreGuard:
    def test_moving_the_database_aside_does_not_let_an_old_backup_roll_the_ledger_back(
        self, device, tmp_path
    ):
        data_dir, store, identity = device
        settle_many(store, identity, 2)
        old = maintenance.backup(data_dir, tmp_path / "stick", now=NOW).path
        settle_many(store, identity, 3, NOW + timedelta(hours=1))
        store.db.execute("UPDATE device SET synced_seq = 5")  # the county holds seq 1..5
        store.close()
        aside = tmp_path / "aside"
        aside.mkdir()
        for name in (DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm"):
            if (data_dir / name).exists():
                shutil.move(data_dir / name, aside / name)

        done = CliRunner().invoke(main, ["restore", str(old), "--data-dir", str(data_dir)])
        assert done.exit_code != 0
        assert "没有当前账本" in done.output and "no current ledger" in done.output
        assert "--force" in done.output and "Traceback" not in done.output
        assert not (data_dir / DATABASE_FILE).exists()  # nothing restored

    def test_a_fresh_init_in_place_of_the_moved_database_is_refused_too(self, device, tmp_path):
        data_dir, store, identity = device
        settle_many(store, identity, 2)
        old = maintenance.backup(data_dir, tmp_path / "stick", now=NOW).path
        settle_many(store, identity, 2, NOW + timedelta(hours=1))
        store.close()
        (tmp_path / "aside").mkdir()
        for name in (DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm", KEY_FILE):
            if (data_dir / name).exists():
                shutil.move(data_dir / name, tmp_path / "aside" / name)
        fresh = SqliteDeviceStore.open(data_dir, create=True)  # `clinic init` anew
        services.init_device(fresh, data_dir, NOW + timedelta(hours=2))
        fresh.close()
        (data_dir / KEY_FILE).unlink()  # the backup brings the device's own key
        empty = file_sha256(data_dir / DATABASE_FILE)
        with pytest.raises(MaintenanceError, match="no current ledger"):
            maintenance.restore(data_dir, old, now=NOW + timedelta(hours=2))
        assert file_sha256(data_dir / DATABASE_FILE) == empty
        result = maintenance.restore(data_dir, old, force=True, now=NOW + timedelta(hours=2))
        assert result.head_seq == 2 and result.overridden
        assert [row[0] for row in ledger_rows(data_dir)] == [1, 2]


# ---- diagnosis codes -----------------------------------------------------------------------


def _visit(diagnoses):
    return visit_from_json(
        {
            "date": NOW.date().isoformat(),
            "visit_type": "general",
            "diagnoses": diagnoses,
            "lines": [{"code": "XJ01CAA040A001", "quantity": "1"}],
        }
    )


class TestDiagnosisCodes:
    @pytest.mark.parametrize(
        "code", ["随便写的", "J06.900; DROP", "<script>", "j06.900", "J06.900\x1b", "", "J" * 40]
    )
    def test_free_text_is_never_a_diagnosis_code(self, code):
        with pytest.raises(Rejection) as refused:
            _visit([code])
        assert refused.value.code == "BAD_INPUT"
        assert refused.value.message.startswith("visit.diagnoses[0]")

    def test_a_code_not_in_the_installed_list_is_refused_before_signing(self, device):
        _data_dir, store, identity = device
        store.load_diagnoses([("J06.900", "急性上呼吸道感染"), ("I10.x00", "高血压")])
        head = store.ledger_head()
        with pytest.raises(Rejection) as refused:
            services.settle_visit(
                store, identity, insured_id=RESIDENT, visit=_visit(["J06.900", "Z99.999"]),
                operator="doc01", now=NOW,
            )  # fmt: skip
        assert refused.value.code == "UNKNOWN_DIAGNOSIS" and "Z99.999" in refused.value.message
        assert store.ledger_head() == head  # nothing signed
        recorded = services.settle_visit(
            store, identity, insured_id=RESIDENT, visit=_visit(["J06.900"]),
            operator="doc01", now=NOW,
        )  # fmt: skip
        assert recorded.record["body"]["visit"]["diagnoses"] == ["J06.900"]


# ---- versions cannot jump absurdly ahead ------------------------------------------------------


COUNTY = Ed25519PrivateKey.generate()


def _demo_items():
    return list(demo.catalog_items(NOW.date()))[:3]


def _catalog_update(version: str) -> dict:
    content = catalog_content([catalog_item_to_json(item) for item in _demo_items()])
    return sign_update(
        make_manifest(
            kind="catalog", version=version, content=content, published_at=NOW,
            expires_at=NOW + timedelta(days=90),
        ),
        content,
        COUNTY,
    )  # fmt: skip


def _verify(version: str, installed: str | None) -> object:
    return verify_update(
        _catalog_update(version), COUNTY.public_key(), kind="catalog",
        installed_version=installed, now=NOW,
    )  # fmt: skip


class TestVersionBound:
    @pytest.mark.parametrize("version", ["9999999999", "3000.1", "2026.1234567", "v2", "2026.x"])
    def test_a_county_signed_absurd_version_is_refused(self, version):
        with pytest.raises(SyncError) as refused:
            _verify(version, "2026.11")
        assert refused.value.code == "UPDATE_BAD_VERSION"
        assert "版本号" in refused.value.message_zh

    def test_a_normal_version_still_goes_on_after_an_absurd_one_was_installed(self):
        # a device that installed 9999999999 before this rule takes the next sane one
        assert _verify("2026.12", "9999999999").version == "2026.12"
        with pytest.raises(SyncError) as older:
            _verify("2026.10", "2026.11")
        assert older.value.code == "UPDATE_OLDER"

    def test_the_store_refuses_an_absurd_version_and_recovers_from_one(self, device):
        _data_dir, store, _identity = device
        items = list(store.catalog_items(["XJ01CAA040A001"]).values())
        with pytest.raises(StoreError, match="YEAR"):
            store.import_catalog(items, "9999999999", "x.csv", now=NOW)
        # as if installed before the rule: the next sane version replaces it
        store.db.execute(
            "INSERT INTO catalog_version VALUES ('9999999999', 'old', 1, ?)", [NOW.isoformat()]
        )
        assert store.import_catalog(items, "2026.12", "new.csv", now=NOW) == 1
        assert store.catalog_version() == "2026.12"

    def test_the_hub_refuses_to_publish_one_and_recovers_from_one(self, tmp_path, hub_backend):
        hub_dir = tmp_path / "hub"
        init_hub(hub_dir, "江宁区", NOW, database=hub_backend.database_url)
        from sync.hub.adapters.county_key import load_county_key

        key = load_county_key(hub_dir)
        store = open_hub_store(hub_dir)
        expires = NOW + timedelta(days=9)
        try:
            with pytest.raises(HubError, match="YEAR"):
                publish(store, key, kind="catalog", version="9999999999", items=_demo_items(),
                        expires_at=expires, now=NOW)  # fmt: skip
            assert store.latest_publication("catalog") is None
            publish(store, key, kind="catalog", version="2026.11", items=_demo_items(),
                    expires_at=expires, now=NOW)  # fmt: skip
            # one signed before the rule: the county's next normal version goes out again
            absurd = dataclasses.replace(store.latest_publication("catalog"), version="9999999999")
            store.add_publication(absurd)
            publish(store, key, kind="catalog", version="2026.12", items=_demo_items(),
                    expires_at=expires, now=NOW)  # fmt: skip
            assert store.latest_publication("catalog").version == "2026.12"
        finally:
            store.close()


# ---- clear errors instead of tracebacks ------------------------------------------------------

CLINIC = Path(sys.executable).with_name("clinic")
SETTLE_INPUT = json.dumps(
    {
        "insured_id": RESIDENT,
        "operator": "doc01",
        "visit": {
            "visit_type": "general",
            "diagnoses": ["J06.900"],
            "lines": [{"code": "XJ01CAA040A001", "quantity": "1"}],
        },
    }
)


def clinic(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """The real command in its own process (a fault there never takes pytest down)."""
    return subprocess.run(
        [str(CLINIC), *args],
        input=stdin.encode(),
        capture_output=True,
        timeout=120,
        env={**os.environ, "CLINIC_CLOCK": NOW.isoformat()},
    )


def closed_device(device) -> Path:
    """The device's folder with everything in clinic.db (no -wal), the store closed."""
    data_dir, store, _identity = device
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return data_dir


def catalog_state(data_dir: Path) -> tuple:
    with sqlite3.connect(data_dir / DATABASE_FILE) as conn:
        return (
            conn.execute("SELECT version FROM catalog_version ORDER BY rowid").fetchall(),
            conn.execute("SELECT count(*) FROM catalog_item").fetchone(),
        )


class TestClearErrors:
    def test_a_csv_field_over_128_kib_is_a_clear_refusal(self, device, tmp_path):
        data_dir = closed_device(device)
        before = catalog_state(data_dir)
        path = tmp_path / "huge.csv"
        path.write_text(
            "code,name,kind,class,price\nA1,阿莫西林,drug,A,1.00\n"
            f'A2,"{"长" * 200_000}",drug,A,1.00\n',
            encoding="utf-8",
        )
        done = clinic("catalog", "import", str(path), "--version", "2026.12",
                      "--data-dir", str(data_dir))  # fmt: skip
        assert done.returncode == 1, done.stderr
        err = done.stderr.decode()
        assert "目录未导入" in err and "nothing changed" in err and "line 3" in err
        assert "Traceback" not in err
        assert catalog_state(data_dir) == before

    def test_deeply_nested_json_is_a_clear_refusal(self, device, tmp_path):
        data_dir = closed_device(device)
        before = catalog_state(data_dir)
        path = tmp_path / "deep.json"
        path.write_text('{"version": "2026.12", "items": ' + "[" * 200_000 + "]" * 200_000 + "}")
        done = clinic("catalog", "import", str(path), "--data-dir", str(data_dir))
        err = done.stderr.decode()
        assert done.returncode == 1 and "Traceback" not in err, err
        assert "目录未导入" in err and "nested too deeply" in err
        assert catalog_state(data_dir) == before
        nested = '{"insured_id": ' + "[" * 200_000 + "]" * 200_000 + "}"
        done = clinic("settle", "--data-dir", str(data_dir), stdin=nested)
        assert done.returncode == 1 and "Traceback" not in done.stderr.decode()
        assert "nested too deeply" in done.stderr.decode()

    @pytest.mark.parametrize("damage", ["pages", "header"])
    def test_a_corrupt_database_is_a_clear_error_in_settle_and_verify(self, device, damage):
        data_dir, store, identity = device
        settle_many(store, identity, 3)
        data_dir = closed_device(device)
        database = data_dir / DATABASE_FILE
        data = bytearray(database.read_bytes())
        if damage == "header":
            data[:100] = b"\x00" * 100
        else:  # every page after the first two: the schema still reads, the tables do not
            for offset in range(8192, len(data), 4096):
                data[offset : offset + 64] = b"\xa5" * 64
        database.write_bytes(bytes(data))
        damaged = file_sha256(database)
        for args, stdin in ((("settle",), SETTLE_INPUT), (("ledger", "verify"), "")):
            done = clinic(*args, "--data-dir", str(data_dir), stdin=stdin)
            err = done.stderr.decode()
            assert done.returncode == 1, (args, err)
            assert "Traceback" not in err, err
            assert "已损坏" in err and "damaged" in err and "clinic restore" in err, err
        assert file_sha256(database) == damaged  # nothing written

    def test_a_full_disk_is_a_clear_error_and_changes_nothing(self, device, tmp_path):
        data_dir = closed_device(device)
        small = tmp_path / "small"
        small.mkdir()
        mounted = _mount_small_tmpfs(small)
        try:
            if not mounted:  # not root: the database's own limit stands in for the disk
                pytest.fail("this test needs root to mount a small tmpfs (a real full disk)")
            for name in (DATABASE_FILE, KEY_FILE):
                shutil.copy2(data_dir / name, small / name)
            verified = clinic("ledger", "verify", "--data-dir", str(small))
            assert verified.returncode == 0, verified.stderr
            rows = ledger_rows(small)
            # The terminal's service has the database open (its -wal and -shm exist) when
            # the disk fills: the settle's write is what finds no room, and rolls back.
            service = SqliteDeviceStore.open(small)
            _fill(small / "filler")
            done = clinic("settle", "--data-dir", str(small), stdin=SETTLE_INPUT)
            err = done.stderr.decode()
            assert done.returncode == 1 and "Traceback" not in err, err
            assert "磁盘已满" in err and "the disk is full" in err, err
            again = clinic("ledger", "verify", "--data-dir", str(small))  # reads still work
            assert again.returncode == 0, again.stderr.decode()
            service.close()
            # with nothing open, even opening needs room (the -shm): the same clear message
            done = clinic("settle", "--data-dir", str(small), stdin=SETTLE_INPUT)
            assert done.returncode == 1 and "磁盘已满" in done.stderr.decode()
            (small / "filler").unlink()
            assert ledger_rows(small) == rows  # nothing changed
            ok = clinic("settle", "--data-dir", str(small), stdin=SETTLE_INPUT)
            assert ok.returncode == 0, ok.stderr  # and settling goes on once there is room
        finally:
            if mounted:
                subprocess.run(["umount", str(small)], check=True)


def _mount_small_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
    )
    return done.returncode == 0


def _fill(path: Path) -> None:
    """Write until the file system says it is full."""
    with path.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    with suppress(OSError):
        os.sync()


# ---- imports never block settling ---------------------------------------------------------

LARGE_CATALOG = 300_000  # `make bench` (benchmarks/catalog.py) measures 10^6


def catalog_with_demo_items(path: Path, count: int) -> Path:
    """`count` generated items and the demo's own (so that settling goes on after the swap)."""
    from benchmarks.catalog_data import write_catalog_csv

    write_catalog_csv(path, count, seed=16)
    demo_rows = (Path(demo.__file__).with_name("catalog.csv")).read_text("utf-8-sig")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(demo_rows.split("\n", 1)[1])
    return path


def start_import(path: Path, data_dir: Path, version: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(CLINIC), "catalog", "import", str(path), "--version", version,
         "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "CLINIC_CLOCK": NOW.isoformat()},
    )  # fmt: skip


class TestImportsNeverBlockSettling:
    def test_settling_goes_on_while_a_large_catalog_is_imported(self, device, tmp_path):
        data_dir, store, identity = device
        path = catalog_with_demo_items(tmp_path / "large.csv", LARGE_CATALOG)
        demo_count = store.catalog_items(["XJ01CAA040A001"]) and len(
            store.db.execute("SELECT code FROM catalog_item").fetchall()
        )
        importer = start_import(path, data_dir, "2026.12")
        waits, failures, moment = [], [], NOW
        while importer.poll() is None:
            moment += timedelta(seconds=1)
            started = time.perf_counter()
            try:
                settle(store, identity, moment)
            except sqlite3.OperationalError as error:  # "database is locked"
                failures.append(str(error))
            waits.append(time.perf_counter() - started)
            time.sleep(0.02)  # a busy clinic settles every few seconds; this, 30 a second
        _out, err = importer.communicate()
        assert importer.returncode == 0, err.decode()
        assert failures == []
        # the import held the write lock for one batch at a time, never for its whole run
        longest = max(waits)
        print(f"\n{len(waits)} settles during the import, longest {longest * 1000:.0f} ms"
              f" (the {waits.index(longest) + 1}th)")  # fmt: skip
        assert len(waits) > 20 and longest < 2.0
        assert store.catalog_version() == "2026.12"
        (count,) = store.db.execute("SELECT count(*) FROM catalog_item").fetchone()
        assert count == LARGE_CATALOG + demo_count
        assert settle(store, identity, moment + timedelta(seconds=1))["seq"] == len(waits) + 1
        leftovers = store.db.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE '%\\_staged' ESCAPE '\\'"
            " OR name LIKE '%\\_retired' ESCAPE '\\'"
        ).fetchall()
        assert leftovers == []

    def test_a_crash_mid_import_leaves_the_old_catalog_and_the_next_import_works(
        self, device, tmp_path
    ):
        data_dir, store, identity = device
        path = catalog_with_demo_items(tmp_path / "mid.csv", 20_000)
        version = store.catalog_version()
        before = store.catalog_items(["XJ01CAA040A001"])
        importer = start_import(path, data_dir, "2026.12")
        deadline = time.monotonic() + 60
        staged = 0
        while staged < 3000 and importer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            with suppress(sqlite3.OperationalError):  # not made yet
                (staged,) = store.db.execute("SELECT count(*) FROM catalog_item_staged").fetchone()
        importer.kill()  # the power cut, mid-import
        importer.communicate()
        assert staged >= 3000  # it was well under way
        assert store.catalog_version() == version
        assert store.catalog_items(["XJ01CAA040A001"]) == before
        settle(store, identity, NOW + timedelta(minutes=1))  # settling never noticed
        done = clinic("catalog", "import", str(path), "--version", "2026.12",
                      "--data-dir", str(data_dir))  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert store.catalog_version() == "2026.12"
