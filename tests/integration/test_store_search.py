"""Search as a clinic HIS searches, on a real SQLite file with the demo county installed:
characters and pinyin anywhere in a name, the county's aliases, salt and form prefixes
ignored for ranking, what the clinic settles most and lately first; bundles (组套)."""

import gzip
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from clock import NOW
from web_support import make_demo_device

from edge import demo, services
from edge.adapters.catalog_files import read_diagnoses
from edge.adapters.sqlite_store import DATABASE_FILE, SqliteDeviceStore, StoreError
from edge.domain.model import Visit, VisitLine

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "device-2026-11"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("search") / "device"
    make_demo_device(data_dir)
    store = SqliteDeviceStore.open(data_dir)
    store.load_diagnoses(read_diagnoses(demo.diagnoses_file()))
    store.close()
    return data_dir


@pytest.fixture
def data_dir(template, tmp_path) -> Path:
    target = tmp_path / "device"
    shutil.copytree(template, target)
    return target


@pytest.fixture
def store(data_dir):
    store = SqliteDeviceStore.open(data_dir)
    yield store
    store.close()


def names(store, query, limit=20):
    return [hit.name for hit in store.search_catalog(query, limit)]


def diagnoses(store, query):
    return [hit.name for hit in store.search_diagnoses(query)]


class TestItemsAnywhere:
    def test_initials_and_characters_find_a_drug_behind_its_salt(self, store):
        for query in ("aldp", "氨氯地平", "anlvdiping"):
            assert names(store, query)[0] == "苯磺酸氨氯地平片", query

    def test_characters_inside_a_name_find_it(self, store):
        assert set(names(store, "二甲双胍")) == {"盐酸二甲双胍片", "盐酸二甲双胍缓释片"}
        assert "阿莫西林胶囊" in names(store, "西林")
        assert {"布洛芬片", "洛索洛芬钠片"} <= set(names(store, "洛芬"))

    def test_pinyin_and_initials_from_any_syllable_find_it(self, store):
        assert "阿莫西林胶囊" in names(store, "xilin")
        assert "阿莫西林胶囊" in names(store, "xljn")
        hit = next(h for h in store.search_catalog("xilin") if h.name == "阿莫西林胶囊")
        assert (hit.matched, hit.anywhere) == ("pinyin", True)

    def test_a_match_from_the_start_ranks_before_one_from_inside(self, store):
        hits = store.search_catalog("氨氯地平")
        assert [h.name for h in hits[:2]] == ["苯磺酸氨氯地平片"] * 2
        assert not hits[0].anywhere
        assert all(h.anywhere for h in hits[2:])  # 苯磺酸左旋氨氯地平片, 缬沙坦氨氯地平片

    def test_prefixes_do_not_count_against_a_name(self, store):
        # 盐酸二甲双胍片 (core 二甲双胍片, 5 characters) before 盐酸二甲双胍缓释片
        assert names(store, "ejsg")[0] == "盐酸二甲双胍片"

    def test_an_alias_of_the_county_finds_its_item_first(self, store):
        hits = store.search_catalog("诊疗费")
        assert (hits[0].code, hits[0].matched) == ("110200005000000", "alias")
        assert store.search_catalog("xcg")[0].name == "血细胞分析"  # 血常规

    def test_odd_queries_find_nothing(self, store):
        for query in ("", "%", "龘龘", "'; DROP TABLE catalog_key; --"):
            assert store.search_catalog(query) == []


class TestDiagnosesAnywhere:
    def test_characters_inside_a_name_find_the_diagnosis(self, store):
        assert "急性鼻咽炎[感冒]" in diagnoses(store, "感冒")
        assert diagnoses(store, "胃炎")[:3] == ["胃炎", "急性胃炎", "慢性胃炎"]

    def test_aliases_find_their_diagnosis(self, store):
        assert diagnoses(store, "上感") == ["急性上呼吸道感染"]
        assert diagnoses(store, "sg")[0] == "急性上呼吸道感染"
        assert diagnoses(store, "糖尿病")[0] == "2型糖尿病"
        assert diagnoses(store, "高血压")[0] == "高血压"
        assert store.search_diagnoses("上感")[0].matched == "alias"

    def test_a_newer_alias_list_replaces_the_old_and_an_older_one_is_refused(self, store):
        rows = [("diagnosis", "咽痛", "J02.900")]
        store.import_aliases(rows, "2026.12.1", "aliases.csv", now=NOW)
        assert diagnoses(store, "咽痛") == ["急性咽炎"] and diagnoses(store, "上感") == []
        with pytest.raises(StoreError, match="roll back"):
            store.import_aliases(rows, "2026.11.1", "aliases.csv", now=NOW)


def settle(store, data_dir, lines, codes=("J06.900",), when=NOW, insured="32011500000001"):
    identity = services.load_identity(store, data_dir)
    visit = Visit(when.date(), "general", tuple(codes),
                  tuple(VisitLine(code, qty) for code, qty in lines))  # fmt: skip
    return services.settle_visit(
        store, identity, insured_id=insured, visit=visit, operator="doc01", now=when
    )


class TestFrequentFirst:
    def test_what_the_clinic_settles_comes_first(self, store, data_dir):
        before = store.search_catalog("an")
        assert before[0].name != "复方氨酚烷胺片"
        settle(store, data_dir, [("110200005000000", "1"), ("XR05XAA202A001", "1")])
        hits = store.search_catalog("an")
        assert (hits[0].code, hits[0].matched) == ("XR05XAA202A001", "pick")
        assert store.search_diagnoses("急性")[0].name == "急性上呼吸道感染"
        # a pick comes first only where the query finds it
        assert all(h.code != "XR05XAA202A001" for h in store.search_catalog("amxl"))

    def test_more_settled_comes_before_less_and_recent_before_old(self, store, data_dir):
        old = NOW - timedelta(days=120)
        for insured in ("32011500000001", "32011500000005", "32011500000017"):
            settle(store, data_dir, [("XJ01CAA040A001", "1")], when=old, insured=insured)
        settle(store, data_dir, [("XJ01CAA040A002", "1")], insured="32011500000022")
        picks = dict(store.picks())
        # three settlements four half-lives ago weigh less than one today
        assert picks["XJ01CAA040A002"] == 1.0 and picks["XJ01CAA040A001"] == pytest.approx(
            3 / 16, abs=1e-3
        )
        codes = [h.code for h in store.search_catalog("amxl") if h.matched == "pick"]
        assert codes == ["XJ01CAA040A002", "XJ01CAA040A001"]

    def test_another_connection_sees_the_new_picks(self, store, data_dir):
        other = SqliteDeviceStore.open(data_dir)
        try:
            assert other.search_catalog("an")[0].matched != "pick"
            settle(store, data_dir, [("XR05XAA202A001", "1")])
            assert other.search_catalog("an")[0].code == "XR05XAA202A001"
        finally:
            other.close()


class TestBundles:
    def test_the_demo_county_ships_bundles(self, store):
        county = [b for b in store.bundles() if b.source == "county"]
        assert len(county) == 3
        cold = next(b for b in county if b.name == "感冒")
        assert cold.lines[0] == ("110200005000000", "1") and cold.diagnoses == ("J06.900",)

    def test_a_doctor_saves_replaces_and_deletes_a_bundle(self, store):
        lines = [("110200005000000", "1"), ("XJ01CAA040A001", "2")]
        first = store.save_bundle("咳嗽", lines, ["J20.900"], created_by="doc01", now=NOW)
        assert store.bundle(first).lines == tuple(lines)
        second = store.save_bundle("咳嗽", lines[:1], [], created_by="doc01", now=NOW)
        assert second == first and store.bundle(first).lines == tuple(lines[:1])
        assert [b.name for b in store.bundles()][-1] == "咳嗽"  # the county's come first
        assert store.delete_bundle(second) and store.bundle(second) is None

    def test_a_county_bundle_is_neither_replaced_nor_deleted_by_the_clinic(self, store):
        cold = next(b for b in store.bundles() if b.name == "感冒")
        with pytest.raises(StoreError, match="county"):
            store.save_bundle("感冒", [("110200005000000", "1")], created_by="doc01", now=NOW)
        assert not store.delete_bundle(cold.bundle_id)

    @pytest.mark.parametrize(("name", "lines"), [("", [("A", "1")]), ("x" * 41, [("A", "1")]),
                                                 ("空", [])])  # fmt: skip
    def test_a_bundle_needs_a_name_and_lines(self, store, name, lines):
        with pytest.raises(StoreError):
            store.save_bundle(name, lines, created_by="doc01", now=NOW)


def test_an_old_device_is_keyed_anew_when_it_migrates(tmp_path):
    data_dir = tmp_path / "device"
    data_dir.mkdir()
    with gzip.open(FIXTURE / "clinic.db.gz") as packed, open(data_dir / DATABASE_FILE, "wb") as db:
        shutil.copyfileobj(packed, db)
    store = SqliteDeviceStore.open(data_dir)
    try:
        assert names(store, "aldp")[0] == "苯磺酸氨氯地平片"
        assert "阿莫西林胶囊" in names(store, "西林")
        assert "急性胃炎" in diagnoses(store, "胃炎")
    finally:
        store.close()
