"""The service point's records at a real county hub: a device signs service requests, a
family's premium collected under the demo policy's rule, a premium reversal and a daily
close with its premiums; the hub stores every one, flags none as malformed, never
recomputes them as settlements, and finds the close's totals right. A malformed premium
is kept as evidence and flagged. On each hub store (`hub_backend`), over real HTTP."""

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sync_helpers import NOW, OPERATOR, RESIDENT, hub_records, hub_store
from test_hub_console import PASSWORD, signed_in

from edge import demo, services
from edge.adapters import sealing
from edge.domain import records as rec
from edge.domain import service_point as sp
from edge.domain.records import body_problem
from sync import agent
from sync.hub import console_auth
from sync.hub.adapters.county_key import load_county_key
from sync.hub.model import HubError
from sync.hub.services import publishing, reconciliation

ID_NUMBER = "11010519491231002X"
FAMILY = ("32011500000002", "32011500000003")


@pytest.fixture
def village(make_enrolled_device):
    return make_enrolled_device("village", clinic_code="320115-101")


def premium_body(device, insured_ids, *, method="cash", reference=None) -> dict:
    """A premium for `insured_ids` as the device's policy and roster make it."""
    store = device.store
    rule = store.current_policy().premiums
    year = sp.premium_year_choices(rule, NOW.date())[0]
    persons = []
    for insured_id in insured_ids:
        entry = store.insured_person(insured_id, with_accumulators=False)
        due, state_pays, amount = sp.premium_due(rule, entry.person, NOW.date())
        persons.append({
            "insured_id": insured_id, "name": entry.name,
            "categories": sorted(entry.person.categories_on(NOW.date())),
            "due": due, "state_pays": state_pays, "amount": amount,
        })  # fmt: skip
    return {
        "operator": OPERATOR, "year": year,
        "payer": {"name": persons[0]["name"], "insured_id": insured_ids[0]},
        "method": method, "reference": reference, "account_holder": None, "persons": persons,
        "amount": sum(p["amount"] for p in persons),
        "state_paid": sum(p["state_pays"] for p in persons), "account_balance_after": None,
    }  # fmt: skip


def requests(settlement: dict) -> list[dict]:
    county = sealing.public_key_b64(X25519PrivateKey.generate())
    common = {"operator": OPERATOR, "attachments": [], "note": None, "follow_up_of": None}
    photo = {"sha256": "cd" * 32, "type": "image/png", "bytes": 1000, "label": "病历"}
    return [
        {**common, "kind": "enrolment", "insured_id": None,
         "applicant": {"name": "王小梅", "gender": "F", "birth_date": "1949-12-31",
                       "id_number_masked": sp.mask_id_number(ID_NUMBER)},
         "sealed_id_number": sealing.seal(ID_NUMBER, county),
         "details": {"insurance_type": "resident", "category": None, "village": "东山村"}},
        {**common, "kind": "chronic_certificate", "insured_id": RESIDENT, "applicant": None,
         "sealed_id_number": None, "attachments": [photo],
         "details": {"disease_code": "I10.x00", "disease_name": "高血压", "scheme": "two_diseases",
                     "hospital": None, "diagnosed_on": None}},
        {**common, "kind": "complaint", "insured_id": RESIDENT, "applicant": None,
         "sealed_id_number": None,
         "details": {"settlement_tx_id": settlement["tx_id"], "settlement_seq": settlement["seq"],
                     "grounds": "自付部分比上次多"}},
    ]  # fmt: skip


def test_the_service_points_records_are_stored_and_never_recomputed(village, hub, hub_dir):
    device, later = village, NOW + timedelta(minutes=1)
    settlement = device.settle(NOW, RESIDENT)
    for body in requests(settlement):
        assert body_problem("service_request", body) is None
        services.append_record(device.store, device.identity, "service_request", body, later)
    family = premium_body(device, FAMILY)
    assert family["amount"] > 0, "the demo family pays something"
    paid = services.append_record(device.store, device.identity, "premium", family, later)
    mobile = premium_body(device, [RESIDENT], method="mobile", reference="4200001234")
    wrong = services.append_record(device.store, device.identity, "premium", mobile, later)
    undo = {
        "reverses": wrong["tx_id"], "reverses_seq": wrong["seq"], "operator": OPERATOR,
        "reason": "收错了人", "amount": mobile["amount"], "method": "mobile",
        "account_holder": None, "account_balance_after": None,
    }  # fmt: skip
    services.append_record(device.store, device.identity, "premium_reversal", undo, later)
    close = services.close_day(device.store, device.identity, operator=OPERATOR, now=later).record

    premiums = close["body"]["premiums"]
    assert premiums["collected"]["count"] == 2 and premiums["reversed"]["count"] == 1
    assert premiums["collected"]["persons"] == len(FAMILY) + 1
    assert premiums["net"] == {
        "amount": family["amount"], "cash": family["amount"], "mobile": 0,
        "family_account": 0, "state_paid": family["state_paid"],
    }  # fmt: skip
    assert close["body"]["settlements"]["count"] == 1
    assert body_problem("daily_close", close["body"]) is None

    report = agent.sync_once(device.store, device.identity, device.data_dir, later)
    assert report["ok"], report["errors"]
    device_id = device.identity.device_id
    held = hub_records(hub_dir, device_id)
    assert [r["kind"] for r in held if r["kind"] != "event"] == [
        "settlement", "service_request", "service_request", "service_request",
        "premium", "premium", "premium_reversal", "daily_close",
    ]  # fmt: skip
    assert ID_NUMBER not in str(held)
    with hub_store(hub_dir) as store:
        assert store.malformed_records(device_id) == {}
        counts = reconciliation.reconcile_pending(store, later)
        events = sum(r["kind"] == "event" for r in held)  # the enrollment's
        assert counts == {"ok": 2, "not_a_settlement": 6 + events}, counts
        assert store.recomputation_of(device_id, paid["tx_id"]) is None
        assert [i.code for i in store.reconciliation_items([device_id])] == []
        assert not [a for a in store.alarms(device_id) if a.code == "BODY_MALFORMED"]
        console_auth.add_user(store, "admin", PASSWORD, "admin", None, later)
    # The console's pages and exports over a ledger with the new kinds.
    console = signed_in(hub, "admin")
    for page in (
        f"/console/devices/{device_id}",
        "/console/",
        "/console/reconciliation",
        "/console/export/settlements.csv",
        "/console/export/reconciliation.csv",
    ):
        assert console.get(page).status_code == 200, page
    assert settlement["tx_id"] in console.get("/console/export/settlements.csv").get_data(True)


def test_a_malformed_premium_is_kept_as_evidence_and_flagged(village, hub_dir):
    device = village
    body = premium_body(device, FAMILY)
    body["amount"] += 100  # more than the persons' amounts
    services.append_record(device.store, device.identity, "premium", body, NOW)
    report = agent.sync_once(device.store, device.identity, device.data_dir, NOW)
    assert report["ok"], report["errors"]
    device_id = device.identity.device_id
    held = hub_records(hub_dir, device_id)
    assert [r["kind"] for r in held if r["kind"] != "event"] == ["premium"]
    with hub_store(hub_dir) as store:
        flagged = store.malformed_records(device_id)
        (seq,) = flagged
        assert "sum of the persons' amounts" in flagged[seq] and held[seq - 1]["kind"] == "premium"
        assert reconciliation.reconcile_pending(store, NOW).get("malformed") == 1


def test_the_policys_premium_rule_travels_whole_and_a_bad_one_is_not_published(village, hub_dir):
    policy = {**demo.load_json("policy.json"), "version": "2026.3"}
    policy["premiums"] = {**policy["premiums"], "resident": 42000}
    bad = {**policy, "version": "2026.4", "premiums": {**policy["premiums"], "resident": 420.5}}
    with hub_store(hub_dir) as store:
        key = load_county_key(hub_dir)
        expires = NOW + timedelta(days=90)
        with pytest.raises(HubError, match=r"policy\.premiums\.resident"):
            publishing.publish(
                store, key, kind="policy", version="2026.4", expires_at=expires, now=NOW,
                document=bad,
            )  # fmt: skip
        publishing.publish(
            store, key, kind="policy", version="2026.3", expires_at=expires, now=NOW,
            document=policy,
        )  # fmt: skip
    report = agent.sync_once(village.store, village.identity, village.data_dir, NOW)
    assert report["ok"], report["errors"]
    rule = village.store.current_policy().premiums
    assert village.store.current_policy().version == "2026.3"
    assert rule.resident == 42000 and rule.fixed == {"severe_disability": 20000}
    opened = NOW.month >= 9  # collection opens on 1 September
    assert sp.premium_year_choices(rule, NOW.date())[0] == NOW.year + opened


def test_the_hub_checks_a_closes_premiums_across_days(village, hub_dir):
    device, day_2 = village, NOW + timedelta(days=1)
    family = premium_body(device, FAMILY)
    paid = services.append_record(device.store, device.identity, "premium", family, NOW)
    services.close_day(device.store, device.identity, operator=OPERATOR, now=NOW)
    undo = {
        "reverses": paid["tx_id"], "reverses_seq": paid["seq"], "operator": OPERATOR,
        "reason": "重复收取", "amount": family["amount"], "method": "cash",
        "account_holder": None, "account_balance_after": None,
    }  # fmt: skip
    services.append_record(device.store, device.identity, "premium_reversal", undo, day_2)
    since = list(device.store.records(after_seq=device.store.last_seq_of_kind("daily_close")))
    body = rec.daily_close_body(
        since, business_day=day_2.date().isoformat(), operator=OPERATOR,
        originals=services.premium_originals(device.store, since),
    )  # fmt: skip
    reversed_ = body["premiums"]["reversed"]
    assert reversed_["persons"] == len(FAMILY) and reversed_["state_paid"] == family["state_paid"]
    assert body["premiums"]["net"]["cash"] == -family["amount"]
    # A close that claims no premium cash was given back.
    body["premiums"]["net"]["cash"] = 0
    services.append_record(device.store, device.identity, "daily_close", body, day_2)

    report = agent.sync_once(device.store, device.identity, device.data_dir, day_2)
    assert report["ok"], report["errors"]
    device_id = device.identity.device_id
    with hub_store(hub_dir) as store:
        counts = reconciliation.reconcile_pending(store, day_2)
        items = store.reconciliation_items([device_id])
    assert counts["differs"] == 1 and counts["ok"] == 1, counts
    (item,) = items
    assert item.code == "DAILY_CLOSE_DIFFERS"
    assert item.details["fields"] == {"premiums.net.cash": {"device": 0, "hub": -family["amount"]}}
