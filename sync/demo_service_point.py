"""The village service point's walkthrough (`clinic demo-service-point`): one scripted day
of a clinic that is the county's counter in the village, for trainers and the tests.

Everything is real, as in the demo month (sync/demo_month.py): the demo county's hub
serves on loopback in a background thread, the demo terminal is enrolled with it over
HTTP (and so pins the county's encryption key), every request, premium and visit goes
through the device's own use cases and the sync agent, and the coordinator decides with
the hub's own use case. Only the clock is the script's: it walks through one day, and
the hub reads the same clock.

The day:
(a) offline (the hub stopped): a resident is enrolled (the ID number, with a valid check
    digit, sealed to the county's key at once), a family premium is collected in cash for
    three persons (one 特困 pays nothing), its receipt laid out and its QR verified, a
    chronic visit of a patient without a certificate is refused, and two chronic
    applications are made with a photo each;
(b) the hub is back: one sync brings the records and the photos to the county;
(c) the coordinator of the clinic's township approves the enrolment and the first
    chronic application (each approval publishes a roster version) and rejects the
    second with a reason;
(d) one sync brings the decisions and the roster update to the device;
(e) the new resident's visit settles (looked up by the insured number the county gave),
    the chronic patient's chronic visit settles under the new certificate, the rejected
    application shows its reason;
(f) the premium is reversed, the day closed (the 日结 holds collected, reversed and net
    cash), and after a sync the county's premium totals show the reversal.

The ID number exists in clear only in this process's memory, on its way to `seal`: it is
never printed, logged or written anywhere (the integration test greps every file).
"""

import struct
import zlib
from collections.abc import Callable
from contextlib import closing
from datetime import date, datetime, time, timedelta
from pathlib import Path

from edge import demo, premiums, service_requests, services
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.model import Rejection, Visit, VisitLine
from edge.domain.money import format_yuan
from edge.domain.records import CHINESE_NAMES, MONEY_FIELDS, NATIONAL_NAMES, payer_amounts
from edge.domain.service_point import id_number_problem
from sync import agent
from sync import demo as sync_demo
from sync.demo_month import CHINA, OPERATOR, SteppingClock
from sync.hub.adapters.county_key import load_county_key
from sync.hub.bootstrap import open_hub_store
from sync.hub.ports import HubStore
from sync.hub.server import RunningHub, serve_in_background
from sync.hub.services import service_requests as hub_requests

COORDINATOR = sync_demo.DEMO_CONSOLE_USERS[1][0]  # molin-coord, of the clinic's township
# The new resident. Their ID number is made here (region 320115, the birth date, a
# sequence number and the GB 11643 check digit): a demo number, nobody's.
APPLICANT = {"name": "钱小梅", "gender": "F", "birth_date": "1990-05-12"}
ID_SEQUENCE = "002"
VILLAGE = "东山村"
# The family that pays together: the payer, his grandson, and a 特困 neighbour's premium
# he brings along (the state pays all of it: the terminal takes nothing for him).
PAYER = ("32011500000001", "张建国")
FAMILY = ["32011500000001", "32011500000011", "32011500000005"]
# The chronic applications: the first approved, the second rejected.
CHRONIC = ("32011500000001", "I10.x00", "高血压")
REJECTED = ("32011600000020", "E11.900", "2型糖尿病")
REJECT_REASON = "诊断证明未盖医院公章，请补充 the diagnosis certificate lacks the hospital's seal"
REVERSAL_REASON = "重复收取 collected twice by mistake"
# What the visits are: a cold at the clinic, and a hypertension follow-up.
GENERAL_VISIT = ("general", ["J06.900"], [("110200005000000", "1"), ("XJ01CAA040A001", "2")])
CHRONIC_VISIT = ("chronic", ["I10.x00"], [("XC08CAB128A001", "2")])

Say = Callable[[str], None]


def demo_id_number() -> str:
    """The new resident's ID number: region 320115, the birth date, a sequence number and
    the one check character (GB 11643) the product's own check accepts."""
    first17 = "320115" + APPLICANT["birth_date"].replace("-", "") + ID_SEQUENCE
    return next(
        first17 + check for check in "0123456789X" if id_number_problem(first17 + check) is None
    )


def demo_png(rgb: tuple[int, int, int], size: int = 24) -> bytes:
    """A small real PNG (a coloured square with a white cross: the photo of a document)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = []
    for y in range(size):
        row = bytearray([0])  # filter: none
        for x in range(size):
            cross = abs(x - size // 2) < 3 or abs(y - size // 2) < 3
            row += bytes((255, 255, 255) if cross else rgb)
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def certificate_end(start: date) -> date:
    """The last day of a certificate valid for a year from `start`: the day before its
    anniversary (a start on 29 February has its anniversary on 1 March)."""
    try:
        anniversary = start.replace(year=start.year + 1)
    except ValueError:  # 29 February
        anniversary = date(start.year + 1, 3, 1)
    return anniversary - timedelta(days=1)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), CHINA)


def _paid(amounts: dict) -> str:
    """Who paid what, as the demo walkthrough of `clinic demo` says it."""
    return " + ".join(
        f"{CHINESE_NAMES[payer]} {NATIONAL_NAMES[payer]} {format_yuan(amounts[payer])}"
        for payer in MONEY_FIELDS[1:]
        if amounts[payer]
    )


def _visit(day: date, shape: tuple) -> Visit:
    visit_type, diagnoses, lines = shape
    return Visit(day, visit_type, tuple(diagnoses), tuple(VisitLine(c, q) for c, q in lines))


class Walkthrough:
    """The day's steps, each printing what it did (`say`) and keeping its facts."""

    def __init__(self, base_dir: Path, now: datetime, say: Say) -> None:
        self.base_dir = Path(base_dir)
        self.hub_dir = self.base_dir / "hub"
        self.data_dir = self.base_dir / "clinic"
        self.day = now.astimezone(CHINA).date()
        self.clock = SteppingClock(_at(self.day, 7, 30))
        self.say = say
        self.facts: dict = {
            "day": self.day.isoformat(),
            "hub_dir": str(self.hub_dir),
            "data_dir": str(self.data_dir),
        }
        self.hub: RunningHub | None = None
        self.port = 0
        self._store: SqliteDeviceStore | None = None

    @property
    def store(self) -> SqliteDeviceStore:
        if self._store is None:
            raise RuntimeError("the walkthrough's terminal is not made yet")
        return self._store

    # ---- the parts ------------------------------------------------------------------

    def setup(self) -> None:
        self.clock.now = _at(self.day, 7, 30)
        hub = sync_demo.start_demo_hub(self.hub_dir, self.clock, reconcile_interval_s=None)
        self.hub, self.port = hub, hub.port
        self.data_dir.mkdir(parents=True)
        self._store = SqliteDeviceStore.open(self.data_dir, create=True)
        list(demo.install(self.store, self.clock.now))
        self.identity = services.init_device(self.store, self.data_dir, self.clock.now)
        clinic = sync_demo.provision_and_enroll(
            self.store, self.identity, self.data_dir, hub_dir=self.hub_dir,
            hub_url=hub.url, now=self.clock.now,
        )  # fmt: skip
        self.facts.update(
            clinic_code=clinic["clinic_code"],
            township=clinic["township"],
            device_id=self.identity.device_id,
            roster_before=self.store.roster_version(),
        )
        self.say(
            f"准备 setup: 县平台 county hub {hub.url}; 卫生室 clinic {clinic['clinic_code']}"
            f" ({clinic['township']}) 已注册 enrolled, 名册 roster {self.store.roster_version()}"
        )

    def stop_hub(self) -> None:
        if self.hub is not None:
            self.hub.stop()
            self.hub = None

    def start_hub(self) -> None:
        self.hub = serve_in_background(
            self.hub_dir, port=self.port, config={"RECONCILE_INTERVAL_S": None, "CLOCK": self.clock}
        )

    def sync(self, at: datetime) -> dict:
        self.clock.now = at
        report = agent.sync_once(self.store, self.identity, self.data_dir, at)
        if report["errors"]:
            raise RuntimeError(f"the sync failed: {report['errors']}")
        return report

    def offline(self) -> None:
        self.stop_hub()
        self.say("")
        self.say("(a) 离线 offline: 县平台连不上 the county hub is out of reach")
        self.enrol()
        self.collect_premium()
        self.refused_chronic_visit()
        self.chronic_applications()
        # The terminal tries, as its agent would: the hub is out of reach, nothing is lost.
        self.clock.now = _at(self.day, 10, 0)
        tried = agent.sync_once(self.store, self.identity, self.data_dir, self.clock.now)
        self.facts["offline_sync"] = {
            "errors": sorted({error["code"] for error in tried["errors"]}),
            "records_waiting": tried["records_waiting"],
        }
        self.say(
            f"    同步失败 sync tried: {', '.join(self.facts['offline_sync']['errors'])};"
            f" 待上传 waiting to upload: {tried['records_waiting']} 笔记录 records"
        )

    def enrol(self) -> None:
        self.clock.now = _at(self.day, 8, 30)
        recorded = service_requests.new_request(
            self.store, self.identity, self.data_dir, kind="enrolment", operator=OPERATOR,
            insured_id=None, applicant=APPLICANT, id_number=demo_id_number(),
            details={"insurance_type": "resident", "category": None, "village": VILLAGE},
            photos=[], note=None, follow_up_of=None, now=self.clock.now,
        )  # fmt: skip
        record = recorded.record  # the sealed number and the masked one only
        sealed = record["body"]["sealed_id_number"]
        masked = record["body"]["applicant"]["id_number_masked"]
        self.facts["enrolment"] = {
            "tx_id": record["tx_id"],
            "seq": record["seq"],
            "id_number_masked": masked,
            "key_id": sealed["key_id"],
            "state_offline": service_requests.request(self.store, record["tx_id"]).state,
        }
        self.say(
            f"  参保登记 enrolment of {APPLICANT['name']} ({masked}): 申请 request"
            f" #{record['seq']}; 身份证号已加密 ID number sealed to the county's key"
            f" {sealed['key_id']}"
        )

    def collect_premium(self) -> None:
        from drivers.receipt import QrCode, layout_receipt, receipt_facts, verify_receipt_qr

        self.clock.now = _at(self.day, 9, 0)
        quote = premiums.premium_quote(self.store, FAMILY, None, self.day)
        recorded = premiums.collect_premium(
            self.store, self.identity, operator=OPERATOR, payer_name=PAYER[1],
            payer_insured_id=PAYER[0], insured_ids=FAMILY, year=quote.year, method="cash",
            reference=None, account_holder=None, now=self.clock.now,
        )  # fmt: skip
        record = recorded.record
        body = record["body"]
        self.say(f"  收缴保费 premium for {body['year']}, 现金 cash, 缴费人 payer {PAYER[1]}:")
        for person in body["persons"]:
            state = " 由政府全额资助 paid in full by the state" if person["amount"] == 0 else ""
            self.say(
                f"    {person['name']} ({person['insured_id']}): 应缴 due"
                f" {format_yuan(person['due'])}, 政府资助 state"
                f" {format_yuan(person['state_pays'])}, 实缴 paid"
                f" {format_yuan(person['amount'])}{state}"
            )
        receipt = layout_receipt(
            record, clinic=self.facts["clinic_code"], facts=receipt_facts(self.store, record)
        )
        qr = next(block.payload for block in receipt.blocks if isinstance(block, QrCode))
        verified = verify_receipt_qr(qr, self.identity.public_key)
        self.facts["premium"] = {
            "tx_id": record["tx_id"],
            "seq": record["seq"],
            "year": body["year"],
            "amount": body["amount"],
            "state_paid": body["state_paid"],
            "persons": [
                {k: p[k] for k in ("insured_id", "due", "state_pays", "amount")}
                for p in body["persons"]
            ],
            "receipt_title": receipt.title,
            "receipt_verified_tx_id": verified.record["tx_id"],
        }
        self.say(
            f"    合计 total {format_yuan(body['amount'])}"
            f" (政府资助 state {format_yuan(body['state_paid'])});"
            f" 收费凭证 receipt #{record['seq']} 二维码验签通过 QR verified: {verified.hash[:16]}…"
        )

    def settle(self, insured_id: str, shape: tuple) -> dict:
        recorded = services.settle_visit(
            self.store, self.identity, insured_id=insured_id, visit=_visit(self.day, shape),
            operator=OPERATOR, now=self.clock.now,
        )  # fmt: skip
        record = recorded.record
        return {
            "tx_id": record["tx_id"],
            "seq": record["seq"],
            "insured_id": insured_id,
            "visit_type": shape[0],
            "total": recorded.settlement.total,
            "amounts": payer_amounts(record["body"]["result"]),
        }

    def refused(self, insured_id: str, shape: tuple) -> str | None:
        try:
            self.settle(insured_id, shape)
        except Rejection as rejection:
            return rejection.code
        return None

    def refused_chronic_visit(self) -> None:
        self.clock.now = _at(self.day, 9, 20)
        code = self.refused(CHRONIC[0], CHRONIC_VISIT)
        self.facts["chronic_refused_before"] = code
        self.say(f"  {CHRONIC[0]} 慢病门诊 chronic visit: 拒绝 refused, nothing recorded: {code}")

    def chronic_applications(self) -> None:
        made = {}
        for minute, (insured_id, code, name), colour in (
            (30, CHRONIC, (200, 60, 60)),
            (45, REJECTED, (60, 60, 200)),
        ):
            self.clock.now = _at(self.day, 9, minute)
            photo = demo_png(colour)
            recorded = service_requests.new_request(
                self.store, self.identity, self.data_dir, kind="chronic_certificate",
                operator=OPERATOR, insured_id=insured_id, applicant=None, id_number=None,
                details={"disease_code": code, "disease_name": name,
                         "scheme": "chronic" if insured_id == CHRONIC[0] else "two_diseases",
                         "hospital": "江宁区人民医院", "diagnosed_on": None},
                photos=[(photo, "诊断证明 diagnosis certificate")], note=None,
                follow_up_of=None, now=self.clock.now,
            )  # fmt: skip
            record = recorded.record
            attachment = record["body"]["attachments"][0]
            made[insured_id] = {
                "tx_id": record["tx_id"],
                "seq": record["seq"],
                "disease_code": code,
                "photo_sha256": attachment["sha256"],
                "photo_bytes": attachment["bytes"],
            }
            self.say(
                f"  慢病申请 chronic application {insured_id} {name} ({code}): 申请 request"
                f" #{record['seq']}, 照片 photo {attachment['type']} {attachment['bytes']} bytes"
                f" {attachment['sha256'][:12]}…"
            )
        self.facts["chronic"] = made[CHRONIC[0]]
        self.facts["rejected"] = made[REJECTED[0]]

    def upload(self) -> None:
        self.start_hub()
        self.say("")
        self.say("(b) 同步 sync: 县平台恢复连接 the hub is back")
        report = self.sync(_at(self.day, 12, 0))
        states = {
            key: service_requests.request(self.store, self.facts[key]["tx_id"]).state
            for key in ("enrolment", "chronic", "rejected")
        }
        self.facts["upload"] = {"acked_seq": report.get("acked_seq"), "states": states}
        with self._hub() as store:
            rows = hub_requests.list_requests(
                store, township=self.facts["township"], kind=None, state="pending"
            )
            self.facts["hub_pending"] = sorted(row["tx_id"] for row in rows)
            self.facts["hub_premiums_before_reversal"] = self._hub_premiums(store)
            photos = [
                hub_requests.attachment(store, self.facts[key]["photo_sha256"],
                                        township=self.facts["township"])
                for key in ("chronic", "rejected")
            ]  # fmt: skip
        self.facts["hub_photos"] = [
            {"content_type": content_type, "bytes": len(data)} for content_type, data in photos
        ]
        self.say(
            f"    已上传 uploaded up to #{report.get('acked_seq')};"
            " 县平台待审 pending at the county:"
            f" {len(rows)} 件申请 requests, {len(photos)} 张照片 photos received"
        )
        premiums_row = self.facts["hub_premiums_before_reversal"]
        self.say(
            f"    县平台保费 county premiums: {premiums_row['count']} 笔 receipts,"
            f" {format_yuan(premiums_row['amount'])}"
        )

    def decide(self) -> None:
        self.say("")
        self.say(f"(c) 县医保局审核 the county decides ({COORDINATOR}, {self.facts['township']})")
        key = load_county_key(self.hub_dir)
        certificate = (self.day.isoformat(), certificate_end(self.day).isoformat())
        steps: list[tuple[str, str, str | None, tuple[str, str] | tuple[None, None]]] = [
            ("enrolment", "approved", None, (None, None)),  # the county makes the number
            ("chronic", "approved", None, certificate),
            ("rejected", "rejected", REJECT_REASON, (None, None)),
        ]
        with self._hub() as store:
            for minute, (name, outcome, reason, (valid_from, valid_to)) in enumerate(steps):
                self.clock.now = _at(self.day, 14, 10 * minute)
                decided = hub_requests.decide(
                    store, key, self.facts[name]["tx_id"], outcome=outcome, reason=reason,
                    decided_by=COORDINATOR, township=self.facts["township"], now=self.clock.now,
                    valid_from=valid_from, valid_to=valid_to,
                )  # fmt: skip
                decision = decided["decision"]  # the signed document's
                self.facts[name]["decision"] = {
                    "serial": decision["serial"],
                    "outcome": decision["outcome"],
                    "result": decision["result"],
                }
                result = decision["result"] or {}
                shown = ", ".join(f"{k} {v}" for k, v in result.items()) or reason
                self.say(f"  {name}: {outcome} — {shown}")
            roster = store.latest_publication("roster")
            self.facts["hub_roster"] = roster.version if roster else None

    def deliver(self) -> None:
        self.say("")
        self.say(
            "(d) 同步 sync: 审核结果与名册更新下发 decisions and the roster update reach the clinic"
        )
        report = self.sync(_at(self.day, 15, 0))
        self.facts["roster_after"] = self.store.roster_version()
        for key in ("enrolment", "chronic", "rejected"):
            view = service_requests.request(self.store, self.facts[key]["tx_id"])
            self.facts[key]["state"] = view.state
            self.facts[key]["reason"] = view.reason
            self.facts[key]["result"] = view.result
        self.facts["updates"] = report.get("updates", [])
        self.say(
            f"    名册 roster {self.facts['roster_before']} → {self.facts['roster_after']}"
            f" (县平台 county {self.facts['hub_roster']});"
            f" 申请状态 states: 参保 {self.facts['enrolment']['state']},"
            f" 慢病 {self.facts['chronic']['state']}, 第二份慢病 {self.facts['rejected']['state']}"
        )

    def visits(self) -> None:
        self.say("")
        self.say("(e) 就诊 the visits")
        insured_id = self.facts["enrolment"]["result"]["insured_id"]
        self.clock.now = _at(self.day, 15, 30)
        entry = self.store.insured_person(insured_id, with_accumulators=False)
        self.facts["new_resident"] = {
            "insured_id": insured_id,
            "name": entry.name if entry else None,
            "id_number_masked": entry.id_number_masked if entry else None,
        }
        visit = self.settle(insured_id, GENERAL_VISIT)
        self.facts["new_resident"]["visit"] = visit
        found = self.facts["new_resident"]
        self.say(
            f"  按医保号查到 looked up by the insured number {insured_id}: {found['name']}"
            f" ({found['id_number_masked']}), 新参保 newly insured"
        )
        self.say(
            f"    普通门诊 general visit {format_yuan(visit['total'])} — {_paid(visit['amounts'])}"
        )
        self.clock.now = _at(self.day, 15, 45)
        visit = self.settle(CHRONIC[0], CHRONIC_VISIT)
        self.facts["chronic"]["visit"] = visit
        self.say(
            f"  {CHRONIC[0]} 慢病门诊 chronic visit ({CHRONIC[1]}, 新慢病证 new certificate):"
            f" {format_yuan(visit['total'])} — {_paid(visit['amounts'])}"
        )
        self.clock.now = _at(self.day, 15, 50)
        code = self.refused(REJECTED[0], CHRONIC_VISIT)
        self.facts["rejected"]["visit_refused"] = code
        self.say(
            f"  {REJECTED[0]} 慢病申请未通过 application rejected:"
            f" {self.facts['rejected']['reason']}"
        )
        self.say(f"    慢病门诊仍被拒绝 the chronic visit is still refused: {code}")

    def reverse_and_close(self) -> None:
        self.say("")
        self.say("(f) 保费冲正与日结 the premium reversed, the day closed")
        self.clock.now = _at(self.day, 16, 0)
        reversal = premiums.reverse_premium(
            self.store, self.identity, self.facts["premium"]["tx_id"], operator=OPERATOR,
            reason=REVERSAL_REASON, now=self.clock.now,
        )  # fmt: skip
        self.facts["premium"]["reversal_tx_id"] = reversal.record["tx_id"]
        self.say(
            f"  冲正 reversed receipt #{self.facts['premium']['seq']}:"
            f" {format_yuan(reversal.record['body']['amount'])} 退还 handed back"
        )
        self.clock.now = _at(self.day, 17, 30)
        close = services.close_day(
            self.store, self.identity, operator=OPERATOR, now=self.clock.now
        ).record
        totals = close["body"]["premiums"]
        self.facts["daily_close"] = {"seq": close["seq"], "premiums": totals}
        self.say(
            f"  日结 daily close #{close['seq']}: 收取保费 collected"
            f" {format_yuan(totals['collected']['amount'])} (现金 cash"
            f" {format_yuan(totals['collected']['cash'])}), 冲正 reversed"
            f" {format_yuan(totals['reversed']['amount'])}, 应上缴现金 cash to hand over"
            f" {format_yuan(totals['net']['cash'])}"
        )
        self.sync(_at(self.day, 17, 40))
        with self._hub() as store:
            after = self._hub_premiums(store)
        self.facts["hub_premiums_after_reversal"] = after
        self.say(
            f"  同步后县平台保费 county premiums after the sync: {after['count']} 笔 receipts,"
            f" 冲正 reversed {after.get('reversed_count')}, 应上缴现金 cash to hand over"
            f" {format_yuan(after['cash_to_hand_over'])}"
        )

    # ---- helpers ----------------------------------------------------------------------

    def _hub(self) -> "closing[HubStore]":
        """The hub's store for one step, opened beside the serving hub."""
        return closing(open_hub_store(self.hub_dir))

    def _hub_premiums(self, store: HubStore) -> dict:
        rows = hub_requests.premium_totals(
            store, year=self.facts["premium"]["year"], township=self.facts["township"]
        )
        for row in rows:
            if row.get("clinic") == self.facts["clinic_code"]:
                return row
        raise RuntimeError(f"the county has no premiums of {self.facts['clinic_code']}: {rows}")

    def close(self) -> None:
        self.stop_hub()
        if self._store is not None:
            self._store.close()


def run_service_point(base_dir: Path, now: datetime, say: Say = lambda line: None) -> dict:
    """The walkthrough in `base_dir` (new or empty: the hub in `base_dir/hub`, the clinic's
    terminal in `base_dir/clinic`) on the China-time day of `now`; `say` gets each line
    for people. Returns the facts of each step (see the module's docstring)."""
    base_dir = Path(base_dir)
    if base_dir.exists() and any(base_dir.iterdir()):
        raise FileExistsError(f"{base_dir} is not empty: the walkthrough needs a new folder")
    walk = Walkthrough(base_dir, now, say)
    try:
        walk.setup()
        walk.offline()
        walk.upload()
        walk.decide()
        walk.deliver()
        walk.visits()
        walk.reverse_and_close()
        return walk.facts
    finally:
        walk.close()
