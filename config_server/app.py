"""`create_app(settings)`: the Flask app factory that the CLI, tests and embedders use."""

from __future__ import annotations

import time
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config_server.backends.base import Backend
from config_server.backends.factory import open_backend
from config_server.backends.git import GitBackend
from config_server.backends.revert import Reverter
from config_server.backends.sample import ensure_sample_repository
from config_server.backends.ssh import is_ssh, ssh_options
from config_server.concurrency import call_cooperatively
from config_server.content.crypto import load_keyring
from config_server.delivery.change_detector import ChangeDetector
from config_server.delivery.parked import (
    ParkedPolls,
    connection_cap,
    descriptor_limit,
    total_poll_cap,
)
from config_server.delivery.pin_sync import PinSync
from config_server.delivery.rollout_runner import Rollouts
from config_server.delivery.watch_hub import WatchHub
from config_server.http import (
    admin,
    console,
    diff,
    encryption,
    environment,
    log_context,
    observe,
    openapi,
    request_guards,
    resources,
    security,
)
from config_server.http import approvals as approvals_http
from config_server.http import pins as pins_http
from config_server.http import reverts as reverts_http
from config_server.http import rollouts as rollouts_http
from config_server.http.auth import AuthFile
from config_server.http.context import EXTENSION, ServerState
from config_server.http.encoded_slashes import EncodedSlashMiddleware
from config_server.http.errors import register_error_handlers
from config_server.http.fast_path import FastEnvironmentPath
from config_server.http.hosts import HostAllowList
from config_server.observability.audit import AuditLog
from config_server.observability.currency import CurrentSettings
from config_server.observability.history import ChangedIn
from config_server.observability.inventory import (
    GONE_AFTER_SECONDS,
    HISTORY_SECONDS,
    MAX_SCAN_ROWS,
    Inventory,
)
from config_server.observability.metrics import (
    HeldBackCollector,
    InstancesCollector,
    Limits,
    LimitsCollector,
    Metrics,
    MetricsMiddleware,
    PinnedCollector,
    RolloutsCollector,
)
from config_server.safety.approvals import Approvals
from config_server.safety.config_service import ConfigService
from config_server.settings import Settings
from config_server.state import open_durable_copy, open_state_store

#: Largest request body accepted (webhooks, encrypt): anything bigger is a 413.
MAX_BODY_BYTES = 1024 * 1024
#: Remembered verdicts (broken commits, held-back answers) under `--data-dir`, shared by workers.
VERDICTS_FILE = "verdicts.sqlite3"


def worker_limits(settings: Settings) -> Limits:
    """The connection and parked-poll caps of this worker process (`parked.py`)."""
    descriptors = descriptor_limit()
    connections = connection_cap(settings.worker_connections, descriptors)
    return Limits(
        descriptors,
        connections,
        total_poll_cap(connections),
        settings.polls_per_address,
        settings.slots_per_caller,
    )


def open_reverter(settings: Settings, backend: Backend, detector: ChangeDetector) -> Reverter:
    """What reverts commits for `POST /reverts`: a local git repository is written unless
    `--allow-revert false`; a remote only with `--push-url` (its SSH settings apply to an SSH push
    URL), fetching before and after through the change detector, which wakes the watchers."""
    if not isinstance(backend, GitBackend):
        return Reverter(None, False, why_not="the repository is a plain folder, not a git repository")
    remote = backend.remote
    if not settings.allow_revert:
        return Reverter(None, remote, why_not="reverts are turned off on this server (--allow-revert false)")
    if remote and not settings.push_url:
        return Reverter(None, True, why_not="this server serves a remote repository and has no --push-url")
    push_url = settings.push_url if remote else None
    git_env = ssh_options(settings).git_environment() if push_url and is_ssh(push_url) else {}
    return Reverter(
        backend.repository_path(),
        remote,
        push_url,
        git_env,
        refresh=lambda _max_age: detector.refresh_now(),
    )


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> Flask:
    """Build the app for `settings` (or defaults); `backend` may be given to embed another source.

    The app starts a change detector (watchdog, remote refresh, safety poll); call
    `app.extensions[EXTENSION].close()` to stop it when embedding or testing.
    """
    settings = (settings or Settings()).validate()
    keyring = load_keyring(settings.encrypt_key, settings.encrypt_key_file, settings.encrypt_salt)
    auth = AuthFile(settings.auth_file) if settings.auth_file else None
    if backend is None:
        spec = settings.repo or str(ensure_sample_repository(settings.data_dir))
        backend = open_backend(spec, settings.cache_dir, settings.default_label, ssh_options(settings))
    service = ConfigService(
        backend,
        settings.search_paths,
        settings.cache_size,
        keyring,
        settings.overrides,
        verdicts_path=Path(settings.data_dir) / VERDICTS_FILE,
        unknown_applications=settings.unknown_applications,
        suggest_closest=auth is None,
    )
    hub = WatchHub(service)
    metrics = Metrics()
    store = open_state_store(settings.data_dir, settings.redis)
    inventory = Inventory(
        store, enabled=settings.record_instances, max_ids_per_address=settings.instance_ids_per_address
    ).start()
    metrics.add_collector(
        InstancesCollector(
            # through gevent's thread pool: a scrape waiting on SQLite's lock holds up no request
            lambda: call_cooperatively(
                store, store.instances, None, None, None, time.time() - GONE_AFTER_SECONDS, MAX_SCAN_ROWS
            ),
            service.names.application_label,
            lambda: call_cooperatively(
                store, store.served_versions, time.time() - HISTORY_SECONDS, MAX_SCAN_ROWS
            ),
            lambda: CurrentSettings(service).newest_if_current,
        )
    )
    metrics.add_collector(HeldBackCollector(service.held_back_environments))
    durable = open_durable_copy(settings.data_dir, settings.redis)
    approvals = Approvals(backend, store, durable)
    approvals.on_change.append(lambda: hub.check(moved_only=False))
    service.approvals = approvals.start()
    rollouts = Rollouts(backend, store, hub.reroute, durable=durable).start()
    metrics.add_collector(RolloutsCollector(rollouts.progress))
    rollouts.pinned = service.is_pinned

    def pins_moved(applications: set[str]) -> None:
        """Answer the long polls a pin moved; rollout cohorts of those applications decide again."""
        hub.check(applications)
        for application in applications:
            hub.reroute(application)

    pins = PinSync(store, service.pins, pins_moved, durable=durable).start()
    metrics.add_collector(
        PinnedCollector(
            lambda: [
                (*service.names.environment_labels(pin.application, pin.profiles), pin.label)
                for pin in service.pins.records()
            ]
        )
    )
    hub.on_change = metrics.change_answered
    if auth is not None:  # a reload re-checks every parked poll; each check looks for a reload first
        auth.on_reload.append(hub.recheck)
        hub.before_check = auth.clients
    service.on_broken = metrics.count_validation_failure
    detector = ChangeDetector(
        backend, hub, settings.refresh_interval, settings.poll_interval, use_watchdog=settings.watch
    )
    detector.on_fetch = metrics.git_fetched
    detector.start()
    cluster = None
    if settings.redis:
        from config_server.delivery.cluster import ClusterLink, replica_id

        metrics.enable_cluster()
        cluster = ClusterLink(settings.redis, backend, detector, replica_id(settings.port), metrics).start()

    limits = worker_limits(settings)
    parked = ParkedPolls(limits.polls_per_address, limits.polls, limits.slots_per_caller)
    parked.on_refused = metrics.polls_refused.inc
    metrics.add_collector(LimitsCollector(limits))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = ServerState(
        settings,
        service,
        hub,
        detector,
        auth,
        AuditLog(settings.audit_log),
        store,
        inventory,
        metrics,
        rollouts,
        cluster,
        parked,
        limits,
        ChangedIn(service),
        pins=pins,
        reverter=open_reverter(settings, backend, detector),
    )
    app.extensions["config_held_back"] = service.held_back_for  # the console's held-back section
    hosts = HostAllowList.for_server(settings.allowed_hosts, settings.host)
    request_guards.install(app, hosts)  # before identification: a refused request names no client
    security.install(app, authenticate=auth is not None, audit=bool(settings.audit_log))
    if settings.log_format == "json":
        log_context.install(app)
    for module in (
        admin,
        encryption,
        openapi,
        observe,
        diff,
        console,
        rollouts_http,
        pins_http,
        approvals_http,
        reverts_http,
        environment,
        resources,
    ):
        app.register_blueprint(module.blueprint)
    register_error_handlers(app)
    audit = app.extensions[EXTENSION].audit
    app.wsgi_app = FastEnvironmentPath(  # type: ignore[method-assign]
        app, service, app.wsgi_app, auth, audit, inventory, rollouts, hub, hosts, parked
    )
    fixed_paths = [rule.rule for rule in app.url_map.iter_rules() if not rule.arguments]
    app.wsgi_app = MetricsMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, metrics, fixed_paths, lambda: (service.cache.hits, service.cache.misses)
    )
    app.wsgi_app = EncodedSlashMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    if settings.proxy_hops:
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    return app
