"""Language, money display and what the UI ships: Chinese by default, English on request,
amounts from integer fen, every asset local, no inline script."""

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import write_po

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
        auth.post("/tester/insert", {"card": "malformed-tlv"})
        auth.post("/settle/card")
        assert "data is malformed (TLV)" in auth.client.get("/settle").get_data(as_text=True)

    def test_an_unknown_language_is_ignored(self, auth):
        auth.post("/lang", {"lang": "fr"})
        assert "请选择操作员" in auth.client.get("/signin").get_data(as_text=True)


class TestCatalogCheck:
    """`python -m web_ui.i18n check` on temporary catalogs: every way a catalog can be
    wrong is reported, and a .mo whose bytes differ but whose messages are the .po's is
    not."""

    WANTED = frozenset(
        {("Settle", None), ("Close the day", None), (("%(n)d visit", "%(n)d visits"), None)}
    )

    @staticmethod
    def catalog(**changes) -> Catalog:
        """The good catalog, with messages replaced (a value of None drops one)."""
        messages = {
            "Settle": "结算",
            "Close the day": "日结",
            ("%(n)d visit", "%(n)d visits"): ("%(n)d次就诊",),
        }
        flags = {}
        for message_id, string in changes.items():
            message_id = message_id.replace("_", " ")
            if string is None:
                messages.pop(message_id)
            elif isinstance(string, dict):  # {"string": …, "flags": …}
                messages[message_id] = string["string"]
                flags[message_id] = string["flags"]
            else:
                messages[message_id] = string
        catalog = Catalog(locale="zh", project="check test", charset="utf-8")
        for message_id, string in messages.items():
            catalog.add(message_id, string, flags=flags.get(message_id, ()))
        return catalog

    @staticmethod
    def write(folder: Path, po: Catalog, mo: Catalog | None = None) -> tuple[Path, Path]:
        """messages.po from `po`, and messages.mo compiled from `mo` (default: `po`)."""
        folder.mkdir(parents=True, exist_ok=True)
        po_file, mo_file = folder / "messages.po", folder / "messages.mo"
        with po_file.open("wb") as handle:
            write_po(handle, po)
        with mo_file.open("wb") as handle:
            write_mo(handle, mo if mo is not None else po, use_fuzzy=False)
        return po_file, mo_file

    def check(self, tmp_path, po: Catalog, mo: Catalog | None = None) -> list[str]:
        return i18n.catalog_problems("zh", *self.write(tmp_path, po, mo), self.WANTED)

    def test_a_complete_catalog_and_its_mo_pass(self, tmp_path):
        assert self.check(tmp_path, self.catalog()) == []

    def test_a_mo_with_other_bytes_but_the_same_messages_passes(self, tmp_path):
        other = self.catalog()
        other.project, other.msgid_bugs_address = "another header", "someone@example.org"
        po_file, mo_file = self.write(tmp_path, self.catalog(), other)
        same = tmp_path / "same.mo"
        with same.open("wb") as handle:
            write_mo(handle, self.catalog())
        assert mo_file.read_bytes() != same.read_bytes()  # a byte comparison would fail
        assert i18n.catalog_problems("zh", po_file, mo_file, self.WANTED) == []

    def test_a_fuzzy_translation_fails(self, tmp_path):
        po = self.catalog(Settle={"string": "结账", "flags": ["fuzzy"]})
        found = self.check(tmp_path, po)
        assert found[0] == "zh: fuzzy 'Settle' (check the translation, drop the flag)"
        assert "zh: messages.mo lacks 'Settle', which the code uses" in found

    def test_an_empty_translation_fails(self, tmp_path):
        found = self.check(tmp_path, self.catalog(Close_the_day=""))
        assert found == [
            "zh: untranslated 'Close the day'",
            "zh: messages.mo lacks 'Close the day', which the code uses",
        ]

    def test_an_empty_plural_form_fails(self, tmp_path):
        po = self.catalog()
        po[("%(n)d visit", "%(n)d visits")].string = ("",)
        found = self.check(tmp_path, po)
        assert found[0] == "zh: untranslated ('%(n)d visit', '%(n)d visits')"

    def test_a_message_the_code_uses_but_the_po_lacks_fails(self, tmp_path):
        found = self.check(tmp_path, self.catalog(Settle=None))
        assert found == [
            "zh: missing 'Settle' (python -m web_ui.i18n update)",
            "zh: messages.mo lacks 'Settle', which the code uses",
        ]

    def test_a_mo_lacking_a_translation_of_the_po_fails(self, tmp_path):
        found = self.check(tmp_path, self.catalog(), mo=self.catalog(Close_the_day=None))
        assert found == [
            "zh: messages.mo lacks 'Close the day': messages.mo is not compiled from"
            " messages.po (python -m web_ui.i18n compile)",
        ]

    def test_a_mo_translating_differently_fails(self, tmp_path):
        found = self.check(tmp_path, self.catalog(Settle="结账"), mo=self.catalog())
        assert found == [
            "zh: messages.mo translates 'Settle' differently: messages.mo is not compiled"
            " from messages.po (python -m web_ui.i18n compile)",
        ]
        plural = self.catalog()
        plural[("%(n)d visit", "%(n)d visits")].string = ("%(n)d次",)
        assert "differently" in self.check(tmp_path, self.catalog(), mo=plural)[0]

    def test_a_mo_holding_a_message_the_po_does_not_translate_fails(self, tmp_path):
        found = self.check(tmp_path, self.catalog(), mo=self.catalog(Refund="退款"))
        assert found == [
            "zh: messages.mo translates 'Refund', messages.po does not: messages.mo is not"
            " compiled from messages.po (python -m web_ui.i18n compile)",
        ]

    def test_other_plural_forms_fail(self, tmp_path):
        mo = self.catalog()
        mo._num_plurals, mo._plural_expr = 2, "(n != 1)"
        found = self.check(tmp_path, self.catalog(), mo=mo)
        assert len(found) == 1 and "Plural-Forms 'nplurals=2;plural=(n!=1);'" in found[0]

    def test_a_missing_or_unreadable_mo_fails(self, tmp_path):
        po_file, mo_file = self.write(tmp_path, self.catalog())
        mo_file.write_bytes(b"not a catalog")
        found = i18n.catalog_problems("zh", po_file, mo_file, self.WANTED)
        assert len(found) == 1 and "messages.mo cannot be read" in found[0]
        mo_file.write_bytes(b"\xde\x12\x04\x95")  # the magic number, then nothing
        assert "cannot be read" in i18n.catalog_problems("zh", po_file, mo_file, self.WANTED)[0]
        mo_file.unlink()
        found = i18n.catalog_problems("zh", po_file, mo_file, self.WANTED)
        assert found == [
            "zh: no messages.mo: messages.mo is not compiled from messages.po"
            " (python -m web_ui.i18n compile)"
        ]

    def test_the_command_fails_on_a_stale_mo(self, tmp_path, monkeypatch, capsys):
        po_file, _ = self.write(tmp_path / "zh" / "LC_MESSAGES", self.catalog(Settle="结账"),
                                mo=self.catalog())  # fmt: skip
        monkeypatch.setattr(i18n.CATALOGS, "po_path", lambda locale: po_file)
        monkeypatch.setattr(i18n.CATALOGS, "extracted_keys", lambda: self.WANTED)
        assert i18n.main(["check"]) == 1
        assert "translates 'Settle' differently" in capsys.readouterr().out
        i18n.compile_all()  # what the message tells to do
        assert i18n.main(["check"]) == 0


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
