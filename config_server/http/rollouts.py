"""Rollout endpoints: `GET /rollouts` (status), `POST /rollouts/{app}/halt` (by hand or
Alertmanager), `POST /rollouts/{app}/resume` and `POST /rollouts/{app}/advance` (an operator's move).

Each needs the `rollout` or `release` role (or admin; everyone on an open server), and shows or
moves only the rollouts whose application and base label the client's globs cover; each action
leaves an audit line (`event` `rollout`, `action`, who, `reason`). A rejection's reason (which a
service's validator may have written with a value in it) is shown only to a client that may read
the application at the base and canary labels (or an admin); others see who rejected, not why.
The status is read with a query string (`?application=orders&label=main`) because
`GET /{app}/{profiles}` is the Environment endpoint: `/rollouts/orders` is the environment of an
application named `rollouts`.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from config_server import names
from config_server.content.rollout_plan import Phase, without_rejection_reason
from config_server.errors import AccessDenied, InvalidName, ResourceNotFound, RolloutMoveRefused
from config_server.http import security
from config_server.http.auth import ANONYMOUS, Client
from config_server.http.context import server_state
from config_server.http.rollout_json import anchor_json, file_error_json, rollout_json
from config_server.observability.currency import CurrentSettings
from config_server.observability.inventory import GONE_AFTER_SECONDS

blueprint = Blueprint("rollouts", __name__)

#: The longest halt reason kept (an Alertmanager summary may be long).
MAX_REASON_CHARS = 512
#: The roles that may see and act on rollouts (admin implies both).
ROLLOUT_ROLES = ("rollout", "release")


@blueprint.get("/rollouts")
def rollouts_status() -> Response:
    """Every rollout (or one application's, `?application=`; one label's, `?label=`) and every
    ignored rollout file."""
    client = security.require_role(ROLLOUT_ROLES, event="rollout")
    state = server_state()
    application = request.args.get("application") or None
    label = request.args.get("label") or None
    if application is not None:
        names.validate_application(application)
    if label is not None:
        label = names.validate_label(label)
    if application is not None:
        _require_scope(client, application, label)
    now = time.time()
    newest_settings = CurrentSettings(state.service).newest_if_current
    found = [
        _for_client(
            client,
            rollout_json(
                active,
                current,
                state.store,
                now,
                now - GONE_AFTER_SECONDS,
                state.service.backend,
                newest_settings,
            ),
        )
        for active, current in state.rollouts.phases(application)
        if (label is None or active.label == label)
        and client.covers(active.rollout.application, active.label)
    ]
    errors = [
        file_error_json(e)
        for e in state.rollouts.errors()
        if (application is None or e.application == application)
        and (label is None or e.label == label)
        and client.covers(e.application, e.label)
    ]
    return jsonify({"rollouts": found, "errors": errors, "labels": list(state.rollouts.labels())})


@blueprint.post("/rollouts/<app>/halt")
def halt(app: str) -> Response:
    """Halt the application's rollout: every cohort instance is answered the base label at once.

    The body is optional JSON `{"reason": "..."}`, or an Alertmanager webhook notification: a
    `firing` one halts (the reason names the alerts), a `resolved` one changes nothing (a halted
    rollout is started again only through its file).
    """
    client, label, base = _authorised_action(app)
    state = server_state()
    body = request.get_json(silent=True) if request.content_length else None
    reason = _reason(body)
    who = _who(client)
    if reason is None:
        return jsonify({"application": app, "halted": False, "message": "a resolved alert halts nothing"})
    record = state.rollouts.halt(app, label, f"{reason} (by {who})"[:MAX_REASON_CHARS])
    if record is None:
        raise ResourceNotFound(f"no rollout of {app!r} at label {base!r}")
    public = without_rejection_reason(record.halt_reason)
    security.note("rollout", action="halt", application=app, label=record.label, halt=public)
    canary = next((a.rollout.canary for a, _ in state.rollouts.phases(app) if a.label == record.label), None)
    return jsonify(
        {
            "application": app,
            "label": record.label,
            "id": record.rollout_id,
            "halted": True,
            "haltedAt": record.halted_at,
            "haltReason": record.halt_reason
            if _may_see_reasons(client, app, record.label, canary)
            else public,
        }
    )


@blueprint.post("/rollouts/<app>/resume")
def resume(app: str) -> Response:
    """Resume the application's halted rollout: its halted step bakes again from now, and the
    cohort is answered the canary again. JSON `{"reason": "..."}` (optional); 409 unless halted."""
    return _move(app, resume=True)


@blueprint.post("/rollouts/<app>/advance")
def advance(app: str) -> Response:
    """Start the application's rollout's next step now (after the last step it is complete).
    JSON `{"reason": "..."}` (optional); 409 unless it is running."""
    return _move(app, resume=False)


def _move(app: str, resume: bool) -> Response:
    """A resume or an advance: checked, recorded in the state store, audited, answered."""
    action = "resume" if resume else "advance"
    client, label, base = _authorised_action(app)
    state = server_state()
    body = request.get_json(silent=True) if request.content_length else None
    if body is not None and not isinstance(body, dict):
        raise InvalidName('the body must be a JSON object: {"reason": "..."}')
    given = (body or {}).get("reason", "")
    if not isinstance(given, str):
        raise InvalidName("reason must be a string")
    reason = _printable(given) or f"{action}d by hand"
    who = _who(client)
    note = f"{action}d by {who}: {reason}"[:MAX_REASON_CHARS]
    moved = state.rollouts.resume(app, label, note) if resume else state.rollouts.advance(app, label, note)
    if moved is None:
        raise ResourceNotFound(f"no rollout of {app!r} at label {base!r}")
    if isinstance(moved, Phase):
        wanted = "halted" if resume else "running"
        raise RolloutMoveRefused(f"the rollout of {app!r} at label {base!r} is {moved.state}, not {wanted}")
    current = next((p for a, p in state.rollouts.phases(app) if a.label == moved.label), None)
    security.note(
        "rollout", action=action, application=app, label=moved.label, rollout=moved.rollout_id, reason=reason
    )
    return jsonify(
        {
            "application": app,
            "label": moved.label,
            "id": moved.rollout_id,
            "action": action,
            "state": current.state if current is not None else None,
            "step": current.percent if current is not None else None,
            "resumedAt": moved.resumed_at,
            "lastMove": anchor_json(moved.anchor),
        }
    )


def _authorised_action(app: str) -> tuple[Client, str | None, str]:
    """The checks every rollout action makes first: the caller's role, the names, and the scope
    of the application at the label (`?label=`, else the default); returns (client, the label
    asked or None, the label it names)."""
    client = security.require_role(ROLLOUT_ROLES, event="rollout")
    names.validate_application(app)
    label = request.args.get("label") or None
    if label is not None:
        label = names.validate_label(label)
    base = label or server_state().service.backend.default_label()
    _require_scope(client, app, base)
    return client, label, base


def _who(client: Client) -> str:
    """Who halts: the client's name, or on an open server (every caller the anonymous client) the
    caller's address (the forwarded one behind `--proxy-hops`)."""
    if client is ANONYMOUS:
        return request.remote_addr or "an unknown address"
    return client.name


def _may_see_reasons(client: Client, application: str, label: str, canary: str | None) -> bool:
    """Whether the client may read the application at the base and canary labels: a rejection's
    reason may quote the canary's settings, so only such a reader (or an admin) is shown it."""
    if client.has_role("admin"):
        return True
    return all(client.may_read(application, (), one) for one in (label, canary or label))


def _for_client(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    """A rollout's status without the rejections' reasons for a client that may not read them."""
    if _may_see_reasons(client, body["application"], body["label"], body["canary"]):
        return body
    body["rejections"] = [{**r, "reason": None} for r in body["rejections"]]
    body["haltReason"] = without_rejection_reason(body["haltReason"])
    return body


def _require_scope(client: Client, application: str, label: str | None) -> None:
    """403 unless the client's application (and label) globs cover the rollout: a `rollout` token
    for `applications: [orders]` neither sees nor halts another application's rollout."""
    if not client.covers(application, label):
        where = f" at label {label!r}" if label is not None else ""
        raise AccessDenied(
            f"client {client.name!r} may not see or halt the rollouts of {application!r}{where}"
        )


def _reason(body: Any) -> str | None:
    """The halt reason of a request body; None for an Alertmanager notification that is resolved."""
    if body is None:
        return "halted by hand"
    if not isinstance(body, dict):
        raise InvalidName('the body must be a JSON object: {"reason": "..."} or an Alertmanager notification')
    if isinstance(body.get("alerts"), list):
        if body.get("status") != "firing":
            return None
        firing = [a for a in body["alerts"] if isinstance(a, dict) and a.get("status", "firing") == "firing"]
        summaries = []
        for alert in firing or body["alerts"]:
            labels = alert.get("labels") if isinstance(alert, dict) else None
            annotations = alert.get("annotations") if isinstance(alert, dict) else None
            name = labels.get("alertname") if isinstance(labels, dict) else None
            summary = annotations.get("summary") if isinstance(annotations, dict) else None
            summaries.append(": ".join(str(p) for p in (name, summary) if p) or "alert")
        return _printable("alert " + "; ".join(summaries))
    reason = body.get("reason", "halted by hand")
    if not isinstance(reason, str):
        raise InvalidName("reason must be a string")
    return _printable(reason) or "halted by hand"


def _printable(text: str) -> str:
    """The text without control characters, cut to MAX_REASON_CHARS."""
    return "".join(ch if ch.isprintable() else " " for ch in text)[:MAX_REASON_CHARS].strip()
