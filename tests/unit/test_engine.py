"""The settlement rules, one test per rule, with numbers worked out by hand."""

import pytest
from conftest import item, quote_doc

from edge.domain.quote import quote_document, quote_text


def settled(doc: dict) -> dict:
    result = quote_document(doc)
    assert "error" not in result, result
    return result


def rejected(doc: dict) -> dict:
    result = quote_document(doc)
    assert set(result) == {"error"}, result
    return result["error"]


def split(result: dict) -> tuple[int, int, int, int, int]:
    return (
        result["total"],
        result["fund"],
        result["assistance"],
        result["personal_account"],
        result["cash"],
    )


def line_parts(result: dict, index: int = 0) -> tuple:
    line = result["lines"][index]
    return (
        line["amount"],
        line["fulamt_ownpay"],
        line["overlmt_selfpay"],
        line["preselfpay"],
        line["inscp"],
        line["reasons"],
    )


# ---- per line ----------------------------------------------------------------------------


class TestLineAmounts:
    def test_a_class_a_line_is_wholly_inside_the_policy_scope(self):
        result = settled(quote_doc([("A1", "2")], [item("A1", "12.50")]))
        assert line_parts(result) == (2500, 0, 0, 0, 2500, [])
        # resident general: 2500 × 0.55 = 1375
        assert split(result) == (2500, 1375, 0, 0, 1125)

    def test_prices_in_fractions_of_a_fen_round_half_up_not_to_even(self):
        # 0.0250 yuan = 2.5 fen: half up gives 3 (banker's rounding would give 2)
        result = settled(quote_doc([("T1", "1")], [item("T1", "0.0250")]))
        assert result["lines"][0]["amount"] == 3

    def test_the_amount_is_rounded_once_from_the_exact_product(self):
        # 0.0350 × 3 = 0.105 yuan = 10.5 fen -> 11, not 3 × round(3.5) = 12
        result = settled(quote_doc([("T1", "3")], [item("T1", "0.0350")]))
        assert result["lines"][0]["amount"] == 11

    def test_a_fractional_quantity_is_priced_exactly(self):
        # 3.3333 × 1.5 = 4.99995 yuan = 499.995 fen -> 500
        result = settled(quote_doc([("T1", "1.5")], [item("T1", "3.3333")]))
        assert result["lines"][0]["amount"] == 500


class TestWholeLineSelfPaid:
    def test_class_c_is_not_covered(self):
        result = settled(quote_doc([("C1", "1")], [item("C1", "30", "C")]))
        assert line_parts(result) == (3000, 3000, 0, 0, 0, ["NOT_COVERED"])
        assert split(result) == (3000, 0, 0, 0, 3000)

    def test_an_item_for_the_other_gender_is_self_paid(self):
        result = settled(quote_doc([("F1", "1")], [item("F1", "20", gender="F")]))
        assert line_parts(result) == (2000, 2000, 0, 0, 0, ["GENDER_RESTRICTED"])

    def test_an_item_for_the_same_gender_is_covered(self):
        result = settled(
            quote_doc([("F1", "1")], [item("F1", "20", gender="F")], person={"gender": "F"})
        )
        assert result["lines"][0]["reasons"] == []

    def test_age_limits_are_inclusive_and_count_completed_years(self):
        catalog = [item("K1", "10", max_age=13)]
        # born 2012-11-23: 13 on 2026-11-22 (birthday tomorrow) -> covered
        thirteen = settled(quote_doc([("K1", "1")], catalog, person={"birth_date": "2012-11-23"}))
        assert thirteen["lines"][0]["reasons"] == []
        # born 2012-11-22: 14 today -> above max_age
        fourteen = settled(quote_doc([("K1", "1")], catalog, person={"birth_date": "2012-11-22"}))
        assert fourteen["lines"][0]["reasons"] == ["AGE_RESTRICTED"]

    def test_below_the_minimum_age_is_self_paid(self):
        result = settled(quote_doc([("M1", "1")], [item("M1", "10", min_age=50)]))
        assert result["lines"][0]["reasons"] == ["AGE_RESTRICTED"]

    def test_a_29_february_birthday_completes_on_1_march(self):
        catalog = [item("K1", "10", min_age=18)]
        before = quote_doc(
            [("K1", "1")], catalog, person={"birth_date": "2008-02-29"}, date="2026-02-28"
        )
        after = quote_doc(
            [("K1", "1")], catalog, person={"birth_date": "2008-02-29"}, date="2026-03-01"
        )
        assert settled(before)["lines"][0]["reasons"] == ["AGE_RESTRICTED"]
        assert settled(after)["lines"][0]["reasons"] == []

    def test_a_chronic_only_item_is_self_paid_at_a_general_visit(self):
        result = settled(quote_doc([("H1", "1")], [item("H1", "10", chronic_only=["I10.x00"])]))
        assert result["lines"][0]["reasons"] == ["CHRONIC_ONLY"]

    def test_a_chronic_only_item_is_covered_for_a_certified_diagnosis(self):
        doc = quote_doc(
            [("H1", "1")],
            [item("H1", "10", chronic_only=["I10.x00"])],
            person={
                "chronic_certs": [
                    {
                        "disease_code": "I10.x00",
                        "valid_from": "2026-01-01",
                        "valid_to": "2027-12-31",
                    }
                ]
            },
            visit_type="chronic",
            diagnoses=["I10.x00"],
        )
        result = settled(doc)
        assert result["lines"][0]["reasons"] == []
        # resident chronic: 1000 × 0.70 = 700
        assert split(result) == (1000, 700, 0, 0, 300)

    def test_a_chronic_only_item_needs_its_own_diagnosis_certified(self):
        doc = quote_doc(
            [("D1", "1")],
            [item("D1", "10", chronic_only=["E11.900"])],
            person={
                "chronic_certs": [
                    {
                        "disease_code": "I10.x00",
                        "valid_from": "2026-01-01",
                        "valid_to": "2027-12-31",
                    }
                ]
            },
            visit_type="chronic",
            diagnoses=["I10.x00", "E11.900"],
        )
        assert settled(doc)["lines"][0]["reasons"] == ["CHRONIC_ONLY"]

    def test_every_reason_that_holds_is_listed_in_the_rules_order(self):
        catalog = [item("X1", "10", "C", gender="F", max_age=10, chronic_only=["I10.x00"])]
        result = settled(quote_doc([("X1", "1")], catalog))
        assert result["lines"][0]["reasons"] == [
            "NOT_COVERED",
            "GENDER_RESTRICTED",
            "AGE_RESTRICTED",
            "CHRONIC_ONLY",
        ]


class TestCoveredLines:
    def test_quantity_over_the_visit_maximum_is_self_paid(self):
        result = settled(quote_doc([("Q1", "5")], [item("Q1", "2.00", max_qty=3)]))
        assert line_parts(result) == (1000, 400, 0, 0, 600, ["QTY_OVER_LIMIT"])

    def test_quantity_within_the_maximum_has_no_reason(self):
        result = settled(quote_doc([("Q1", "2.5")], [item("Q1", "2.00", max_qty="2.5")]))
        assert line_parts(result) == (500, 0, 0, 0, 500, [])

    def test_price_above_the_payment_standard_is_self_paid_above_it(self):
        result = settled(quote_doc([("P1", "2")], [item("P1", "10", payment_standard="8")]))
        assert line_parts(result) == (2000, 0, 400, 0, 1600, ["OVER_PAYMENT_STANDARD"])
        assert result["fund"] == 880  # 1600 × 0.55

    def test_price_at_or_below_the_payment_standard_is_all_eligible(self):
        result = settled(quote_doc([("P1", "2")], [item("P1", "10", payment_standard="10")]))
        assert line_parts(result) == (2000, 0, 0, 0, 2000, [])

    def test_class_b_pays_the_policy_prepay_share_first(self):
        # 1005 × 0.10 = 100.5 -> 101
        result = settled(quote_doc([("B1", "1")], [item("B1", "10.05", "B")]))
        assert line_parts(result) == (1005, 0, 0, 101, 904, [])

    def test_class_b_uses_the_items_own_prepay_ratio_when_it_has_one(self):
        result = settled(
            quote_doc([("B1", "1")], [item("B1", "10", "B", self_prepay_ratio="0.05")])
        )
        assert line_parts(result) == (1000, 0, 0, 50, 950, [])

    def test_limits_standards_and_prepay_combine_on_one_line(self):
        catalog = [
            item("B2", "3.00", "B", payment_standard="2.50", max_qty=4, self_prepay_ratio="0.20")
        ]
        result = settled(quote_doc([("B2", "6")], catalog))
        # amount 1800; covered 4 × 3.00 = 1200; eligible 4 × 2.50 = 1000; prepay 200
        assert line_parts(result) == (
            1800,
            600,
            200,
            200,
            800,
            ["QTY_OVER_LIMIT", "OVER_PAYMENT_STANDARD"],
        )


# ---- per visit ---------------------------------------------------------------------------


EMPLOYEE = {"insurance_type": "employee", "account_balance": 1550}


class TestFund:
    def test_the_deductible_is_taken_from_what_is_left_of_it(self):
        result = settled(
            quote_doc(
                [("E1", "1")],
                [item("E1", "250")],
                person=EMPLOYEE,
                accumulators={"deductible_used": 12000},
            )
        )
        assert result["deductible_applied"] == 18000
        assert result["fund"] == 3500  # (25000 - 18000) × 0.50
        assert result["policy_selfpay"] == 21500
        assert result["accumulators_after"] == {
            "deductible_used": 30000,
            "fund_paid": 3500,
            "assistance_paid": 0,
            "account_balance": 1550,
            "day_fund_paid": 3500,
            "ci_selfpay": 0,
            "ci_paid": 0,
            "supplements_paid": {},
            "family_account_balance": 0,
        }

    def test_a_met_deductible_applies_nothing(self):
        result = settled(
            quote_doc(
                [("E1", "1")],
                [item("E1", "250")],
                person=EMPLOYEE,
                accumulators={"deductible_used": 45000},
            )
        )
        assert result["deductible_applied"] == 0
        assert result["fund"] == 12500

    def test_the_fund_stops_at_the_annual_cap(self):
        result = settled(
            quote_doc([("A1", "1")], [item("A1", "50")], accumulators={"fund_paid": 39000})
        )
        assert result["fund"] == 1000  # 2750 by ratio, 1000 left under the 40000 cap
        assert result["accumulators_after"]["fund_paid"] == 40000

    def test_a_cap_already_passed_pays_nothing_more(self):
        result = settled(
            quote_doc([("A1", "1")], [item("A1", "50")], accumulators={"fund_paid": 41000})
        )
        assert result["fund"] == 0
        assert result["cash"] == 5000


class TestAssistance:
    def test_extreme_poverty_pays_the_whole_policy_self_pay(self):
        result = settled(
            quote_doc(
                [("A1", "2")], [item("A1", "12.50")], person={"categories": ["extreme_poverty"]}
            )
        )
        assert split(result) == (2500, 1375, 1125, 0, 0)

    def test_the_category_with_the_highest_ratio_is_used(self):
        doc = quote_doc(
            [("A1", "2")],
            [item("A1", "12.50")],
            person={"categories": ["low_income_guarantee", "extreme_poverty"]},
        )
        assert settled(doc)["assistance"] == 1125

    def test_a_ratio_tie_goes_to_the_higher_cap_then_the_first_name(self):
        doc = quote_doc(
            [("A1", "2")],
            [item("A1", "12.50")],
            person={"categories": ["zz_small", "yy_large", "aa_large"]},
            accumulators={"assistance_paid": 100},
        )
        doc["policy"]["assistance"] = {
            "zz_small": {"ratio": "0.50", "annual_cap": 200},
            "yy_large": {"ratio": "0.50", "annual_cap": 500},
            "aa_large": {"ratio": "0.50", "annual_cap": 500},
        }
        # 1125 × 0.50 = 562.5 -> 563, capped at 500 - 100 = 400
        assert settled(doc)["assistance"] == 400

    def test_a_category_the_policy_does_not_name_pays_nothing(self):
        doc = quote_doc([("A1", "2")], [item("A1", "12.50")], person={"categories": ["low_income"]})
        assert settled(doc)["assistance"] == 0

    def test_assistance_stops_at_its_annual_cap(self):
        doc = quote_doc(
            [("A1", "2")],
            [item("A1", "12.50")],
            person={"categories": ["low_income_guarantee"]},
            accumulators={"assistance_paid": 499900},
        )
        result = settled(doc)
        assert result["assistance"] == 100  # 788 by ratio, 100 left
        assert result["accumulators_after"]["assistance_paid"] == 500000


class TestPersonalAccount:
    def test_an_employee_pays_from_the_account_up_to_its_balance(self):
        result = settled(
            quote_doc(
                [("E1", "1")], [item("E1", "250")], person=EMPLOYEE, use_personal_account=True
            )
        )
        assert split(result) == (25000, 0, 0, 1550, 23450)
        assert result["accumulators_after"]["account_balance"] == 0

    def test_the_account_pays_self_paid_lines_too(self):
        result = settled(
            quote_doc(
                [("C1", "1")], [item("C1", "5", "C")], person=EMPLOYEE, use_personal_account=True
            )
        )
        assert split(result) == (500, 0, 0, 500, 0)

    def test_the_account_is_not_used_unless_asked(self):
        result = settled(quote_doc([("E1", "1")], [item("E1", "250")], person=EMPLOYEE))
        assert result["personal_account"] == 0

    def test_a_resident_has_no_personal_account(self):
        result = settled(
            quote_doc(
                [("A1", "1")],
                [item("A1", "10")],
                person={"account_balance": 5000},
                use_personal_account=True,
            )
        )
        assert result["personal_account"] == 0


class TestEligibility:
    @pytest.mark.parametrize("status", ["suspended", "terminated"])
    def test_a_person_not_active_pays_everything_in_cash(self, status):
        doc = quote_doc(
            [("A1", "2"), ("C1", "1")],
            [item("A1", "12.50"), item("C1", "3", "C")],
            person={"status": status, "categories": ["extreme_poverty"]},
            accumulators={"fund_paid": 100},
        )
        result = settled(doc)
        assert result["eligible"] is False
        assert split(result) == (2800, 0, 0, 0, 2800)
        assert result["lines"][1]["reasons"] == ["NOT_COVERED"]  # still classified
        assert result["accumulators_after"]["fund_paid"] == 100
        assert [w["code"] for w in result["warnings"]] == ["NOT_ELIGIBLE"]
        assert status in result["warnings"][0]["message"]

    def test_benefits_start_the_day_after_the_waiting_period(self):
        lines, catalog = [("A1", "1")], [item("A1", "10")]
        on_last_day = settled(quote_doc(lines, catalog, person={"waiting_until": "2026-11-22"}))
        day_after = settled(quote_doc(lines, catalog, person={"waiting_until": "2026-11-21"}))
        assert on_last_day["eligible"] is False
        assert "waiting" in on_last_day["warnings"][0]["message"]
        assert day_after["eligible"] is True
        assert day_after["warnings"] == []


# ---- rejections ----------------------------------------------------------------------------


CERT_EXPIRED = {
    "chronic_certs": [
        {"disease_code": "I10.x00", "valid_from": "2020-01-01", "valid_to": "2025-12-31"}
    ]
}


class TestRejections:
    def test_a_visit_with_no_lines_is_empty(self):
        assert rejected(quote_doc([], [item("A1", "1")]))["code"] == "EMPTY_VISIT"

    def test_more_than_200_lines_is_too_many(self):
        ok = quote_doc([("A1", "1")] * 200, [item("A1", "1")])
        assert settled(ok)["total"] == 20000
        assert rejected(quote_doc([("A1", "1")] * 201, [item("A1", "1")]))["code"] == (
            "TOO_MANY_LINES"
        )

    def test_a_chronic_visit_needs_a_certificate_valid_that_day(self):
        doc = quote_doc(
            [("A1", "1")],
            [item("A1", "1")],
            person=CERT_EXPIRED,
            visit_type="chronic",
            diagnoses=["I10.x00"],
        )
        error = rejected(doc)
        assert error["code"] == "CHRONIC_NOT_CERTIFIED"
        assert "line" not in error

    def test_an_unknown_item_names_its_line(self):
        error = rejected(quote_doc([("A1", "1"), ("NOPE", "1")], [item("A1", "1")]))
        assert (error["code"], error["line"]) == ("UNKNOWN_ITEM", 1)

    def test_an_item_outside_its_validity_is_refused(self):
        catalog = [
            item("A1", "1"),
            item("OLD", "1", valid_to="2025-12-31"),
            item("NEW", "1", valid_from="2027-01-01"),
        ]
        assert rejected(quote_doc([("OLD", "1")], catalog))["code"] == "ITEM_NOT_VALID"
        assert rejected(quote_doc([("A1", "1"), ("NEW", "1")], catalog))["line"] == 1
        edge = [item("E", "1", valid_from="2026-11-22", valid_to="2026-11-22")]
        assert settled(quote_doc([("E", "1")], edge))["total"] == 100

    @pytest.mark.parametrize(
        "quantity",
        ["0", "0.000", "-1", "1.2345", "100000.001", "1e3", " 1", "", "１", 2, 1.5, None, True],
    )
    def test_a_bad_quantity_is_refused(self, quantity):
        doc = quote_doc([("A1", "1")], [item("A1", "1")])
        doc["visit"]["lines"][0]["quantity"] = quantity
        error = rejected(doc)
        assert (error["code"], error["line"]) == ("BAD_QUANTITY", 0)

    def test_the_largest_quantity_is_accepted(self):
        assert settled(quote_doc([("A1", "100000.000")], [item("A1", "0.01")]))["total"] == 100000

    def test_the_first_rejection_found_wins(self):
        catalog = [item("A1", "1")]
        # visit-level checks come before line checks
        doc = quote_doc(
            [("NOPE", "1")],
            catalog,
            person=CERT_EXPIRED,
            visit_type="chronic",
            diagnoses=["I10.x00"],
        )
        assert rejected(doc)["code"] == "CHRONIC_NOT_CERTIFIED"
        # lines in order: a bad quantity on line 0 beats an unknown item on line 1
        error = rejected(quote_doc([("A1", "0"), ("NOPE", "1")], catalog))
        assert (error["code"], error["line"]) == ("BAD_QUANTITY", 0)
        # within a line: unknown item before bad quantity
        assert rejected(quote_doc([("NOPE", "0")], catalog))["code"] == "UNKNOWN_ITEM"


class TestMalformedDocuments:
    @pytest.mark.parametrize(
        ("path", "value", "named"),
        [
            (("person", "birth_date"), None, "person.birth_date"),
            (("person", "birth_date"), "2026-02-30", "person.birth_date"),
            (("visit", "visit_type"), "emergency", "visit.visit_type"),
            (("visit", "date"), "20261122", "visit.date"),
            (("accumulators", "fund_paid"), -1, "accumulators.fund_paid"),
            (("accumulators", "fund_paid"), "100", "accumulators.fund_paid"),
            (("policy", "class_b_prepay_ratio"), "1.5", "policy.class_b_prepay_ratio"),
            (("person", "insurance_type"), "farmer", "person.insurance_type"),
            (("visit", "lines"), "A1", "visit.lines"),
            (("visit", "use_personal_account"), "yes", "visit.use_personal_account"),
        ],
    )
    def test_a_malformed_field_is_bad_input_naming_it(self, path, value, named):
        doc = quote_doc([("A1", "1")], [item("A1", "1")])
        doc[path[0]][path[1]] = value
        if value is None:
            del doc[path[0]][path[1]]
        error = rejected(doc)
        assert error["code"] == "BAD_INPUT"
        assert named in error["message"]

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("price", 12.5),
            ("price", "12.34567"),
            ("price", "-1"),
            ("class", "D"),
            ("kind", "food"),
            ("gender", "X"),
            ("max_qty", "0"),
            ("chronic_only", "I10.x00"),
        ],
    )
    def test_a_malformed_catalog_item_is_bad_input(self, field, value):
        bad_item = {**item("A2", "1"), field: value}
        error = rejected(quote_doc([("A1", "1")], [item("A1", "1"), bad_item]))
        assert error["code"] == "BAD_INPUT"
        assert f"catalog[1].{field}" in error["message"]

    def test_a_repeated_catalog_code_is_bad_input(self):
        error = rejected(quote_doc([("A1", "1")], [item("A1", "1"), item("A1", "2")]))
        assert "catalog[1].code" in error["message"]

    def test_a_visit_type_the_policy_lacks_for_the_person_is_bad_input(self):
        doc = quote_doc([("A1", "1")], [item("A1", "1")], person=EMPLOYEE)
        del doc["policy"]["benefits"]["employee"]["general"]
        error = rejected(doc)
        assert error["code"] == "BAD_INPUT"
        assert "visit.visit_type 'general'" in error["message"]

    def test_a_policy_without_an_insurance_type_is_bad_input(self):
        doc = quote_doc([("A1", "1")], [item("A1", "1")])
        del doc["policy"]["benefits"]["employee"]
        assert "policy.benefits.employee" in rejected(doc)["message"]

    def test_a_line_that_is_not_an_object_names_its_line(self):
        doc = quote_doc([("A1", "1")], [item("A1", "1")])
        doc["visit"]["lines"].append("A1")
        error = rejected(doc)
        assert (error["code"], error["line"]) == ("BAD_INPUT", 1)

    @pytest.mark.parametrize("text", ["", "{", "[]", "null", '"x"', "{} {}", "[" * 100000])
    def test_text_that_is_not_a_quote_document_is_bad_input(self, text):
        assert quote_text(text)["error"]["code"] == "BAD_INPUT"

    def test_a_fractional_json_number_is_never_read_as_a_float(self):
        doc = quote_doc([("A1", "1")], [item("A1", "1")])
        text = (
            __import__("json").dumps(doc).replace('"deductible_used": 0', '"deductible_used": 0.5')
        )
        error = quote_text(text)["error"]
        assert error["code"] == "BAD_INPUT"
        assert "accumulators.deductible_used" in error["message"]
