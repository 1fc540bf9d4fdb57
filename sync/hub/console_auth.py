"""Console sign-in: passwords kept as scrypt hashes, lock-out after repeated failures,
and what each role may see (admins everything, coordinators their own township)."""

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sync.hub.model import ConsoleUser, HubError
from sync.hub.ports import HubStore
from sync.protocol import iso

ROLES = ("admin", "coordinator")
MIN_PASSWORD_LENGTH = 8
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class SignInRefused(Exception):
    """Why a sign-in failed, in words fit to show (never which part was wrong)."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    encode = base64.urlsafe_b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${encode(salt).decode()}$" + (
        encode(digest).decode()
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.urlsafe_b64decode(salt),
            dklen=len(expected),
            n=int(n),
            r=int(r),
            p=int(p),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


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
        raise SignInRefused("用户名或密码不正确 / wrong user name or password")
    if user.locked_until and now < datetime.fromisoformat(user.locked_until):
        raise SignInRefused(f"账户已锁定至 {user.locked_until} / locked until {user.locked_until}")
    if not verify_password(password, user.password_hash):
        failures = user.failures + 1
        locked = iso(now + LOCKOUT) if failures >= MAX_FAILURES else None
        with store.unit_of_work():
            store.set_console_failures(user.username, 0 if locked else failures, locked)
        raise SignInRefused("用户名或密码不正确 / wrong user name or password")
    if user.failures or user.locked_until:
        with store.unit_of_work():
            store.set_console_failures(user.username, 0, None)
    return viewer_of(user)
