"""Signed county updates: publishing a new catalog, policy or roster version, the update
a device asks for (a delta from its version where one can be made, else the full
version), and what a new catalog would change.
"""

from collections import Counter
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.domain.documents import (
    insured_person_from_json,
    obj,
    policy_from_json,
    roster_from_json,
)
from edge.domain.model import CatalogItem, Rejection
from edge.domain.versions import supersedes, version_problem
from sync.hub.model import HubError, Publication
from sync.hub.ports import HubStore
from sync.protocol import SyncError, canonical_json, iso
from sync.updates import (
    DELTA,
    KINDS,
    alias_rows_of,
    aliases_content,
    catalog_content,
    catalog_item_to_json,
    make_manifest,
    sign_update,
)


class NotNewer(HubError):
    """The version is not newer than the one published (perhaps meanwhile)."""


def _check_new_version(
    store: HubStore, kind: str, version: str, expires_at: datetime, now: datetime
) -> None:
    if not version or not version.strip():
        raise HubError(f"a {kind} version needs a version number")
    problem = version_problem(version, now.date())
    if problem is not None:
        raise HubError(f"{kind} not published: {problem} / 版本号不合规（应为 年.序号）")
    latest = store.latest_version(kind)  # the version only: a roster's content is large
    if latest is not None and not supersedes(version, latest, now.date()):
        raise NotNewer(
            f"{kind} 版本 {version} 不比已发布的 {latest} 新"
            f" / {kind} version {version} is not newer than the published {latest}"
        )
    if expires_at <= now:
        raise HubError(f"the expiry {iso(expires_at)} is not in the future")


def normalized_catalog(items: Iterable[CatalogItem]) -> list[dict]:
    documents = [catalog_item_to_json(item) for item in items]
    codes = [doc["code"] for doc in documents]
    if len(set(codes)) != len(codes):
        repeated = sorted(code for code, n in Counter(codes).items() if n > 1)
        raise HubError(f"the catalog repeats item codes: {', '.join(repeated[:5])}")
    return catalog_content(documents)["items"]


def publish(
    store: HubStore,
    county_key: Ed25519PrivateKey,
    *,
    kind: str,
    version: str | None,
    expires_at: datetime,
    now: datetime,
    items: Iterable[CatalogItem] | None = None,
    document: dict | None = None,
    changed: Collection[str] | None = None,
) -> dict:
    """Sign and publish a new catalog (`items`), policy or roster (`document`) version;
    returns its manifest. Older or equal versions and past expiries are refused. A roster
    whose `changed` persons are the only ones that differ from the newest (a decision's
    point release) re-applies those alone."""
    if kind not in KINDS:
        raise HubError(f"unknown kind {kind!r}: catalog, policy, roster or aliases")
    try:
        if kind == "catalog":
            content: dict[str, Any] = {"items": normalized_catalog(items or [])}
            if not content["items"]:
                raise HubError("an empty catalog cannot be published")
        elif kind == "aliases":  # the search aliases doctors type (上感, 高血压 …)
            try:
                content = aliases_content(alias_rows_of(document))
            except SyncError as error:
                raise HubError(f"aliases not published, nothing changed: {error}") from None
            if not content["aliases"]:
                raise HubError("an empty alias list cannot be published")
        elif kind == "policy":
            content = obj(document, kind)
            named = policy_from_json(content).version
            version = version or named
            if named != version:
                raise HubError(f"the policy document says version {named}, not {version}")
        else:
            content = obj(document, kind)
            named, persons = _roster(content, changed)
            version = version or named
            if named != version:
                raise HubError(f"the roster document says version {named}, not {version}")
    except Rejection as error:
        raise HubError(f"{kind} not published, nothing changed: {error.message}") from None
    if version is None:
        raise HubError(f"give the {kind}'s --version")
    manifest = make_manifest(
        kind=kind, version=version, content=content, published_at=now, expires_at=expires_at
    )
    signed = sign_update(manifest, content, county_key)
    with store.unit_of_work():
        _check_new_version(store, kind, version, expires_at, now)
        store.add_publication(
            Publication(
                kind,
                version,
                manifest["published_at"],
                manifest["expires_at"],
                manifest,
                signed["signature"],
                content,
            )
        )
        if kind == "catalog":
            store.add_published_items(
                version, ((doc["code"], _dumps(doc)) for doc in content["items"])
            )
        elif kind == "roster":
            entries = {p["insured_id"]: p for p in content["persons"]}
            store.add_published_persons(
                version, ((pid, _dumps(doc)) for pid, doc in entries.items())
            )
            for entry in persons:
                if changed is None or entry.insured_id in changed:
                    _adopt_person(store, entries[entry.insured_id], version)
    return manifest


def _roster(content: dict, changed: Collection[str] | None) -> tuple[str, list]:
    """The roster's version and persons to adopt. A point release (`changed`) is the
    published roster with those persons changed: the others were checked when it was
    published, so only the changed ones are parsed (a 20,000-person roster would take
    most of an approval's time), and no person or card may repeat."""
    if changed is None:
        return roster_from_json(content)
    persons = content.get("persons")
    if not isinstance(persons, list) or not all(isinstance(p, dict) for p in persons):
        raise HubError("roster not published, nothing changed: roster.persons is not a list")
    seen: set = set()
    for index, person in enumerate(persons):
        for key in (person.get("insured_id"), f"card:{person.get('card_no')}"):
            if key in seen:
                raise HubError(
                    f"roster not published, nothing changed: roster.persons[{index}]"
                    f" repeats {key!r}"
                )
            seen.add(key)
    return roster_from_json(
        {**content, "persons": [p for p in persons if p.get("insured_id") in changed]}
    )


def _adopt_person(store: HubStore, document: dict, version: str) -> None:
    """The roster's person for recomputation; accumulators it carries start the county's
    running figures for years the hub has none of (later rosters do not reset them)."""
    entry = insured_person_from_json(document, "person")
    store.upsert_person(entry.insured_id, document, version, entry.person.account_balance)
    for (year, scope), values in entry.accumulators.items():
        # a visit type's deductible and fund, or the year-wide assistance, critical
        # illness and supplements (scope YEAR_WIDE)
        store.seed_accumulator(entry.insured_id, year, scope, values)


def _dumps(value: object) -> str:
    return canonical_json(value).decode()


def update_for(
    store: HubStore,
    county_key: Ed25519PrivateKey,
    kind: str,
    *,
    since: str | None,
    full: bool = False,
) -> dict | None:
    """The newest published version of `kind` for a device that has `since`: None when it
    is current, a signed delta from `since` where one can be made (catalog, roster) unless
    `full` is asked for, else the full signed snapshot."""
    if kind not in KINDS:
        raise SyncError("UNKNOWN_KIND", kind)
    latest = store.latest_publication(kind)
    if latest is None or since == latest.version:
        return None
    snapshot = {
        "manifest": latest.manifest,
        "signature": latest.signature,
        "content": latest.content,
    }
    if (
        full
        or since is None
        or kind in ("policy", "aliases")
        or store.publication(kind, since) is None
    ):
        return snapshot
    if kind == "catalog":
        upsert, remove = store.catalog_changes(since, latest.version)
        content: dict = {"upsert": upsert, "remove": remove}
    else:
        content = {
            "version": latest.version,
            "persons": store.roster_changes(since, latest.version),
        }
    manifest = make_manifest(
        kind=kind,
        version=latest.version,
        content=content,
        published_at=datetime.fromisoformat(latest.published_at),
        expires_at=datetime.fromisoformat(latest.expires_at),
        update_format=DELTA,
        base_version=since,
        result_sha256=latest.manifest["content_sha256"],
    )
    return sign_update(manifest, content, county_key)


def catalog_diff(store: HubStore, items: Iterable[CatalogItem]) -> dict:
    """What publishing `items` would change against the newest published catalog."""
    new = {doc["code"]: doc for doc in normalized_catalog(items)}
    latest = store.latest_publication("catalog")
    old = store.published_items(latest.version) if latest else {}
    changed = sorted(code for code in new.keys() & old.keys() if new[code] != old[code])
    return {
        "base_version": latest.version if latest else None,
        "added": sorted(new.keys() - old.keys()),
        "removed": sorted(old.keys() - new.keys()),
        "changed": changed,
        "unchanged": len(new) - len(changed) - len(new.keys() - old.keys()),
        "changes": {code: {"old": old[code], "new": new[code]} for code in changed[:200]},
    }
