"""The county's clearing statement (docs/statements.md) checked on the device record by
record against the device's own ledger for the month (its signature is checked before,
`sync.statements.verify_statement`). Pure: the caller hands in the verified statement
and the device's records of that month.

Both sides put a record in the China-time month of its `created_at`; a settlement's row
carries what each payer paid, a reversal's row what it gave back, negative (the county's
total is the sum of its rows)."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.domain.money import format_yuan
from edge.domain.records import (
    CHINESE_NAMES,
    MONEY_FIELDS,
    NATIONAL_NAMES,
    month_of,
    payer_amounts,
)

PAYERS = tuple(NATIONAL_NAMES[name] for name in MONEY_FIELDS)
MAX_REPORTED = 5000  # entries of a reconciliation report, all lists together (the API's bound)


def device_rows(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The device's own detail: {tx_id: {seq, kind, amounts by national payer name}} of
    its settlements and reversals (reversals negative)."""
    rows = {}
    for record in records:
        if record["kind"] == "settlement":
            amounts = payer_amounts(record["body"]["result"])
        elif record["kind"] == "reversal":
            amounts = {n: -record["body"]["amounts"].get(n, 0) for n in MONEY_FIELDS}
        else:
            continue
        rows[record["tx_id"]] = {
            "seq": record["seq"],
            "kind": record["kind"],
            "created_at": record["created_at"],
            "insured_id": record["body"]["insured_id"],
            "amounts": {NATIONAL_NAMES[n]: amounts[n] for n in MONEY_FIELDS},
        }
    return rows


@dataclass(frozen=True)
class Difference:
    tx_id: str
    seq: int | None
    field: str  # a national payer name
    device: int
    county: int

    @property
    def by(self) -> int:
        """How much more the county counts than the device (fen)."""
        return self.county - self.device


@dataclass(frozen=True)
class Comparison:
    month: str
    revision: int
    status: str
    device_id: str
    differences: tuple[Difference, ...]
    missing_at_county: tuple[str, ...]  # the device's tx_ids the statement lacks
    missing_on_device: tuple[str, ...]  # the statement's tx_ids (of this device) it lacks
    device_total: dict[str, int]  # by national payer: this device's rows summed
    county_total: dict[str, int]  # the statement's rows of this device summed
    count: int  # the device's settlements and reversals of the month
    seqs: dict[str, int] = field(default_factory=dict)  # tx_id → seq on the device

    @property
    def agrees(self) -> bool:
        return not (self.differences or self.missing_at_county or self.missing_on_device)

    def report(self) -> dict[str, Any]:
        """The reconciliation report the device sends (`POST /statement/reconciliation`),
        at most MAX_REPORTED entries in all."""
        left = MAX_REPORTED
        differences = [
            {"tx_id": d.tx_id, "field": d.field, "device": d.device, "county": d.county}
            for d in self.differences[:left]
        ]
        left -= len(differences)
        at_county = list(self.missing_at_county[:left])
        left -= len(at_county)
        return {
            "month": self.month,
            "revision": self.revision,
            "agrees": self.agrees,
            "differences": differences,
            "missing_at_county": at_county,
            "missing_on_device": list(self.missing_on_device[: max(0, left)]),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.report(),
            "status": self.status,
            "device_id": self.device_id,
            "count": self.count,
            "device_total": self.device_total,
            "county_total": self.county_total,
            "seqs": self.seqs,
        }


def compare(
    statement: Mapping[str, Any], records: Iterable[Mapping[str, Any]], *, device_id: str
) -> Comparison:
    """The statement's rows of this device against the device's own settlements and
    reversals of the statement's month (`records`: the device's records; those of other
    months are left out)."""
    month = statement["month"]
    ours = device_rows(r for r in records if month_of(r["created_at"]) == month)
    theirs: dict[str, Mapping[str, Any]] = {}
    for row in statement["detail"]:
        if isinstance(row, dict) and row.get("device_id") == device_id:
            theirs[str(row.get("tx_id"))] = row
    differences = []
    for tx_id, mine in ours.items():
        row = theirs.get(tx_id)
        if row is None:
            continue
        for payer in PAYERS:
            county = row.get(payer, 0)
            county = county if type(county) is int else 0
            if county != mine["amounts"][payer]:
                differences.append(
                    Difference(tx_id, mine["seq"], payer, mine["amounts"][payer], county)
                )
    county_total = dict.fromkeys(PAYERS, 0)
    for row in theirs.values():
        for payer in PAYERS:
            value = row.get(payer, 0)
            county_total[payer] += value if type(value) is int else 0
    return Comparison(
        month=month,
        revision=int(statement.get("revision") or 0),
        status=str(statement.get("status") or ""),
        device_id=device_id,
        differences=tuple(differences),
        missing_at_county=tuple(sorted(set(ours) - set(theirs), key=lambda t: ours[t]["seq"])),
        missing_on_device=tuple(sorted(set(theirs) - set(ours))),
        device_total={p: sum(r["amounts"][p] for r in ours.values()) for p in PAYERS},
        county_total=county_total,
        count=len(ours),
        seqs={tx_id: row["seq"] for tx_id, row in ours.items()},
    )


# ---- what the clinic reads ------------------------------------------------------------------

CHINESE_PAYERS = {NATIONAL_NAMES[n]: CHINESE_NAMES[n] for n in MONEY_FIELDS}
STATUS_NAMES = {"draft": "草稿 draft", "agreed": "已确认 agreed", "paid": "已支付 paid"}


def comparison_lines(
    comparison: Mapping[str, Any], names: Mapping[str, str] | None = None
) -> list[str]:
    """The comparison (`Comparison.to_json`) in plain words, Chinese first: whether the
    county's statement and the device agree and, where not, which settlements differ and
    by how much (yuan). `names`: patients' names by tx_id."""
    names = names or {}
    seqs = comparison.get("seqs", {})

    def who(tx_id: str) -> str:
        seq = seqs.get(tx_id)
        name = names.get(tx_id, "")
        return (f"流水 {seq} " if seq is not None else "") + (f"{name} " if name else "") + tx_id

    month = comparison["month"]
    lines = [
        f"{month} 县级结算单 第{comparison['revision']}版 "
        f"{STATUS_NAMES.get(comparison['status'], comparison['status'])}"
    ]
    if comparison["agrees"]:
        lines.append(
            f"一致：县级结算单与本机台账逐笔相符（{comparison['count']}笔）"
            f" / Agrees: the county's statement matches this device record by record"
        )
    else:
        lines.append("不一致：县级结算单与本机台账不符 / Does not agree with this device's ledger")
    for d in comparison["differences"]:
        lines.append(
            f"  {who(d['tx_id'])}：{CHINESE_PAYERS.get(d['field'], d['field'])} {d['field']}"
            f" 本机 {format_yuan(d['device'])}，县级 {format_yuan(d['county'])}，"
            f"相差 {format_yuan(d['county'] - d['device'])}"
        )
    for tx_id in comparison["missing_at_county"]:
        lines.append(f"  {who(tx_id)}：县级结算单中没有这笔 / missing at the county")
    for tx_id in comparison["missing_on_device"]:
        lines.append(f"  {tx_id}：本机台账中没有这笔 / not on this device")
    device, county = comparison["device_total"], comparison["county_total"]
    for payer in PAYERS:
        if device.get(payer) or county.get(payer):
            mark = "" if device.get(payer) == county.get(payer) else "  ≠"
            lines.append(
                f"  {CHINESE_PAYERS[payer]}：本机 {format_yuan(device.get(payer, 0))}，"
                f"县级 {format_yuan(county.get(payer, 0))}{mark}"
            )
    return lines
