"""Signed county updates, verified on the device before anything is applied. Pure."""

import copy
from datetime import timedelta

import pytest
from conftest import EXAMPLE_POLICY, item
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sync_helpers import NOW

from edge.domain.documents import catalog_item_from_json
from sync.protocol import SyncError
from sync.updates import (
    DELTA,
    catalog_content,
    catalog_item_to_json,
    catalog_items_of,
    content_digest,
    make_manifest,
    policy_document_of,
    sign_update,
    verify_update,
)

COUNTY = Ed25519PrivateKey.generate()
EXPIRES = NOW + timedelta(days=90)
ITEMS = [item("A1", "1.50"), item("B2", "0.0350", "B", max_qty=3), item("C3", "12")]


def normalized(items):
    return catalog_content(catalog_item_to_json(catalog_item_from_json(i, "i")) for i in items)


def catalog_update(version="2026.12", content=None, key=COUNTY, **manifest):
    content = content if content is not None else normalized(ITEMS)
    fields = {
        "kind": "catalog",
        "version": version,
        "content": content,
        "published_at": NOW,
        "expires_at": EXPIRES,
        **manifest,
    }
    return sign_update(make_manifest(**fields), content, key)


def verify(update, installed="2026.11", now=NOW, kind="catalog"):
    return verify_update(
        update, COUNTY.public_key(), kind=kind, installed_version=installed, now=now
    )


def refusal_code(update, **kwargs) -> str:
    with pytest.raises(SyncError) as refused:
        verify(update, **kwargs)
    return refused.value.code


class TestVerification:
    def test_a_newer_signed_unexpired_update_verifies(self):
        update = verify(catalog_update())
        assert (update.version, update.update_format) == ("2026.12", "full")
        assert [i.code for i in catalog_items_of(update, {})] == ["A1", "B2", "C3"]

    def test_an_update_signed_by_another_key_is_refused(self):
        assert refusal_code(catalog_update(key=Ed25519PrivateKey.generate())) == (
            "UPDATE_BAD_SIGNATURE"
        )

    def test_a_manifest_changed_after_signing_is_refused(self):
        update = catalog_update()
        update["manifest"]["expires_at"] = (EXPIRES + timedelta(days=900)).isoformat()
        assert refusal_code(update) == "UPDATE_BAD_SIGNATURE"

    def test_content_changed_after_signing_is_refused_by_its_hash(self):
        update = catalog_update()
        update["content"]["items"][0]["price"] = "0.01"
        assert refusal_code(update) == "UPDATE_HASH_MISMATCH"

    def test_an_older_version_than_the_installed_one_is_refused(self):
        assert refusal_code(catalog_update("2026.10"), installed="2026.11") == "UPDATE_OLDER"

    def test_versions_compare_part_by_part(self):
        assert verify(catalog_update("2026.10"), installed="2026.9") is not None

    def test_the_installed_version_itself_is_nothing_to_do(self):
        assert verify(catalog_update("2026.11"), installed="2026.11") is None

    def test_an_expired_update_is_refused(self):
        assert refusal_code(catalog_update(), now=EXPIRES) == "UPDATE_EXPIRED"

    def test_a_policy_offered_as_a_catalog_is_refused(self):
        assert refusal_code(catalog_update(), kind="policy") == "UPDATE_WRONG_KIND"

    @pytest.mark.parametrize("garbage", [None, [], {"manifest": {}}, {"signature": "x"}])
    def test_garbage_is_refused_as_malformed(self, garbage):
        assert refusal_code(garbage) == "UPDATE_MALFORMED"

    def test_a_policy_whose_document_names_another_version_is_invalid(self):
        document = {**copy.deepcopy(EXAMPLE_POLICY), "version": "2026.5"}
        update = sign_update(
            make_manifest(
                kind="policy",
                version="2026.6",
                content=document,
                published_at=NOW,
                expires_at=EXPIRES,
            ),
            document,
            COUNTY,
        )
        with pytest.raises(SyncError, match="UPDATE_INVALID"):
            policy_document_of(verify(update, installed="2026.1", kind="policy"))


class TestDeltas:
    BASE = normalized(ITEMS)["items"]
    TARGET = normalized([item("A1", "1.60"), item("C3", "12"), item("D4", "3")])

    def delta(self, base_version="2026.11", content=None):
        content = content or {
            "upsert": [i for i in self.TARGET["items"] if i["code"] in ("A1", "D4")],
            "remove": ["B2"],
        }
        return catalog_update(
            content=content,
            update_format=DELTA,
            base_version=base_version,
            result_sha256=content_digest(self.TARGET),
        )

    def installed(self):
        return {i["code"]: i for i in self.BASE}

    def test_a_delta_applied_to_the_installed_version_gives_the_county_catalog(self):
        items = catalog_items_of(verify(self.delta()), self.installed())
        assert [catalog_item_to_json(i) for i in items] == self.TARGET["items"]

    def test_a_delta_from_another_version_is_refused(self):
        assert refusal_code(self.delta(base_version="2026.10")) == "DELTA_BASE_MISMATCH"

    def test_a_delta_that_does_not_fit_the_installed_items_is_refused(self):
        local = self.installed()
        local["C3"] = {**local["C3"], "price": "13"}  # the device's 2026.11 is not the county's
        with pytest.raises(SyncError) as refused:
            catalog_items_of(verify(self.delta()), local)
        assert refused.value.code == "DELTA_RESULT_MISMATCH"

    def test_a_delta_removing_an_item_that_is_not_installed_is_refused(self):
        local = self.installed()
        del local["B2"]
        with pytest.raises(SyncError, match="DELTA_RESULT_MISMATCH"):
            catalog_items_of(verify(self.delta()), local)


class TestCatalogForm:
    def test_the_hashed_form_of_an_item_survives_a_round_trip(self):
        document = item(
            "X1",
            "0.2850",
            "B",
            self_prepay_ratio="0.10",
            gender="F",
            min_age=18,
            max_age=60,
            max_qty="72",
            chronic_only=["I10.x00"],
            valid_from="2026-01-01",
            valid_to="2026-12-31",
            spec="0.25g",
            unit="粒",
        )
        once = catalog_item_to_json(catalog_item_from_json(document, "x"))
        twice = catalog_item_to_json(catalog_item_from_json(once, "x"))
        assert once == twice
        assert once["max_qty"] == "72" and once["min_age"] == 18 and once["price"] == "0.2850"
