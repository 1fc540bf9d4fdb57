"""Today's settlements, their detail and verification, reversal, receipts, daily close."""

from pathlib import Path

import pytest
from web_support import Auth, app_config, store_of

from drivers.printer import PrinterEmulator
from drivers.receipt import receipt_qr_payload
from edge.adapters.sqlite_store import SqliteDeviceStore

pytest_plugins = ["web_fixtures"]  # the web UI fixtures

AMOXICILLIN = "XJ01CAA040A001"


def settle(auth, card="A32011505", lines=((AMOXICILLIN, "2"),)) -> dict:
    auth.post("/tester/insert", {"card": card})
    auth.post("/settle/card")
    body = {"visit_type": "general", "diagnoses": ["J06.900"],
            "lines": [{"code": c, "quantity": q} for c, q in lines]}  # fmt: skip
    answer = auth.post_json("/api/settle", body).json
    assert answer["ok"], answer
    return answer


def printed(app) -> str:
    return PrinterEmulator(Path(app.config["PRINTER"].removeprefix("emulated://"))).text()


class TestToday:
    def test_today_lists_the_day_s_settlements_newest_first(self, doctor):
        first = settle(doctor, "A32011505")
        second = settle(doctor, "A32011501")
        page = doctor.client.get("/records").get_data(as_text=True)
        assert page.index(second["tx_id"]) < page.index(first["tx_id"])
        assert "陈志强" in page and "张建国" in page and "¥13.60" in page

    @pytest.mark.parametrize("query", ["陈志", "32011500000005", "1"])
    def test_today_is_searched_by_name_insured_number_or_seq(self, doctor, query):
        first = settle(doctor, "A32011505")
        second = settle(doctor, "A32011501")
        page = doctor.client.get(f"/records?q={query}").get_data(as_text=True)
        assert first["tx_id"] in page and second["tx_id"] not in page

    def test_a_short_number_is_a_seq_never_a_prefix_of_an_id(self, doctor):
        settled = [settle(doctor, "A32011505") for _ in range(12)]
        page = doctor.client.get("/records?q=1").get_data(as_text=True)
        assert settled[0]["tx_id"] in page
        assert [s["tx_id"] for s in settled[1:] if s["tx_id"] in page] == []

    def test_a_search_that_finds_nothing_says_so(self, doctor):
        settle(doctor)
        assert "没有符合条件的记录" in doctor.client.get("/records?q=王五").get_data(as_text=True)

    def test_yesterday_s_settlements_are_not_today_s(self, doctor, clock):
        settle(doctor)
        clock.advance(days=1)
        doctor.sign_in("doc01")
        assert "今日暂无结算" in doctor.client.get("/records").get_data(as_text=True)

    def test_a_coordinator_sees_the_list_but_cannot_reverse(self, auth):
        auth.sign_in("doc01")
        answer = settle(auth)
        auth.sign_out()
        auth.sign_in("coord01")
        page = auth.client.get(f"/records/{answer['tx_id']}").get_data(as_text=True)
        assert "冲销原因" not in page
        assert auth.post(f"/records/{answer['tx_id']}/reverse", {"reason": "x"}).status_code == 403


class TestDetail:
    def test_the_detail_shows_the_split_seq_hash_and_verification(self, doctor, app):
        answer = settle(doctor)
        page = doctor.client.get(f"/records/{answer['tx_id']}").get_data(as_text=True)
        store = store_of(app)
        try:
            record = store.record_by_tx(answer["tx_id"])
        finally:
            store.close()
        assert record["hash"] in page and "流水号 1" in page
        assert "已核验：由本设备签名" in page
        assert "统筹基金" in page and "医疗救助" in page and "J06.900 急性上呼吸道感染" in page

    def test_an_altered_record_shows_as_not_verified(self, doctor, app):
        answer = settle(doctor)
        store = store_of(app)
        try:
            store.db.execute("DROP TRIGGER ledger_is_append_only_update")
            store.db.execute(
                "UPDATE ledger SET record = replace(record, '\"cash\":0', '\"cash\":1')"
            )
        finally:
            store.close()
        page = doctor.client.get(f"/records/{answer['tx_id']}").get_data(as_text=True)
        assert "核验失败" in page

    def test_an_unknown_record_is_a_plain_404(self, doctor):
        response = doctor.client.get("/records/no-such-tx")
        assert response.status_code == 404
        assert "没有这个页面或记录。" in response.get_data(as_text=True)


class TestReversal:
    def test_a_reversal_with_a_reason_gives_the_amounts_back(self, doctor, app):
        answer = settle(doctor)
        response = doctor.post(f"/records/{answer['tx_id']}/reverse", {"reason": "录入错误"})
        assert response.status_code == 302 and response.headers["Location"].startswith("/receipt/")
        page = doctor.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "结算已冲销" in page
        paper = doctor.client.get(response.headers["Location"] + "/text").get_data(as_text=True)
        assert "医保结算冲销单" in paper and "录入错误" in paper
        store = store_of(app)
        try:
            kinds = [r["kind"] for r in store.records()]
        finally:
            store.close()
        assert kinds == ["settlement", "reversal"]
        detail = doctor.client.get(f"/records/{answer['tx_id']}").get_data(as_text=True)
        assert "已被第2条记录冲销" in detail

    def test_a_reversal_without_a_reason_is_refused(self, doctor):
        answer = settle(doctor)
        response = doctor.post(f"/records/{answer['tx_id']}/reverse", {"reason": "  "})
        page = doctor.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "请选择冲销原因。" in page

    def test_a_settlement_is_reversed_only_once(self, doctor):
        answer = settle(doctor)
        doctor.post(f"/records/{answer['tx_id']}/reverse", {"reason": "录入错误"})
        response = doctor.post(f"/records/{answer['tx_id']}/reverse", {"reason": "再次"})
        page = doctor.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "这笔结算已经冲销过了。" in page

    def test_reversing_something_that_is_not_a_settlement_is_refused(self, doctor):
        response = doctor.post("/records/no-such-tx/reverse", {"reason": "x"})
        page = doctor.client.get(response.headers["Location"], follow_redirects=True)
        assert "本终端没有这笔结算。" in page.get_data(as_text=True)


class TestReceipts:
    def test_the_receipt_prints_on_the_emulated_printer(self, doctor, app):
        answer = settle(doctor)
        response = doctor.post(f"/receipt/{answer['tx_id']}/print")
        page = doctor.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "结算单已打印。" in page
        text = printed(app)
        assert "医保结算单" in text and "测试村卫生室" in text and "YBR1:" in text

    def test_a_receipt_can_be_printed_again(self, doctor, app):
        answer = settle(doctor)
        doctor.post(f"/receipt/{answer['tx_id']}/print")
        doctor.post(f"/receipt/{answer['tx_id']}/print")
        assert printed(app).count("医保结算单") == 2

    def test_a_printer_out_of_paper_is_explained_and_the_settlement_kept(self, web_dir, clock):
        from web_ui.app import create_app

        url = f"emulated://{web_dir / 'paper.bin'}?status=paper_out"
        app = create_app(app_config(web_dir, clock, PRINTER=url))
        auth = Auth(app.test_client())
        auth.sign_in("doc01")
        answer = settle(auth)
        response = auth.post(f"/receipt/{answer['tx_id']}/print")
        page = auth.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "未能打印：打印机缺纸。结算已保存，排除故障后可补打。" in page
        assert "[PAPER_OUT]" in page

    def test_without_a_printer_the_receipt_is_shown_with_its_qr_code(self, web_dir, clock):
        from web_ui.app import create_app

        app = create_app(app_config(web_dir, clock, PRINTER=None))
        auth = Auth(app.test_client())
        auth.sign_in("doc01")
        answer = settle(auth)
        page = auth.client.get(f"/receipt/{answer['tx_id']}?qr=1").get_data(as_text=True)
        assert 'id="print"' not in page and 'id="receipt-qr"' in page

    def test_the_receipt_qr_code_is_an_svg_of_the_signed_record(self, doctor, app):
        answer = settle(doctor)
        response = doctor.client.get(f"/receipt/{answer['tx_id']}/qr.svg")
        assert response.mimetype == "image/svg+xml"
        assert response.get_data().startswith(b"<?xml") and b"<svg" in response.get_data()
        store = store_of(app)
        try:
            record = store.record_by_tx(answer["tx_id"])
        finally:
            store.close()
        assert receipt_qr_payload(record).startswith("YBR1:")


class TestDailyClose:
    def test_the_close_page_counts_what_the_close_will_sum(self, doctor):
        settle(doctor)
        page = doctor.client.get("/close").get_data(as_text=True)
        assert "上次日结以来：结算1笔，冲销0笔。" in page

    def test_closing_the_day_shows_the_printable_report(self, doctor, app):
        first = settle(doctor)
        settle(doctor, "A32011501")
        doctor.post(f"/records/{first['tx_id']}/reverse", {"reason": "录入错误"})
        response = doctor.post("/close")
        assert response.headers["Location"].startswith("/close/")
        page = doctor.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "日结报表 Daily close  2026-11-22" in page and "data-print" in page
        assert "冲销 reversals           1" in page
        doctor.post(f"/receipt/{response.headers['Location'].split('/')[-1]}/print")
        assert "日结单" in printed(app)

    def test_the_close_report_of_another_kind_of_record_is_a_404(self, doctor):
        answer = settle(doctor)
        assert doctor.client.get(f"/close/{answer['tx_id']}").status_code == 404


@pytest.mark.parametrize("query", ["", "张", "320115000000"])
def test_the_days_list_reads_that_day_through_an_index_not_the_whole_ledger(web_dir, query):
    """Years of records must not slow the records page: the day's rows are found by the
    ledger's day index (the query plan is checked, since a test ledger is small)."""
    from web_ui.queries import records_of_day

    store = SqliteDeviceStore.open(web_dir)
    statements = []
    store.db.conn.set_trace_callback(statements.append)
    try:
        records_of_day(store, "2026-11-22", query)
        store.db.conn.set_trace_callback(None)
        (sql,) = [s for s in statements if "FROM ledger AS l" in s]
        plan = [row[3] for row in store.db.execute("EXPLAIN QUERY PLAN " + sql)]
    finally:
        store.close()
    assert any("USING INDEX ledger_by_day (day=?)" in step for step in plan), plan
    assert not any(step.startswith("SCAN l") for step in plan), plan
