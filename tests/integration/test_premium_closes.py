"""Premiums in the device's closes on a real store: a premium not yet in a daily close
makes the month close sign that daily close first, as a settlement does; a reversal in
the next month takes back its premium's persons and state share there; the year close
sums them."""

from datetime import timedelta

import pytest
from clock import NOW

from edge import services
from edge.domain import service_point as sp
from edge.domain.records import body_problem

DEC_2 = NOW + timedelta(days=10)  # 2026-12-02
JAN_3 = NOW + timedelta(days=42)  # 2027-01-03
FAMILY = ("32011500000002", "32011500000003")


@pytest.fixture
def device(demo_store, data_dir):
    identity = services.init_device(demo_store, data_dir, NOW - timedelta(hours=1))
    return demo_store, identity


def collect(device, when, insured_ids=FAMILY, method="cash") -> dict:
    store, identity = device
    rule = store.current_policy().premiums
    persons = []
    for insured_id in insured_ids:
        entry = store.insured_person(insured_id, with_accumulators=False)
        due, state_pays, amount = sp.premium_due(rule, entry.person, when.date())
        persons.append({
            "insured_id": insured_id, "name": entry.name, "categories": [],
            "due": due, "state_pays": state_pays, "amount": amount,
        })  # fmt: skip
    body = {
        "operator": "doc01", "year": sp.premium_year_choices(rule, when.date())[0],
        "payer": {"name": persons[0]["name"], "insured_id": None}, "method": method,
        "reference": "R-1" if method == "mobile" else None, "account_holder": None,
        "persons": persons, "amount": sum(p["amount"] for p in persons),
        "state_paid": sum(p["state_pays"] for p in persons), "account_balance_after": None,
    }  # fmt: skip
    assert body_problem("premium", body) is None
    return services.append_record(store, identity, "premium", body, when)


def test_premiums_are_closed_by_day_month_and_year(device):
    store, identity = device
    first = collect(device, NOW)
    services.close_day(store, identity, operator="doc01", now=NOW + timedelta(hours=9))
    late = collect(device, NOW + timedelta(days=8), FAMILY[:1], method="mobile")  # 30 Nov

    month = services.close_month(store, identity, operator="doc01", now=DEC_2).record
    (_, last_daily) = store.records_of_kind("daily_close")
    assert last_daily["body"]["business_day"] == "2026-11-30"  # signed first, for the premium
    assert last_daily["body"]["premiums"]["collected"]["mobile"] == late["body"]["amount"]
    november = month["body"]["premiums"]
    assert month["body"]["daily_closes"]["count"] == 2
    assert november["collected"]["count"] == 2 and november["collected"]["persons"] == 3
    assert november["net"]["cash"] == first["body"]["amount"]
    assert body_problem("monthly_close", month["body"]) is None

    undo = {
        "reverses": first["tx_id"], "reverses_seq": first["seq"], "operator": "doc01",
        "reason": "退保", "amount": first["body"]["amount"], "method": "cash",
        "account_holder": None, "account_balance_after": None,
    }  # fmt: skip
    services.append_record(store, identity, "premium_reversal", undo, DEC_2)
    year = services.close_year(store, identity, operator="doc01", now=JAN_3).record
    (_, december) = store.records_of_kind("monthly_close")
    taken_back = december["body"]["premiums"]["reversed"]
    assert taken_back["persons"] == 2 and taken_back["state_paid"] == first["body"]["state_paid"]
    assert december["body"]["premiums"]["net"]["cash"] == -first["body"]["amount"]
    assert year["body"]["premiums"]["net"] == {
        "amount": late["body"]["amount"], "cash": 0, "mobile": late["body"]["amount"],
        "family_account": 0,
        "state_paid": late["body"]["state_paid"],
    }  # fmt: skip
    assert body_problem("yearly_close", year["body"]) is None
