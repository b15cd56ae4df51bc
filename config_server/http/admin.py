"""Operational endpoints: `/health`, the probes `/livez` and `/readyz`, and the `/monitor` webhook.

The probes answer anyone (a kubelet has no token) and show no repository URL or error text; the
rules they apply are `observability/probes.py`'s. They are plain requests, never parked, so the
parked-poll caps leave them a connection (`delivery/parked.py`: the spare below the worker's
connection cap).
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Response, jsonify, request

from config_server.delivery.webhooks import applications_for, parse_push
from config_server.errors import AccessDenied, AuthenticationRequired
from config_server.http import security
from config_server.http.context import server_state
from config_server.http.errors import error_body
from config_server.http.rollout_json import rollouts_health_json
from config_server.observability.probes import ProbeAnswer, ReadinessFacts, liveness, readiness

blueprint = Blueprint("admin", __name__)


@blueprint.get("/health")
def health() -> tuple[Response, int]:
    """`{"status": "UP"}`, or DOWN (503) when the repository cannot be served.

    In cluster mode `"cluster"` says whether Redis is reachable (`UP`) or not (`DEGRADED`: the
    replica still serves from its mirror, so the status stays UP and the answer 200).
    The details (repository, cache, watchers, parked polls, watched environments (hub slots) and
    this worker's limits, cluster) are shown to admins, or to all on an open server. `watchers`
    counts the long polls held by every worker (the `config_server_watchers` gauge, summed as a
    scrape sums it); `workerWatchers` those of the worker that answered, whose pid is `worker`.
    """
    state = server_state()
    details = state.service.backend.health()
    body = {"status": details.get("status", "UP")}
    cluster = state.cluster.health() if state.cluster is not None else None
    if cluster is not None:
        body["cluster"] = cluster["status"]
    client = security.caller()
    if client is not None and client.has_role("admin"):
        own_watchers = state.hub.watchers()
        all_watchers = state.metrics.watchers_in_all_workers()
        body["details"] = {
            "repository": details,
            "cache": state.service.cache.stats(),
            "watchers": own_watchers if all_watchers is None else all_watchers,
            "workerWatchers": own_watchers,
            "parkedPolls": state.parked.parked(),
            "watchedEnvironments": state.hub.slots(),
            "limits": state.limits.as_dict() if state.limits is not None else None,
            "overrides": state.settings.overrides,
            "heldBack": state.service.held_back(),
            "awaitingApproval": state.service.awaiting_approval(),
            "rollouts": rollouts_health_json(state.rollouts),
            "pins": [pin.to_json() for pin in state.service.pins.records()],
            "worker": os.getpid(),
        }
        if cluster is not None:
            body["details"]["cluster"] = cluster
    return jsonify(body), 200 if body["status"] == "UP" else 503


@blueprint.get("/livez")
def livez() -> tuple[Response, int]:
    """Liveness: this worker answers and its event loop turned within the last few seconds."""
    turned_ago = server_state().loop_turned_ago
    return _probe(liveness(os.getpid(), turned_ago() if turned_ago is not None else None))


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: the repository is readable and a remote's last fetch is recent enough; the
    cluster link (with --redis) is reported without failing it."""
    state = server_state()
    backend = state.service.backend
    error = None
    try:
        backend.resolve(None)
    except Exception as exc:  # noqa: BLE001 - any failure to read the repository means not ready
        error = type(exc).__name__
    details = backend.health()
    last_fetch = details.get("lastRefresh")
    facts = ReadinessFacts(
        repository_readable=error is None,
        repository_error=error,
        last_fetch=float(last_fetch) if last_fetch is not None else None,
        remote=bool(getattr(backend, "remote", False)),
        refresh_interval=state.settings.refresh_interval,
        max_intervals=state.settings.ready_refresh_intervals,
        now=time.time(),
        cluster=state.cluster.health()["status"] if state.cluster is not None else None,
    )
    return _probe(readiness(facts))


def _probe(answer: ProbeAnswer) -> tuple[Response, int]:
    response = jsonify(answer.body)
    response.headers["Cache-Control"] = "no-store"
    return response, answer.status


@blueprint.post("/monitor")
def monitor() -> Response:
    """A push webhook: verify it, fetch the remote now, and wake the watchers of what changed."""
    state = server_state()
    security.note("monitor")
    secret = _webhook_secret_needed(state.settings.webhook_secret)
    push = parse_push(request.headers.items(), request.get_data(cache=False), secret)  # or WebhookRejected
    applications = applications_for(push.paths)
    security.note("monitor", sender=push.sender, applications=applications)
    refreshed = state.detector.refresh_now(None if applications == ["*"] else applications)
    if not refreshed:
        return error_body(503, "Service Unavailable", "the repository could not be refreshed")
    return jsonify(applications)


def _webhook_secret_needed(secret: str | None) -> str | None:
    """The secret a delivery must prove, None when a token already proved the caller may monitor.

    A client token with the `monitor` role is enough; otherwise a configured webhook secret must
    sign the delivery; otherwise, on a server with an auth file, the caller is refused.
    """
    client = security.caller()
    if security.auth_enabled() and client is not None and client.has_role("monitor"):
        return None
    if secret:
        return secret
    if security.auth_enabled():
        if client is None:
            raise AuthenticationRequired("POST /monitor needs a token with the monitor role")
        raise AccessDenied(f"client {client.name!r} does not have the 'monitor' role")
    return None
