"""The village service point at the county hub, against a real hub on both stores: a real
device's signed requests and premiums uploaded and indexed, the county's decisions signed
and fetched, an approved enrolment reaching the device in its roster, photos refused
unless they are the ones a request names, premium totals, and the county's account
balances following premiums paid from a family account."""

import hashlib
import json
import os
import stat
from datetime import timedelta

import pytest
import sync_helpers
from click.testing import CliRunner
from sync_helpers import NOW, OPERATOR, hub_store

from edge import service_requests as device_requests
from edge import services
from edge.adapters.sealing import key_id, public_key_b64, seal, verified_encryption_key
from edge.console import main
from edge.domain import records
from edge.domain.ledger import b64url_decode
from edge.domain.records import body_problem
from sync import agent
from sync.agent import county_updates, state
from sync.agent.client import HubClient, HubRefusal
from sync.agent.jobs import client_for
from sync.hub.adapters.county_key import SEAL_KEY_FILE, ensure_seal_key, load_seal_key
from sync.hub.app import create_app
from sync.hub.bootstrap import init_hub
from sync.hub.model import HubError
from sync.hub.services import county, service_requests
from sync.hub.services.reconciliation import reconcile_pending
from sync.protocol import canonical_json, load_public_key

ID_NUMBER = "32011519900307001X"  # a valid GB 11643 number (check digit X)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 300


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def client(device):
    return client_for(state.enrollment(device.store), device.identity, None)


def sync(device, now=NOW) -> dict:
    report = agent.sync_once(device.store, device.identity, device.data_dir, now)
    assert report["ok"], report["errors"]
    return report


def request(device, kind: str, now=NOW, **body) -> dict:
    document = {
        "kind": kind,
        "operator": OPERATOR,
        "insured_id": None,
        "applicant": None,
        "sealed_id_number": None,
        "details": {},
        "attachments": [],
        "note": None,
        "follow_up_of": None,
        **body,
    }
    assert body_problem("service_request", document) is None  # one the hub indexes
    return services.append_record(device.store, device.identity, "service_request", document, now)


def encryption_key(device) -> str:
    answer = client(device)._call("GET", "/encryption-key", b"", NOW)
    county_key = state.enrollment(device.store).county_public_key
    return verified_encryption_key(answer["county_encryption_key"], county_key)


def enrolment(device, now=NOW, **body) -> dict:
    return request(
        device,
        "enrolment",
        now,
        applicant={
            "name": "王小梅",
            "gender": "F",
            "birth_date": "1990-03-07",
            "id_number_masked": "320115********001X",
        },
        sealed_id_number=seal(ID_NUMBER, encryption_key(device)),
        details={"insurance_type": "resident", "category": None, "village": "东村"},
        **body,
    )


def decide(hub_dir, hub, tx_id, outcome="approved", township=None, **options) -> dict:
    with hub_store(hub_dir) as store:
        return service_requests.decide(
            store,
            hub.app.extensions["clinic_hub"].county_key,
            tx_id,
            outcome=outcome,
            reason=options.pop("reason", None),
            decided_by="county-admin",
            township=township,
            now=NOW + timedelta(hours=1),
            **options,
        )


def test_the_encryption_key_is_made_once_and_its_statement_verifies(
    hub, hub_dir, make_device, make_enrolled_device
):
    path = hub_dir / SEAL_KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    made = path.read_bytes()
    assert public_key_b64(ensure_seal_key(hub_dir)) == public_key_b64(ensure_seal_key(hub_dir))
    assert path.read_bytes() == made  # never overwritten

    # The enrollment answer carries the statement, signed by the county key it pins.
    device = make_device("fresh")
    with hub_store(hub_dir) as store:
        code = county.provision(store, clinic_code="C9", township="T9", now=NOW).code
    answer = HubClient(hub.url, device.identity).enroll(
        {
            "code": code,
            "device_id": device.identity.device_id,
            "public_key": device.identity.public_key_b64,
        },
        NOW,
    )
    public = verified_encryption_key(answer["county_encryption_key"], answer["county_public_key"])
    assert public == public_key_b64(ensure_seal_key(hub_dir))
    assert (
        answer["county_encryption_key"]["statement"]["key_id"]
        == hashlib.sha256(b64url_decode(public)).hexdigest()[:16]
    )

    # And GET /encryption-key gives the same key, the answer signed like any other.
    enrolled = make_enrolled_device("device")
    assert encryption_key(enrolled) == public


@pytest.mark.parametrize("hub_backend", ["sqlite"], indirect=True)
def test_a_hub_made_before_gets_its_encryption_key_when_it_starts(tmp_path, hub_backend):
    hub_dir = tmp_path / "hub"
    init_hub(hub_dir, "示范县 Demo County", NOW)
    (hub_dir / SEAL_KEY_FILE).unlink()  # as a hub made before the service point
    with hub_store(hub_dir) as store:
        store.conn.execute("DELETE FROM county_seal_key")
    app = create_app({"HUB_DATA_DIR": str(hub_dir), "CLOCK": lambda: NOW, "CONSOLE": False})
    statement = app.extensions["clinic_hub"].encryption_key
    made = public_key_b64(load_seal_key(hub_dir))
    assert stat.S_IMODE(os.stat(hub_dir / SEAL_KEY_FILE).st_mode) == 0o600
    with hub_store(hub_dir) as store:
        county_key = store.county().public_key
    assert verified_encryption_key(statement, county_key) == made
    again = create_app({"HUB_DATA_DIR": str(hub_dir), "CLOCK": lambda: NOW, "CONSOLE": False})
    assert again.extensions["clinic_hub"].encryption_key == statement  # the same key, kept
    with hub_store(hub_dir) as store:  # and its id recorded: the file is now required
        assert store.seal_key_id() == key_id(made)
    assert [p.name for p in hub_dir.iterdir() if p.name.startswith(".")] == []


def test_an_approved_enrolment_reaches_the_device_and_the_person_settles(
    hub, hub_dir, make_enrolled_device
):
    device = make_enrolled_device("device")
    record = enrolment(device)
    sync(device)
    with hub_store(hub_dir) as store:
        (listed,) = service_requests.list_requests(store, township=None, kind=None, state=None)
        detail = service_requests.request_detail(store, record["tx_id"], township=None)
        opened = service_requests.request_detail(
            store, record["tx_id"], township=None, seal_key=ensure_seal_key(hub_dir)
        )
    assert listed["tx_id"] == record["tx_id"] and listed["state"] == "pending"
    assert listed["id_number_sealed"] and "sealed_id_number" not in listed
    assert detail["id_number"] is None and opened["id_number"] == ID_NUMBER
    assert ID_NUMBER not in json.dumps(listed) + json.dumps(detail)

    document = decide(hub_dir, hub, record["tx_id"])
    decision = document["decision"]
    new_id = decision["result"]["insured_id"]
    assert new_id.startswith("320115") and len(new_id) == 14
    assert decision["result"]["roster_version"] == "2026.11.3"
    with pytest.raises(HubError, match="pending"):
        decide(hub_dir, hub, record["tx_id"])  # decided once only

    # The device fetches the signed decision and the new roster, then settles the person.
    answer = client(device)._call("GET", "/decisions?after=0", b"", NOW)
    assert answer["more"] is False
    (fetched,) = answer["decisions"]
    county_key = load_public_key(state.enrollment(device.store).county_public_key)
    county_key.verify(b64url_decode(fetched["signature"]), canonical_json(fetched["decision"]))
    assert fetched["decision"]["request_tx_id"] == record["tx_id"]
    assert client(device)._call("GET", f"/decisions?after={decision['serial']}", b"", NOW) == {
        "decisions": [],
        "more": False,
    }
    sync(device, NOW + timedelta(hours=2))
    settled = device.settle(NOW + timedelta(hours=2), insured_id=new_id)
    assert settled["body"]["insured_id"] == new_id


def test_a_renewal_keeps_the_money_a_device_paid_from_an_account_since_the_county_counted(
    hub, hub_dir, make_enrolled_device
):
    employee = "32011500000502"  # has a personal account
    device = make_enrolled_device("device")
    device_id = device.identity.device_id
    other = make_enrolled_device("other", clinic_code="320115-002", township="江宁街道")
    other.settle(NOW, insured_id="32011500000001")  # never this person's account
    sync(other)

    def paid_from_account(minutes: int) -> int:
        record = sync_helpers.paid_from_account(device, employee, NOW + timedelta(minutes=minutes))
        return record["body"]["result"]["personal_account"]

    def balance() -> int:
        return device.store.insured_person(employee, with_accumulators=False).person.account_balance

    assert paid_from_account(1) > 0
    renewal = request(
        device, "renewal", insured_id=employee, details={"year": 2027, "premium_tx_id": None}
    )
    sync(device)
    with hub_store(hub_dir) as store:
        reconcile_pending(store, NOW + timedelta(minutes=30))
        counted = store.person(employee)[1]
    assert counted == balance()
    second = paid_from_account(40)  # offline: the county has not seen it
    assert balance() == counted - second

    decision = decide(hub_dir, hub, renewal["tx_id"])["decision"]
    with hub_store(hub_dir) as store:
        published = store.publication("roster", decision["result"]["roster_version"])
    (entry,) = (p for p in published.content["persons"] if p["insured_id"] == employee)
    assert entry["account_balance"] == counted
    # Only the devices that may have moved this account are named.
    assert entry["account_as_of"] == {device_id: renewal["seq"]}

    # The device installs the point release without uploading first: the second visit's
    # money stays paid (the roster alone would have given it back).
    report: dict = {"updates_applied": [], "updates_refused": []}
    county_updates.pull_updates(
        device.store, device.identity, client(device),
        state.enrollment(device.store).county_public_key, NOW + timedelta(hours=2), report,
    )  # fmt: skip
    assert report["updates_applied"] and not report["updates_refused"]
    assert device.store.roster_version() == decision["result"]["roster_version"]
    assert balance() == counted - second


def test_a_reason_is_required_and_other_townships_see_nothing(hub, hub_dir, make_enrolled_device):
    device = make_enrolled_device("device")  # 秣陵街道
    record = request(
        device,
        "renewal",
        insured_id="32011500000001",
        details={"year": 2027, "premium_tx_id": None},
    )
    sync(device)
    with pytest.raises(HubError, match="reason"):
        decide(hub_dir, hub, record["tx_id"], "rejected")
    with pytest.raises(service_requests.RequestNotFound):
        decide(hub_dir, hub, record["tx_id"], "approved", township="江宁街道")
    with hub_store(hub_dir) as store:
        assert (
            service_requests.list_requests(store, township="江宁街道", kind=None, state=None) == []
        )
        with pytest.raises(service_requests.RequestNotFound):
            service_requests.request_detail(store, record["tx_id"], township="江宁街道")
    decision = decide(hub_dir, hub, record["tx_id"], "more_info", reason="请补充缴费凭证")
    assert decision["decision"]["result"] is None

    # The clinic answers with more information: the request is back in the queue.
    follow_up = request(
        device,
        "renewal",
        insured_id="32011500000001",
        details={"year": 2027, "premium_tx_id": None},
        note="缴费凭证见附件",
        follow_up_of=record["tx_id"],
    )
    sync(device)
    with hub_store(hub_dir) as store:
        (queued,) = service_requests.list_requests(store, township=None, kind=None, state=None)
        detail = service_requests.request_detail(store, record["tx_id"], township="秣陵街道")
    assert queued["tx_id"] == record["tx_id"] and queued["state"] == "pending"
    assert [f["tx_id"] for f in detail["follow_ups"]] == [follow_up["tx_id"]]
    approved = decide(hub_dir, hub, record["tx_id"], waiting_until="2027-03-31")
    assert approved["decision"]["result"] == {"year": 2027, "roster_version": "2026.11.3"}
    with hub_store(hub_dir) as store:
        latest = store.latest_publication("roster")
    # The person, active, now waits until March in the roster the device gets next.
    (renewed,) = [p for p in latest.content["persons"] if p["insured_id"] == "32011500000001"]
    assert renewed["waiting_until"] == "2027-03-31" and renewed["status"] == "active"


def test_photos_are_kept_only_when_a_request_of_the_device_names_them(
    hub, hub_dir, make_enrolled_device
):
    device, other = make_enrolled_device("device"), make_enrolled_device("other")
    # The terminal's own use case: the photos kept on disk, the record naming them signed;
    # the agent uploads both at the next sync.
    record = device_requests.new_request(
        device.store,
        device.identity,
        device.data_dir,
        kind="chronic_certificate",
        operator=OPERATOR,
        insured_id="32011500000002",
        details={
            "disease_code": "I10",
            "disease_name": "高血压",
            "scheme": "two_diseases",
            "hospital": None,
            "diagnosed_on": None,
        },
        photos=[(PNG, "诊断证明"), (JPEG, "病历")],
        now=NOW,
    ).record
    sync(device)
    sync(other)
    with hub_store(hub_dir) as store:
        detail = service_requests.request_detail(store, record["tx_id"], township="秣陵街道")
        assert service_requests.attachment(store, sha(PNG), township=None) == ("image/png", PNG)
        with pytest.raises(service_requests.RequestNotFound):
            service_requests.attachment(store, sha(PNG), township="江宁街道")
    assert [(a["sha256"], a["received"]) for a in detail["attachments"]] == [
        (sha(PNG), True),
        (sha(JPEG), True),
    ]

    def put(who, data, name, content_type="image/png"):
        return client(who)._call("PUT", f"/attachments/{name}", data, NOW, content_type)

    def refused(who, data, name, content_type="image/png") -> str:
        with pytest.raises(HubRefusal) as caught:
            put(who, data, name, content_type)
        return caught.value.code

    assert put(device, PNG, sha(PNG)) == {"stored": True, "sha256": sha(PNG)}  # a repeat
    assert refused(device, PNG + b"x", sha(PNG)) == "ATTACHMENT_HASH_MISMATCH"
    assert refused(device, b"GIF89a" + PNG, sha(b"GIF89a" + PNG)) == "ATTACHMENT_TYPE"
    assert refused(device, JPEG, sha(JPEG), "image/png") == "ATTACHMENT_TYPE"
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (3 * 2**20)
    assert refused(device, big, sha(big)) == "ATTACHMENT_TOO_LARGE"
    assert refused(other, PNG, sha(PNG)) == "ATTACHMENT_UNKNOWN"  # not its request
    stray = PNG + b"\x00"
    assert refused(device, stray, sha(stray)) == "ATTACHMENT_UNKNOWN"
    with hub_store(hub_dir) as store:  # a refusal stores nothing
        assert store.attachments_received(device.identity.device_id, [sha(big), sha(stray)]) == {}

    decision = decide(hub_dir, hub, record["tx_id"], valid_to="2027-12-31")["decision"]
    assert decision["result"] == {
        "disease_code": "I10",
        "valid_from": (NOW + timedelta(hours=1)).date().isoformat(),
        "valid_to": "2027-12-31",
        "roster_version": "2026.11.3",
    }


def test_the_decisions_endpoint_is_bounded_and_refuses_a_bad_serial(
    hub, hub_dir, make_enrolled_device
):
    device, other = make_enrolled_device("device"), make_enrolled_device("other")
    filings = [
        request(
            device,
            "cross_region_filing",
            insured_id="32011500000003",
            details={
                "filing_type": "temporary",
                "destination": "上海市",
                "valid_from": "2026-12-01",
                "valid_to": None,
                "reason": "探亲",
            },
        )
        for _ in range(3)
    ]
    sync(device)
    serials = [decide(hub_dir, hub, r["tx_id"])["decision"]["serial"] for r in filings]
    assert serials == sorted(serials) and len(set(serials)) == 3
    with hub_store(hub_dir) as store:
        page = service_requests.decisions_for(store, device.identity.device_id, 0, limit=2)
        rest = service_requests.decisions_for(store, device.identity.device_id, serials[1], 2)
    assert [d["decision"]["serial"] for d in page["decisions"]] == serials[:2] and page["more"]
    assert [d["decision"]["serial"] for d in rest["decisions"]] == serials[2:]
    assert not rest["more"]
    assert page["decisions"][0]["decision"]["result"]["valid_from"] == "2026-12-01"
    assert client(other)._call("GET", "/decisions?after=0", b"", NOW)["decisions"] == []
    with pytest.raises(HubRefusal) as caught:
        client(device)._call("GET", "/decisions?after=-1", b"", NOW)
    assert caught.value.code == "BAD_REQUEST"


def premium(device, persons, method="cash", now=NOW, **body) -> dict:
    document = {
        "operator": OPERATOR,
        "year": 2027,
        "payer": {"name": "张建国", "insured_id": None},
        "method": method,
        "reference": None,
        "account_holder": None,
        "persons": persons,
        "amount": sum(p["amount"] for p in persons),
        "state_paid": sum(p["state_pays"] for p in persons),
        "account_balance_after": None,
        **body,
    }
    assert body_problem("premium", document) is None
    return services.append_record(device.store, device.identity, "premium", document, now)


def person(insured_id, name, amount=40000, state_pays=0, categories=()):
    return {
        "insured_id": insured_id,
        "name": name,
        "categories": list(categories),
        "due": amount + state_pays,
        "state_pays": state_pays,
        "amount": amount,
    }


def test_premium_totals_and_a_family_account_premium_in_the_recomputation(
    hub, hub_dir, make_enrolled_device
):
    device = make_enrolled_device("device")
    other = make_enrolled_device("other", clinic_code="320115-002", township="江宁街道")
    family = premium(device, [person("32011500000001", "张建国"), person("32011500000002", "李")])
    kept = premium(
        device,
        [person("32011500000003", "王", amount=20000, state_pays=20000)],
        method="mobile",
        reference="WX-0001",
    )
    holder = "32011500000511"  # an employee whose account pays a relative's premium
    with device.store.write_transaction():
        paid = premium(
            device,
            [person("32011500000027", "赵")],
            method="family_account",
            account_holder=holder,
            account_balance_after=40000,
        )
        # What the device's premium use case does: its copy of the account pays.
        device.store.db.execute(
            "UPDATE person SET account_balance = account_balance - 40000 WHERE insured_id = ?",
            [holder],
        )
    reversal = {
        "reverses": family["tx_id"],
        "reverses_seq": family["seq"],
        "operator": OPERATOR,
        "reason": "重复收费",
        "amount": 80000,
        "method": "cash",
        "account_holder": None,
        "account_balance_after": None,
    }
    assert body_problem("premium_reversal", reversal) is None
    services.append_record(device.store, device.identity, "premium_reversal", reversal, NOW)
    premium(other, [person("32011500000004", "周")])
    settled = device.settle(NOW + timedelta(minutes=5), insured_id=holder)
    sync(device)
    sync(other)

    with hub_store(hub_dir) as store:
        totals = service_requests.premium_totals(store, year=2027, township=None)
        mine = service_requests.premium_totals(store, year=2027, township="秣陵街道")
        assert service_requests.premium_totals(store, year=2026, township=None) == []
        reconcile_pending(store, NOW + timedelta(hours=1))
        assert store.person(holder)[1] == 80000 - 40000
        status, hub_result = store.recomputation_of(device.identity.device_id, settled["tx_id"])
    assert [t["clinic"] for t in mine] == ["320115-001"]
    (first, second) = totals
    assert first == {
        "clinic": "320115-001",
        "township": "秣陵街道",
        "count": 3,
        "persons": 4,
        "amount": 80000 + 20000 + 40000,
        "cash": 80000,
        "mobile": 20000,
        "family_account": 40000,
        "state_paid": 20000,
        "reversed_count": 1,
        "reversed_amount": 80000,
        "reversed_cash": 80000,
        "reversed_state_paid": 0,
        "net_amount": 60000,
        "cash_to_hand_over": 0,
    }
    assert second["clinic"] == "320115-002" and second["cash_to_hand_over"] == 40000
    assert kept["tx_id"]
    # The county's balance of the account agrees with the device's when it settles.
    assert status == "ok"
    before = settled["body"]["accumulators_before"]
    assert hub_result["accumulators_before"]["account_balance"] == before["account_balance"]

    # Its reversal gives the account its money back at the county too.
    back = {
        "reverses": paid["tx_id"],
        "reverses_seq": paid["seq"],
        "operator": OPERATOR,
        "reason": "退费",
        "amount": 40000,
        "method": "family_account",
        "account_holder": holder,
        "account_balance_after": before["account_balance"] + 40000,
    }
    assert body_problem("premium_reversal", back) is None
    services.append_record(device.store, device.identity, "premium_reversal", back, NOW)
    sync(device)
    with hub_store(hub_dir) as store:
        reconcile_pending(store, NOW + timedelta(hours=1))
        assert store.person(holder)[1] == 80000
        (again, _) = service_requests.premium_totals(store, year=2027, township=None)
    assert again["reversed_count"] == 2 and again["reversed_amount"] == 120000

    # The 日结 counts the premiums; the county's totals of the same records agree with it,
    # and a close whose premiums are not the records' is a difference.
    later = NOW + timedelta(hours=3)
    close = services.close_day(device.store, device.identity, operator=OPERATOR, now=later)
    assert close.record["body"]["premiums"]["net"]["family_account"] == 0
    premium(device, [person("32011500000005", "孙")], now=later)
    since = list(device.store.records(after_seq=close.record["seq"]))
    body = records.daily_close_body(
        since,
        business_day=later.date().isoformat(),
        operator=OPERATOR,
        originals=services.premium_originals(device.store, since),
    )
    body["premiums"]["net"]["cash"] += 100  # a close whose cash is not the records'
    forged = services.append_record(device.store, device.identity, "daily_close", body, later)
    sync(device, later)
    with hub_store(hub_dir) as store:
        reconcile_pending(store, later)
        items = [
            (i.seq, i.code, sorted(i.details["fields"]))
            for i in store.reconciliation_items([device.identity.device_id])
            if i.code == "DAILY_CLOSE_DIFFERS"
        ]
    assert items == [(forged["seq"], "DAILY_CLOSE_DIFFERS", ["premiums.net.cash"])]


def test_a_malformed_request_is_kept_flagged_and_never_queued(hub, hub_dir, make_enrolled_device):
    device = make_enrolled_device("device")
    body = {
        "kind": "enrolment",
        "operator": OPERATOR,
        "insured_id": None,
        "applicant": None,  # an enrolment without its applicant and sealed number
        "sealed_id_number": None,
        "details": {"insurance_type": "resident", "category": None, "village": None},
        "attachments": [],
        "note": None,
        "follow_up_of": None,
    }
    assert body_problem("service_request", body) is not None
    record = services.append_record(device.store, device.identity, "service_request", body, NOW)
    sync(device)
    with hub_store(hub_dir) as store:
        assert record["seq"] in store.malformed_records(device.identity.device_id)
        assert store.service_request(record["tx_id"]) is None
        assert service_requests.list_requests(store, township=None, kind=None, state=None) == []


def test_the_cli_lists_shows_decides_and_totals(hub, hub_dir, make_enrolled_device):
    device = make_enrolled_device("device")
    settled = device.settle(NOW, insured_id="32011500000001")
    record = request(
        device,
        "complaint",
        insured_id="32011500000001",
        details={
            "settlement_tx_id": settled["tx_id"],
            "settlement_seq": settled["seq"],
            "grounds": "收费不对",
        },
    )
    sync(device)
    with hub_store(hub_dir) as store:
        reconcile_pending(store, NOW)
        detail = service_requests.request_detail(store, record["tx_id"], township=None)
    disputed = detail["settlement"]
    assert disputed["recomputation_status"] == "ok"
    assert disputed["device"] == disputed["recomputed"]
    assert disputed["device"]["medfee_sumamt"] == settled["body"]["result"]["total"]
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, ["hub", *args, "--data-dir", str(hub_dir)])

    listed = run("requests", "list", "--kind", "complaint", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["tx_id"] for r in json.loads(listed.output)] == [record["tx_id"]]
    refused = run("requests", "decide", record["tx_id"], "--reject", "--by", "admin")
    assert refused.exit_code == 1 and "reason" in refused.output
    decided = run(
        "requests", "decide", record["tx_id"], "--reject", "--reason", "结算无误",
        "--answer", "县级重算与结算一致", "--by", "admin", "--json",
    )  # fmt: skip
    assert decided.exit_code == 0, decided.output
    result = json.loads(decided.output)["decision"]["result"]
    assert result["answer"] == "县级重算与结算一致" and result["correction"] is False
    assert result["recomputed"] == result["device"] == disputed["device"]
    shown = run("requests", "show", record["tx_id"])
    assert shown.exit_code == 0 and "rejected" in shown.output
    totals = run("premiums", "--year", "2027", "--json")
    assert totals.exit_code == 0 and json.loads(totals.output) == []
