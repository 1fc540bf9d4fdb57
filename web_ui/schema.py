"""The terminal UI's own tables in the device store, as the migration set "clinic-web-ui".

Applied by `create_app` after the device store's own migrations: PINs and lockouts on
the operator table, the diagnosis list with pinyin search keys, used e-voucher nonces.
"""

import csv
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from edge.adapters.sqlite_store import (
    KEY_CODE,
    KEY_INITIALS,
    KEY_NAME,
    KEY_PINYIN,
    SqliteDeviceStore,
)
from edge.domain.search_keys import pinyin_keys, search_key

migrations = Migrations("clinic-web-ui")


@migrations()
def m001_operator_pins(db: sqlite_utils.Database) -> None:
    for statement in (
        "ALTER TABLE operator ADD COLUMN pin_hash TEXT",
        "ALTER TABLE operator ADD COLUMN failed_attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE operator ADD COLUMN locked_until TEXT",
    ):
        db.execute(statement)


@migrations()
def m002_diagnoses(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE diagnosis (
            code TEXT PRIMARY KEY, name TEXT NOT NULL, pinyin TEXT NOT NULL,
            initials TEXT NOT NULL) STRICT"""
    )
    db.execute(
        """CREATE TABLE diagnosis_search (
            kind INTEGER NOT NULL, key TEXT NOT NULL, code TEXT NOT NULL,
            PRIMARY KEY (kind, key, code)) STRICT, WITHOUT ROWID"""
    )


@migrations()
def m003_used_vouchers(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE used_voucher (
            nonce TEXT PRIMARY KEY, insured_id TEXT NOT NULL, used_at TEXT NOT NULL) STRICT"""
    )


@migrations()
def m004_settled_visit_tokens(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE settled_visit_token (
            token TEXT PRIMARY KEY, settled_at TEXT NOT NULL) STRICT"""
    )


def apply(store: SqliteDeviceStore) -> None:
    migrations.apply(store.db)


def packaged_diagnoses() -> Path:
    """The demo county's diagnosis list (ICD-10 code, Chinese name) shipped with edge."""
    return Path(str(resources.files("edge.demo").joinpath("diagnoses.csv")))


def read_diagnoses(path: Path) -> list[tuple[str, str]]:
    """(code, name) rows of a `code,name` CSV file (UTF-8, with or without BOM)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [
            (row["code"].strip(), row["name"].strip())
            for row in csv.DictReader(handle)
            if (row.get("code") or "").strip() and (row.get("name") or "").strip()
        ]


def load_diagnoses(store: SqliteDeviceStore, rows: Iterable[tuple[str, str]]) -> int:
    """Install the diagnosis list when the device has none yet; returns how many it holds."""
    with store.write_transaction():
        (present,) = store.db.execute("SELECT count(*) FROM diagnosis").fetchone()
        if present:
            return present
        count = 0
        for code, name in rows:
            pinyin, initials = pinyin_keys(name)
            store.db.execute(
                "INSERT OR IGNORE INTO diagnosis VALUES (?, ?, ?, ?)",
                [code, name, pinyin, initials],
            )
            for kind, key in (
                (KEY_CODE, search_key(code)),
                (KEY_NAME, search_key(name)),
                (KEY_INITIALS, initials),
                (KEY_PINYIN, pinyin),
            ):
                store.db.execute(
                    "INSERT OR IGNORE INTO diagnosis_search VALUES (?, ?, ?)", [kind, key, code]
                )
            count += 1
        return count
