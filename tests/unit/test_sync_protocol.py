"""The wire protocol's pure parts: request signatures, batches, backoff."""

import gzip
import random
from datetime import timedelta
from typing import ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sync_helpers import NOW

from edge.domain.ledger import b64url
from sync.planner import backoff_delay, plan_batch
from sync.protocol import (
    MAX_CLOCK_DIFFERENCE,
    SignedRequest,
    SyncError,
    decode_batch,
    encode_batch,
    sha256_hex,
    sign_answer,
    sign_request,
    signed_request_of,
    signing_payload,
    verify_answer,
    verify_request,
)

KEY = Ed25519PrivateKey.generate()
BODY = b'{"seq": 1}\n'


def signed(**overrides):
    arguments = {
        "device_id": "dev-1",
        "method": "POST",
        "path": "/api/v1/records",
        "body": BODY,
        "now": NOW,
        "nonce": "n-0123456789",
    }
    arguments.update(overrides)
    return signed_request_of(sign_request(KEY, **arguments))


def check(claimed, *, key=KEY, method="POST", path="/api/v1/records", body=BODY, now=NOW):
    verify_request(key.public_key(), claimed, method=method, path=path, body=body, now=now)


class TestRequestSignatures:
    def test_a_request_signed_by_the_device_verifies(self):
        check(signed())

    @pytest.mark.parametrize(
        "change",
        [
            {"method": "GET"},
            {"path": "/api/v1/heartbeat"},
            {"body": b'{"seq": 2}\n'},
        ],
    )
    def test_a_request_changed_in_method_path_or_body_does_not_verify(self, change):
        with pytest.raises(SyncError) as refused:
            check(signed(), **change)
        assert refused.value.code == "BAD_SIGNATURE"

    def test_a_request_signed_by_another_key_does_not_verify(self):
        with pytest.raises(SyncError, match="BAD_SIGNATURE"):
            check(signed(), key=Ed25519PrivateKey.generate())

    def test_a_request_claiming_another_device_does_not_verify(self):
        claimed = signed()
        forged = type(claimed)("dev-2", claimed.timestamp, claimed.nonce, claimed.signature)
        with pytest.raises(SyncError, match="BAD_SIGNATURE"):
            check(forged)

    @pytest.mark.parametrize("offset", [MAX_CLOCK_DIFFERENCE + timedelta(seconds=1)])
    def test_a_request_older_or_newer_than_the_window_is_stale(self, offset):
        for now in (NOW + offset, NOW - offset):
            with pytest.raises(SyncError) as refused:
                check(signed(), now=now)
            assert refused.value.code == "STALE_TIMESTAMP"

    @pytest.mark.parametrize("timestamp", ["999999999999", "0", "253402300800"])
    def test_an_absurd_signed_timestamp_is_stale_not_a_crash(self, timestamp):
        # 999999999999 s is the year 33658: no datetime holds it (it was a 500 at the hub).
        claimed = SignedRequest("dev-1", timestamp, "n-0123456789", "")
        payload = signing_payload(
            method="POST", path="/api/v1/records", body_sha256=sha256_hex(BODY),
            timestamp=timestamp, nonce=claimed.nonce, device_id="dev-1",
        )  # fmt: skip
        claimed = SignedRequest("dev-1", timestamp, claimed.nonce, b64url(KEY.sign(payload)))
        with pytest.raises(SyncError) as refused:
            check(claimed)
        assert refused.value.code == "STALE_TIMESTAMP"
        assert timestamp in refused.value.detail or "1970" in refused.value.detail

    def test_a_request_inside_the_window_is_fresh(self):
        check(signed(), now=NOW + MAX_CLOCK_DIFFERENCE - timedelta(seconds=1))

    def test_missing_signature_headers_are_refused_as_unsigned(self):
        with pytest.raises(SyncError) as refused:
            signed_request_of({"X-Clinic-Device": "dev-1"})
        assert refused.value.code == "UNSIGNED"

    def test_errors_speak_chinese_and_english(self):
        error = SyncError("DEVICE_REVOKED", "dev-1")
        assert error.to_dict() == {
            "code": "DEVICE_REVOKED",
            "message": "this device has been revoked by the county: dev-1",
            "message_zh": "这台设备已被县级平台停用",
            "detail": "dev-1",
        }


ANSWER = {
    "method": "POST",
    "path": "/api/v1/records",
    "device_id": "dev-1",
    "nonce": "n-0123456789",
    "status": 200,
    "body": b'{"acked_seq":3,"acked_hash":"ab"}',
    "hub_time": "2026-03-02T08:00:00+00:00",
}


def check_answer(signature, *, key=KEY, **changes):
    answer = {**ANSWER, **changes}
    verify_answer(key.public_key(), signature=signature, **answer)


class TestAnswerSignatures:
    def test_an_answer_signed_by_the_county_key_verifies(self):
        check_answer(sign_answer(KEY, **ANSWER))

    @pytest.mark.parametrize(
        "change",
        [
            {"nonce": "n-another-request"},  # an old answer replayed to a new request
            {"path": "/api/v1/heartbeat"},
            {"method": "GET"},
            {"device_id": "dev-2"},
            {"status": 403},
            {"body": b'{"acked_seq":1000000,"acked_hash":"ab"}'},
            {"hub_time": "2026-03-02T08:00:01+00:00"},
        ],
    )
    def test_an_answer_for_another_request_status_body_or_time_does_not_verify(self, change):
        with pytest.raises(SyncError) as refused:
            check_answer(sign_answer(KEY, **ANSWER), **change)
        assert refused.value.code == "BAD_ANSWER_SIGNATURE" and refused.value.retryable

    def test_an_answer_signed_by_another_key_does_not_verify(self):
        with pytest.raises(SyncError, match="BAD_ANSWER_SIGNATURE"):
            check_answer(sign_answer(Ed25519PrivateKey.generate(), **ANSWER))

    @pytest.mark.parametrize("signature", [None, "", "not base64 !", "AAAA"])
    def test_a_missing_or_garbled_signature_does_not_verify(self, signature):
        with pytest.raises(SyncError) as refused:
            check_answer(signature)
        assert refused.value.code in ("ANSWER_UNSIGNED", "BAD_ANSWER_SIGNATURE")
        assert "县级平台" in refused.value.message_zh

    def test_an_answer_without_the_hub_time_is_unsigned(self):
        with pytest.raises(SyncError, match="ANSWER_UNSIGNED"):
            check_answer(sign_answer(KEY, **ANSWER), hub_time=None)


class TestBatches:
    ROWS: ClassVar = [(seq, "x" * 99) for seq in range(1, 11)]  # 100 bytes a line, newline too

    def test_a_batch_takes_records_in_order_up_to_the_record_limit(self):
        assert [seq for seq, _ in plan_batch(self.ROWS, max_records=4)] == [1, 2, 3, 4]

    def test_a_batch_stops_before_the_byte_limit(self):
        assert len(plan_batch(self.ROWS, max_bytes=350)) == 3

    def test_a_record_larger_than_the_byte_limit_still_goes_alone(self):
        rows = [(1, "y" * 1000), (2, "z")]
        assert plan_batch(rows, max_bytes=100) == [(1, "y" * 1000)]

    def test_nothing_to_send_is_an_empty_batch(self):
        assert plan_batch([]) == []

    def test_a_batch_round_trips_through_gzip_json_lines(self):
        texts = ['{"seq":1,"body":{"name":"阿莫西林"}}', '{"seq":2}']
        body = encode_batch(texts)
        assert gzip.decompress(body).decode().splitlines() == texts
        assert decode_batch(body, "gzip") == [{"seq": 1, "body": {"name": "阿莫西林"}}, {"seq": 2}]

    def test_a_body_that_inflates_past_the_limit_is_refused(self):
        bomb = gzip.compress(b"\n" * 100_000)
        with pytest.raises(SyncError) as refused:
            decode_batch(bomb, "gzip", limit=10_000)
        assert refused.value.code == "TOO_LARGE"

    def test_a_batch_of_more_records_than_allowed_is_refused_before_parsing(self):
        lines = b"".join(b'{"seq": %d}\n' % n for n in range(1, 1002))
        with pytest.raises(SyncError) as refused:
            decode_batch(gzip.compress(lines), "gzip")
        assert refused.value.code == "BATCH_TOO_LARGE" and "1001 records" in refused.value.detail
        assert len(decode_batch(lines, None, max_records=1001)) == 1001

    @pytest.mark.parametrize(
        "body, encoding",
        [
            (b"not gzip", "gzip"),
            (gzip.compress(b"{}\n")[:-6], "gzip"),
            (b"{nope\n", None),
            (b"{}", "br"),
        ],
    )
    def test_a_broken_body_is_a_bad_request(self, body, encoding):
        with pytest.raises(SyncError) as refused:
            decode_batch(body, encoding)
        assert refused.value.code == "BAD_REQUEST"


class TestBackoff:
    def test_the_wait_doubles_with_each_failure_up_to_the_cap(self):
        ceilings = [backoff_delay(n, lambda: 0.999999, base=10, cap=100) for n in range(1, 7)]
        assert [round(c) for c in ceilings] == [10, 20, 40, 80, 100, 100]

    def test_the_jitter_keeps_the_wait_between_half_and_all_of_the_ceiling(self):
        rng = random.Random(7)
        for attempt in range(1, 30):
            delay = backoff_delay(attempt, rng.random, base=30, cap=3600)
            ceiling = min(3600, 30 * 2 ** (attempt - 1))
            assert ceiling / 2 <= delay <= ceiling

    def test_the_same_random_source_gives_the_same_waits(self):
        first = [backoff_delay(n, random.Random(1).random) for n in range(1, 5)]
        second = [backoff_delay(n, random.Random(1).random) for n in range(1, 5)]
        assert first == second

    def test_no_failure_means_no_wait(self):
        assert backoff_delay(0, random.random) == 0.0


@pytest.mark.parametrize("timestamp", ["²", "1" * 40, "１７００"])
def test_a_timestamp_that_is_not_plain_ascii_digits_is_a_bad_request(timestamp):
    from sync.protocol import (
        HEADER_DEVICE,
        HEADER_NONCE,
        HEADER_SIGNATURE,
        HEADER_TIMESTAMP,
        SyncError,
        signed_request_of,
    )

    headers = {HEADER_DEVICE: "dev-1", HEADER_TIMESTAMP: timestamp,
               HEADER_NONCE: "n" * 16, HEADER_SIGNATURE: "sig"}  # fmt: skip
    with pytest.raises(SyncError) as caught:
        signed_request_of(headers)
    assert caught.value.code == "BAD_REQUEST"
