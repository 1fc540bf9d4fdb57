import copy
import json
from pathlib import Path

import pytest

from edge.adapters.sqlite_store import SqliteDeviceStore

pytest_plugins = [
    "hub_fixtures",  # the county hub's: hub_backend, hub, enrolled_device...
    "browser_support",  # the kiosk browser's: browser, page
    "console_support",  # the county office's desktop page: desk
]

EXAMPLE_POLICY = {
    "version": "2026.1",
    "class_b_prepay_ratio": "0.10",
    "benefits": {
        "resident": {
            "general": {"deductible": 0, "ratio": "0.55", "annual_cap": 40000},
            "chronic": {"deductible": 0, "ratio": "0.70", "annual_cap": 300000},
        },
        "employee": {
            "general": {"deductible": 30000, "ratio": "0.50", "annual_cap": 200000},
            "chronic": {"deductible": 0, "ratio": "0.70", "annual_cap": 500000},
        },
    },
    "assistance": {
        "extreme_poverty": {"ratio": "1.00", "annual_cap": 1000000},
        "low_income_guarantee": {"ratio": "0.70", "annual_cap": 500000},
    },
}


def item(code: str, price: str, item_class: str = "A", **extra) -> dict:
    return {
        "code": code,
        "name": f"药品{code}",
        "kind": "drug",
        "class": item_class,
        "price": price,
        **extra,
    }


def quote_doc(lines, catalog, person=None, accumulators=None, **visit) -> dict:
    """A quote document for an active resident aged 46 on 2026-11-22, general visit."""
    return {
        "policy": copy.deepcopy(EXAMPLE_POLICY),
        "catalog": catalog,
        "person": {
            "insurance_type": "resident",
            "gender": "M",
            "birth_date": "1980-05-01",
            "status": "active",
            "categories": [],
            "chronic_certs": [],
            **(person or {}),
        },
        "accumulators": {
            "deductible_used": 0,
            "fund_paid": 0,
            "assistance_paid": 0,
            **(accumulators or {}),
        },
        "visit": {
            "date": "2026-11-22",
            "visit_type": "general",
            "diagnoses": ["J06.900"],
            "lines": [{"code": c, "quantity": q} for c, q in lines],
            "use_personal_account": False,
            **visit,
        },
    }


def pytest_configure(config) -> None:
    # The hub scenarios' PostgreSQL runs carry it (tests/hub_fixtures.py), so that a run
    # can leave them out with -m "not postgresql", as `make test-dates` does.
    config.addinivalue_line(
        "markers", "postgresql: runs against the PostgreSQL server of tests/pg_server.py"
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "device"


@pytest.fixture
def fresh_store(data_dir: Path):
    store = SqliteDeviceStore.open(data_dir, create=True)
    yield store
    store.close()


@pytest.fixture
def demo_store(fresh_store):
    from clock import NOW

    from edge import demo

    list(demo.install(fresh_store, NOW))
    return fresh_store


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path
