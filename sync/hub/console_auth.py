"""Console sign-in: passwords kept as scrypt hashes (`edge.adapters.passwords`), lock-out
after repeated failures (counted atomically, before the password is checked), sessions
kept by the hub, and what each role may see (admins everything, coordinators their own
township)."""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from edge.adapters.passwords import hash_password, verify_password
from sync.hub.model import ConsoleUser, HubError
from sync.hub.ports import HubStore
from sync.protocol import iso, sha256_hex

ROLES = ("admin", "coordinator")
MIN_PASSWORD_LENGTH = 8
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
WRONG_MESSAGE = "用户名或密码不正确 / wrong user name or password"


class SignInRefused(Exception):
    """Why a sign-in failed (never which part was wrong): `code` is `WRONG` or `LOCKED`
    (then `locked_until` says until when); the message is in both languages."""

    def __init__(self, code: str, message: str, locked_until: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.locked_until = locked_until


def add_user(
    store: HubStore, username: str, password: str, role: str, township: str | None, now: datetime
) -> None:
    if role not in ROLES:
        raise HubError(f"role must be one of {', '.join(ROLES)}")
    if role == "coordinator" and not township:
        raise HubError("a coordinator needs a --township")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise HubError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if not username.strip():
        raise HubError("a user needs a name")
    with store.unit_of_work():
        store.add_console_user(
            username.strip(),
            hash_password(password),
            role,
            township if role == "coordinator" else None,
            iso(now),
        )
        # A new password or role takes effect now: sessions signed in before it end.
        store.end_console_sessions(username.strip())


@dataclass(frozen=True)
class Viewer:
    """Who is signed in, and the township they are limited to (None: all)."""

    username: str
    role: str
    township: str | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_see(self, township: str) -> bool:
        return self.township is None or self.township == township


def viewer_of(user: ConsoleUser) -> Viewer:
    return Viewer(user.username, user.role, None if user.role == "admin" else user.township)


def sign_in(store: HubStore, username: str, password: str, now: datetime) -> Viewer:
    """The viewer `username` becomes with `password`. Every attempt is counted before its
    password is checked, in one statement inside the write transaction: however many
    arrive in parallel, at most MAX_FAILURES passwords are checked before the lock-out."""
    with store.unit_of_work():
        counted = store.count_console_attempt(username)
        refusal = None if counted is None else _admitted(store, username, *counted, now)
    if counted is None:
        hash_password(password)  # as slow as a real check: no user enumeration by timing
        raise SignInRefused("WRONG", WRONG_MESSAGE)
    if refusal is not None:
        raise refusal
    user = store.console_user(username)
    if user is None or not verify_password(password, user.password_hash):
        with store.unit_of_work():
            latest = store.console_user(username)
            if latest is not None and latest.failures >= MAX_FAILURES:
                store.set_console_failures(username, 0, iso(now + LOCKOUT))
        raise SignInRefused("WRONG", WRONG_MESSAGE)
    with store.unit_of_work():
        store.set_console_failures(username, 0, None)
    return viewer_of(user)


def _admitted(
    store: HubStore, username: str, attempt: int, locked_until: str | None, now: datetime
) -> SignInRefused | None:
    """Whether the attempt just counted (number `attempt`) may check its password: not
    while locked, nor beyond MAX_FAILURES attempts (those lock the user)."""
    if locked_until and now < datetime.fromisoformat(locked_until):
        store.set_console_failures(username, 0, locked_until)  # refused: not an attempt
        return _locked(locked_until)
    if locked_until:  # the lock-out is over: this is the first attempt again
        store.set_console_failures(username, 1, None)
        return None
    if attempt > MAX_FAILURES:
        until = iso(now + LOCKOUT)
        store.set_console_failures(username, 0, until)
        return _locked(until)
    return None


def _locked(until: str) -> SignInRefused:
    return SignInRefused("LOCKED", f"账户已锁定至 {until} / locked until {until}", until)


# ---- sessions -------------------------------------------------------------------------------
# The cookie holds only a random session id; the hub keeps its hash, the user and the
# times, and reads the user's role at every request. Signing out, or a change of the
# user's role or password, deletes the user's sessions: a copied cookie stops working.

SESSION_LIFETIME = timedelta(hours=8)
SESSION_IDLE = timedelta(hours=1)
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often


def start_session(store: HubStore, viewer: Viewer, now: datetime) -> str:
    """A new session of `viewer`; the id to put in the cookie."""
    session_id = secrets.token_urlsafe(32)
    with store.unit_of_work():
        store.forget_console_sessions_before(iso(now))
        store.add_console_session(
            sha256_hex(session_id.encode()), viewer.username, iso(now), iso(now + SESSION_LIFETIME)
        )
    return session_id


def session_viewer(store: HubStore, session_id: str, now: datetime) -> Viewer | None:
    """Who the session `session_id` belongs to, as the user is now; None when it was
    ended, has expired or lay idle too long."""
    key = sha256_hex(session_id.encode())
    found = store.console_session(key)
    if found is None:
        return None
    last_seen = datetime.fromisoformat(found.last_seen_at)
    if now >= datetime.fromisoformat(found.expires_at) or now >= last_seen + SESSION_IDLE:
        with store.unit_of_work():
            store.end_console_session(key)
        return None
    if now >= last_seen + TOUCH_EVERY:
        with store.unit_of_work():
            store.touch_console_session(key, iso(now))
    township = None if found.role == "admin" else found.township
    return Viewer(found.username, found.role, township)


def end_sessions(store: HubStore, username: str) -> int:
    """End every session of `username` (signing out ends them on every computer)."""
    with store.unit_of_work():
        return store.end_console_sessions(username)
