"""`edge.domain.ledger.canonical` must give ledger.md's bytes exactly: Python's
`json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()`.
The project builds them with orjson for speed, so the two are compared here on any
value a record may hold, and on the records a real device writes."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sync_helpers import NOW, new_device

from edge.domain.ledger import canonical, self_consistency_problem

# Any character a UTF-8 string can hold: control characters, quotes, backslashes, line
# and paragraph separators, non-BMP; not lone surrogates (no UTF-8 encoding exists).
TEXT = st.text(st.characters(exclude_categories=("Cs",)))
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INT64 | TEXT,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(TEXT, children, max_size=5),
    max_leaves=30,
)


def ledger_md_canonical(record: dict) -> bytes:
    unsigned = {k: v for k, v in record.items() if k not in ("hash", "sig")}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@given(st.dictionaries(TEXT, JSON_VALUES, max_size=8))
def test_canonical_bytes_are_ledger_md_bytes_for_any_record_value(record):
    assert canonical(record) == ledger_md_canonical(record)


def test_hash_and_sig_are_left_out_and_keys_sort_by_code_point():
    record = {"sig": "s", "hash": "h", "b": 1, "a": {"é": "中", "z": "\u2028", "Z": "\x00"}}
    assert canonical(record) == '{"a":{"Z":"\\u0000","z":"\u2028","é":"中"},"b":1}'.encode()


def test_the_records_of_a_real_device_encode_identically(tmp_path):
    device = new_device(tmp_path / "device")
    try:
        for _ in range(5):
            device.settle(NOW)
        stored = device.records()
    finally:
        device.store.close()
    assert len(stored) == 5
    for record in stored:
        assert canonical(record) == ledger_md_canonical(record)


@pytest.mark.parametrize("value", [2**64, "\ud800"], ids=["beyond 64 bits", "lone surrogate"])
def test_values_a_record_may_not_hold_are_refused_not_encoded_differently(value):
    record = {"seq": 1, "body": {"x": value}, "hash": "0" * 64, "sig": ""}
    with pytest.raises((TypeError, ValueError)):
        canonical(record)
    assert self_consistency_problem(record, public_key=None) == "cannot be serialised canonically"
