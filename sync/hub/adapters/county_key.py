"""The county's Ed25519 signing key: `county.key` in the hub's data directory, readable by
its owner only (0600), made once and never overwritten."""

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.adapters.identity import IdentityError, read_private_key, write_new_private_key
from sync.hub.model import HubError

COUNTY_KEY_FILE = "county.key"


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
