"""The embedded demo county: policy, a village-clinic catalog, an insured roster.

`install` loads whatever the device does not have yet, so it is safe to run twice.
"""

import json
from collections.abc import Iterator
from datetime import date
from importlib import resources

from edge.catalog_files import open_catalog_file
from edge.money import format_yuan
from edge.rules import Rejection, Visit, VisitLine
from edge.services import quote_visit
from edge.store import SqliteDeviceStore

DEMO_CATALOG_VERSION = "2026.11.1"


def _data(name: str):
    return resources.files(__package__).joinpath(name)


def load_json(name: str) -> dict:
    return json.loads(_data(name).read_text(encoding="utf-8"))


def install(store: SqliteDeviceStore) -> Iterator[str]:
    if store.policy_version() is None:
        policy = store.import_policy(load_json("policy.json"))
        yield f"policy {policy.version} installed"
    if store.catalog_version() is None:
        with resources.as_file(_data("catalog.csv")) as path:
            count = store.import_catalog(
                open_catalog_file(path).items, DEMO_CATALOG_VERSION, source="demo catalog.csv"
            )
        yield f"catalog {DEMO_CATALOG_VERSION}: {count} items installed"
    if store.roster_version() is None:
        count = store.import_roster(load_json("roster.json"))
        yield f"roster: {count} insured persons installed"
