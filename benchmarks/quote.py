"""Section `quote`: one realistic 10-line visit, engine alone and the full quote document."""

import copy
import json

from benchmarks.context import BenchContext
from benchmarks.measure import summarize_ns, target, time_calls
from edge.domain.documents import (
    accumulators_from_json,
    catalog_from_json,
    person_from_json,
    policy_from_json,
    visit_from_json,
)
from edge.domain.quote import quote_document, quote_text
from edge.domain.settlement import settle

QUOTE_TARGET_US = 1000.0

# The example policy of settlement-rules.md (the same as tests/conftest.py).
POLICY = {
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

# Ten items as a village clinic bills them: A, B and C drugs, a service, a material, a
# tablet priced in fractions of a fen, a payment standard below the price, per-visit
# quantity limits, an item-specific prepay ratio and a validity window.
CATALOG = [
    {"code": "XJ01CAA040A001", "name": "阿莫西林胶囊", "spec": "0.25g*24粒", "unit": "盒",
     "kind": "drug", "class": "A", "price": "6.80", "max_qty": "3"},
    {"code": "XN02BEB011A001", "name": "对乙酰氨基酚片", "spec": "0.5g", "unit": "片",
     "kind": "drug", "class": "A", "price": "0.0350", "max_qty": "24"},
    {"code": "XC08CAA057A002", "name": "硝苯地平缓释片", "spec": "20mg*30片", "unit": "盒",
     "kind": "drug", "class": "B", "price": "28.60", "payment_standard": "24.50"},
    {"code": "XR05CBA073A001", "name": "氨溴索口服液", "spec": "100ml:0.6g", "unit": "瓶",
     "kind": "drug", "class": "B", "price": "15.20", "self_prepay_ratio": "0.15"},
    {"code": "ZA01BAL0021010", "name": "连花清瘟胶囊", "spec": "0.35g*24粒", "unit": "盒",
     "kind": "drug", "class": "B", "price": "14.80"},
    {"code": "XA11GAA020A001", "name": "维生素C片", "spec": "0.1g*100片", "unit": "瓶",
     "kind": "drug", "class": "C", "price": "3.50"},
    {"code": "001102000010000", "name": "一般诊疗费", "spec": "", "unit": "次",
     "kind": "service", "class": "A", "price": "10.00", "max_qty": "1"},
    {"code": "C0211010300101", "name": "一次性使用无菌注射器", "spec": "5ml", "unit": "支",
     "kind": "material", "class": "A", "price": "0.45"},
    {"code": "XJ01DCA040A001", "name": "头孢呋辛酯片", "spec": "0.25g*12片", "unit": "盒",
     "kind": "drug", "class": "B", "price": "18.75", "payment_standard": "20.00",
     "valid_from": "2024-01-01", "valid_to": "2030-12-31"},
    {"code": "XR06AXL035A001", "name": "氯雷他定片", "spec": "10mg*6片", "unit": "盒",
     "kind": "drug", "class": "A", "price": "7.95", "max_qty": "2.5"},
]  # fmt: skip

LINES = [
    ("XJ01CAA040A001", "5"),  # over max_qty: QTY_OVER_LIMIT
    ("XN02BEB011A001", "18"),
    ("XC08CAA057A002", "2"),  # OVER_PAYMENT_STANDARD, class B
    ("XR05CBA073A001", "1"),  # class B with its own prepay ratio
    ("ZA01BAL0021010", "2"),
    ("XA11GAA020A001", "1"),  # class C: NOT_COVERED
    ("001102000010000", "1"),
    ("C0211010300101", "3"),
    ("XJ01DCA040A001", "1.5"),
    ("XR06AXL035A001", "3"),  # over a fractional max_qty
]


def visit_document() -> dict:
    """The quote document: a 46-year-old resident with low-income guarantee assistance."""
    return {
        "policy": copy.deepcopy(POLICY),
        "catalog": copy.deepcopy(CATALOG),
        "person": {
            "insurance_type": "resident", "gender": "M", "birth_date": "1980-05-01",
            "status": "active", "categories": ["low_income_guarantee", "low_income"],
            "chronic_certs": [{"disease_code": "I10.x00", "valid_from": "2025-01-01"}],
        },
        "accumulators": {"deductible_used": 0, "fund_paid": 12000, "assistance_paid": 3000},
        "visit": {"date": "2026-11-22", "visit_type": "general",
                  "diagnoses": ["J06.900", "I10.x00"],
                  "lines": [{"code": c, "quantity": q} for c, q in LINES],
                  "use_personal_account": False},
    }  # fmt: skip


def bench_quote(ctx: BenchContext) -> dict:
    """Settle the visit with pre-parsed inputs, and quote it from a dict and from JSON."""
    calls = ctx.scale(20_000, 2_000)
    warmup = ctx.scale(2_000, 200)
    document = visit_document()
    text = json.dumps(document, ensure_ascii=False)

    result = quote_document(document)
    if "error" in result:
        raise RuntimeError(f"the benchmark visit is rejected: {result['error']}")
    if not ({"QTY_OVER_LIMIT", "OVER_PAYMENT_STANDARD", "NOT_COVERED"} <= _reasons(result)):
        raise RuntimeError("the benchmark visit no longer exercises the rules it should")
    if result["assistance"] <= 0:
        raise RuntimeError("the benchmark visit no longer pays assistance")

    inputs = (
        policy_from_json(document["policy"]),
        catalog_from_json(document["catalog"]),
        person_from_json(document["person"]),
        accumulators_from_json(document["accumulators"]),
        visit_from_json(document["visit"]),
    )
    engine = summarize_ns(time_calls(lambda: settle(*inputs), calls, warmup))
    full = summarize_ns(time_calls(lambda: quote_document(document), calls, warmup))
    from_text = summarize_ns(time_calls(lambda: quote_text(text), calls, warmup))
    for stats in (engine, full, from_text):
        stats["per_second"] = round(1e6 / stats["mean_us"])

    return {
        "lines": len(LINES),
        "catalog_items": len(CATALOG),
        "calls": calls,
        "engine_settle": engine,
        "quote_document": full,
        "quote_text": from_text,
        "settlement": {k: result[k] for k in ("total", "fund", "assistance", "cash")},
        "targets": {
            "quote_document_mean_us": target(
                full["mean_us"], QUOTE_TARGET_US, "us", "quote_document mean per quote"
            ),
            "quote_document_p99_us": target(
                full["p99_us"], QUOTE_TARGET_US, "us", "quote_document p99 per quote"
            ),
        },
        "summary": [
            f"settle (pre-parsed)   {_line(engine)}",
            f"quote_document (dict) {_line(full)}",
            f"quote_text (JSON)     {_line(from_text)}",
        ],
    }


def _reasons(result: dict) -> set[str]:
    return {reason for line in result["lines"] for reason in line["reasons"]}


def _line(stats: dict) -> str:
    return (
        f"mean {stats['mean_us']:8.1f} us  p50 {stats['p50_us']:8.1f}  "
        f"p99 {stats['p99_us']:8.1f}  {stats['per_second']:>8,}/s"
    )
