"""The county hub's use cases: provisioning, enrollment, authenticated ingest, heartbeats,
publishing signed updates, recomputation and reconciliation, fleet status.

Each use case gathers inputs from a `HubStore`, calls pure code (`sync.protocol`,
`sync.updates`, `sync.hub.ingest`, `sync.hub.reconcile`) and applies the outputs in
one unit of work. `now` is always an argument.

Device ids: a device's id is derived from its key when the terminal is initialised
(`edge.adapters.identity.device_id_for`) and is in every ledger record from seq 1. Enrollment
registers that existing id and public key into a provisioned slot (clinic code,
township); the hub never renames a device.
"""

import csv
import io
import os
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.adapters.identity import (
    IdentityError,
    device_id_for,
    read_private_key,
    write_new_private_key,
)
from edge.domain.documents import insured_person_from_json, policy_from_json, roster_from_json
from edge.domain.ledger import b64url, genesis_hash, raw_public_key
from edge.domain.model import CatalogItem, Policy, Rejection
from edge.domain.versions import version_order
from sync.hub import reconcile
from sync.hub.bootstrap import DATABASE_URL_FILE, open_hub_store
from sync.hub.ingest import plan_ingest
from sync.hub.model import Balances, HubError, Publication, Slot
from sync.hub.ports import HubStore
from sync.protocol import (
    MAX_CLOCK_DIFFERENCE,
    SyncError,
    canonical_json,
    iso,
    key_fingerprint,
    load_public_key,
    parse_time,
    sha256_hex,
    signed_request_of,
    verify_request,
)
from sync.updates import (
    DELTA,
    KINDS,
    catalog_content,
    catalog_item_to_json,
    make_manifest,
    sign_update,
)

COUNTY_KEY_FILE = "county.key"
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read out over a phone
CODE_LENGTH = 8
DEFAULT_CODE_LIFETIME = timedelta(hours=72)
NONCE_MEMORY = 3 * MAX_CLOCK_DIFFERENCE  # longer than any timestamp stays acceptable


# ---- the county and its key ---------------------------------------------------------------


def create_county_key(data_dir: Path) -> Ed25519PrivateKey:
    """A new county signing key in a file only its owner can read; never overwritten."""
    path = Path(data_dir) / COUNTY_KEY_FILE
    try:
        return write_new_private_key(path)
    except FileExistsError:
        raise HubError(f"{path} already exists; a county keeps its signing key") from None


def load_county_key(data_dir: Path) -> Ed25519PrivateKey:
    path = Path(data_dir) / COUNTY_KEY_FILE
    try:
        return read_private_key(path, "the county signing key")
    except FileNotFoundError:
        raise HubError(f"the county signing key {path} is missing") from None
    except IdentityError as error:
        raise HubError(str(error)) from None


def init_hub(data_dir: Path, county_name: str, now: datetime, database: str | None = None) -> dict:
    """Create a hub: its database, the county signing key and the county's row.

    Without `database`, the database is the configured one (`database_url`: SQLite in
    `data_dir` unless $CLINIC_HUB_DATABASE names PostgreSQL). With a PostgreSQL URL, the
    schema is made there and the URL recorded in `data_dir/database.url` (0600)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if database is None:
        store, where = open_hub_store(data_dir, create=True), str(data_dir)
    else:
        from sync.hub.adapters.postgresql import PgHubStore, redacted

        url_file = data_dir / DATABASE_URL_FILE
        if url_file.exists() and url_file.read_text().strip() != database:
            raise HubError(f"{url_file} already names another database")
        store, where = PgHubStore.open(database, create=True), redacted(database)
    try:
        refuse_a_second_county(store, where)
        if database is not None:
            fd = os.open(url_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(database + "\n")
        return create_county(store, data_dir, county_name, now)
    finally:
        store.close()


def refuse_a_second_county(store: HubStore, where: str) -> None:
    if store.county() is not None:
        raise HubError(f"{where} already holds the hub of {store.county().name}")


def create_county(store: HubStore, data_dir: Path, county_name: str, now: datetime) -> dict:
    """The county signing key (in `data_dir`) and the county's row in a new hub."""
    key = create_county_key(data_dir)
    public_key = b64url(raw_public_key(key.public_key()))
    with store.unit_of_work():
        store.create_county(county_name, public_key, iso(now))
    return {
        "county": county_name,
        "public_key": public_key,
        "fingerprint": key_fingerprint(public_key),
    }


def county_of(store: HubStore) -> dict:
    county = store.county()
    if county is None:
        raise HubError("this hub has no county yet: run 'clinic hub init'")
    return {
        "county": county.name,
        "public_key": county.public_key,
        "fingerprint": key_fingerprint(county.public_key),
    }


# ---- provisioning ---------------------------------------------------------------------------


def new_enrollment_code(choice: Callable[[str], str] = secrets.choice) -> str:
    """Eight characters from an alphabet without look-alikes, as XXXX-XXXX."""
    raw = "".join(choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_code(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalnum())


def code_hash(code: str) -> str:
    return sha256_hex(normalize_code(code).encode())


@dataclass(frozen=True)
class Provisioned:
    slot_id: int
    clinic_code: str
    township: str
    code: str
    expires_at: str
    county_fingerprint: str

    def to_dict(self) -> dict:
        return {
            "slot_id": self.slot_id,
            "clinic_code": self.clinic_code,
            "township": self.township,
            "code": self.code,
            "expires_at": self.expires_at,
            "county_fingerprint": self.county_fingerprint,
        }


def provision(
    store: HubStore,
    *,
    clinic_code: str,
    township: str,
    now: datetime,
    lifetime: timedelta = DEFAULT_CODE_LIFETIME,
    make_code: Callable[[], str] = new_enrollment_code,
) -> Provisioned:
    """Register a device slot and hand out its one-time enrollment code (shown only once:
    the hub keeps its hash)."""
    clinic_code, township = clinic_code.strip(), township.strip()
    if not clinic_code or not township:
        raise HubError("a device slot needs a clinic code and a township")
    county = county_of(store)
    code = make_code()
    expires_at = iso(now + lifetime)
    with store.unit_of_work():
        slot_id = store.add_slot(clinic_code, township, code_hash(code), expires_at, iso(now))
    return Provisioned(slot_id, clinic_code, township, code, expires_at, county["fingerprint"])


def find_slot(store: HubStore, target: str) -> Slot:
    """A slot by its device id, or by its number (`12` or `slot-12`) before enrollment."""
    slot = store.slot_by_device(target)
    number = target.removeprefix("slot-")
    if slot is None and number.isdigit():
        slot = store.slot_by_id(int(number))
    if slot is None:
        raise HubError(f"no device or slot {target!r} at this hub")
    return slot


def revoke(store: HubStore, target: str, now: datetime, reason: str = "") -> Slot:
    """Stop a device (or an unused slot): its uploads and code are refused from now on;
    what it uploaded stays."""
    with store.unit_of_work():
        slot = find_slot(store, target)
        if slot.revoked_at is not None:
            raise HubError(f"{target} was already revoked at {slot.revoked_at}")
        store.revoke_slot(slot.slot_id, iso(now), reason)
    return store.slot_by_id(slot.slot_id)


# ---- authentication -------------------------------------------------------------------------


def _remember_nonce(store: HubStore, device_id: str, nonce: str, now: datetime) -> None:
    utc = now.astimezone(UTC)
    if not store.remember_nonce(device_id, nonce, utc.isoformat()):
        raise SyncError("NONCE_REUSED")
    store.forget_nonces_before((utc - NONCE_MEMORY).isoformat())


def authenticate(
    store: HubStore,
    headers: Mapping[str, str],
    *,
    method: str,
    path: str,
    body: bytes,
    now: datetime,
) -> Slot:
    """The enrolled, unrevoked device that signed this fresh, never-seen request."""
    claimed = signed_request_of(headers)
    slot = store.slot_by_device(claimed.device_id)
    if slot is None:
        raise SyncError("UNKNOWN_DEVICE", claimed.device_id)
    if slot.revoked_at is not None:
        raise SyncError("DEVICE_REVOKED", f"{claimed.device_id} since {slot.revoked_at}")
    verify_request(
        load_public_key(slot.public_key), claimed, method=method, path=path, body=body, now=now
    )
    with store.unit_of_work():
        _remember_nonce(store, claimed.device_id, claimed.nonce, now)
    return slot


# ---- enrollment -------------------------------------------------------------------------------


def enroll(
    store: HubStore,
    headers: Mapping[str, str],
    *,
    method: str,
    path: str,
    body: dict,
    raw_body: bytes,
    now: datetime,
) -> dict:
    """Register a device's existing id and public key into the slot its one-time code
    names. The request is signed by that key (proof of possession). A retry by the same
    device after a lost answer gets the same answer; any other second use is refused."""
    claimed = signed_request_of(headers)
    code, device_id, public_key_b64 = (body.get(k) for k in ("code", "device_id", "public_key"))
    if not all(isinstance(v, str) and v for v in (code, device_id, public_key_b64)):
        raise SyncError("BAD_REQUEST", "enrollment needs code, device_id and public_key")
    if claimed.device_id != device_id:
        raise SyncError("BAD_REQUEST", "the signing device is not the one enrolling")
    public_key = load_public_key(public_key_b64)
    verify_request(public_key, claimed, method=method, path=path, body=raw_body, now=now)
    if device_id_for(public_key) != device_id:
        raise SyncError("DEVICE_ID_MISMATCH", device_id)
    with store.unit_of_work():
        _remember_nonce(store, device_id, claimed.nonce, now)
        slot = store.slot_by_code_hash(code_hash(code))
        if slot is None:
            raise SyncError("CODE_UNKNOWN")
        if slot.device_id is not None:
            if slot.device_id == device_id and slot.public_key == public_key_b64:
                if slot.revoked_at is not None:
                    raise SyncError("DEVICE_REVOKED", device_id)
                return _enrollment_answer(store, slot, now)
            raise SyncError("CODE_USED")
        if slot.revoked_at is not None:
            raise SyncError("SLOT_REVOKED")
        if now >= datetime.fromisoformat(slot.code_expires_at):
            raise SyncError("CODE_EXPIRED", f"at {slot.code_expires_at}")
        existing = store.slot_by_device(device_id)
        if existing is not None:
            if existing.revoked_at is not None:
                raise SyncError("DEVICE_REVOKED", f"{device_id} cannot enroll again")
            raise SyncError("ALREADY_ENROLLED", f"as clinic {existing.clinic_code}")
        store.enroll_slot(slot.slot_id, device_id, public_key_b64, iso(now))
        slot = store.slot_by_id(slot.slot_id)
    return _enrollment_answer(store, slot, now)


def _enrollment_answer(store: HubStore, slot: Slot, now: datetime) -> dict:
    county = county_of(store)
    return {
        "device_id": slot.device_id,
        "slot_id": slot.slot_id,
        "clinic_code": slot.clinic_code,
        "township": slot.township,
        "county_name": county["county"],
        "county_public_key": county["public_key"],
        "county_key_fingerprint": county["fingerprint"],
        "enrolled_at": slot.enrolled_at,
        "hub_time": iso(now),
    }


# ---- ingest --------------------------------------------------------------------------------


def ingest(store: HubStore, slot: Slot, batch: list[object], now: datetime) -> dict:
    """Store a batch idempotently by (device_id, seq); answer the acknowledged high-water
    mark. Every refusal raises an alarm for the device."""
    device_id = slot.device_id
    public_key = load_public_key(slot.public_key)
    received_at = iso(now)
    with store.unit_of_work():
        current = store.slot_by_device(device_id)  # re-read inside the write lock
        head_seq = current.head_seq
        head_hash = current.head_hash or genesis_hash(public_key)
        seqs = [
            r["seq"]
            for r in batch
            if isinstance(r, dict) and type(r.get("seq")) is int and r["seq"] <= head_seq
        ]
        plan = plan_ingest(
            device_id=device_id,
            public_key=public_key,
            head_seq=head_seq,
            head_hash=head_hash,
            batch=batch,
            stored_hashes=store.stored_hashes(device_id, seqs),
            held=store.held_records(device_id),
        )
        if plan.accepted:
            store.add_records(device_id, plan.accepted, received_at)
        if plan.release:
            store.release_held(device_id, plan.release)
        if plan.hold:
            store.hold_records(device_id, plan.hold, received_at)
        if plan.head_seq != head_seq:
            store.set_head(device_id, plan.head_seq, plan.head_hash)
        for refusal in plan.refusals:
            store.raise_alarm(device_id, refusal.code, refusal.seq, refusal.detail, received_at)
        store.record_contact(device_id, received_at, None, None)
        held = len(store.held_records(device_id)) if plan.hold or plan.release else None
    return {
        "acked_seq": plan.head_seq,
        "acked_hash": plan.head_hash,
        "stored": len(plan.accepted),
        "duplicates": plan.duplicates,
        "held": held if held is not None else len(plan.hold),
        "refused": [{"seq": r.seq, "code": r.code, "detail": r.detail} for r in plan.refusals],
        "hub_time": iso(now),
    }


def heartbeat(store: HubStore, slot: Slot, document: dict, now: datetime) -> dict:
    """Remember what the device reports; a ledger head behind what the hub holds means the
    device was restored from an old backup, and raises an alarm."""
    device_clock = parse_time(document.get("device_clock"), "device_clock")
    skew = round((device_clock - now).total_seconds())
    allowed = (
        "device_clock",
        "versions",
        "records_waiting",
        "synced_seq",
        "ledger_head",
        "disk_free_bytes",
        "agent",
        "expires",
    )
    report = {k: document[k] for k in allowed if k in document}
    head = document.get("ledger_head") or {}
    if not isinstance(head, dict):
        raise SyncError("BAD_REQUEST", "ledger_head must be an object")
    with store.unit_of_work():
        store.record_contact(slot.device_id, iso(now), report, skew)
        current = store.slot_by_device(slot.device_id)
        seq, hash_ = head.get("seq"), head.get("hash")
        if type(seq) is int and 0 <= seq < current.head_seq:
            store.raise_alarm(
                slot.device_id,
                "LEDGER_WENT_BACKWARDS",
                seq,
                f"the device's ledger ends at seq {seq}; the hub holds up to {current.head_seq}",
                iso(now),
            )
        elif type(seq) is int and 0 < seq <= current.head_seq:
            held = store.stored_hashes(slot.device_id, [seq]).get(seq)
            if held is not None and held != hash_:
                store.raise_alarm(
                    slot.device_id,
                    "LEDGER_WENT_BACKWARDS",
                    seq,
                    f"the device's record {seq} is not the one the hub holds",
                    iso(now),
                )
    return {"hub_time": iso(now), "acked_seq": current.head_seq}


def export_records(store: HubStore, device_id: str) -> Iterator[dict]:
    """What the hub holds for a device, in `seq` order (`clinic ledger export` format)."""
    if store.slot_by_device(device_id) is None:
        raise HubError(f"no device {device_id!r} at this hub")
    return store.records(device_id)


# ---- publishing ------------------------------------------------------------------------------


def _check_new_version(
    store: HubStore, kind: str, version: str, expires_at: datetime, now: datetime
) -> None:
    if not version or not version.strip():
        raise HubError(f"a {kind} version needs a version number")
    latest = store.latest_publication(kind)
    if latest is not None and version_order(version) <= version_order(latest.version):
        raise HubError(f"{kind} version {version} is not newer than the published {latest.version}")
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
) -> dict:
    """Sign and publish a new catalog (`items`), policy or roster (`document`) version;
    returns its manifest. Older or equal versions and past expiries are refused."""
    if kind not in KINDS:
        raise HubError(f"unknown kind {kind!r}: catalog, policy or roster")
    try:
        if kind == "catalog":
            content: dict = {"items": normalized_catalog(items or [])}
            if not content["items"]:
                raise HubError("an empty catalog cannot be published")
        elif kind == "policy":
            named = policy_from_json(document).version
            version = version or named
            if named != version:
                raise HubError(f"the policy document says version {named}, not {version}")
            content = document
        else:
            named, persons = roster_from_json(document)
            version = version or named
            if named != version:
                raise HubError(f"the roster document says version {named}, not {version}")
            content = document
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
            entries = {p["insured_id"]: p for p in document["persons"]}
            store.add_published_persons(
                version, ((pid, _dumps(doc)) for pid, doc in entries.items())
            )
            for entry in persons:
                _adopt_person(store, entries[entry.insured_id], version)
    return manifest


def _adopt_person(store: HubStore, document: dict, version: str) -> None:
    """The roster's person for recomputation; accumulators it carries start the county's
    running figures for years the hub has none of (later rosters do not reset them)."""
    entry = insured_person_from_json(document, "person")
    store.upsert_person(entry.insured_id, document, version, entry.person.account_balance)
    for (year, scope), values in entry.accumulators.items():
        store.seed_accumulator(
            entry.insured_id,
            year,
            scope,
            values.deductible_used,
            values.fund_paid,
            values.assistance_paid,
        )


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
    if full or since is None or kind == "policy" or store.publication(kind, since) is None:
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


# ---- recomputation and reconciliation ---------------------------------------------------------


class _Versions:
    """Published policies parsed once per run; published catalog versions known."""

    def __init__(self, store: HubStore):
        self.store = store
        self.policies: dict[str, Policy | None] = {}
        self.catalogs: dict[str, bool] = {}

    def policy(self, version: str) -> Policy | None:
        if version not in self.policies:
            publication = self.store.publication("policy", version)
            self.policies[version] = (
                None if publication is None else policy_from_json(publication.content)
            )
        return self.policies[version]

    def has_catalog(self, version: str) -> bool:
        if version not in self.catalogs:
            self.catalogs[version] = self.store.publication("catalog", version) is not None
        return self.catalogs[version]


def reconcile_pending(store: HubStore, now: datetime, *, batch: int = 500) -> dict:
    """Recompute every record not yet recomputed, in order of arrival; returns counts by
    outcome (`ok`, `differs`, `not_recomputable`, `refused`, …)."""
    counts: Counter = Counter()
    versions = _Versions(store)
    while True:
        with store.unit_of_work():
            pending = store.records_to_recompute(batch)
            if not pending:
                break
            for stored in pending:
                outcome = _recompute_one(store, versions, stored.device_id, stored.record, now)
                counts[outcome] += 1
            store.mark_recomputed_through(pending[-1].position)
    return dict(counts)


def _recompute_one(
    store: HubStore, versions: _Versions, device_id: str, record: dict, now: datetime
) -> str:
    kind, body, seq, tx_id = record["kind"], record["body"], record["seq"], record["tx_id"]
    add_item = _item_adder(store, device_id, seq, tx_id, record, now)
    if kind == "settlement":
        return _recompute_settlement(store, versions, device_id, record, add_item)
    if kind == "reversal":
        return _apply_reversal(store, device_id, body, add_item)
    if kind == "daily_close":
        previous = store.last_seq_of_kind(device_id, "daily_close", seq)
        covered = list(store.records(device_id, after_seq=previous, to_seq=seq - 1))
        diff = reconcile.daily_close_differences(body, covered)
        if diff:
            add_item(reconcile.DAILY_CLOSE_DIFFERS, {"fields": diff})
            return "differs"
        return "ok"
    return "not_a_settlement"


def _item_adder(
    store: HubStore, device_id: str, seq: int, tx_id: str, record: dict, now: datetime
) -> Callable[[str, dict], None]:
    body = record["body"]
    day = body.get("business_day") or str(record.get("created_at", ""))[:10] or None

    def add(code: str, details: dict) -> None:
        store.add_reconciliation_item(device_id, seq, tx_id, code, day, details, iso(now))

    return add


def _recompute_settlement(
    store: HubStore,
    versions: _Versions,
    device_id: str,
    record: dict,
    add_item: Callable[[str, dict], None],
) -> str:
    body = record["body"]
    device_result = body.get("result") or {}
    insured_id = body.get("insured_id")
    try:
        year, visit_type = reconcile.visit_year_and_type(body)
    except (KeyError, TypeError, ValueError):
        add_item(reconcile.NOT_RECOMPUTABLE, {"reason": "the record holds no readable visit"})
        store.save_recomputation(
            device_id, record["seq"], record["tx_id"], "not_recomputable", None
        )
        return "not_recomputable"
    if body.get("needs_review"):
        add_item(
            reconcile.NEEDS_REVIEW, {"reasons": body["needs_review"], "insured_id": insured_id}
        )
    before = store.balances(insured_id, year, visit_type)
    policy = versions.policy(body.get("policy_version", ""))
    person = store.person(insured_id)
    missing = [
        what
        for what, present in (
            (f"policy {body.get('policy_version')}", policy is not None),
            (
                f"catalog {body.get('catalog_version')}",
                versions.has_catalog(body.get("catalog_version", "")),
            ),
            (f"insured person {insured_id}", person is not None),
        )
        if not present
    ]
    hub_result: dict | None = None
    if missing:
        status = "not_recomputable"
        add_item(
            reconcile.NOT_RECOMPUTABLE,
            {
                "reason": "the hub does not have " + ", ".join(missing),
                "insured_id": insured_id,
                "device": _money(device_result),
            },
        )
    else:
        codes = [line.get("code") for line in body["visit"].get("lines", [])]
        items = store.published_items(body["catalog_version"], codes)
        try:
            settlement = reconcile.recompute(body, policy, items, person[0], before)
        except Rejection as rejection:
            status = "refused"
            add_item(
                reconcile.REFUSED_BY_COUNTY,
                {
                    "insured_id": insured_id,
                    "error": rejection.to_dict()["error"],
                    "device": _money(device_result),
                },
            )
        else:
            hub_result = {
                **settlement.to_dict(),
                "accumulators_before": reconcile.balances_as_json(before),
            }
            diff = reconcile.differences(device_result, hub_result)
            status = "differs" if diff else "ok"
            if diff:
                add_item(
                    reconcile.SETTLEMENT_DIFFERS,
                    {
                        "insured_id": insured_id,
                        "fields": diff,
                        "accumulators_before": reconcile.balance_differences(
                            body.get("accumulators_before") or {}, before
                        ),
                    },
                )
            store.set_balances(insured_id, year, visit_type, reconcile.balances_after(settlement))
    if hub_result is None:
        # The county cannot settle it itself: its running figures follow the device's.
        store.set_balances(insured_id, year, visit_type, _balances_by_device(before, device_result))
    store.save_recomputation(device_id, record["seq"], record["tx_id"], status, hub_result)
    return status


def _balances_by_device(before: Balances, device_result: dict) -> Balances:
    def amount(name: str) -> int:
        value = device_result.get(name)
        return value if type(value) is int else 0

    return Balances(
        before.deductible_used + amount("deductible_applied"),
        before.fund_paid + amount("fund"),
        before.assistance_paid + amount("assistance"),
        max(0, before.account_balance - amount("personal_account")),
    )


def _apply_reversal(
    store: HubStore, device_id: str, body: dict, add_item: Callable[[str, dict], None]
) -> str:
    target = body.get("reverses")
    original = store.record_by_tx(device_id, target) if isinstance(target, str) else None
    if original is None or original["kind"] != "settlement":
        add_item(reconcile.REVERSAL_UNKNOWN, {"reverses": target})
        return "differs"
    recomputed = store.recomputation_of(device_id, target)
    result = recomputed[1] if recomputed and recomputed[1] else original["body"]["result"]
    year, visit_type = reconcile.visit_year_and_type(original["body"])
    insured_id = original["body"]["insured_id"]
    current = store.balances(insured_id, year, visit_type)
    store.set_balances(
        insured_id, year, visit_type, reconcile.balances_after_reversal(current, result)
    )
    return "ok"


def _money(result: dict) -> dict:
    return {name: result.get(name) for name in reconcile.COMPARED_FIELDS}


# ---- fleet status and reports -------------------------------------------------------------------


def slot_state(slot: Slot, now: datetime) -> str:
    if slot.revoked_at is not None:
        return "revoked"
    if slot.device_id is not None:
        return "enrolled"
    if now >= datetime.fromisoformat(slot.code_expires_at):
        return "code_expired"
    return "awaiting_enrollment"


def fleet_status(store: HubStore, now: datetime, township: str | None = None) -> list[dict]:
    """One row per device slot, for coordinators: contact, backlog, versions, skew, alarms,
    reconciliation differences."""
    counts = store.record_counts()
    alarms: dict[str, list[str]] = defaultdict(list)
    for alarm in store.alarms():
        alarms[alarm.device_id].append(alarm.code)
    slots = store.slots(township)
    differences = Counter(
        item.device_id
        for item in store.reconciliation_items([s.device_id for s in slots if s.device_id])
        if item.code != reconcile.NEEDS_REVIEW
    )
    rows = []
    for slot in slots:
        beat = slot.heartbeat_doc
        held, beyond_gap = counts.get(slot.device_id or "", (0, 0))
        contact = slot.last_contact_at
        rows.append(
            {
                "slot_id": slot.slot_id,
                "clinic_code": slot.clinic_code,
                "township": slot.township,
                "device_id": slot.device_id,
                "state": slot_state(slot, now),
                "enrolled_at": slot.enrolled_at,
                "revoked_at": slot.revoked_at,
                "last_contact_at": contact,
                "minutes_since_contact": None
                if contact is None
                else int((now - datetime.fromisoformat(contact)).total_seconds() // 60),
                "acked_seq": slot.head_seq,
                "records_held": held,
                "records_beyond_gap": beyond_gap,
                "records_waiting": beat.get("records_waiting"),
                "versions": beat.get("versions", {}),
                "clock_skew_s": slot.clock_skew_s,
                "alarms": alarms.get(slot.device_id or "", []),
                "reconciliation_differences": differences.get(slot.device_id, 0),
            }
        )
    return rows


SETTLEMENT_CSV_COLUMNS = (
    "device_id",
    "seq",
    "tx_id",
    "created_at",
    "insured_id",
    "visit_date",
    "visit_type",
    "catalog_version",
    "policy_version",
    "total",
    "fund",
    "assistance",
    "personal_account",
    "cash",
    "needs_review",
    "county_status",
    "county_fund",
    "county_assistance",
    "county_cash",
)
RECONCILIATION_CSV_COLUMNS = (
    "item_id",
    "device_id",
    "seq",
    "tx_id",
    "code",
    "business_day",
    "field",
    "device",
    "hub",
    "details",
    "created_at",
)


def _csv(columns: tuple[str, ...], rows: Iterable[Mapping]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return out.getvalue()


def _csv_cell(value: object) -> object:
    # Keep spreadsheet formulas from running: a cell starting with =, +, - or @ is quoted.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def settlements_csv(store: HubStore, device_ids: Iterable[str] | None = None) -> str:
    def rows() -> Iterator[dict]:
        for record, status, hub in store.settlements(device_ids):
            body = record["body"]
            result, visit = body.get("result", {}), body.get("visit", {})
            yield {
                "device_id": record["device_id"],
                "seq": record["seq"],
                "tx_id": record["tx_id"],
                "created_at": record["created_at"],
                "insured_id": body.get("insured_id"),
                "visit_date": visit.get("date"),
                "visit_type": visit.get("visit_type"),
                "catalog_version": body.get("catalog_version"),
                "policy_version": body.get("policy_version"),
                **{
                    k: result.get(k)
                    for k in ("total", "fund", "assistance", "personal_account", "cash")
                },
                "needs_review": ";".join(body.get("needs_review", [])),
                "county_status": status or "pending",
                "county_fund": (hub or {}).get("fund"),
                "county_assistance": (hub or {}).get("assistance"),
                "county_cash": (hub or {}).get("cash"),
            }

    return _csv(SETTLEMENT_CSV_COLUMNS, rows())


def reconciliation_csv(store: HubStore, device_ids: Iterable[str] | None = None) -> str:
    def rows() -> Iterator[dict]:
        for item in store.reconciliation_items(device_ids):
            base = {
                "item_id": item.item_id,
                "device_id": item.device_id,
                "seq": item.seq,
                "tx_id": item.tx_id,
                "code": item.code,
                "business_day": item.business_day,
                "created_at": item.created_at,
            }
            fields = item.details.get("fields") or {}
            if not fields:
                yield {**base, "details": _dumps(item.details)}
            for name, sides in fields.items():
                yield {**base, "field": name, "device": sides["device"], "hub": sides["hub"]}

    return _csv(RECONCILIATION_CSV_COLUMNS, rows())
