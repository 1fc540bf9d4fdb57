"""Search and bundles (组套) through the terminal's own API, on a real demo store: what a
doctor types finds its item or diagnosis wherever in the name; bundles are listed,
applied, saved and deleted; each refusal says why, in Chinese."""

pytest_plugins = ["web_fixtures"]  # the web UI fixtures

CONSULTATION, AMOXICILLIN = "110200005000000", "XJ01CAA040A001"


def codes(response) -> list[str]:
    return [hit["code"] for hit in response.json]


class TestSearch:
    def test_items_are_found_by_infix_pinyin_and_characters(self, doctor):
        get = doctor.client.get
        assert get("/api/catalog?q=aldp").json[0]["name"] == "苯磺酸氨氯地平片"
        assert get("/api/catalog?q=氨氯地平").json[0]["name"] == "苯磺酸氨氯地平片"
        assert "盐酸二甲双胍片" in [h["name"] for h in get("/api/catalog?q=二甲双胍").json]
        assert AMOXICILLIN in codes(get("/api/catalog?q=西林"))
        assert "布洛芬片" in [h["name"] for h in get("/api/catalog?q=洛芬").json]

    def test_diagnoses_are_found_inside_names_and_by_alias(self, doctor):
        get = doctor.client.get
        assert "J00.x00" in codes(get("/api/diagnoses?q=感冒"))
        assert "K29.100" in codes(get("/api/diagnoses?q=胃炎"))
        found = get("/api/diagnoses?q=上感").json
        assert found[0] == {"code": "J06.900", "name": "急性上呼吸道感染"}

    def test_a_settled_item_is_marked_frequent_and_comes_first(self, doctor):
        doctor.post("/tester/insert", {"card": "A32011501"})
        doctor.post("/settle/card")
        body = {"visit_type": "general", "diagnoses": ["J06.900"],
                "lines": [{"code": "XR05XAA202A001", "quantity": "1"}]}  # fmt: skip
        assert doctor.post_json("/api/settle", body).json["ok"]
        first = doctor.client.get("/api/catalog?q=an").json[0]
        assert first["code"] == "XR05XAA202A001" and first["frequent"] is True

    def test_only_settlers_search(self, auth):
        auth.sign_in("coord01")
        assert auth.client.get("/api/catalog?q=aldp").status_code in (302, 403)
        assert auth.client.get("/api/bundles").status_code in (302, 403)


class TestBundles:
    def test_the_county_bundles_are_listed_and_one_applies_with_names_and_prices(self, doctor):
        listed = doctor.client.get("/api/bundles").json
        assert [b["name"] for b in listed] == ["感冒", "糖尿病复诊", "高血压复诊"]
        cold = doctor.client.get(f"/api/bundles/{listed[0]['id']}").json
        assert cold["ok"] and cold["missing"] == []
        assert [(line["code"], line["quantity"]) for line in cold["lines"]] == [
            (CONSULTATION, "1"), (AMOXICILLIN, "2"), ("XR05XAA202A001", "1"),
        ]  # fmt: skip
        assert cold["lines"][0]["name"] == "一般诊疗费" and cold["lines"][0]["price"] == "¥10.00"
        assert cold["diagnoses"] == [{"code": "J06.900", "name": "急性上呼吸道感染"}]

    def test_a_doctor_saves_the_visit_as_a_bundle_and_deletes_it(self, doctor):
        body = {"name": " 咳嗽  常规 ", "diagnoses": ["J20.900"],
                "lines": [{"code": CONSULTATION, "quantity": "1"},
                          {"code": AMOXICILLIN, "quantity": "2"}]}  # fmt: skip
        saved = doctor.post_json("/api/bundles", body).json
        assert saved["ok"] and saved["bundles"][-1]["name"] == "咳嗽 常规"
        applied = doctor.client.get(f"/api/bundles/{saved['id']}").json
        assert applied["diagnoses"] == [{"code": "J20.900", "name": "急性支气管炎"}]
        gone = doctor.post_json(f"/api/bundles/{saved['id']}/delete", {}).json
        assert gone["ok"] and "咳嗽 常规" not in [b["name"] for b in gone["bundles"]]
        assert doctor.client.get(f"/api/bundles/{saved['id']}").status_code == 404

    def test_refusals_say_why_in_chinese(self, doctor):
        line = {"code": CONSULTATION, "quantity": "1"}
        cases = [
            ({"name": "", "lines": [line]}, "请填写组套名称"),
            ({"name": "x", "lines": []}, "请先添加项目"),
            ({"name": "x", "lines": [{"code": CONSULTATION, "quantity": "0"}]}, "大于零"),
            ({"name": "x", "lines": [{"code": "NOPE", "quantity": "1"}]}, "不在目录中：NOPE"),
            ({"name": "感冒", "lines": [line]}, "县里下发的组套已用此名称"),
        ]
        for body, words in cases:
            answer = doctor.post_json("/api/bundles", body)
            assert answer.status_code == 422 and words in answer.json["message"], body
        county = doctor.client.get("/api/bundles").json[0]["id"]
        answer = doctor.post_json(f"/api/bundles/{county}/delete", {})
        assert answer.status_code == 422 and "本卫生室自己的组套" in answer.json["message"]

    def test_saving_needs_the_csrf_token(self, doctor):
        body = {"name": "x", "lines": [{"code": CONSULTATION, "quantity": "1"}]}
        assert doctor.client.post("/api/bundles", json=body).status_code in (400, 403)


def test_the_settle_page_has_the_bundle_bar_and_named_result_lists(doctor):
    doctor.post("/tester/insert", {"card": "A32011501"})
    doctor.post("/settle/card")
    page = doctor.client.get("/settle").get_data(as_text=True)
    assert 'aria-label="项目检索结果"' in page and 'aria-label="诊断检索结果"' in page
    assert "存为组套" in page and 'id="bundle-list"' in page
