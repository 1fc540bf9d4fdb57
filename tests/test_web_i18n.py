"""Language, money display and what the UI ships: Chinese by default, English on request,
amounts from integer fen, every asset local, no inline script."""

import re
from pathlib import Path

import pytest

import web_ui
from web_ui import i18n

pytest_plugins = ["web_fixtures"]  # the web UI fixtures

PACKAGE = Path(web_ui.__file__).parent
TEMPLATES = sorted((PACKAGE / "templates").glob("*.html"))
SCRIPTS = sorted((PACKAGE / "static" / "js").glob("*.js"))


class TestLanguage:
    def test_the_chinese_catalog_is_complete_and_compiled(self):
        assert i18n.problems() == []

    def test_the_ui_speaks_simplified_chinese_by_default(self, client):
        page = client.get("/signin").get_data(as_text=True)
        assert '<html lang="zh-Hans">' in page and "请选择操作员" in page

    def test_english_can_be_chosen_and_is_kept_after_signing_in(self, auth):
        auth.post("/lang", {"lang": "en", "next": "/signin"})
        page = auth.client.get("/signin").get_data(as_text=True)
        assert '<html lang="en">' in page and "Who is working?" in page
        auth.sign_in("doc01")
        page = auth.client.get("/settle").get_data(as_text=True)
        assert "Settle a visit" in page and "中文" in page

    def test_driver_messages_follow_the_language(self, auth):
        auth.post("/lang", {"lang": "en"})
        auth.sign_in("doc01")
        auth.post("/tester/insert", {"card": "expired"})
        auth.post("/settle/card")
        assert "the card has expired" in auth.client.get("/settle").get_data(as_text=True)

    def test_an_unknown_language_is_ignored(self, auth):
        auth.post("/lang", {"lang": "fr"})
        assert "请选择操作员" in auth.client.get("/signin").get_data(as_text=True)


class TestMoney:
    def test_amounts_are_shown_as_yuan_from_integer_fen(self, doctor):
        doctor.post("/tester/insert", {"card": "B32011552"})
        doctor.post("/settle/card")
        body = {"visit_type": "general", "lines": [{"code": "XJ01CAA040A003", "quantity": "7"}]}
        answer = doctor.post_json("/api/quote", body).json
        assert answer["lines"][0]["amount"] == "¥2.00"  # 0.2850 × 7 = 1.995 → 200 fen
        assert all(re.fullmatch(r"¥[0-9,]+\.[0-9]{2}", v) for v in answer["split"].values())

    @pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
    def test_the_browser_never_computes_money(self, script):
        source = script.read_text(encoding="utf-8")
        for forbidden in ("parseFloat", "toFixed", "Number(line", "* 100", "/ 100"):
            assert forbidden not in source


class TestAssets:
    @pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
    def test_templates_load_nothing_from_outside_and_run_no_inline_code(self, template):
        source = template.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", source)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", source)
        assert not re.search(r"\son[a-z]+=", source)
        assert " style=" not in source

    def test_every_static_file_a_template_names_is_in_the_package(self):
        for template in TEMPLATES:
            for name in re.findall(r"filename='([^']+)'", template.read_text(encoding="utf-8")):
                assert (PACKAGE / "static" / name).is_file(), name

    def test_every_module_a_script_imports_is_in_the_package(self):
        for script in SCRIPTS:
            for name in re.findall(r'from "\./([^"]+)"', script.read_text(encoding="utf-8")):
                assert (script.parent / name).is_file(), name

    @pytest.mark.parametrize(
        "path", ["/static/js/settle.js", "/static/js/api.js", "/static/css/app.css"]
    )
    def test_static_assets_are_served_by_the_terminal_itself(self, client, path):
        response = client.get(path)
        response.close()
        assert response.status_code == 200
