"""DEMO ONLY: the demo county's Ed25519 key pair, published here so testers and trainers
can mint QR e-vouchers (`clinic card voucher`).

NEVER use this key for a real county. Anyone can read it, so anyone can mint vouchers
that verify against it. A real device pins its county's public key at enrollment and
never sees the county's private key.
"""

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.domain.ledger import b64url, raw_public_key

DEMO_COUNTY_CODE = "DEMO"  # the `county` that demo vouchers carry
_DEMO_ONLY_PRIVATE_KEY = bytes.fromhex(
    "1ef59c9968fcac2bb1c2d23c6623b23f33b00c89ca892c8fbc2ac1aabfec800f"
)


def demo_county_private_key() -> Ed25519PrivateKey:
    """DEMO ONLY: signs vouchers that only demo terminals should accept."""
    return Ed25519PrivateKey.from_private_bytes(_DEMO_ONLY_PRIVATE_KEY)


def demo_county_public_key() -> Ed25519PublicKey:
    return demo_county_private_key().public_key()


DEMO_COUNTY_PUBLIC_KEY_B64 = b64url(raw_public_key(demo_county_public_key()))
