"""The county's keys in the hub's data directory, each readable by its owner only (0600),
made once and never overwritten: the Ed25519 signing key `county.key`, and the X25519
encryption key `county-seal.key` that ID numbers captured at enrolment are sealed to
(`edge.adapters.sealing`, `docs/service-point.md`)."""

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edge.adapters.identity import IdentityError, read_private_key, write_new_private_key
from edge.adapters.sealing import read_sealing_key, write_new_sealing_key
from sync.hub.model import HubError

COUNTY_KEY_FILE = "county.key"
SEAL_KEY_FILE = "county-seal.key"


def create_county_key(data_dir: Path) -> Ed25519PrivateKey:
    """A new county signing key in a file only its owner can read; never overwritten."""
    path = Path(data_dir) / COUNTY_KEY_FILE
    try:
        return write_new_private_key(path)
    except FileExistsError:
        raise HubError(f"{path} already exists; a county keeps its signing key") from None


def load_county_key(data_dir: Path) -> Ed25519PrivateKey:
    path = Path(data_dir) / COUNTY_KEY_FILE
    try:
        return read_private_key(path, "the county signing key")
    except FileNotFoundError:
        raise HubError(f"the county signing key {path} is missing") from None
    except IdentityError as error:
        raise HubError(str(error)) from None


def ensure_seal_key(data_dir: Path) -> X25519PrivateKey:
    """The county's encryption key, made (0600) when the hub has none yet: `clinic hub
    init` makes it, and a hub made before it existed gets it when it next starts. An
    existing key is never replaced (sealed ID numbers would no longer open)."""
    path = Path(data_dir) / SEAL_KEY_FILE
    if not path.exists():
        # Written aside and linked into place: several hub workers starting at once make
        # one key between them, and none reads a half-written file.
        aside = path.with_name(f".{SEAL_KEY_FILE}.{os.getpid()}")
        aside.unlink(missing_ok=True)
        write_new_sealing_key(aside)
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another made it first: that one is the county's
        finally:
            aside.unlink()
    return load_seal_key(data_dir)


def load_seal_key(data_dir: Path) -> X25519PrivateKey:
    """The county's encryption key, refusing one others can read."""
    path = Path(data_dir) / SEAL_KEY_FILE
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise HubError(
                f"the county encryption key {path} is readable by others (mode {mode:o});"
                f" run 'chmod 600 {path}'"
            )
        return read_sealing_key(path)
    except FileNotFoundError:
        raise HubError(f"the county encryption key {path} is missing") from None
    except (OSError, ValueError) as error:
        raise HubError(f"the county encryption key {path} cannot be read: {error}") from None


def seal_key_made_at(data_dir: Path) -> datetime:
    """When the encryption key was made (its file's time): the statement's `issued_at`,
    the same in every answer."""
    moment = (Path(data_dir) / SEAL_KEY_FILE).stat().st_mtime
    return datetime.fromtimestamp(int(moment), UTC)
