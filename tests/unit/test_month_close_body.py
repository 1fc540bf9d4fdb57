"""The month close's pure computation (edge.domain.records) and the statement check
(edge.domain.clearing, after sync.statements verifies the county's signature): months in
China time, reversals netted across months, empty months, differences record by record."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.domain import clearing
from edge.domain import records as rec
from edge.domain.records import MONEY_FIELDS, NATIONAL_NAMES
from sync.protocol import SyncError
from sync.statements import sign_statement, verify_statement

ZERO = dict.fromkeys(MONEY_FIELDS, 0)


def settlement(seq, created_at, total, cash, insured="A", visit_type="general", tx=None):
    result = {"total": total, "fund": total - cash, "assistance": 0, "personal_account": 0,
              "cash": cash}  # fmt: skip
    return {
        "seq": seq, "tx_id": tx or f"s{seq}", "kind": "settlement", "created_at": created_at,
        "body": {"insured_id": insured, "operator": "doc01", "needs_review": [],
                 "visit": {"visit_type": visit_type}, "result": result},
    }  # fmt: skip


def reversal(seq, created_at, original):
    amounts = rec.payer_amounts(original["body"]["result"])
    return {
        "seq": seq, "tx_id": f"r{seq}", "kind": "reversal", "created_at": created_at,
        "body": {"insured_id": original["body"]["insured_id"], "operator": "doc01",
                 "reverses": original["tx_id"], "amounts": amounts},
    }  # fmt: skip


NOV = settlement(1, "2026-11-30T23:50:00+08:00", 1000, 300)
NOV_B = settlement(2, "2026-11-30T16:10:00+00:00", 500, 100, insured="B", visit_type="chronic")
DEC_REVERSAL = reversal(3, "2026-12-01T08:00:00+08:00", NOV)


def month_body(records, month, originals=None):
    return rec.monthly_close_body(
        records, month=month, operator="doc01", daily_closes=[],
        insurance_types={"A": "resident", "B": "employee"}, originals=originals or {},
    )  # fmt: skip


class TestMonths:
    def test_a_record_belongs_to_its_china_time_month(self):
        assert rec.month_of(NOV["created_at"]) == "2026-11"
        assert rec.month_of(NOV_B["created_at"]) == "2026-12"  # 00:10 on 1 December in China
        assert rec.previous_month("2027-01") == "2026-12"

    def test_the_month_totals_by_payer_insurance_and_visit_type(self):
        body = month_body([NOV], "2026-11")
        assert body["from_seq"] == body["to_seq"] == 1
        assert body["settlements"]["count"] == 1 and body["net"]["cash"] == 300
        assert body["by_insurance"] == {"resident": {"count": 1, **body["net"]}}
        assert body["by_visit_type"] == {"general": {"count": 1, **body["net"]}}
        assert rec.body_problem("monthly_close", body) is None

    def test_a_reversal_nets_in_its_own_month_with_its_settlements_visit_type(self):
        body = month_body([NOV_B, DEC_REVERSAL], "2026-12", {NOV["tx_id"]: NOV})
        assert body["settlements"]["count"] == 1 and body["reversals"]["count"] == 1
        assert body["net"]["total"] == 500 - 1000
        assert body["by_visit_type"]["general"]["total"] == -1000
        assert body["by_visit_type"]["chronic"]["total"] == 500
        assert body["by_insurance"]["resident"]["cash"] == -300

    def test_a_reversal_whose_settlement_is_unknown_is_grouped_as_unknown(self):
        body = month_body([DEC_REVERSAL], "2026-12")
        assert list(body["by_visit_type"]) == ["unknown"]

    def test_an_empty_month(self):
        body = month_body([], "2026-02")
        assert body["from_seq"] is None and body["net"] == ZERO and body["by_insurance"] == {}
        assert body["daily_closes"] == {"count": 0, "first_seq": None, "last_seq": None}
        assert rec.body_problem("monthly_close", body) is None

    def test_the_daily_close_sums_the_same_way(self):
        daily = rec.daily_close_body([NOV, NOV_B], business_day="2026-11-30", operator="doc01")
        assert daily["net"] == rec.period_totals([NOV, NOV_B])["net"]

    @pytest.mark.parametrize(
        "change",
        [{"month": "2026-13"}, {"month": "2026-1"}, {"net": {"total": 1.5}}, {"extra": 1},
         {"by_insurance": {"x": {"count": -1, **ZERO}}}],
    )  # fmt: skip
    def test_malformed_month_closes_are_named(self, change):
        body = {**month_body([NOV], "2026-11"), **change}
        assert rec.body_problem("monthly_close", body) is not None

    def test_a_year_close_body(self):
        month = {"seq": 9, "body": {"month": "2026-11"}}
        body = rec.yearly_close_body(
            [NOV], year="2026", operator="doc01", monthly_closes=[month],
            insurance_types={}, originals={},
        )  # fmt: skip
        assert body["months"] == ["2026-11"] and body["monthly_closes"]["last_seq"] == 9
        assert rec.body_problem("yearly_close", body) is None
        assert rec.body_problem("yearly_close", {**body, "year": "26"}) is not None


# ---- the statement check ---------------------------------------------------------------------

COUNTY = Ed25519PrivateKey.generate()


def row(record, device_id="dev-1", **changed):
    amounts = clearing.device_rows([record])[record["tx_id"]]["amounts"]
    return {"tx_id": record["tx_id"], "device_id": device_id, "seq": record["seq"],
            "kind": record["kind"], **amounts, **changed}  # fmt: skip


def signed(detail, month="2026-12", devices=("dev-1",), key=COUNTY):
    statement = {
        "v": 1, "kind": "clearing_statement", "clinic": "C1", "device_ids": list(devices),
        "month": month, "revision": 2, "supersedes": 1, "changes": [], "status": "draft",
        "payment": None, "detail": detail, "total": {},
    }  # fmt: skip
    return sign_statement(statement, key)


def check(document, records):
    statement = verify_statement(document, COUNTY.public_key(), device_id="dev-1", month="2026-12")
    return clearing.compare(statement, records, device_id="dev-1")


class TestStatementCheck:
    def test_a_statement_that_matches_agrees(self):
        result = check(signed([row(NOV_B), row(DEC_REVERSAL)]), [NOV, NOV_B, DEC_REVERSAL])
        assert result.agrees and result.count == 2
        assert result.device_total["medfee_sumamt"] == 500 - 1000
        assert result.report() == {"month": "2026-12", "revision": 2, "agrees": True,
                                   "differences": [], "missing_at_county": [],
                                   "missing_on_device": []}  # fmt: skip
        assert "一致" in "\n".join(clearing.comparison_lines(result.to_json()))

    def test_a_different_amount_names_the_settlement_and_the_payer(self):
        cash = NATIONAL_NAMES["cash"]
        document = signed([row(NOV_B, **{cash: 150}), row(DEC_REVERSAL)])
        result = check(document, [NOV_B, DEC_REVERSAL])
        assert not result.agrees
        assert result.report()["differences"] == [
            {"tx_id": NOV_B["tx_id"], "field": cash, "device": 100, "county": 150}
        ]
        text = "\n".join(clearing.comparison_lines(result.to_json(), {NOV_B["tx_id"]: "张三"}))
        assert "不一致" in text and "流水 2 张三" in text and "相差 ¥0.50" in text

    def test_missing_rows_both_ways_and_other_devices_rows(self):
        other = row(NOV, device_id="dev-2", tx_id="elsewhere")
        result = check(signed([row(DEC_REVERSAL), row(NOV, tx_id="ghost"), other]),
                       [NOV_B, DEC_REVERSAL])  # fmt: skip
        assert result.missing_at_county == (NOV_B["tx_id"],)
        assert result.missing_on_device == ("ghost",)

    @pytest.mark.parametrize(
        "document",
        [signed([], key=Ed25519PrivateKey.generate()), signed([], month="2026-11"),
         signed([], devices=("dev-2",)), {"statement": None}, "nonsense"],
    )  # fmt: skip
    def test_a_statement_not_signed_for_this_device_and_month_is_refused(self, document):
        with pytest.raises(SyncError):
            check(document, [])

    def test_an_altered_statement_is_refused(self):
        document = signed([row(NOV_B)])
        document["statement"]["detail"][0]["hifp_pay"] += 1
        with pytest.raises(SyncError, match="signature"):
            check(document, [NOV_B])

    def test_the_report_is_bounded(self):
        many = [settlement(i, "2026-12-05T10:00:00+08:00", 100, 10) for i in range(1, 5200)]
        result = check(signed([]), many)
        report = result.report()
        total = sum(len(report[k]) for k in ("differences", "missing_at_county",
                                             "missing_on_device"))  # fmt: skip
        assert total == clearing.MAX_REPORTED and not report["agrees"]
