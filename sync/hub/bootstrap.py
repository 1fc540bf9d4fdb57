"""Which store a hub uses, and making a new hub.

A hub's data directory holds its county signing key (`county.key`), its encryption key
(`county-seal.key`, for the ID numbers sealed at enrolment), the console's secret
and, for SQLite, the database (`hub.db`). A hub whose database is PostgreSQL names it in
`database.url` there (`clinic hub init --database URL`); else `$CLINIC_HUB_DATABASE`
names one; else it is SQLite. Every entry point (the `clinic hub` commands, `create_app`,
the background recomputation, the demo) opens its store here.
"""

import os
from datetime import datetime
from pathlib import Path

from sync.hub.adapters.county_key import create_county_key, ensure_seal_key
from sync.hub.adapters.sqlite import SqliteHubStore
from sync.hub.model import HubError
from sync.hub.ports import HubStore
from sync.hub.services import county

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
        ensure_seal_key(data_dir)
        return county.create_county(store, county_name, key.public_key(), now)
    finally:
        store.close()
