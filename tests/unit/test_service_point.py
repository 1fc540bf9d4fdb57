"""The village service point's pure rules (edge.domain.service_point): ID numbers and
their mask, the premium rule and the years it collects for, request details, decision
documents, roster versions after an approval, the premiums of a close, photo types."""

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.demo.county import policy_document
from edge.domain import service_point as sp
from edge.domain.documents import policy_from_json
from edge.domain.model import Category, Person, PremiumRule, Rejection

RULE = PremiumRule(
    resident=40000, collection_opens="09-01", due_by="11-30",
    full=("extreme_poverty", "low_income_guarantee"), fixed={"severe_disability": 20000},
)  # fmt: skip
VALID_ID = "11010519491231002X"  # GB 11643's own example


def resident(*categories, insurance_type="resident"):
    return Person(
        insurance_type=insurance_type, gender="F", birth_date=date(1960, 1, 1), status="active",
        categories=tuple(c if isinstance(c, Category) else Category(c) for c in categories),
    )  # fmt: skip


def check_character(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


class TestIdNumbers:
    def test_a_valid_number_passes_and_is_masked_six_eight_four(self):
        assert sp.id_number_problem(VALID_ID) is None
        assert sp.id_number_problem("32011519800101123X") is None
        assert sp.mask_id_number(VALID_ID) == "110105********002X"
        assert sp.MASKED_ID_NUMBER.fullmatch(sp.mask_id_number(VALID_ID))

    @pytest.mark.parametrize(
        "text, says",
        [
            ("1101051949123100", "18位"),
            (None, "18位"),
            ("11010519491231002x", "数字加1位数字或X"),  # the caller cleans it first
            ("1101051949123A002X", "数字加1位数字或X"),
            ("110105194902301234", "出生日期"),
            ("110105194912310021", "校验位"),
        ],
    )
    def test_a_wrong_number_says_why_in_chinese_first_without_the_number(self, text, says):
        problem = sp.id_number_problem(text)
        assert problem is not None and says in problem and " / " in problem
        assert not text or text not in problem

    def test_cleaning_takes_spaces_and_capitalises_x(self):
        assert sp.clean_id_number(" 110105 19491231 002x ") == VALID_ID

    @given(
        st.from_regex(r"[1-9][0-9]{5}", fullmatch=True),
        st.dates(date(1900, 1, 1), date(2099, 12, 31)),
        st.from_regex(r"[0-9]{3}", fullmatch=True),
    )
    def test_every_number_with_its_check_character_passes_and_no_other(self, region, born, serial):
        first17 = f"{region}{born:%Y%m%d}{serial}"
        right = check_character(first17)
        assert sp.id_number_problem(first17 + right) is None
        for wrong in "0123456789X":
            if wrong != right:
                assert sp.id_number_problem(first17 + wrong) is not None
        masked = sp.mask_id_number(first17 + right)
        assert masked[:6] == region and masked[-4:] == (first17 + right)[-4:]
        assert masked[6:14] == "*" * 8 and born.strftime("%Y%m%d") not in masked


class TestPremiums:
    def test_the_demo_policy_carries_the_rule(self):
        assert policy_from_json(policy_document()).premiums == RULE

    def test_a_resident_pays_the_whole_premium(self):
        assert sp.premium_due(RULE, resident()) == (40000, 0, 40000)

    def test_the_state_pays_in_full_for_the_poor(self):
        assert sp.premium_due(RULE, resident("low_income_guarantee")) == (40000, 40000, 0)
        assert sp.premium_due(RULE, resident("severe_disability", "extreme_poverty"))[2] == 0

    def test_a_fixed_subsidy_is_taken_off(self):
        assert sp.premium_due(RULE, resident("severe_disability")) == (40000, 20000, 20000)

    def test_a_category_counts_on_the_day_asked_when_a_day_is_given(self):
        person = resident(Category("extreme_poverty", valid_to=date(2026, 6, 30)))
        assert sp.premium_due(RULE, person, date(2026, 7, 1)) == (40000, 0, 40000)
        assert sp.premium_due(RULE, person, date(2026, 6, 30))[2] == 0

    def test_an_employee_pays_no_resident_premium(self):
        with pytest.raises(Rejection) as refused:
            sp.premium_due(RULE, resident(insurance_type="employee"))
        assert refused.value.code == "NOT_RESIDENT" and "职工" in refused.value.message

    @given(
        st.integers(1, 10**7),
        st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 2 * 10**7), max_size=4),
        st.sets(st.sampled_from("abcdefgh"), max_size=5),
        st.sets(st.sampled_from("gh"), max_size=2),
    )
    def test_the_parts_always_add_up_and_never_go_below_zero(self, due, fixed, held, full):
        rule = PremiumRule(due, "09-01", "11-30", tuple(full), fixed)
        total, state, amount = sp.premium_for(rule, held)
        assert total == due and state + amount == due and 0 <= state <= due and amount >= 0
        assert (amount == 0) >= bool(held & full)
        if not held & full:
            assert state == min(due, max([fixed.get(c, 0) for c in held], default=0))

    @pytest.mark.parametrize(
        "today, years",
        [
            (date(2026, 8, 31), [2026, 2027]),
            (date(2026, 9, 1), [2027, 2026]),
            (date(2026, 12, 31), [2027, 2026]),
            (date(2027, 1, 1), [2027, 2028]),
        ],
    )
    def test_the_year_collected_for_turns_when_collection_opens(self, today, years):
        assert sp.premium_year_choices(RULE, today) == years

    @pytest.mark.parametrize(
        "member, value, says",
        [
            ("resident", 390.0, "whole number of fen"),
            ("resident", 0, "more than 0"),
            ("collection_opens", "9-1", "MM-DD"),
            ("due_by", "02-30", "MM-DD"),
            ("due_by", "02-29", "MM-DD"),
            ("fixed", {"severe_disability": -1}, "between 0"),
            ("full", "extreme_poverty", "list"),
        ],
    )
    def test_a_bad_rule_in_a_policy_is_refused_naming_the_member(self, member, value, says):
        document = policy_document()
        document["premiums"][member] = value
        with pytest.raises(Rejection) as refused:
            policy_from_json(document)
        assert f"policy.premiums.{member}" in refused.value.message
        assert says in refused.value.message

    def test_a_policy_without_premiums_has_none(self):
        document = policy_document()
        del document["premiums"]
        assert policy_from_json(document).premiums is None


def premium(seq, amount, method, persons=1, state_paid=0, tx=None):
    return {
        "seq": seq, "tx_id": tx or f"p{seq}", "kind": "premium",
        "body": {"amount": amount, "method": method, "state_paid": state_paid,
                 "persons": [{"insured_id": str(n)} for n in range(persons)]},
    }  # fmt: skip


def premium_reversal(seq, original):
    return {
        "seq": seq, "tx_id": f"x{seq}", "kind": "premium_reversal",
        "body": {"reverses": original["tx_id"], "amount": original["body"]["amount"],
                 "method": original["body"]["method"]},
    }  # fmt: skip


class TestPremiumTotals:
    def test_collected_reversed_and_net_by_method(self):
        family = premium(1, 60000, "cash", persons=3, state_paid=60000)
        mobile = premium(2, 40000, "mobile")
        account = premium(3, 20000, "family_account", state_paid=20000)
        settlement = {"seq": 4, "tx_id": "s4", "kind": "settlement", "body": {}}
        totals = sp.premium_totals(
            [family, mobile, account, settlement, premium_reversal(5, family)]
        )
        assert totals["collected"] == {
            "count": 3, "persons": 5, "amount": 120000, "cash": 60000, "mobile": 40000,
            "family_account": 20000, "state_paid": 80000,
        }  # fmt: skip
        assert totals["reversed"] == {
            "count": 1, "persons": 3, "amount": 60000, "cash": 60000, "mobile": 0,
            "family_account": 0, "state_paid": 60000,
        }  # fmt: skip
        assert totals["net"] == {
            "amount": 60000, "cash": 0, "mobile": 40000, "family_account": 20000,
            "state_paid": 20000,
        }  # fmt: skip

    def test_a_reversal_of_an_earlier_premium_finds_it_among_the_originals(self):
        earlier = premium(1, 40000, "mobile", persons=2, state_paid=40000)
        alone = sp.premium_totals([premium_reversal(9, earlier)])
        assert alone["reversed"]["persons"] == 0 and alone["net"]["mobile"] == -40000
        found = sp.premium_totals([premium_reversal(9, earlier)], {"p1": earlier})
        assert found["reversed"]["persons"] == 2 and found["net"]["state_paid"] == -40000


GOOD_DETAILS = {
    "enrolment": {"insurance_type": "resident", "category": None, "village": "东山村"},
    "renewal": {"year": 2027, "premium_tx_id": None},
    "chronic_certificate": {
        "disease_code": "I10.x00", "disease_name": "高血压", "scheme": "two_diseases",
        "hospital": None, "diagnosed_on": "2026-03-02",
    },
    "cross_region_filing": {
        "filing_type": "long_term_residence", "destination": "上海市", "valid_from":
        "2026-12-01", "valid_to": None, "reason": "随子女居住",
    },
    "complaint": {"settlement_tx_id": "tx1", "settlement_seq": 3, "grounds": "收费不对"},
}  # fmt: skip


class TestDetails:
    @pytest.mark.parametrize("kind", sp.REQUEST_KINDS)
    def test_each_kind_has_its_details(self, kind):
        assert sp.details_problem(kind, GOOD_DETAILS[kind]) is None
        other = next(k for k in sp.REQUEST_KINDS if k != kind)
        assert sp.details_problem(kind, GOOD_DETAILS[other]) is not None

    @pytest.mark.parametrize(
        "kind, change, says",
        [
            ("enrolment", {"insurance_type": "employee"}, "must be one of resident"),
            ("renewal", {"year": 2027.0}, "year"),
            ("renewal", {"extra": 1}, "unknown members"),
            ("chronic_certificate", {"scheme": "cancer"}, "scheme"),
            ("cross_region_filing", {"valid_to": "2026-11-30"}, "before valid_from"),
            ("cross_region_filing", {"filing_type": "holiday"}, "filing_type"),
            ("complaint", {"settlement_seq": -1}, "settlement_seq"),
        ],
    )
    def test_bad_details_are_named(self, kind, change, says):
        assert says in sp.details_problem(kind, {**GOOD_DETAILS[kind], **change})

    def test_an_unknown_kind_is_named(self):
        assert "body.kind" in sp.details_problem("adoption", {})


def decision(**change):
    base = {
        "v": 1, "kind": "request_decision", "serial": 7, "device_id": "dev-1",
        "clinic": "东山村卫生室", "request_tx_id": "tx9", "request_kind": "enrolment",
        "outcome": "approved", "reason": None, "decided_by": "coord01",
        "decided_at": "2026-11-27T10:00:00+08:00",
        "result": {"insured_id": "32011500000777", "roster_version": "2026.11.1"},
    }  # fmt: skip
    return {**base, **change}


class TestDecisions:
    def test_an_approval_carries_its_kinds_result(self):
        assert sp.decision_problem(decision()) is None

    def test_a_rejection_needs_a_reason_and_carries_no_result(self):
        assert "reason" in sp.decision_problem(decision(outcome="rejected", result=None))
        assert (
            sp.decision_problem(decision(outcome="rejected", reason="材料不全", result=None))
            is None
        )
        assert "null" in sp.decision_problem(decision(outcome="more_info", reason="补照片"))

    def test_a_complaint_carries_the_answer_either_way(self):
        answer = {"answer": "结算无误", "recomputed": {"hifp_pay": 100}, "device": None,
                  "correction": False}  # fmt: skip
        kept = decision(request_kind="complaint", outcome="rejected", reason="无误", result=answer)
        assert sp.decision_problem(kept) is None
        assert "required" in sp.decision_problem({**kept, "result": None})

    @pytest.mark.parametrize(
        "change, says",
        [
            ({"v": 2}, "decision.v"),
            ({"v": True}, "decision.v"),
            ({"outcome": "maybe"}, "decision.outcome"),
            ({"serial": 0.5}, "decision.serial"),
            ({"decided_at": "2026-11-27T10:00:00"}, "decided_at"),
            ({"result": {"insured_id": "x"}}, "lacks roster_version"),
            ({"extra": 1}, "unknown members"),
        ],
    )
    def test_a_malformed_decision_is_named(self, change, says):
        assert says in sp.decision_problem(decision(**change))

    def test_a_decision_that_is_not_an_object(self):
        assert sp.decision_problem([]) is not None


@pytest.mark.parametrize(
    "latest, following",
    [("2026.11", "2026.11.1"), ("2026.11.1", "2026.11.2"), ("2026.11.9", "2026.11.10"),
     ("7", "7.1"), ("2026.11.1.4", "2026.11.1.5")],
)  # fmt: skip
def test_the_roster_version_an_approval_publishes(latest, following):
    assert sp.next_roster_version(latest) == following


def test_photos_are_known_by_their_first_bytes():
    assert sp.attachment_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sp.attachment_type(b"\x89PNG\r\n\x1a\nrest") == "image/png"
    assert sp.attachment_type(b"GIF89a") is None and sp.attachment_type(b"") is None
    assert sp.MAX_ATTACHMENT_BYTES == 3145728 and sp.MAX_REQUEST_BYTES == 12582912


def test_a_photo_name_is_a_sha256_in_lower_case_hex():
    assert sp.is_sha256_hex("0" * 64) and sp.is_sha256_hex("ab" * 32)
    for bad in ("A" * 64, "0" * 63, "0" * 65, "g" * 64, "0" * 63 + "\n", None, 7):
        assert not sp.is_sha256_hex(bad)
