"""`clinic backup` and `clinic restore` on real devices: SQLite files, tar archives, keys."""

import json
import sqlite3
import stat
import tarfile
from datetime import timedelta

import pytest
from click.testing import CliRunner
from deploy_support import (
    NOW,
    break_chain,
    file_sha256,
    ledger_rows,
    mark_synced,
    new_device,
    settle,
    settle_many,
)

from edge import demo, maintenance, services
from edge.adapters.identity import KEY_FILE
from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore
from edge.console import main
from edge.maintenance import MaintenanceError


@pytest.fixture
def device(tmp_path):
    data_dir = tmp_path / "device"
    store, identity = new_device(data_dir)
    yield data_dir, store, identity
    store.close()


def test_a_backup_is_one_private_archive_with_the_database_and_the_key(device, tmp_path):
    data_dir, store, identity = device
    settle_many(store, identity, 3)
    result = maintenance.backup(data_dir, tmp_path / "stick", keep=7, now=NOW)
    assert result.path.name == f"clinic-backup-{identity.device_id}-20261122-093000.tar.gz"
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    with tarfile.open(result.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == [DATABASE_FILE, KEY_FILE, "manifest.json"]
        assert members[KEY_FILE].mode == 0o600 and members[DATABASE_FILE].mode == 0o600
        key = tar.extractfile(KEY_FILE).read()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert key == (data_dir / KEY_FILE).read_bytes()
    assert manifest["device_id"] == identity.device_id
    assert (manifest["ledger_head_seq"], manifest["ledger_ok"], manifest["key_included"]) == (
        3,
        True,
        True,
    )
    assert manifest["versions"]["policy"] == demo.policy_document()["version"]
    assert result.warnings == [] and result.pruned == []


def test_backup_and_restore_round_trip_a_device_with_settlements(device, tmp_path):
    data_dir, store, identity = device
    settle_many(store, identity, 4)
    before_rows = ledger_rows(data_dir)
    before_acc = store.accumulators("32011500000001", NOW.date(), "general")
    archive = maintenance.backup(data_dir, tmp_path / "stick", now=NOW).path
    store.close()

    # The SD card died: a new card, a new (empty) data directory, the backup restored once
    # the county has confirmed what it acknowledged (no ledger here to tell).
    replacement = tmp_path / "replacement"
    with pytest.raises(MaintenanceError, match="no current ledger"):
        maintenance.restore(replacement, archive, now=NOW + timedelta(days=1))
    result = maintenance.restore(replacement, archive, force=True, now=NOW + timedelta(days=1))
    assert (result.device_id, result.head_seq, result.records, result.replaced) == (
        identity.device_id,
        4,
        4,
        None,
    )
    assert ledger_rows(replacement) == before_rows
    assert stat.S_IMODE((replacement / KEY_FILE).stat().st_mode) == 0o600
    restored = SqliteDeviceStore.open(replacement)
    try:
        assert services.verify_ledger(restored).ok
        assert restored.accumulators("32011500000001", NOW.date(), "general") == before_acc
        again = services.load_identity(restored, replacement)
        assert again.device_id == identity.device_id
        assert settle(restored, again, NOW + timedelta(days=1))["seq"] == 5  # the chain goes on
        assert services.verify_ledger(restored).ok
    finally:
        restored.close()


def test_a_backup_is_consistent_while_the_terminal_keeps_writing(device, tmp_path):
    data_dir, store, identity = device
    settle_many(store, identity, 2)
    store.db.execute("BEGIN")  # another connection holds an open read transaction meanwhile
    try:
        archive = maintenance.backup(data_dir, tmp_path / "b", now=NOW).path
    finally:
        store.db.execute("COMMIT")
    settle(store, identity, NOW + timedelta(minutes=5))
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    backup = maintenance.read_backup(archive, unpacked)
    assert backup.facts.head_seq == 2 and backup.facts.verification.ok


def test_restoring_a_backup_older_than_what_the_county_acknowledged_is_refused(device, tmp_path):
    data_dir, store, identity = device
    settle_many(store, identity, 3)
    old = maintenance.backup(data_dir, tmp_path / "stick", now=NOW).path
    settle_many(store, identity, 2, NOW + timedelta(hours=1))
    mark_synced(store, 5, NOW + timedelta(hours=2))  # the hub has acknowledged seq 5
    store.close()
    live = file_sha256(data_dir / DATABASE_FILE)

    with pytest.raises(MaintenanceError, match="acknowledged seq 5") as refused:
        maintenance.restore(data_dir, old, now=NOW + timedelta(hours=3))
    assert "ends at seq 3" in str(refused.value) and "--force" in str(refused.value)
    assert file_sha256(data_dir / DATABASE_FILE) == live  # nothing changed
    assert not list(data_dir.glob("replaced-*"))

    result = maintenance.restore(data_dir, old, force=True, now=NOW + timedelta(hours=3))
    assert result.head_seq == 3 and result.overridden
    assert [row[0] for row in ledger_rows(data_dir)] == [1, 2, 3]
    kept = result.replaced
    assert kept.name == "replaced-20261122-123000"
    assert [row[0] for row in ledger_rows(kept)] == [1, 2, 3, 4, 5]  # the replaced one, aside
    assert (kept / KEY_FILE).exists()


def test_restoring_a_backup_that_would_lose_unsent_records_needs_force(device, tmp_path):
    data_dir, store, identity = device
    settle_many(store, identity, 2)
    old = maintenance.backup(data_dir, tmp_path / "stick", now=NOW).path
    settle(store, identity, NOW + timedelta(hours=1))
    store.close()
    with pytest.raises(MaintenanceError, match=r"seq 3\.\.3 would be lost"):
        maintenance.restore(data_dir, old, now=NOW + timedelta(hours=2))


def test_a_backup_of_another_device_is_not_restored_over_this_one(device, tmp_path):
    data_dir, store, identity = device
    settle(store, identity)
    other_dir = tmp_path / "other"
    other_store, other_identity = new_device(other_dir)
    settle(other_store, other_identity)
    other = maintenance.backup(other_dir, tmp_path / "stick", now=NOW).path
    other_store.close()
    store.close()
    with pytest.raises(MaintenanceError, match=f"this device is {identity.device_id}"):
        maintenance.restore(data_dir, other, now=NOW)


def test_a_backup_with_a_broken_ledger_is_kept_as_evidence_but_never_restored(device, tmp_path):
    data_dir, store, identity = device
    settle_many(store, identity, 3)
    store.close()
    break_chain(data_dir, 2)
    result = maintenance.backup(data_dir, tmp_path / "stick", now=NOW)
    assert result.manifest["ledger_ok"] is False
    assert any("broken at seq 2" in warning for warning in result.warnings)
    with pytest.raises(MaintenanceError, match="ledger is broken at seq 2"):
        maintenance.restore(tmp_path / "new", result.path, force=True, now=NOW)
    assert not (tmp_path / "new" / DATABASE_FILE).exists()


def test_a_damaged_archive_is_refused(device, tmp_path):
    data_dir, store, identity = device
    settle(store, identity)
    archive = maintenance.backup(data_dir, tmp_path / "stick", now=NOW).path
    store.close()
    unpacked = tmp_path / "x"
    unpacked.mkdir()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            (unpacked / member.name).write_bytes(tar.extractfile(member).read())
    database = bytearray((unpacked / DATABASE_FILE).read_bytes())
    database[-100] ^= 0xFF  # one flipped byte: the manifest's hash no longer matches
    (unpacked / DATABASE_FILE).write_bytes(bytes(database))
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(tampered, "w:gz") as tar:
        for name in ("manifest.json", DATABASE_FILE, KEY_FILE):
            tar.add(unpacked / name, arcname=name)
    with pytest.raises(MaintenanceError, match="does not match its manifest"):
        maintenance.restore(tmp_path / "new", tampered, force=True, now=NOW)
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(MaintenanceError, match="not a readable backup archive"):
        maintenance.restore(tmp_path / "new", garbage, now=NOW)


def test_a_bare_database_backup_restores_with_the_device_own_key(device, tmp_path):
    """The admin page's backups are bare SQLite copies: the key stays the device's own."""
    data_dir, store, identity = device
    settle_many(store, identity, 2)
    bare = tmp_path / "clinic-20261122-093000.db"
    destination = sqlite3.connect(bare)
    store.db.conn.backup(destination)
    destination.close()
    settle(store, identity, NOW + timedelta(minutes=10))
    mark_synced(store, 2, NOW + timedelta(minutes=20))
    store.close()
    with pytest.raises(MaintenanceError, match="would be lost"):
        maintenance.restore(data_dir, bare, now=NOW + timedelta(hours=1))
    result = maintenance.restore(data_dir, bare, force=True, now=NOW + timedelta(hours=1))
    assert result.records == 2
    assert (data_dir / KEY_FILE).exists() and not (result.replaced / KEY_FILE).exists()


def test_old_backups_are_pruned_to_the_newest_generations(device, tmp_path):
    data_dir, store, identity = device
    stick = tmp_path / "stick"
    stick.mkdir()
    (stick / "notes.txt").write_text("not a backup: never touched")
    made = []
    for day in range(4):
        settle(store, identity, NOW + timedelta(days=day))
        result = maintenance.backup(data_dir, stick, keep=2, now=NOW + timedelta(days=day, hours=1))
        made.append(result.path)
    assert maintenance.backups_in(stick, identity.device_id) == made[2:]
    assert sorted(p.name for p in stick.iterdir()) == sorted(
        ["notes.txt", made[2].name, made[3].name]
    )
    assert result.pruned == [made[1]]


def test_the_cli_backs_up_and_refuses_an_old_backup_in_one_line(device, tmp_path):
    data_dir, store, identity = device
    settle_many(store, identity, 2)
    runner = CliRunner()
    done = runner.invoke(
        main,
        ["backup", "--data-dir", str(data_dir), "--to", str(tmp_path / "s"), "--keep", "3",
         "--json"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    archive = json.loads(done.stdout)["path"]
    assert json.loads(done.stdout)["manifest"]["ledger_head_seq"] == 2
    settle(store, identity, NOW + timedelta(hours=1))
    mark_synced(store, 3, NOW + timedelta(hours=2))
    store.close()

    refused = runner.invoke(
        main, ["restore", archive, "--data-dir", str(data_dir), "--service", ""]
    )
    assert refused.exit_code == 1
    assert refused.stdout == ""
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "acknowledged seq 3" in refused.stderr

    forced = runner.invoke(
        main, ["restore", archive, "--data-dir", str(data_dir), "--service", "", "--force"]
    )
    assert forced.exit_code == 0, forced.output
    assert "ledger verified up to seq 2" in forced.stdout
    assert "warning (--force)" in forced.stderr


def test_the_cli_backup_needs_a_device(tmp_path):
    done = CliRunner().invoke(main, ["backup", "--data-dir", str(tmp_path / "none")])
    assert done.exit_code == 1 and "backup not written" in done.stderr
