"""ID numbers sealed to the county (edge.adapters.sealing): the fixed test vector of
docs/service-point.md, computed again here step by step from the spec with the standard
library's HMAC; anything changed or sealed to another key does not open; the county's
signed statement of its key."""

import hashlib
import hmac
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge.adapters import sealing
from edge.domain.ledger import b64url, b64url_decode, canonical, raw_public_key

ROOT = Path(__file__).parents[2]
ID_NUMBER = "11010519491231002X"
COUNTY = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))  # 01 02 … 20
EPHEMERAL = X25519PrivateKey.from_private_bytes(bytes(range(33, 65)))  # 21 22 … 40
COUNTY_PUBLIC = sealing.public_key_b64(COUNTY)
NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


def documented_vector() -> dict[str, str]:
    """The test vector as docs/service-point.md writes it (`name: value` lines)."""
    text = (ROOT / "docs" / "service-point.md").read_text()
    section = text[text.index("### Test vector") :]
    return dict(re.findall(r"^- `?(\w+)`?: `([^`]*)`", section, re.MULTILINE))


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


class TestTheVector:
    def test_the_documented_vector_is_what_the_code_seals(self):
        vector = documented_vector()
        assert vector["county_private"] == bytes(range(1, 33)).hex()
        assert vector["ephemeral_private"] == bytes(range(33, 65)).hex()
        assert vector["county_public"] == COUNTY_PUBLIC
        assert vector["plaintext"] == ID_NUMBER
        sealed = sealing.seal_with(ID_NUMBER, COUNTY_PUBLIC, EPHEMERAL)
        assert sealed == {name: vector[name] for name in ("alg", "key_id", "epk", "ct")}
        assert sealing.open_sealed(sealed, COUNTY) == ID_NUMBER

    def test_the_vector_follows_the_spec_step_by_step(self):
        county_raw = b64url_decode(COUNTY_PUBLIC)
        sealed = sealing.seal_with(ID_NUMBER, COUNTY_PUBLIC, EPHEMERAL)
        epk = b64url_decode(sealed["epk"])
        assert epk == EPHEMERAL.public_key().public_bytes_raw()
        shared = EPHEMERAL.exchange(X25519PublicKey.from_public_bytes(county_raw))
        key = hkdf_sha256(shared, epk + county_raw, b"clinic-terminal sealed id v1")
        assert AESGCM(key).decrypt(bytes(12), b64url_decode(sealed["ct"]), b"id_number") == (
            ID_NUMBER.encode()
        )
        assert sealed["key_id"] == hashlib.sha256(county_raw).hexdigest()[:16]
        assert "=" not in sealed["epk"] + sealed["ct"]


class TestSealing:
    def test_each_seal_has_its_own_ephemeral_key(self):
        first, second = (sealing.seal(ID_NUMBER, COUNTY_PUBLIC) for _ in range(2))
        assert first["epk"] != second["epk"] and first["ct"] != second["ct"]
        assert ID_NUMBER not in str(first)
        assert sealing.open_sealed(first, COUNTY) == sealing.open_sealed(second, COUNTY)

    @pytest.mark.parametrize("member", ["ct", "epk"])
    def test_a_changed_member_does_not_open(self, member):
        sealed = sealing.seal(ID_NUMBER, COUNTY_PUBLIC)
        raw = bytearray(b64url_decode(sealed[member]))
        raw[5] ^= 1
        with pytest.raises(ValueError, match="does not open"):
            sealing.open_sealed({**sealed, member: b64url(bytes(raw))}, COUNTY)

    def test_another_key_id_or_algorithm_is_refused(self):
        sealed = sealing.seal(ID_NUMBER, COUNTY_PUBLIC)
        with pytest.raises(ValueError, match="another county key"):
            sealing.open_sealed({**sealed, "key_id": "0" * 16}, COUNTY)
        with pytest.raises(ValueError, match="not a sealed value"):
            sealing.open_sealed({**sealed, "alg": "RSA"}, COUNTY)
        with pytest.raises(ValueError):
            sealing.open_sealed({k: v for k, v in sealed.items() if k != "ct"}, COUNTY)

    def test_a_wrong_key_does_not_open_it(self):
        sealed = sealing.seal(ID_NUMBER, COUNTY_PUBLIC)
        with pytest.raises(ValueError):
            sealing.open_sealed(sealed, X25519PrivateKey.generate())
        # even claiming the other key's id: the key derivation binds the county key
        other = X25519PrivateKey.generate()
        claimed = {**sealed, "key_id": sealing.key_id(sealing.public_key_b64(other))}
        with pytest.raises(ValueError, match="does not open"):
            sealing.open_sealed(claimed, other)

    def test_a_public_key_that_is_not_one_is_refused(self):
        with pytest.raises(ValueError, match="X25519"):
            sealing.seal(ID_NUMBER, b64url(bytes(31)))


class TestStatement:
    SIGNER = Ed25519PrivateKey.generate()
    SIGNER_PUBLIC = b64url(raw_public_key(SIGNER.public_key()))

    def test_a_signed_statement_gives_the_key(self):
        document = sealing.encryption_key_statement(COUNTY_PUBLIC, self.SIGNER, NOW)
        assert document["statement"] == {
            "v": 1, "kind": "county_encryption_key", "public_key": COUNTY_PUBLIC,
            "key_id": sealing.key_id(COUNTY_PUBLIC), "issued_at": "2026-11-27T02:00:00+00:00",
        }  # fmt: skip
        assert sealing.verified_encryption_key(document, self.SIGNER_PUBLIC) == COUNTY_PUBLIC

    def test_another_signer_or_a_changed_key_is_refused(self):
        document = sealing.encryption_key_statement(COUNTY_PUBLIC, self.SIGNER, NOW)
        stranger = b64url(raw_public_key(Ed25519PrivateKey.generate().public_key()))
        with pytest.raises(ValueError, match="does not verify"):
            sealing.verified_encryption_key(document, stranger)
        other = sealing.public_key_b64(X25519PrivateKey.generate())
        swapped = {**document, "statement": {**document["statement"], "public_key": other}}
        with pytest.raises(ValueError, match="does not verify"):
            sealing.verified_encryption_key(swapped, self.SIGNER_PUBLIC)

    @pytest.mark.parametrize("document", [None, [], {"statement": {}}, {"signature": "x"}])
    def test_what_is_not_a_statement_is_refused(self, document):
        with pytest.raises(ValueError):
            sealing.verified_encryption_key(document, self.SIGNER_PUBLIC)

    def test_a_statement_of_another_kind_or_a_wrong_key_id_is_refused(self):
        for change, says in (({"kind": "x"}, "not a county"), ({"key_id": "0" * 16}, "key_id")):
            signed = sealing.encryption_key_statement(COUNTY_PUBLIC, self.SIGNER, NOW)
            statement = {**signed["statement"], **change}
            signature = b64url(self.SIGNER.sign(canonical(statement)))
            document = {"statement": statement, "signature": signature}
            with pytest.raises(ValueError, match=says):
                sealing.verified_encryption_key(document, self.SIGNER_PUBLIC)


class TestKeyFile:
    def test_a_new_key_file_is_the_owners_only_and_never_overwritten(self, tmp_path):
        path = tmp_path / sealing.KEY_FILE
        key = sealing.write_new_sealing_key(path)
        assert path.stat().st_mode & 0o777 == 0o600
        assert sealing.public_key_b64(sealing.read_sealing_key(path)) == sealing.public_key_b64(key)
        with pytest.raises(FileExistsError):
            sealing.write_new_sealing_key(path)

    def test_a_damaged_or_other_key_file_is_refused(self, tmp_path):
        (tmp_path / "bad").write_bytes(b"not a key")
        with pytest.raises(ValueError, match="damaged"):
            sealing.read_sealing_key(tmp_path / "bad")
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )  # fmt: skip
        (tmp_path / "ed").write_bytes(pem)
        with pytest.raises(ValueError, match="not an X25519"):
            sealing.read_sealing_key(tmp_path / "ed")
