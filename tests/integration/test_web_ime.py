"""The pinyin input's candidates through the terminal's own API (/api/ime), on a real demo
store: characters of the installed item and diagnosis names, the usual reading first and
then by how many names hold them; at most the limit; nothing for what is no syllable; a
clear 400 for what is not pinyin; signed-in operators only; a new catalog is seen."""

import dataclasses

import pytest
from clock import NOW
from web_support import store_of

pytest_plugins = ["web_fixtures"]  # the web UI fixtures

AMOXICILLIN = "XJ01CAA040A001"  # 阿莫西林胶囊


def ime(auth, query: str):
    return auth.client.get(f"/api/ime?{query}")


class TestCandidates:
    def test_xi_offers_xi_first_and_lin_lin_and_they_find_amoxicillin(self, doctor):
        found = ime(doctor, "pinyin=xi").json
        assert found["pinyin"] == "xi" and found["candidates"][0] == "西"
        assert ime(doctor, "pinyin=lin").json["candidates"][0] == "林"
        hits = doctor.client.get("/api/catalog?q=西林").json
        assert AMOXICILLIN in [hit["code"] for hit in hits]

    def test_every_candidate_is_in_an_installed_name_ranked_by_names_holding_it(self, app, doctor):
        store = store_of(app)
        try:
            names = [
                name
                for table in ("catalog_item", "diagnosis")
                for (name,) in store.db.execute(f"SELECT name FROM {table}")
            ]
        finally:
            store.close()
        for typed in ("x", "xi", "a", "gan", "lv"):
            found = ime(doctor, f"pinyin={typed}").json["candidates"]
            assert found and len(found) == len(set(found))
            assert all(any(ch in name for name in names) for ch in found)
        # a syllable's start: every character read so in a tier, the most named first
        offered = ime(doctor, "pinyin=x").json["candidates"]
        counts = [sum(ch in name for name in names) for ch in offered]
        assert counts == sorted(counts, reverse=True)
        assert "氯" in ime(doctor, "pinyin=lv").json["candidates"]  # ü typed as v
        assert ime(doctor, "pinyin=gan").json["candidates"][0] == "感"  # 感冒, 感染 …

    def test_upper_case_and_spaces_around_are_taken_as_pinyin(self, doctor):
        assert ime(doctor, "pinyin=%20XI%20").json["candidates"][0] == "西"

    def test_the_limit_is_kept(self, doctor):
        assert len(ime(doctor, "pinyin=x").json["candidates"]) == 12
        assert (
            ime(doctor, "pinyin=x&limit=3").json["candidates"]
            == (ime(doctor, "pinyin=x").json["candidates"][:3])
        )

    @pytest.mark.parametrize("query", ["pinyin=", "", "pinyin=zzz", "pinyin=xilin", "pinyin=v"])
    def test_an_empty_or_unknown_pinyin_gives_none(self, doctor, query):
        response = ime(doctor, query)
        assert response.status_code == 200 and response.json["candidates"] == []

    def test_free_text_also_offers_the_characters_in_common_use_after_the_named(self, doctor):
        """A resident's name or village holds characters no catalog name does (村, 梅)."""
        for typed, char in (("cun", "村"), ("mei", "梅")):
            assert char not in ime(doctor, f"pinyin={typed}").json["candidates"]
            assert char in ime(doctor, f"pinyin={typed}&set=text&limit=12").json["candidates"]
        # the installed names' characters keep their rank: the same order, ahead of the rest
        named = ime(doctor, "pinyin=xi").json["candidates"]
        text = ime(doctor, "pinyin=xi&set=text").json["candidates"]
        assert text[0] == named[0] == "西"
        assert [ch for ch in text if ch in named] == [ch for ch in named if ch in text]

    @pytest.mark.parametrize(
        "query", ["pinyin=xi1", "pinyin=西", "pinyin=x-i", "pinyin=" + "a" * 33,
                  "pinyin=xi&limit=0", "pinyin=xi&limit=13", "pinyin=xi&limit=many",
                  "pinyin=xi&set=all"],
    )  # fmt: skip
    def test_bad_input_is_a_clear_400_in_chinese(self, doctor, query):
        response = ime(doctor, query)
        assert response.status_code == 400
        error = response.json["error"]
        assert error["code"] == "BAD_PINYIN" and error["message"]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message"])

    def test_every_signed_in_role_may_ask_and_no_one_signed_out(self, auth):
        assert ime(auth, "pinyin=xi").status_code == 401
        for operator in ("doc01", "coord01", "admin01", "test01"):
            auth.sign_in(operator)
            assert ime(auth, "pinyin=xi").json["candidates"][0] == "西"
            auth.sign_out()

    def test_a_newer_catalog_is_seen(self, app, doctor):
        assert "鳖" not in ime(doctor, "pinyin=bie").json["candidates"]
        store = store_of(app)
        try:
            items = store.catalog_items([AMOXICILLIN])
            new = dataclasses.replace(items[AMOXICILLIN], code="XTEST0000000001", name="鳖甲煎丸")
            everything = list(store.catalog_items(
                code for (code,) in store.db.execute("SELECT code FROM catalog_item")
            ).values())  # fmt: skip
            version = f"{store.catalog_version()}.1"
            store.import_catalog([*everything, new], version, "test", now=NOW)
        finally:
            store.close()
        assert "鳖" in ime(doctor, "pinyin=bie").json["candidates"]
