"""Which store a hub uses, and making a new hub.

A hub's data directory holds its county signing key (`county.key`), the console's secret
and, for SQLite, the database (`hub.db`). A hub whose database is PostgreSQL names it in
`database.url` there (`clinic hub init --database URL`); else `$CLINIC_HUB_DATABASE`
names one; else it is SQLite. Every entry point (the `clinic hub` commands, `create_app`,
the background recomputation, the demo) opens its store here.
"""

import os
from pathlib import Path

from sync.hub.adapters.sqlite import SqliteHubStore
from sync.hub.ports import HubStore

DATABASE_URL_FILE = "database.url"
DATABASE_ENV = "CLINIC_HUB_DATABASE"


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0] in ("postgresql", "postgres")


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
