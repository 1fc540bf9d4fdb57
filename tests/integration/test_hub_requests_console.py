"""The county console's service-point pages: the request queues (a tab per kind, counts,
waiting ones first), a request with its photos and decision form (approve, reject with a
reason, ask for more; CSRF), the ID number opened only on a POST and audited, a photo
served as the image it is and only when the request names it, coordinators limited to
their township (404), and the premiums per clinic with the cash to hand over (page and
CSV). Records are signed by real devices and uploaded to a real hub; on each hub store
(`hub_backend`)."""

import csv
import hashlib
import io
import logging
import re
from datetime import timedelta

import pytest
from console_support import PASSWORD, page, signed_in, token
from hub_request_helpers import (
    APPLICANT_ID,
    append,
    enrolment,
    keep_photos,
    photo_entry,
    png,
    premium,
    put_photo,
    upload,
)
from sync_helpers import NOW, hub_store

from edge.domain.money import format_yuan
from sync.hub import console_auth
from sync.hub.adapters.audit_log import AUDIT_FILE, read_audit
from sync.hub.services import reconciliation, service_requests

CLINIC, OTHER = "ML-01", "GL-01"


@pytest.fixture
def county(hub, hub_dir, make_enrolled_device):
    """ML-01 in 秣陵街道 with an enrolment (two photos uploaded) and premiums, GL-01 in
    谷里街道 with an enrolment of its own; an admin and a coordinator of each township."""
    with hub_store(hub_dir) as store:
        console_auth.add_user(store, "admin", PASSWORD, "admin", None, NOW)
        console_auth.add_user(store, "li", PASSWORD, "coordinator", "秣陵街道", NOW)
        console_auth.add_user(store, "wang", PASSWORD, "coordinator", "谷里街道", NOW)
    ml = make_enrolled_device("ml", clinic_code=CLINIC, township="秣陵街道")
    gl = make_enrolled_device("gl", clinic_code=OTHER, township="谷里街道")
    photos = [png(1), png(2)]
    requests = {
        "ml": enrolment(ml, hub_dir, NOW, photos),
        "gl": enrolment(gl, hub_dir, NOW + timedelta(minutes=1), [png(3)], name="赵大海"),
    }
    paid = [
        premium(ml, NOW + timedelta(minutes=2), "cash", persons=2),
        premium(ml, NOW + timedelta(minutes=3), "mobile"),
        premium(ml, NOW + timedelta(minutes=4), "cash"),
    ]
    append(
        ml,
        "premium_reversal",
        {
            "reverses": paid[2]["tx_id"],
            "reverses_seq": paid[2]["seq"],
            "operator": "doc01",
            "reason": "重复收费",
            "amount": 40000,
            "method": "cash",
            "account_holder": None,
            "account_balance_after": None,
        },
        NOW + timedelta(minutes=5),
    )
    premium(gl, NOW + timedelta(minutes=6), "cash")
    for device in (ml, gl):
        upload(device, NOW)
    for data in photos:
        put_photo(hub, ml, data, NOW)
    put_photo(hub, gl, png(3), NOW)
    return {"ml": ml, "gl": gl, "requests": requests, "photos": photos}


def decisions(store, tx_id: str) -> list[dict]:
    return service_requests.request_detail(store, tx_id, township=None)["decisions"]


def test_the_queue_shows_a_tab_per_kind_with_counts_and_the_requests(county, hub):
    admin = signed_in(hub.app, "admin")
    queue = page(admin, "/console/requests")
    for tab in ("参保登记", "续保", "慢特病/两病认定", "异地就医备案", "投诉复核"):
        assert tab in queue
    assert re.search(r'data-kind="enrolment"[^>]*>参保登记 <span class="count">2</span>', queue)
    assert county["requests"]["ml"]["tx_id"] in queue and county["requests"]["gl"]["tx_id"] in queue
    assert "王小梅" in queue and APPLICANT_ID not in queue
    assert "待县医保局审核" in queue
    assert county["requests"]["ml"]["tx_id"] not in page(admin, "/console/requests?kind=complaint")
    assert "没有申请" in page(admin, "/console/requests?kind=enrolment&state=approved")
    assert admin.get("/console/requests?kind=nothing").status_code == 404
    # Waiting ones first: the older request, once the county asked for more, comes after.
    older, newer = county["requests"]["ml"]["tx_id"], county["requests"]["gl"]["tx_id"]
    assert queue.index(older) < queue.index(newer)
    asked = admin.post(
        f"/console/requests/{older}/decision",
        data={"outcome": "more_info", "reason": "缺少照片", "csrf_token": token(queue)},
    )
    assert asked.status_code == 302
    queue = page(admin, "/console/requests")
    assert queue.index(newer) < queue.index(older)
    assert re.search(r'data-kind="enrolment"[^>]*>参保登记 <span class="count">1</span>', queue)
    waiting = page(admin, "/console/requests?state=more_info")
    assert older in waiting and newer not in waiting


def test_coordinators_see_and_decide_their_own_township_only(county, hub):
    li, wang = signed_in(hub.app, "li"), signed_in(hub.app, "wang")
    mine, theirs = county["requests"]["ml"]["tx_id"], county["requests"]["gl"]["tx_id"]
    queue = page(wang, "/console/requests?township=秣陵街道")
    assert theirs in queue and mine not in queue
    photo = hashlib.sha256(county["photos"][0]).hexdigest()
    for path in (f"/console/requests/{mine}", f"/console/requests/{mine}/attachments/{photo}"):
        assert wang.get(path).status_code == 404
    for action in ("decision", "id-number"):
        refused = wang.post(
            f"/console/requests/{mine}/{action}",
            data={"outcome": "approved", "csrf_token": token(queue)},
        )
        assert refused.status_code == 404
    assert li.get("/console/requests/no-such-request").status_code == 404
    assert "待县医保局审核" in page(li, f"/console/requests/{mine}")


def test_reject_needs_a_reason_and_the_form_its_token_then_more_info_is_asked(county, hub, hub_dir):
    li = signed_in(hub.app, "li")
    tx = county["requests"]["ml"]["tx_id"]
    path = f"/console/requests/{tx}"
    shown = page(li, path)
    assert "批准" in shown and "不予批准" in shown and "要求补充材料" in shown
    # Without the form's token nothing is decided.
    assert li.post(f"{path}/decision", data={"outcome": "approved"}).status_code == 400
    refused = li.post(f"{path}/decision", data={"outcome": "rejected", "csrf_token": token(shown)})
    assert refused.status_code == 400
    assert 'role="alert"' in refused.get_data(as_text=True)
    assert "待县医保局审核" in page(li, path)
    with hub_store(hub_dir) as store:
        assert decisions(store, tx) == []

    asked = li.post(
        f"{path}/decision",
        data={"outcome": "more_info", "reason": "户口本照片不清楚", "csrf_token": token(shown)},
    )
    assert asked.status_code == 302
    confirmed = page(li, asked.headers["Location"])
    assert "审核结果已记录：待补充材料" in confirmed
    assert "户口本照片不清楚" in confirmed and "li" in confirmed
    assert 'name="outcome"' not in confirmed  # decided: no form until the clinic answers
    with hub_store(hub_dir) as store:
        (decision,) = decisions(store, tx)
    assert decision["outcome"] == "more_info" and decision["decided_by"] == "li"


def test_an_approved_enrolment_names_the_new_person_and_the_roster_version(county, hub, hub_dir):
    li = signed_in(hub.app, "li")
    tx = county["requests"]["ml"]["tx_id"]
    shown = page(li, f"/console/requests/{tx}")
    approved = li.post(
        f"/console/requests/{tx}/decision",
        data={"outcome": "approved", "insured_id": "", "csrf_token": token(shown)},
    )
    assert approved.status_code == 302
    confirmed = page(li, approved.headers["Location"])
    assert "审核结果已记录：已批准" in confirmed
    with hub_store(hub_dir) as store:
        (decision,) = decisions(store, tx)
        roster = store.latest_publication("roster")
    assert decision["result"]["roster_version"] == roster.version
    assert decision["result"]["insured_id"] in confirmed
    assert roster.version in confirmed
    # Decided once: a second decision of the same request changes nothing.
    again = li.post(
        f"/console/requests/{tx}/decision",
        data={"outcome": "rejected", "reason": "x", "csrf_token": token(confirmed)},
    )
    assert again.status_code == 400
    with hub_store(hub_dir) as store:
        assert len(decisions(store, tx)) == 1


def test_the_id_number_is_shown_only_on_the_post_and_the_opening_is_audited(
    county, hub, hub_dir, caplog
):
    li = signed_in(hub.app, "li")
    tx = county["requests"]["ml"]["tx_id"]
    path = f"/console/requests/{tx}"
    shown = page(li, path)
    masked = APPLICANT_ID[:6] + "********" + APPLICANT_ID[-4:]
    assert masked in shown and APPLICANT_ID not in shown
    assert li.post(f"{path}/id-number").status_code == 400  # the form's token is needed
    with caplog.at_level(logging.INFO, logger="sync.hub.audit"):
        opened = li.post(f"{path}/id-number", data={"csrf_token": token(shown)})
    assert opened.status_code == 200
    assert APPLICANT_ID in opened.get_data(as_text=True)
    assert opened.headers["Cache-Control"] == "no-store"
    audit = [r.getMessage() for r in caplog.records if r.name == "sync.hub.audit"]
    assert len(audit) == 1 and "li" in audit[0] and tx in audit[0]
    (entry,) = read_audit(hub_dir)
    assert entry == {"at": NOW.isoformat(), "user": "li", "action": "open_id_number", "request": tx}
    assert (hub_dir / AUDIT_FILE).stat().st_mode & 0o777 == 0o600
    assert APPLICANT_ID not in (hub_dir / AUDIT_FILE).read_text(encoding="utf-8")
    assert all(APPLICANT_ID not in r.getMessage() for r in caplog.records)
    # Shown once: the page read again has the masked number only.
    assert APPLICANT_ID not in page(li, path)


def test_a_photo_is_served_as_the_image_it_is_and_only_when_the_request_names_it(county, hub):
    li = signed_in(hub.app, "li")
    tx = county["requests"]["ml"]["tx_id"]
    shown = page(li, f"/console/requests/{tx}")
    for data in county["photos"]:
        sha = hashlib.sha256(data).hexdigest()
        assert f"/console/requests/{tx}/attachments/{sha}" in shown
        answer = li.get(f"/console/requests/{tx}/attachments/{sha}")
        assert answer.status_code == 200
        assert answer.get_data() == data
        assert answer.headers["Content-Type"] == "image/png"
        assert answer.headers["Content-Disposition"] == "inline"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    # Another request's photo, through this request: not named here.
    other = hashlib.sha256(png(3)).hexdigest()
    assert li.get(f"/console/requests/{tx}/attachments/{other}").status_code == 404
    admin = signed_in(hub.app, "admin")
    assert admin.get(f"/console/requests/{tx}/attachments/{other}").status_code == 404
    assert admin.get(f"/console/requests/{tx}/attachments/{'0' * 64}").status_code == 404


def test_a_kept_file_that_is_not_an_image_is_never_served(county, hub, hub_dir):
    """Whatever a store holds under a named hash (written past the device API here), the
    console serves JPEG and PNG only."""
    device, data = county["ml"], b"<script>alert(1)</script>"
    request = enrolment(device, hub_dir, NOW + timedelta(minutes=40), [data])
    refused = upload(device, NOW)["attachments_refused"]  # the hub refused the upload
    assert refused == [{"sha256": hashlib.sha256(data).hexdigest(), "code": "ATTACHMENT_TYPE"}]
    sha = hashlib.sha256(data).hexdigest()
    with hub_store(hub_dir) as store, store.unit_of_work():
        store.add_attachment(sha, device.identity.device_id, "text/html", data, NOW.isoformat())
    admin = signed_in(hub.app, "admin")
    answer = admin.get(f"/console/requests/{request['tx_id']}/attachments/{sha}")
    assert answer.status_code == 404
    assert b"<script>" not in answer.get_data()


def test_premiums_per_clinic_with_the_cash_to_hand_over_and_the_csv(county, hub):
    year = NOW.year + 1
    li, admin = signed_in(hub.app, "li"), signed_in(hub.app, "admin")
    shown = page(li, f"/console/premiums?year={year}")
    # By default the year being collected: the demo policy opens next year's in September.
    assert f"{year} 年度保费收缴" in page(li, "/console/premiums")
    assert "现金应上缴" in shown
    row = re.search(r'<tr data-clinic="ML-01">(.*?)</tr>', shown, re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    texts = [re.sub(r"<[^>]+>", "", c).strip() for c in cells]
    # 4 receipts (one reversed), 4 persons; cash 120000 + mobile 40000; cash back 40000.
    # Cash 80000 + 40000 and mobile 40000 taken; 40000 of the cash given back.
    assert texts[-3:] == ["1", "¥400.00", "¥800.00"], texts
    assert 'data-clinic="GL-01"' not in shown
    both = page(admin, f"/console/premiums?year={year}")
    assert 'data-clinic="GL-01"' in both and 'data-clinic="ML-01"' in both
    totals = re.search(r'<tr class="totals">(.*?)</tr>', both, re.S).group(1)
    assert "¥1,200.00" in totals  # the two clinics' cash to hand over: 800 + 400

    answer = li.get(f"/console/premiums.csv?year={year}")
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"] == f"attachment; filename=premiums-{year}.csv"
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][-1] == "现金应上缴 cash_to_hand_over"
    assert [r[1] for r in rows[1:]] == [CLINIC, ""]
    assert rows[1][-1] == "800.00" and rows[-1][-1] == "800.00"
    assert "尚未收取保费" in page(li, f"/console/premiums?year={year + 5}")


def test_a_complaint_shows_the_settlement_beside_the_recomputation_and_is_answered(
    county, hub, hub_dir
):
    device = county["ml"]
    settled = device.settle(NOW)
    upload(device, NOW)
    with hub_store(hub_dir) as store:
        reconciliation.reconcile_pending(store, NOW)
    complaint = append(
        device,
        "service_request",
        {
            "kind": "complaint",
            "operator": "doc01",
            "insured_id": settled["body"]["insured_id"],
            "applicant": None,
            "sealed_id_number": None,
            "details": {
                "settlement_tx_id": settled["tx_id"],
                "settlement_seq": settled["seq"],
                "grounds": "报销比例不对",
            },
            "attachments": [],
            "note": None,
            "follow_up_of": None,
        },
        NOW + timedelta(minutes=20),
    )
    upload(device, NOW)
    li = signed_in(hub.app, "li")
    path = f"/console/requests/{complaint['tx_id']}"
    shown = page(li, path)
    result = settled["body"]["result"]
    for name, payer in (("total", "medfee_sumamt"), ("fund", "hifp_pay")):
        row = re.search(rf'<tr[^>]*data-payer="{payer}">(.*?)</tr>', shown, re.S).group(1)
        device_cell = re.search(r'data-side="device">([^<]*)<', row).group(1)
        county_cell = re.search(r'data-side="county">([^<]*)<', row).group(1)
        assert device_cell == county_cell == format_yuan(result[name])
    assert "报销比例不对" in shown and "投诉成立" in shown and "维持原结算" in shown
    # The settlement stands: a reason and an answer for the resident.
    refused = li.post(
        f"{path}/decision",
        data={"outcome": "rejected", "reason": "按政策计算无误", "csrf_token": token(shown)},
    )
    assert refused.status_code == 400  # no answer for the resident
    answered = li.post(
        f"{path}/decision",
        data={
            "outcome": "rejected",
            "reason": "按政策计算无误",
            "answer": "统筹基金按 60% 支付，结算无误。",
            "csrf_token": token(shown),
        },
    )
    assert answered.status_code == 302
    confirmed = page(li, answered.headers["Location"])
    assert "审核结果已记录：维持原结算" in confirmed
    assert "统筹基金按 60% 支付，结算无误。" in confirmed
    with hub_store(hub_dir) as store:
        (decision,) = decisions(store, complaint["tx_id"])
    assert decision["result"]["correction"] is False
    assert decision["result"]["answer"] == "统筹基金按 60% 支付，结算无误。"


def test_more_information_from_the_clinic_requeues_the_request_with_its_photo(county, hub, hub_dir):
    li = signed_in(hub.app, "li")
    original = county["requests"]["ml"]
    path = f"/console/requests/{original['tx_id']}"
    asked = li.post(
        f"{path}/decision",
        data={
            "outcome": "more_info",
            "reason": "缺少身份证照片",
            "csrf_token": token(page(li, path)),
        },
    )
    assert asked.status_code == 302
    device, extra = county["ml"], png(9)
    keep_photos(device, [extra])
    follow_up = append(
        device,
        "service_request",
        {
            **original["body"],
            "attachments": [photo_entry(extra, "身份证")],
            "note": "已补充身份证照片",
            "follow_up_of": original["tx_id"],
        },
        NOW + timedelta(minutes=30),
    )
    upload(device, NOW)
    put_photo(hub, device, extra, NOW)
    shown = page(li, path)
    assert "待县医保局审核" in shown and "已补充身份证照片" in shown
    assert follow_up["tx_id"] in shown
    sha = hashlib.sha256(extra).hexdigest()
    served = li.get(f"{path}/attachments/{sha}")
    assert served.status_code == 200 and served.get_data() == extra
    assert 'name="outcome"' in shown  # back in the queue: the county decides again
