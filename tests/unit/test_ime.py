"""The pinyin input's character index (edge.domain.ime): the characters of the names given,
offered for a syllable or its start, the usual reading exactly first, then by how many
names contain them."""

from edge.domain.ime import MAX_CANDIDATES, build_index, common_characters

NAMES = ["阿莫西林胶囊", "西咪替丁片", "复方甘草片", "心脑康胶囊", "小儿感冒颗粒", "血塞通片"]


def chars(index, typed: str, limit: int = MAX_CANDIDATES) -> list[str]:
    return [entry.char for entry in index.candidates(typed, limit)]


def test_a_syllable_offers_the_characters_read_so_most_named_first():
    index = build_index([*NAMES, "西药", "西瓜霜"])
    # 西 reads xi; then 小 xiao and 心 xin (one name each); then what reads xi only
    # rarely: 胶 (jiao, xiao: in two names) and 血 (xue, xie: in one)
    assert chars(index, "xi") == ["西", "小", "心", "胶", "血"]
    assert chars(index, "lin") == ["林"]
    assert chars(index, "jiao") == ["胶"]


def test_the_start_of_a_syllable_offers_every_character_it_may_begin():
    index = build_index(NAMES)
    assert chars(index, "x") == ["西", "小", "心", "血", "胶"]  # 西 in two names; 胶 reads jiao


def test_a_character_counts_once_per_name_that_holds_it():
    index = build_index(["片片片", "片剂", "偏方"])
    assert [(e.char, e.names) for e in index.candidates("pian")] == [("片", 2), ("偏", 1)]


def test_the_limit_is_kept():
    index = build_index(NAMES)
    assert len(chars(index, "x", limit=2)) == 2
    many = build_index(["".join(chr(0x4E00 + i) for i in range(2000))])
    assert 0 < len(chars(many, "y")) <= MAX_CANDIDATES


def test_nothing_for_empty_unknown_or_not_pinyin():
    index = build_index([*NAMES, "ABC 123", "维生素C"])
    assert chars(index, "") == []
    assert chars(index, "zzz") == []
    assert chars(index, "xilin") == []  # one syllable at a time
    assert chars(index, "x1") == [] and chars(index, "西") == []
    assert all(e.char != "C" for e in index.entries)  # only Chinese characters


def test_u_umlaut_is_typed_as_v():
    assert chars(build_index(["复方氯化钠", "铝碳酸镁"]), "lv") == ["氯", "铝"]


def test_the_characters_in_common_use_are_gb2312_level_1():
    chars = common_characters()
    assert len(chars) == len(set(chars)) == 3755
    assert chars[0] == "啊" and chars[-1] == "座" and "村" in chars


def test_characters_of_also_come_after_every_named_one_in_their_order():
    index = build_index(["西林"], also=["希", "西", "喜"])
    assert [e.char for e in index.candidates("xi")] == ["西", "希", "喜"]
    assert [e.names for e in index.entries] == [1, 1, 0, 0]
