"""The typed context every HTTP handler reads: what one app instance owns (`ServerState`).

Blueprints and the fast path ask `server_state()` (inside a Flask request) or `state_of(app)` for
it, instead of reaching into `current_app.extensions` untyped; `app.create_app` builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import Flask, current_app

from config_server.backends.revert import Reverter
from config_server.delivery.change_detector import ChangeDetector
from config_server.delivery.parked import ParkedPolls
from config_server.delivery.pin_sync import PinSync
from config_server.delivery.rollout_runner import Rollouts
from config_server.delivery.watch_hub import WatchHub
from config_server.http.auth import AuthFile
from config_server.observability.audit import AuditLog
from config_server.observability.history import ChangedIn
from config_server.observability.inventory import Inventory
from config_server.observability.metrics import Limits, Metrics
from config_server.safety.config_service import ConfigService
from config_server.settings import Settings
from config_server.state import StateStore

if TYPE_CHECKING:
    from config_server.delivery.cluster import ClusterLink

#: The key of the app's `ServerState` in `Flask.extensions`.
EXTENSION = "config_server"


@dataclass
class ServerState:
    """What one app instance owns: service, long-poll hub, change detector, clients and audit log."""

    settings: Settings
    service: ConfigService
    hub: WatchHub
    detector: ChangeDetector
    auth: AuthFile | None
    audit: AuditLog
    store: StateStore
    inventory: Inventory
    metrics: Metrics
    rollouts: Rollouts
    cluster: ClusterLink | None = None  # cluster mode (--redis) only
    #: Long polls parked now, per client address, and the caps (`parked.py`).
    parked: ParkedPolls = field(default_factory=lambda: ParkedPolls(0))
    limits: Limits | None = None
    #: The commit that last changed each environment, per label head (`/instances`' `changedIn`).
    changed_in: ChangedIn | None = None
    #: Seconds since this worker's event loop last turned, as its heartbeat saw it (`/livez`); set
    #: by the gevent worker once the app is loaded, None elsewhere (no heartbeat there).
    loop_turned_ago: Callable[[], float] | None = None
    #: Pins and unpins through the state store, and keeps this worker's pins current (`pin_sync.py`).
    pins: PinSync | None = None
    #: Reverts a commit on a label, or says why this server may not (`backends/revert.py`).
    reverter: Reverter | None = None

    def close(self) -> None:
        """Release long-poll waiters, stop the detector's threads and the backend's git processes."""
        self.hub.close()
        if self.cluster is not None:
            self.cluster.stop()
        self.detector.stop()
        self.service.backend.close()
        self.service.verdicts.close()
        self.audit.close()
        self.inventory.close()
        self.rollouts.close()
        if self.pins is not None:
            self.pins.close()
        if self.service.approvals is not None:
            self.service.approvals.close()
        self.store.close()


def state_of(app: Flask) -> ServerState:
    """The `ServerState` of an app built by `create_app`."""
    state: ServerState = app.extensions[EXTENSION]
    return state


def server_state() -> ServerState:
    """The `ServerState` of the app handling the current request."""
    return state_of(current_app)
