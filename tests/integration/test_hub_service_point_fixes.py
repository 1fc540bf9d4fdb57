"""The county's service point: money and custody — a point release never moves a
balance, a premium reversal is checked before it credits an account, the county's
encryption key is never silently remade, photos are kept per device."""

import hashlib
import re
from datetime import timedelta

import pytest
from click.testing import CliRunner
from hub_request_helpers import APPLICANT_ID, enrolment, upload
from sync_helpers import NOW, OPERATOR, hub_store

from edge import service_requests as device_requests
from edge import services
from edge.adapters.sealing import key_id, public_key_b64, write_new_sealing_key
from edge.console import main
from edge.domain.records import body_problem
from sync import agent
from sync.hub import console_auth
from sync.hub.adapters.audit_log import read_audit
from sync.hub.adapters.county_key import SEAL_KEY_FILE, load_seal_key
from sync.hub.app import create_app
from sync.hub.bootstrap import init_hub
from sync.hub.model import HubError
from sync.hub.services import publishing, service_requests
from sync.hub.services.reconciliation import reconcile_pending

EMPLOYEE = "32011500000511"  # an employee of the demo roster with a personal account
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
PASSWORD = "correct horse 42"
CERTIFICATE = {
    "disease_code": "I10",
    "disease_name": "高血压",
    "scheme": "two_diseases",
    "hospital": None,
    "diagnosed_on": None,
}


def csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sync(device, now=NOW) -> dict:
    report = agent.sync_once(device.store, device.identity, device.data_dir, now)
    assert report["ok"], report["errors"]
    return report


def decide(hub_dir, hub, tx_id, now=NOW + timedelta(hours=1), **options) -> dict:
    with hub_store(hub_dir) as store:
        return service_requests.decide(
            store,
            hub.app.extensions["clinic_hub"].county_key,
            tx_id,
            outcome="approved",
            reason=None,
            decided_by="county-admin",
            township=None,
            now=now,
            **options,
        )


def certificate_request(device, insured_id: str, photo: bytes = PNG) -> dict:
    return device_requests.new_request(
        device.store,
        device.identity,
        device.data_dir,
        kind="chronic_certificate",
        operator=OPERATOR,
        insured_id=insured_id,
        details=CERTIFICATE,
        photos=[(photo, "诊断证明")],
        now=NOW,
    ).record


def family_premium(device, holder: str, amount: int, relative="32011500000027") -> dict:
    """A premium paid from `holder`'s personal account, as the device's use case makes it."""
    document = {
        "operator": OPERATOR,
        "year": 2027,
        "payer": {"name": "张建国", "insured_id": holder},
        "method": "family_account",
        "reference": None,
        "account_holder": holder,
        "persons": [
            {
                "insured_id": relative,
                "name": "赵",
                "categories": [],
                "due": amount,
                "state_pays": 0,
                "amount": amount,
            }
        ],
        "amount": amount,
        "state_paid": 0,
        "account_balance_after": device_balance(device, holder) - amount,
    }
    assert body_problem("premium", document) is None
    with device.store.write_transaction():
        record = services.append_record(device.store, device.identity, "premium", document, NOW)
        device.store.db.execute(
            "UPDATE person SET account_balance = account_balance - ? WHERE insured_id = ?",
            [amount, holder],
        )
    return record


def device_balance(device, insured_id: str) -> int:
    (balance,) = device.store.db.execute(
        "SELECT account_balance FROM person WHERE insured_id = ?", [insured_id]
    ).fetchone()
    return balance


def test_an_approved_certificate_keeps_the_balance_spent_since_the_roster(
    hub, hub_dir, make_enrolled_device
):
    device = make_enrolled_device("device")
    before = device_balance(device, EMPLOYEE)
    family_premium(device, EMPLOYEE, 40000)  # the account pays a relative's premium
    settled = device.settle(NOW + timedelta(minutes=5), insured_id=EMPLOYEE)
    spent = device_balance(device, EMPLOYEE)
    assert spent == before - 40000
    record = certificate_request(device, EMPLOYEE)
    sync(device)
    with hub_store(hub_dir) as store:
        reconcile_pending(store, NOW + timedelta(minutes=30))
        assert store.recomputation_of(device.identity.device_id, settled["tx_id"])[0] == "ok"
        assert store.person(EMPLOYEE)[1] == spent
        figures = store.person_figures(EMPLOYEE)

    version = decide(hub_dir, hub, record["tx_id"])["decision"]["result"]["roster_version"]
    with hub_store(hub_dir) as store:
        published = store.roster_changes("2026.11.2", version)
        assert store.person(EMPLOYEE)[1] == spent  # the county's figure, unmoved
    (person,) = published
    assert person["insured_id"] == EMPLOYEE and person["account_balance"] == spent
    assert person["accumulators"] == figures and figures

    sync(device, NOW + timedelta(hours=2))
    assert device.store.roster_version() == version
    assert device_balance(device, EMPLOYEE) == spent  # the money spent stays spent


def premium_reversal(device, original: dict, **changes) -> dict:
    body = original["body"]
    document = {
        "reverses": original["tx_id"],
        "reverses_seq": original["seq"],
        "operator": OPERATOR,
        "reason": "退费",
        "amount": body["amount"],
        "method": body["method"],
        "account_holder": body["account_holder"],
        "account_balance_after": device_balance(device, body["account_holder"])
        + changes.get("amount", body["amount"]),
        **changes,
    }
    assert body_problem("premium_reversal", document) is None
    return services.append_record(device.store, device.identity, "premium_reversal", document, NOW)


def test_a_repeated_or_inflated_premium_reversal_gives_nothing_back(
    hub, hub_dir, make_enrolled_device
):
    device = make_enrolled_device("device")
    start = device_balance(device, EMPLOYEE)
    first = family_premium(device, EMPLOYEE, 30000)
    second = family_premium(device, EMPLOYEE, 20000, relative="32011500000028")
    undone = premium_reversal(device, first)
    again = premium_reversal(device, first)  # the same premium reversed twice
    inflated = premium_reversal(device, second, amount=50000)  # more than was paid
    sync(device)
    with hub_store(hub_dir) as store:
        reconcile_pending(store, NOW + timedelta(hours=1))
        # Only the first reversal gives its 30000 back; the second premium stays paid.
        assert store.person(EMPLOYEE)[1] == start - 20000
        flagged = sorted(
            (item.tx_id, item.details["problem"])
            for item in store.reconciliation_items([device.identity.device_id])
            if item.code == "PREMIUM_REVERSAL_REFUSED"
        )
        assert (
            store.premium_of(device.identity.device_id, first["tx_id"])["reversed_by"]
            == (undone["tx_id"])
        )
        assert store.premium_of(device.identity.device_id, second["tx_id"])["reversed_by"] is None
        (totals,) = service_requests.premium_totals(store, year=2027, township=None)
    assert flagged == sorted(
        [
            (again["tx_id"], "the premium is reversed by another record"),
            (inflated["tx_id"], "its amount is not the premium's"),
        ]
    )
    assert totals["reversed_count"] == 1 and totals["reversed_amount"] == 30000


SERVICE_POINT_TABLES = (
    "service_request",
    "request_decision",
    "request_attachment",
    "premium",
    "county_seal_key",
)


def as_before_the_service_point(hub_dir, hub_backend) -> None:
    """The hub as one made before the service point holds what its devices uploaded:
    the records, without the index the service point's schema steps make (m008 and the
    account step m009 after it, which m008 must not need)."""
    with hub_store(hub_dir) as store:
        for table in (*SERVICE_POINT_TABLES, "account_device"):
            store.conn.execute(f"DROP TABLE {table}")
        if hub_backend.name == "sqlite":
            store.conn.execute(
                "DELETE FROM _sqlite_migrations"
                " WHERE name IN ('m008_service_point', 'm009_account_devices')"
            )
        else:
            store.conn.execute("DELETE FROM schema_migration WHERE version IN (8, 9)")


def test_the_service_point_step_indexes_the_records_an_older_hub_stored(
    hub, hub_dir, hub_backend, make_enrolled_device
):
    device = make_enrolled_device("device")
    record = certificate_request(device, EMPLOYEE)
    kept = family_premium(device, EMPLOYEE, 30000)
    undone = family_premium(device, EMPLOYEE, 20000, relative="32011500000028")
    reversal = premium_reversal(device, undone)
    sync(device)
    as_before_the_service_point(hub_dir, hub_backend)

    with hub_store(hub_dir) as store:  # opening it applies the step again
        (queued,) = service_requests.list_requests(store, township=None, kind=None, state="pending")
        (totals,) = service_requests.premium_totals(store, year=2027, township=None)
        premium = store.premium_of(device.identity.device_id, undone["tx_id"])
        accounts = store.conn.execute(
            "SELECT device_id FROM account_device WHERE insured_id = ?", [EMPLOYEE]
        ).fetchall()
    assert queued["tx_id"] == record["tx_id"] and queued["kind"] == "chronic_certificate"
    assert totals["count"] == 2 and totals["family_account"] == 50000
    assert totals["reversed_count"] == 1 and totals["reversed_amount"] == 20000
    assert premium["reversed_by"] == reversal["tx_id"] and kept["tx_id"]
    # m009 named the device for the account its family-account premiums paid from.
    assert [tuple(row) for row in accounts] == [(device.identity.device_id,)]


def test_the_same_photo_from_two_devices_is_kept_for_each(hub, hub_dir, make_enrolled_device):
    device = make_enrolled_device("device")
    other = make_enrolled_device("other", clinic_code="320115-002", township="江宁街道")
    mine = certificate_request(device, EMPLOYEE)
    theirs = certificate_request(other, "32011500000002")  # the same bytes
    sync(device)
    sync(other)
    with hub_store(hub_dir) as store:
        for who, record, township in (
            (device, mine, "秣陵街道"),
            (other, theirs, "江宁街道"),
        ):
            detail = service_requests.request_detail(store, record["tx_id"], township=township)
            assert [a["received"] for a in detail["attachments"]] == [True]
            # Each township's coordinator sees the photo of their own device's request.
            assert service_requests.attachment(
                store, sha(PNG), township=township, device_id=who.identity.device_id
            ) == ("image/png", PNG)
        assert sorted(store.attachment_devices(sha(PNG))) == sorted(
            [device.identity.device_id, other.identity.device_id]
        )
        with pytest.raises(service_requests.RequestNotFound):
            service_requests.attachment(
                store, sha(PNG), township="江宁街道", device_id=device.identity.device_id
            )


def start(hub_dir):
    return create_app({"HUB_DATA_DIR": str(hub_dir), "CLOCK": lambda: NOW, "CONSOLE": False})


def test_a_missing_or_other_encryption_key_stops_the_hub(tmp_path, hub_backend):
    hub_dir = tmp_path / "hub"
    init_hub(hub_dir, "示范县 Demo County", NOW)
    path = hub_dir / SEAL_KEY_FILE
    original = path.read_bytes()
    with hub_store(hub_dir) as store:
        recorded = store.seal_key_id()
    assert recorded == key_id(public_key_b64(load_seal_key(hub_dir)))

    path.unlink()  # lost: never silently made again
    with pytest.raises(HubError, match=r"不见了.*restore it from the backup"):
        start(hub_dir)
    assert not path.exists()

    write_new_sealing_key(path)  # another key in its place
    with pytest.raises(HubError, match=r"不是本县记录的密钥.*recorded encryption key"):
        start(hub_dir)

    path.unlink()
    path.write_bytes(original)  # restored from the backup
    path.chmod(0o600)
    assert start(hub_dir).extensions["clinic_hub"].seal_key is not None


@pytest.mark.parametrize("hub_backend", ["sqlite"], indirect=True)
def test_a_key_file_made_before_its_id_was_recorded_is_recorded(tmp_path, hub_backend):
    hub_dir = tmp_path / "hub"
    init_hub(hub_dir, "示范县 Demo County", NOW)
    with hub_store(hub_dir) as store:
        store.conn.execute("DELETE FROM county_seal_key")  # a hub from before the record
    start(hub_dir)
    with hub_store(hub_dir) as store:
        assert store.seal_key_id() == key_id(public_key_b64(load_seal_key(hub_dir)))


def test_opening_an_id_number_from_the_cli_is_audited_and_a_wrong_mask_is_warned(
    hub, hub_dir, make_enrolled_device
):
    device = make_enrolled_device("device")
    right = enrolment(device, hub_dir, NOW, [])
    wrong = enrolment(device, hub_dir, NOW, [], name="赵大海", masked="320115********0000")
    upload(device, NOW)
    runner = CliRunner()

    def show(tx_id: str) -> str:
        args = ["hub", "requests", "show", tx_id, "--show-id-number", "--data-dir", str(hub_dir)]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        return result.output

    assert APPLICANT_ID in show(right["tx_id"]) and "不一致" not in show(right["tx_id"])
    shown = show(wrong["tx_id"])
    assert APPLICANT_ID in shown
    assert "与申请中的脱敏号码不一致" in shown and "not the masked number" in shown
    audit = read_audit(hub_dir)
    assert [(e["action"], e["request"]) for e in audit] == [
        ("open_id_number", right["tx_id"]),
        ("open_id_number", right["tx_id"]),
        ("open_id_number", wrong["tx_id"]),
    ]
    assert all(e["user"].startswith("cli:") and APPLICANT_ID not in str(e) for e in audit)

    # The console warns the same way.
    with hub_store(hub_dir) as store:
        console_auth.add_user(store, "admin", PASSWORD, "admin", None, NOW)
    client = hub.app.test_client()
    login = client.get("/console/login").get_data(as_text=True)
    client.post(
        "/console/login",
        data={"username": "admin", "password": PASSWORD, "csrf_token": csrf(login)},
    )
    for record, warned in ((right, False), (wrong, True)):
        path = f"/console/requests/{record['tx_id']}"
        page = client.get(path).get_data(as_text=True)
        opened = client.post(f"{path}/id-number", data={"csrf_token": csrf(page)})
        text = opened.get_data(as_text=True)
        assert opened.status_code == 200 and APPLICANT_ID in text
        assert ("data-id-number-warning" in text) is warned


class StaleRoster:
    """The store as an approval sees it when another roster is published between its
    reading the newest roster and adding its own: the first read is the older one."""

    def __init__(self, store, stale):
        self._store, self._stale = store, stale

    def latest_publication(self, kind):
        if kind == "roster" and self._stale is not None:
            stale, self._stale = self._stale, None
            return stale
        return self._store.latest_publication(kind)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_an_approval_that_meets_a_roster_published_meanwhile_is_refused_in_both_languages(
    hub, hub_dir, make_enrolled_device
):
    device = make_enrolled_device("device")
    record = certificate_request(device, EMPLOYEE)
    sync(device)
    county_key = hub.app.extensions["clinic_hub"].county_key
    with hub_store(hub_dir) as store:
        before = store.latest_publication("roster")
        publishing.publish(  # the admin's roster, published meanwhile
            store,
            county_key,
            kind="roster",
            version="2026.11.3",
            expires_at=NOW + timedelta(days=30),
            now=NOW,
            document={**before.content, "version": "2026.11.3"},
        )
        with pytest.raises(HubError, match=r"^审批时参保名单刚被另一次发布更新.* / the roster"):
            service_requests.decide(
                StaleRoster(store, before),
                county_key,
                record["tx_id"],
                outcome="approved",
                reason=None,
                decided_by="county-admin",
                township=None,
                now=NOW + timedelta(hours=1),
            )
        assert store.service_request(record["tx_id"])["state"] == "pending"  # nothing decided
        assert store.latest_publication("roster").version == "2026.11.3"
        assert store.decisions_of_request(record["tx_id"]) == []


def test_the_account_step_names_the_devices_of_the_records_an_older_hub_stored(
    hub, hub_dir, hub_backend, make_enrolled_device
):
    device = make_enrolled_device("device")
    other = make_enrolled_device("other", clinic_code="320115-002", township="江宁街道")
    family_premium(device, EMPLOYEE, 30000, relative="32011500000028")
    other.settle(NOW, insured_id="32011500000001")
    sync(device)
    sync(other)
    with hub_store(hub_dir) as store:
        reconcile_pending(store, NOW)
        named = {who: store.records_counted(who) for who in (EMPLOYEE, "32011500000001")}
        store.conn.execute("DROP TABLE account_device")
        if hub_backend.name == "sqlite":
            store.conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm009_account_devices'")
        else:
            store.conn.execute("DELETE FROM schema_migration WHERE version = 9")
    last = {d.identity.device_id: d.records()[-1]["seq"] for d in (device, other)}
    assert named[EMPLOYEE] == {device.identity.device_id: last[device.identity.device_id]}
    assert named["32011500000001"] == {other.identity.device_id: last[other.identity.device_id]}

    with hub_store(hub_dir) as store:  # opening it applies the step again
        assert {who: store.records_counted(who) for who in named} == named
        assert store.records_counted("32011500000028") == {}  # a cash-paying relative
