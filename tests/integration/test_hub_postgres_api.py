"""The device API scenarios (tests/integration/test_hub_api.py) on the PostgreSQL store."""

import pytest
from pg_server import pg_backend, pg_url, postgres  # noqa: F401
from test_hub_api import *  # noqa: F403
from test_hub_api import clock, device, hub, hub_dir, other_device  # noqa: F401


@pytest.fixture(autouse=True)
def _postgres(pg_backend):  # noqa: F811
    return pg_backend


def test_these_hubs_really_keep_their_data_in_postgresql(hub, hub_dir, pg_backend):  # noqa: F811
    import psycopg

    assert not (hub_dir / "hub.db").exists()
    with psycopg.connect(pg_backend) as conn:
        assert conn.execute("SELECT name FROM county").fetchone() is not None
