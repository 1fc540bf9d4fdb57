"""The `updates` job: signed policy, catalog, roster and search alias versions from the
county, verified against the county key pinned at enrollment before anything is applied.
A refused one is kept (and signed once into the ledger) while the installed version stays
in use; a delta that does not fit is followed by the full version."""

from datetime import datetime

from edge import services
from edge.adapters.identity import DeviceIdentity
from edge.adapters.sqlite_store import SqliteDeviceStore, StoreError
from sync.agent import state
from sync.agent.client import HubClient
from sync.protocol import SyncError, iso, load_public_key
from sync.updates import (
    DELTA,
    VerifiedUpdate,
    alias_rows_of,
    catalog_item_to_json,
    catalog_items_of,
    policy_document_of,
    roster_document_of,
    verify_update,
)

# a catalog may need the newer policy; aliases name codes of the catalog and diagnoses
UPDATE_ORDER = ("policy", "catalog", "roster", "aliases")


def _installed_catalog(store: SqliteDeviceStore) -> dict[str, dict]:
    codes = [code for (code,) in store.db.execute("SELECT code FROM catalog_item")]
    result: dict[str, dict] = {}
    for start in range(0, len(codes), 5000):
        for code, item in store.catalog_items(codes[start : start + 5000]).items():
            result[code] = catalog_item_to_json(item)
    return result


def _apply(store: SqliteDeviceStore, update: VerifiedUpdate, now: datetime) -> None:
    """Install a verified update (the store's import: a large catalog, alias list or
    roster is staged in short transactions and swapped in in one)."""
    try:
        if update.kind == "catalog":
            current = _installed_catalog(store) if update.update_format == DELTA else {}
            items = catalog_items_of(update, current)
            store.import_catalog(
                items, update.version, source=f"county {update.update_format}", now=now
            )
        elif update.kind == "policy":
            store.import_policy(policy_document_of(update), now=now)
        elif update.kind == "aliases":
            store.import_aliases(
                alias_rows_of(update.content), update.version, source="county", now=now
            )
        else:
            store.import_roster(roster_document_of(update), now=now)
    except StoreError as error:
        code = "UPDATE_OLDER" if "roll back" in str(error) else "UPDATE_INVALID"
        raise SyncError(code, str(error)) from None


def _pull_one(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    client: HubClient,
    county_key,
    kind: str,
    now: datetime,
    report: dict,
    *,
    full: bool,
) -> None:
    installed = state.installed_version(store, kind)
    offered = client.update(kind, installed, now, full=full)
    if offered is None:
        return
    try:
        update = verify_update(offered, county_key, kind=kind, installed_version=installed, now=now)
        if update is None:
            return
        _apply(store, update, now)
    except SyncError as error:
        manifest = offered.get("manifest") if isinstance(offered, dict) else None
        claimed = manifest.get("version") if isinstance(manifest, dict) else None
        error.version = claimed if isinstance(claimed, str) else None
        raise
    state.save_installed(
        store,
        state.Installed(
            kind,
            update.version,
            update.update_format,
            iso(update.expires_at),
            update.content_sha256,
            state.stamp(now),
        ),
    )
    services.record_event(
        store,
        identity,
        {
            "event": "update_applied",
            "kind": kind,
            "version": update.version,
            "format": update.update_format,
            "replaces": installed,
            "expires_at": iso(update.expires_at),
            "content_sha256": update.content_sha256,
        },
        now,
    )
    report["updates_applied"].append(
        {"kind": kind, "version": update.version, "format": update.update_format}
    )


def _refuse(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    kind: str,
    error: SyncError,
    now: datetime,
    report: dict,
) -> None:
    """The installed version stays; the refusal is kept, shown, and signed once."""
    version = error.version
    report["updates_refused"].append({"kind": kind, "version": version, **error.to_dict()})
    new = state.record_refusal(
        store, kind, version, error.code, error.message_en, error.message_zh, now
    )
    if new:
        services.record_event(
            store,
            identity,
            {
                "event": "update_refused",
                "kind": kind,
                "version": version,
                "code": error.code,
                "reason": error.message_en,
            },
            now,
        )


def _is_refusal(error: SyncError) -> bool:
    return error.code.startswith(("UPDATE_", "DELTA_"))


def pull_updates(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    client: HubClient,
    county_public_key: str,
    now: datetime,
    report: dict,
) -> None:
    """Fetch, verify and install each kind of county update; a refused one is recorded and
    the others still go. A delta that does not fit falls back to the full version."""
    county_key = load_public_key(county_public_key)
    # a large roster swapped in just before a crash may still have figures to merge
    store.merge_pending_roster_figures()
    for kind in UPDATE_ORDER:
        for full in (False, True):
            try:
                _pull_one(store, identity, client, county_key, kind, now, report, full=full)
            except SyncError as error:
                if not _is_refusal(error):
                    raise
                _refuse(store, identity, kind, error, now, report)
                if error.code.startswith("DELTA_"):
                    continue  # the delta does not fit: ask for the full version
            break
