"""The county console's listing pages stay bounded however large the fleet grows: the
fleet, the devices (enrollment codes), one device's records, alarms and differences, the
county's alarms and differences, each a page of rows with links to the pages beside it,
read on indexes. On each hub store (`hub_backend`); the rows are written through the
store (the hub's own ingest is tested elsewhere), the pages are read through the app."""

import re
from datetime import timedelta

import pytest
from sync_helpers import NOW, hub_store

from sync.hub import console, console_auth
from sync.hub.adapters.sqlite import SqliteHubStore
from sync.hub.reconcile import NEEDS_REVIEW
from sync.protocol import iso

PASSWORD = "correct horse 42"
TOWNSHIP = "秣陵街道"
OTHER = "谷里街道"
SLOTS = 130  # in each of the two townships: more than one fleet page
DEVICE_ROWS = 120  # records, alarms and differences of the busy device
# The most a listing page may weigh: 100 fleet rows, or 50 rows of three lists.
PAGE_BYTES = 250_000
# A heartbeat far larger than any page may show (ingest caps it too, elsewhere).
HUGE = "x" * 300_000


def fake_record(device_id: str, seq: int) -> dict:
    return {
        "device_id": device_id,
        "seq": seq,
        "hash": f"{seq:064x}",
        "kind": "settlement",
        "tx_id": f"tx-{seq:05d}",
        "created_at": iso(NOW + timedelta(minutes=seq)),
        "body": {"note": "written through the store"},
    }


@pytest.fixture
def county(hub, hub_dir):
    """The hub with an admin, a coordinator of 秣陵街道, SLOTS enrolled slots in each of
    two townships (one device of each with a huge heartbeat and a flood of one alarm
    code), and a busy device in 秣陵街道 with DEVICE_ROWS records, alarms and differences."""
    at = iso(NOW)
    with hub_store(hub_dir) as store, store.unit_of_work():
        console_auth.add_user(store, "admin", PASSWORD, "admin", None, NOW)
        console_auth.add_user(store, "li", PASSWORD, "coordinator", TOWNSHIP, NOW)
        for township, prefix in ((TOWNSHIP, "ML"), (OTHER, "GL")):
            for index in range(SLOTS):
                code = f"{prefix}-{index:03d}"
                slot_id = store.add_slot(code, township, f"hash-{code}", iso(NOW), at)
                store.enroll_slot(slot_id, f"dev-{code}", "key", at)
            noisy = f"dev-{prefix}-001"
            heartbeat = {"versions": {f"k{i}": HUGE for i in range(50)}, "extra": HUGE}
            store.record_contact(noisy, at, heartbeat, 0)
            for seq in range(1, 301):
                store.raise_alarm(noisy, "CHAIN_BROKEN", seq, "flood", at)
        busy = "dev-ML-000"
        store.add_records(busy, [fake_record(busy, s) for s in range(1, DEVICE_ROWS + 1)], at)
        for seq in range(1, DEVICE_ROWS + 1):
            store.raise_alarm(busy, "HASH_MISMATCH", seq, f"alarm {seq}", at)
            code = NEEDS_REVIEW if seq % 2 else "SETTLEMENT_DIFFERS"
            store.add_reconciliation_item(busy, seq, f"tx-{seq:05d}", code, None, {}, at)
        store.add_reconciliation_item("dev-GL-000", 1, "tx-gl", "SETTLEMENT_DIFFERS", None, {}, at)
    return hub


def signed_in(hub, username: str):
    client = hub.app.test_client()
    page = client.get("/console/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post(
        "/console/login", data={"username": username, "password": PASSWORD, "csrf_token": token}
    )
    assert answer.status_code == 302
    return client


def page(client, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, path
    html = answer.get_data(as_text=True)
    assert len(html.encode()) < PAGE_BYTES, (path, len(html.encode()))
    return html


def links(html: str) -> dict[str, str]:
    """The pager's links by rel (prev, next), unescaped."""
    return {
        rel: href.replace("&amp;", "&")
        for href, rel in re.findall(r'<a href="([^"]+)" rel="(prev|next)">', html)
    }


# A fleet row's clinic code: the cell after the township's.
ROW = r"<td>[^<]*</td><td>([^<]+)</td>\s*<td>"


def cells(html: str, pattern: str) -> list[str]:
    return re.findall(pattern, html)


def test_the_fleet_is_shown_a_page_at_a_time_in_township_order(county, hub_dir):
    with hub_store(hub_dir) as store:
        every = [s.clinic_code for s in store.slots()]
    client = signed_in(county, "admin")
    first = page(client, "/console/")
    assert cells(first, ROW) == every[: console.FLEET_PAGE]
    assert "下一页" in first and "prev" not in links(first)
    second = page(client, links(first)["next"])
    assert cells(second, ROW) == every[console.FLEET_PAGE : 2 * console.FLEET_PAGE]
    assert links(second)["prev"] == "/console/" and "第 2 页" in second
    # The huge heartbeat shows as short versions; the flood of one code as one code.
    assert HUGE not in first and HUGE[:200] not in second
    assert second.count("CHAIN_BROKEN") + first.count("CHAIN_BROKEN") == 2
    # A page beyond the last is empty, not an error; nonsense is page 1.
    assert "dev-" not in page(client, "/console/?page=99999")
    assert cells(page(client, "/console/?page=-3"), ROW) == every[: console.FLEET_PAGE]


def test_a_township_s_fleet_pages_keep_its_filter(county):
    client = signed_in(county, "admin")
    first = page(client, f"/console/?township={OTHER}")
    second = page(client, links(first)["next"])
    codes = cells(first + second, ROW)
    assert codes == [f"GL-{i:03d}" for i in range(SLOTS)]
    assert "next" not in links(second)


def test_a_device_page_shows_its_records_alarms_and_differences_a_page_each(county):
    client = signed_in(county, "admin")
    first = page(client, "/console/devices/dev-ML-000")
    seqs = cells(first, r"<td class=\"num\">(\d+)</td><td>settlement</td>")
    assert seqs == [str(s) for s in range(DEVICE_ROWS, DEVICE_ROWS - console.LIST_PAGE, -1)]
    assert first.count("HASH_MISMATCH") == console.LIST_PAGE  # the newest alarms
    assert f"alarm {DEVICE_ROWS}<" in first and "alarm 1<" not in first
    assert first.count("records=2") == 1 and first.count("alarms=2") == 1
    assert first.count("items=2") == 1
    second = page(client, "/console/devices/dev-ML-000?records=2")
    seqs = cells(second, r"<td class=\"num\">(\d+)</td><td>settlement</td>")
    assert seqs == [str(s) for s in range(DEVICE_ROWS - console.LIST_PAGE, 20, -1)]
    assert "上一页" in second
    last = page(client, "/console/devices/dev-ML-000?records=3&alarms=3")
    assert cells(last, r"<td class=\"num\">(\d+)</td><td>settlement</td>")[-1] == "1"
    assert "alarm 1<" in last and "records=4" not in last
    noisy = page(client, "/console/devices/dev-ML-001")
    assert HUGE[: console.HEARTBEAT_SHOWN] not in noisy and "…" in noisy


def test_the_county_s_alarms_and_differences_are_paged_and_kept_to_a_township(county):
    admin = signed_in(county, "admin")
    alarms = page(admin, "/console/alarms")
    assert alarms.count('<td class="alarm">') == console.LIST_PAGE
    assert f"alarm {DEVICE_ROWS}<" in alarms  # the newest first
    coordinator = signed_in(county, "li")
    pages = [page(coordinator, "/console/alarms")]
    while "next" in links(pages[-1]):
        pages.append(page(coordinator, links(pages[-1])["next"]))
    theirs = "".join(pages)
    assert theirs.count('<td class="alarm">') == 300 + DEVICE_ROWS  # 秣陵街道's: all of them
    assert "dev-GL-" not in theirs and "dev-ML-001" in theirs and "alarm 1<" in theirs
    differences = page(coordinator, "/console/reconciliation")
    assert differences.count("<td>SETTLEMENT_DIFFERS</td>") == console.LIST_PAGE
    rest = page(coordinator, links(differences)["next"])
    assert rest.count("<td>SETTLEMENT_DIFFERS</td>") == DEVICE_ROWS // 2 - console.LIST_PAGE
    assert "<td>NEEDS_REVIEW</td>" not in differences + rest and "dev-GL-" not in differences
    reviews = page(coordinator, "/console/reconciliation?reviews=1")
    assert reviews.count("<td>NEEDS_REVIEW</td>") == console.LIST_PAGE // 2
    assert "reviews=1" in links(reviews)["next"]
    other = page(admin, f"/console/reconciliation?township={OTHER}")
    assert "<td>dev-GL-000</td>" in other and "dev-ML-" not in other


def test_the_devices_page_lists_slots_a_page_at_a_time(county, hub_dir):
    with hub_store(hub_dir) as store:
        every = [s.clinic_code for s in store.slots()]
    client = signed_in(county, "admin")
    first = page(client, "/console/admin/devices")
    rows = cells(first, r'<tr><td class="num">\d+</td><td>[^<]*</td><td>([^<]+)</td>')
    assert rows == every[: console.FLEET_PAGE]
    second = page(client, links(first)["next"])
    rows = cells(second, r'<tr><td class="num">\d+</td><td>[^<]*</td><td>([^<]+)</td>')
    assert rows == every[console.FLEET_PAGE : 2 * console.FLEET_PAGE]


@pytest.mark.parametrize("hub_backend", ["sqlite"], indirect=True)
def test_the_listing_queries_read_indexes(county, hub_dir):
    """SQLite's plan for each listing: on an index, never a scan of the whole table."""
    with hub_store(hub_dir) as store:
        assert isinstance(store, SqliteHubStore)
        plans = {
            "fleet": ("SELECT slot_id FROM slot WHERE township = ? ORDER BY township, slot_id"
                      " LIMIT 10", ["x"]),
            "device alarms": ("SELECT * FROM alarm WHERE device_id = ? ORDER BY alarm_id DESC"
                              " LIMIT 10", ["x"]),
            "open codes": ("SELECT DISTINCT device_id, code FROM alarm WHERE cleared_at IS NULL"
                           " AND device_id IN (?, ?)", ["x", "y"]),
            "device items": ("SELECT * FROM reconciliation_item WHERE device_id = ?"
                             " ORDER BY item_id DESC LIMIT 10", ["x"]),
            "differences": ("SELECT device_id, count(*) FROM reconciliation_item WHERE code != ?"
                            " AND device_id IN (?, ?) GROUP BY device_id", ["c", "x", "y"]),
            "records": ("SELECT seq FROM record WHERE device_id = ? ORDER BY seq DESC LIMIT 10",
                        ["x"]),
        }  # fmt: skip
        for name, (sql, params) in plans.items():
            plan = " ".join(
                row[-1] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params)
            )
            assert "INDEX" in plan and "TEMP B-TREE" not in plan, (name, plan)
