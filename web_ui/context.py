"""What a request works with: its connection to the device store, the shared card reader
and printer, the data directory, the languages. Blueprints take these from here, so that
the app factory (`web_ui.app`) can import the blueprints without a circle."""

from pathlib import Path

from flask import current_app, g

from edge import bootstrap
from edge.adapters.sqlite_store import SqliteDeviceStore
from web_ui.hardware import Hardware

LANGUAGES = ("zh", "en")


def get_store() -> SqliteDeviceStore:
    """This request's connection to the device store (closed when the request ends)."""
    if "store" not in g:
        g.store = bootstrap.connect_store(current_app.config["DATA_DIR"])
    return g.store


def close_store(_exc: BaseException | None = None) -> None:
    store = g.pop("store", None)
    if store is not None:
        store.close()


def data_dir() -> Path:
    return Path(current_app.config["DATA_DIR"])


def hardware() -> Hardware:
    return current_app.extensions["clinic_hardware"]
