"""Console sign-in: passwords kept as scrypt hashes (`edge.adapters.passwords`), lock-out
after repeated failures, and what each role may see (admins everything, coordinators
their own township)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from edge.adapters.passwords import hash_password, verify_password
from sync.hub.model import ConsoleUser, HubError
from sync.hub.ports import HubStore
from sync.protocol import iso

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
    user = store.console_user(username)
    if user is None:
        hash_password(password)  # as slow as a real check: no user enumeration by timing
        raise SignInRefused("WRONG", WRONG_MESSAGE)
    if user.locked_until and now < datetime.fromisoformat(user.locked_until):
        until = user.locked_until
        raise SignInRefused("LOCKED", f"账户已锁定至 {until} / locked until {until}", until)
    if not verify_password(password, user.password_hash):
        failures = user.failures + 1
        locked = iso(now + LOCKOUT) if failures >= MAX_FAILURES else None
        with store.unit_of_work():
            store.set_console_failures(user.username, 0 if locked else failures, locked)
        raise SignInRefused("WRONG", WRONG_MESSAGE)
    if user.failures or user.locked_until:
        with store.unit_of_work():
            store.set_console_failures(user.username, 0, None)
    return viewer_of(user)
