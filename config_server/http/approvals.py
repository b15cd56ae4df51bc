"""Release approval endpoints: `POST /approvals/{version}` (approve a commit) and `GET /approvals`.

Approving needs the `approver` role (or admin) and an auth file: a second pair of eyes means
knowing whose eyes, so an open server refuses (403). The body is optional JSON
`{"reason": "..."}`; `?label=` names the label (default: the default label). The approver may not
be the author of a commit it approves (`safety/approvals.py:Approvals.approve`). Like every state
change it is refused when a browser may have sent it for another site (`request_guards.py`), and
it is in the audit log with who approved what and why.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from config_server import names
from config_server.errors import AccessDenied, InvalidName
from config_server.http import security
from config_server.http.context import server_state
from config_server.safety.approvals import Approver

blueprint = Blueprint("approvals", __name__)


@blueprint.post("/approvals/<version>")
def approve(version: str) -> tuple[Response, int]:
    """Approve `version` on the label: it, and the changes before it, may be served to the
    protected environments; answers the approval recorded (201)."""
    client = security.require_role("approver", event="approval")
    if not security.auth_enabled():
        raise AccessDenied("approvals need an --auth-file: who approves must be known")
    state = server_state()
    label = names.validate_label(request.args.get("label") or state.service.backend.default_label())
    body = request.get_json(silent=True) if request.content_length else None
    reason = _reason(body)
    approvals = state.service.approvals
    if approvals is None:
        raise AccessDenied("this server keeps no approvals")
    approver = Approver(client.name, client.email, client.groups)
    record = approvals.approve(label, version, approver, reason, time.time())
    security.note("approval", label=label, version=record.version, approver=record.approver, reason=reason)
    return jsonify(record.to_json()), 201


@blueprint.get("/approvals")
def approvals_status() -> Response:
    """The approvals known (of one label, `?label=`) and the environments waiting for one."""
    security.require_role("approver", event="approvals")
    state = server_state()
    label = request.args.get("label") or None
    if label is not None:
        label = names.validate_label(label)
    approvals = state.service.approvals
    records = approvals.records(label) if approvals is not None else []
    waiting = [w for w in state.service.awaiting_approval() if label is None or w["label"] == label]
    return jsonify({"approvals": [r.to_json() for r in records[:1000]], "waiting": waiting})


def _reason(body: Any) -> str:
    """The approval's reason from the optional JSON body (`{"reason": "..."}`)."""
    if body is None:
        return ""
    if not isinstance(body, dict):
        raise InvalidName('the body must be a JSON object: {"reason": "..."}')
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise InvalidName("reason must be a string")
    return reason
