"""The embedded demo county covers every case a tester needs, and it all settles."""

import csv
from datetime import date
from importlib import resources

from edge.demo import SAMPLE_VISITS, load_json
from edge.rules import Rejection, Visit, VisitLine
from edge.services import quote_visit

TODAY = date(2026, 11, 22)


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
    assert {c for p in people for c in p.categories} >= {
        "extreme_poverty",
        "low_income_guarantee",
        "low_income",
        "severe_disability",
    }
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
        assert result.total == 600


def test_the_sample_visits_show_each_outcome(demo_store):
    outcomes = []
    for insured_id, visit_type, diagnoses, lines, use_account in SAMPLE_VISITS:
        visit = Visit(
            TODAY,
            visit_type,
            tuple(diagnoses),
            tuple(VisitLine(c, q) for c, q in lines),
            use_account,
        )
        try:
            result = quote_visit(demo_store, insured_id, visit)
            outcomes.append((result.eligible, result.assistance > 0, result.personal_account > 0))
        except Rejection as rejection:
            outcomes.append(rejection.code)
    assert "CHRONIC_NOT_CERTIFIED" in outcomes
    assert (False, False, False) in outcomes  # not eligible
    assert (True, True, False) in outcomes  # assistance
    assert (True, False, True) in outcomes  # personal account
