"""The service point's requests on a real device store (edge/service_requests.py): what is
signed, what is refused with nothing changed, the photos' bounds and files, the ID number
never in clear on disk, and the county's decisions applied, or refused."""

import hashlib
import json
import os
import stat
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from clock import NOW
from sync_helpers import OPERATOR, RESIDENT, new_device
from web_service_support import ID_NUMBER, County

from edge import premiums, services
from edge import service_requests as sr
from edge.adapters.attachments import AttachmentError, AttachmentFiles
from edge.adapters.sealing import open_sealed
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.model import Rejection
from edge.ports import RequestStore

JPEG = b"\xff\xd8\xff\xe0" + b"photo" * 20
PNG = b"\x89PNG\r\n\x1a\n" + b"scan" * 20


@pytest.fixture
def county() -> County:
    return County()


@pytest.fixture
def device(tmp_path, county):
    device = new_device(tmp_path / "device")
    county.pin_on(device.store, device.identity.device_id)
    yield device
    device.store.close()


def enrolment(device, now=NOW, **changes) -> dict:
    arguments = {
        "kind": "enrolment",
        "operator": OPERATOR,
        "insured_id": None,
        "applicant": {"name": "王小明", "gender": "M", "birth_date": "1990-01-01"},
        "id_number": ID_NUMBER,
        "details": {"insurance_type": "resident", "category": None, "village": "东村"},
        "photos": [],
        "note": None,
        "follow_up_of": None,
        "now": now,
    }
    arguments.update(changes)
    return sr.new_request(device.store, device.identity, device.data_dir, **arguments).record


def chronic(device, photos=((JPEG, "诊断证明"),), now=NOW, **changes) -> dict:
    arguments = {
        "kind": "chronic_certificate",
        "operator": OPERATOR,
        "insured_id": RESIDENT,
        "details": {
            "disease_code": "I10",
            "disease_name": "高血压",
            "scheme": "two_diseases",
            "hospital": "县人民医院",
            "diagnosed_on": "2026-03-01",
        },
        "photos": list(photos),
        "now": now,
    }
    arguments.update(changes)
    return sr.new_request(device.store, device.identity, device.data_dir, **arguments).record


def snapshot(device) -> tuple:
    """What a refusal must leave as it was: the ledger, the index, the photo files."""
    photos = device.data_dir / "attachments"
    return (
        [r["hash"] for r in device.records()],
        device.store.db.execute("SELECT count(*) FROM service_request").fetchone()[0],
        device.store.db.execute("SELECT count(*) FROM request_attachment").fetchone()[0],
        sorted(p.name for p in photos.iterdir()) if photos.exists() else [],
    )


def refused(device, code: str, call) -> Rejection:
    before = snapshot(device)
    with pytest.raises(Rejection) as caught:
        call()
    assert caught.value.code == code, caught.value.message
    assert snapshot(device) == before
    return caught.value


def test_the_store_is_a_request_store(device):
    store: RequestStore = device.store
    assert store.county_encryption_key() is not None


class TestEnrolment:
    def test_the_record_holds_the_masked_applicant_and_the_sealed_number(self, device, county):
        record = enrolment(device)
        body = record["body"]
        assert record["kind"] == "service_request"
        assert body["insured_id"] is None
        assert body["applicant"] == {
            "name": "王小明",
            "gender": "M",
            "birth_date": "1990-01-01",
            "id_number_masked": "320115********" + ID_NUMBER[-4:],
        }
        assert open_sealed(body["sealed_id_number"], county.sealing) == ID_NUMBER
        assert services.verify_ledger(device.store).ok
        view = sr.request(device.store, record["tx_id"])
        assert (view.kind, view.name, view.state) == ("enrolment", "王小明", "pending")
        assert "sealed_id_number" not in json.dumps(view.to_dict())

    def test_no_id_number_in_clear_anywhere_in_the_data_dir(self, device, tmp_path):
        enrolment(device)
        chronic(device)
        export = tmp_path / "ledger.jsonl"
        export.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in device.records())
        )
        device.store.close()  # the WAL as it stands, and then checkpointed
        for path in [*device.data_dir.rglob("*"), export]:
            if path.is_file():
                data = path.read_bytes()
                assert ID_NUMBER.encode() not in data, path
                assert ID_NUMBER.encode("utf-16-le") not in data, path

    def test_without_the_county_encryption_key_it_is_refused(self, tmp_path, county):
        device = new_device(tmp_path / "unpinned")
        county.pin_on(device.store, device.identity.device_id, encryption_key=False)
        error = refused(device, "ENCRYPTION_KEY_MISSING", lambda: enrolment(device))
        assert error.message.startswith("先同步一次以取得县医保局的加密公钥")

    @pytest.mark.parametrize(
        ("changes", "code"),
        [
            (
                {"id_number": ID_NUMBER[:-1] + ("0" if ID_NUMBER[-1] != "0" else "1")},
                "BAD_ID_NUMBER",
            ),
            ({"id_number": None}, "ID_NUMBER_REQUIRED"),
            (
                {"applicant": {"name": "王小明", "gender": "F", "birth_date": "1990-01-01"}},
                "ID_NUMBER_MISMATCH",
            ),
            (
                {"applicant": {"name": "王小明", "gender": "M", "birth_date": "1991-01-01"}},
                "ID_NUMBER_MISMATCH",
            ),
            ({"applicant": None}, "BAD_INPUT"),
            ({"insured_id": RESIDENT}, "BAD_INPUT"),
            (
                {"details": {"insurance_type": "employee", "category": None, "village": None}},
                "BAD_INPUT",
            ),
            ({"operator": "nobody"}, "UNKNOWN_OPERATOR"),
        ],
    )
    def test_bad_input_is_refused_and_changes_nothing(self, device, changes, code):
        error = refused(device, code, lambda: enrolment(device, **changes))
        assert ID_NUMBER not in error.message


class TestPhotos:
    def test_photos_are_files_named_by_hash_private_and_indexed(self, device):
        record = chronic(device, photos=[(JPEG, "诊断证明"), (PNG, "")])
        attachments = record["body"]["attachments"]
        assert [a["type"] for a in attachments] == ["image/jpeg", "image/png"]
        assert attachments[1]["label"] == "照片2"
        folder = device.data_dir / "attachments"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for item, data in zip(attachments, (JPEG, PNG), strict=True):
            path = folder / item["sha256"]
            assert path.read_bytes() == data and item["bytes"] == len(data)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        view = sr.request(device.store, record["tx_id"])
        assert [a["sha256"] for a in view.attachments] == [a["sha256"] for a in attachments]

    def test_the_same_photo_in_two_requests_is_one_file(self, device):
        first = chronic(device)
        second = chronic(device)
        assert first["body"]["attachments"] == second["body"]["attachments"]
        assert len(list((device.data_dir / "attachments").iterdir())) == 1

    @pytest.mark.parametrize(
        ("photos", "code"),
        [
            ([], "PHOTO_REQUIRED"),
            ([(JPEG, str(i)) for i in range(7)], "TOO_MANY_PHOTOS"),
            ([(b"GIF89a" + b"x" * 50, "")], "PHOTO_TYPE"),
            ([(b"", "")], "BAD_PHOTO"),
            ([(b"\xff\xd8\xff" + b"x" * (3 * 1024 * 1024 - 2), "")], "PHOTO_TOO_LARGE"),
            (
                [(b"\xff\xd8\xff" + bytes([i]) * (3 * 1024 * 1024 - 3), str(i)) for i in range(5)],
                "PHOTOS_TOO_LARGE",
            ),
            ([(JPEG, "说明" * 30)], "BAD_PHOTO"),
        ],
    )
    def test_out_of_bounds_photos_are_refused_and_no_file_is_left(self, device, photos, code):
        refused(device, code, lambda: chronic(device, photos=photos))

    def test_a_refusal_after_the_photos_were_checked_leaves_no_file(self, device):
        refused(device, "UNKNOWN_PERSON", lambda: chronic(device, insured_id="99999999999999"))
        refused(device, "UNKNOWN_OPERATOR", lambda: chronic(device, operator="nobody"))

    def test_a_failure_while_signing_takes_back_the_new_photo(self, device, monkeypatch):
        def broken(*args, **kwargs):
            raise OSError("disk gone")

        # the index is written as the record is appended, in the same transaction
        monkeypatch.setattr("edge.adapters.sqlite_store.index_request_record", broken)
        before = snapshot(device)
        with pytest.raises(OSError):
            chronic(device)
        assert snapshot(device) == before

    def test_photos_a_crash_left_unnamed_are_swept_and_named_ones_stay(self, device):
        named = chronic(device)["body"]["attachments"][0]["sha256"]
        files = AttachmentFiles(device.data_dir)
        # A crash after writing a request's photo, before its record was committed:
        assert files.store(PNG)[1]  # written: no request names it
        (device.data_dir / "attachments" / ".part-x1y2").write_bytes(b"half a photo")
        assert sr.sweep_unnamed_photos(device.store, device.data_dir) == 2
        assert files.stored_names() == [named] and files.read(named) == JPEG
        assert sr.sweep_unnamed_photos(device.store, device.data_dir) == 0
        with pytest.raises(AttachmentError):
            files.remove_name("../clinic.db")


class TestOtherKinds:
    def test_renewal_filing_and_complaint(self, device):
        settled = device.settle(NOW, RESIDENT)
        requests = [
            sr.new_request(
                device.store,
                device.identity,
                device.data_dir,
                kind=kind,
                operator=OPERATOR,
                insured_id=RESIDENT,
                details=details,
                now=NOW,
            )
            for kind, details in [
                ("renewal", {"year": 2027, "premium_tx_id": None}),
                (
                    "cross_region_filing",
                    {
                        "filing_type": "referral",
                        "destination": "南京市",
                        "valid_from": "2026-12-01",
                        "valid_to": None,
                        "reason": "转诊",
                    },
                ),
                (
                    "complaint",
                    {
                        "settlement_tx_id": settled["tx_id"],
                        "settlement_seq": settled["seq"],
                        "grounds": "报销比例不对",
                    },
                ),
            ]
        ]
        views = sr.requests(device.store)
        assert [v.kind for v in views] == ["complaint", "cross_region_filing", "renewal"]
        assert [v.seq for v in views] == [r.record["seq"] for r in reversed(requests)]
        assert sr.requests(device.store, kind="renewal")[0].details["year"] == 2027
        assert sr.request(device.store, str(requests[0].record["seq"])).kind == "renewal"

    def test_a_complaint_names_an_unreversed_settlement_of_this_ledger(self, device):
        settled = device.settle(NOW, RESIDENT)

        def complaint(tx_id, seq, insured_id=RESIDENT):
            details = {"settlement_tx_id": tx_id, "settlement_seq": seq, "grounds": "多收了"}
            return sr.new_request(
                device.store,
                device.identity,
                device.data_dir,
                kind="complaint",
                operator=OPERATOR,
                insured_id=insured_id,
                details=details,
                now=NOW,
            )

        refused(device, "UNKNOWN_SETTLEMENT", lambda: complaint("no-such-tx", 1))
        refused(device, "BAD_INPUT", lambda: complaint(settled["tx_id"], settled["seq"] + 1))
        refused(
            device,
            "BAD_INPUT",
            lambda: complaint(settled["tx_id"], settled["seq"], "32011500000002"),
        )
        services.reverse_settlement(
            device.store,
            device.identity,
            tx_id=settled["tx_id"],
            reason="录错",
            operator=OPERATOR,
            now=NOW,
        )
        refused(device, "ALREADY_REVERSED", lambda: complaint(settled["tx_id"], settled["seq"]))

    def test_an_unknown_kind_or_state_is_refused(self, device):
        refused(device, "BAD_REQUEST_KIND", lambda: chronic(device, kind="lottery"))
        with pytest.raises(Rejection):
            sr.requests(device.store, state="lost")


def decision_for(device, record, county, serial=1, outcome="approved", **changes) -> dict:
    kind = record["body"]["kind"]
    results = {
        "enrolment": {"insured_id": "32011500009001", "roster_version": "2026.11.1"},
        "chronic_certificate": {
            "disease_code": "I10",
            "valid_from": "2026-11-27",
            "valid_to": None,
            "roster_version": "2026.11.1",
        },
    }
    decision = {
        "v": 1,
        "kind": "request_decision",
        "serial": serial,
        "device_id": device.identity.device_id,
        "clinic": "C1",
        "request_tx_id": record["tx_id"],
        "request_kind": kind,
        "outcome": outcome,
        "reason": None if outcome == "approved" else "诊断证明不清楚",
        "decided_by": "coord-t1",
        "decided_at": (NOW + timedelta(hours=2)).isoformat(),
        "result": results[kind] if outcome == "approved" else None,
    }
    decision.update(changes)
    return county.sign(decision)


class TestDecisions:
    def apply(self, device, county, document, key=None):
        return sr.apply_decision(
            device.store,
            device.identity,
            document,
            key or county.public_key,
            NOW + timedelta(hours=3),
        )

    def test_a_decision_is_kept_signed_as_an_event_and_shown(self, device, county):
        record = enrolment(device)
        device.store.db.execute("UPDATE device SET synced_seq = ?", [record["seq"]])
        assert sr.request(device.store, record["tx_id"]).state == "submitted"
        document = decision_for(device, record, county)
        assert self.apply(device, county, document) == "applied"
        view = sr.request(device.store, record["tx_id"])
        assert (view.state, view.result["insured_id"]) == ("approved", "32011500009001")
        assert [d["serial"] for d in view.decisions] == [1]
        event = device.records()[-1]
        assert event["kind"] == "event" and event["body"] == {
            "event": "request_decided",
            "request_tx_id": record["tx_id"],
            "serial": 1,
            "outcome": "approved",
        }
        assert self.apply(device, county, document) == "known"  # idempotent by serial
        assert device.records()[-1] == event
        assert device.store.last_decision_serial() == 1

    def test_the_latest_decision_counts_and_more_info_allows_a_follow_up(self, device, county):
        record = chronic(device)
        refused(device, "NOT_ASKED", lambda: chronic(device, follow_up_of=record["tx_id"]))
        self.apply(device, county, decision_for(device, record, county, 4, "more_info"))
        view = sr.request(device.store, record["tx_id"])
        assert (view.state, view.reason) == ("more_info", "诊断证明不清楚")
        refused(device, "BAD_INPUT", lambda: enrolment(device, follow_up_of=record["tx_id"]))
        follow_up = chronic(device, photos=[(PNG, "清晰的诊断证明")], follow_up_of=record["tx_id"])
        assert sr.request(device.store, record["tx_id"]).follow_ups == [follow_up["tx_id"]]
        self.apply(device, county, decision_for(device, record, county, 9, "rejected"))
        assert sr.requests(device.store, state="rejected")[0].tx_id == record["tx_id"]
        assert sr.request(device.store, follow_up["tx_id"]).state == "pending"

    @pytest.mark.parametrize(
        "problem",
        ["forged", "other_device", "unknown_request", "wrong_kind", "no_reason", "not_a_document"],
    )
    def test_bad_decisions_are_refused_and_change_nothing(self, device, county, problem):
        record = chronic(device)
        document = decision_for(device, record, county)
        code = "BAD_DECISION"
        if problem == "forged":
            document = County().sign(document["decision"])
            code = "BAD_DECISION_SIGNATURE"
        elif problem == "other_device":
            document = decision_for(device, record, county, device_id="dev-someone-else")
            code = "DECISION_OTHER_DEVICE"
        elif problem == "unknown_request":
            document = decision_for(device, record, county, request_tx_id="not-a-request")
            code = "UNKNOWN_REQUEST"
        elif problem == "wrong_kind":
            document = decision_for(
                device,
                record,
                county,
                request_kind="renewal",
                result={"year": 2027, "roster_version": "2026.11.1"},
            )
        elif problem == "no_reason":
            document = decision_for(device, record, county, outcome="rejected", reason=None)
        else:
            document = {"decision": document["decision"]}
        refused(device, code, lambda: self.apply(device, county, document))
        assert sr.request(device.store, record["tx_id"]).state == "pending"

    def test_a_changed_document_under_a_known_serial_is_refused(self, device, county):
        record = chronic(device)
        self.apply(device, county, decision_for(device, record, county, 3, "more_info"))
        other = decision_for(device, record, county, 3, "rejected")
        refused(device, "DECISION_CONFLICT", lambda: self.apply(device, county, other))


def test_the_data_dir_files_are_private(device):
    chronic(device)
    for path in Path(device.data_dir, "attachments").iterdir():
        assert os.stat(path).st_mode & 0o077 == 0


def test_m014_indexes_the_requests_a_restored_ledger_already_holds(device):
    """A ledger restored into a device older than m014 may hold requests: the step
    indexes them, photos and names included, as the store does when it appends one."""
    from edge.adapters.sqlite_store import SqliteDeviceStore

    record = chronic(device)
    expected = sr.request(device.store, record["tx_id"]).to_dict()
    with device.store.write_transaction():
        for statement in (
            "DROP TABLE request_decision",
            "DROP TABLE request_attachment",
            "DROP TABLE service_request",
            "ALTER TABLE sync_enrollment DROP COLUMN county_encryption_key",
            "DELETE FROM _sqlite_migrations WHERE name = 'm014_service_requests'",
        ):
            device.store.db.execute(statement)
    device.store.close()
    device.store = SqliteDeviceStore.open(device.data_dir)
    assert sr.request(device.store, record["tx_id"]).to_dict() == expected


class TestRenewalPremium:
    """A renewal names the premium that paid it: of this ledger, not reversed, covering the
    person, for the year renewed."""

    @staticmethod
    def collect(device, insured_ids, year):
        return premiums.collect_premium(
            device.store, device.identity, operator=OPERATOR, payer_name="张建国",
            payer_insured_id=None, insured_ids=insured_ids, year=year, method="cash",
            reference=None, account_holder=None, now=NOW,
        ).record  # fmt: skip

    @staticmethod
    def renewal(device, year, premium_tx_id, insured_id=RESIDENT):
        return sr.new_request(
            device.store, device.identity, device.data_dir, kind="renewal", operator=OPERATOR,
            insured_id=insured_id, details={"year": year, "premium_tx_id": premium_tx_id},
            now=NOW,
        ).record  # fmt: skip

    def test_only_the_persons_unreversed_premium_of_that_year(self, device):
        year, other_year = premiums.premium_quote(device.store, [RESIDENT], None, NOW.date()
                                                  ).year_choices  # fmt: skip
        family = self.collect(device, [RESIDENT, "32011500000002"], year)
        neighbour = self.collect(device, ["32011500000003"], year)
        earlier = self.collect(device, [RESIDENT], other_year)
        settled = device.settle(NOW, "32011500000004")

        def check(code, premium_tx_id, renewed=year):
            error = refused(device, code, lambda: self.renewal(device, renewed, premium_tx_id))
            assert " / " in error.message  # Chinese first, then English
            return error

        check("UNKNOWN_PREMIUM", settled["tx_id"])
        check("UNKNOWN_PREMIUM", "no-such-tx")
        check("PREMIUM_OTHER_PERSON", neighbour["tx_id"])
        check("PREMIUM_OTHER_YEAR", earlier["tx_id"])
        assert "年度" in check("PREMIUM_OTHER_YEAR", family["tx_id"], other_year).message
        premiums.reverse_premium(device.store, device.identity, earlier["tx_id"],
                                 operator=OPERATOR, reason="重复缴费", now=NOW)  # fmt: skip
        check("PREMIUM_REVERSED", earlier["tx_id"], other_year)

        record = self.renewal(device, year, family["tx_id"])
        assert record["body"]["details"] == {"year": year, "premium_tx_id": family["tx_id"]}
        # the person's premiums a renewal may name, as the terminal offers them
        offered = premiums.person_premiums(device.store, RESIDENT, [year, other_year])
        assert [row["tx_id"] for row in offered] == [family["tx_id"]]


def test_a_refused_request_never_removes_a_photo_another_request_recorded_meanwhile(
    device, monkeypatch
):
    """Two requests name the same photo at once; the first is refused after it wrote the
    file, and the second is recorded between the first's rollback and its clean-up (it
    found the file there): the file stays, since a stored request names it."""
    other = SqliteDeviceStore.open(device.data_dir)
    original_append = services.append_record
    original_transaction = device.store.write_transaction
    second: list[dict] = []

    def failing_append(*args, **kwargs):
        raise RuntimeError("the disk is full")

    @contextmanager
    def transaction_then_the_other_request():
        outermost = device.store._write_depth == 0
        try:
            with original_transaction():
                yield
        except RuntimeError:
            if outermost and not second:  # right after the first request's rollback
                with monkeypatch.context() as restored:
                    restored.setattr(services, "append_record", original_append)
                    second.append(
                        sr.new_request(
                            other, device.identity, device.data_dir, kind="chronic_certificate",
                            operator=OPERATOR, insured_id="32011500000002",
                            details=chronic_details(), photos=[(JPEG, "诊断证明")], now=NOW,
                        ).record
                    )  # fmt: skip
            raise

    try:
        with monkeypatch.context() as patched:
            patched.setattr(services, "append_record", failing_append)
            patched.setattr(device.store, "write_transaction", transaction_then_the_other_request)
            with pytest.raises(RuntimeError):
                chronic(device)
        (recorded,) = second
        digest = recorded["body"]["attachments"][0]["sha256"]
        assert (device.data_dir / "attachments" / digest).read_bytes() == JPEG
        assert AttachmentFiles(device.data_dir).read(digest) == JPEG
        # Refused with no other request naming it: the file this call wrote goes.
        with monkeypatch.context() as patched:
            patched.setattr(services, "append_record", failing_append)
            with pytest.raises(RuntimeError):
                chronic(device, photos=[(PNG, "病历")])
        assert not (device.data_dir / "attachments" / sr_digest(PNG)).exists()
    finally:
        other.close()


def chronic_details() -> dict:
    return {"disease_code": "I10", "disease_name": "高血压", "scheme": "two_diseases",
            "hospital": None, "diagnosed_on": None}  # fmt: skip


def sr_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
