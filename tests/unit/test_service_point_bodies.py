"""Well-formed bodies of the service point's kinds (`body_problem`: service_request,
premium, premium_reversal) and the `premiums` member of daily, month and year closes."""

import copy
import json

import independent_verifier
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.domain import records as rec
from edge.domain import reports
from edge.domain.ledger import (
    b64url,
    b64url_decode,
    genesis_hash,
    new_record,
    raw_public_key,
    verify_chain,
)
from edge.domain.records import body_problem


def load_public(public_key_b64: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(b64url_decode(public_key_b64))


SEALED = {
    "alg": "X25519-HKDF-SHA256-AES256GCM", "key_id": "aaa8fff703b50b22",
    "epk": "WGmv9FBUlzLLqu1eXfmzCm2jHLDldCutWtShp2jxpns",
    "ct": "PQRpnoCygn5mpOhNnq8aIbC8JofMAJOFcdJdR1F4Ys-rQA",
}  # fmt: skip
APPLICANT = {"name": "王小梅", "gender": "F", "birth_date": "1949-12-31",
             "id_number_masked": "110105********002X"}  # fmt: skip
VALID_ID = "11010519491231002X"
PHOTO = {"sha256": "ab" * 32, "type": "image/jpeg", "bytes": 250_000, "label": "诊断证明"}


def request(kind="enrolment", **change):
    base = {
        "kind": kind, "operator": "doc01", "insured_id": None,
        "applicant": APPLICANT,
        "sealed_id_number": SEALED,
        "details": {"insurance_type": "resident", "category": None, "village": "东山村"},
        "attachments": [], "note": None, "follow_up_of": None,
    }  # fmt: skip
    return {**base, **change}


def chronic(**change):
    base = {
        "insured_id": "32011500000001", "applicant": None, "sealed_id_number": None,
        "attachments": [PHOTO],
        "details": {"disease_code": "E11.900", "disease_name": "2型糖尿病",
                    "scheme": "two_diseases", "hospital": "县人民医院",
                    "diagnosed_on": "2026-05-04"},
    }  # fmt: skip
    return request("chronic_certificate", **{**base, **change})


def premium(**change):
    base = {
        "operator": "doc01", "year": 2027,
        "payer": {"name": "王大山", "insured_id": "32011500000001"},
        "method": "cash", "reference": None, "account_holder": None,
        "persons": [
            {"insured_id": "32011500000001", "name": "王大山", "categories": [],
             "due": 40000, "state_pays": 0, "amount": 40000},
            {"insured_id": "32011500000002", "name": "王小梅", "categories": ["severe_disability"],
             "due": 40000, "state_pays": 20000, "amount": 20000},
        ],
        "amount": 60000, "state_paid": 20000, "account_balance_after": None,
    }  # fmt: skip
    return {**base, **change}


def premium_reversal(**change):
    base = {
        "reverses": "tx-p", "reverses_seq": 4, "operator": "doc01", "reason": "收错人",
        "amount": 60000, "method": "cash", "account_holder": None, "account_balance_after": None,
    }  # fmt: skip
    return {**base, **change}


class TestServiceRequests:
    def test_each_kind_well_formed_passes(self):
        assert body_problem("service_request", request()) is None
        assert body_problem("service_request", chronic()) is None
        renewal = request(
            "renewal", insured_id="32011500000001", applicant=None, sealed_id_number=None,
            details={"year": 2027, "premium_tx_id": "tx-p"}, follow_up_of="tx-r",
        )  # fmt: skip
        assert body_problem("service_request", renewal) is None
        complaint = request(
            "complaint", insured_id="32011500000001", applicant=None, sealed_id_number=None,
            details={"settlement_tx_id": "tx-s", "settlement_seq": 3, "grounds": "药费算错"},
        )  # fmt: skip
        assert body_problem("service_request", complaint) is None

    @pytest.mark.parametrize(
        "body, says",
        [
            ({k: v for k, v in request().items() if k != "note"}, "lacks note"),
            (request(extra=1), "unknown members"),
            (request(sealed_id_number=None), "sealed ID number"),
            (request(applicant=None), "applicant"),
            (request(sealed_id_number={**SEALED, "key_id": "XYZ"}), "key_id"),
            (request(sealed_id_number={**SEALED, "alg": "RSA"}), "alg"),
            (request(applicant={**APPLICANT, "id_number_masked": VALID_ID}), "masked"),
            (request(kind="adoption"), "body.kind"),
            (request(details={"insurance_type": "employee", "category": None, "village": None}),
             "insurance_type"),
            (chronic(insured_id=None), "insured_id is required"),
            (chronic(sealed_id_number=SEALED), "only an enrolment"),
            (chronic(attachments=[]), "needs a photo"),
            (chronic(attachments=[PHOTO] * 7), "more than 6"),
            (chronic(attachments=[PHOTO, PHOTO]), "twice"),
            (chronic(attachments=[{**PHOTO, "bytes": 3145729}]), "larger than 3145728"),
            (chronic(attachments=[{**PHOTO, "sha256": f"{n:064x}", "bytes": 3145728}
                                  for n in range(5)]), "together"),
            (chronic(attachments=[{**PHOTO, "type": "image/gif"}]), "type"),
            (chronic(attachments=[{**PHOTO, "sha256": "AB" * 32}]), "sha256"),
        ],
    )  # fmt: skip
    def test_a_malformed_request_is_named(self, body, says):
        problem = body_problem("service_request", body)
        assert problem is not None and says in problem


class TestPremiums:
    def test_a_family_payment_and_its_reversal_pass(self):
        assert body_problem("premium", premium()) is None
        assert body_problem("premium_reversal", premium_reversal()) is None
        mobile = premium(method="mobile", reference="4200001234202611270001")
        assert body_problem("premium", mobile) is None
        account = premium(method="family_account", account_holder="32011500000501",
                          account_balance_after=120000)  # fmt: skip
        assert body_problem("premium", account) is None
        back = premium_reversal(method="family_account", account_holder="32011500000501",
                                account_balance_after=180000)  # fmt: skip
        assert body_problem("premium_reversal", back) is None

    @pytest.mark.parametrize(
        "body, says",
        [
            (premium(amount=60000.0), "amounts are fen"),
            (premium(amount="60000"), "whole number of fen"),
            (premium(amount=59999), "sum of the persons' amounts"),
            (premium(state_paid=0), "state_pays"),
            (premium(persons=[]), "names nobody"),
            (premium(persons=[premium()["persons"][0]] * 21), "more than 20"),
            (premium(persons=[premium()["persons"][0]] * 2, amount=80000, state_paid=0), "twice"),
            (premium(method="mobile"), "reference is required"),
            (premium(method="cheque"), "method"),
            (premium(method="family_account"), "account_holder is required"),
            (premium(account_holder="32011500000501"), "only for family_account"),
            (premium(year=27), "year"),
            ({k: v for k, v in premium().items() if k != "payer"}, "lacks payer"),
            (premium(extra=None), "unknown members"),
        ],
    )
    def test_a_malformed_premium_is_named(self, body, says):
        problem = body_problem("premium", body)
        assert problem is not None and says in problem

    def test_each_persons_amount_is_due_less_what_the_state_pays(self):
        body = premium()
        body["persons"][1]["amount"] = 40000
        body["amount"] = 80000
        assert "due − state_pays" in body_problem("premium", body)
        body = premium()
        body["persons"][1].update(state_pays=50000, amount=-10000)
        assert body_problem("premium", body) is not None

    def test_a_payment_the_state_makes_in_full_is_no_premium(self):
        person = {"insured_id": "A", "name": "甲", "categories": ["extreme_poverty"],
                  "due": 40000, "state_pays": 40000, "amount": 0}  # fmt: skip
        body = premium(persons=[person], amount=0, state_paid=40000)
        assert "no premium to record" in body_problem("premium", body)

    @pytest.mark.parametrize(
        "body, says",
        [
            (premium_reversal(amount=-1), "below 0"),
            (premium_reversal(reason=None), "reason"),
            (premium_reversal(method="family_account"), "account_holder is required"),
            ({k: v for k, v in premium_reversal().items() if k != "reverses_seq"}, "lacks"),
        ],
    )
    def test_a_malformed_premium_reversal_is_named(self, body, says):
        problem = body_problem("premium_reversal", body)
        assert problem is not None and says in problem


def record(seq, kind, body, tx=None, created_at="2026-11-27T09:00:00+08:00"):
    return {"seq": seq, "tx_id": tx or f"tx{seq}", "kind": kind, "created_at": created_at,
            "body": body}  # fmt: skip


SETTLEMENT = record(
    1, "settlement",
    {"insured_id": "32011500000001", "operator": "doc01", "needs_review": [],
     "visit": {"visit_type": "general"},
     "result": {"total": 1000, "fund": 550, "assistance": 0, "personal_account": 0, "cash": 450}},
)  # fmt: skip
PAID = record(2, "premium", premium(), tx="tx-p")
MOBILE = record(3, "premium", premium(method="mobile", reference="R1"), tx="tx-m")
UNDONE = record(
    4, "premium_reversal", premium_reversal(reverses="tx-m", reverses_seq=3, method="mobile")
)
WANTS = record(5, "service_request", request())


class TestCloses:
    def test_a_daily_close_with_premiums_and_a_reversal(self):
        records = [SETTLEMENT, PAID, MOBILE, UNDONE, WANTS]
        body = rec.daily_close_body(records, business_day="2026-11-27", operator="doc01")
        assert body["premiums"] == {
            "collected": {"count": 2, "persons": 4, "amount": 120000, "cash": 60000,
                          "mobile": 60000, "family_account": 0, "state_paid": 40000},
            "reversed": {"count": 1, "persons": 2, "amount": 60000, "cash": 0, "mobile": 60000,
                         "family_account": 0, "state_paid": 20000},
            "net": {"amount": 60000, "cash": 60000, "mobile": 0, "family_account": 0,
                    "state_paid": 20000},
        }  # fmt: skip
        assert body["settlements"]["count"] == 1 and body["net"]["cash"] == 450
        assert body["to_seq"] == 5 and body_problem("daily_close", body) is None

    def test_a_close_without_premiums_is_as_it_was(self):
        body = rec.daily_close_body([SETTLEMENT, WANTS], business_day="2026-11-27", operator="d")
        assert "premiums" not in body and body_problem("daily_close", body) is None
        month = rec.monthly_close_body(
            [SETTLEMENT], month="2026-11", operator="d", daily_closes=[],
            insurance_types={}, originals={},
        )  # fmt: skip
        assert "premiums" not in month

    def test_a_reversal_of_an_earlier_days_premium_takes_its_persons_back(self):
        body = rec.daily_close_body(
            [UNDONE], business_day="2026-11-28", operator="doc01", originals={"tx-m": MOBILE}
        )
        assert body["premiums"]["reversed"]["persons"] == 2
        assert body["premiums"]["net"]["mobile"] == -60000

    def test_the_business_day_counts_premiums(self):
        late = record(6, "premium", premium(), created_at="2026-11-28T00:10:00+08:00")
        assert rec.closed_business_day([SETTLEMENT, late], "2026-11-29") == "2026-11-28"
        assert rec.closed_business_day([WANTS], "2026-11-29") == "2026-11-29"

    def test_month_and_year_closes_carry_the_premiums(self):
        records = [SETTLEMENT, PAID, MOBILE, UNDONE]
        month = rec.monthly_close_body(
            records, month="2026-11", operator="doc01", daily_closes=[],
            insurance_types={"32011500000001": "resident"}, originals={},
        )  # fmt: skip
        assert month["premiums"]["net"]["cash"] == 60000
        assert body_problem("monthly_close", month) is None
        year = rec.yearly_close_body(
            records, year="2026", operator="doc01", monthly_closes=[],
            insurance_types={}, originals={},
        )  # fmt: skip
        assert year["premiums"] == month["premiums"]
        assert body_problem("yearly_close", year) is None

    def test_a_malformed_premiums_member_is_named(self):
        body = rec.daily_close_body([PAID], business_day="2026-11-27", operator="doc01")
        broken = copy.deepcopy(body)
        broken["premiums"]["net"]["cash"] = 1.5
        assert "premiums.net.cash" in body_problem("daily_close", broken)
        del broken["premiums"]["net"]
        assert "lacks net" in body_problem("daily_close", broken)


class TestTheDailyReport:
    def test_the_printed_close_shows_the_premiums_and_their_cash(self):
        records = [SETTLEMENT, PAID, MOBILE, UNDONE]
        body = rec.daily_close_body(records, business_day="2026-11-27", operator="doc01")
        report = reports.close_report(
            body, records, device_id="dev-1", created_at="2026-11-27T18:00:00+08:00"
        )
        assert report.premiums == body["premiums"] and report.warnings == ()
        text = "\n".join(line.text for line in reports.report_lines(report, 32))
        assert "参保缴费" in text and "收取保费 2笔 4人" in text and "冲正 1笔" in text
        assert "保费应上缴现金" in text and "600.00" in text
        assert "政府资助" in text and "200.00" in text

    def test_a_close_without_premiums_prints_as_before(self):
        body = rec.daily_close_body([SETTLEMENT], business_day="2026-11-27", operator="doc01")
        report = reports.close_report(
            body, None, device_id="d", created_at=SETTLEMENT["created_at"]
        )
        assert report.premiums is None
        assert "参保缴费" not in "\n".join(line.text for line in reports.report_lines(report))


def chain(kinds_and_targets) -> tuple[list[dict], str]:
    """Signed records of (kind, tx_id, the tx_id it reverses or None), and the public key."""
    key = Ed25519PrivateKey.generate()
    records, prev = [], genesis_hash(key.public_key())
    for seq, (kind, tx_id, target) in enumerate(kinds_and_targets, start=1):
        body = {"reverses": target} if target else {"n": seq}
        record = new_record(
            device_id="dev-1", seq=seq, kind=kind, tx_id=tx_id,
            created_at="2026-11-27T09:00:00+08:00", prev_hash=prev, body=body, private_key=key,
        )  # fmt: skip
        records.append(record)
        prev = record["hash"]
    return records, b64url(raw_public_key(key.public_key()))


class TestVerifyingALedgerWithPremiums:
    """Step 8 of docs/ledger.md's verification for premiums, in the code's verifier and
    the independent one."""

    @staticmethod
    def both(records, public_key_b64):
        ours = verify_chain(records, load_public(public_key_b64))
        lines = [json.dumps(r, ensure_ascii=False) for r in records]
        theirs = independent_verifier.verify_records(lines, public_key_b64)
        assert (ours.first_bad_seq, ours.count) == (theirs["first_bad_seq"], theirs["records"])
        return ours

    def test_a_premium_reversed_once_verifies(self):
        records, key = chain([("premium", "p1", None), ("premium_reversal", "x1", "p1")])
        assert self.both(records, key).ok

    def test_a_premium_reversed_twice_is_broken(self):
        records, key = chain([
            ("premium", "p1", None), ("premium_reversal", "x1", "p1"),
            ("premium_reversal", "x2", "p1"),
        ])  # fmt: skip
        verification = self.both(records, key)
        assert verification.first_bad_seq == 3 and "reversed twice" in verification.reason

    def test_a_premium_reversal_must_name_a_premium_and_a_reversal_a_settlement(self):
        records, key = chain([("settlement", "s1", None), ("premium_reversal", "x1", "s1")])
        verification = self.both(records, key)
        assert verification.first_bad_seq == 2 and "not an earlier premium" in verification.reason
        records, key = chain([("premium", "p1", None), ("reversal", "r1", "p1")])
        assert self.both(records, key).first_bad_seq == 2
