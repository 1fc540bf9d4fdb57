"""Slow salted hashes of the terminal's operator PINs and the county console's passwords:
one format for every new hash, and every format either ever wrote still verified.

A new hash is a PHC string of `hashlib.scrypt` with a random 16-byte salt and a 32-byte
hash, both in standard base64 without padding (as passlib writes them):

    $scrypt$ln=14,r=8,p=1$<salt>$<hash>

`ln` is log2 of scrypt's N, the cost: 14 (16 MiB of memory, tens of milliseconds) unless
the caller gives another (the terminal's `PIN_HASH_COST`; tests use 4).

Older hashes, still verified (`needs_rehash` says they should be replaced):

- the terminal's, `scrypt$<log2 N>$<r>$<p>$<salt>$<hash>` in standard base64;
- the console's, `scrypt$<N>$<r>$<p>$<salt>$<hash>` in URL-safe base64.

They differ in the second field: the terminal wrote log2 N (its `PIN_HASH_COST`; a cost
above 14 failed there), the console always N = 16384.
"""

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

DEFAULT_COST = 14
MAX_COST = 20  # 1 GiB of memory: anything above is a mistake, not a setting
R, P = 8, 1
SALT_BYTES, HASH_BYTES = 16, 32

_B64 = r"([A-Za-z0-9+/_=-]+)"  # either alphabet, padded or not
_PHC = re.compile(r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$" + _B64 + r"\$" + _B64)
_LEGACY = re.compile(r"scrypt\$(\d{1,10})\$(\d{1,2})\$(\d{1,2})\$" + _B64 + r"\$" + _B64)
_LEGACY_N_FROM = 64  # a legacy second field this large is N (console), below it log2 N


@dataclass(frozen=True)
class _Parsed:
    cost: int  # log2 N
    r: int
    p: int
    salt: bytes
    digest: bytes
    current: bool  # written in today's format


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not."""
    return base64.b64decode(text.translate(str.maketrans("-_", "+/")) + "=" * (-len(text) % 4))


def _check_cost(cost: int) -> None:
    if not 1 <= cost <= MAX_COST:
        raise ValueError(f"the hash cost (log2 of scrypt's N) must be 1 to {MAX_COST}")


def _scrypt(secret: str, salt: bytes, cost: int, r: int, p: int, length: int) -> bytes:
    n = 2**cost
    return hashlib.scrypt(
        secret.encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=length,
        maxmem=128 * r * (n + p + 2) + 2**20,
    )


def hash_password(secret: str, cost: int = DEFAULT_COST) -> str:
    """A new hash of a PIN or password, in today's format."""
    _check_cost(cost)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(secret, salt, cost, R, P, HASH_BYTES)
    return f"$scrypt$ln={cost},r={R},p={P}${_b64(salt)}${_b64(digest)}"


def _parse(stored: str) -> _Parsed | None:
    """The parameters of a hash in any format this module knows, None for anything else."""
    match = _PHC.fullmatch(stored or "")
    if match is None:
        match = _LEGACY.fullmatch(stored or "")
        if match is None:
            return None
    first, r, p, salt, digest = match.groups()
    cost, current = int(first), match.re is _PHC
    if not current and cost >= _LEGACY_N_FROM:  # the console wrote N itself
        if cost & (cost - 1):
            return None
        cost = cost.bit_length() - 1
    try:
        parsed = _Parsed(cost, int(r), int(p), _unb64(salt), _unb64(digest), current)
    except (binascii.Error, ValueError):
        return None
    if not (1 <= parsed.cost <= MAX_COST and parsed.r >= 1 and parsed.p >= 1 and parsed.digest):
        return None
    return parsed


def verify_password(secret: str, stored: str) -> bool:
    """Whether `secret` is what `stored` (in any format ever written) was made from."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    try:
        actual = _scrypt(secret, parsed.salt, parsed.cost, parsed.r, parsed.p, len(parsed.digest))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, parsed.digest)


def needs_rehash(stored: str, cost: int = DEFAULT_COST) -> bool:
    """Whether a hash that just verified should be written again: it is in an older format,
    or made with other parameters than a new hash would be."""
    parsed = _parse(stored)
    return parsed is None or not parsed.current or (parsed.cost, parsed.r, parsed.p) != (cost, R, P)
