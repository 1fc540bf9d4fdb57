"""The demo month: a county hub with several clinics' terminals and a month of their visits,
for trainers (`clinic demo-month`), the console's reports and the tests.

Everything is real: each clinic is a device store with its own identity, enrolled with the
demo county's hub over HTTP; every visit is settled, reversed and closed by the device's
use cases and uploaded by the sync agent. Only the clock is the generator's: it walks
through the month, and the hub (served in a background thread) reads the same clock.

What the month holds, so that each part of the clearing has something to show:
- visits every day at each clinic (the demo county's sample visits, each clinic with its
  own villagers, so that the county's running figures match each device's), and every
  seventh settlement reversed the same day; a daily close each evening;
- an offline period: the second clinic does not reach the hub for a week (its visits are
  flagged for review as its terminal's offline limits say) and uploads it all at once;
- a late upload: the third clinic's last days arrive only after the month has closed and
  the county's first statements are made (`on_statements` is called then, and again
  after the late records are recomputed, for the corrected statements);
- the month closed on each device after its last daily close (`on_month_close`), and at
  the end each device's check of its statement (`on_checks`).
`MonthWiring` gives the hooks that do these for real; `run_demo_month` passes them.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from edge import demo, services
from edge.adapters.identity import DeviceIdentity
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.domain.model import Rejection, Visit, VisitLine
from sync import agent
from sync import demo as sync_demo
from sync.agent.statements import check_statement
from sync.hub import reconcile
from sync.hub.bootstrap import open_hub_store
from sync.hub.ports import HubStore
from sync.hub.services import statements as hub_statements
from sync.hub.services.reconciliation import reconcile_pending
from sync.protocol import iso

CHINA = ZoneInfo("Asia/Shanghai")
OPERATOR = demo.DEMO_OPERATORS[0][0]
# (clinic code, township): two clinics of the demo township, one of another, so that a
# township's coordinator sees two of three.
CLINICS = [
    ("320115-001", sync_demo.DEMO_TOWNSHIP),
    ("320115-002", sync_demo.DEMO_TOWNSHIP),
    ("320115-101", "湖熟街道"),
]
OFFLINE_CLINIC, OFFLINE_DAYS = 1, range(9, 16)  # the second clinic, days 9 to 15
LATE_CLINIC, LATE_DAYS = 2, 3  # the third clinic's last three days upload late
REVERSE_EVERY = 7
REVERSAL_REASON = "录入错误 entered by mistake"


class SteppingClock:
    """The generator's clock: it reads what was set, for the hub and the devices alike."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class DemoClinic:
    clinic_code: str
    township: str
    data_dir: Path
    store: SqliteDeviceStore
    identity: DeviceIdentity
    visits: list[tuple] = field(default_factory=list)  # its villagers' sample visits
    settled: list[str] = field(default_factory=list)  # tx_ids
    reversed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # the codes of refused visits
    late_from_seq: int | None = None  # its first record uploaded after the statements

    @property
    def device_id(self) -> str:
        return self.identity.device_id


def previous_month(now: datetime) -> str:
    first = now.astimezone(CHINA).date().replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


def _days(month: str) -> list[datetime]:
    first = datetime(int(month[:4]), int(month[5:]), 1, tzinfo=CHINA)
    days = [first + timedelta(days=n) for n in range(31)]
    return [d for d in days if d.month == first.month]


def _visit(sample: tuple, on: datetime) -> tuple[str, Visit]:
    insured_id, visit_type, diagnoses, lines, pays_with = sample
    return insured_id, Visit(
        on.date(), visit_type, tuple(diagnoses),
        tuple(VisitLine(code, qty) for code, qty in lines), **pays_with,
    )  # fmt: skip


def _sync(clinic: DemoClinic, clock: SteppingClock, at: datetime) -> dict:
    clock.now = at
    report = agent.sync_once(clinic.store, clinic.identity, clinic.data_dir, at)
    if report["errors"]:
        raise RuntimeError(f"{clinic.clinic_code}: sync failed: {report['errors']}")
    return report


def _reconcile(hub_dir: Path, at: datetime) -> dict:
    store = open_hub_store(hub_dir)
    try:
        return reconcile_pending(store, at)
    finally:
        store.close()


def make_demo_month(
    base_dir: Path,
    month: str,
    *,
    visits_per_day: int = 4,
    on_month_close: Callable[[DemoClinic, datetime], None] | None = None,
    on_statements: Callable[[Path, str, datetime], None] | None = None,
    on_checks: Callable[[list[DemoClinic], str, datetime], None] | None = None,
) -> dict:
    """Make the demo month `month` ("YYYY-MM", over) in `base_dir` (new or empty): the hub
    in `base_dir/hub`, each clinic's terminal in `base_dir/clinics/CODE`. Returns what
    was made: the hub's folder and, per clinic, its device, settlements and reversals.
    `on_checks(clinics, month, now)` comes last, while the hub still serves: the devices
    check the county's statements then (`MonthWiring` passes all three hooks)."""
    base_dir = Path(base_dir)
    if base_dir.exists() and any(base_dir.iterdir()):
        raise FileExistsError(f"{base_dir} is not empty: the demo month needs a new folder")
    days = _days(month)
    start = datetime.combine(days[0].date(), time(7, 0), CHINA) - timedelta(days=1)
    clock = SteppingClock(start)
    hub_dir = base_dir / "hub"
    hub = sync_demo.start_demo_hub(hub_dir, clock, reconcile_interval_s=None)
    try:
        clinics = []
        for index, (code, township) in enumerate(CLINICS):
            data_dir = base_dir / "clinics" / code
            data_dir.mkdir(parents=True)
            store = SqliteDeviceStore.open(data_dir, create=True)
            list(demo.install(store, start))
            identity = services.init_device(store, data_dir, start)
            clinic = DemoClinic(code, township, data_dir, store, identity)
            # Each clinic its own villagers: the county's running figures of a person
            # are then the same as the one terminal's that sees them.
            clinic.visits = demo.SAMPLE_VISITS[index :: len(CLINICS)]
            sync_demo.provision_and_enroll(
                store, identity, data_dir, hub_dir=hub_dir, hub_url=hub.url, now=start,
                clinic_code=code, township=township,
            )  # fmt: skip
            clinics.append(clinic)
        late_days = {d.date() for d in days[-LATE_DAYS:]}
        for day in days:
            for index, clinic in enumerate(clinics):
                offline = index == OFFLINE_CLINIC and day.day in OFFLINE_DAYS
                late = index == LATE_CLINIC and day.date() in late_days
                if late and clinic.late_from_seq is None:
                    head = clinic.store.ledger_head()
                    clinic.late_from_seq = (head.seq if head else 0) + 1
                _settle_day(clinic, clock, day, visits_per_day)
                clock.now = datetime.combine(day.date(), time(18, 0), CHINA)
                services.close_day(clinic.store, clinic.identity, operator=OPERATOR, now=clock.now)
                if not offline and not late:
                    _sync(clinic, clock, datetime.combine(day.date(), time(18, 10), CHINA))
            _reconcile(hub_dir, datetime.combine(day.date(), time(23, 0), CHINA))
        after = datetime.combine(days[-1].date() + timedelta(days=1), time(9, 0), CHINA)
        for clinic in clinics:
            if on_month_close is not None:
                clock.now = after
                on_month_close(clinic, after)
            if clinic is not clinics[LATE_CLINIC]:
                _sync(clinic, clock, after + timedelta(minutes=5))
        _reconcile(hub_dir, after + timedelta(minutes=30))
        if on_statements is not None:  # the first statements, before the late upload
            clock.now = after + timedelta(hours=1)
            on_statements(hub_dir, month, clock.now)
        late_at = after + timedelta(hours=6)
        _sync(clinics[LATE_CLINIC], clock, late_at)
        _reconcile(hub_dir, late_at + timedelta(minutes=30))
        if on_statements is not None:  # corrected by the late upload
            clock.now = late_at + timedelta(hours=1)
            on_statements(hub_dir, month, clock.now)
        if on_checks is not None:  # the clinics fetch and compare the corrected statements
            clock.now = late_at + timedelta(hours=2)
            on_checks(clinics, month, clock.now)
        return {
            "month": month,
            "hub_dir": str(hub_dir),
            "clinics": [
                {
                    "clinic_code": c.clinic_code,
                    "township": c.township,
                    "device_id": c.device_id,
                    "data_dir": str(c.data_dir),
                    "settlements": len(c.settled),
                    "reversals": len(c.reversed),
                    "refused": len(c.refused),
                    "refusals": sorted(set(c.refused)),
                    "late_from_seq": c.late_from_seq,
                }
                for c in clinics
            ],
        }
    finally:
        hub.stop()
        for clinic in locals().get("clinics", []):
            clinic.store.close()


def _settle_day(clinic: DemoClinic, clock: SteppingClock, day: datetime, count: int) -> None:
    """`count` of the clinic's villagers' visits through the morning, each seventh
    settlement reversed twenty minutes later."""
    for n, sample in enumerate(clinic.visits[:count]):
        clock.now = datetime.combine(day.date(), time(8, 30), CHINA) + timedelta(minutes=37 * n)
        insured_id, visit = _visit(sample, clock.now)
        try:
            settled = services.settle_visit(
                clinic.store, clinic.identity, insured_id=insured_id, visit=visit,
                operator=OPERATOR, now=clock.now,
            )  # fmt: skip
        except Rejection as rejection:  # a limit of the demo county: not settled
            clinic.refused.append(rejection.code)
            continue
        clinic.settled.append(settled.record["tx_id"])
        if len(clinic.settled) % REVERSE_EVERY == 0:
            clock.now += timedelta(minutes=20)
            reversal = services.reverse_settlement(
                clinic.store, clinic.identity, tx_id=settled.record["tx_id"],
                reason=REVERSAL_REASON, operator=OPERATOR, now=clock.now,
            )  # fmt: skip
            clinic.reversed.append(reversal.record["tx_id"])


# ---- the month's other parts, wired in -------------------------------------------------

ALTERED_BY = 100  # fen the altered settlement's fund share moves to the person's cash


class MonthWiring:
    """The hooks of `make_demo_month` that run the month's clearing for real: each device
    closes its month with its own month-close service after its last daily close (the
    demo month then uploads the close), the hub builds every clinic's statement before
    and after the late upload, and at the end each device fetches its statement and
    compares it with its ledger as `clinic statement` does (the comparison is reported
    to the hub). With `alter_one`, one settlement of the first clinic is altered on the
    county's side before the first statements (its recomputation pays 1 yuan less from
    the fund and 1 yuan more in cash), so that this clinic's check disagrees and names it.
    """

    def __init__(self, alter_one: bool = False) -> None:
        self.alter_one = alter_one
        self.clinics: list[DemoClinic] = []
        self.closes: dict[str, dict] = {}  # clinic code → its monthly_close record
        self.revisions: dict[str, list[int]] = {}  # clinic code → revision after each build
        self.statements: dict[str, dict] = {}  # clinic code → latest revision, as stored
        self.checks: dict[str, dict] = {}  # clinic code → the device's kept check
        self.altered: dict | None = None

    def hooks(self) -> dict:
        return {
            "on_month_close": self.on_month_close,
            "on_statements": self.on_statements,
            "on_checks": self.on_checks,
        }

    def on_month_close(self, clinic: DemoClinic, now: datetime) -> None:
        self.clinics.append(clinic)
        closed = services.close_month(clinic.store, clinic.identity, operator=OPERATOR, now=now)
        self.closes[clinic.clinic_code] = closed.record

    def on_statements(self, hub_dir: Path, month: str, now: datetime) -> None:
        store = open_hub_store(hub_dir)
        try:
            if self.alter_one and self.altered is None:
                self.altered = _alter_one(store, self.clinics[0], now)
            for code, _township in CLINICS:
                statement = hub_statements.refresh(store, code, month, now)
                self.revisions.setdefault(code, []).append(statement.revision)
                self.statements[code] = {
                    "revision": statement.revision,
                    "status": statement.status,
                    "total": statement.content["total"],
                    "changes": statement.content.get("changes", []),
                }
        finally:
            store.close()

    def on_checks(self, clinics: list[DemoClinic], month: str, now: datetime) -> None:
        for clinic in clinics:
            check = check_statement(clinic.store, clinic.identity, month, now)
            if check is None:
                raise RuntimeError(f"{clinic.clinic_code}: the county has no statement of {month}")
            self.checks[clinic.clinic_code] = check

    def summary(self, made: dict) -> dict:
        """What was made, with each clinic's month close, statement and check."""
        clinics = []
        for clinic in made["clinics"]:
            code = clinic["clinic_code"]
            close, statement = self.closes[code], self.statements[code]
            comparison = self.checks[code]["comparison"]
            clinics.append(
                {
                    **clinic,
                    "monthly_close": {
                        "seq": close["seq"],
                        "tx_id": close["tx_id"],
                        "net": close["body"]["net"],
                    },
                    "statement": {
                        "revision": statement["revision"],
                        "revisions": self.revisions[code],
                        "status": statement["status"],
                        "total": statement["total"],
                        "changes": [
                            {"tx_id": c["tx_id"], "what": c["what"]} for c in statement["changes"]
                        ],
                    },
                    "agrees": comparison["agrees"],
                    "differences": comparison["differences"],
                    "missing_at_county": comparison["missing_at_county"],
                    "missing_on_device": comparison["missing_on_device"],
                    "reported": self.checks[code]["reported_at"] is not None,
                }
            )
        return {**made, "clinics": clinics, "altered": self.altered}


def _record(clinic: DemoClinic, tx_id: str) -> dict:
    record = clinic.store.record_by_tx(tx_id)
    if record is None:
        raise RuntimeError(f"{clinic.clinic_code}: no record {tx_id}")
    return record


def _alter_one(store: HubStore, clinic: DemoClinic, now: datetime) -> dict:
    """Alter the county's recomputation of one of `clinic`'s settlements (not reversed,
    its fund share at least ALTERED_BY): the demo's deliberate disagreement."""
    undone = {_record(clinic, tx_id)["body"]["reverses"] for tx_id in clinic.reversed}
    for tx_id in clinic.settled:
        if tx_id in undone:
            continue
        status, result = store.recomputation_of(clinic.device_id, tx_id) or ("pending", None)
        if status != "ok" or result is None or result["fund"] < ALTERED_BY:
            continue
        altered = {
            **result,
            "fund": result["fund"] - ALTERED_BY,
            "cash": result["cash"] + ALTERED_BY,
        }
        record = _record(clinic, tx_id)
        with store.unit_of_work():
            store.save_recomputation(clinic.device_id, record["seq"], tx_id, "differs", altered)
            # The county's reconciliation list shows it as any recomputation difference.
            store.add_reconciliation_item(
                clinic.device_id, record["seq"], tx_id, reconcile.SETTLEMENT_DIFFERS,
                record["body"].get("business_day") or record["created_at"][:10],
                {"insured_id": record["body"]["insured_id"],
                 "fields": reconcile.differences(record["body"]["result"], altered),
                 "accumulators_before": {}},
                iso(now),
            )  # fmt: skip
        return {
            "clinic_code": clinic.clinic_code,
            "device_id": clinic.device_id,
            "tx_id": tx_id,
            "seq": record["seq"],
            "hifp_pay": {"device": result["fund"], "county": altered["fund"]},
            "psn_cash_pay": {"device": result["cash"], "county": altered["cash"]},
        }
    raise RuntimeError(f"{clinic.clinic_code}: no settlement to alter")


def run_demo_month(
    base_dir: Path, month: str, *, visits_per_day: int = 4, alter_one: bool = False
) -> dict:
    """The demo month with its month closes, statements and checks (`clinic demo-month`):
    what `make_demo_month` made, each clinic with its `monthly_close`, `statement`
    (revision, total, changes), `agrees` and the differences its check found; and
    `altered` (the altered settlement, or None)."""
    wiring = MonthWiring(alter_one=alter_one)
    made = make_demo_month(base_dir, month, visits_per_day=visits_per_day, **wiring.hooks())
    return wiring.summary(made)
