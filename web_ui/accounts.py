"""Operators of the terminal UI: PINs as slow hashes, sign-in with lockout, management.

PINs are hashed by `edge.adapters.passwords` (scrypt, a random salt per operator); a
PIN kept in an older format is written again in today's at its next good sign-in. After
`MAX_FAILURES` wrong PINs in a row the operator is locked out for a while, and the
lockout is recorded in the ledger as a signed event. `now` is always an argument.
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from edge import services
from edge.adapters import passwords
from edge.adapters.identity import IdentityError
from edge.adapters.sqlite_store import SqliteDeviceStore

ROLES = ("doctor", "coordinator", "admin", "tester")
MAX_FAILURES = 5
DEFAULT_COST = passwords.DEFAULT_COST  # log2 of scrypt's N (`PIN_HASH_COST`)
PIN_PATTERN = re.compile(r"[0-9]{4,8}")
OPERATOR_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,32}")

# Demo mode only: printed by `clinic serve --demo`.
DEMO_PINS = {"doc01": "1111", "coord01": "2222", "admin01": "3333", "test01": "4444"}


class AccountError(Exception):
    """A refused account operation; `code` picks the message shown to the operator."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


def hash_pin(pin: str, cost: int = DEFAULT_COST) -> str:
    return passwords.hash_password(pin, cost)


def pin_matches(pin: str, stored: str) -> bool:
    return passwords.verify_password(pin, stored)


def check_pin_format(pin: str) -> None:
    if not PIN_PATTERN.fullmatch(pin or ""):
        raise AccountError("BAD_PIN_FORMAT")


@dataclass(frozen=True)
class Operator:
    operator_id: str
    name: str
    role: str
    active: bool
    has_pin: bool
    failed_attempts: int
    locked_until: str | None
    session_version: int = 0

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and datetime.fromisoformat(self.locked_until) > now


_COLUMNS = (
    "operator_id, name, role, active, pin_hash IS NOT NULL, failed_attempts, locked_until,"
    " session_version"
)


def _operator(row) -> Operator:
    operator_id, name, role, active, has_pin, failed, locked, version = row
    return Operator(operator_id, name, role, bool(active), bool(has_pin), failed, locked, version)


def operators(store: SqliteDeviceStore) -> list[Operator]:
    rows = store.db.execute(f"SELECT {_COLUMNS} FROM operator ORDER BY role, operator_id")
    return [_operator(row) for row in rows]


def get_operator(store: SqliteDeviceStore, operator_id: str) -> Operator | None:
    row = store.db.execute(
        f"SELECT {_COLUMNS} FROM operator WHERE operator_id = ?", [operator_id]
    ).fetchone()
    return None if row is None else _operator(row)


@dataclass(frozen=True)
class SignIn:
    """What a sign-in attempt gave: the operator, or why not (`error`, attempts left)."""

    operator: Operator | None
    error: str | None = None
    attempts_left: int | None = None
    locked_until: str | None = None


def _locked_until(store: SqliteDeviceStore, operator_id: str, now: datetime) -> str | None:
    """The operator's lock as it stands in the database (read inside the transaction)."""
    (locked_until,) = store.db.execute(
        "SELECT locked_until FROM operator WHERE operator_id = ?", [operator_id]
    ).fetchone()
    if locked_until is None or datetime.fromisoformat(locked_until) <= now:
        return None
    return locked_until


def sign_in(
    store: SqliteDeviceStore,
    data_dir: Path,
    operator_id: str,
    pin: str,
    *,
    now: datetime,
    lockout: timedelta,
    cost: int = DEFAULT_COST,
) -> SignIn:
    """Check a PIN. Wrong PINs count towards a lockout; the lockout is a signed event. A
    good PIN whose hash is in an older format or of another `cost` is hashed again."""
    operator = get_operator(store, operator_id)
    if operator is None or not operator.active:
        return SignIn(None, "UNKNOWN_OPERATOR")
    if operator.locked_at(now):
        return SignIn(None, "LOCKED_OUT", locked_until=operator.locked_until)
    (stored,) = store.db.execute(
        "SELECT pin_hash FROM operator WHERE operator_id = ?", [operator_id]
    ).fetchone()
    if stored is None:
        return SignIn(None, "NO_PIN")
    if pin_matches(pin, stored):
        rehashed = hash_pin(pin, cost) if passwords.needs_rehash(stored, cost) else None
        with store.write_transaction():
            # Parallel wrong PINs may have locked the operator while this hash ran.
            locked = _locked_until(store, operator_id, now)
            if locked is None:
                store.db.execute(
                    "UPDATE operator SET failed_attempts = 0, locked_until = NULL"
                    " WHERE operator_id = ?",
                    [operator_id],
                )
            if locked is None and rehashed is not None:  # unless the PIN changed meanwhile
                store.db.execute(
                    "UPDATE operator SET pin_hash = ? WHERE operator_id = ? AND pin_hash = ?",
                    [rehashed, operator_id, stored],
                )
        if locked is not None:
            return SignIn(None, "LOCKED_OUT", locked_until=locked)
        return SignIn(get_operator(store, operator_id))
    with store.write_transaction():
        locked = _locked_until(store, operator_id, now)
        if locked is not None:
            return SignIn(None, "LOCKED_OUT", locked_until=locked)
        (failures,) = store.db.execute(
            "UPDATE operator SET failed_attempts = failed_attempts + 1 WHERE operator_id = ?"
            " RETURNING failed_attempts",
            [operator_id],
        ).fetchone()
        locked_until = None
        if failures >= MAX_FAILURES:
            locked_until = (now + lockout).replace(microsecond=0).isoformat()
            store.db.execute(
                "UPDATE operator SET failed_attempts = 0, locked_until = ? WHERE operator_id = ?",
                [locked_until, operator_id],
            )
    if locked_until is None:
        return SignIn(None, "WRONG_PIN", attempts_left=MAX_FAILURES - failures)
    _record(
        store,
        data_dir,
        now,
        {
            "event": "operator_locked_out",
            "operator": operator_id,
            "failures": failures,
            "locked_until": locked_until,
        },
    )
    return SignIn(None, "LOCKED_OUT", locked_until=locked_until)


def _record(store: SqliteDeviceStore, data_dir: Path, now: datetime, event: dict) -> bool:
    """A signed audit event; False when the device has no usable identity to sign with."""
    try:
        identity = services.load_identity(store, data_dir)
    except IdentityError:
        return False
    services.record_event(store, identity, event, now)
    return True


# ---- management (admin) ------------------------------------------------------------------


def set_pin(
    store: SqliteDeviceStore,
    data_dir: Path,
    operator_id: str,
    pin: str,
    *,
    now: datetime,
    by: str,
    cost: int = DEFAULT_COST,
) -> None:
    """Set or reset an operator's PIN (which also lifts a lockout), as a signed event.
    Every session the operator had ends (whoever knew the old PIN is out)."""
    check_pin_format(pin)
    if get_operator(store, operator_id) is None:
        raise AccountError("UNKNOWN_OPERATOR", operator_id)
    hashed = hash_pin(pin, cost)
    with store.write_transaction():
        store.db.execute(
            "UPDATE operator SET pin_hash = ?, failed_attempts = 0, locked_until = NULL,"
            " session_version = session_version + 1 WHERE operator_id = ?",
            [hashed, operator_id],
        )
    _record(
        store, data_dir, now, {"event": "operator_pin_set", "operator": by, "target": operator_id}
    )


def end_sessions(store: SqliteDeviceStore, operator_id: str) -> int:
    """Every session of the operator ends (sign-out): the new session version."""
    with store.write_transaction():
        row = store.db.execute(
            "UPDATE operator SET session_version = session_version + 1 WHERE operator_id = ?"
            " RETURNING session_version",
            [operator_id],
        ).fetchone()
    return 0 if row is None else row[0]


def add_operator(
    store: SqliteDeviceStore,
    data_dir: Path,
    operator_id: str,
    name: str,
    role: str,
    pin: str,
    *,
    now: datetime,
    by: str,
    cost: int = DEFAULT_COST,
) -> None:
    if not OPERATOR_ID_PATTERN.fullmatch(operator_id or ""):
        raise AccountError("BAD_OPERATOR_ID", operator_id)
    if not (name or "").strip():
        raise AccountError("BAD_NAME")
    if role not in ROLES:
        raise AccountError("BAD_ROLE", role)
    check_pin_format(pin)
    if get_operator(store, operator_id) is not None:
        raise AccountError("OPERATOR_EXISTS", operator_id)
    store.add_operator(operator_id, name.strip(), role)
    _record(
        store,
        data_dir,
        now,
        {"event": "operator_added", "operator": by, "target": operator_id, "role": role},
    )
    set_pin(store, data_dir, operator_id, pin, now=now, by=by, cost=cost)


def set_active(
    store: SqliteDeviceStore,
    data_dir: Path,
    operator_id: str,
    active: bool,
    *,
    now: datetime,
    by: str,
) -> None:
    """Disable (or enable again) an operator; an admin cannot disable themself."""
    if get_operator(store, operator_id) is None:
        raise AccountError("UNKNOWN_OPERATOR", operator_id)
    if operator_id == by and not active:
        raise AccountError("CANNOT_DISABLE_SELF")
    with store.write_transaction():
        store.db.execute(
            "UPDATE operator SET active = ? WHERE operator_id = ?", [int(active), operator_id]
        )
    event = "operator_enabled" if active else "operator_disabled"
    _record(store, data_dir, now, {"event": event, "operator": by, "target": operator_id})


def install_demo_pins(store: SqliteDeviceStore, cost: int = DEFAULT_COST) -> dict[str, str]:
    """Demo mode: give the demo operators that have no PIN yet their demo PIN."""
    given = {}
    for operator_id, pin in DEMO_PINS.items():
        operator = get_operator(store, operator_id)
        if operator is not None and not operator.has_pin:
            with store.write_transaction():
                store.db.execute(
                    "UPDATE operator SET pin_hash = ? WHERE operator_id = ?",
                    [hash_pin(pin, cost), operator_id],
                )
            given[operator_id] = pin
    return given
