"""What a running hub app holds, for its views (the device API in `api.py`, the console in
`console.py`): the data directory, the county key, the clock and the background
recomputation (`HubRuntime`, `hub_runtime()`), and each request's own store connection
(`hub_store()`, closed when the request ends).
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from flask import current_app, g

from sync.hub.bootstrap import connect_hub_store
from sync.hub.ports import HubStore
from sync.hub.services.reconciliation import reconcile_pending

log = logging.getLogger(__name__)


class BackgroundReconciler:
    """Recomputes uploads off the request path: every `interval_s`, and soon after a wake."""

    def __init__(self, data_dir: Path, clock: Callable[[], datetime], interval_s: float):
        self.data_dir, self.clock, self.interval_s = data_dir, clock, interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hub-reconciler", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                store = connect_hub_store(self.data_dir)
                try:
                    reconcile_pending(store, self.clock())
                finally:
                    store.close()
            except Exception:  # keep reconciling later; never take the hub down
                log.exception("reconciliation failed")


@dataclass
class HubRuntime:
    data_dir: Path
    county_key: Ed25519PrivateKey
    clock: Callable[[], datetime]
    reconciler: BackgroundReconciler | None = None
    # The county's X25519 encryption key and its signed statement (`docs/service-point.md`).
    seal_key: X25519PrivateKey | None = None
    encryption_key: dict | None = None
    extra: dict = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()

    def wake_reconciler(self) -> None:
        if self.reconciler is not None:
            self.reconciler.wake()


EXTENSION = "clinic_hub"


def hub_runtime() -> HubRuntime:
    return current_app.extensions[EXTENSION]


def hub_store() -> HubStore:
    """The request's own connection, closed when the request ends."""
    if "hub_store" not in g:
        g.hub_store = connect_hub_store(hub_runtime().data_dir)
    return g.hub_store


def close_store(_error: BaseException | None = None) -> None:
    store = g.pop("hub_store", None)
    if store is not None:
        store.close()
