"""The release manifest (`sync/releases.py`): every bound and refusal, the signature over
the canonical form, and the checks a device makes before installing."""

import copy
import hashlib

import pytest
from clock import NOW
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.domain.ledger import b64url
from sync.protocol import MESSAGES, SyncError, canonical_json, iso
from sync.releases import (
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_RELEASE_BYTES,
    ReleaseFile,
    installable_problem,
    is_newer,
    make_release_manifest,
    release_of_manifest,
    release_version,
    sign_release,
    verify_release,
)

KEY = Ed25519PrivateKey.generate()
SCHEMA = ["m002_more", "m001_initial"]


def entry(name: str, role: str = "dependency", size: int = 10) -> ReleaseFile:
    return ReleaseFile(name, hashlib.sha256(name.encode()).hexdigest(), size, role)


FILES = [
    entry("clinic_terminal-0.2.0-py3-none-any.whl", "project"),
    entry("attrs-23.2.0-py3-none-any.whl"),
    entry("pyscard-2.0.9.tar.gz", "source"),
]


def manifest(**changes) -> dict:
    values = {
        "version": "0.2.0",
        "arch": "aarch64",
        "python": "cp311",
        "schema": SCHEMA,
        "files": FILES,
        "published_at": NOW,
    }
    return make_release_manifest(**{**values, **changes})


def malformed(document: dict) -> str:
    with pytest.raises(SyncError) as refused:
        release_of_manifest(document)
    assert refused.value.code == "RELEASE_MALFORMED"
    return refused.value.detail


def changed(**members) -> dict:
    document = copy.deepcopy(manifest())
    document.update(members)
    return document


def with_file(**members) -> dict:
    document = copy.deepcopy(manifest())
    document["files"][0].update(members)
    return document


class TestManifest:
    def test_a_built_manifest_is_sorted_and_reads_back(self):
        document = manifest()
        assert document["schema"] == ["m001_initial", "m002_more"]
        assert [f["name"] for f in document["files"]] == sorted(f.name for f in FILES)
        assert document["published_at"] == iso(NOW)
        release = release_of_manifest(document)
        assert release.version == "0.2.0" and release.arch == "aarch64"
        assert release.total_bytes == 30 and set(release.files) == set(FILES)

    @pytest.mark.parametrize(
        "members",
        [
            {"v": 2},
            {"kind": "catalog"},
            {"arch": "armv7l"},
            {"python": "py3"},
            {"python": "cp3"},
            {"python": 311},
            {"schema": []},
            {"schema": "m001_initial"},
            {"schema": ["M001"]},
            {"schema": ["m001_initial"] * 1001},
            {"published_at": "yesterday"},
            {"published_at": "2026-11-26T09:30:00"},  # no offset
            {"files": []},
            {"files": "x"},
        ],
    )
    def test_each_member_is_checked(self, members):
        malformed(changed(**members))

    def test_not_an_object_or_another_format_is_refused(self):
        for document in (None, [], "release", {"v": 1}):
            malformed(document)

    @pytest.mark.parametrize(
        "version",
        ["0.2", "1!0.2.0", "0.2.0rc1", "0.2.0.post1", "0.2.0.dev3"],
    )
    def test_canonical_pep_440_versions_are_taken(self, version):
        assert release_of_manifest(changed(version=version)).version == version

    @pytest.mark.parametrize(
        "version", ["", "v0.2.0", "0.2.0+local", "0.2.0-rc1", "0.02.0", "1" * 41, 2, None]
    )
    def test_other_versions_are_refused(self, version):
        malformed(changed(version=version))
        with pytest.raises(SyncError):
            release_version(version)

    @pytest.mark.parametrize(
        "members",
        [
            {"name": "../etc/passwd"},
            {"name": "a/b.whl"},
            {"name": ".hidden.whl"},
            {"name": "a..b.whl"},
            {"name": "x" * 201},
            {"name": 7},
            {"sha256": "ABC" + "0" * 61},
            {"sha256": "0" * 63},
            {"size": 0},
            {"size": -1},
            {"size": MAX_FILE_BYTES + 1},
            {"size": 10.0},
            {"size": True},
            {"role": "plugin"},
            {"extra": 1},
        ],
    )
    def test_each_file_entry_is_checked(self, members):
        malformed(with_file(**members))

    def test_a_file_entry_missing_a_member_is_refused(self):
        document = copy.deepcopy(manifest())
        del document["files"][0]["role"]
        malformed(document)

    def test_the_largest_file_is_taken(self):
        document = with_file(size=MAX_FILE_BYTES)
        assert release_of_manifest(document).files[0].size == MAX_FILE_BYTES

    def test_a_file_named_twice_is_refused(self):
        document = copy.deepcopy(manifest())
        document["files"].append(dict(document["files"][1]))
        assert "twice" in malformed(document)

    def test_exactly_one_project_wheel(self):
        with pytest.raises(SyncError):
            manifest(files=[entry("a.whl"), entry("b.whl")])
        with pytest.raises(SyncError):
            manifest(files=[entry("a.whl", "project"), entry("b.whl", "project")])

    def test_the_number_of_files_and_their_total_are_bounded(self):
        many = [entry("p.whl", "project")] + [entry(f"d{i}.whl") for i in range(MAX_FILES)]
        with pytest.raises(SyncError) as refused:
            manifest(files=many)
        assert f"1 to {MAX_FILES}" in refused.value.detail
        manifest(files=many[:MAX_FILES])  # exactly the bound is taken
        count = MAX_RELEASE_BYTES // MAX_FILE_BYTES
        big = [entry("p.whl", "project", MAX_FILE_BYTES)] + [
            entry(f"d{i}.whl", size=MAX_FILE_BYTES) for i in range(count)
        ]
        with pytest.raises(SyncError) as refused:
            manifest(files=big)
        assert "too large" in refused.value.detail
        assert release_of_manifest(manifest(files=big[:count])).total_bytes == MAX_RELEASE_BYTES

    def test_the_publisher_refuses_what_a_device_would(self):
        with pytest.raises(SyncError):
            manifest(arch="sparc")


class TestSignature:
    def test_the_county_signs_the_canonical_form(self):
        document = sign_release(manifest(), KEY)
        assert document["signature"] == b64url(KEY.sign(canonical_json(document["manifest"])))
        release = verify_release(document, KEY.public_key())
        assert release.version == "0.2.0"

    def test_key_order_does_not_matter_the_content_does(self):
        document = sign_release(manifest(), KEY)
        reordered = {
            "manifest": dict(reversed(list(document["manifest"].items()))),
            "signature": document["signature"],
        }
        verify_release(reordered, KEY.public_key())
        for change in ({"version": "0.2.1"}, {"schema": ["m001_initial"]}):
            altered = {
                "manifest": {**document["manifest"], **change},
                "signature": document["signature"],
            }
            with pytest.raises(SyncError) as refused:
                verify_release(altered, KEY.public_key())
            assert refused.value.code == "RELEASE_BAD_SIGNATURE"
        altered = copy.deepcopy(document)
        altered["manifest"]["files"][0]["sha256"] = "0" * 64
        with pytest.raises(SyncError):
            verify_release(altered, KEY.public_key())

    def test_another_key_or_a_broken_signature_is_refused(self):
        document = sign_release(manifest(), Ed25519PrivateKey.generate())
        for signature in (document["signature"], "not base64!", "", "AAAA"):
            with pytest.raises(SyncError) as refused:
                verify_release({**document, "signature": signature}, KEY.public_key())
            assert refused.value.code == "RELEASE_BAD_SIGNATURE"

    @pytest.mark.parametrize(
        "document",
        [None, [], {"manifest": {}}, {"signature": "x"}, {"manifest": [], "signature": "x"}],
    )
    def test_a_document_without_manifest_and_signature_is_malformed(self, document):
        with pytest.raises(SyncError) as refused:
            verify_release(document, KEY.public_key())
        assert refused.value.code == "RELEASE_MALFORMED"

    def test_an_unpublished_release_json_does_not_verify(self):
        with pytest.raises(SyncError) as refused:
            verify_release({"manifest": manifest(), "signature": None}, KEY.public_key())
        assert refused.value.code == "RELEASE_MALFORMED"

    def test_a_correctly_signed_but_malformed_manifest_is_still_refused(self):
        bad = changed(arch="sparc")
        document = {"manifest": bad, "signature": b64url(KEY.sign(canonical_json(bad)))}
        with pytest.raises(SyncError) as refused:
            verify_release(document, KEY.public_key())
        assert refused.value.code == "RELEASE_MALFORMED"


class TestInstallable:
    def problem(self, **changes):
        values = {
            "arch": "aarch64",
            "python": "cp311",
            "running": "0.1.0",
            "database_schema": ["m001_initial"],
        }
        release = release_of_manifest(manifest())
        return installable_problem(release, **{**values, **changes})

    def test_a_newer_release_for_this_machine_that_knows_the_schema_is_installable(self):
        assert self.problem() is None
        assert self.problem(database_schema=["m001_initial", "m002_more"]) is None
        assert self.problem(running="0.2.0rc1") is None

    def test_another_machine_or_python_is_refused(self):
        assert self.problem(arch="x86_64").code == "RELEASE_WRONG_ARCH"
        assert self.problem(python="cp312").code == "RELEASE_WRONG_ARCH"

    @pytest.mark.parametrize("running", ["0.2.0", "0.2.1", "1.0"])
    def test_a_release_not_newer_than_the_running_one_is_refused(self, running):
        problem = self.problem(running=running)
        assert problem.code == "RELEASE_NOT_NEWER" and running in problem.detail

    def test_a_release_older_than_the_database_schema_is_refused(self):
        problem = self.problem(database_schema=["m001_initial", "m003_newer"])
        assert problem.code == "RELEASE_OLDER_THAN_SCHEMA" and "m003_newer" in problem.detail

    def test_is_newer_compares_pep_440_versions(self):
        assert is_newer("0.10.0", "0.9.0") and not is_newer("0.2.0", "0.2.0")
        assert is_newer("0.2.0", "0.2.0rc1") and not is_newer("0.2.0rc1", "0.2.0")


def test_every_refusal_is_bilingual():
    for code in (
        "RELEASE_MALFORMED",
        "RELEASE_BAD_SIGNATURE",
        "RELEASE_WRONG_ARCH",
        "RELEASE_NOT_NEWER",
        "RELEASE_OLDER_THAN_SCHEMA",
        "RELEASE_FILE_MISMATCH",
    ):
        zh, en = MESSAGES[code]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in zh) and en.isascii()
