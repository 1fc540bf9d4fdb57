"""The clearing statement's pure parts (`sync/statements.py`, the builders of
`sync/hub/services/statements.py`): months in China time, the signature, revisions'
changes, the total as the sum of the detail, the device's report's bounds."""

from datetime import date, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from edge.clock import CLINIC_TZ
from sync.hub.services.statement_exports import yuan_text
from sync.hub.services.statements import changes_between, total_of
from sync.protocol import SyncError
from sync.statements import (
    PAYERS,
    month_bounds,
    month_is_over,
    month_of,
    previous_month,
    report_problem,
    sign_statement,
    verify_statement,
)


def row(tx_id: str, kind: str = "settlement", **amounts: int) -> dict:
    return {
        "tx_id": tx_id,
        "kind": kind,
        **dict.fromkeys(PAYERS, 0),
        **amounts,
        "device_amounts": None,
        "county_status": "ok",
    }


def test_a_record_belongs_to_its_china_time_month():
    assert month_of("2026-11-30T23:59:59+08:00") == "2026-11"
    # 16:00 UTC on the 30th is midnight in China: December.
    assert month_of("2026-11-30T16:00:00+00:00") == "2026-12"
    assert month_of("2026-12-31T15:59:59+00:00") == "2026-12"
    assert month_of("not a time") is None and month_of("2026-11-30T10:00:00") is None


def test_months_end_in_china_time_and_roll_over_the_year():
    start, end = month_bounds("2026-12")
    assert (start, end) == (
        datetime(2026, 12, 1, tzinfo=CLINIC_TZ),
        datetime(2027, 1, 1, tzinfo=CLINIC_TZ),
    )
    assert not month_is_over("2026-12", datetime(2026, 12, 31, 23, 59, tzinfo=CLINIC_TZ))
    assert month_is_over("2026-12", end)
    assert previous_month(date(2027, 1, 15)) == "2026-12"
    assert previous_month(date(2026, 11, 1)) == "2026-10"


def test_the_signature_covers_every_member_of_the_statement():
    key = Ed25519PrivateKey.generate()
    statement = {"v": 1, "kind": "clearing_statement", "month": "2026-11", "device_ids": ["d"]}
    document = sign_statement(statement, key)
    assert sign_statement(statement, key) == document  # deterministic
    assert verify_statement(document, key.public_key(), month="2026-11", device_id="d")
    tampered = {**document, "statement": {**statement, "month": "2026-10"}}
    for bad, kwargs in (
        (tampered, {}),
        (document, {"month": "2026-10"}),
        (document, {"device_id": "other"}),
        ({"statement": statement}, {}),
        ("text", {}),
    ):
        with pytest.raises(SyncError) as refused:
            verify_statement(bad, key.public_key(), **kwargs)
        assert refused.value.code == "BAD_STATEMENT"
    with pytest.raises(SyncError):
        verify_statement(document, Ed25519PrivateKey.generate().public_key())


@given(
    st.lists(
        st.tuples(st.sampled_from(["settlement", "reversal"]), st.integers(-(10**9), 10**9)),
        max_size=30,
    )
)
def test_the_total_is_the_sum_of_the_detail(rows):
    detail = [row(f"t{i}", kind, hifp_pay=amount) for i, (kind, amount) in enumerate(rows)]
    total = total_of(detail)
    assert total["hifp_pay"] == sum(amount for _kind, amount in rows)
    assert total["settlement_count"] + total["reversal_count"] == len(rows)
    assert total["count"] == total["settlement_count"] - total["reversal_count"]
    assert all(total[p] == 0 for p in PAYERS if p != "hifp_pay")


def test_a_revision_says_what_was_added_removed_and_changed():
    before = [row("a", hifp_pay=100), row("b", hifp_pay=200), row("c", hifp_pay=300)]
    after = [row("a", hifp_pay=100), row("c", hifp_pay=250), row("d", hifp_pay=50)]
    changes = changes_between(before, after)
    assert [(c["tx_id"], c["what"]) for c in changes] == [
        ("b", "removed"),
        ("c", "changed"),
        ("d", "added"),
    ]
    changed = changes[1]
    assert (changed["before"]["hifp_pay"], changed["after"]["hifp_pay"]) == (300, 250)
    assert changes[0]["after"] is None and changes[2]["before"] is None
    assert changes_between(before, before) == []


GOOD = {"month": "2026-11", "revision": 1, "agrees": True}


@pytest.mark.parametrize(
    ("report", "problem"),
    [
        ({**GOOD, "month": "2026-13"}, "month"),
        ({**GOOD, "revision": 0}, "revision"),
        ({**GOOD, "revision": True}, "revision"),
        ({**GOOD, "agrees": "yes"}, "agrees"),
        ({**GOOD, "differences": {}}, "list"),
        ({**GOOD, "differences": [{"tx_id": "t", "field": "fund"}]}, "payer"),
        ({**GOOD, "differences": [{"tx_id": "t", "field": "hifp_pay", "device": 1.5}]}, "fen"),
        ({**GOOD, "missing_on_device": [""]}, "tx_ids"),
        ({**GOOD, "missing_at_county": ["t"] * 5001}, "5000"),
        ([], "object"),
    ],
)
def test_a_malformed_report_says_why(report, problem):
    assert problem in report_problem(report)


def test_a_well_formed_report_passes():
    assert report_problem(GOOD) is None
    differences = [{"tx_id": "t", "field": "hifp_pay", "device": 12, "county": None}]
    assert report_problem({**GOOD, "agrees": False, "differences": differences}) is None


def test_yuan_have_two_decimals_and_a_sign():
    assert [yuan_text(f) for f in (0, 5, 1234, -50, -123456)] == [
        "0.00",
        "0.05",
        "12.34",
        "-0.50",
        "-1234.56",
    ]
