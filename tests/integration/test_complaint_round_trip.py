"""A resident disputes a settlement: the complaint names it, travels to the county, the
county upholds it with an answer, its recomputation and "a correction is due", and the
terminal shows the answer and leads the doctor to the settlement to reverse it."""

from datetime import timedelta

from clock import FakeClock
from sync_helpers import NOW, OPERATOR, hub_store
from web_support import Auth, app_config

from edge import service_requests as sr
from sync import agent
from sync.hub.services import service_requests as hub_requests


def test_an_upheld_complaint_comes_back_with_its_answer_and_the_way_to_correct(
    hub, hub_dir, make_enrolled_device
):
    device = make_enrolled_device("device")
    settled = device.settle(NOW)
    complaint = sr.new_request(
        device.store, device.identity, device.data_dir, kind="complaint", operator=OPERATOR,
        details={"settlement_tx_id": settled["tx_id"], "settlement_seq": settled["seq"],
                 "grounds": "自付金额比上次多"},
        insured_id=settled["body"]["insured_id"], now=NOW + timedelta(minutes=5),
    ).record  # fmt: skip
    assert agent.sync_once(device.store, device.identity, device.data_dir, NOW)["ok"]

    with hub_store(hub_dir) as store:
        shown = hub_requests.request_detail(store, complaint["tx_id"], township=None)
        decision = hub_requests.decide(
            store, hub.app.extensions["clinic_hub"].county_key, complaint["tx_id"],
            outcome="approved", reason=None, decided_by="coord", township=None,
            now=NOW + timedelta(hours=1), answer="诊查费多收一次，请冲销后重新结算",
            correction=True,
        )["decision"]  # fmt: skip
    assert shown["kind"] == "complaint"
    later = NOW + timedelta(hours=2)
    report = agent.sync_once(device.store, device.identity, device.data_dir, later)
    assert report["ok"] and report["decisions_applied"] == [decision["serial"]]
    view = sr.request(device.store, complaint["tx_id"])
    assert view.state == "approved"
    assert view.result["correction"] is True
    assert view.result["answer"] == "诊查费多收一次，请冲销后重新结算"

    from web_ui.app import create_app

    device.store.close()
    app = create_app(app_config(device.data_dir, FakeClock(later)))
    doctor = Auth(app.test_client())
    doctor.sign_in("doc01")
    page = doctor.client.get(f"/service/requests/{complaint['tx_id']}").get_data(as_text=True)
    assert "诊查费多收一次，请冲销后重新结算" in page
    assert f'href="/records/{settled["tx_id"]}"' in page and 'id="correct-settlement"' in page
