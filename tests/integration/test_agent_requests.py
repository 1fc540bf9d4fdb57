"""The agent's share of the service point against a real hub, on both hub stores: the
county encryption key pinned at enrollment (or fetched later), requests taken on the
device reaching the hub with their photos, and the county's decisions coming back,
applied and shown, with the roster update that lets the new person settle."""

import json
from datetime import timedelta

import pytest
from sync_helpers import NOW, OPERATOR, hub_store

from edge import service_requests as sr
from edge import services
from edge.adapters.attachments import AttachmentFiles
from edge.adapters.sealing import key_id, public_key_b64
from edge.domain.model import Rejection
from edge.domain.records import body_problem
from edge.maintenance import probes
from sync import agent
from sync.agent import service_point, state
from sync.agent.client import HubClient
from sync.agent.jobs import client_for
from sync.agent.status import sync_status
from sync.hub.adapters.county_key import ensure_seal_key
from sync.hub.services import service_requests as hub_requests
from sync.protocol import SyncError

# A valid GB 11643 number: born 1990-03-07, a woman (17th digit even).
ID_NUMBER = "320115199003070027"
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 300
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
ENROLMENT = {"insurance_type": "resident", "category": None, "village": "东村"}
APPLICANT = {"name": "王小梅", "gender": "F", "birth_date": "1990-03-07"}
CHRONIC = {
    "disease_code": "I10",
    "disease_name": "高血压",
    "scheme": "two_diseases",
    "hospital": None,
    "diagnosed_on": None,
}
FILING = {
    "filing_type": "temporary",
    "destination": "上海市",
    "valid_from": "2026-12-01",
    "valid_to": None,
    "reason": "探亲",
}


def sync(device, now=NOW) -> dict:
    report = agent.sync_once(device.store, device.identity, device.data_dir, now)
    assert report["ok"], report
    return report


def new(device, kind, now=NOW, **arguments) -> dict:
    return sr.new_request(
        device.store, device.identity, device.data_dir, kind=kind, operator=OPERATOR,
        now=now, **arguments,
    ).record  # fmt: skip


def decide(hub_dir, hub, tx_id, outcome="approved", **options) -> dict:
    with hub_store(hub_dir) as store:
        return hub_requests.decide(
            store, hub.app.extensions["clinic_hub"].county_key, tx_id, outcome=outcome,
            reason=options.pop("reason", None), decided_by="coord", township=None,
            now=NOW + timedelta(hours=1), **options,
        )  # fmt: skip


def events(device, name) -> list[dict]:
    return [r["body"] for r in device.records() if r["kind"] == "event"
            and r["body"]["event"] == name]  # fmt: skip


def test_the_key_is_pinned_at_enrollment_and_fetched_by_a_device_enrolled_before(
    hub, hub_dir, make_enrolled_device
):
    device = make_enrolled_device("device")
    pinned = state.enrollment(device.store).county_encryption_key
    assert pinned is not None and device.store.county_encryption_key() == pinned
    assert events(device, "enrolled")[0]["encryption_key_id"] == key_id(pinned)

    # Enrolled before the hub had the key: the next sync fetches, verifies and pins it.
    older = make_enrolled_device("older")
    with older.store.write_transaction():
        older.store.db.execute("UPDATE sync_enrollment SET county_encryption_key = NULL")
    with pytest.raises(Rejection, match="先同步一次"):
        new(older, "enrolment", applicant=APPLICANT, id_number=ID_NUMBER, details=ENROLMENT)
    report = sync(older)
    assert report["encryption_key_pinned"] is True
    assert older.store.county_encryption_key() == pinned
    assert events(older, "encryption_key_pinned") == [
        {"event": "encryption_key_pinned", "key_id": key_id(pinned)}
    ]

    # Another key never replaces the pinned one.
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    with pytest.raises(SyncError) as caught:
        state.pin_encryption_key(older.store, public_key_b64(X25519PrivateKey.generate()))
    assert caught.value.code == "ENCRYPTION_KEY_CHANGED"
    assert older.store.county_encryption_key() == pinned


def test_a_statement_the_county_did_not_sign_is_not_pinned(hub, make_enrolled_device):
    device = make_enrolled_device("device")
    statement = client_for(state.enrollment(device.store), device.identity,
                                 None).encryption_key(NOW)  # fmt: skip
    county_key = state.enrollment(device.store).county_public_key
    assert service_point.encryption_key_of(statement, county_key) == (
        device.store.county_encryption_key()
    )
    forged = {**statement, "statement": {**statement["statement"], "key_id": "0" * 16}}
    with pytest.raises(SyncError) as caught:
        service_point.encryption_key_of(forged, county_key)
    assert caught.value.code == "BAD_ENCRYPTION_KEY"


def test_an_enrolment_taken_offline_is_approved_and_the_person_then_settles(
    hub, hub_dir, make_enrolled_device
):
    device = make_enrolled_device("device")
    record = new(device, "enrolment", applicant=APPLICANT, id_number=ID_NUMBER,
                 details=ENROLMENT)  # fmt: skip
    assert sr.request(device.store, record["tx_id"]).state == "pending"
    sync(device)
    assert sr.request(device.store, record["tx_id"]).state == "submitted"
    with hub_store(hub_dir) as store:
        opened = hub_requests.request_detail(
            store, record["tx_id"], township=None, seal_key=ensure_seal_key(hub_dir)
        )
    assert opened["id_number"] == ID_NUMBER  # the county opens what the device sealed

    decision = decide(hub_dir, hub, record["tx_id"])["decision"]
    later = NOW + timedelta(hours=2)
    report = sync(device, later)
    assert report["decisions_applied"] == [decision["serial"]]
    view = sr.request(device.store, record["tx_id"])
    assert (view.state, view.result["insured_id"]) == ("approved", decision["result"]["insured_id"])
    assert events(device, "request_decided")[-1]["serial"] == decision["serial"]
    assert state.installed_version(device.store, "roster") == decision["result"]["roster_version"]
    settled = device.settle(later, insured_id=decision["result"]["insured_id"])
    assert settled["body"]["insured_id"] == decision["result"]["insured_id"]
    assert sync(device, later + timedelta(minutes=1))["decisions_applied"] == []  # kept once


def test_photos_follow_their_request_and_a_rejection_says_why(hub, hub_dir, make_enrolled_device):
    device = make_enrolled_device("device")
    record = new(device, "chronic_certificate", insured_id="32011500000002", details=CHRONIC,
                 photos=[(PNG, "诊断证明"), (JPEG, "病历")])  # fmt: skip
    # A photo a crash left (written, its request never committed) is swept by the sync.
    AttachmentFiles(device.data_dir).store(JPEG + b"never named")
    # Before the record is acknowledged the hub would refuse the photos: none is sent.
    report = agent.sync_once(device.store, device.identity, device.data_dir, NOW)
    assert report["ok"] and report["attachments_uploaded"] == 2
    assert report["attachments_swept"] == 1
    assert len(AttachmentFiles(device.data_dir).stored_names()) == 2
    assert all(a["uploaded_at"] for a in sr.request(device.store, record["tx_id"]).attachments)
    with hub_store(hub_dir) as store:
        assert hub_requests.attachment(store, record["body"]["attachments"][0]["sha256"],
                                       township=None) == ("image/png", PNG)  # fmt: skip
    assert sync(device)["attachments_uploaded"] == 0

    decide(hub_dir, hub, record["tx_id"], "rejected", reason="诊断证明不清晰，请重拍")
    sync(device, NOW + timedelta(hours=2))
    view = sr.request(device.store, record["tx_id"])
    assert (view.state, view.reason) == ("rejected", "诊断证明不清晰，请重拍")


def test_photos_go_a_bounded_number_a_run(hub, make_enrolled_device):
    device = make_enrolled_device("device")
    for start in (0, 6, 12):
        photos = [(PNG + bytes([n]), str(n)) for n in range(start, min(start + 6, 13))]
        new(device, "chronic_certificate", insured_id="32011500000002", details=CHRONIC,
            photos=photos)  # fmt: skip
    assert sync(device)["attachments_uploaded"] == service_point.ATTACHMENTS_PER_RUN == 12
    assert sync(device)["attachments_uploaded"] == 1
    assert device.store.attachments_to_upload(100) == []


def test_a_more_info_request_is_answered_by_a_follow_up(hub, hub_dir, make_enrolled_device):
    device = make_enrolled_device("device")
    record = new(device, "chronic_certificate", insured_id="32011500000002", details=CHRONIC,
                 photos=[(PNG, "诊断证明")])  # fmt: skip
    sync(device)
    decide(hub_dir, hub, record["tx_id"], "more_info", reason="请补充病历首页")
    sync(device, NOW + timedelta(hours=2))
    assert sr.request(device.store, record["tx_id"]).state == "more_info"
    follow_up = new(device, "chronic_certificate", NOW + timedelta(hours=2),
                    insured_id="32011500000002", details=CHRONIC, photos=[(JPEG, "病历首页")],
                    follow_up_of=record["tx_id"])  # fmt: skip
    sync(device, NOW + timedelta(hours=2))
    with hub_store(hub_dir) as store:
        detail = hub_requests.request_detail(store, record["tx_id"], township=None)
        followed = hub_requests.request_detail(store, follow_up["tx_id"], township=None)
    assert detail["state"] == "pending"  # the county has it in its queue again
    assert [a["received"] for a in followed["attachments"]] == [True]


def test_a_decision_that_does_not_verify_is_kept_out_and_signed_once(
    hub, hub_dir, make_enrolled_device
):
    device = make_enrolled_device("device")
    first = new(device, "cross_region_filing", insured_id="32011500000003", details=FILING)
    second = new(device, "cross_region_filing", insured_id="32011500000003", details=FILING)
    sync(device)
    tampered = decide(hub_dir, hub, first["tx_id"])
    tampered["decision"]["result"]["filing_no"] = "FORGED-1"  # altered after signing
    with hub_store(hub_dir) as store, store.unit_of_work():
        store.conn.execute(
            "UPDATE request_decision SET document = ? WHERE serial = ?",
            [json.dumps(tampered, ensure_ascii=False), tampered["decision"]["serial"]],
        )
    good = decide(hub_dir, hub, second["tx_id"])["decision"]
    later = NOW + timedelta(hours=2)
    report = agent.sync_once(device.store, device.identity, device.data_dir, later)
    assert report["decisions_refused"] == [
        {"serial": tampered["decision"]["serial"], "code": "BAD_DECISION_SIGNATURE"}
    ]
    assert report["decisions_applied"] == [good["serial"]]
    assert sr.request(device.store, first["tx_id"]).state == "submitted"
    assert (
        sr.request(device.store, second["tx_id"]).result["filing_no"]
        == (good["result"]["filing_no"])
    )
    agent.sync_once(device.store, device.identity, device.data_dir, later)
    # signed once; the next run starts past it
    assert len(events(device, "decision_refused")) == 1
    (refusal,) = [r for r in state.refusals(device.store) if r.kind == "decision"]
    assert refusal.code == "BAD_DECISION_SIGNATURE" and refusal.message_zh.startswith("决定")


def test_a_photo_gone_from_the_device_is_set_aside_and_the_others_still_go(
    hub, hub_dir, make_enrolled_device
):
    device = make_enrolled_device("device")
    lost = new(device, "chronic_certificate", insured_id="32011500000002", details=CHRONIC,
               photos=[(PNG, "诊断证明")])  # fmt: skip
    kept = new(device, "chronic_certificate", insured_id="32011500000003", details=CHRONIC,
               photos=[(JPEG, "病历")])  # fmt: skip
    (device.data_dir / "attachments" / lost["body"]["attachments"][0]["sha256"]).unlink()
    report = sync(device)
    assert report["attachments_missing"] == [lost["body"]["attachments"][0]["sha256"]]
    assert report["attachments_uploaded"] == 1
    assert sr.request(device.store, kept["tx_id"]).attachments[0]["uploaded_at"]
    assert sr.request(device.store, lost["tx_id"]).attachments[0]["missing_at"]
    assert sync(device)["attachments_uploaded"] == 0  # not tried again
    assert [e["sha256"] for e in events(device, "attachment_missing")] == [
        lost["body"]["attachments"][0]["sha256"]
    ]
    assert [r.code for r in state.refusals(device.store) if r.kind == "attachment"] == [
        "ATTACHMENT_MISSING"
    ]


def test_a_photo_the_hub_refuses_is_set_aside_and_the_next_requests_photos_still_go(
    hub, hub_dir, make_enrolled_device
):
    device = make_enrolled_device("device")
    # A request the hub flags as malformed (a scheme no county knows) names a photo: the hub
    # holds no stored request naming it, so it refuses the photo (ATTACHMENT_UNKNOWN), on
    # every try alike.
    digest, _ = AttachmentFiles(device.data_dir).store(PNG)
    body = {
        "kind": "chronic_certificate",
        "operator": OPERATOR,
        "insured_id": "32011500000002",
        "applicant": None,
        "sealed_id_number": None,
        "details": {**CHRONIC, "scheme": "bogus"},
        "attachments": [
            {"sha256": digest, "type": "image/png", "bytes": len(PNG), "label": "诊断证明"}
        ],
        "note": None,
        "follow_up_of": None,
    }
    assert body_problem("service_request", body) is not None
    flagged = services.append_record(device.store, device.identity, "service_request", body, NOW)
    kept = new(device, "chronic_certificate", insured_id="32011500000003", details=CHRONIC,
               photos=[(JPEG, "病历")])  # fmt: skip

    report = sync(device)
    assert report["attachments_refused"] == [{"sha256": digest, "code": "ATTACHMENT_UNKNOWN"}]
    assert report["attachments_uploaded"] == 1
    assert sr.request(device.store, kept["tx_id"]).attachments[0]["uploaded_at"]
    with hub_store(hub_dir) as store:
        jpeg = kept["body"]["attachments"][0]["sha256"]
        assert hub_requests.attachment(store, jpeg, township=None) == ("image/jpeg", JPEG)
    # Set aside: never tried again, remembered and signed once under the hub's code.
    (photo,) = device.store.request_attachments(flagged["tx_id"])
    assert photo["missing_at"] and photo["uploaded_at"] is None
    later = sync(device, NOW + timedelta(minutes=5))
    assert "attachments_refused" not in later and later["attachments_uploaded"] == 0
    assert events(device, "attachment_refused") == [
        {"event": "attachment_refused", "sha256": digest, "code": "ATTACHMENT_UNKNOWN"}
    ]
    (refusal,) = [r for r in state.refusals(device.store) if r.kind == "attachment"]
    assert (refusal.version, refusal.code) == (digest, "ATTACHMENT_UNKNOWN")
    assert refusal.message_zh.startswith("这台设备的申请中没有这张照片")
    assert any(
        r["kind"] == "attachment" and r["version"] == digest
        for r in sync_status(device.store)["refused_updates"]
    )
    # and the doctor names it, with the hub's reason
    said = probes.sync(device.store, NOW, NOW.isoformat())
    assert said.status == "warning"
    assert f"{digest[:12]} ATTACHMENT_UNKNOWN" in said.message.zh
    assert "1 request photos could not be uploaded" in said.message.en


def test_a_hub_that_fails_keeps_the_photo_for_the_next_try(hub, make_enrolled_device, monkeypatch):
    device = make_enrolled_device("device")
    record = new(device, "chronic_certificate", insured_id="32011500000002", details=CHRONIC,
                 photos=[(PNG, "诊断证明")])  # fmt: skip
    sync(device)  # records and photo go
    device.store.db.execute("UPDATE request_attachment SET uploaded_at = NULL")

    def failing(self, sha256, data, content_type, now):
        raise SyncError("HUB_ERROR", "500", retryable=True)

    with monkeypatch.context() as patched:  # a 5xx as the client raises it
        patched.setattr(HubClient, "put_attachment", failing)
        report = agent.sync_once(device.store, device.identity, device.data_dir, NOW)
    assert not report["ok"]
    (photo,) = sr.request(device.store, record["tx_id"]).attachments
    assert photo["missing_at"] is None and photo["uploaded_at"] is None
    assert events(device, "attachment_refused") == []
    assert sync(device, NOW + timedelta(minutes=5))["attachments_uploaded"] == 1
