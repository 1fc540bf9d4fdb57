"""Search keys as a clinic HIS builds them: characters, pinyin and initials from every
position, salt and form prefixes not counted against a name, aliases, the alias file."""

import pytest

from edge.domain.search_keys import (
    KEY_INITIALS_INSIDE,
    KEY_INITIALS_START,
    KEY_NAME_INSIDE,
    KEY_NAME_START,
    KEY_PINYIN_INSIDE,
    KEY_PINYIN_START,
    alias_keys,
    aliases_from_csv,
    core_name,
    matches,
    name_keys,
    pinyin_keys,
)


def kinds_of(name: str, key: str) -> set[int]:
    return {kind for kind, found in name_keys(name) if found.startswith(key)}


class TestCoreName:
    @pytest.mark.parametrize(
        ("name", "core"),
        [
            ("苯磺酸氨氯地平片", "氨氯地平片"),
            ("盐酸二甲双胍缓释片", "二甲双胍缓释片"),
            ("复方甘草片", "甘草片"),
            ("注射用头孢曲松钠", "头孢曲松钠"),
            ("硫酸氢氯吡格雷片", "氯吡格雷片"),
            ("注射用甲泼尼龙琥珀酸钠", "甲泼尼龙琥珀酸钠"),
            ("阿莫西林胶囊", "阿莫西林胶囊"),
            ("盐酸", "盐酸"),  # nothing would be left
        ],
    )
    def test_salt_and_form_prefixes_are_taken_off(self, name, core):
        assert core_name(name) == core


class TestNameKeys:
    def test_pinyin_keys_are_kept_as_before(self):
        assert pinyin_keys("阿莫西林胶囊") == ("amoxilinjiaonang", "amxljn")
        assert pinyin_keys("维生素B12片") == ("weishengsub12pian", "wssb12p")

    def test_the_core_start_counts_as_the_start(self):
        name = "苯磺酸氨氯地平片"
        assert kinds_of(name, "aldp") == {KEY_INITIALS_START}
        assert kinds_of(name, "氨氯地平") == {KEY_NAME_START}
        assert kinds_of(name, "anlvdiping") == {KEY_PINYIN_START}
        assert kinds_of(name, "苯磺酸") == {KEY_NAME_START}

    def test_characters_and_syllables_anywhere_are_inside_keys(self):
        name = "阿莫西林胶囊"
        assert kinds_of(name, "西林") == {KEY_NAME_INSIDE}
        assert kinds_of(name, "xl") == {KEY_INITIALS_INSIDE}
        assert KEY_PINYIN_INSIDE in kinds_of(name, "xilin")
        assert kinds_of("布洛芬片", "洛芬") == {KEY_NAME_INSIDE}

    def test_pinyin_is_matched_from_a_syllable_not_from_inside_one(self):
        # "oxi" is inside amoxilin but starts no syllable
        assert not matches("oxi", "X1", "阿莫西林胶囊")
        assert matches("moxi", "X1", "阿莫西林胶囊")

    def test_a_key_found_from_the_start_is_not_repeated_as_inside(self):
        keys = name_keys("片片")
        assert (KEY_NAME_START, "片片") in keys and (KEY_NAME_INSIDE, "片") in keys
        assert len(keys) == len(set(keys))

    def test_codes_match_from_their_start_only(self):
        assert matches("xj01", "XJ01CAA040A001", "阿莫西林胶囊")
        assert not matches("caa040", "XJ01CAA040A001", "阿莫西林胶囊")


class TestAliases:
    def test_an_alias_is_found_by_characters_pinyin_and_initials(self):
        assert alias_keys("上感") == ("sg", "shanggan", "上感")

    def test_the_alias_file_is_read_with_its_header_and_comments(self):
        text = (
            "# a comment\nalias,list,code\n上感,diagnosis,J06.900\n\n诊疗费,item,110200005000000\n"
        )
        assert aliases_from_csv(text) == [
            ("diagnosis", "上感", "J06.900"),
            ("item", "诊疗费", "110200005000000"),
        ]

    @pytest.mark.parametrize(
        "text",
        [
            "alias,code\n上感,J06.900\n",
            "alias,list,code\n上感,drug,J06.900\n",
            "alias,list,code\n,item,X\n",
        ],
    )
    def test_a_bad_alias_file_is_refused(self, text):
        with pytest.raises(ValueError):
            aliases_from_csv(text)
