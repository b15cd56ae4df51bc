"""Pin endpoints: `GET /pins`, `POST /pins/{app}/{profiles}[/{label}]` and `DELETE` the same.

A pin answers every instance of an environment a commit it served before, whatever lands on the
label, until it is unpinned (`safety/pins.py`, kept in the state store by `delivery/pin_sync.py`).
Every action needs the `release` role (or admin; everyone on an open server) and a client whose
application and label globs cover the environment; a state change is refused cross-site like any
other (`request_guards.py`), and leaves an audit line naming who, what and why. The label is the
server's default label when the path names none; `(_)` stands for `/` as in every path.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from config_server.errors import AccessDenied, InvalidName, ResourceNotFound
from config_server.http import security
from config_server.http.auth import ANONYMOUS, Client
from config_server.http.context import server_state
from config_server.names import EnvironmentRequest
from config_server.state import PinRecord

blueprint = Blueprint("pins", __name__)

#: The role every pin action needs (admin implies it).
RELEASE_ROLE = "release"
#: The longest reason kept.
MAX_REASON_CHARS = 512


@blueprint.get("/pins")
def list_pins() -> Response:
    """Every pin the client's globs cover (`?application=` for one application's)."""
    client = security.require_role(RELEASE_ROLE, event="pins")
    application = request.args.get("application") or None
    pins = [
        pin.to_json()
        for pin in server_state().service.pins.records()
        if client.covers(pin.application, pin.label) and application in (None, pin.application)
    ]
    return jsonify({"pins": pins})


@blueprint.post("/pins/<app>/<profiles>")
@blueprint.post("/pins/<app>/<profiles>/<label>")
def pin(app: str, profiles: str, label: str | None = None) -> tuple[Response, int]:
    """Pin the environment to `version` (JSON body `{"version": "...", "reason": "..."}`): a commit
    on the label's history at which the environment is good (422 otherwise). Every instance is
    answered it at once, parked long polls included; a pin replaces the environment's earlier one."""
    client = security.require_role(RELEASE_ROLE, event="pin")
    state = server_state()
    asked, label_name = _environment(client, app, profiles, label)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("version"), str) or not body["version"]:
        raise InvalidName('the body must be a JSON object: {"version": "<commit>", "reason": "..."}')
    reason = reason_of(body)
    if not reason:
        raise InvalidName("a pin needs a reason: say why in the body's `reason`")
    _, version = state.service.pinnable(asked, body["version"].strip())
    record = PinRecord(
        asked.application, asked.profiles_text, label_name, version, reason, who_acts(client), time.time()
    )
    assert state.pins is not None
    state.pins.pin(record)
    security.note(
        "pin",
        application=record.application,
        profiles=record.profiles,
        label=record.label,
        version=version,
        reason=reason,
    )
    return jsonify(record.to_json()), 201


@blueprint.delete("/pins/<app>/<profiles>")
@blueprint.delete("/pins/<app>/<profiles>/<label>")
def unpin(app: str, profiles: str, label: str | None = None) -> Response:
    """Unpin the environment: its label's newest good commit is served again at once (404 when it
    was not pinned). An optional JSON body `{"reason": "..."}` goes to the audit line."""
    client = security.require_role(RELEASE_ROLE, event="unpin")
    state = server_state()
    asked, label_name = _environment(client, app, profiles, label)
    body = request.get_json(silent=True) if request.content_length else None
    reason = reason_of(body) if isinstance(body, dict) else ""
    assert state.pins is not None
    removed = state.pins.unpin((asked.application, asked.profiles_text, label_name))
    if removed is None:
        raise ResourceNotFound(
            f"{asked.application}/{asked.profiles_text} at label {label_name!r} is not pinned"
        )
    security.note(
        "unpin",
        application=removed.application,
        profiles=removed.profiles,
        label=removed.label,
        version=removed.version,
        reason=reason,
    )
    return jsonify({**removed.to_json(), "unpinnedBy": who_acts(client), "unpinReason": reason})


def _environment(
    client: Client, app: str, profiles: str, label: str | None
) -> tuple[EnvironmentRequest, str]:
    """The environment the path names (one application, one label) and its label's name; 403 when
    the client's globs do not cover it."""
    asked = EnvironmentRequest.parse(app, profiles, label)
    if len(asked.applications) != 1 or (asked.labels is not None and len(asked.labels) != 1):
        raise InvalidName("a pin names one application and one label")
    label_name = (
        asked.labels[0] if asked.labels is not None else server_state().service.backend.default_label()
    )
    if not client.covers(asked.application, label_name):
        raise AccessDenied(
            f"client {client.name!r} may not pin {asked.application!r} at label {label_name!r}"
        )
    return asked, label_name


def who_acts(client: Client) -> str:
    """Who acts: the client's name, or on an open server the caller's address."""
    if client is ANONYMOUS:
        return request.remote_addr or "an unknown address"
    return client.name


def reason_of(body: dict[str, Any]) -> str:
    """The body's reason, without control characters, cut to MAX_REASON_CHARS ("" when none)."""
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise InvalidName("reason must be a string")
    return "".join(ch if ch.isprintable() else " " for ch in reason)[:MAX_REASON_CHARS].strip()
