"""An in-memory `DeviceStore` (edge/ports.py): the device's use cases run on it exactly as
on SQLite, so their logic is tested without a database. mypy checks that it keeps up
with the protocol (`_checked` below)."""

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from typing import Any

from edge.domain.documents import YEAR_WIDE, InsuredPerson
from edge.domain.model import Accumulators, CatalogItem, Policy
from edge.ports import DeviceRow, DeviceStore, LedgerHead


class FakeDeviceStore:
    def __init__(
        self, policy: Policy, catalog: Iterable[CatalogItem], persons: Iterable[InsuredPerson],
        operators: dict[str, tuple[str, str]], catalog_version: str = "fake-catalog",
    ) -> None:  # fmt: skip
        self.policy = policy
        self.catalog = {item.code: item for item in catalog}
        self.catalog_version_ = catalog_version
        self.persons = {entry.insured_id: entry for entry in persons}
        self.operators = operators
        self.ledger: list[dict] = []  # records in seq order
        self.days: dict[int, tuple[str, str | None]] = {}  # seq -> (day, insured_id)
        self.sums: dict[tuple[str, int, str], tuple[int, int]] = {}
        self.year_wide: dict[tuple[str, int], Accumulators] = {}
        self.day_fund: dict[tuple[str, date, str], int] = {}
        self.device_row: DeviceRow | None = None
        for entry in self.persons.values():
            for (year, scope), values in entry.accumulators.items():
                if scope == YEAR_WIDE:
                    self.year_wide[(entry.insured_id, year)] = values
                else:
                    self.sums[(entry.insured_id, year, scope)] = (
                        values.deductible_used, values.fund_paid,
                    )  # fmt: skip

    @contextmanager
    def write_transaction(self) -> Iterator[None]:
        """All or nothing, like SQLite's: a use case that raises leaves no trace."""
        # the values held are immutable (frozen rows, sealed records): copying the
        # containers is a snapshot
        snapshot = {k: v.copy() if isinstance(v, dict | list) else v for k, v in vars(self).items()}
        try:
            yield
        except BaseException:
            vars(self).update(snapshot)
            raise

    def catalog_version(self) -> str | None:
        return self.catalog_version_

    def catalog_items(
        self, codes: Iterable[str], version: str | None = None
    ) -> dict[str, CatalogItem]:
        return {code: self.catalog[code] for code in codes if code in self.catalog}

    def unknown_diagnoses(self, codes) -> list[str]:
        return []  # no diagnosis list: the format check alone

    def current_policy(self) -> Policy:
        return self.policy

    def insured_person(
        self, insured_id: str, with_accumulators: bool = True
    ) -> InsuredPerson | None:
        return self.persons.get(insured_id)

    def accumulators(
        self, insured_id: str, on: date, visit_type: str, family_holder: str | None = None
    ) -> Accumulators:
        deductible, fund = self.sums.get((insured_id, on.year, visit_type), (0, 0))
        year = self.year_wide.get((insured_id, on.year), Accumulators())
        holder = self.persons.get(family_holder) if family_holder else None
        return dataclasses.replace(
            year,
            deductible_used=deductible,
            fund_paid=fund,
            day_fund_paid=self.day_fund.get((insured_id, on, visit_type), 0),
            family_account_balance=holder.person.account_balance if holder else 0,
        )

    def set_accumulators(
        self, insured_id: str, on: date, visit_type: str, figures: Mapping[str, Any],
        *, before: Mapping[str, Any] | None = None, family_holder: str | None = None,
    ) -> None:  # fmt: skip
        self.sums[(insured_id, on.year, visit_type)] = (
            figures["deductible_used"], figures["fund_paid"],
        )  # fmt: skip
        self.year_wide[(insured_id, on.year)] = Accumulators(
            assistance_paid=figures["assistance_paid"],
            ci_selfpay=figures["ci_selfpay"],
            ci_paid=figures["ci_paid"],
            supplements_paid=dict(figures["supplements_paid"]),
        )
        self.day_fund[(insured_id, on, visit_type)] = figures["day_fund_paid"]
        self._set_balance(insured_id, figures["account_balance"])
        if family_holder is not None:
            self._set_balance(family_holder, figures["family_account_balance"])

    def _set_balance(self, insured_id: str, balance: int) -> None:
        entry = self.persons[insured_id]
        person = dataclasses.replace(entry.person, account_balance=balance)
        self.persons[insured_id] = dataclasses.replace(entry, person=person)

    def device(self) -> DeviceRow | None:
        return self.device_row

    def create_device(self, device_id: str, public_key: str, created_at: str) -> None:
        self.device_row = DeviceRow(device_id, public_key, created_at, None, 0, 0, None)

    def set_clock_behind_since(self, created_at: str | None) -> None:
        assert self.device_row is not None
        self.device_row = dataclasses.replace(self.device_row, clock_behind_since=created_at)

    def active_operator(self, operator_id: str) -> tuple[str, str] | None:
        return self.operators.get(operator_id)

    def revoked_since(self) -> str | None:
        return None

    def ledger_head(self) -> LedgerHead | None:
        if not self.ledger:
            return None
        last = self.ledger[-1]
        return LedgerHead(last["seq"], last["hash"], last["created_at"])

    def append_record(
        self, record: dict, *, day: str, insured_id: str | None = None,
        fund: int | None = None, reverses: str | None = None, text: str | None = None,
    ) -> None:  # fmt: skip
        self.ledger.append(record)
        self.days[record["seq"]] = (day, insured_id)
        if self.device_row is not None and record["kind"] in ("settlement", "reversal"):
            signed = (fund or 0) * (1 if record["kind"] == "settlement" else -1)
            unsynced = self.device_row.unsynced_fund + signed
            self.device_row = dataclasses.replace(self.device_row, unsynced_fund=unsynced)

    def records(self, after_seq: int = 0) -> Iterator[dict]:
        return iter([r for r in self.ledger if r["seq"] > after_seq])

    def record_by_tx(self, tx_id: str) -> dict | None:
        return next((r for r in self.ledger if r["tx_id"] == tx_id), None)

    def reversal_of(self, tx_id: str) -> int | None:
        return next(
            (r["seq"] for r in self.ledger
             if r["kind"] == "reversal" and r["body"].get("reverses") == tx_id),
            None,
        )  # fmt: skip

    def last_seq_of_kind(self, kind: str) -> int:
        return max((r["seq"] for r in self.ledger if r["kind"] == kind), default=0)

    def settlements_on(self, insured_id: str, day: str) -> int:
        return sum(
            1 for r in self.ledger
            if r["kind"] == "settlement" and self.days[r["seq"]] == (day, insured_id)
        )  # fmt: skip

    def premium_paid(self, insured_id: str, year: int) -> str | None:
        return next(
            (row["tx_id"] for row in reversed(self.premium_rows(year=year, limit=len(self.ledger)))
             if row["reversed_by"] is None
             and any(p["insured_id"] == insured_id for p in row["persons"])),
            None,
        )  # fmt: skip

    def premium_rows(
        self, *, year: int | None = None, day: str | None = None, tx_id: str | None = None,
        limit: int = 200,
    ) -> list[dict]:  # fmt: skip
        undone = {r["body"]["reverses"]: r for r in self.ledger if r["kind"] == "premium_reversal"}
        rows = []
        for r in reversed(self.ledger):
            body, reversal = r["body"], undone.get(r["tx_id"])
            if r["kind"] != "premium" or (year is not None and body["year"] != year) or (
                day is not None and self.days[r["seq"]][0] != day) or (
                tx_id is not None and r["tx_id"] != tx_id):  # fmt: skip
                continue
            rows.append({
                "tx_id": r["tx_id"], "seq": r["seq"], "year": body["year"],
                "created_at": r["created_at"], "day": self.days[r["seq"]][0],
                "payer_name": body["payer"]["name"], "method": body["method"],
                "reference": body["reference"], "account_holder": body["account_holder"],
                "amount": body["amount"], "state_paid": body["state_paid"],
                "persons": body["persons"],
                "reversed_by": reversal["tx_id"] if reversal else None,
                "reversal_seq": reversal["seq"] if reversal else None,
            })  # fmt: skip
        return rows[:limit]

    def set_account_balance(self, insured_id: str, balance: int) -> None:
        self._set_balance(insured_id, balance)


def _checked(store: FakeDeviceStore) -> DeviceStore:
    return store  # mypy: the fake satisfies the protocol
