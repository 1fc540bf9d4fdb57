"""One hashing module for the terminal's PINs and the console's passwords: new hashes in
one format, and every hash the two older functions wrote (committed fixtures) verified."""

import base64
import hashlib
import re

import pytest
from password_fixtures import LEGACY

from edge.adapters import passwords

FAST = 4


def unpadded(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("case", LEGACY, ids=lambda case: f"{case['written_by']}:{case['secret']}")
class TestOlderHashes:
    def test_each_verifies_with_its_secret_and_no_other(self, case):
        assert passwords.verify_password(case["secret"], case["hash"])
        assert not passwords.verify_password(case["secret"] + "x", case["hash"])
        assert not passwords.verify_password("", case["hash"])

    def test_each_is_to_be_hashed_again(self, case):
        assert passwords.needs_rehash(case["hash"])
        assert passwords.needs_rehash(case["hash"], FAST)


def test_the_fixtures_hold_both_older_formats_with_their_own_alphabets():
    console = [c["hash"] for c in LEGACY if c["written_by"].startswith("sync.hub.")]
    terminal = [c["hash"] for c in LEGACY if c["written_by"].startswith("web_ui.")]
    assert console and all(h.startswith("scrypt$16384$8$1$") for h in console)
    assert terminal and all(re.match(r"scrypt\$(4|14)\$8\$1\$", h) for h in terminal)
    assert any(set("-_") & set(h) for h in console)  # URL-safe base64
    assert any(set("+/") & set(h) for h in terminal)  # standard base64


class TestNewHashes:
    def test_a_new_hash_is_a_phc_scrypt_string(self):
        stored = passwords.hash_password("1234", FAST)
        match = re.fullmatch(
            r"\$scrypt\$ln=4,r=8,p=1\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})", stored
        )
        assert match is not None, stored
        salt, digest = (unpadded(part) for part in match.groups())
        assert digest == hashlib.scrypt(b"1234", salt=salt, n=2**4, r=8, p=1, dklen=32)

    def test_the_default_cost_is_that_of_both_older_functions(self):
        assert passwords.DEFAULT_COST == 14
        assert passwords.hash_password("secret password").startswith("$scrypt$ln=14,r=8,p=1$")

    def test_each_hash_has_its_own_salt(self):
        assert passwords.hash_password("1234", FAST) != passwords.hash_password("1234", FAST)

    def test_a_new_hash_verifies_and_needs_no_rehash_at_its_own_cost(self):
        stored = passwords.hash_password("密码 2026", FAST)
        assert passwords.verify_password("密码 2026", stored)
        assert not passwords.verify_password("密码 2027", stored)
        assert not passwords.needs_rehash(stored, FAST)
        assert passwords.needs_rehash(stored, FAST + 1)

    @pytest.mark.parametrize("cost", [0, passwords.MAX_COST + 1])
    def test_a_cost_out_of_range_is_refused(self, cost):
        with pytest.raises(ValueError):
            passwords.hash_password("1234", cost)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "1234",
        "scrypt$abc",
        "scrypt$16000$8$1$NqUHGsC7oNJHnVUTmfmfPw==$MrjPRx9DIl--qrJ6KQirAtS3sv-zYMLvfss0xBEt0JY=",
        "$scrypt$ln=40,r=8,p=1$NqUHGsC7oNJHnVUTmfmfPw$MrjPRx9DIl",
        "$scrypt$ln=4,r=8,p=1$NqUHGsC7oNJHnVUTmfmfPw$",
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    ],
)
def test_anything_else_verifies_nothing_and_is_to_be_replaced(stored):
    assert not passwords.verify_password("1234", stored)
    assert passwords.needs_rehash(stored)
