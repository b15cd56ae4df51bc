"""`POST /reverts/{version}?label=`: undo a commit on a label with a new `git revert` commit.

Needs the `release` role (or admin; everyone on an open server) and a client whose application and
label globs cover every application the commit changed (a change to a shared `application*` file
needs them all). The JSON body `{"reason": "..."}` is required. Where the server may write
(`backends/revert.py`), the revert commit lands on the label as a fast-forward (pushed for a
remote) and is served like any commit: checked, held back if broken, watchers woken through the
change detector (201). Where it may not, nothing changes and the answer is the exact `git revert`
command to run instead (200, `"reverted": false`). A refused revert (label moved, conflict, merge
commit) is 409/422 with the command. Like every state change it is refused cross-site
(`request_guards.py`) and leaves an audit line with who, what and why.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from config_server import names
from config_server.backends.revert import Operator, RevertDone, Reverter
from config_server.delivery.webhooks import applications_for
from config_server.errors import AccessDenied, InvalidName
from config_server.http import security
from config_server.http.auth import Client
from config_server.http.context import server_state
from config_server.http.pins import RELEASE_ROLE, reason_of, who_acts

blueprint = Blueprint("reverts", __name__)


@blueprint.post("/reverts/<version>")
def revert(version: str) -> tuple[Response, int]:
    """Revert `version` on `?label=` (default label): the new commit (201), or the command to run
    when this server cannot write to its repository (200)."""
    client = security.require_role(RELEASE_ROLE, event="revert")
    state = server_state()
    service = state.service
    label = names.validate_label(request.args.get("label") or service.backend.default_label())
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidName('the body must be a JSON object: {"reason": "..."}')
    reason = reason_of(body)
    if not reason:
        raise InvalidName("a revert needs a reason: say why in the body's `reason`")
    if not _is_commit_id(version):
        raise InvalidName(f"{version!r} is not a commit id (full or abbreviated, lower-case hex)")
    full = service.backend.resolve(version).version  # 404 when the repository has no such commit
    _require_scope(client, full, label)
    reverter = state.reverter or Reverter(None, False)
    if not reverter.can_write:
        command = reverter.command(label, full)
        security.note("revert", label=label, version=full, reason=reason, reverted=False)
        return jsonify(
            {"reverted": False, "label": label, "version": full, "why": reverter.why_not, "command": command}
        ), 200
    done = reverter.revert(label, full, Operator(who_acts(client), client.email), reason)
    security.note("revert", label=label, version=full, commit=done.commit, reason=reason, reverted=True)
    state.detector.trigger()  # served like any new commit: checked, then the watchers woken
    return jsonify(_done_json(done, who_acts(client), reason)), 201


def _done_json(done: RevertDone, by: str, reason: str) -> dict[str, Any]:
    """A published revert as the API answers it."""
    return {
        "reverted": True,
        "label": done.label,
        "version": done.version,
        "commit": done.commit,
        "parent": done.parent,
        "pushed": done.pushed,
        "by": by,
        "reason": reason,
        "message": done.message,
    }


def _is_commit_id(version: str) -> bool:
    """A full or abbreviated hexadecimal commit id (never a branch name or an option)."""
    return 4 <= len(version) <= 64 and all(ch in "0123456789abcdef" for ch in version)


def _require_scope(client: Client, version: str, label: str) -> None:
    """403 unless the client's globs cover the label and every application the commit changed."""
    backend = server_state().service.backend
    parents = backend.parents(version)
    changed = backend.changed_paths(parents[0], version) if parents else None
    for application in applications_for(changed):
        if not client.covers(application, label):
            raise AccessDenied(
                f"client {client.name!r} may not revert {version[:12]} on label {label!r}:"
                f" it changes {'every application' if application == '*' else repr(application)}"
            )
