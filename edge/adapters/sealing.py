"""Sealing an ID number to the county (docs/service-point.md, "Sealed ID numbers").

An enrolment needs the applicant's ID number, which the device must never keep in clear:
the terminal seals it at once to the county's X25519 encryption key (ECIES: an ephemeral
key per number, HKDF-SHA256, AES-256-GCM) and only the county's `county-seal.key` opens
it. The county's public key reaches the device as a statement signed with the county
signing key the device already pinned, so nobody between can swap it.
"""

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from edge.adapters.identity import write_new_key_file
from edge.domain.ledger import b64url, b64url_decode, canonical

ALG = "X25519-HKDF-SHA256-AES256GCM"
INFO = b"clinic-terminal sealed id v1"
AAD = b"id_number"
NONCE = bytes(12)  # every key seals one number only, so a fixed nonce never repeats a key
STATEMENT_KIND = "county_encryption_key"
KEY_FILE = "county-seal.key"  # the hub's, beside county.key


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _public_from_b64(public_key_b64: str) -> X25519PublicKey:
    try:
        raw = b64url_decode(public_key_b64)
        if len(raw) != 32:
            raise ValueError
        return X25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError):
        raise ValueError("not an X25519 public key (32 bytes, base64url)") from None


def public_key_b64(private_key: X25519PrivateKey) -> str:
    return b64url(_raw_public(private_key.public_key()))


def key_id(public_key_b64: str) -> str:
    """The first 16 hex digits of SHA-256 of the raw public key: which key sealed."""
    return hashlib.sha256(_raw_public(_public_from_b64(public_key_b64))).hexdigest()[:16]


def _key(shared: bytes, epk: bytes, county_public: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + county_public, info=INFO)
    return hkdf.derive(shared)


def seal_with(text: str, public_key_b64: str, ephemeral: X25519PrivateKey) -> dict[str, str]:
    """`seal` with a given ephemeral key: only for test vectors (a real seal draws a new
    one each time; the same ephemeral key twice would reuse the AES key and nonce)."""
    county = _public_from_b64(public_key_b64)
    county_raw, epk = _raw_public(county), _raw_public(ephemeral.public_key())
    key = _key(ephemeral.exchange(county), epk, county_raw)
    ct = AESGCM(key).encrypt(NONCE, text.encode("utf-8"), AAD)
    return {"alg": ALG, "key_id": key_id(public_key_b64), "epk": b64url(epk), "ct": b64url(ct)}


def seal(text: str, public_key_b64: str) -> dict[str, str]:
    """`text` (an ID number) sealed to the county's public key: SEALED."""
    return seal_with(text, public_key_b64, X25519PrivateKey.generate())


def open_sealed(sealed: Any, private_key: X25519PrivateKey) -> str:
    """The text `sealed` holds; ValueError when it is not sealed to this key or was
    changed (any member)."""
    if not isinstance(sealed, dict) or sealed.get("alg") != ALG:
        raise ValueError(f"not a sealed value of {ALG}")
    county_b64 = public_key_b64(private_key)
    if sealed.get("key_id") != key_id(county_b64):
        raise ValueError("sealed to another county key")
    try:
        epk = b64url_decode(sealed["epk"])
        ct = b64url_decode(sealed["ct"])
        ephemeral = X25519PublicKey.from_public_bytes(epk)
        key = _key(private_key.exchange(ephemeral), epk, b64url_decode(county_b64))
        return AESGCM(key).decrypt(NONCE, ct, AAD).decode("utf-8")
    except (KeyError, TypeError, ValueError, InvalidTag, UnicodeDecodeError):
        raise ValueError("the sealed value does not open: changed, or not for this key") from None


# ---- the county's signed statement of its encryption key --------------------------------


def encryption_key_statement(
    public_key_b64: str, county_signing_key: Ed25519PrivateKey, now: datetime
) -> dict[str, Any]:
    """{"statement", "signature"}: the county's encryption key signed with its signing key
    (over the sorted compact JSON of the statement, as ledger records are)."""
    statement = {
        "v": 1,
        "kind": STATEMENT_KIND,
        "public_key": public_key_b64,
        "key_id": key_id(public_key_b64),
        "issued_at": now.replace(microsecond=0).isoformat(),
    }
    return {
        "statement": statement,
        "signature": b64url(county_signing_key.sign(canonical(statement))),
    }


def verified_encryption_key(statement: Any, county_signing_public_key_b64: str) -> str:
    """The encryption public key (base64url) of a signed statement, once its signature
    verifies with the county signing key; ValueError saying why otherwise."""
    if not isinstance(statement, dict):
        raise ValueError("the county encryption key is not a signed statement")
    body, signature = statement.get("statement"), statement.get("signature")
    if not isinstance(body, dict) or not isinstance(signature, str):
        raise ValueError("the county encryption key has no statement or no signature")
    try:
        signer = Ed25519PublicKey.from_public_bytes(b64url_decode(county_signing_public_key_b64))
        signer.verify(b64url_decode(signature), canonical(body))
    except (InvalidSignature, ValueError, TypeError):
        raise ValueError("the county encryption key's signature does not verify") from None
    if body.get("v") != 1 or body.get("kind") != STATEMENT_KIND:
        raise ValueError("not a county encryption key statement of version 1")
    public = body.get("public_key")
    if not isinstance(public, str) or body.get("key_id") != key_id(public):
        raise ValueError("the statement's key_id does not match its key")
    return public


# ---- the hub's key file -----------------------------------------------------------------


def write_new_sealing_key(path: Path) -> X25519PrivateKey:
    """A new X25519 key in a file only its owner can read (PKCS8 PEM); FileExistsError
    rather than overwrite one: numbers sealed to it could never be opened again."""
    key = X25519PrivateKey.generate()
    write_new_key_file(path, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return key


def read_sealing_key(path: Path) -> X25519PrivateKey:
    """The X25519 key in `path`; ValueError when it is not one (FileNotFoundError and
    other OSErrors pass through)."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{path} is damaged") from None
    if not isinstance(key, X25519PrivateKey):
        raise ValueError(f"{path} is not an X25519 key")
    return key
