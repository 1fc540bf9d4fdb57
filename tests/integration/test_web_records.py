"""Today's settlements, their detail and verification, reversal, receipts, daily close."""

import re
from pathlib import Path

import pytest
from web_support import Auth, app_config, store_of

from drivers import escpos
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

    def test_a_whole_row_opens_its_record_and_the_day_has_a_totals_row(self, doctor):
        first = settle(doctor, "A32011505")
        second = settle(doctor, "A32011501")
        doctor.post(f"/records/{first['tx_id']}/reverse", {"reason": "录入错误"})
        page = doctor.client.get("/records").get_data(as_text=True)
        assert f'<a class="row-link" href="/records/{second["tx_id"]}">张建国</a>' in page
        totals = page.split('id="day-totals"', 1)[1].split("</tr>", 1)[0]
        second_total = page.split(second["tx_id"], 1)[1].split('class="money">', 1)[1]
        assert f'data-amount="total">{second_total.split("<")[0]}<' in totals  # first netted
        assert "结算 2 笔" in totals and "冲销 1 笔" in totals

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
        assert "流水号 1" in page
        assert "已核验：由本设备签名" in page
        assert "统筹基金" in page and "医疗救助" in page and "J06.900 急性上呼吸道感染" in page
        # the time as the terminal says it, never an ISO string; no hash for the doctor
        assert record["created_at"] not in page and re.search(r"\d{4}-\d\d-\d\dT", page) is None
        assert record["hash"] not in page and "哈希" not in page and "防伪校验码" not in page

    def test_the_coordinator_sees_the_record_s_check_code_in_plain_words(self, auth, app):
        auth.sign_in("doc01")
        answer = settle(auth)
        auth.sign_out()
        auth.sign_in("coord01")
        page = auth.client.get(f"/records/{answer['tx_id']}").get_data(as_text=True)
        store = store_of(app)
        try:
            record = store.record_by_tx(answer["tx_id"])
        finally:
            store.close()
        assert "防伪校验码" in page and record["hash"] in page and "哈希" not in page

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
        assert "[PAPER_OUT]" not in page  # no error codes for the doctor

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


def numbers(text: str) -> int:
    """Fen from a formatted amount (¥1,234.50 or -¥0.80)."""
    sign = -1 if text.strip().startswith("-") else 1
    return sign * int(re.sub(r"[^0-9]", "", text))


def cells(page: str, table_id: str) -> list[tuple[str, str]]:
    """(row heading, amount) of a close table."""
    table = page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return [
        (re.sub(r"<[^>]+>", "", head).split()[0], amount)
        for head, amount in re.findall(r'<th scope="row">(.*?)</th><td class="money">([^<]*)</td>',
                                       table)
    ]  # fmt: skip


def closed_day(doctor) -> tuple[dict, dict, str]:
    """Three settlements (a resident, an employee, a reversed one), then the preview."""
    first = settle(doctor)
    second = settle(doctor, "A32011501")
    doctor.post(f"/records/{first['tx_id']}/reverse", {"reason": "录入错误"})
    return first, second, doctor.client.get("/close").get_data(as_text=True)


class TestDailyClose:
    def test_the_preview_shows_the_amounts_before_anything_is_signed(self, doctor, app):
        settle(doctor)
        page = doctor.client.get("/close").get_data(as_text=True)
        assert "日结预览" in page and "尚未签名" in page and "结算 1 笔" in page
        assert "¥13.60" in page and 'id="cash-to-hand"' in page
        store = store_of(app)
        try:
            assert store.last_seq_of_kind("daily_close") == 0  # nothing signed by looking
        finally:
            store.close()

    def test_the_signed_close_has_the_previews_amounts_and_adds_up(self, doctor, app):
        _, _, preview = closed_day(doctor)
        response = doctor.post("/close", {"expected": expected_of(preview)})
        assert response.headers["Location"].startswith("/close/")
        report = doctor.client.get(response.headers["Location"]).get_data(as_text=True)
        assert "日结已签名。" in report
        for table in ("close-totals-list", "by-payer", "by-insurance", "by-visit-type"):
            assert section(report, table) == section(preview, table), table
        store = store_of(app)
        try:
            close = store.record_by_tx(response.headers["Location"].split("/")[-1])
        finally:
            store.close()
        net = close["body"]["net"]
        payers = dict(cells(report, "by-payer"))
        assert numbers(payers["现金"]) == net["cash"] and numbers(payers["统筹基金"]) == net["fund"]
        for table in ("by-insurance", "by-visit-type"):
            assert sum(numbers(amount) for _, amount in cells(report, table)) == net["total"]
        assert sum(numbers(a) for p, a in cells(report, "by-payer")) == net["total"]
        assert numbers(report.split('id="cash-to-hand">')[1].split("<")[0]) == net["cash"]
        assert "居民医保" in report and "普通门诊" in report
        assert "医生签字" in report and "复核人签字" in report and "录入错误" in report
        assert report.count('<tr class="reversal"') == 1 and report.count("data-seq=") == 3

    def test_a_settlement_after_the_preview_is_not_signed_unseen(self, doctor):
        _, _, preview = closed_day(doctor)
        settle(doctor, "A32011505")
        response = doctor.post("/close", {"expected": expected_of(preview)})
        assert response.headers["Location"] == "/close"
        page = doctor.client.get("/close").get_data(as_text=True)
        assert "预览之后又有结算或冲销" in page and "结算 3 笔" in page

    @pytest.mark.parametrize("paper", ["58", "80"])
    def test_the_close_prints_on_the_receipt_printer_and_says_so(self, web_dir, clock, paper):
        from web_ui.app import create_app

        app = create_app(app_config(web_dir, clock, PAPER=paper))
        doctor = Auth(app.test_client())
        doctor.sign_in("doc01")
        _, _, preview = closed_day(doctor)
        location = doctor.post("/close", {"expected": expected_of(preview)}).headers["Location"]
        answer = doctor.post(f"/receipt/{location.split('/')[-1]}/print", {"next": location})
        page = doctor.client.get(answer.headers["Location"]).get_data(as_text=True)
        assert "日结单已打印。" in page and "结算单已打印" not in page
        text = printed(app)
        for expected in ("日结单", "交易明细", "按险种", "按门诊类别", "按支付方",
                         "现金合计（应交）", "冲销明细", "医生签字", "复核人签字"):  # fmt: skip
            assert expected in text, expected
        width = {"58": 32, "80": 48}[paper]
        lines = [line for line in text.splitlines() if not line.startswith(("[QR", "- - -"))]
        assert max(escpos.display_width(line) for line in lines) <= width

    def test_an_earlier_close_lists_only_its_own_records(self, doctor):
        _, _, preview = closed_day(doctor)
        location = doctor.post("/close", {"expected": expected_of(preview)}).headers["Location"]
        settle(doctor, "A32011502")  # the next day's business, as far as that close goes
        doctor.post("/close")
        report = doctor.client.get(location).get_data(as_text=True)
        assert report.count("data-seq=") == 3 and "李秀英" not in report
        assert "不一致" not in report
        latest = doctor.client.get("/close").get_data(as_text=True)
        assert "上次日结以来没有结算" in latest and "结算 0 笔" in latest

    def test_the_close_report_of_another_kind_of_record_is_a_404(self, doctor):
        answer = settle(doctor)
        assert doctor.client.get(f"/close/{answer['tx_id']}").status_code == 404


def expected_of(page: str) -> str:
    return page.split('name="expected" value="', 1)[1].split('"', 1)[0]


def section(page: str, table_id: str) -> str:
    if table_id == "close-totals-list":
        return page.split('id="close-totals"', 1)[1].split("</dl>", 1)[0]
    return page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]


class TestSettlementForm:
    @pytest.mark.parametrize("paper", ["58", "80"])
    def test_the_printed_form_has_every_field(self, web_dir, clock, paper):
        from web_ui.app import create_app

        app = create_app(app_config(web_dir, clock, PAPER=paper))
        doctor = Auth(app.test_client())
        doctor.sign_in("doc01")
        answer = settle(doctor, "A32011501")
        doctor.post(f"/receipt/{answer['tx_id']}/print")
        text = printed(app)
        for expected in ("医保结算单", "测试村卫生室", "操作员 ", "时间 2026年11月22日",
                         "姓名 张建国", "身份证号 ", "*", "险种 ", "门诊类别 普通门诊",
                         "诊断 J06.900 ", "自付 ", "自费 ", "现金支付", "本年普通门诊统筹已用",
                         "本年统筹剩余", "扫码验签"):  # fmt: skip
            assert expected in text, expected
        assert re.search("[甲乙丙]类 ¥", text)
        assert " total" not in text and "cash" not in text  # Chinese only

    def test_the_on_screen_split_columns_add_up_to_what_the_patient_pays(self, doctor):
        answer = settle(doctor, "A32011501", lines=((AMOXICILLIN, "2"), ("110200005000000", "1")))
        page = doctor.client.get(f"/receipt/{answer['tx_id']}").get_data(as_text=True)
        own = re.findall(r'data-amount="(own_share|self_funded|policy_selfpay)">([^<]*)<', page)
        cash = page.split('data-amount="cash">')[1].split("<")[0]
        paid_by_others = sum(
            numbers(a)
            for a in re.findall(
                r'<dd class="money" data-payer="(?:critical_illness|'
                r"assistance|personal_account|family_account|"
                r'cvlserv_pay|oth_pay)"[^>]*>([^<]*)<',
                page,
            )
        )
        assert sum(numbers(a) for _, a in own) - paid_by_others == numbers(cash) > 0
        assert "甲类" in page or "乙类" in page or "丙类" in page

    def test_after_confirm_the_form_prints_by_itself_once(self, doctor, app):
        answer = settle(doctor)
        page = doctor.client.get(f"/receipt/{answer['tx_id']}?print=auto").get_data(as_text=True)
        assert 'data-url="/receipt/' in page
        first = doctor.post_json(f"/receipt/{answer['tx_id']}/auto-print", {}).json
        assert first["printed"] and first["messages"][0]["text"] == "结算单已打印。"
        again = doctor.post_json(f"/receipt/{answer['tx_id']}/auto-print", {}).json
        assert again == {"printed": False, "reason": "already", "messages": []}
        assert printed(app).count("医保结算单") == 1

    def test_the_receipt_shown_right_after_confirm_prints_by_itself_once(self, doctor, clock):
        answer = settle(doctor)
        page = doctor.client.get(answer["receipt_url"]).get_data(as_text=True)
        assert 'data-url="/receipt/' in page  # the settle page's redirect after confirm
        assert doctor.post_json(f"/receipt/{answer['tx_id']}/auto-print", {}).json["printed"]
        again = doctor.client.get(answer["receipt_url"]).get_data(as_text=True)
        assert 'data-url="/receipt/' not in again  # printed by itself: the button reprints
        older = settle(doctor, "A32011501")
        clock.advance(minutes=3)
        doctor.sign_in("doc01")
        later = doctor.client.get(older["receipt_url"]).get_data(as_text=True)
        assert 'data-url="/receipt/' not in later  # opened later from today's list

    def test_switched_off_nothing_prints_by_itself(self, web_dir, clock):
        from web_ui.app import create_app

        app = create_app(app_config(web_dir, clock, PRINT_RECEIPT_AFTER_SETTLE=False))
        doctor = Auth(app.test_client())
        doctor.sign_in("doc01")
        answer = settle(doctor)
        page = doctor.client.get(f"/receipt/{answer['tx_id']}?print=auto").get_data(as_text=True)
        assert 'data-url="/receipt/' not in page
        off = doctor.post_json(f"/receipt/{answer['tx_id']}/auto-print", {}).json
        assert off["printed"] is False and off["reason"] == "off"
        assert not Path(app.config["PRINTER"].removeprefix("emulated://")).exists()


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
