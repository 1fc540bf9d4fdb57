"""The embedded demo county covers every case a tester needs, and it all settles."""

import csv
from datetime import date, datetime, time, timedelta
from importlib import resources

import pytest
from clock import TODAY, real_now

from drivers.cards import CardError, card_reader_for_url, demo_cards, read_card
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.clock import CLINIC_TZ
from edge.demo import SAMPLE_VISITS, install, load_json
from edge.domain.model import Rejection, Visit, VisitLine
from edge.services import quote_visit


def demo_rows(name: str) -> list[dict]:
    text = resources.files("edge.demo").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def test_the_catalog_is_a_real_village_clinic_catalog():
    rows = demo_rows("catalog.csv")
    assert len(rows) >= 300
    kinds = {kind: sum(r["kind"] == kind for r in rows) for kind in ("drug", "service", "material")}
    assert min(kinds.values()) >= 20
    assert {r["class"] for r in rows} == {"A", "B", "C"}
    assert any(r["name"] == "阿莫西林胶囊" for r in rows)
    for column in (
        "payment_standard",
        "gender",
        "max_age",
        "min_age",
        "max_qty",
        "chronic_only",
        "valid_to",
        "valid_from",
        "self_prepay_ratio",
        "fund_fixed",
    ):
        assert any(r[column] for r in rows), column


def test_every_chronic_only_code_is_a_known_diagnosis():
    diagnoses = {r["code"] for r in demo_rows("diagnoses.csv")}
    restricted = {c for r in demo_rows("catalog.csv") for c in r["chronic_only"].split(";") if c}
    certified = {
        c["disease_code"] for p in load_json("roster.json")["persons"] for c in p["chronic_certs"]
    }
    assert restricted | certified <= diagnoses


def test_the_roster_covers_every_case(demo_store):
    persons = load_json("roster.json")["persons"]
    assert len(persons) >= 30
    entries = [demo_store.insured_person(p["insured_id"]) for p in persons]
    people = [e.person for e in entries]
    ages = {TODAY.year - p.birth_date.year for p in people}
    assert {p.insurance_type for p in people} == {"resident", "employee"}
    assert {p.status for p in people} == {"active", "suspended", "terminated"}
    assert {c.name for p in people for c in p.categories} >= {
        "extreme_poverty",
        "low_income_guarantee",
        "low_income",
        "severe_disability",
        "disabled_veteran",
        "civil_servant",
    }
    assert any(c.valid_to is not None for p in people for c in p.categories)
    assert any(e.family_account_holders for e in entries)
    assert any(len(p.categories) > 1 for p in people)
    assert any(p.waiting_until and p.waiting_until >= TODAY for p in people)
    assert {c.disease_code for p in people for c in p.chronic_certs} == {"I10.x00", "E11.900"}
    assert min(ages) <= 6 and max(ages) >= 80
    balances = {p.account_balance for p in people if p.insurance_type == "employee"}
    assert 0 in balances and max(balances) >= 100000


def test_every_demo_person_can_be_settled_for_a_consultation(demo_store):
    visit = Visit(TODAY, "general", ("J06.900",), (VisitLine("110200005000000", "1"),))
    for person in load_json("roster.json")["persons"]:
        result = quote_visit(demo_store, person["insured_id"], visit)
        assert result.total == 1000  # ¥10, of which the fund pays ¥8 to those it covers
        assert result.fund_fixed_total == 800


def test_the_sample_visits_show_each_outcome(demo_store):
    outcomes = []
    for insured_id, visit_type, diagnoses, lines, pays_with in SAMPLE_VISITS:
        visit = Visit(
            TODAY, visit_type, tuple(diagnoses), tuple(VisitLine(c, q) for c, q in lines),
            **pays_with,
        )  # fmt: skip
        try:
            result = quote_visit(demo_store, insured_id, visit)
            outcomes.append((result.eligible, result.assistance > 0, result.personal_account > 0))
        except Rejection as rejection:
            outcomes.append(rejection.code)
    assert "CHRONIC_NOT_CERTIFIED" in outcomes
    assert (False, False, False) in outcomes  # not eligible
    assert (True, True, False) in outcomes  # assistance
    assert (True, False, True) in outcomes  # personal account


# ---- every documented case holds on whatever day the demo is installed ---------------------

# The days the demo's dates are most likely to break on, and the real day (`make test-dates`
# runs the suite with the wall clock moved to several moments: then "today" is one of them).
INSTALL_DAYS = [
    TODAY,
    date(2026, 12, 31),
    date(2027, 1, 1),
    date(2027, 3, 1),
    date(2028, 2, 29),
    date(2028, 3, 1),
    date(2035, 6, 15),
]
GENERAL = ("general", ("J06.900",))
CONSULTATION = "110200005000000"  # ¥10, the fund pays ¥8 of it
AMOXICILLIN = "XJ01CAA040A001"  # ¥6.80
AMOXICILLIN_500 = "XJ01CAA040A002"  # ¥9.50
CHILD_GRANULES = "ZA01ABK0117010"  # 小儿感冒颗粒, max_age 14
LEVOFLOXACIN = "XJ01MAA113A001"  # min_age 18
AMLODIPINE = "XC08CAB128A001"  # a hypertension drug
METFORMIN_XR = "XA10BAB155A002"  # not valid yet on the demo day
LIQUORICE_SYRUP = "XR05DAD195A001"  # no longer valid on the demo day


def installed_on(tmp_path, day: date) -> SqliteDeviceStore:
    store = SqliteDeviceStore.open(tmp_path / day.isoformat(), create=True)
    list(install(store, datetime.combine(day, time(9, 30), CLINIC_TZ)))
    return store


def outcome(store, insured_id: str, day: date, kind, lines) -> tuple | str:
    visit_type, diagnoses = kind
    visit = Visit(day, visit_type, diagnoses, tuple(VisitLine(code, "1") for code in lines))
    try:
        result = quote_visit(store, insured_id, visit)
    except Rejection as rejection:
        return rejection.code
    reasons = tuple(reason for line in result.lines for reason in line.reasons)
    return result.eligible, reasons


def documented_cases(store, day: date) -> dict:
    tomorrow = day + timedelta(days=1)
    return {
        "turns 14 today: a child's drug still pays": outcome(
            store, "32011700000014", day, GENERAL, [CHILD_GRANULES]
        ),
        "turned 15 yesterday: a child's drug does not": outcome(
            store, "32011700000015", day, GENERAL, [CHILD_GRANULES]
        ),
        "turns 18 tomorrow: an adults-only drug does not pay": outcome(
            store, "32011700000016", day, GENERAL, [LEVOFLOXACIN]
        ),
        "waiting period not over": outcome(store, "32011600000019", day, GENERAL, [CONSULTATION]),
        "waiting period over": outcome(store, "32011600000020", day, GENERAL, [CONSULTATION]),
        "waiting period ends today": outcome(store, "32011600000021", day, GENERAL, [CONSULTATION]),
        "waiting period ended yesterday": outcome(
            store, "32011600000021", tomorrow, GENERAL, [CONSULTATION]
        ),
        "certificate expired": outcome(
            store, "32011500000022", day, ("chronic", ("I10.x00",)), [AMLODIPINE]
        ),
        "certificate not yet valid": outcome(
            store, "32011600000024", day, ("chronic", ("I10.x00",)), [AMLODIPINE]
        ),
        "certificates valid": [
            outcome(store, insured_id, day, ("chronic", ("I10.x00",)), [AMLODIPINE])
            for insured_id in ("32011500000002", "32011500000003", "32011600000009")
        ],
        "card expired, insurance active": outcome(
            store, "32011700000507", day, GENERAL, [CONSULTATION]
        ),
        "catalog item not valid yet": outcome(
            store, "32011500000004", day, ("chronic", ("E11.900",)), [METFORMIN_XR]
        ),
        "catalog item no longer valid": outcome(
            store, "32011500000001", day, GENERAL, [LIQUORICE_SYRUP]
        ),
        "suspended": outcome(store, "32011500000017", day, GENERAL, [CONSULTATION]),
        **one_stop_cases(store, day),
    }


def payers(store, insured_id: str, day: date, kind, lines, **visit) -> dict:
    """Who paid a quoted visit (the payers that paid more than 0), and which cap bound."""
    visit_type, diagnoses = kind
    quoted = quote_visit(
        store, insured_id,
        Visit(day, visit_type, diagnoses, tuple(VisitLine(c, q) for c, q in lines), **visit),
    )  # fmt: skip
    paid = {name: amount for name, amount in quoted.setlinfo().items() if amount}
    return {
        "payers": sorted(set(paid) - {"medfee_sumamt", "inscp_scp_amt", "fund_pay_sumamt"}),
        "fund_limited_by": quoted.fund_limited_by,
    }


def one_stop_cases(store, day: date) -> dict:
    """Version 2's cases: each demo person the README names for a payer of the chain."""
    hypertension = ("I10.x00",)
    return {
        "a visit above the visit cap": payers(
            store,
            "32011500000001",
            day,
            GENERAL,
            [(CONSULTATION, "1"), (AMOXICILLIN, "3"), (AMOXICILLIN_500, "2")],
        ),
        "two diseases (两病) visit": payers(
            store, "32011500000002", day, ("two_diseases", hypertension), [(AMLODIPINE, "1")]
        ),
        "critical illness threshold crossed": payers(
            store, "32011500000028", day, ("chronic", hypertension), [(AMLODIPINE, "5")]
        ),
        "disabled veteran": payers(
            store, "32011500000026", day, GENERAL, [(CONSULTATION, "1"), (AMOXICILLIN, "1")]
        ),
        "civil servant": payers(
            store,
            "32011500000510",
            day,
            GENERAL,
            [(CONSULTATION, "1"), (AMOXICILLIN, "1")],
            use_personal_account=True,
        ),
        "daughter's account shared": payers(
            store,
            "32011500000027",
            day,
            GENERAL,
            [(CONSULTATION, "1"), (AMOXICILLIN, "1")],
            use_family_account=True,
        ),
        "low-income guarantee expired": payers(
            store, "32011500000029", day, GENERAL, [(CONSULTATION, "1")]
        ),
    }


HIFP, CASH = "hifp_pay", "psn_cash_pay"
EXPECTED_CASES = {
    "turns 14 today: a child's drug still pays": (True, ()),
    "turned 15 yesterday: a child's drug does not": (True, ("AGE_RESTRICTED",)),
    "turns 18 tomorrow: an adults-only drug does not pay": (True, ("AGE_RESTRICTED",)),
    "waiting period not over": (False, ("FIXED_PAYMENT",)),
    "waiting period over": (True, ("FIXED_PAYMENT",)),
    "waiting period ends today": (False, ("FIXED_PAYMENT",)),
    "waiting period ended yesterday": (True, ("FIXED_PAYMENT",)),
    "certificate expired": "CHRONIC_NOT_CERTIFIED",
    "certificate not yet valid": "CHRONIC_NOT_CERTIFIED",
    "certificates valid": [(True, ())] * 3,
    "card expired, insurance active": (True, ("FIXED_PAYMENT",)),
    "catalog item not valid yet": "ITEM_NOT_VALID",
    "catalog item no longer valid": "ITEM_NOT_VALID",
    "suspended": (False, ("FIXED_PAYMENT",)),
    "a visit above the visit cap": {"payers": [HIFP, CASH], "fund_limited_by": "visit_cap"},
    "two diseases (两病) visit": {"payers": [HIFP, CASH], "fund_limited_by": None},
    "critical illness threshold crossed": {"payers": ["hifmi_pay", HIFP, CASH],
                                           "fund_limited_by": None},
    "disabled veteran": {"payers": [HIFP, "oth_pay", CASH], "fund_limited_by": None},
    "civil servant": {"payers": ["acct_pay", "cvlserv_pay", HIFP], "fund_limited_by": None},
    "daughter's account shared": {"payers": ["acct_mulaid_pay", HIFP], "fund_limited_by": None},
    "low-income guarantee expired": {"payers": [HIFP, CASH], "fund_limited_by": None},
}  # fmt: skip


@pytest.mark.parametrize("day", [*INSTALL_DAYS, "real"], ids=str)
def test_every_documented_case_holds_on_the_day_the_demo_is_installed(tmp_path, day):
    day = real_now().date() if day == "real" else day
    store = installed_on(tmp_path, day)
    try:
        assert documented_cases(store, day) == EXPECTED_CASES
        entry = store.insured_person("32011500000023")  # the year's general cap nearly used
        assert store.accumulators(entry.insured_id, day, "general").fund_paid == 39000
        ages = {p["insured_id"]: age(store, p["insured_id"], day) for p in persons()}
        assert (ages["32011500000011"], ages["32011500000003"]) == (2, 85)
    finally:
        store.close()


@pytest.mark.parametrize("day", [*INSTALL_DAYS, "real"], ids=str)
def test_demo_cards_read_as_their_label_says(day):
    day = real_now().date() if day == "real" else day
    expected = {card.name: card.expect(day) for card in demo_cards(day)}
    assert expected["expired"] == expected["B32011757"] == "CARD_EXPIRED"
    assert expected["locked"] == "SECURITY_STATUS"  # not its base card's expiry
    for card in demo_cards(day):
        try:
            with card_reader_for_url(f"emulated://{card.name}", today=day) as reader:
                read_card(reader, today=day, timeout=1)
            got = "ok"
        except CardError as error:
            got = error.code
        assert got == expected[card.name], card.name


def test_a_broken_card_on_an_expired_base_card_still_names_its_own_defect():
    late = date(2099, 1, 1)  # every demo card has expired by then
    labels = {card.name: card.expect(late) for card in demo_cards(TODAY)}
    assert labels["A32011501"] == labels["t0-chaining"] == "CARD_EXPIRED"
    assert labels["locked"] == "SECURITY_STATUS" and labels["malformed-tlv"] == "BAD_TLV"


def persons() -> list[dict]:
    return load_json("roster.json")["persons"]


def age(store, insured_id: str, day: date) -> int:
    born = store.insured_person(insured_id).person.birth_date
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))
