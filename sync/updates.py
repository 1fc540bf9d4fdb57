"""County updates — catalog, policy, roster and search alias versions — as signed
documents. Pure.

An update is `{"manifest": …, "signature": …, "content": …}`. The manifest names the
kind, version, format (`full` or a `delta` from `base_version`), expiry and the SHA-256 of
the canonical content; the county key signs the manifest's canonical bytes. A device
checks, in this order, before anything is applied: the signature against the key it
pinned at enrollment, the kind, the content hash, that the version is newer than the one
installed, the expiry, and for a delta that it starts from the installed version and
that the catalog it produces hashes to the target version's `result_sha256`.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.domain.documents import catalog_item_from_json, policy_from_json, roster_from_json
from edge.domain.ledger import b64url, b64url_decode
from edge.domain.model import CatalogItem, Rejection
from edge.domain.versions import supersedes, version_problem
from sync.protocol import MESSAGES, SyncError, canonical_json, iso, parse_time, sha256_hex

KINDS = ("catalog", "policy", "roster", "aliases")
FULL, DELTA = "full", "delta"
MANIFEST_VERSION = 1

MESSAGES.update(
    {
        "UPDATE_MALFORMED": ("更新文件格式不正确", "the update is malformed"),
        "UPDATE_BAD_SIGNATURE": (
            "更新的签名与县级公钥不符，已拒绝",
            "the update's signature does not verify with the pinned county key",
        ),
        "UPDATE_WRONG_KIND": ("更新类型不符", "the update is not of the kind asked for"),
        "UPDATE_HASH_MISMATCH": (
            "更新内容的哈希与签名清单不符（内容被改动）",
            "the update's content does not match its signed hash (altered)",
        ),
        "UPDATE_OLDER": (
            "更新版本比已安装的旧，已拒绝（防止回退）",
            "the update is older than the installed version (rollback refused)",
        ),
        "UPDATE_EXPIRED": ("更新已过期，已拒绝", "the update has expired"),
        "UPDATE_BAD_VERSION": (
            "更新的版本号不合规（应为 年.序号，年份不得超前），已拒绝",
            "the update's version is not a sane version (YEAR.N, its year not far ahead)",
        ),
        "DELTA_BASE_MISMATCH": (
            "增量更新不是基于已安装的版本",
            "the delta does not start from the installed version",
        ),
        "DELTA_RESULT_MISMATCH": (
            "增量更新应用后的结果与县级版本不符",
            "the delta applied to the installed version does not give the county's version",
        ),
        "UPDATE_INVALID": ("更新内容无效", "the update's content is not valid"),
    }
)


# ---- content forms ---------------------------------------------------------------------


def catalog_item_to_json(item: CatalogItem) -> dict:
    """The one JSON form of a catalog item that hub and device both hash: absent fields are
    left out, decimals are their strings, dates ISO."""
    document: dict = {
        "code": item.code,
        "name": item.name,
        "spec": item.spec,
        "unit": item.unit,
        "kind": item.kind,
        "class": item.item_class,
        "price": str(item.price),
    }
    optional = {
        "payment_standard": item.payment_standard,
        "self_prepay_ratio": item.self_prepay_ratio,
        "gender": item.gender,
        "min_age": item.min_age,
        "max_age": item.max_age,
        "max_qty": item.max_qty,
        "valid_from": item.valid_from,
        "valid_to": item.valid_to,
        "fund_fixed": item.fund_fixed,
    }
    for key, value in optional.items():
        if value is None:
            continue
        if isinstance(value, date):
            document[key] = value.isoformat()
        else:
            document[key] = value if isinstance(value, int | str) else str(value)
    if item.chronic_only:
        document["chronic_only"] = list(item.chronic_only)
    return document


def catalog_content(items: Iterable[dict]) -> dict:
    """A full catalog's content: its items in code order."""
    return {"items": sorted(items, key=lambda item: item["code"])}


def content_digest(content: object) -> str:
    return sha256_hex(canonical_json(content))


# ---- building (hub) --------------------------------------------------------------------


def make_manifest(
    *,
    kind: str,
    version: str,
    content: object,
    published_at: datetime,
    expires_at: datetime,
    update_format: str = FULL,
    base_version: str | None = None,
    result_sha256: str | None = None,
) -> dict:
    return {
        "v": MANIFEST_VERSION,
        "kind": kind,
        "version": version,
        "format": update_format,
        "base_version": base_version,
        "published_at": iso(published_at),
        "expires_at": iso(expires_at),
        "content_sha256": content_digest(content),
        "result_sha256": result_sha256,
    }


def sign_update(manifest: dict, content: object, county_key: Ed25519PrivateKey) -> dict:
    return {
        "manifest": manifest,
        "signature": b64url(county_key.sign(canonical_json(manifest))),
        "content": content,
    }


# ---- verifying (device) ------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedUpdate:
    kind: str
    version: str
    update_format: str
    base_version: str | None
    expires_at: datetime
    content: dict
    content_sha256: str
    result_sha256: str | None


def _manifest_of(update: object) -> tuple[dict, str, dict]:
    if not isinstance(update, dict):
        raise SyncError("UPDATE_MALFORMED", "not an object")
    manifest, signature, content = (update.get(k) for k in ("manifest", "signature", "content"))
    if not (isinstance(manifest, dict) and isinstance(signature, str)):
        raise SyncError("UPDATE_MALFORMED", "manifest or signature missing")
    if not isinstance(content, dict):
        raise SyncError("UPDATE_MALFORMED", "content missing")
    return manifest, signature, content


def verify_update(
    update: object,
    county_key: Ed25519PublicKey,
    *,
    kind: str,
    installed_version: str | None,
    now: datetime,
) -> VerifiedUpdate | None:
    """The update, checked; None when it is the version already installed. Raises
    `SyncError` with an `UPDATE_…`/`DELTA_…` code for anything that must be refused."""
    manifest, signature, content = _manifest_of(update)
    try:
        county_key.verify(b64url_decode(signature), canonical_json(manifest))
    except (InvalidSignature, ValueError, TypeError):
        raise SyncError("UPDATE_BAD_SIGNATURE") from None
    if manifest.get("kind") != kind or manifest.get("v") != MANIFEST_VERSION:
        raise SyncError("UPDATE_WRONG_KIND", f"got {manifest.get('kind')!r}, wanted {kind!r}")
    version, update_format = manifest.get("version"), manifest.get("format")
    if not isinstance(version, str) or not version or update_format not in (FULL, DELTA):
        raise SyncError("UPDATE_MALFORMED", "version or format missing")
    if content_digest(content) != manifest.get("content_sha256"):
        raise SyncError("UPDATE_HASH_MISMATCH", f"{kind} {version}")
    if installed_version is not None and version == installed_version:
        return None
    problem = version_problem(version, now.date())
    if problem is not None:  # a version far ahead would freeze every later one
        raise SyncError("UPDATE_BAD_VERSION", f"{kind} {problem}")
    if installed_version is not None and not supersedes(version, installed_version, now.date()):
        raise SyncError("UPDATE_OLDER", f"{kind} {version} offered, {installed_version} installed")
    try:
        expires_at = parse_time(manifest.get("expires_at"), "expires_at")
    except SyncError:
        raise SyncError("UPDATE_MALFORMED", "expires_at is not a date-time") from None
    if now >= expires_at:
        raise SyncError("UPDATE_EXPIRED", f"{kind} {version} expired at {iso(expires_at)}")
    base_version = manifest.get("base_version")
    if update_format == DELTA and base_version != installed_version:
        raise SyncError(
            "DELTA_BASE_MISMATCH",
            f"the delta to {version} starts from {base_version}, {installed_version} is installed",
        )
    return VerifiedUpdate(
        kind=kind,
        version=version,
        update_format=update_format,
        base_version=base_version,
        expires_at=expires_at,
        content=content,
        content_sha256=manifest["content_sha256"],
        result_sha256=manifest.get("result_sha256"),
    )


# ---- applying (device): content into what the store imports -----------------------------


def catalog_items_of(update: VerifiedUpdate, installed: Mapping[str, dict]) -> list[CatalogItem]:
    """The full catalog the update describes, parsed. A delta is applied to `installed`
    (code -> item JSON) and must hash to the county's full version."""
    content = update.content
    if update.update_format == FULL:
        documents = content.get("items")
        if not isinstance(documents, list):
            raise SyncError("UPDATE_INVALID", "catalog content has no items list")
    else:
        upsert, remove = content.get("upsert", []), content.get("remove", [])
        if not isinstance(upsert, list) or not isinstance(remove, list):
            raise SyncError("UPDATE_INVALID", "catalog delta needs upsert and remove lists")
        merged = dict(installed)
        for code in remove:
            if merged.pop(code, None) is None:
                raise SyncError("DELTA_RESULT_MISMATCH", f"removes {code!r}, not installed")
        for entry in upsert:
            if not isinstance(entry, dict) or not isinstance(entry.get("code"), str):
                raise SyncError("UPDATE_INVALID", "a delta item has no code")
            merged[entry["code"]] = entry
        documents = catalog_content(merged.values())["items"]
        if content_digest({"items": documents}) != update.result_sha256:
            raise SyncError(
                "DELTA_RESULT_MISMATCH",
                f"catalog {update.base_version} + delta does not hash to {update.version}",
            )
    try:
        items = [catalog_item_from_json(entry, f"items[{i}]") for i, entry in enumerate(documents)]
    except Rejection as error:
        raise SyncError("UPDATE_INVALID", error.message) from None
    if len({item.code for item in items}) != len(items):
        raise SyncError("UPDATE_INVALID", "the catalog repeats an item code")
    return items


def policy_document_of(update: VerifiedUpdate) -> dict:
    try:
        policy = policy_from_json(update.content)
    except Rejection as error:
        raise SyncError("UPDATE_INVALID", error.message) from None
    if policy.version != update.version:
        raise SyncError(
            "UPDATE_INVALID", f"policy says {policy.version}, manifest {update.version}"
        )
    return update.content


def aliases_content(rows: Iterable[tuple[str, str, str]]) -> dict:
    """An alias list's content from (list, alias, code) rows: `{"aliases": [{"alias",
    "list", "code"}]}`, in the order given."""
    return {"aliases": [{"alias": a, "list": t, "code": c} for t, a, c in rows]}


def alias_rows_of(content: object) -> list[tuple[str, str, str]]:
    """(list, alias, code) rows of an alias list's content; SyncError when malformed."""
    entries = content.get("aliases") if isinstance(content, dict) else None
    if not isinstance(entries, list):
        raise SyncError("UPDATE_INVALID", "an alias list needs an aliases list")
    rows = []
    for index, entry in enumerate(entries):
        values = [
            entry.get(k) if isinstance(entry, dict) else None for k in ("list", "alias", "code")
        ]
        cells = [v.strip() for v in values if isinstance(v, str) and v.strip()]
        if len(cells) != 3 or cells[0] not in ("item", "diagnosis"):
            raise SyncError("UPDATE_INVALID", f"aliases[{index}]: needs alias, list, code")
        rows.append((cells[0], cells[1], cells[2]))
    return rows


def roster_document_of(update: VerifiedUpdate) -> dict:
    """A roster document `import_roster` takes. A delta lists the persons that changed; the
    store upserts persons, so a delta imports like a (smaller) full roster."""
    try:
        version, _ = roster_from_json(update.content)
    except Rejection as error:
        raise SyncError("UPDATE_INVALID", error.message) from None
    if version != update.version:
        raise SyncError("UPDATE_INVALID", f"roster says {version}, manifest {update.version}")
    return update.content
