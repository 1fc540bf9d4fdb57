"""The terminal's month page: month-to-date figures by payer, insurance type, visit type
and operator, signing and printing the month close, the county statement's comparison."""

from pathlib import Path

from web_support import store_of

from drivers.printer import PrinterEmulator
from edge.domain import clearing

pytest_plugins = ["web_fixtures"]

AMOXICILLIN = "XJ01CAA040A001"


def settle(auth, card="A32011505") -> dict:
    auth.post("/tester/insert", {"card": card})
    auth.post("/settle/card")
    body = {"visit_type": "general", "diagnoses": ["J06.900"],
            "lines": [{"code": AMOXICILLIN, "quantity": "2"}]}  # fmt: skip
    answer = auth.post_json("/api/settle", body).json
    assert answer["ok"], answer
    return answer


def table(page: str, table_id: str) -> str:
    return page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]


class TestMonthPage:
    def test_month_to_date_by_payer_insurance_visit_type_and_operator(self, doctor):
        settle(doctor, "A32011505")
        settle(doctor, "A32011501")
        page = doctor.client.get("/month").get_data(as_text=True)
        assert "2026年11月" in page and "本月至今" in page
        assert "结算 2 笔" in table(page, "month-totals")
        assert "居民医保" in table(page, "month-by-insurance")
        assert "普通门诊" in table(page, "month-by-visit-type")
        operators = table(page, "month-operators")
        assert 'data-operator="doc01"' in operators and "<td>2</td>" in operators
        assert 'id="close-month"' not in page  # the month has not ended
        assert "本月结束后才能月结" in page

    def test_after_the_month_the_close_is_signed_shown_and_printed(self, doctor, clock, app):
        settle(doctor)
        clock.advance(days=10)  # 2 December
        doctor.sign_in("doc01")
        page = doctor.client.get("/month?month=2026-11").get_data(as_text=True)
        assert 'id="close-month"' in page
        answer = doctor.post("/month/close", {"month": "2026-11"})
        assert answer.status_code == 302
        page = doctor.client.get("/month?month=2026-11").get_data(as_text=True)
        assert "月结已签名" in page and 'id="close-month"' not in page
        store = store_of(app)
        try:
            close = store.records_of_kind("monthly_close")[0]
        finally:
            store.close()
        assert f'id="month-close-{close["seq"]}"' in page
        doctor.post(f"/month/print/{close['tx_id']}")
        text = PrinterEmulator(Path(app.config["PRINTER"].removeprefix("emulated://"))).text()
        assert "月结单" in text and "2026年11月" in text
        again = doctor.post("/month/close", {"month": "2026-11"})
        assert again.status_code == 302
        assert "本月已月结" in doctor.client.get("/month?month=2026-11").get_data(as_text=True)

    def test_a_statement_that_differs_names_the_settlement(self, doctor, app):
        settled = settle(doctor)
        store = store_of(app)
        try:
            records = list(store.records())
            device_id = store.device().device_id
            rows = clearing.device_rows(records)
            detail = [{"tx_id": t, "device_id": device_id, **r["amounts"]} for t, r in rows.items()]
            detail[0]["psn_cash_pay"] += 100
            payment = {"reference": "NJ-2026-1207", "paid_on": "2026-12-07"}
            statement = {"month": "2026-11", "revision": 1, "status": "paid", "detail": detail,
                         "payment": payment}  # fmt: skip
            comparison = clearing.compare(statement, records, device_id=device_id)
            store.save_statement_check("2026-11", comparison.to_json(), statement,
                                       "2026-12-02T09:30:00+08:00", None)  # fmt: skip
        finally:
            store.close()
        page = doctor.client.get("/month?month=2026-11").get_data(as_text=True)
        assert "不一致" in page and "尚未报告县级平台" in page
        assert "已支付" in page and "NJ-2026-1207" in page
        differences = table(page, "statement-differences")
        assert f'data-tx="{settled["tx_id"]}"' in differences
        assert "现金" in differences and "¥1.00" in differences

    def test_a_coordinator_reads_the_month_but_cannot_close_it(self, auth, clock):
        auth.sign_in("doc01")
        settle(auth)
        auth.sign_out()
        clock.advance(days=10)
        auth.sign_in("coord01")
        page = auth.client.get("/month?month=2026-11").get_data(as_text=True)
        assert "居民医保" in page and 'id="close-month"' not in page
        assert auth.post("/month/close", {"month": "2026-11"}).status_code == 403

    def test_a_bad_month_is_not_found(self, doctor):
        assert doctor.client.get("/month?month=2026-13").status_code == 404
