"""A balance the county computed (a point release's `account_as_of`) on a real device store:
money this terminal paid from an account after the seq the county counted stays paid when
the roster is installed, in the short import and in the staged one (a large roster);
a roster without `account_as_of` keeps the old rule (its balance stands)."""

import json
from datetime import timedelta

import pytest
import sync_helpers
from sync_helpers import NOW, OPERATOR, new_device

from benchmarks.roster_data import write_roster_json
from edge import demo, services
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.model import Rejection
from edge.domain.service_point import next_roster_version

EMPLOYEE = "32011500000502"  # has a personal account; not in the generated rosters


@pytest.fixture
def device(tmp_path):
    device = new_device(tmp_path / "device")
    yield device
    device.store.close()


def balance(device, insured_id: str = EMPLOYEE) -> int:
    entry = device.store.insured_person(insured_id, with_accumulators=False)
    return entry.person.account_balance


def paid_from_account(device, minutes: int) -> dict:
    return sync_helpers.paid_from_account(device, EMPLOYEE, NOW + timedelta(minutes=minutes))


def county_entry(balance: int, as_of: dict | None) -> dict:
    """EMPLOYEE as a point release carries them: the county's balance and how far it
    counted each device's records."""
    (entry,) = (
        p for p in demo.roster_document(NOW.date())["persons"] if p["insured_id"] == EMPLOYEE
    )
    entry = {**entry, "account_balance": balance}
    if as_of is not None:
        entry["account_as_of"] = as_of
    return entry


def install(device, entry: dict, tmp_path=None, generated: int = 0) -> None:
    """A roster of `entry` (and `generated` other persons: over 1000 is staged)."""
    version = next_roster_version(device.store.roster_version())
    persons = [entry]
    if generated:
        path = write_roster_json(tmp_path / "large.json", generated, version, NOW.date())
        persons += json.loads(path.read_text(encoding="utf-8"))["persons"]
    device.store.import_roster({"version": version, "persons": persons}, now=NOW)


@pytest.mark.parametrize("generated", [0, 1500], ids=["short import", "staged import"])
def test_money_paid_after_what_the_county_counted_stays_paid(device, tmp_path, generated):
    device_id = device.store.device().device_id
    start = balance(device)
    first = paid_from_account(device, 1)
    counted = balance(device)  # the county has this first visit
    second = paid_from_account(device, 2)
    third = paid_from_account(device, 3)
    services.reverse_settlement(
        device.store,
        device.identity,
        tx_id=third["tx_id"],
        reason="录错",
        operator=OPERATOR,
        now=NOW + timedelta(minutes=4),
    )
    local = balance(device)
    second_paid = second["body"]["result"]["personal_account"]
    assert local == counted - second_paid < start

    # The county's balance counted this device through the first visit, other devices
    # through theirs: the second visit is paid again on top, the reversed third is a wash.
    county = counted + 500  # the county also put 5 yuan in
    install(
        device, county_entry(county, {device_id: first["seq"], "other": 99}), tmp_path, generated
    )
    assert balance(device) == county - second_paid


def test_a_device_the_county_has_nothing_from_applies_all_its_records(device):
    paid = paid_from_account(device, 1)["body"]["result"]["personal_account"]
    install(device, county_entry(20000, {}))
    assert balance(device) == 20000 - paid


def test_a_balance_never_goes_below_zero(device):
    paid_from_account(device, 1)
    install(device, county_entry(1, {}))
    assert balance(device) == 0


def test_a_roster_balance_without_as_of_stands_as_before(device):
    paid_from_account(device, 1)
    install(device, county_entry(20000, None))
    assert balance(device) == 20000


@pytest.mark.parametrize(
    "as_of, problem",
    [
        ({"d": -1}, "record number"),
        ({"d": True}, "record number"),
        ({"d": "3"}, "record number"),
        ({"": 3}, "names a device"),
        ([1], "object"),
    ],
)
def test_a_malformed_as_of_is_refused_and_changes_nothing(device, as_of, problem):
    before, version = balance(device), device.store.roster_version()
    with pytest.raises(Rejection, match=problem):
        install(device, county_entry(20000, as_of))
    assert balance(device) == before and device.store.roster_version() == version


def test_the_movements_of_records_already_in_the_ledger_are_indexed_by_the_schema_step(device):
    paid_from_account(device, 1)
    reversed_one = paid_from_account(device, 2)
    services.reverse_settlement(
        device.store, device.identity, tx_id=reversed_one["tx_id"], reason="录错",
        operator=OPERATOR, now=NOW + timedelta(minutes=3),
    )  # fmt: skip
    indexed = device.store.db.execute("SELECT * FROM account_movement ORDER BY seq").fetchall()
    amount = reversed_one["body"]["result"]["personal_account"]
    assert [row[2] for row in indexed][-2:] == [-amount, amount]  # the visit, its reversal
    with device.store.write_transaction():  # as a terminal before this step
        device.store.db.execute("DROP TABLE account_movement")
        device.store.db.execute(
            "DELETE FROM _sqlite_migrations WHERE name = 'm016_account_movements'"
        )
    device.store.close()

    device.store = SqliteDeviceStore.open(device.data_dir)  # applies the step again
    assert (
        device.store.db.execute("SELECT * FROM account_movement ORDER BY seq").fetchall() == indexed
    )
