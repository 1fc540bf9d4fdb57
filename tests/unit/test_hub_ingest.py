"""What the hub does with an uploaded batch: the pure plan (store, hold, ignore, refuse)."""

import copy

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from record_chains import DEVICE, KEY, chain

from edge.adapters.identity import device_id_for
from edge.domain.ledger import genesis_hash, new_record
from sync.hub.ingest import plan_ingest

GENESIS = genesis_hash(KEY.public_key())


RECORDS = chain(10)


def plan(batch, head=0, held=None, stored=None):
    head_hash = RECORDS[head - 1]["hash"] if head else GENESIS
    stored = stored if stored is not None else {r["seq"]: r["hash"] for r in RECORDS[:head]}
    return plan_ingest(
        device_id=DEVICE,
        public_key=KEY.public_key(),
        head_seq=head,
        head_hash=head_hash,
        batch=batch,
        stored_hashes=stored,
        held={r["seq"]: r for r in held or []},
    )


def codes(result) -> list[tuple[int | None, str]]:
    return [(r.seq, r.code) for r in result.refusals]


def test_a_batch_in_order_is_accepted_and_moves_the_high_water_mark():
    result = plan(RECORDS[:4])
    assert [r["seq"] for r in result.accepted] == [1, 2, 3, 4]
    assert (result.head_seq, result.head_hash) == (4, RECORDS[3]["hash"])
    assert result.refusals == []


def test_a_replayed_batch_changes_nothing():
    result = plan(RECORDS[:4], head=4)
    assert result.accepted == [] and result.hold == [] and result.refusals == []
    assert (result.duplicates, result.head_seq) == (4, 4)


def test_a_batch_overlapping_what_is_held_adds_only_the_new_records():
    result = plan(RECORDS[2:6], head=4)
    assert [r["seq"] for r in result.accepted] == [5, 6]
    assert result.duplicates == 2


def test_records_beyond_a_gap_are_held_until_the_gap_is_filled():
    beyond = plan(RECORDS[5:8], head=4)
    assert beyond.accepted == [] and beyond.head_seq == 4
    assert [r["seq"] for r in beyond.hold] == [6, 7, 8]
    filled = plan([RECORDS[4]], head=4, held=RECORDS[5:8])
    assert [r["seq"] for r in filled.accepted] == [5, 6, 7, 8]
    assert sorted(filled.release) == [6, 7, 8]
    assert filled.head_seq == 8


def test_a_record_whose_content_was_altered_is_refused_with_an_alarm():
    batch = copy.deepcopy(RECORDS[:3])
    batch[1]["body"]["n"] = 99
    result = plan(batch)
    assert [r["seq"] for r in result.accepted] == [1]
    assert codes(result) == [(2, "RECORD_INVALID")]
    assert result.head_seq == 1


def test_a_record_resigned_by_another_key_is_refused():
    forged = chain(1, key=Ed25519PrivateKey.generate(), start_hash=RECORDS[0]["hash"], first=2)
    forged[0]["device_id"] = DEVICE
    result = plan([RECORDS[0], *forged])
    assert codes(result) == [(2, "RECORD_INVALID")]


def test_a_record_that_does_not_chain_to_the_one_before_is_refused():
    other = chain(3, tag="x")  # signed by the device, but another history
    result = plan([RECORDS[0], other[1]])
    assert codes(result) == [(2, "CHAIN_BROKEN")]
    assert result.head_seq == 1


def test_a_different_record_at_a_seq_the_hub_holds_means_the_ledger_went_backwards():
    restored = chain(6, tag="restored")  # a device restored from a backup, settling again
    result = plan(restored[3:6], head=5)
    assert codes(result)[:2] == [(4, "LEDGER_WENT_BACKWARDS"), (5, "LEDGER_WENT_BACKWARDS")]
    assert result.accepted == [] and result.head_seq == 5


def test_records_of_another_device_are_refused():
    other_key = Ed25519PrivateKey.generate()
    foreign = chain(2, key=other_key, device=device_id_for(other_key.public_key()))
    result = plan(foreign)
    assert codes(result) == [(1, "RECORD_FOREIGN"), (2, "RECORD_FOREIGN")]
    assert result.accepted == []


def test_malformed_lines_are_refused_and_good_ones_still_count():
    result = plan(["text", {"seq": "one"}, RECORDS[0]])
    assert codes(result) == [(None, "RECORD_MALFORMED"), (None, "RECORD_MALFORMED")]
    assert [r["seq"] for r in result.accepted] == [1]


def test_a_batch_out_of_order_is_put_in_order():
    result = plan([RECORDS[2], RECORDS[0], RECORDS[1]])
    assert [r["seq"] for r in result.accepted] == [1, 2, 3]


def signed(seq: int, prev_hash: str, kind: str, body: dict) -> dict:
    return new_record(
        device_id=DEVICE, seq=seq, kind=kind, tx_id=f"poison{seq}",
        created_at="2026-11-22T09:30:00+08:00", prev_hash=prev_hash, body=body,
        private_key=KEY,
    )  # fmt: skip


def test_a_signed_and_chained_record_with_a_malformed_body_is_accepted_and_flagged():
    # The chain must go on (the device would be stuck otherwise); the body is flagged.
    poisoned = signed(1, GENESIS, "settlement", {"visit": [], "result": None})
    after = signed(2, poisoned["hash"], "event", {"event": "test"})
    result = plan([poisoned, after])
    assert [r["seq"] for r in result.accepted] == [1, 2]
    assert result.head_seq == 2 and result.refusals == []
    assert [(r.seq, r.code) for r in result.malformed] == [(1, "BODY_MALFORMED")]
    assert "body" in result.malformed[0].detail


@pytest.mark.parametrize("seq", [2**63, 2**64 + 5, 10**30])
def test_a_seq_beyond_64_bits_is_refused_as_malformed(seq):
    record = dict(RECORDS[0], seq=seq)
    result = plan([record, RECORDS[0]])
    assert codes(result) == [(None, "RECORD_MALFORMED")]
    assert "2^63" in result.refusals[0].detail and len(result.refusals[0].detail) < 80
    assert [r["seq"] for r in result.accepted] == [1]


def test_records_held_beyond_a_gap_are_capped():
    far = chain(8, first=20, start_hash="0" * 64, tag="far")  # signed, beyond a gap
    result = plan_ingest(
        device_id=DEVICE, public_key=KEY.public_key(), head_seq=0, head_hash=GENESIS,
        batch=far, stored_hashes={}, held={r["seq"]: r for r in RECORDS[5:8]}, max_held=5,
    )  # fmt: skip
    # 3 held already: room for 2 more, the nearest the gap; the rest refused.
    assert [r["seq"] for r in result.hold] == [20, 21]
    assert codes(result) == [(seq, "HELD_LIMIT") for seq in range(22, 28)]
