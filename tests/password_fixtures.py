"""Hashes the two older hashing functions wrote (tests/fixtures/legacy_password_hashes.json),
kept to prove `edge.adapters.passwords` still verifies them."""

import json
from pathlib import Path

LEGACY = json.loads(
    (Path(__file__).parent / "fixtures" / "legacy_password_hashes.json").read_text("utf-8")
)["hashes"]


def legacy_hash(secret: str, written_by: str) -> str:
    """The committed hash of `secret` whose writer's name starts with `written_by`."""
    return next(
        case["hash"]
        for case in LEGACY
        if case["secret"] == secret and case["written_by"].startswith(written_by)
    )
