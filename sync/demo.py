"""The demo county's hub, for `make demo`, trainers and tests: one call sets up a hub with
the demo policy, catalog and roster published (signed, at the versions the demo device
already carries, dated as of the same day: `edge.demo`), another provisions a slot and
enrolls a device into it.
"""

from datetime import datetime, timedelta
from pathlib import Path

from edge import demo as edge_demo
from edge.adapters.identity import DeviceIdentity
from edge.adapters.sqlite_store import SqliteDeviceStore
from edge.clock import Clock
from edge.domain.versions import version_order
from sync import agent
from sync.hub import console_auth
from sync.hub.adapters.county_key import COUNTY_KEY_FILE, load_county_key
from sync.hub.bootstrap import init_hub, open_hub_store
from sync.hub.server import RunningHub, serve_in_background
from sync.hub.services import county, publishing

DEMO_COUNTY = "示范县 Demo County"
DEMO_CLINIC = "320115-001"
DEMO_TOWNSHIP = "秣陵街道"
DEMO_VALIDITY = timedelta(days=365)
# Console sign-ins of the demo county (published demo-only passwords, like the demo PINs).
DEMO_CONSOLE_USERS = [
    ("county-admin", "demo-admin-2026", "admin", None),
    ("molin-coord", "demo-coord-2026", "coordinator", DEMO_TOWNSHIP),
]


def install_demo_county(hub_dir: Path, now: datetime) -> dict:
    """Make the hub (if there is none) and publish whatever demo version it lacks."""
    hub_dir = Path(hub_dir)
    if not (hub_dir / COUNTY_KEY_FILE).exists():  # every hub has its key, on either store
        init_hub(hub_dir, DEMO_COUNTY, now)
    store = open_hub_store(hub_dir)
    published = []
    try:
        key = load_county_key(hub_dir)
        for username, password, role, township in DEMO_CONSOLE_USERS:
            if store.console_user(username) is None:
                console_auth.add_user(store, username, password, role, township, now)
        expires_at = now + DEMO_VALIDITY
        policy, roster = edge_demo.policy_document(), edge_demo.roster_document(now.date())
        documents: dict[str, tuple[str, dict]] = {
            "policy": (policy["version"], {"document": policy}),
            "catalog": (edge_demo.DEMO_CATALOG_VERSION,
                        {"items": edge_demo.catalog_items(now.date())}),
            "roster": (roster["version"], {"document": roster}),
        }  # fmt: skip
        for kind, (version, content) in documents.items():
            # A hub made by an older demo publishes the newer version as an update: the
            # devices enrolled before it move to it at their next sync.
            latest = store.latest_publication(kind)
            if latest is not None and version_order(latest.version) >= version_order(version):
                continue
            publishing.publish(
                store, key, kind=kind, version=version if kind == "catalog" else None,
                expires_at=expires_at, now=now, **content,
            )  # fmt: skip
            published.append(kind)
        return {**county.county_of(store), "published": published}
    finally:
        store.close()


def start_demo_hub(
    hub_dir: Path,
    clock: Clock,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    reconcile_interval_s: float | None = 10.0,
) -> RunningHub:
    """The demo county's hub serving in a background thread (`.url`, `.stop()`)."""
    install_demo_county(hub_dir, clock())
    return serve_in_background(
        hub_dir,
        host=host,
        port=port,
        config={"RECONCILE_INTERVAL_S": reconcile_interval_s, "CLOCK": clock},
    )


def provision_and_enroll(
    store: SqliteDeviceStore,
    identity: DeviceIdentity,
    data_dir: Path,
    *,
    hub_dir: Path,
    hub_url: str,
    now: datetime,
    clinic_code: str = DEMO_CLINIC,
    township: str = DEMO_TOWNSHIP,
    hub_certificate: str | None = None,
) -> dict:
    """Provision a slot at the hub in `hub_dir` and enroll this device into it over HTTP;
    returns the clinic details (`sync.agent.enroll`). A device already enrolled is left
    as it is and its details returned."""
    status = agent.sync_status(store)
    if status["enrolled"]:
        return {
            key: status[key]
            for key in (
                "device_id",
                "clinic_code",
                "township",
                "county_name",
                "county_key_fingerprint",
                "hub_url",
                "enrolled_at",
                "hub_certificate_fingerprint",
                "plain_http_lab",
            )
        }
    hub_store = open_hub_store(hub_dir)
    try:
        provisioned = county.provision(
            hub_store, clinic_code=clinic_code, township=township, now=now
        )
    finally:
        hub_store.close()
    return agent.enroll(
        store, identity, data_dir, hub_url, provisioned.code, now, hub_certificate=hub_certificate
    )
