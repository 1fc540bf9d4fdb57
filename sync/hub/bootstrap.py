"""Which store a hub uses, and making a new hub.

A hub's data directory holds its county signing key (`county.key`), its encryption key
(`county-seal.key`, for the ID numbers sealed at enrolment), the console's secret
and, for SQLite, the database (`hub.db`). A hub whose database is PostgreSQL names it in
`database.url` there (`clinic hub init --database URL`); else `$CLINIC_HUB_DATABASE`
names one; else it is SQLite. Every entry point (the `clinic hub` commands, `create_app`,
the background recomputation, the demo) opens its store here.
"""

import os
from contextlib import closing
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edge.adapters.sealing import key_id, public_key_b64
from sync.hub.adapters.county_key import (
    SEAL_KEY_FILE,
    create_county_key,
    ensure_seal_key,
    load_seal_key,
)
from sync.hub.adapters.sqlite import SqliteHubStore
from sync.hub.model import HubError
from sync.hub.ports import HubStore
from sync.hub.services import county
from sync.protocol import iso

DATABASE_URL_FILE = "database.url"
DATABASE_ENV = "CLINIC_HUB_DATABASE"


def is_postgres_url(url: str | None) -> bool:
    return url is not None and url.split(":", 1)[0] in ("postgresql", "postgres")


def database_url(data_dir: Path) -> str | None:
    """The PostgreSQL URL this hub uses, or None for SQLite."""
    path = Path(data_dir) / DATABASE_URL_FILE
    if path.exists():
        return path.read_text().strip() or None
    return os.environ.get(DATABASE_ENV) or None


def open_hub_store(data_dir: Path, *, create: bool = False) -> HubStore:
    """The hub's store as configured (see `database_url`), schema brought up to date."""
    url = database_url(data_dir)
    if url:
        from sync.hub.adapters.postgresql import PgHubStore

        return PgHubStore.open(url, create=create)
    return SqliteHubStore.open(data_dir, create=create)


def connect_hub_store(data_dir: Path) -> HubStore:
    """A connection to the configured, existing hub (one per request or worker thread)."""
    url = database_url(data_dir)
    if url:
        from sync.hub.adapters.postgresql import PgHubStore

        return PgHubStore.connect(url)
    return SqliteHubStore.connect(data_dir)


def init_hub(data_dir: Path, county_name: str, now: datetime, database: str | None = None) -> dict:
    """Create a hub: its database, the county signing key and the county's row.

    Without `database`, the database is the configured one (`database_url`: SQLite in
    `data_dir` unless $CLINIC_HUB_DATABASE names PostgreSQL). With a PostgreSQL URL, the
    schema is made there and the URL recorded in `data_dir/database.url` (0600)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if database is None:
        store, where = open_hub_store(data_dir, create=True), str(data_dir)
    else:
        from sync.hub.adapters.postgresql import PgHubStore, redacted

        url_file = data_dir / DATABASE_URL_FILE
        if url_file.exists() and url_file.read_text().strip() != database:
            raise HubError(f"{url_file} already names another database")
        store, where = PgHubStore.open(database, create=True), redacted(database)
    try:
        county.refuse_a_second_county(store, where)
        if database is not None:
            fd = os.open(url_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(database + "\n")
        key = create_county_key(data_dir)
        seal_key = ensure_seal_key(data_dir)
        with store.unit_of_work():
            store.record_seal_key_id(key_id(public_key_b64(seal_key)), iso(now))
        return county.create_county(store, county_name, key.public_key(), now)
    finally:
        store.close()


def county_seal_key(data_dir: Path, now: datetime) -> X25519PrivateKey:
    """The county's encryption key as the hub starts with it. Its id is recorded in the
    database when the hub first has it (a hub made before the service point makes the
    key now; one whose key file predates the record has that file's recorded). From then
    on a missing key file, or one with another key, stops the hub: a new key would leave
    every sealed ID number unreadable, so the file must be restored from the backup."""
    data_dir = Path(data_dir)
    path = data_dir / SEAL_KEY_FILE
    with closing(open_hub_store(data_dir)) as store:
        recorded = store.seal_key_id()
        if recorded is None:
            if not path.exists() and store.holds_sealed_id_numbers():
                raise HubError(_seal_key_missing(path, None))
            made = ensure_seal_key(data_dir)
            with store.unit_of_work():
                store.record_seal_key_id(key_id(public_key_b64(made)), iso(now))
            recorded = store.seal_key_id()
    if not path.exists():
        raise HubError(_seal_key_missing(path, recorded))
    key = load_seal_key(data_dir)
    found = key_id(public_key_b64(key))
    if found != recorded:
        raise HubError(
            f"县医保局加密密钥 {path} 不是本县记录的密钥（记录 {recorded}，文件 {found}），"
            "请从备份恢复原文件，不要另换密钥"
            f" / {path} is not the county's recorded encryption key (recorded {recorded},"
            f" file {found}): restore the original from the backup, never another key"
        )
    return key


def _seal_key_missing(path: Path, recorded: str | None) -> str:
    which = f"（密钥编号 {recorded}）" if recorded else ""
    which_en = f" (key id {recorded})" if recorded else ""
    return (
        f"县医保局加密密钥 {path} 不见了{which}：请从备份恢复该文件（与 county.key 一起备份），"
        "不要重新生成，否则已密封的身份证号都无法打开"
        f" / the county encryption key {path} is missing{which_en}: restore it from the"
        " backup (kept with county.key); a new key would leave every sealed ID number"
        " unreadable"
    )
