"""The county hub's fixtures, for every test under tests/ (tests/conftest.py loads them):
a hub folder with the demo county, the hub serving it on a loopback port with a fake
clock, devices enrolled with it. The hub's scenarios (test_hub_api.py, test_hub_console.py,
test_hub_reconcile.py, test_sync_faults.py) use them; a module that defines a fixture of
the same name uses its own.

`hub_backend` runs every test that makes a hub (through `hub_dir`) once per hub store:
`[sqlite]` keeps the hub's data in hub.db in its folder, `[postgresql]` in a fresh
database on the session's PostgreSQL server (tests/pg_server.py: started on first use,
stopped and removed at session end), which the hub opens because $CLINIC_HUB_DATABASE
names it. The PostgreSQL runs carry the `postgresql` mark. A test that holds on one store
only says so: `@pytest.mark.parametrize("hub_backend", ["sqlite"], indirect=True)`.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pg_server import pg_backend, pg_url, postgres  # noqa: F401
from sync_helpers import NOW, Device, FakeClock, enroll, new_device, start_hub

from sync.hub.server import RunningHub


@dataclass(frozen=True)
class HubBackend:
    name: str  # "sqlite" or "postgresql"
    database_url: str | None = None  # PostgreSQL's; None: hub.db in the hub's folder


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def hub_backend(request, monkeypatch) -> HubBackend:
    """The store of every hub this test makes."""
    if request.param == "postgresql":
        return HubBackend("postgresql", request.getfixturevalue("pg_backend"))
    monkeypatch.delenv("CLINIC_HUB_DATABASE", raising=False)  # not a developer's database
    return HubBackend("sqlite")


@pytest.fixture
def hub_clock() -> FakeClock:
    """The hub's clock: NOW until the test moves it."""
    return FakeClock(NOW)


@pytest.fixture
def hub_dir(tmp_path, hub_backend) -> Path:
    """The hub's folder; its store is hub_backend's."""
    return tmp_path / "hub"


@pytest.fixture
def hub_config() -> dict:
    """What `hub` adds to its app's config; a module or class overrides it."""
    return {}


@pytest.fixture
def hub(hub_dir, hub_clock, hub_config) -> Iterator[RunningHub]:
    """The demo county's hub in hub_dir, serving on a free loopback port, reading hub_clock."""
    running = start_hub(hub_dir, hub_clock, **hub_config)
    yield running
    running.stop()


@pytest.fixture
def make_device(tmp_path) -> Iterator[Callable[[str], Device]]:
    """Makes a device in tmp_path/NAME: the demo county installed, its identity made, not
    enrolled. Its store is closed at the end of the test."""
    made: list[Device] = []

    def make(name: str) -> Device:
        device = new_device(tmp_path / name)
        made.append(device)
        return device

    yield make
    for device in made:
        device.store.close()


@pytest.fixture
def make_enrolled_device(hub, hub_dir, make_device) -> Callable[..., Device]:
    """Makes a device in tmp_path/NAME enrolled with `hub` in a new slot (keyword arguments:
    clinic_code, township)."""

    def make(name: str, **slot) -> Device:
        device = make_device(name)
        enroll(device, hub_dir, hub.url, NOW, **slot)
        return device

    return make


@pytest.fixture
def device(make_device) -> Device:
    """A device in tmp_path/device, not enrolled."""
    return make_device("device")


@pytest.fixture
def other_device(make_device) -> Device:
    """A second device, in tmp_path/other, not enrolled."""
    return make_device("other")


@pytest.fixture
def enrolled_device(hub, hub_dir, device) -> Device:
    """`device`, enrolled with `hub` in a new slot of the default clinic."""
    enroll(device, hub_dir, hub.url, NOW)
    return device
