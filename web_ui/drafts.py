"""The visit being built, kept on the terminal (table `visit_draft`, one per operator), so
that a reload, the back button, another tab, a language switch, a restart of the service
or the idle lock never loses it; and the last operator who signed in.

A draft holds the patient chosen (insured id, how identified, the visit token that lets
the visit settle once) and the visit as the page last sent it: visit type, diagnosis
codes, lines as item code and quantity as typed, the account choices. Names, prices and
units are looked up again when the page is drawn, so the catalog stays the truth.
`draft_id` names one patient's visit: a save carrying another id (a late save from the
page of a patient already settled or cleared) is refused, and `rev` (the page's own
increasing counter) keeps an older save from overwriting a newer one.

A draft belongs to the operator who started it: another operator signing in on the same
terminal sees their own draft or a clean page, and the owner finds theirs when they
return. Settling the visit or choosing "next patient" ends it.
"""

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.adapters.sqlite_store import SqliteDeviceStore

MAX_DIAGNOSES = 20
MAX_LINES = 200
MAX_CODE = 64
MAX_QUANTITY_TEXT = 16


@dataclass(frozen=True)
class Draft:
    draft_id: str
    patient: dict
    visit: dict
    started_at: str
    updated_at: str

    @property
    def insured_id(self) -> str:
        return self.patient["insured_id"]


def current(store: SqliteDeviceStore, operator_id: str) -> Draft | None:
    row = store.db.execute(
        "SELECT draft_id, patient, visit, started_at, updated_at FROM visit_draft"
        " WHERE operator_id = ?",
        [operator_id],
    ).fetchone()
    if row is None:
        return None
    return Draft(row[0], json.loads(row[1]), json.loads(row[2]), row[3], row[4])


def start(store: SqliteDeviceStore, operator_id: str, patient: dict, now: datetime) -> Draft:
    """A new visit for `patient` (replacing the operator's draft, if any)."""
    draft_id = secrets.token_hex(8)
    at = now.isoformat()
    with store.write_transaction():
        store.db.execute(
            "INSERT OR REPLACE INTO visit_draft"
            " (operator_id, draft_id, patient, visit, rev, started_at, updated_at)"
            " VALUES (?, ?, ?, '{}', 0, ?, ?)",
            [operator_id, draft_id, json.dumps(patient, ensure_ascii=False), at, at],
        )
    return Draft(draft_id, patient, {}, at, at)


def save_visit(
    store: SqliteDeviceStore,
    operator_id: str,
    draft_id: str,
    visit: dict,
    rev: int,
    now: datetime,
) -> bool:
    """Keep the visit as the page has it; False when the draft is no longer that one."""
    with store.write_transaction():
        cursor = store.db.execute(
            "UPDATE visit_draft SET visit = ?, rev = max(rev, ?), updated_at = ?"
            " WHERE operator_id = ? AND draft_id = ? AND rev < ?",
            [
                json.dumps(visit, ensure_ascii=False),
                rev,
                now.isoformat(),
                operator_id,
                draft_id,
                rev,
            ],
        )
        if cursor.rowcount == 1:
            return True
        # an older save arriving late is not a failure: a newer one is kept
        row = store.db.execute(
            "SELECT 1 FROM visit_draft WHERE operator_id = ? AND draft_id = ?",
            [operator_id, draft_id],
        ).fetchone()
        return row is not None


def discard(store: SqliteDeviceStore, operator_id: str, draft_id: str | None = None) -> None:
    """End the operator's draft (only if it is still `draft_id`, when given)."""
    with store.write_transaction():
        if draft_id is None:
            store.db.execute("DELETE FROM visit_draft WHERE operator_id = ?", [operator_id])
        else:
            store.db.execute(
                "DELETE FROM visit_draft WHERE operator_id = ? AND draft_id = ?",
                [operator_id, draft_id],
            )


def clean_visit(payload: Any) -> dict:
    """The visit part of a draft as the page sent it, checked for shape only (the
    settlement engine judges the content); ValueError when it is not a visit at all."""
    if not isinstance(payload, dict):
        raise ValueError("the draft must be a JSON object")
    visit_type = payload.get("visit_type")
    diagnoses = payload.get("diagnoses") or []
    lines = payload.get("lines") or []
    holder = payload.get("family_account_holder")
    if visit_type is not None and (not isinstance(visit_type, str) or len(visit_type) > 32):
        raise ValueError("visit_type")
    if not isinstance(diagnoses, list) or len(diagnoses) > MAX_DIAGNOSES:
        raise ValueError("diagnoses")
    if not all(isinstance(c, str) and 0 < len(c) <= MAX_CODE for c in diagnoses):
        raise ValueError("diagnoses")
    if not isinstance(lines, list) or len(lines) > MAX_LINES:
        raise ValueError("lines")
    kept = []
    for line in lines:
        if not isinstance(line, dict):
            raise ValueError("lines")
        code, quantity = line.get("code"), line.get("quantity", "")
        if not isinstance(code, str) or not 0 < len(code) <= MAX_CODE:
            raise ValueError("lines")
        if not isinstance(quantity, str) or len(quantity) > MAX_QUANTITY_TEXT:
            raise ValueError("lines")
        kept.append({"code": code, "quantity": quantity})
    if holder is not None and (not isinstance(holder, str) or len(holder) > MAX_CODE):
        raise ValueError("family_account_holder")
    return {
        "visit_type": visit_type,
        "diagnoses": list(dict.fromkeys(diagnoses)),
        "lines": kept,
        "use_personal_account": payload.get("use_personal_account") is True,
        "use_family_account": payload.get("use_family_account") is True,
        "family_account_holder": holder or None,
    }


# ---- the last operator who signed in on this terminal --------------------------------------


def note_sign_in(store: SqliteDeviceStore, operator_id: str, now: datetime) -> None:
    with store.write_transaction():
        store.db.execute(
            "UPDATE operator SET last_signed_in_at = ? WHERE operator_id = ?",
            [now.isoformat(), operator_id],
        )


def last_operator(store: SqliteDeviceStore) -> str | None:
    row = store.db.execute(
        "SELECT operator_id FROM operator WHERE last_signed_in_at IS NOT NULL"
        " ORDER BY last_signed_in_at DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else None
