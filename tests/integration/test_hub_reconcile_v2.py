"""Rules version 2 at the county: the hub recomputes every payer with its own county-wide
figures (the fund paid a person on one date, the year's critical-illness self-pay, the
supplements, the family holder's account), reports what differs, gives a reversal's
figures back, and still recomputes version 1's records as before. On each hub store
(`hub_backend`, tests/hub_fixtures.py)."""

import copy
import gzip
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sync_helpers import NOW, hub_store

from edge import demo as edge_demo
from edge import services
from edge.domain.documents import catalog_item_from_json, visit_from_json
from sync import agent
from sync.hub import reconcile
from sync.hub.adapters.county_key import load_county_key
from sync.hub.adapters.sqlite import SqliteHubStore
from sync.hub.bootstrap import init_hub, open_hub_store
from sync.hub.services import publishing, reconciliation, reports

YEAR = str(NOW.year)
PATIENT = (
    "32011500000901"  # employee: civil servant, disabled veteran, 低保; shares HOLDER's account
)
HOLDER = "32011500000902"  # employee whose personal account PATIENT may use (家庭共济)
RESIDENT = "32011500000903"  # resident, general visits capped at DAY_CAP a day
CI_EMPLOYEE = "32011500000904"  # employee with no category: fund, critical illness, cash
DAY_CAP = 1500
CI_THRESHOLD = 1000
INSULIN_X5 = [("XA10ACE168A001", "5")]  # 5 × ¥42.80 = 21400 fen, class A, no limits
OFFICE_VISIT = [("XJ01CAA040A001", "2")]  # 2 × ¥6.80: the fund pays 60%, more than half the cap


def policy_document() -> dict:
    """The demo policy under rules version 2: a day cap on residents' general visits,
    critical illness on employees' general visits, two supplements."""
    policy = copy.deepcopy(edge_demo.policy_document())
    policy["version"] += ".2"
    policy["rules"] = 2
    policy["benefits"]["resident"]["general"] = {
        "deductible": 0, "ratio": "0.60", "annual_cap": 40000, "day_cap": DAY_CAP,
    }  # fmt: skip
    policy["benefits"]["employee"]["general"] = {
        "deductible": 0, "ratio": "0.50", "annual_cap": 200000,
    }  # fmt: skip
    policy["critical_illness"] = {
        "visit_types": ["general"], "insurance_types": ["employee"],
        "threshold": CI_THRESHOLD, "ratio": "0.50", "annual_cap": 10000000,
    }  # fmt: skip
    policy["supplements"] = [
        {"name": "civil_servant_subsidy", "pays_as": "cvlserv_pay", "categories": ["civil_servant"],
         "base": "in_scope", "ratio": "0.20", "annual_cap": 500000},
        {"name": "veterans_second_compensation", "pays_as": "oth_pay",
         "categories": ["disabled_veteran"], "base": "all", "ratio": "0.20", "annual_cap": 2000000},
    ]  # fmt: skip
    return policy


def person(insured_id: str, insurance_type: str, account_balance: int, **more) -> dict:
    return {
        "insured_id": insured_id,
        "card_no": "C" + insured_id[-6:],
        "name": "测试" + insured_id[-3:],
        "id_number_masked": "320115********" + insured_id[-4:],
        "insurance_type": insurance_type,
        "gender": "F",
        "birth_date": "1970-01-01",
        "status": "active",
        "categories": [],
        "chronic_certs": [],
        "account_balance": account_balance,
        "accumulators": {YEAR: {"general": {"deductible_used": 0, "fund_paid": 0}}},
        **more,
    }


def roster_document() -> dict:
    roster = edge_demo.roster_document(NOW.date())
    roster["version"] += ".2"
    roster["persons"] += [
        person(
            PATIENT, "employee", 500,
            categories=["low_income_guarantee", "civil_servant", "disabled_veteran"],
            family_account_holders=[HOLDER],
        ),
        person(HOLDER, "employee", 400),
        person(RESIDENT, "resident", 0),
        person(CI_EMPLOYEE, "employee", 0),
    ]  # fmt: skip
    return roster


@pytest.fixture
def clinics(make_enrolled_device, hub_dir):
    """Two clinics' devices, enrolled, with the county's version 2 policy and a roster
    with this module's persons installed from the hub."""
    devices = [
        make_enrolled_device(f"device-{index}", clinic_code=clinic)
        for index, clinic in enumerate(("320115-001", "320115-002"))
    ]
    key = load_county_key(hub_dir)
    with hub_store(hub_dir) as store:
        for kind, document in (("policy", policy_document()), ("roster", roster_document())):
            publishing.publish(
                store, key, kind=kind, version=None, expires_at=NOW + timedelta(days=365),
                now=NOW, document=document,
            )  # fmt: skip
    for device in devices:
        report = agent.sync_once(device.store, device.identity, device.data_dir, NOW)
        assert report["ok"], report["errors"]
        assert device.store.current_policy().version == policy_document()["version"]
    return devices


def settle(device, now, insured_id, lines, *, accounts=False) -> dict:
    visit = {
        "date": now.date().isoformat(),
        "visit_type": "general",
        "diagnoses": ["J06.900"],
        "lines": [{"code": code, "quantity": qty} for code, qty in lines],
        "use_personal_account": accounts,
        "use_family_account": accounts,
    }
    return services.settle_visit(
        device.store,
        device.identity,
        insured_id=insured_id,
        visit=visit_from_json(visit),
        operator="doc01",
        now=now,
        family_account_holder=HOLDER if accounts else None,
    ).record


def upload_and_reconcile(hub_dir, *devices) -> dict:
    """Counts of the settlements' and closes' outcomes (events are no settlement)."""
    for device in devices:
        report = agent.sync_once(device.store, device.identity, device.data_dir, NOW)
        assert report["ok"], report["errors"]
    with hub_store(hub_dir) as store:
        counts = reconciliation.reconcile_pending(store, NOW)
    counts.pop("not_a_settlement", None)
    return counts


def items(hub_dir, code=None):
    with hub_store(hub_dir) as store:
        return [i for i in store.reconciliation_items() if code is None or i.code == code]


def balances(hub_dir, insured_id, holder=None, on=None):
    with hub_store(hub_dir) as store:
        return store.balances(insured_id, on or NOW.date(), "general", holder)


def test_a_settlement_with_every_payer_recomputes_with_no_difference(clinics, hub_dir):
    settled = settle(clinics[0], NOW, PATIENT, INSULIN_X5, accounts=True)
    result = settled["body"]["result"]
    # 21400: fund 10700; critical illness 0.50 × (10700 − 1000) = 4850; 低保 assistance
    # 0.70 × (10700 − 4850) = 4095; civil servants 0.20 × 1755 = 351; veterans
    # 0.20 × 1404 = 281; her account 500; her husband's 400; cash 223.
    assert {k: result["setlinfo"][k] for k in reports.PAYERS} == {
        "medfee_sumamt": 21400, "hifp_pay": 10700, "hifmi_pay": 4850, "maf_pay": 4095,
        "cvlserv_pay": 351, "oth_pay": 281, "acct_pay": 500, "acct_mulaid_pay": 400,
        "psn_cash_pay": 223,
    }  # fmt: skip
    assert settled["body"]["visit"]["family_account_holder"] == HOLDER
    services.close_day(clinics[0].store, clinics[0].identity, operator="doc01", now=NOW)

    counts = upload_and_reconcile(hub_dir, clinics[0])
    assert counts == {"ok": 2}  # the visit and the close
    assert items(hub_dir) == []
    with hub_store(hub_dir) as store:
        status, hub_result = store.recomputation_of(clinics[0].identity.device_id, settled["tx_id"])
        (row,) = [
            r for r in reports.fleet_status(store, NOW) if r["device_id"] == settled["device_id"]
        ]
        csv_lines = reports.settlements_csv(store).splitlines()
    assert status == "ok"
    assert hub_result["accumulators_before"] == settled["body"]["accumulators_before"]
    assert set(hub_result["accumulators_before"]) == set(reconcile.BALANCE_FIELDS)
    assert hub_result["family_account_holder"] == HOLDER
    # The county's figures moved as the device's did, the holder's account debited.
    after = balances(hub_dir, PATIENT, HOLDER)
    assert reconcile.balances_as_json(after) == result["accumulators_after"]
    assert (after.account_balance, after.family_account_balance, after.day_fund_paid) == (
        0,
        0,
        10700,
    )
    assert balances(hub_dir, HOLDER).account_balance == 0
    # The fleet shows the close's payers, the CSV each settlement's, by national names.
    assert row["last_close"]["payers"] == {k: result["setlinfo"][k] for k in reports.PAYERS}
    header, line = csv_lines[0].split(","), csv_lines[-1].split(",")
    cells = dict(zip(header, line, strict=True))
    assert header == list(reports.SETTLEMENT_CSV_COLUMNS)
    assert (cells["hifmi_pay"], cells["acct_mulaid_pay"], cells["county_acct_mulaid_pay"]) == (
        "4850", "400", "400",
    )  # fmt: skip
    assert (cells["family_account_holder"], cells["rules_version"], cells["county_status"]) == (
        HOLDER, "2", "ok",
    )  # fmt: skip


def test_the_same_patient_at_two_clinics_on_one_day_meets_the_county_wide_day_cap(clinics, hub_dir):
    first = settle(clinics[0], NOW, RESIDENT, OFFICE_VISIT)
    second = settle(clinics[1], NOW + timedelta(hours=1), RESIDENT, OFFICE_VISIT)
    # Offline, each clinic saw nothing paid that day and the fund paid the visit in full.
    fund = first["body"]["result"]["fund"]
    assert first["body"]["accumulators_before"]["day_fund_paid"] == 0
    assert second["body"]["accumulators_before"]["day_fund_paid"] == 0
    assert second["body"]["result"]["fund"] == fund and fund < DAY_CAP < 2 * fund
    assert second["body"]["result"]["fund_limited_by"] is None

    counts = upload_and_reconcile(hub_dir, *clinics)
    assert counts == {"ok": 1, "differs": 1}
    (item,) = items(hub_dir, reconcile.SETTLEMENT_DIFFERS)
    assert (item.device_id, item.tx_id) == (clinics[1].identity.device_id, second["tx_id"])
    fields = item.details["fields"]
    assert fields["fund"] == {"device": fund, "hub": DAY_CAP - fund}
    assert fields["fund_limited_by"] == {"device": None, "hub": "day_cap"}
    assert fields["cash"]["hub"] - fields["cash"]["device"] == 2 * fund - DAY_CAP
    assert item.details["accumulators_before"] == {
        "fund_paid": {"device": 0, "hub": fund},  # the year's
        "day_fund_paid": {"device": 0, "hub": fund},
    }
    assert balances(hub_dir, RESIDENT).day_fund_paid == DAY_CAP
    assert balances(hub_dir, RESIDENT, on=NOW.date() + timedelta(days=1)).day_fund_paid == 0
    with hub_store(hub_dir) as store:
        lines = reports.reconciliation_csv(store).splitlines()
    assert any(",hifp_pay," in line and ",fund_limited_by," not in line for line in lines)


def test_the_critical_illness_threshold_counts_visits_at_every_clinic(clinics, hub_dir):
    first = settle(clinics[0], NOW, CI_EMPLOYEE, INSULIN_X5)
    second = settle(clinics[1], NOW + timedelta(hours=1), CI_EMPLOYEE, INSULIN_X5)
    selfpay = first["body"]["result"]["policy_selfpay"]  # 10700 each time
    # Each clinic counted this visit's self-pay from 0 towards the threshold.
    assert second["body"]["result"]["critical_illness"] == (selfpay - CI_THRESHOLD) // 2
    counts = upload_and_reconcile(hub_dir, *clinics)
    assert counts == {"ok": 1, "differs": 1}
    (item,) = items(hub_dir, reconcile.SETTLEMENT_DIFFERS)
    # The county had counted the first visit: all of the second lies above the threshold.
    assert item.details["fields"]["critical_illness"] == {
        "device": (selfpay - CI_THRESHOLD) // 2,
        "hub": selfpay // 2,
    }
    assert item.details["accumulators_before"] == {
        "fund_paid": {"device": 0, "hub": selfpay},  # the fund paid the other half
        "day_fund_paid": {"device": 0, "hub": selfpay},
        "ci_selfpay": {"device": 0, "hub": selfpay},
        "ci_paid": {"device": 0, "hub": (selfpay - CI_THRESHOLD) // 2},
    }
    after = balances(hub_dir, CI_EMPLOYEE)
    assert (after.ci_selfpay, after.ci_paid) == (2 * selfpay, selfpay - CI_THRESHOLD // 2)


def test_a_reversal_of_a_family_account_settlement_gives_the_holder_s_balance_back(
    clinics, hub_dir
):
    settled = settle(clinics[0], NOW, PATIENT, INSULIN_X5, accounts=True)
    upload_and_reconcile(hub_dir, clinics[0])
    assert balances(hub_dir, HOLDER).account_balance == 0
    before = reconcile.balances_as_json(balances(hub_dir, PATIENT, HOLDER))
    assert before["supplements_paid"] == {
        "civil_servant_subsidy": 351,
        "veterans_second_compensation": 281,
    }
    services.reverse_settlement(
        clinics[0].store,
        clinics[0].identity,
        tx_id=settled["tx_id"],
        reason="录入错误",
        operator="doc01",
        now=NOW + timedelta(minutes=5),
    )
    assert upload_and_reconcile(hub_dir, clinics[0]) == {"ok": 1}
    assert items(hub_dir) == []
    assert balances(hub_dir, HOLDER).account_balance == 400
    restored = balances(hub_dir, PATIENT, HOLDER)
    assert reconcile.balances_as_json(restored) == {
        **settled["body"]["accumulators_before"],
        "supplements_paid": {"civil_servant_subsidy": 0, "veterans_second_compensation": 0},
    }


def test_a_holder_the_county_does_not_know_to_share_pays_nothing_at_the_county(clinics, hub_dir):
    """The county's roster decides whose account may pay: a holder it does not have
    sharing with the patient is a difference, and the holder's balance stays."""
    settled = settle(clinics[0], NOW, PATIENT, INSULIN_X5, accounts=True)
    roster = roster_document()
    roster["version"] += ".1"
    (patient,) = [p for p in roster["persons"] if p["insured_id"] == PATIENT]
    patient["family_account_holders"] = []
    with hub_store(hub_dir) as store:
        publishing.publish(
            store, load_county_key(hub_dir), kind="roster", version=None,
            expires_at=NOW + timedelta(days=365), now=NOW, document=roster,
        )  # fmt: skip
    assert upload_and_reconcile(hub_dir, clinics[0])["differs"] == 1
    (item,) = items(hub_dir, reconcile.SETTLEMENT_DIFFERS)
    assert item.details["fields"]["family_account"] == {"device": 400, "hub": 0}
    assert item.details["accumulators_before"]["family_account_balance"] == {
        "device": 400,
        "hub": 0,
    }
    assert balances(hub_dir, HOLDER).account_balance == 400
    assert settled["body"]["result"]["family_account"] == 400


def test_a_settlement_the_county_cannot_recompute_moves_its_figures_as_the_device_s_did(
    clinics, hub_dir
):
    device = clinics[0]
    local = device.store.catalog_items(["XA10ACE168A001"])
    version = edge_demo.DEMO_CATALOG_VERSION + ".9"  # never published by the county
    device.store.import_catalog(local.values(), version, source="installed on site", now=NOW)
    settled = settle(device, NOW, PATIENT, INSULIN_X5, accounts=True)
    assert upload_and_reconcile(hub_dir, device) == {"not_recomputable": 1}
    (item,) = items(hub_dir, reconcile.NOT_RECOMPUTABLE)
    assert item.details["device"]["family_account"] == 400
    figures = reconcile.balances_as_json(balances(hub_dir, PATIENT, HOLDER))
    assert figures == settled["body"]["result"]["accumulators_after"]
    assert balances(hub_dir, HOLDER).account_balance == 0
    services.reverse_settlement(
        device.store, device.identity, tx_id=settled["tx_id"], reason="录入错误",
        operator="doc01", now=NOW + timedelta(minutes=5),
    )  # fmt: skip
    assert upload_and_reconcile(hub_dir, device) == {"ok": 1}
    assert balances(hub_dir, HOLDER).account_balance == 400
    restored = reconcile.balances_as_json(balances(hub_dir, PATIENT, HOLDER))
    assert {**restored, "supplements_paid": {}} == settled["body"]["accumulators_before"]


def test_a_version_1_close_counts_the_payers_it_does_not_name_as_0(clinics):
    """A close of version 1 totals five payers: the others are 0, so it differs only
    where the records it covers paid by one of them."""
    settled = settle(clinics[0], NOW, PATIENT, INSULIN_X5, accounts=True)
    close = services.close_day(
        clinics[0].store, clinics[0].identity, operator="doc01", now=NOW
    ).record["body"]
    five = ("count", "total", "fund", "assistance", "personal_account", "cash")
    version_1 = {
        **close,
        **{part: {k: close[part][k] for k in five if k in close[part]} for part in
           ("settlements", "reversals", "net")},
    }  # fmt: skip
    diff = reconcile.daily_close_differences(version_1, [settled])
    assert diff == {
        f"{part}.{name}": {"device": 0, "hub": settled["body"]["result"][name]}
        for part in ("settlements", "net")
        for name in ("critical_illness", "family_account")
    } | {
        f"{part}.{name}": {"device": 0, "hub": amount}
        for part in ("settlements", "net")
        for name, amount in (("cvlserv_pay", 351), ("oth_pay", 281))
    }


# ---- version 1 --------------------------------------------------------------------------

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hub-2026-11"
OLD_DEVICE = "dev-bb88e13025f6"


@pytest.fixture
def old_release(tmp_path):
    """The hub of 2026-11-26 (tests/fixtures/hub-2026-11): its publications, the device's
    records (rules version 1), and what that release recomputed of them."""
    old_dir = tmp_path / "old-hub"
    old_dir.mkdir()
    with gzip.open(FIXTURE / "hub.db.gz") as packed, open(old_dir / "hub.db", "wb") as db:
        shutil.copyfileobj(packed, db)
    store = SqliteHubStore.open(old_dir)
    try:
        records = list(store.records(OLD_DEVICE))
        return {
            "publications": {
                kind: store.latest_publication(kind) for kind in ("catalog", "policy", "roster")
            },
            "records": records,
            "hub_results": {
                r["tx_id"]: store.recomputation_of(OLD_DEVICE, r["tx_id"])[1]
                for r in records
                if r["kind"] == "settlement"
            },
        }
    finally:
        store.close()


def version_1_close(records: list[dict]) -> dict:
    """A daily close body as rules version 1's code made it: five payers."""
    fields = ("total", "fund", "assistance", "personal_account", "cash")
    settlements = {"count": 0, **dict.fromkeys(fields, 0)}
    reversals = {"count": 0, **dict.fromkeys(fields, 0)}
    for record in records:
        if record["kind"] == "settlement":
            bucket, amounts = settlements, record["body"]["result"]
        elif record["kind"] == "reversal":
            bucket, amounts = reversals, record["body"]["amounts"]
        else:
            continue
        bucket["count"] += 1
        for name in fields:
            bucket[name] += amounts[name]
    return {
        "business_day": records[-1]["created_at"][:10],
        "operator": "doc01",
        "from_seq": records[0]["seq"],
        "to_seq": records[-1]["seq"],
        "settlements": settlements,
        "reversals": reversals,
        "net": {name: settlements[name] - reversals[name] for name in fields},
        "needs_review": 0,
    }


def appended(records: list[dict], kind: str, body: dict) -> dict:
    last = records[-1]
    return {
        **last,
        "seq": last["seq"] + 1,
        "kind": kind,
        "tx_id": f"v1-{kind}",
        "body": body,
        "prev_hash": last["hash"],
        "hash": f"{last['seq'] + 1:064x}",
    }


def test_version_1_records_recompute_as_the_previous_release_did(old_release, hub_dir):
    init_hub(hub_dir, "示范县", NOW)
    store = open_hub_store(hub_dir)
    try:
        key = load_county_key(hub_dir)
        for kind, publication in old_release["publications"].items():
            content = publication.content
            publishing.publish(
                store, key, kind=kind, version=publication.version,
                expires_at=NOW + timedelta(days=365), now=NOW,
                items=[catalog_item_from_json(doc, "item") for doc in content.get("items", [])],
                document=content,
            )  # fmt: skip
        records = old_release["records"]
        settled = records[1]
        assert settled["body"]["rules_version"] == 1
        reversal = {
            "reverses": settled["tx_id"],
            "reverses_seq": settled["seq"],
            "insured_id": settled["body"]["insured_id"],
            "operator": "doc01",
            "reason": "录入错误",
            "amounts": {
                k: settled["body"]["result"][k]
                for k in ("total", "fund", "assistance", "personal_account", "cash")
            },
            "accumulators_after": settled["body"]["accumulators_before"],
        }
        records = [*records, appended(records, "reversal", reversal)]
        close = version_1_close(records[1:])
        assert reconcile.daily_close_differences(close, records[1:]) == {}
        records = [*records, appended(records, "daily_close", close)]
        with store.unit_of_work():
            store.add_records(OLD_DEVICE, records, "2026-11-22T10:00:00+08:00")

        counts = reconciliation.reconcile_pending(store, NOW)
        assert counts == {"not_a_settlement": 1, "ok": 5}
        assert store.reconciliation_items() == []
        for tx_id, old in old_release["hub_results"].items():
            status, new = store.recomputation_of(OLD_DEVICE, tx_id)
            assert status == "ok"
            assert {k: new[k] for k in reconcile.VERSION_1_COMPARED} == {
                k: old[k] for k in reconcile.VERSION_1_COMPARED
            }
            for part in ("accumulators_before", "accumulators_after"):
                assert {k: new[part][k] for k in old[part]} == old[part]
        # The reversal took the first visit back, on the county's figures too.
        insured_id = settled["body"]["insured_id"]
        assert store.balances(insured_id, NOW.date(), "general").fund_paid == 0
        assert store.balances(insured_id, NOW.date(), "general").day_fund_paid == 0
    finally:
        store.close()


def test_a_reversal_of_a_settlement_recomputed_by_the_previous_release_still_restores(
    tmp_path,
):
    """A hub result stored by the release before version 2 names four figures: the
    reversal takes back those, on a hub migrated in place."""
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    with gzip.open(FIXTURE / "hub.db.gz") as packed, open(hub_dir / "hub.db", "wb") as db:
        shutil.copyfileobj(packed, db)
    store = SqliteHubStore.open(hub_dir)
    try:
        records = list(store.records(OLD_DEVICE))
        settled = records[1]
        insured_id = settled["body"]["insured_id"]
        assert store.balances(insured_id, NOW.date(), "general").fund_paid == 1078
        reversal = {  # as the previous release wrote one (its four payers)
            "reverses": settled["tx_id"],
            "reverses_seq": settled["seq"],
            "insured_id": insured_id,
            "operator": "doctor",
            "reason": "entered twice",
            "amounts": {
                k: settled["body"]["result"][k]
                for k in ("total", "fund", "assistance", "personal_account", "cash")
            },
            "accumulators_after": settled["body"]["accumulators_before"],
        }
        with store.unit_of_work():
            store.add_records(OLD_DEVICE, [appended(records, "reversal", reversal)], "now")
        assert reconciliation.reconcile_pending(store, NOW) == {"ok": 1}
        assert store.balances(insured_id, NOW.date(), "general").fund_paid == 0
    finally:
        store.close()


def test_a_demo_day_of_the_one_stop_chain_recomputes_at_the_county_with_no_difference(
    make_enrolled_device, hub_dir
):
    """The demo walkthrough (a visit cap, 两病, critical illness, the veterans' and civil
    servants' supplements, a shared account, and the day's close) on the demo county's own
    version 2 policy: every record recomputes at the county as the device settled it."""
    devices = [make_enrolled_device("demo")]
    list(edge_demo.walkthrough(devices[0].store, devices[0].identity, NOW))
    counts = upload_and_reconcile(hub_dir, *devices)
    assert counts.get("differs", 0) == counts.get("not_recomputable", 0) == 0, items(hub_dir)
    settlements = [
        (device.identity.device_id, record["tx_id"])
        for device in devices
        for record in device.store.records()
        if record["kind"] == "settlement"
    ]
    assert counts["ok"] == len(settlements) + len(devices)  # and each device's daily close
    paid = set()
    with hub_store(hub_dir) as store:
        for device_id, tx_id in settlements:
            status, county_result = store.recomputation_of(device_id, tx_id)
            assert status == "ok"
            paid |= {name for name, fen in county_result["setlinfo"].items() if fen}
    assert {"hifmi_pay", "maf_pay", "oth_pay", "cvlserv_pay", "acct_mulaid_pay"} <= paid
