"""What one record moves personal-account balances by (`records.account_movements`), the
figures a terminal applies on top of a balance the county computed."""

from edge.domain.records import account_movements, account_persons


def settlement(before: dict, after: dict, holder: str | None = None) -> dict:
    return {
        "insured_id": "P",
        "visit": {"family_account_holder": holder},
        "accumulators_before": before,
        "result": {"accumulators_after": after},
    }


def test_a_settlement_moves_its_persons_account_and_the_family_holders():
    body = settlement(
        {"account_balance": 5000, "family_account_balance": 9000},
        {"account_balance": 4200, "family_account_balance": 8700},
        holder="H",
    )
    assert account_movements("settlement", body) == {"P": -800, "H": -300}
    assert account_movements("reversal", {"reverses": "t"}, body) == {"P": 800, "H": 300}


def test_a_settlement_that_paid_nothing_from_an_account_moves_nothing():
    body = settlement({"account_balance": 5000}, {"account_balance": 5000})
    assert account_movements("settlement", body) == {}
    # a version 1 record names no family balance: nothing moved for the holder
    assert account_movements("settlement", settlement({}, {}, holder="H")) == {}


def test_a_reversal_whose_original_is_unknown_moves_nothing():
    assert account_movements("reversal", {"reverses": "t"}, None) == {}


def test_premiums_move_the_holders_account_only_when_paid_from_it():
    paid = {"method": "family_account", "account_holder": "H", "amount": 40000}
    assert account_movements("premium", paid) == {"H": -40000}
    assert account_movements("premium_reversal", paid) == {"H": 40000}
    cash = {"method": "cash", "account_holder": None, "amount": 40000}
    assert account_movements("premium", cash) == {}


def test_other_kinds_move_nothing():
    assert account_movements("daily_close", {"count": 3}) == {}
    assert account_movements("service_request", {"kind": "renewal"}) == {}


def test_the_persons_whose_account_a_record_may_move():
    family = settlement({}, {}, holder="H")
    assert account_persons("settlement", family) == {"P", "H"}
    assert account_persons("reversal", {"insured_id": "P"}) == {"P"}
    paid = {"method": "family_account", "account_holder": "H", "amount": 1}
    assert account_persons("premium", paid) == {"H"}
    assert account_persons("premium_reversal", {"method": "cash", "account_holder": None}) == set()
    assert account_persons("daily_close", {"insured_id": "P"}) == set()
    # every person a record moves is one it may move
    assert account_movements("settlement", family).keys() <= account_persons("settlement", family)


def test_a_damaged_body_moves_nothing_and_raises_nothing():
    # what a damaged ledger row may hold: the schema step that indexes old records reads it
    for body in ({}, {"insured_id": 7, "visit": "x", "result": [], "accumulators_before": 3}):
        assert account_movements("settlement", body) == {}
        assert account_movements("reversal", body, body) == {}
    assert account_movements("premium", {"method": "family_account", "account_holder": 5}) == {}
    assert account_movements("reversal", {}, "not a body") == {}
