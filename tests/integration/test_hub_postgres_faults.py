"""The fault-injecting proxy scenario (tests/integration/test_sync_faults.py) against a hub whose
store is PostgreSQL: ~50 faulty rounds, then a clean one; nothing lost, nothing twice."""

import pytest
import test_sync_faults
from pg_server import pg_backend, pg_url, postgres  # noqa: F401
from test_sync_faults import (  # noqa: F401
    clock,
    device,
    hub,
    test_hundreds_of_faulty_rounds_then_a_clean_one_lose_nothing_and_repeat_nothing,
)


@pytest.fixture(autouse=True)
def _postgres(pg_backend, monkeypatch):  # noqa: F811
    monkeypatch.setattr(test_sync_faults, "FAULTY_ROUNDS", 50)
    return pg_backend
