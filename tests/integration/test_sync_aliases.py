"""The county publishes its search aliases like its catalog: signed by the county key,
pulled by the agent, installed on the device (newer only), found by search at once."""

from datetime import timedelta

import pytest
from sync_helpers import NOW, FakeClock, enroll, hub_store, new_device, start_hub

from edge import demo as edge_demo
from sync import agent
from sync.hub.adapters.county_key import load_county_key
from sync.hub.model import HubError
from sync.hub.services import publishing
from sync.updates import aliases_content

EXPIRES = NOW + timedelta(days=90)


@pytest.fixture
def hub_dir(tmp_path):
    return tmp_path / "hub"


@pytest.fixture
def device(tmp_path, hub_dir):
    running = start_hub(hub_dir, FakeClock(NOW))
    made = new_device(tmp_path / "device")
    enroll(made, hub_dir, running.url, NOW)
    yield made
    made.store.close()
    running.stop()


def publish(hub_dir, version, rows):
    with hub_store(hub_dir) as store:
        return publishing.publish(
            store, load_county_key(hub_dir), kind="aliases", version=version,
            expires_at=EXPIRES, now=NOW, document=aliases_content(rows),
        )  # fmt: skip


def test_a_published_alias_list_is_installed_and_searched(device, hub_dir):
    rows = [*edge_demo.alias_rows(), ("item", "退烧片", "XM01AEA193A001")]
    publish(hub_dir, "2026.12.1", rows)
    report = agent.sync_once(device.store, device.identity, device.data_dir, NOW)
    assert ("aliases", "2026.12.1", "full") in {
        (u["kind"], u["version"], u["format"]) for u in report["updates_applied"]
    }
    assert device.store.alias_version() == "2026.12.1"
    hit = device.store.search_catalog("退烧")[0]
    assert (hit.name, hit.matched) == ("布洛芬片", "alias")
    assert agent.sync_status(device.store, NOW)["installed"]["aliases"]["source"] == "county"
    # nothing newer: nothing applied
    again = agent.sync_once(device.store, device.identity, device.data_dir, NOW)
    assert [u for u in again["updates_applied"] if u["kind"] == "aliases"] == []


@pytest.mark.parametrize(
    "document",
    [{"aliases": []}, {"aliases": [{"alias": "上感", "list": "drug", "code": "J06.900"}]}, {}],
)
def test_a_malformed_alias_list_is_not_published(hub_dir, document):
    start_hub(hub_dir, FakeClock(NOW)).stop()
    with hub_store(hub_dir) as store, pytest.raises(HubError, match="alias"):
        publishing.publish(
            store, load_county_key(hub_dir), kind="aliases", version="2026.12.1",
            expires_at=EXPIRES, now=NOW, document=document,
        )  # fmt: skip
