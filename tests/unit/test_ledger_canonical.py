"""`edge.domain.ledger.canonical` must give ledger.md's bytes exactly: Python's
`json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()`.
The project builds them with orjson for speed, so the two are compared here on any
value a record may hold, and on the records a real device writes."""

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from sync_helpers import NOW, new_device

from edge.domain.ledger import (
    canonical,
    genesis_hash,
    seal,
    self_consistency_problem,
    verify_chain,
)
from edge.domain.versions import version_order

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


def signed_event(private_key, seq, body: dict) -> dict:
    record = {"seq": seq, "prev_hash": genesis_hash(private_key.public_key()), "kind": "event",
              "tx_id": "t1", "device_id": "d", "created_at": "2026-11-22T09:30:00+08:00",
              "body": body}  # fmt: skip
    return seal(record, private_key)


def test_a_signed_record_holding_a_fraction_is_refused_by_the_verifier():
    key = Ed25519PrivateKey.generate()
    record = signed_event(key, 1, {"amount": 1.5})
    verdict = verify_chain([record], key.public_key())
    assert (verdict.first_bad_seq, verdict.reason) == (
        1, "holds a number with a fraction (amounts and counts are integers)",
    )  # fmt: skip
    assert verify_chain([signed_event(key, 1, {"amount": 15})], key.public_key()).ok


def test_true_is_not_seq_1():
    key = Ed25519PrivateKey.generate()
    verdict = verify_chain([signed_event(key, True, {})], key.public_key())
    assert verdict.first_bad_seq == 1 and "seq is True" in verdict.reason


def test_version_parts_count_as_numbers_only_when_they_are_ascii_digits():
    assert version_order("2026.10") > version_order("2026.9")
    assert version_order("2026.²") == ((0, 2026, ""), (1, 0, "²"))  # no ValueError
