"""The device store on real SQLite files: catalog import and search, policy, roster."""

import copy
import csv
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from clock import NOW
from conftest import EXAMPLE_POLICY, write_json

from edge.adapters.catalog_files import open_catalog_file
from edge.adapters.sqlite_store import SqliteDeviceStore, StoreError, migrations
from edge.domain.documents import CATALOG_CSV_COLUMNS
from edge.domain.model import Accumulators, Rejection, Visit, VisitLine
from edge.domain.records import ACCUMULATOR_FIELDS
from edge.domain.versions import version_order
from edge.services import quote_visit

ITEMS = [
    {
        "code": "XJ01CAA040A001",
        "name": "阿莫西林胶囊",
        "spec": "0.25g*24粒",
        "unit": "盒",
        "kind": "drug",
        "class": "A",
        "price": "9.80",
        "max_qty": "3",
    },
    {
        "code": "XJ01CAA040A002",
        "name": "阿莫西林克拉维酸钾片",
        "spec": "0.375g*12片",
        "unit": "盒",
        "kind": "drug",
        "class": "B",
        "price": "18.5",
        "payment_standard": "15",
        "self_prepay_ratio": "0.05",
    },
    {
        "code": "XC08CAN041A001",
        "name": "硝苯地平缓释片",
        "spec": "20mg*30片",
        "unit": "盒",
        "kind": "drug",
        "class": "A",
        "price": "0.0350",
        "chronic_only": "I10.x00;E11.900",
        "valid_from": "2020-01-01",
        "valid_to": "2030-12-31",
    },
    {
        "code": "AMX999",
        "name": "维生素C片",
        "spec": "100mg*100片",
        "unit": "瓶",
        "kind": "drug",
        "class": "C",
        "price": "3",
        "gender": "F",
        "min_age": "18",
        "max_age": "60",
    },
    {
        "code": "110200001000000",
        "name": "一般诊疗费",
        "spec": "",
        "unit": "次",
        "kind": "service",
        "class": "A",
        "price": "10",
    },
]


def write_catalog_csv(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CATALOG_CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def import_csv(store: SqliteDeviceStore, path: Path, version: str, encoding="utf-8-sig") -> int:
    return store.import_catalog(
        open_catalog_file(path, encoding).items, version, path.name, now=NOW
    )


@pytest.fixture
def catalog_store(fresh_store, tmp_path):
    import_csv(fresh_store, write_catalog_csv(tmp_path / "catalog.csv", ITEMS), "2026.11")
    return fresh_store


class TestDatabase:
    def test_the_database_is_durable_wal_with_full_sync(self, fresh_store):
        assert fresh_store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert fresh_store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL

    def test_migrations_run_once_and_reopening_keeps_the_data(self, catalog_store, data_dir):
        catalog_store.close()
        again = SqliteDeviceStore.open(data_dir)
        assert again.catalog_version() == "2026.11"
        names = [m.name for m in migrations.applied(again.db)]
        assert migrations.pending(again.db) == []
        assert len(names) == len(set(names)) >= 2
        again.close()

    def test_opening_a_directory_without_a_device_says_to_init(self, tmp_path):
        with pytest.raises(StoreError, match="clinic init"):
            SqliteDeviceStore.open(tmp_path / "nothing")

    def test_versions_compare_number_by_number(self):
        assert version_order("2026.10") > version_order("2026.9")
        assert version_order("2026.1.1") > version_order("2026.1")


class TestCatalogImport:
    def test_every_column_survives_the_round_trip(self, catalog_store):
        items = catalog_store.catalog_items(["XC08CAN041A001", "XJ01CAA040A002", "AMX999"])
        nifedipine = items["XC08CAN041A001"]
        assert nifedipine.price == Decimal("0.0350")
        assert nifedipine.chronic_only == ("I10.x00", "E11.900")
        assert (nifedipine.valid_from, nifedipine.valid_to) == (
            date(2020, 1, 1),
            date(2030, 12, 31),
        )
        clavulanate = items["XJ01CAA040A002"]
        assert (clavulanate.payment_standard, clavulanate.self_prepay_ratio) == (
            Decimal("15"),
            Decimal("0.05"),
        )
        vitamin = items["AMX999"]
        assert (vitamin.item_class, vitamin.gender, vitamin.min_age, vitamin.max_age) == (
            "C",
            "F",
            18,
            60,
        )

    def test_a_json_catalog_carries_its_version(self, fresh_store, tmp_path):
        items = [
            {k: v for k, v in row.items() if k not in ("chronic_only", "min_age", "max_age")}
            for row in ITEMS
        ]
        path = write_json(tmp_path / "c.json", {"version": "2027.1", "items": items})
        catalog_file = open_catalog_file(path)
        assert catalog_file.version == "2027.1"
        assert fresh_store.import_catalog(catalog_file.items, "2027.1", "c.json", now=NOW) == len(
            ITEMS
        )

    def test_an_older_or_equal_version_is_refused(self, catalog_store, tmp_path):
        path = write_catalog_csv(tmp_path / "old.csv", ITEMS[:1])
        for version in ("2026.11", "2026.9"):
            with pytest.raises(StoreError, match="roll back"):
                import_csv(catalog_store, path, version)
        assert len(catalog_store.search_catalog("x", 50)) == 3

    def test_a_bad_row_names_its_line_and_changes_nothing(self, catalog_store, tmp_path):
        rows = [*copy.deepcopy(ITEMS), {**ITEMS[0], "code": "NEW1", "price": "1,20"}]
        path = write_catalog_csv(tmp_path / "bad.csv", rows)
        with pytest.raises(Rejection, match=r"line 7\.price"):
            import_csv(catalog_store, path, "2026.12")
        assert catalog_store.catalog_version() == "2026.11"
        assert catalog_store.catalog_items(["XJ01CAA040A001", "NEW1"]).keys() == {"XJ01CAA040A001"}

    def test_a_repeated_code_is_refused(self, catalog_store, tmp_path):
        path = write_catalog_csv(tmp_path / "dup.csv", [ITEMS[0], ITEMS[0]])
        with pytest.raises(StoreError, match="repeats"):
            import_csv(catalog_store, path, "2026.12")
        assert catalog_store.catalog_version() == "2026.11"

    def test_a_gbk_file_is_refused_with_advice_and_read_when_named(self, fresh_store, tmp_path):
        path = write_catalog_csv(tmp_path / "gbk.csv", ITEMS, encoding="gb18030")
        with pytest.raises(Rejection, match="gb18030"):
            import_csv(fresh_store, path, "1")
        assert import_csv(fresh_store, path, "1", encoding="gb18030") == len(ITEMS)
        assert fresh_store.search_catalog("amxl")[0].name == "阿莫西林胶囊"

    def test_a_file_without_the_required_columns_is_refused(self, fresh_store, tmp_path):
        path = tmp_path / "x.csv"
        path.write_text("code,name\nA,B\n", encoding="utf-8")
        with pytest.raises(Rejection, match="kind, class, price"):
            import_csv(fresh_store, path, "1")


class TestCatalogSearch:
    def names(self, store, query):
        return [hit.name for hit in store.search_catalog(query)]

    def test_pinyin_initials_find_the_drug(self, catalog_store):
        assert self.names(catalog_store, "amxl") == ["阿莫西林胶囊", "阿莫西林克拉维酸钾片"]

    def test_full_pinyin_chinese_name_and_code_prefix_find_it_too(self, catalog_store):
        assert self.names(catalog_store, "xiaobendi") == ["硝苯地平缓释片"]
        assert self.names(catalog_store, "硝苯") == ["硝苯地平缓释片"]
        assert self.names(catalog_store, "xc08") == ["硝苯地平缓释片"]
        assert self.names(catalog_store, "XJ01CAA040A002") == ["阿莫西林克拉维酸钾片"]

    def test_a_code_match_ranks_before_a_pinyin_match(self, catalog_store):
        hits = catalog_store.search_catalog("amx")
        assert [(h.code, h.matched) for h in hits] == [
            ("AMX999", "code"),
            ("XJ01CAA040A001", "initials"),
            ("XJ01CAA040A002", "initials"),
        ]

    def test_the_closest_match_comes_first_within_a_kind(self, catalog_store):
        assert self.names(catalog_store, "amxljn")[0] == "阿莫西林胶囊"

    def test_an_item_matching_twice_is_listed_once(self, catalog_store):
        assert self.names(catalog_store, "y") == ["一般诊疗费"]

    def test_queries_are_case_and_punctuation_insensitive(self, catalog_store):
        assert self.names(catalog_store, " AMXL ") == self.names(catalog_store, "amxl")

    @pytest.mark.parametrize("query", ["", "   ", "%", "zzzz", "'; DROP TABLE x; --", "\U0010ffff"])
    def test_odd_queries_find_nothing_and_break_nothing(self, catalog_store, query):
        assert catalog_store.search_catalog(query) == []

    def test_the_limit_is_respected(self, catalog_store):
        assert len(catalog_store.search_catalog("x", limit=2)) == 2


ROSTER = {
    "version": "2026.11.1",
    "persons": [
        {
            "insured_id": "32011500000001",
            "card_no": "A32011501",
            "name": "王建国",
            "id_number_masked": "320115********1234",
            "insurance_type": "employee",
            "gender": "M",
            "birth_date": "1970-03-04",
            "status": "active",
            "categories": [],
            "chronic_certs": [
                {"disease_code": "I10.x00", "valid_from": "2025-01-01", "valid_to": "2027-12-31"}
            ],
            "account_balance": 48000,
            "region": "320115",
            "card_expiry": "2031-06-30",
            "accumulators": {
                "2026": {
                    "general": {"deductible_used": 12000, "fund_paid": 0},
                    "assistance_paid": 300,
                }
            },
        },
    ],
}


@pytest.fixture
def roster_store(catalog_store):
    catalog_store.import_policy(copy.deepcopy(EXAMPLE_POLICY), now=NOW)
    catalog_store.import_roster(copy.deepcopy(ROSTER), now=NOW)
    return catalog_store


class TestPolicyAndRoster:
    def test_the_installed_policy_is_the_current_one(self, roster_store):
        newer = {
            **copy.deepcopy(EXAMPLE_POLICY),
            "version": "2026.2",
            "class_b_prepay_ratio": "0.2",
        }
        roster_store.import_policy(newer, now=NOW)
        assert roster_store.current_policy().class_b_prepay_ratio == Decimal("0.2")
        with pytest.raises(StoreError, match="roll back"):
            roster_store.import_policy(copy.deepcopy(EXAMPLE_POLICY), now=NOW)

    def test_a_malformed_policy_is_refused_naming_the_field(self, fresh_store):
        broken = copy.deepcopy(EXAMPLE_POLICY)
        broken["benefits"]["resident"]["general"]["ratio"] = 0.55
        with pytest.raises(Rejection, match=r"policy\.benefits\.resident\.general\.ratio"):
            fresh_store.import_policy(broken, now=NOW)
        assert fresh_store.policy_version() is None

    def test_a_person_reads_back_with_accumulators(self, roster_store):
        entry = roster_store.insured_person("32011500000001")
        assert entry.name == "王建国"
        assert entry.person.account_balance == 48000
        assert entry.person.chronic_certs[0].valid_to == date(2027, 12, 31)
        day = date(2026, 11, 22)
        assert roster_store.accumulators("32011500000001", day, "general") == Accumulators(
            12000, 0, 300
        )
        assert roster_store.accumulators("32011500000001", day, "chronic") == Accumulators(
            0, 0, 300
        )
        next_year = date(2027, 1, 5)
        assert roster_store.accumulators("32011500000001", next_year, "general") == Accumulators()

    def test_a_newer_roster_never_lowers_what_this_device_has_counted(self, roster_store):
        day = date(2026, 11, 22)
        figures = {
            **dict.fromkeys(ACCUMULATOR_FIELDS, 0),
            "deductible_used": 20000, "fund_paid": 500, "assistance_paid": 900,
            "account_balance": 48000, "supplements_paid": {},
        }  # fmt: skip
        roster_store.set_accumulators("32011500000001", day, "general", figures)
        newer = copy.deepcopy(ROSTER)
        newer["version"] = "2026.11.2"
        newer["persons"][0]["accumulators"]["2026"]["general"]["fund_paid"] = 700
        roster_store.import_roster(newer, now=NOW)
        assert roster_store.accumulators("32011500000001", day, "general") == Accumulators(
            20000, 700, 900
        )

    def test_a_full_id_number_is_never_stored(self, roster_store):
        leaked = copy.deepcopy(ROSTER)
        leaked["version"] = "2026.11.2"
        leaked["persons"][0]["id_number_masked"] = "320115197003041234"
        with pytest.raises(Rejection, match="masked"):
            roster_store.import_roster(leaked, now=NOW)
        assert roster_store.insured_person("32011500000001").id_number_masked.count("*") == 8

    def test_a_repeated_card_number_is_refused(self, fresh_store):
        doubled = copy.deepcopy(ROSTER)
        doubled["persons"].append({**doubled["persons"][0], "insured_id": "32011500000002"})
        with pytest.raises(Rejection, match="repeats 'card:A32011501'"):
            fresh_store.import_roster(doubled, now=NOW)
        assert fresh_store.roster_version() is None

    def test_a_visit_is_quoted_from_what_the_store_holds(self, roster_store):
        visit = Visit(
            date(2026, 11, 22),
            "general",
            ("J06.900",),
            (VisitLine("XJ01CAA040A001", "2"), VisitLine("110200001000000", "1")),
        )
        result = quote_visit(roster_store, "32011500000001", visit)
        # 1960 + 1000 = 2960 inside scope, all of it under the 18000 deductible left
        assert (result.total, result.deductible_applied, result.fund) == (2960, 2960, 0)
        assert result.accumulators_after.assistance_paid == 300

    def test_quoting_for_someone_not_in_the_roster_is_refused(self, roster_store):
        visit = Visit(date(2026, 11, 22), "general", (), (VisitLine("XJ01CAA040A001", "1"),))
        with pytest.raises(Rejection, match="not in the roster"):
            quote_visit(roster_store, "nobody", visit)
