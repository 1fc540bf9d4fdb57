"""Property-based tests of `quote_document` against `settlement-rules-v2.md`.

The engine is compared, field for field, with tests/settlement_reference_v2.py, a second
settlement written from the two rules pages alone, on documents from
tests/quote_v2_documents.py: fixed fund payments, visit, day and annual caps that tie,
critical-illness thresholds crossed inside one visit, supplements in every order, dated
categories, benefits that require certificates of some diseases, visit types of the
county's own, the family account, persons who are not eligible. The page's invariants
are checked on every settlement, version 1 documents must settle exactly as the version 1
reference says, malformed version 2 fields are BAD_INPUT before any other rejection, and
each subtle case the page names has a worked example.

One file past 500 lines because the properties, the worked examples and the list of
malformed members are one proof against one reference, with the same document builders.
"""

import ast
import copy
import functools
import json
import re
import sys
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
import quote_v2_documents as gen
import test_engine_properties as v1
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from settlement_reference_v2 import (
    CAP_ORDER,
    NEW_FEN_ACCUMULATORS,
    bad_input_field,
    best_assistance_category,
    reference_quote,
    valid_categories,
)

from edge.domain.quote import quote_document

# ---- strategies: the generators of quote_v2_documents, drawn by Hypothesis -------------


@functools.cache
def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


class DrawSource:
    """`gen.Source` over a Hypothesis draw, so that examples shrink."""

    def __init__(self, draw):
        self.draw = draw

    def int(self, low: int, high: int) -> int:
        return self.draw(_ints(low, high))


@st.composite
def v2_documents(draw) -> dict:
    return gen.draw_document(DrawSource(draw))


@st.composite
def v1_or_v2_documents(draw) -> dict:
    source = DrawSource(draw)
    return gen.draw_document(source, v2=not gen.chance(source, 4))


@st.composite
def broken_visits(draw) -> dict:
    """A valid document with version 1 rejections (or a missing certificate) made to apply."""
    source = DrawSource(draw)
    doc = gen.draw_document(source, v2=not gen.chance(source, 4))
    gen.break_visit(source, doc)
    return doc


@st.composite
def bad_new_fields(draw) -> tuple[dict, str]:
    """A document with one malformed version 2 field, and often other rejections too."""
    source = DrawSource(draw)
    doc = gen.draw_document(source, v2=not gen.chance(source, 4))
    if gen.chance(source, 3):
        gen.break_visit(source, doc)
    if gen.chance(source, 3):
        doc["visit"]["lines"] = []  # the page: these BAD_INPUTs come before EMPTY_VISIT
    what = gen.break_new_field(source, doc)
    return doc, what


SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def comparable(result: dict) -> dict:
    """The engine's output with warnings reduced to their codes (messages are free text)."""
    if "error" in result:
        error = result["error"]
        assert isinstance(error.get("message"), str) and error["message"], error
        return {"error": {k: v for k, v in error.items() if k != "message"}}
    return {**result, "warnings": [w["code"] for w in result["warnings"]]}


def engine(doc: dict) -> dict:
    return comparable(quote_document(copy.deepcopy(doc)))


def assert_same(actual: dict, expected: dict) -> None:
    """Field for field, so that a failure names the first field that differs."""
    if "error" in expected or "error" in actual:
        assert actual == expected
        return
    assert sorted(actual) == sorted(expected)
    assert len(actual["lines"]) == len(expected["lines"])
    for index, (got, want) in enumerate(zip(actual["lines"], expected["lines"], strict=True)):
        assert got == want, ("line", index, got, want)
    for key in sorted(expected):
        assert actual[key] == expected[key], (key, actual[key], expected[key])


def test_the_reference_and_its_documents_import_nothing_of_the_project():
    tests = Path(__file__).resolve().parent.parent
    allowed = set(sys.stdlib_module_names) | {"settlement_reference_v2"}
    for name in ("settlement_reference_v2.py", "quote_v2_documents.py"):
        tree = ast.parse((tests / name).read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}  # fmt: skip
        imported |= {node.module or "" for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)}  # fmt: skip
        assert {module.split(".")[0] for module in imported} <= allowed, (name, imported)


def _worked_examples(page: str) -> list[tuple[dict, dict]]:
    """The (input, output) documents of a rules page's worked examples."""
    text = (Path(__file__).resolve().parents[2] / "docs" / page).read_text(encoding="utf-8")
    found = re.findall(r"```json (quote-input|quote-output)\n(.*?)```", text, re.DOTALL)
    assert [kind for kind, _ in found] == ["quote-input", "quote-output"] * (len(found) // 2)
    docs = [json.loads(body) for _, body in found]
    return list(zip(docs[::2], docs[1::2], strict=True))


@pytest.mark.parametrize("page", ["settlement-rules.md", "settlement-rules-v2.md"])
def test_the_reference_gives_every_worked_example_of_the_rules_pages(page):
    examples = _worked_examples(page)
    assert len(examples) >= 6
    for document, output in examples:
        expected, got = comparable(output), reference_quote(document)
        if page == "settlement-rules.md":  # it shows version 1's members only
            got = _shown(got, expected)
        assert got == expected


def _shown(value: Any, like: Any) -> Any:
    """`value` with only the members `like` has, at every depth."""
    if isinstance(value, dict) and isinstance(like, dict):
        return {key: _shown(value[key], like[key]) for key in like if key in value}
    if isinstance(value, list) and isinstance(like, list) and len(value) == len(like):
        return [_shown(v, w) for v, w in zip(value, like, strict=True)]
    return value


# ---- (a) the engine against the reference ------------------------------------------------


@settings(SETTINGS, max_examples=700)
@given(v2_documents())
def test_the_engine_settles_every_v2_document_exactly_as_the_reference_does(doc):
    expected = reference_quote(doc)
    assert "error" not in expected, expected
    assert_same(engine(doc), expected)


@settings(SETTINGS, max_examples=300)
@given(broken_visits())
def test_the_engine_refuses_every_broken_visit_with_the_references_code_and_line(doc):
    expected = reference_quote(doc)
    assert "error" in expected, "the mutation should have made the document invalid"
    assert engine(doc) == expected


# ---- (b) the page's invariants, on the engine's output -----------------------------------

TOP_AMOUNTS = (
    "total",
    "fund",
    "assistance",
    "personal_account",
    "cash",
    "inscp_total",
    "deductible_applied",
    "fulamt_total",
    "overlmt_total",
    "preselfpay_total",
    "policy_selfpay",
    "fund_fixed_total",
    "critical_illness",
    "family_account",
)
LINE_AMOUNTS = ("amount", "fulamt_ownpay", "overlmt_selfpay", "preselfpay", "inscp", "fund_fixed")
V1_ACCUMULATORS = ("deductible_used", "fund_paid", "assistance_paid", "account_balance")
ALL_ACCUMULATORS = {*V1_ACCUMULATORS, *NEW_FEN_ACCUMULATORS, "supplements_paid"}
SETLINFO = (
    "medfee_sumamt",
    "fulamt_ownpay_amt",
    "overlmt_selfpay",
    "preselfpay_amt",
    "inscp_scp_amt",
    "act_pay_dedc",
    "hifp_pay",
    "hifmi_pay",
    "maf_pay",
    "cvlserv_pay",
    "oth_pay",
    "fund_pay_sumamt",
    "acct_pay",
    "acct_mulaid_pay",
    "psn_cash_pay",
)


def _is_fen(value: Any) -> bool:
    return type(value) is int and value >= 0


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _before(doc: dict) -> dict:
    """The input accumulators with the page's defaults (0, {}; null is absent)."""
    acc = doc["accumulators"]
    return {
        **{key: acc[key] for key in ("deductible_used", "fund_paid", "assistance_paid")},
        "account_balance": doc["person"].get("account_balance") or 0,
        **{key: acc.get(key) or 0 for key in NEW_FEN_ACCUMULATORS},
        "supplements_paid": acc.get("supplements_paid") or {},
    }


def _ratio_pay(doc: dict, result: dict) -> int:
    """round((pool − deductible_applied) × ratio), pool from the engine's own lines."""
    fixed = {item["code"] for item in doc["catalog"] if item.get("fund_fixed") is not None}
    pool = sum(line["inscp"] for line in result["lines"] if line["code"] not in fixed)
    b = doc["policy"]["benefits"][doc["person"]["insurance_type"]][doc["visit"]["visit_type"]]
    return _round((pool - result["deductible_applied"]) * Decimal(b["ratio"]))


@SETTINGS
@given(v2_documents())
def test_every_amount_is_whole_fen_and_the_seven_payers_add_up_to_the_total(doc):
    result = quote_document(copy.deepcopy(doc))
    assert "error" not in result, result
    for key in TOP_AMOUNTS:
        assert _is_fen(result[key]), (key, result[key])
    for line in result["lines"]:
        for key in LINE_AMOUNTS:
            assert _is_fen(line[key]), (key, line)
        assert line["fund_fixed"] <= line["inscp"], line
        split = line["fulamt_ownpay"] + line["overlmt_selfpay"] + line["preselfpay"] + line["inscp"]
        assert split == line["amount"], line
    after = result["accumulators_after"]
    assert set(after) == ALL_ACCUMULATORS
    for key in ALL_ACCUMULATORS - {"supplements_paid"}:
        assert _is_fen(after[key]), (key, after[key])
    assert all(_is_fen(v) for v in after["supplements_paid"].values())
    assert all(_is_fen(s["amount"]) for s in result["supplements"])
    assert set(result["setlinfo"]) == set(SETLINFO)
    assert all(_is_fen(v) for v in result["setlinfo"].values())
    supplements = sum(s["amount"] for s in result["supplements"])
    payers = (
        result["fund"]
        + result["critical_illness"]
        + result["assistance"]
        + supplements
        + result["personal_account"]
        + result["family_account"]
        + result["cash"]
    )
    assert payers == result["total"]
    assert result["fund_fixed_total"] == sum(line["fund_fixed"] for line in result["lines"])
    assert result["policy_selfpay"] == result["inscp_total"] - result["fund"]


@SETTINGS
@given(v2_documents())
def test_the_fund_stays_within_its_formula_and_no_cap_is_exceeded_after_the_visit(doc):
    result = quote_document(copy.deepcopy(doc))
    assert "error" not in result, result
    policy, person, visit = doc["policy"], doc["person"], doc["visit"]
    b = policy["benefits"][person["insurance_type"]][visit["visit_type"]]
    before, after = _before(doc), result["accumulators_after"]
    wanted = result["fund_fixed_total"] + _ratio_pay(doc, result)
    assert result["fund"] <= wanted

    if result["eligible"]:
        assert (result["fund_limited_by"] is None) == (result["fund"] == wanted)
        if result["fund_limited_by"] is not None:
            limits = {
                "visit_cap": b.get("visit_cap"),
                "day_cap": None
                if b.get("day_cap") is None
                else max(0, b["day_cap"] - before["day_fund_paid"]),
                "annual_cap": max(0, b["annual_cap"] - before["fund_paid"]),
            }
            bound = [name for name in CAP_ORDER if limits[name] == result["fund"]]
            assert bound and result["fund_limited_by"] == bound[0], (limits, result["fund"])
        if b.get("visit_cap") is not None:
            assert result["fund"] <= b["visit_cap"]
    if b.get("day_cap") is not None:
        assert after["day_fund_paid"] <= max(b["day_cap"], before["day_fund_paid"])
    assert after["fund_paid"] <= max(b["annual_cap"], before["fund_paid"])
    ci = policy.get("critical_illness")
    if ci is None:
        assert result["critical_illness"] == 0
    else:
        assert after["ci_paid"] <= max(ci["annual_cap"], before["ci_paid"])
    scheme = best_assistance_category(
        policy, valid_categories(person, date.fromisoformat(visit["date"]))
    )
    if scheme is None:
        assert result["assistance"] == 0
    else:
        assert after["assistance_paid"] <= max(scheme["annual_cap"], before["assistance_paid"])
    supplements = policy.get("supplements") or []
    assert [(s["name"], s["pays_as"]) for s in result["supplements"]] == [
        (s["name"], s["pays_as"]) for s in supplements
    ]
    for supplement in supplements:
        name = supplement["name"]
        paid_before = before["supplements_paid"].get(name, 0)
        assert after["supplements_paid"].get(name, 0) <= max(supplement["annual_cap"], paid_before)
    assert result["personal_account"] <= before["account_balance"]
    assert result["family_account"] <= before["family_account_balance"]
    if not visit.get("use_family_account"):
        assert result["family_account"] == 0

    # every accumulator moves by exactly what was paid
    paid = {s["name"]: s["amount"] for s in result["supplements"]}
    assert after["deductible_used"] == before["deductible_used"] + result["deductible_applied"]
    assert after["fund_paid"] == before["fund_paid"] + result["fund"]
    assert after["day_fund_paid"] == before["day_fund_paid"] + result["fund"]
    assert after["assistance_paid"] == before["assistance_paid"] + result["assistance"]
    assert after["ci_paid"] == before["ci_paid"] + result["critical_illness"]
    assert after["account_balance"] == before["account_balance"] - result["personal_account"]
    assert after["family_account_balance"] == (
        before["family_account_balance"] - result["family_account"]
    )
    expected_paid = dict(before["supplements_paid"])
    for name, amount in paid.items():
        if amount > 0:
            expected_paid[name] = expected_paid.get(name, 0) + amount
    assert after["supplements_paid"] == expected_paid


@SETTINGS
@given(v2_documents())
def test_setlinfo_is_the_same_settlement_in_the_platforms_names(doc):
    result = quote_document(copy.deepcopy(doc))
    assert "error" not in result, result
    info = result["setlinfo"]
    by_payer = {"oth_pay": 0, "cvlserv_pay": 0}
    for supplement in result["supplements"]:
        by_payer[supplement["pays_as"]] += supplement["amount"]
    assert info == {
        "medfee_sumamt": result["total"],
        "fulamt_ownpay_amt": result["fulamt_total"],
        "overlmt_selfpay": result["overlmt_total"],
        "preselfpay_amt": result["preselfpay_total"],
        "inscp_scp_amt": result["inscp_total"],
        "act_pay_dedc": result["deductible_applied"],
        "hifp_pay": result["fund"],
        "hifmi_pay": result["critical_illness"],
        "maf_pay": result["assistance"],
        "cvlserv_pay": by_payer["cvlserv_pay"],
        "oth_pay": by_payer["oth_pay"],
        "fund_pay_sumamt": result["fund"]
        + result["critical_illness"]
        + result["assistance"]
        + by_payer["cvlserv_pay"]
        + by_payer["oth_pay"],
        "acct_pay": result["personal_account"],
        "acct_mulaid_pay": result["family_account"],
        "psn_cash_pay": result["cash"],
    }
    payers = ("fund_pay_sumamt", "acct_pay", "acct_mulaid_pay", "psn_cash_pay")
    assert sum(info[k] for k in payers) == info["medfee_sumamt"]


@SETTINGS
@given(v2_documents())
def test_a_person_who_is_not_eligible_pays_everything_in_cash_and_changes_nothing(doc):
    result = quote_document(copy.deepcopy(doc))
    assert "error" not in result, result
    if result["eligible"]:
        return
    for key in ("fund", "critical_illness", "assistance", "personal_account", "family_account"):
        assert result[key] == 0, key
    assert result["cash"] == result["total"]
    assert result["fund_limited_by"] is None
    assert result["deductible_applied"] == 0
    assert result["policy_selfpay"] == result["inscp_total"]
    assert all(s["amount"] == 0 for s in result["supplements"])
    assert len(result["supplements"]) == len(doc["policy"].get("supplements") or [])
    assert result["accumulators_after"] == _before(doc)
    assert [w["code"] for w in result["warnings"]] == ["NOT_ELIGIBLE"]


# ---- (c) version 1 documents: the version 1 reference, unchanged -------------------------

V1_FIELDS = (
    "eligible",
    "total",
    "fund",
    "assistance",
    "personal_account",
    "cash",
    "inscp_total",
    "deductible_applied",
    "fulamt_total",
    "overlmt_total",
    "preselfpay_total",
    "policy_selfpay",
    "lines",
    "accumulators_after",
    "warnings",
)
V1_LINE_FIELDS = ("code", "amount", "fulamt_ownpay", "overlmt_selfpay", "preselfpay", "inscp")


def v1_part(result: dict) -> dict:
    """The version 1 output fields of a settlement (those present)."""
    part = {key: result[key] for key in V1_FIELDS if key in result}
    part["lines"] = [
        {key: line[key] for key in (*V1_LINE_FIELDS, "reasons") if key in line}
        for line in result["lines"]
    ]
    part["accumulators_after"] = {
        key: value for key, value in result["accumulators_after"].items() if key in V1_ACCUMULATORS
    }
    return part


@settings(SETTINGS, max_examples=500)
@given(v1.valid_documents())
def test_a_v1_document_gives_exactly_the_v1_references_fields(doc):
    expected = v1.reference_quote(doc)
    assert "error" not in expected, expected
    actual = engine(doc)
    assert "error" not in actual, actual
    assert v1_part(actual) == expected
    assert all(line["fund_fixed"] == 0 for line in actual["lines"])
    assert actual["fund_fixed_total"] == actual["critical_illness"] == 0
    assert actual["family_account"] == 0 and actual["supplements"] == []
    assert actual["fund_limited_by"] in (None, "annual_cap")
    # and the v2 reference agrees with the v1 reference on them, and with the engine on all
    assert v1_part(reference_quote(doc)) == expected
    assert_same(actual, reference_quote(doc))


@settings(SETTINGS, max_examples=200)
@given(v1.invalid_documents())
def test_a_broken_v1_document_is_refused_as_the_v1_reference_says(doc):
    expected = v1.reference_quote(doc)
    assert engine(doc) == expected
    assert reference_quote(doc) == expected


# ---- (d) malformed version 2 fields: BAD_INPUT, before EMPTY_VISIT ----------------------


@settings(SETTINGS, max_examples=500)
@given(bad_new_fields())
def test_a_malformed_v2_field_is_bad_input_before_any_other_rejection(case):
    doc, what = case
    assert reference_quote(doc) == {"error": {"code": "BAD_INPUT"}}, what
    assert bad_input_field(doc) is not None
    assert engine(doc) == {"error": {"code": "BAD_INPUT"}}, (what, bad_input_field(doc))


# ---- (e) the subtle cases the page names, worked by hand ---------------------------------

VETERANS = {
    "name": "veterans_second_compensation",
    "pays_as": "oth_pay",
    "categories": ["disabled_veteran"],
    "base": "all",
    "ratio": "0.80",
    "annual_cap": 2000000,
}
CIVIL = {
    "name": "civil_servant_subsidy",
    "pays_as": "cvlserv_pay",
    "categories": ["civil_servant"],
    "base": "in_scope",
    "ratio": "0.50",
    "annual_cap": 500000,
}


def _item(code: str, price: str, item_class: str = "A", **extra) -> dict:
    return {"code": code, "name": f"item {code}", "kind": "drug", "class": item_class,
            "price": price, **extra}  # fmt: skip


def _doc(lines, catalog, person=None, accumulators=None, policy=None, **visit) -> dict:
    """A resident aged 46 on 2026-11-22 at a general visit, under the page's policy."""
    return {
        "policy": {
            "version": "2027.1",
            "rules": 2,
            "class_b_prepay_ratio": "0.10",
            "benefits": {
                "resident": {
                    "general": {"deductible": 0, "ratio": "0.60", "annual_cap": 40000},
                    "two_diseases": {
                        "deductible": 0,
                        "ratio": "0.50",
                        "annual_cap": 30000,
                        "requires_certificate": True,
                        "diseases": ["I10.x00", "E11.900"],
                    },
                    "chronic": {"deductible": 0, "ratio": "0.70", "annual_cap": 500000},
                },
                "employee": {
                    "general": {"deductible": 30000, "ratio": "0.50", "annual_cap": 200000},
                    "chronic": {"deductible": 0, "ratio": "0.70", "annual_cap": 500000},
                },
            },
            **(policy or {}),
        },
        "catalog": catalog,
        "person": {
            "insurance_type": "resident",
            "gender": "M",
            "birth_date": "1980-05-01",
            "status": "active",
            **(person or {}),
        },
        "accumulators": {
            "deductible_used": 0,
            "fund_paid": 0,
            "assistance_paid": 0,
            **(accumulators or {}),
        },
        "visit": {
            "date": "2026-11-22",
            "visit_type": "general",
            "diagnoses": ["J06.900"],
            "lines": [{"code": c, "quantity": q} for c, q in lines],
            **visit,
        },
    }


def _benefit(doc: dict, visit_type: str = "general", insurance_type: str = "resident") -> dict:
    return doc["policy"]["benefits"][insurance_type][visit_type]


def _settles_as_the_reference(doc: dict) -> dict:
    expected = reference_quote(doc)
    assert_same(engine(doc), expected)
    return expected


def test_a_visit_cap_equal_to_what_the_day_cap_leaves_is_named_first():
    doc = _doc([("D", "1")], [_item("D", "100")], accumulators={"day_fund_paid": 2000})
    _benefit(doc).update(visit_cap=3000, day_cap=5000)
    # inscp 10000; ratio_pay = 10000 × 0.60 = 6000; limits: visit 3000, day 5000 − 2000 =
    # 3000, annual 40000: fund 3000, bound by both caps, "visit_cap" first in the order.
    expected = reference_quote(doc)
    assert (expected["fund"], expected["fund_limited_by"]) == (3000, "visit_cap")
    assert (expected["policy_selfpay"], expected["cash"]) == (7000, 7000)
    after = expected["accumulators_after"]
    assert (after["day_fund_paid"], after["fund_paid"]) == (5000, 3000)
    assert_same(engine(doc), expected)

    # no visit cap; the day cap and the annual cap both leave 3000: "day_cap"
    del _benefit(doc)["visit_cap"]
    doc["accumulators"]["fund_paid"] = 37000
    expected = _settles_as_the_reference(doc)
    assert (expected["fund"], expected["fund_limited_by"]) == (3000, "day_cap")
    # a cap equal to the fund does not bind it: 6000 left by each cap, fund 6000, null
    _benefit(doc).update(visit_cap=6000, day_cap=8000)
    doc["accumulators"]["fund_paid"] = 34000
    expected = _settles_as_the_reference(doc)
    assert (expected["fund"], expected["fund_limited_by"]) == (6000, None)


def test_a_critical_illness_threshold_crossed_inside_one_visit_pays_only_above_it():
    doc = _doc(
        [("D", "5")],
        [_item("D", "1000")],
        person={
            "categories": [
                {
                    "name": "low_income_guarantee",
                    "valid_from": "2026-01-01",
                    "valid_to": "2026-12-31",
                }
            ],
            "chronic_certs": [{"disease_code": "I10", "valid_from": "2026-01-01"}],
        },
        accumulators={"ci_selfpay": 1499000},
        policy={
            "critical_illness": {
                "visit_types": ["chronic"],
                "insurance_types": ["resident"],
                "threshold": 1500000,
                "ratio": "0.60",
                "annual_cap": 40000000,
            },
            "assistance": {"low_income_guarantee": {"ratio": "0.70", "annual_cap": 500000}},
        },
        visit_type="chronic",
        diagnoses=["I10"],
    )
    # total = inscp = 1000 × 5 = 500000; fund = 500000 × 0.70 = 350000; policy_selfpay
    # 150000. over = max(0, 1499000 + 150000 − 1500000) − max(0, 1499000 − 1500000)
    # = 149000 − 0; critical_illness = 149000 × 0.60 = 89400. Assistance on 150000 −
    # 89400 = 60600: × 0.70 = 42420. cash = 500000 − 350000 − 89400 − 42420 = 18180.
    expected = reference_quote(doc)
    assert (expected["fund"], expected["policy_selfpay"]) == (350000, 150000)
    assert (expected["critical_illness"], expected["assistance"]) == (89400, 42420)
    assert expected["cash"] == 18180
    after = expected["accumulators_after"]
    assert (after["ci_selfpay"], after["ci_paid"]) == (1649000, 89400)
    assert expected["setlinfo"]["hifmi_pay"] == 89400
    assert expected["setlinfo"]["fund_pay_sumamt"] == 350000 + 89400 + 42420
    assert_same(engine(doc), expected)

    # already over the threshold, with the cap used up: nothing paid, ci_selfpay still grows
    doc["accumulators"].update(ci_selfpay=1600000, ci_paid=40000000)
    expected = _settles_as_the_reference(doc)
    assert expected["critical_illness"] == 0
    assert expected["accumulators_after"]["ci_selfpay"] == 1750000
    assert expected["assistance"] == 105000  # 150000 × 0.70
    # a general visit is not listed: no critical illness and ci_selfpay unchanged
    doc["visit"]["visit_type"] = "general"
    expected = _settles_as_the_reference(doc)
    assert expected["critical_illness"] == 0
    assert expected["accumulators_after"]["ci_selfpay"] == 1600000


def test_a_base_all_supplement_pays_out_of_scope_and_takes_from_in_scope_first():
    catalog = [_item("D", "50"), _item("C", "20", "C")]
    person = {"categories": ["disabled_veteran", "civil_servant"]}
    # total 7000 (5000 in scope, 2000 class C); fund = 5000 × 0.60 = 3000;
    # policy_selfpay 2000. Before the supplements: in_scope_left 2000, all_left 4000.
    doc = _doc([("D", "1"), ("C", "1")], catalog, person=person,
               policy={"supplements": [{**VETERANS, "ratio": "0.25"}, CIVIL]})  # fmt: skip
    # veterans: 4000 × 0.25 = 1000, taken from in_scope_left (2000 → 1000), all_left 3000;
    # civil servants: 1000 × 0.50 = 500; cash = 7000 − 3000 − 1000 − 500 = 2500.
    expected = reference_quote(doc)
    assert [s["amount"] for s in expected["supplements"]] == [1000, 500]
    assert (expected["fund"], expected["cash"]) == (3000, 2500)
    assert_same(engine(doc), expected)

    # at 0.80 the veterans pay 3200, more than the 2000 in scope: in_scope_left 0 and the
    # civil servants' subsidy, after it, pays 0; cash = 7000 − 3000 − 3200 = 800.
    doc["policy"]["supplements"] = [VETERANS, CIVIL]
    expected = _settles_as_the_reference(doc)
    assert [s["amount"] for s in expected["supplements"]] == [3200, 0]
    assert expected["cash"] == 800
    assert (expected["setlinfo"]["oth_pay"], expected["setlinfo"]["cvlserv_pay"]) == (3200, 0)

    # the other order: civil servants 2000 × 0.50 = 1000 (in 1000, all 3000), veterans
    # 3000 × 0.80 = 2400; cash = 7000 − 3000 − 1000 − 2400 = 600.
    doc["policy"]["supplements"] = [CIVIL, VETERANS]
    expected = _settles_as_the_reference(doc)
    assert [s["amount"] for s in expected["supplements"]] == [1000, 2400]
    assert expected["cash"] == 600
    assert expected["setlinfo"]["fund_pay_sumamt"] == 3000 + 1000 + 2400


def test_a_fixed_payment_is_made_while_the_deductible_is_not_used_up():
    catalog = [
        _item("GF", "10", fund_fixed="8"),
        _item("D", "50"),
        _item("Z", "3", fund_fixed="0"),
    ]
    doc = _doc([("GF", "1"), ("D", "1"), ("Z", "2")], catalog,
               person={"insurance_type": "employee"})  # fmt: skip
    # employee general: deductible 30000, ratio 0.50. fund_fixed: GF 800 (its ¥2 rest stays
    # out of the pool), Z 0 (reason still FIXED_PAYMENT). pool = D's 5000 only;
    # deductible_applied = min(30000, 5000) = 5000; ratio_pay 0; fund = 800 + 0 = 800.
    # total = inscp = 1000 + 5000 + 600 = 6600; policy_selfpay = 5800 = cash.
    expected = reference_quote(doc)
    assert [(line["fund_fixed"], line["reasons"]) for line in expected["lines"]] == [
        (800, ["FIXED_PAYMENT"]),
        (0, []),
        (0, ["FIXED_PAYMENT"]),
    ]
    assert (expected["fund_fixed_total"], expected["deductible_applied"]) == (800, 5000)
    assert (expected["fund"], expected["fund_limited_by"]) == (800, None)
    assert (expected["policy_selfpay"], expected["cash"]) == (5800, 5800)
    after = expected["accumulators_after"]
    assert (after["deductible_used"], after["fund_paid"], after["day_fund_paid"]) == (
        5000,
        800,
        800,
    )
    assert expected["setlinfo"]["act_pay_dedc"] == 5000
    assert_same(engine(doc), expected)

    # over max_qty and the payment standard, FIXED_PAYMENT comes last. Covered 3 of 4:
    # amount 4 × 1234 = 4936, covered 3702, fulamt 1234; eligible 3 × 1000 = 3000,
    # overlmt 702, inscp 3000. fund_fixed = round(0.005 × 3 yuan = 1.5 fen) = 2, rounded
    # once per line (per unit it would be 3 × round(0.5) = 3).
    doc["catalog"][0].update(price="12.34", payment_standard="10", max_qty=3, fund_fixed="0.005")
    doc["visit"]["lines"] = [{"code": "GF", "quantity": "4"}]
    expected = _settles_as_the_reference(doc)
    line = expected["lines"][0]
    assert line["reasons"] == ["QTY_OVER_LIMIT", "OVER_PAYMENT_STANDARD", "FIXED_PAYMENT"]
    assert (line["amount"], line["fulamt_ownpay"], line["overlmt_selfpay"]) == (4936, 1234, 702)
    assert (line["inscp"], line["fund_fixed"]) == (3000, 2)
    # and capped at inscp: round(12.345 × 3 yuan) = 3704 fen, fund_fixed 3000
    doc["catalog"][0]["fund_fixed"] = "12.345"
    assert _settles_as_the_reference(doc)["lines"][0]["fund_fixed"] == 3000


def test_an_empty_diseases_list_refuses_every_visit_that_requires_a_certificate():
    certs = [{"disease_code": "I10.x00", "valid_from": "2026-01-01", "valid_to": "2026-12-31"}]
    doc = _doc([("D", "1")], [_item("D", "100")], person={"chronic_certs": certs},
               visit_type="two_diseases", diagnoses=["I10.x00"])  # fmt: skip
    # the certificate's disease is listed: settles at 10000 × 0.50 = 5000
    assert _settles_as_the_reference(doc)["fund"] == 5000
    _benefit(doc, "two_diseases")["diseases"] = []
    assert reference_quote(doc) == {"error": {"code": "CHRONIC_NOT_CERTIFIED"}}
    assert engine(doc) == {"error": {"code": "CHRONIC_NOT_CERTIFIED"}}
    # codes match exactly: "I10" does not list "I10.x00"
    _benefit(doc, "two_diseases")["diseases"] = ["I10"]
    assert engine(doc) == {"error": {"code": "CHRONIC_NOT_CERTIFIED"}}
    # diseases is ignored where no certificate is required: 10000 × 0.60 = 6000
    _benefit(doc, "general")["diseases"] = []
    doc["visit"]["visit_type"] = "general"
    assert _settles_as_the_reference(doc)["fund"] == 6000
    # a chronic-only item is self-paid at a visit that requires no certificate
    doc["catalog"][0]["chronic_only"] = ["I10.x00"]
    expected = _settles_as_the_reference(doc)
    assert (expected["lines"][0]["reasons"], expected["fund"]) == (["CHRONIC_ONLY"], 0)
    # and covered where the certified diagnosis is the visit's
    doc["visit"]["visit_type"] = "two_diseases"
    _benefit(doc, "two_diseases")["diseases"] = ["I10.x00"]
    expected = _settles_as_the_reference(doc)
    assert (expected["lines"][0]["reasons"], expected["fund"]) == ([], 5000)
    # a valid certificate of a disease the benefit does not list certifies nothing: an
    # item only for E11.9 is self-paid at the two-diseases visit...
    doc["person"]["chronic_certs"].append({"disease_code": "E11.9"})
    doc["visit"]["diagnoses"] = ["I10.x00", "E11.9"]
    doc["catalog"][0]["chronic_only"] = ["E11.9"]
    expected = _settles_as_the_reference(doc)
    assert (expected["lines"][0]["reasons"], expected["fund"]) == (["CHRONIC_ONLY"], 0)
    # ...and covered at a chronic visit, whose benefit lists no diseases: 10000 × 0.70
    doc["visit"]["visit_type"] = "chronic"
    expected = _settles_as_the_reference(doc)
    assert (expected["lines"][0]["reasons"], expected["fund"]) == ([], 7000)


def test_a_person_who_is_not_eligible_gets_every_supplement_listed_with_0():
    before = {
        "deductible_used": 7,
        "fund_paid": 11,
        "assistance_paid": 13,
        "day_fund_paid": 17,
        "ci_selfpay": 19,
        "ci_paid": 23,
        "supplements_paid": {"civil_servant_subsidy": 29, "old_scheme": 31},
        "family_account_balance": 37,
    }
    doc = _doc(
        [("GF", "1"), ("D", "1")],
        [_item("GF", "10", fund_fixed="8"), _item("D", "50")],
        person={
            "status": "suspended",
            "categories": ["disabled_veteran", "civil_servant"],
            "account_balance": 41,
            "insurance_type": "employee",
        },
        accumulators=before,
        policy={"supplements": [VETERANS, CIVIL]},
        use_family_account=True,
        use_personal_account=True,
    )
    # lines are still classified: fund_fixed 800 is computed; the fund pays nothing.
    expected = reference_quote(doc)
    assert expected["supplements"] == [
        {"name": "veterans_second_compensation", "pays_as": "oth_pay", "amount": 0},
        {"name": "civil_servant_subsidy", "pays_as": "cvlserv_pay", "amount": 0},
    ]
    assert (expected["fund_fixed_total"], expected["fund"], expected["cash"]) == (800, 0, 6000)
    assert (expected["deductible_applied"], expected["policy_selfpay"]) == (0, 6000)
    assert expected["fund_limited_by"] is None
    assert expected["accumulators_after"] == {**before, "account_balance": 41}
    assert expected["warnings"] == ["NOT_ELIGIBLE"]
    assert_same(engine(doc), expected)


def test_supplements_paid_lists_a_name_only_when_it_paid_or_was_given():
    charity = {**CIVIL, "name": "charity_fund", "pays_as": "oth_pay", "categories": ["orphan"]}
    doc = _doc(
        [("D", "1")],
        [_item("D", "50")],
        person={"categories": ["disabled_veteran"]},
        accumulators={"supplements_paid": {"civil_servant_subsidy": 0, "old_scheme": 700}},
        policy={"supplements": [VETERANS, CIVIL, charity]},
    )
    # fund 3000; veterans: (5000 − 3000) × 0.80 = 1600; the civil servants' subsidy and the
    # charity do not apply (0). After: the veterans (paid), the civil servants (given,
    # 0), old_scheme (given, not in the policy); no charity_fund.
    expected = reference_quote(doc)
    assert [s["amount"] for s in expected["supplements"]] == [1600, 0, 0]
    assert expected["accumulators_after"]["supplements_paid"] == {
        "civil_servant_subsidy": 0,
        "old_scheme": 700,
        "veterans_second_compensation": 1600,
    }
    assert_same(engine(doc), expected)

    # the annual cap leaves 100: the veterans pay 100 and reach their cap
    doc["accumulators"]["supplements_paid"] = {"veterans_second_compensation": 1999900}
    expected = _settles_as_the_reference(doc)
    assert expected["accumulators_after"]["supplements_paid"] == {
        "veterans_second_compensation": 2000000
    }
    # nothing paid, nothing given: an empty object
    doc["accumulators"].pop("supplements_paid")
    doc["person"]["categories"] = []
    assert _settles_as_the_reference(doc)["accumulators_after"]["supplements_paid"] == {}


def test_dated_categories_count_only_on_their_days_and_null_is_absent():
    doc = _doc(
        [("D", "50")],
        [_item("D", "1")],
        person={
            "categories": [
                {"name": "extreme_poverty", "valid_from": "2026-12-01", "valid_to": "2026-01-01"},
                {"name": "low_income_guarantee", "valid_to": "2026-11-21"},
                {"name": "low_income_guarantee", "valid_from": None, "valid_to": None},
                {"name": "disabled_veteran", "valid_from": "2026-11-23"},
            ]
        },
        accumulators={"day_fund_paid": None, "supplements_paid": None},
        policy={
            "assistance": {
                "extreme_poverty": {"ratio": "1.00", "annual_cap": 1000000},
                "low_income_guarantee": {"ratio": "0.70", "annual_cap": 500000},
            },
            "supplements": [VETERANS],
            "critical_illness": None,
        },
        use_family_account=None,
    )
    _benefit(doc).update(visit_cap=None, day_cap=None, requires_certificate=None, diseases=None)
    doc["catalog"][0]["fund_fixed"] = None
    # extreme_poverty's from > to: never valid; low_income_guarantee's second entry has
    # no bound: valid; the veteran's starts tomorrow. fund = 5000 × 0.60 = 3000;
    # assistance = 2000 × 0.70 = 1400; veterans 0; cash 600.
    expected = reference_quote(doc)
    assert (expected["fund"], expected["assistance"], expected["cash"]) == (3000, 1400, 600)
    assert expected["supplements"][0]["amount"] == 0
    assert expected["accumulators_after"]["supplements_paid"] == {}
    assert_same(engine(doc), expected)


def test_the_family_account_pays_after_the_personal_account_for_any_insurance_type():
    doc = _doc([("D", "100")], [_item("D", "1")], accumulators={"family_account_balance": 1500},
               use_family_account=True, use_personal_account=True)  # fmt: skip
    # resident: fund 6000, personal account 0 (residents have none); family min(1500,
    # 4000) = 1500; cash 2500.
    expected = _settles_as_the_reference(doc)
    assert (expected["personal_account"], expected["family_account"]) == (0, 1500)
    assert expected["cash"] == 2500
    assert expected["accumulators_after"]["family_account_balance"] == 0
    # employee: deductible 30000 takes all 10000; personal account min(9000, 10000) =
    # 9000, family min(1500, 1000) = 1000, cash 0.
    doc["person"].update(insurance_type="employee", account_balance=9000)
    expected = _settles_as_the_reference(doc)
    assert (expected["personal_account"], expected["family_account"]) == (9000, 1000)
    assert expected["cash"] == 0
    assert expected["setlinfo"]["acct_mulaid_pay"] == 1000


# ---- (d) again: each malformed member the page lists, on a visit without lines ----------


def _well_formed_v2_document() -> dict:
    doc = _doc(
        [],  # no lines: EMPTY_VISIT, unless a BAD_INPUT comes first
        [_item("GF", "10", fund_fixed="8"), _item("B1", "2", "B")],
        person={"categories": ["civil_servant", {"name": "disabled_veteran"}]},
        accumulators={"day_fund_paid": 0, "supplements_paid": {"charity_fund": 5}},
        policy={
            "critical_illness": {
                "visit_types": ["chronic"],
                "insurance_types": ["resident"],
                "threshold": 1500000,
                "ratio": "0.60",
                "annual_cap": 40000000,
            },
            "supplements": [dict(VETERANS), dict(CIVIL)],
        },
        use_family_account=False,
    )
    _benefit(doc).update(visit_cap=3000, day_cap=5000)
    return doc


def _at(path: str, value: Any = None, *, delete: bool = False):
    """A mutation writing `value` at a dotted path ("policy.rules", "catalog.1.class")."""

    def mutate(doc: dict) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        key: Any = int(last) if isinstance(target, list) else last
        if delete:
            del target[key]
        else:
            target[key] = value

    return mutate


GENERAL = "policy.benefits.resident.general"
TWO = "policy.benefits.employee.chronic"  # a benefit the visit does not use
CI = "policy.critical_illness"
MALFORMED = {
    "rules 3": _at("policy.rules", 3),
    "rules '2'": _at("policy.rules", "2"),
    "rules true": _at("policy.rules", True),
    "visit_cap -1": _at(f"{GENERAL}.visit_cap", -1),
    "visit_cap '3000'": _at(f"{GENERAL}.visit_cap", "3000"),
    "day_cap 1.5": _at(f"{GENERAL}.day_cap", 1.5),
    "day_cap above 10^13 on an unused benefit": _at(f"{TWO}.day_cap", 10**13 + 1),
    "requires_certificate 'true'": _at(f"{TWO}.requires_certificate", "true"),
    "requires_certificate 1": _at(f"{GENERAL}.requires_certificate", 1),
    "diseases a string": _at(f"{TWO}.diseases", "I10.x00"),
    "diseases with a number": _at(f"{GENERAL}.diseases", ["I10.x00", 10]),
    "diseases with a blank": _at(f"{GENERAL}.diseases", [" "]),
    "a visit type named ''": _at(
        "policy.benefits.employee.", {"deductible": 0, "ratio": "1", "annual_cap": 0}
    ),
    "visit_type not the policy's": _at("visit.visit_type", "two_diseases_typo"),
    "critical_illness a list": _at(CI, []),
    "critical_illness without visit_types": _at(f"{CI}.visit_types", delete=True),
    "critical_illness insurance_types ['farmer']": _at(f"{CI}.insurance_types", ["farmer"]),
    "critical_illness threshold null": _at(f"{CI}.threshold", None),
    "critical_illness ratio '1.5'": _at(f"{CI}.ratio", "1.5"),
    "critical_illness annual_cap -1": _at(f"{CI}.annual_cap", -1),
    "supplements an object": _at("policy.supplements", {"a": dict(VETERANS)}),
    "supplement not an object": _at("policy.supplements.0", "veterans"),
    "supplement name ''": _at("policy.supplements.1.name", ""),
    "supplement without name": _at("policy.supplements.0.name", delete=True),
    "supplement name repeated": _at("policy.supplements.1.name", VETERANS["name"]),
    "supplement pays_as hifp_pay": _at("policy.supplements.0.pays_as", "hifp_pay"),
    "supplement categories a string": _at("policy.supplements.0.categories", "civil_servant"),
    "supplement base 'scope'": _at("policy.supplements.1.base", "scope"),
    "supplement ratio 0.5 (a number)": _at("policy.supplements.1.ratio", 0.5),
    "supplement annual_cap null": _at("policy.supplements.1.annual_cap", None),
    "fund_fixed on class B": _at("catalog.1.fund_fixed", "1"),
    "fund_fixed on class C": _at("catalog.0.class", "C"),
    "fund_fixed 5 places": _at("catalog.0.fund_fixed", "8.00001"),
    "fund_fixed negative": _at("catalog.0.fund_fixed", "-1"),
    "fund_fixed a number": _at("catalog.0.fund_fixed", 8),
    "fund_fixed 10^8 yuan": _at("catalog.0.fund_fixed", "100000000"),
    "category object without name": _at("person.categories.1", {"valid_from": "2026-01-01"}),
    "category object bad date": _at("person.categories.1", {"name": "x", "valid_to": "2026-02-30"}),
    "category a number": _at("person.categories.0", 7),
    "day_fund_paid -1": _at("accumulators.day_fund_paid", -1),
    "ci_selfpay '0'": _at("accumulators.ci_selfpay", "0"),
    "ci_paid true": _at("accumulators.ci_paid", True),
    "family_account_balance 0.5": _at("accumulators.family_account_balance", 0.5),
    "supplements_paid a list": _at("accumulators.supplements_paid", []),
    "supplements_paid value -5": _at("accumulators.supplements_paid.charity_fund", -5),
    "use_family_account 'yes'": _at("visit.use_family_account", "yes"),
}


def test_the_well_formed_document_is_only_an_empty_visit():
    doc = _well_formed_v2_document()
    assert reference_quote(doc) == {"error": {"code": "EMPTY_VISIT"}}
    assert engine(doc) == {"error": {"code": "EMPTY_VISIT"}}
    doc["visit"]["lines"] = [{"code": "GF", "quantity": "1"}]
    assert _settles_as_the_reference(doc)["fund"] == 800


@pytest.mark.parametrize("mutate", MALFORMED.values(), ids=list(MALFORMED))
def test_each_malformed_new_member_is_bad_input_naming_no_line_before_empty_visit(mutate):
    doc = _well_formed_v2_document()
    mutate(doc)
    assert reference_quote(doc) == {"error": {"code": "BAD_INPUT"}}
    assert engine(doc) == {"error": {"code": "BAD_INPUT"}}
    doc["visit"]["lines"] = [{"code": "GF", "quantity": "1"}, {"code": "NOPE", "quantity": "0"}]
    assert engine(doc) == {"error": {"code": "BAD_INPUT"}}
