"""`GET /diff?from=&to=[&path=]`: the effect of a change before it is merged, for the console.

The same code and the same JSON as `config-server diff --format json` (`change_effect`), plus the
live instances of each environment from the inventory. The verdict is the server's own: its key
decrypts `{cipher}` values, so one that does not decrypt is held back, as it would be when served.

Needs the `read` role. An admin (anybody on an open server) sees every environment; any other
client sees only the environments it may read at both labels (`Client.may_read`: its
applications, profiles and labels globs), and the counts count only those. `from` and `to` are
labels as the Environment endpoint takes them (a branch, tag or commit id; `(_)` for `/`): a
missing or malformed one is 400, one that does not resolve 404, never a 500. `path` counts only
the changed files under that repository path.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from config_server import names
from config_server.errors import InvalidName
from config_server.http import security
from config_server.http.auth import ANONYMOUS
from config_server.http.context import server_state
from config_server.http.observe import may_see
from config_server.observability.change_effect import change_effect, live_instances, with_instances
from config_server.observability.inventory import status_of
from config_server.safety.config_service import ConfigService
from config_server.safety.release_gates import Gate, approval_gate, broken_gate

blueprint = Blueprint("diff", __name__)


def _label_arg(name: str) -> str:
    value = request.args.get(name) or ""
    if not value:
        raise InvalidName(f"{name} is required: a branch, tag or commit id")
    return names.validate_label(value)


def release_gates(service: ConfigService) -> list[Gate]:
    """The gates a change goes through here, as the server serves it: change safety with the
    server's own key, and the repository's approval policy with the approvals given so far.
    `GET /diff` and the console's "what would change" views ask the same ones."""

    def approved(label: str, version: str) -> bool:
        return service.approvals is not None and service.approvals.covers(label, version)

    return [broken_gate(service.keyring), approval_gate(service.backend.read, approved)]


@blueprint.get("/diff")
def diff() -> Response:
    """Per environment that changes between `from` and `to`: the key changes, the file and line
    of each new value, whether `to` would be held back and why, and its live instances."""
    base, head = _label_arg("from"), _label_arg("to")
    raw_path = request.args.get("path") or None
    path = names.validate_path(raw_path) if raw_path else None
    client = security.require_role("read", event="diff")
    security.note("diff", label=f"{base}..{head}")
    state = server_state()
    service = state.service
    scoped = client is not ANONYMOUS and not client.has_role("admin")

    def visible(application: str, profiles: tuple[str, ...]) -> bool:
        return all(client.may_read(application, profiles, label) for label in (base, head))

    effect = change_effect(service, base, head, path, release_gates(service), visible if scoped else None)
    now = time.time()
    live = [
        (record.application, record.profiles, record.label)
        for record in state.inventory.instances()
        if status_of(record, now) != "gone" and (not scoped or may_see(client, record))
    ]
    with_instances(effect, live_instances(live))
    return jsonify(effect.to_json())
