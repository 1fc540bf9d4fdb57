"""A county hub's SQLite database made by an earlier release opens with today's code.

`fixtures/hub-2026-11/` was made by the code of 2026-11-26 (before the hub's store was
split into a port and adapters): the demo county published, one device enrolled with
three settlements and a daily close uploaded and recomputed. Opening it now must keep
every row working: the device's records, its slot, the county's publications and
console users, and what the next upload, recomputation and report need.
"""

import gzip
import shutil
from pathlib import Path

import pytest
from clock import NOW

from sync.hub import console_auth
from sync.hub.bootstrap import open_hub_store
from sync.hub.services.county import provision
from sync.hub.services.reconciliation import reconcile_pending
from sync.hub.services.reports import fleet_status, settlements_csv

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hub-2026-11"
DEVICE = "dev-bb88e13025f6"


@pytest.fixture
def old_hub(tmp_path) -> Path:
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir(mode=0o700)
    with gzip.open(FIXTURE / "hub.db.gz") as packed, open(hub_dir / "hub.db", "wb") as db:
        shutil.copyfileobj(packed, db)
    shutil.copy(FIXTURE / "county.key", hub_dir / "county.key")
    (hub_dir / "county.key").chmod(0o600)
    return hub_dir


def test_a_hub_made_by_the_previous_release_opens_with_nothing_lost(old_hub):
    store = open_hub_store(old_hub)
    try:
        assert [r["seq"] for r in store.records(DEVICE)] == [1, 2, 3, 4]
        assert store.slot_by_device(DEVICE).head_seq == 4
        for kind in ("catalog", "policy", "roster"):
            assert store.latest_publication(kind) is not None, kind
        assert console_auth.sign_in(store, "county-admin", "demo-admin-2026", NOW).role == "admin"
        (row,) = fleet_status(store, NOW)
        assert row["device_id"] == DEVICE
        assert settlements_csv(store).count("\n") == 1 + 3  # the header and three settlements
        assert reconcile_pending(store, NOW) == {}  # recomputed by the old release already
        assert store.malformed_records(DEVICE) == {}  # m003 added the flags, none set
        assert provision(store, clinic_code="C2", township="T", now=NOW).code
    finally:
        store.close()
