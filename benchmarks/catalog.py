"""Sections `catalog_import` (the real CLI, in a child process), `catalog_search` and
`catalog_import_settling` (settle waits while a 10^6-item catalog goes in)."""

import dataclasses
import random
import sqlite3
import subprocess
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

from pypinyin import lazy_pinyin

from benchmarks.catalog_data import GeneratedCatalog, write_catalog_csv
from benchmarks.context import BenchContext
from benchmarks.measure import ChildRun, run_child, summarize_ns, target
from edge.adapters.sqlite_store import (
    _SEARCH_SQL,
    DATABASE_FILE,
    SEARCH_LIMIT,
    SqliteDeviceStore,
    prefix_range,
)
from edge.domain.search_keys import matches, pinyin_keys, search_key

CATALOG_VERSION = "2026.1"
IMPORT_TARGET_S = 60.0
IMPORT_RSS_TARGET_MB = 200.0
SEARCH_P99_TARGET_MS = 10.0
SEARCH_FLOOR_RATIO_TARGET = 2.0

# Queries per kind in the search mix (300 in all): from the start of a name, and from
# inside it (characters, a syllable's pinyin or initials anywhere: 西林, xilin, xl).
QUERY_MIX = {
    "initials": 40, "pinyin": 30, "code": 30, "name": 40, "miss": 30,
    "name_inside": 50, "pinyin_inside": 40, "initials_inside": 40,
}  # fmt: skip
PICKS = 300  # codes the clinic has settled before (frequent and recent first in search)


def catalog_csv(ctx: BenchContext) -> GeneratedCatalog:
    """The generated catalog file for this run, written on first use."""
    if "catalog_csv" not in ctx.shared:
        path = ctx.workdir / f"catalog-{ctx.items}.csv"
        ctx.shared["catalog_csv"] = write_catalog_csv(path, ctx.items, ctx.seed)
    return ctx.shared["catalog_csv"]


def imported_data_dir(ctx: BenchContext) -> Path:
    """A device data directory holding the generated catalog, imported on first use."""
    if "catalog_data_dir" not in ctx.shared:
        _import_with_cli(ctx)
    return ctx.shared["catalog_data_dir"]


def _import_with_cli(ctx: BenchContext) -> tuple[ChildRun, ChildRun]:
    generated = catalog_csv(ctx)
    data_dir = ctx.workdir / "device"
    clinic = ctx.clinic_command()
    init = run_child([*clinic, "init", "--data-dir", str(data_dir)]).check()
    run = run_child(
        [*clinic, "catalog", "import", str(generated.path), "--version", CATALOG_VERSION,
         "--data-dir", str(data_dir)]
    ).check()  # fmt: skip
    expected = f"catalog {CATALOG_VERSION}: {generated.count} items installed"
    if expected not in run.stdout:
        raise RuntimeError(f"unexpected import output: {run.stdout!r}")
    ctx.shared["catalog_data_dir"] = data_dir
    return init, run


def bench_catalog_import(ctx: BenchContext) -> dict:
    """`clinic catalog import FILE` of the generated CSV: wall clock and its own peak RSS."""
    generated = catalog_csv(ctx)
    init, run = _import_with_cli(ctx)
    database = ctx.shared["catalog_data_dir"] / DATABASE_FILE
    size_mb = sum(p.stat().st_size for p in database.parent.glob(DATABASE_FILE + "*")) / 2**20
    return {
        "items": generated.count,
        "csv_mb": round(generated.size_bytes / 2**20, 1),
        "csv_generation_s": round(generated.seconds, 2),
        "import_wall_s": round(run.wall_seconds, 2),
        "import_user_s": round(run.user_seconds, 2),
        "import_system_s": round(run.system_seconds, 2),
        "import_items_per_s": round(generated.count / run.wall_seconds),
        "import_peak_rss_mb": round(run.max_rss_mb, 1),
        "init_wall_s": round(init.wall_seconds, 2),
        "init_peak_rss_mb": round(init.max_rss_mb, 1),  # the CLI's baseline footprint
        "database_mb": round(size_mb, 1),
        "targets": {
            "import_wall_s": target(
                run.wall_seconds, IMPORT_TARGET_S, "s", "clinic catalog import wall clock"
            ),
            "import_peak_rss_mb": target(
                run.max_rss_mb, IMPORT_RSS_TARGET_MB, "MB", "clinic catalog import peak RSS"
            ),
        },
        "summary": [
            f"{generated.count:,} items ({generated.size_bytes / 2**20:.1f} MB CSV, "
            f"generated in {generated.seconds:.1f} s)",
            f"clinic catalog import: {run.wall_seconds:.1f} s wall "
            f"({run.user_seconds:.1f} s user, {run.system_seconds:.1f} s sys), "
            f"{generated.count / run.wall_seconds:,.0f} items/s, "
            f"peak RSS {run.max_rss_mb:.0f} MB (clinic init: {init.max_rss_mb:.0f} MB), "
            f"database {size_mb:.0f} MB",
        ],
    }


def search_queries(sample: tuple[tuple[str, str], ...], seed: int) -> list[tuple[str, str]]:
    """(kind, query) pairs as a clerk types them, drawn from real catalog rows."""
    rng = random.Random(seed)
    rows = [(code, name, *pinyin_keys(name)) for code, name in sample]

    def initials() -> str:
        _, _, _, keys = rng.choice(rows)
        return keys[: rng.randint(1, 6)]

    def pinyin() -> str:
        _, _, full, _ = rng.choice(rows)
        return full[: rng.randint(2, 12)]

    def code() -> str:
        text = rng.choice(rows)[0][: rng.randint(1, 8)]
        return text if rng.random() < 0.5 else text.lower()

    def name() -> str:
        return rng.choice(rows)[1][: rng.randint(1, 3)]

    def inside(text: str, most: int) -> str:
        start = rng.randint(1, max(1, len(text) - 1))
        return text[start : start + rng.randint(2, most)]

    def name_inside() -> str:
        return inside(rng.choice(rows)[1], 3)

    def pinyin_inside() -> str:
        syllables = lazy_pinyin(rng.choice(rows)[1])
        start = rng.randint(1, max(1, len(syllables) - 1))
        return "".join(syllables[start:])[: rng.randint(2, 10)]

    def initials_inside() -> str:
        return inside(rng.choice(rows)[3], 4)

    def miss() -> str:
        # No pinyin syllable starts with i, u or v; codes start with X; 龘 is in no name.
        return rng.choice(
            (
                rng.choice("iuv") + "".join(rng.choices("abcdefghz", k=rng.randint(1, 6))),
                "Y" + "".join(rng.choices("0123456789", k=rng.randint(2, 6))),
                "龘" + rng.choice("药片丸"),
            )
        )

    makers = {
        "initials": initials, "pinyin": pinyin, "code": code, "name": name, "miss": miss,
        "name_inside": name_inside, "pinyin_inside": pinyin_inside,
        "initials_inside": initials_inside,
    }  # fmt: skip
    queries: list[tuple[str, str]] = []
    seen: set[str] = set()
    for kind, wanted in QUERY_MIX.items():
        found = 0
        for _ in range(wanted * 20):
            query = makers[kind]()
            if query and query not in seen:
                seen.add(query)
                queries.append((kind, query))
                found += 1
                if found == wanted:
                    break
    return queries


def seed_picks(data_dir: Path, sample: tuple[tuple[str, str], ...], seed: int) -> list:
    """A clinic's history: PICKS sampled codes settled before, with scores as a year of
    settling leaves them. Returns (code, name) best first, as search ranks them."""
    rng = random.Random(seed + 1)
    chosen = rng.sample(list(sample), min(PICKS, len(sample)))
    scored = sorted(
        ((code, name, round(rng.paretovariate(1.2), 3)) for code, name in chosen),
        key=lambda row: (-row[2], row[0]),
    )
    conn = sqlite3.connect(data_dir / DATABASE_FILE)
    try:
        with conn:
            conn.execute("DELETE FROM search_pick")
            conn.executemany(
                "INSERT INTO search_pick VALUES ('item', ?, ?, '2026-11-22')",
                [(code, score) for code, _, score in scored],
            )
    finally:
        conn.close()
    return [(code, name) for code, name, _ in scored]


def _floor_search(conn: sqlite3.Connection, params: dict) -> list:
    return conn.execute(_SEARCH_SQL, params).fetchall()


def bench_catalog_search(ctx: BenchContext) -> dict:
    """`store.search_catalog` against the same SQL on a bare sqlite3 connection (the floor);
    the store also puts the clinic's picks (PICKS of them) first, the floor does not."""
    data_dir = imported_data_dir(ctx)
    picks = seed_picks(data_dir, catalog_csv(ctx).sample, ctx.seed)
    queries = search_queries(catalog_csv(ctx).sample, ctx.seed)
    rounds = ctx.scale(5, 2)
    store = SqliteDeviceStore.open(data_dir)
    conn = sqlite3.connect(data_dir / DATABASE_FILE)
    try:
        params = []
        for _, query in queries:
            low, high = prefix_range(search_key(query))
            params.append({"low": low, "high": high, "limit": SEARCH_LIMIT})
        hits = _check_same_results(store, conn, queries, params, picks)
        store_ns: dict[str, list[int]] = defaultdict(list)
        floor_ns: dict[str, list[int]] = defaultdict(list)
        rng = random.Random(ctx.seed)
        clock = time.perf_counter_ns
        order = list(range(len(queries)))
        for round_number in range(rounds):
            rng.shuffle(order)
            for position, index in enumerate(order):
                kind, query = queries[index]
                # Interleaved, and which one runs first alternates, so neither side is
                # favoured by a warm cache or by the other's leftovers.
                for side in (0, 1) if (position + round_number) % 2 else (1, 0):
                    start = clock()
                    if side == 0:
                        store.search_catalog(query)
                        store_ns[kind].append(clock() - start)
                    else:
                        _floor_search(conn, params[index])
                        floor_ns[kind].append(clock() - start)
    finally:
        conn.close()
        store.close()

    all_store = summarize_ns([ns for samples in store_ns.values() for ns in samples])
    all_floor = summarize_ns([ns for samples in floor_ns.values() for ns in samples])
    ratio_p50 = all_store["p50_us"] / all_floor["p50_us"]
    ratio_p99 = all_store["p99_us"] / all_floor["p99_us"]
    by_kind = {
        kind: {
            "queries": QUERY_MIX[kind],
            "mean_hits": round(sum(hits[kind]) / len(hits[kind]), 1),
            "store": summarize_ns(store_ns[kind]),
            "floor": summarize_ns(floor_ns[kind]),
        }
        for kind in store_ns
    }
    summary = [
        f"{len(queries)} queries x {rounds} rounds, limit {SEARCH_LIMIT}, {len(picks)} picks",
        f"search_catalog  p50 {all_store['p50_us']:7.1f} us  p99 {all_store['p99_us']:7.1f} us",
        f"raw SQL floor   p50 {all_floor['p50_us']:7.1f} us  p99 {all_floor['p99_us']:7.1f} us",
        f"ratio to floor  p50 {ratio_p50:.2f}x  p99 {ratio_p99:.2f}x",
    ]
    summary += [
        f"  {kind:<8} hits {row['mean_hits']:5.1f}  store p50/p99 {row['store']['p50_us']:.0f}"
        f"/{row['store']['p99_us']:.0f} us  floor {row['floor']['p50_us']:.0f}"
        f"/{row['floor']['p99_us']:.0f} us"
        for kind, row in by_kind.items()
    ]
    return {
        "queries": len(queries),
        "rounds": rounds,
        "limit": SEARCH_LIMIT,
        "picks": len(picks),
        "store": all_store,
        "floor": all_floor,
        "ratio_p50": round(ratio_p50, 3),
        "ratio_p99": round(ratio_p99, 3),
        "by_kind": by_kind,
        "targets": {
            "search_p99_ms": target(
                all_store["p99_us"] / 1000, SEARCH_P99_TARGET_MS, "ms", "search_catalog p99"
            ),
            "search_p99_ratio_to_floor": target(
                ratio_p99, SEARCH_FLOOR_RATIO_TARGET, "x", "search_catalog p99 / raw SQL p99"
            ),
        },
        "summary": summary,
    }


def _check_same_results(
    store: SqliteDeviceStore,
    conn: sqlite3.Connection,
    queries: list[tuple[str, str]],
    params: list[dict],
    picks: list[tuple[str, str]],
) -> dict[str, list[int]]:
    """Hit counts per query kind; fails when the store disagrees with the picks that match
    (checked here key by key) followed by the floor's answer (also warms up)."""
    hits: dict[str, list[int]] = defaultdict(list)
    for (kind, query), query_params in zip(queries, params, strict=True):
        found = [hit.code for hit in store.search_catalog(query)]
        key = search_key(query)
        floor_codes = [code for code, name in picks if matches(key, code, name)][:SEARCH_LIMIT]
        for row in _floor_search(conn, query_params):
            if row[1] not in floor_codes:
                floor_codes.append(row[1])
        if found != floor_codes[:SEARCH_LIMIT]:
            raise RuntimeError(f"search {query!r}: the store and the raw SQL disagree")
        if kind == "miss" and found:
            raise RuntimeError(f"search {query!r} was meant to miss but found {found[:3]}")
        hits[kind].append(len(found))
    return hits


SETTLE_WAIT_TARGET_S = 0.5
IMPORT_WHILE_SETTLING_ITEMS = 1_000_000


def bench_catalog_import_while_settling(ctx: BenchContext) -> dict:
    """A 10^6-item `clinic catalog import` in a child process while this one settles
    visits, 20 a second: how long each settle waited (the import holds the write lock one
    batch at a time, never for its whole run), and that none failed as "database is locked"."""
    from benchmarks.settle import PERSONS, demo_device, the_visit
    from edge import demo, services

    count = ctx.scale(IMPORT_WHILE_SETTLING_ITEMS, ctx.items)
    path = ctx.workdir / f"catalog-settling-{count}.csv"
    generated = write_catalog_csv(path, count, ctx.seed)
    demo_rows = Path(demo.__file__).with_name("catalog.csv").read_text("utf-8-sig")
    with path.open("a", encoding="utf-8") as handle:  # settling goes on after the swap
        handle.write(demo_rows.split("\n", 1)[1])
    data_dir = ctx.workdir / "settling-device"
    store, identity = demo_device(data_dir)
    visit = the_visit()
    moment = datetime.now(services.CLINIC_TZ)
    importer = subprocess.Popen(
        [*ctx.clinic_command(), "catalog", "import", str(path), "--version", f"{moment.year + 1}.1",
         "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    started = time.perf_counter()
    waits: list[int] = []
    locked = 0
    while importer.poll() is None:
        moment += timedelta(seconds=1)
        before = time.perf_counter_ns()
        try:
            services.settle_visit(
                store, identity, insured_id=PERSONS[len(waits) % len(PERSONS)],
                visit=dataclasses.replace(visit, date=moment.date()), operator="doc01",
                now=moment,
            )  # fmt: skip
        except sqlite3.OperationalError:
            locked += 1
        waits.append(time.perf_counter_ns() - before)
        time.sleep(0.05)
    wall = time.perf_counter() - started
    _out, err = importer.communicate()
    store.close()
    if importer.returncode != 0:
        raise RuntimeError(f"the import failed: {err.decode()}")
    stats = summarize_ns(waits)
    longest = max(waits) / 1e9
    return {
        "items": count,
        "import_wall_s": round(wall, 1),
        "settles": len(waits),
        "locked_failures": locked,
        "settle_wait": stats,
        "targets": {
            "longest_settle_wait_s": target(
                longest, SETTLE_WAIT_TARGET_S, "s", "longest settle during a catalog import"
            ),
        },
        "summary": [
            f"{count:,} items imported in {wall:.1f} s (CSV generated in"
            f" {generated.seconds:.1f} s) while {len(waits)} visits settled:"
            f" p50 {stats['p50_us'] / 1000:.0f} ms, p99 {stats['p99_us'] / 1000:.0f} ms,"
            f" longest {longest * 1000:.0f} ms, {locked} 'database is locked'",
        ],
    }
