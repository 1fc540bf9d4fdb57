"""What the device's use cases (`edge.services`) need from a store: the `DeviceStore`
protocol and the rows it hands back. `edge.adapters.sqlite_store.SqliteDeviceStore` is the
one real store; tests of pure logic may pass a fake built on the same protocol."""

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from edge.domain.documents import InsuredPerson
from edge.domain.model import Accumulators, CatalogItem, Policy


@dataclass(frozen=True, slots=True)
class LedgerHead:
    seq: int
    hash: str
    created_at: str


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device_id: str
    public_key: str
    created_at: str
    last_sync_at: str | None
    synced_seq: int
    # fen settled since `synced_seq`, net of reversals (an offline limit): the difference of
    # the ledger's running `fund_total` at the head and at `synced_seq`
    unsynced_fund: int
    clock_behind_since: str | None


class DeviceStore(Protocol):
    def write_transaction(self) -> AbstractContextManager[None]:
        """One unit of work that writes; nested calls join the caller's."""
        ...

    # the county's data
    def catalog_version(self) -> str | None: ...
    def catalog_items(
        self, codes: Iterable[str], version: str | None = None
    ) -> dict[str, CatalogItem]: ...
    def current_policy(self) -> Policy: ...
    def unknown_diagnoses(self, codes: Iterable[str]) -> list[str]: ...
    def insured_person(
        self, insured_id: str, with_accumulators: bool = True
    ) -> InsuredPerson | None: ...
    def accumulators(
        self, insured_id: str, on: date, visit_type: str, family_holder: str | None = None
    ) -> Accumulators: ...
    def set_accumulators(
        self, insured_id: str, on: date, visit_type: str, figures: Mapping[str, Any],
        *, before: Mapping[str, Any] | None = None, family_holder: str | None = None,
    ) -> None: ...  # fmt: skip

    # the device and its operators
    def device(self) -> DeviceRow | None: ...
    def create_device(self, device_id: str, public_key: str, created_at: str) -> None: ...
    def set_clock_behind_since(self, created_at: str | None) -> None: ...
    def active_operator(self, operator_id: str) -> tuple[str, str] | None: ...
    def revoked_since(self) -> str | None: ...  # the county withdrew this device

    # the signed ledger
    def ledger_head(self) -> LedgerHead | None: ...
    def append_record(
        self, record: dict[str, Any], *, day: str, insured_id: str | None = None,
        fund: int | None = None, reverses: str | None = None, text: str | None = None,
    ) -> None: ...  # fmt: skip
    def records(self, after_seq: int = 0) -> Iterator[dict[str, Any]]: ...
    def records_between_days(self, first: str, last: str) -> list[dict[str, Any]]: ...
    def records_of_kind(self, kind: str) -> list[dict[str, Any]]: ...
    def record_by_tx(self, tx_id: str) -> dict[str, Any] | None: ...
    def reversal_of(self, tx_id: str) -> int | None: ...
    def last_seq_of_kind(self, kind: str) -> int: ...
    def settlements_on(self, insured_id: str, day: str) -> int: ...

    # premiums (参保缴费): the store indexes `premium` records as they are appended
    def premium_paid(self, insured_id: str, year: int) -> str | None: ...
    def premium_rows(
        self, *, year: int | None = None, day: str | None = None, tx_id: str | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]: ...  # fmt: skip
    def set_account_balance(self, insured_id: str, balance: int) -> None: ...


class RequestStore(DeviceStore, Protocol):
    """What the service point's requests (`edge.service_requests`) need besides the
    ledger: the county's encryption key the agent pinned, the requests' index (the store
    writes it as it appends a `service_request` record), their photos and the county's
    decisions."""

    def county_encryption_key(self) -> str | None: ...
    def request_rows(
        self, *, kind: str | None = None, state: str | None = None, limit: int = 200,
        tx_id: str | None = None, seq: int | None = None,
    ) -> list[dict[str, Any]]: ...  # fmt: skip
    def request_attachments(self, tx_id: str) -> list[dict[str, Any]]: ...
    def request_follow_ups(self, tx_id: str) -> list[str]: ...
    def attachment_named(self, sha256: str) -> bool: ...
    def request_decisions(self, tx_id: str) -> list[dict[str, Any]]: ...
    def decision(self, serial: int) -> dict[str, Any] | None: ...
    def save_decision(self, document: dict[str, Any], received_at: str) -> None: ...
