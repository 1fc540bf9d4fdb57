"""The county's clearing statement of a clinic's month (`docs/statements.md`): its
document, the county key's signature over it, and the device's reconciliation report.
Shared by the hub (which builds and signs) and the device (which verifies and reports).

A statement is `{"statement": {...}, "signature": base64url Ed25519}`; the signature is
over the canonical JSON (`sync.protocol.canonical_json`) of `statement`. Amounts are
integer fen by the national platform's payer names (`edge.domain.records.NATIONAL_NAMES`).
Which month a record belongs to: the China-time calendar month of its `created_at`.
"""

import re
from datetime import date, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.clock import CLINIC_TZ
from edge.domain.ledger import b64url, b64url_decode
from edge.domain.records import MONEY_FIELDS, NATIONAL_NAMES
from sync.protocol import SyncError, canonical_json

FORMAT_VERSION = 1
KIND = "clearing_statement"
# Every payer by its national name, the total first (3201/3202's order).
PAYERS = tuple(NATIONAL_NAMES[name] for name in MONEY_FIELDS)
STATUSES = ("draft", "agreed", "paid")
# Years 2000-2099: no clinic settled before, and datetime() never sees year 0 or 10000.
MONTH = re.compile(r"(20\d{2})-(0[1-9]|1[0-2])")
# A reconciliation report's lists together: a clinic's month is far below this.
MAX_REPORT_ENTRIES = 5000
MAX_TX_ID = 64


def parse_month(text: object) -> str:
    """`YYYY-MM`, checked; raises SyncError BAD_REQUEST."""
    if not isinstance(text, str) or not MONTH.fullmatch(text):
        raise SyncError("BAD_REQUEST", "the month must be YYYY-MM")
    return text


def month_of(created_at: str) -> str | None:
    """The China-time calendar month (`YYYY-MM`) of a record's `created_at`; None when it
    is not a date-time with an offset."""
    try:
        moment = datetime.fromisoformat(created_at)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(CLINIC_TZ).strftime("%Y-%m")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """The first instant of `month` and of the month after it, China time."""
    year, number = int(month[:4]), int(month[5:])
    start = datetime(year, number, 1, tzinfo=CLINIC_TZ)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=CLINIC_TZ)
    return start, end


def month_is_over(month: str, now: datetime) -> bool:
    return now >= month_bounds(month)[1]


def previous_month(today: date) -> str:
    first = today.replace(day=1)
    return f"{first.year - (first.month == 1)}-{(first.month - 2) % 12 + 1:02d}"


def zero_amounts() -> dict[str, int]:
    return dict.fromkeys(PAYERS, 0)


def sign_statement(statement: dict, county_key: Ed25519PrivateKey) -> dict:
    """The signed document: Ed25519 is deterministic, so the same statement signed again
    is the same document."""
    return {"statement": statement, "signature": b64url(county_key.sign(canonical_json(statement)))}


def verify_statement(
    document: object,
    county_key: Ed25519PublicKey,
    *,
    month: str | None = None,
    device_id: str | None = None,
) -> dict:
    """The statement of a signed document, once its signature verifies with the county's
    key and it is a statement (of `month`, covering `device_id`, when given); raises
    SyncError BAD_STATEMENT otherwise."""
    if not isinstance(document, dict):
        raise SyncError("BAD_STATEMENT", "not an object")
    statement, signature = document.get("statement"), document.get("signature")
    if not isinstance(statement, dict) or not isinstance(signature, str):
        raise SyncError("BAD_STATEMENT", "no statement or no signature")
    try:
        county_key.verify(b64url_decode(signature), canonical_json(statement))
    except (InvalidSignature, ValueError, TypeError):
        raise SyncError("BAD_STATEMENT", "the signature does not verify") from None
    if statement.get("v") != FORMAT_VERSION or statement.get("kind") != KIND:
        raise SyncError("BAD_STATEMENT", "not a clearing statement of format version 1")
    if month is not None and statement.get("month") != month:
        raise SyncError("BAD_STATEMENT", f"a statement of {statement.get('month')}, not {month}")
    if device_id is not None and device_id not in (statement.get("device_ids") or []):
        raise SyncError("BAD_STATEMENT", "the statement does not cover this device")
    return statement


# ---- the device's reconciliation report ------------------------------------------------


def _int(value: Any) -> bool:
    return type(value) is int


def _tx(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TX_ID


def report_problem(report: object) -> str | None:
    """Why a device's reconciliation report is not well-formed, or None (`docs/statements.md`,
    "The reconciliation report")."""
    if not isinstance(report, dict):
        return "the report is not an object"
    try:
        parse_month(report.get("month"))
    except SyncError:
        return "month must be YYYY-MM"
    revision = report.get("revision")
    if type(revision) is not int or revision < 1:
        return "revision must be a whole number from 1"
    if type(report.get("agrees")) is not bool:
        return "agrees must be true or false"
    lists = ("differences", "missing_at_county", "missing_on_device")
    for name in lists:
        if not isinstance(report.get(name, []), list):
            return f"{name} must be a list"
    if sum(len(report.get(name, [])) for name in lists) > MAX_REPORT_ENTRIES:
        return f"at most {MAX_REPORT_ENTRIES} entries in all"
    for entry in report.get("differences", []):
        if not isinstance(entry, dict) or not _tx(entry.get("tx_id")):
            return "each difference needs its tx_id"
        if entry.get("field") not in PAYERS:
            return f"a difference's field must be a payer: {', '.join(PAYERS)}"
        for side in ("device", "county"):
            if entry.get(side) is not None and not _int(entry.get(side)):
                return f"a difference's {side} amount must be whole fen or null"
    for name in lists[1:]:
        if not all(_tx(tx) for tx in report.get(name, [])):
            return f"{name} must list tx_ids"
    return None


def normalized_report(report: dict) -> dict:
    """The report as the hub keeps it: its known members only."""
    return {
        "month": report["month"],
        "revision": report["revision"],
        "agrees": report["agrees"],
        "differences": [
            {k: entry.get(k) for k in ("tx_id", "field", "device", "county")}
            for entry in report.get("differences", [])
        ],
        "missing_at_county": list(report.get("missing_at_county", [])),
        "missing_on_device": list(report.get("missing_on_device", [])),
    }
