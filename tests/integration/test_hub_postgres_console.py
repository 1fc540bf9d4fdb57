"""The hub's scenarios of tests/integration/test_hub_console.py against the PostgreSQL store."""

import pytest
from pg_server import pg_backend, pg_url, postgres  # noqa: F401
from test_hub_console import *  # noqa: F403


@pytest.fixture(autouse=True)
def _postgres(pg_backend):  # noqa: F811
    return pg_backend
