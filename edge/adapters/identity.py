"""The device's Ed25519 identity: a private key file (0600) outside the database.

Settlement never falls back to unsigned records: a missing, unreadable, loose or
mismatched key stops it with a message that says what to do.
"""

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from edge.domain.ledger import b64url, raw_public_key

KEY_FILE = "device.key"


class IdentityError(Exception):
    """The device cannot sign; the message says why and what to do."""


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_key_b64(self) -> str:
        return b64url(raw_public_key(self.public_key))


def device_id_for(public_key: Ed25519PublicKey) -> str:
    """A stable, unique id derived from the key, until a county assigns one."""
    return "dev-" + hashlib.sha256(raw_public_key(public_key)).hexdigest()[:12]


def write_new_private_key(path: Path) -> Ed25519PrivateKey:
    """A new Ed25519 key in a file only its owner can read; FileExistsError rather than
    overwrite one."""
    key = Ed25519PrivateKey.generate()
    write_new_key_file(path, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return key


def write_new_key_file(path: Path, pem: bytes) -> None:
    """A private key's PEM in a new file only its owner can read, on disk before this
    returns; FileExistsError rather than overwrite one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())


def read_private_key(path: Path, label: str) -> Ed25519PrivateKey:
    """The Ed25519 key in `path`, refusing one others can read; FileNotFoundError passes
    through so the caller can say what to do."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as error:
        raise IdentityError(f"{label} {path} cannot be read: {error.strerror}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise IdentityError(
            f"{label} {path} is readable by others (mode {stat.S_IMODE(mode):o});"
            f" run 'chmod 600 {path}'"
        )
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise IdentityError(f"{label} {path} is damaged") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{label} {path} is not an Ed25519 key")
    return key


def create_key_file(data_dir: Path) -> Ed25519PrivateKey:
    """The device's new key; a device keeps its key for life."""
    path = data_dir / KEY_FILE
    try:
        return write_new_private_key(path)
    except FileExistsError:
        raise IdentityError(f"{path} already exists; a device keeps its key for life") from None


def load_private_key(data_dir: Path) -> Ed25519PrivateKey:
    path = data_dir / KEY_FILE
    try:
        return read_private_key(path, "the device key")
    except FileNotFoundError:
        raise IdentityError(
            f"the device key {path} is missing: settlement is stopped. Restore it from the"
            " device's backup, or run 'clinic device init' on a new device"
        ) from None
