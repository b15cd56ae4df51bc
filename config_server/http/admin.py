"""Operational endpoints: `/health` and the `/monitor` webhook."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request

from config_server.http.errors import error_body
from config_server.webhooks import WebhookRejected, applications_for, parse_push

blueprint = Blueprint("admin", __name__)
log = logging.getLogger(__name__)


@blueprint.get("/health")
def health():
    """`{"status": "UP"}`, or DOWN (503) with the repository's details when it cannot be served."""
    state = current_app.extensions["config_server"]
    details = state.service.backend.health()
    body = {
        "status": details.get("status", "UP"),
        "details": {
            "repository": details,
            "cache": state.service.cache.stats(),
            "watchers": state.hub.watchers(),
        },
    }
    return jsonify(body), 200 if body["status"] == "UP" else 503


@blueprint.post("/monitor")
def monitor():
    """A push webhook: verify it, fetch the remote now, and wake the watchers of what changed."""
    state = current_app.extensions["config_server"]
    try:
        push = parse_push(request.headers, request.get_data(cache=False), state.settings.webhook_secret)
    except WebhookRejected as exc:
        log.warning("rejected webhook from %s: %s", request.remote_addr, exc)
        response = error_body(401, "Unauthorized", str(exc))
        response.headers["WWW-Authenticate"] = 'Signature realm="monitor"'
        return response
    applications = applications_for(push.paths)
    refreshed = state.detector.refresh_now(None if applications == ["*"] else applications)
    if not refreshed:
        return error_body(503, "Service Unavailable", "the repository could not be refreshed")
    return jsonify(applications)
