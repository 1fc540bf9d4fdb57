"""The county console's request queue in real Chromium: a coordinator signs in, opens the
enrolment queue, sees the clinic's request with its photo, approves it, and the next page
confirms it; the decision is signed and names the roster version published for it.
Screenshots in test-artifacts/web-e2e/hub-requests/."""

import pytest
from browser_support import Shots
from console_support import PASSWORD, console_sign_in
from hub_request_helpers import enrolment, png, put_photo, upload
from sync_helpers import NOW, hub_store

from sync.hub import console_auth
from sync.hub.services import service_requests


@pytest.mark.parametrize("hub_backend", ["sqlite"], indirect=True)
def test_a_coordinator_approves_an_enrolment_from_the_queue(
    hub, hub_dir, make_enrolled_device, desk
):
    with hub_store(hub_dir) as store:
        console_auth.add_user(store, "li", PASSWORD, "coordinator", "秣陵街道", NOW)
    device = make_enrolled_device("ml", clinic_code="ML-01", township="秣陵街道")
    photo = png(7)
    request = enrolment(device, hub_dir, NOW, [photo])
    upload(device, NOW)
    put_photo(hub, device, photo, NOW)
    shots = Shots(desk, "hub-requests")

    console_sign_in(desk, hub.url, "li")
    with desk.expect_navigation():
        desk.click("header >> text=医保服务申请")
    assert desk.locator('nav.tabs a[data-kind="enrolment"] .count').inner_text() == "1"
    row = desk.locator(f'tr[data-tx="{request["tx_id"]}"]')
    assert "王小梅" in row.inner_text() and "待县医保局审核" in row.inner_text()
    shots("queue")
    with desk.expect_navigation():
        row.locator("text=查看").click()
    image = desk.locator("img.thumbnail")
    assert image.count() == 1
    assert image.evaluate("img => img.complete && img.naturalWidth") == 1  # the photo loads
    shots("request")
    with desk.expect_navigation():
        desk.click("button[name=outcome][value=approved]")
    shots("approved")
    assert "审核结果已记录：已批准" in desk.locator("p.notice").inner_text()
    assert desk.locator("td[data-state]").get_attribute("data-state") == "approved"

    with hub_store(hub_dir) as store:
        (decision,) = service_requests.request_detail(store, request["tx_id"], township=None)[
            "decisions"
        ]
        roster = store.latest_publication("roster")
    assert decision["outcome"] == "approved" and decision["decided_by"] == "li"
    assert decision["result"]["roster_version"] == roster.version
    assert decision["result"]["insured_id"] in desk.locator("table.decisions").inner_text()
