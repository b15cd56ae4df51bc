"""Operational endpoints: `/health`."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

blueprint = Blueprint("admin", __name__)


@blueprint.get("/health")
def health():
    """`{"status": "UP"}`, or DOWN (503) with the repository's details when it cannot be served."""
    service = current_app.extensions["config_service"]
    details = service.backend.health()
    body = {
        "status": details.get("status", "UP"),
        "details": {"repository": details, "cache": service.cache.stats()},
    }
    return jsonify(body), 200 if body["status"] == "UP" else 503
