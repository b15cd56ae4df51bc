"""The web console (`/console/`): server-rendered pages over the repository, its history and the inventory.

Protected like the rest: with an auth file every console request needs the `admin` role, presented
as a token (`Authorization: Bearer`, `X-Config-Token`) or, from a browser, as the password of HTTP
Basic (the browser asks once and re-sends it); no cookie, no session state on the server.
Times read "3 min ago" (computed when the page or fragment is rendered, so the instance list's
refresh keeps them fresh), with the ISO time in the `<time>` element's `datetime` and `title`.
A page refreshes itself when a new version lands, through the watch hub's long poll
(`/console/app/<app>/wait`), and while some instance still catches up with the newest version.

The page's instance list refreshes from `/console/app/<app>/instances`, a fragment holding only
the instances and rejections (one bounded store read, no history, no diff).

Held-back environments come from `app.extensions["config_held_back"]`, a callable
`(application or None) -> list of {"application", "profiles", "label", "commit", "served", "error"}`
that change safety provides; None asks for every application at once (the index's one query).
What each held commit would change, and a history row's diff, come from `console_effect.py`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from config_server import names
from config_server.backends.base import Revision
from config_server.backends.revert import Reverter
from config_server.errors import ConfigServerError
from config_server.http import security
from config_server.http.auth import ANONYMOUS
from config_server.http.console_effect import commit_effect, held_back_effects, shown_value
from config_server.http.context import server_state
from config_server.http.rollout_json import file_error_json, rollout_json
from config_server.names import EnvironmentRequest
from config_server.observability import history, relative_time
from config_server.observability.currency import CurrentSettings
from config_server.observability.inventory import GONE_AFTER_SECONDS, instance_json, iso, status_of, summarize

if TYPE_CHECKING:
    pass

blueprint = Blueprint("console", __name__, url_prefix="/console")

#: The longest search the index applies (longer is cut: no application name is longer).
MAX_QUERY_CHARS = names.MAX_NAME_LENGTH

#: The longest the page's own long poll is held.
CONSOLE_WAIT_SECONDS = 50.0


def no_held_back(application: str | None = None) -> list[dict[str, Any]]:
    """The default held-back lookup: nothing is held back (until change safety provides one)."""
    return []


@blueprint.app_template_filter("ago")
def _ago(moment: str) -> str:
    """A template filter: the ISO time `moment` as "3 min ago" at the time of rendering."""
    return relative_time.ago_iso(moment, time.time())


blueprint.add_app_template_filter(shown_value, "setting")


@blueprint.before_request
def _admin_only() -> None:
    security.require_role("admin", event="console")


#: What the header says on a server without an auth file, where every caller is anonymous.
OPEN_SERVER_SIGNED_IN = "anonymous (open server)"


@blueprint.context_processor
def _signed_in() -> dict[str, str]:
    """Every console page's header names who is signed in: the client of the credentials the
    browser sends, or OPEN_SERVER_SIGNED_IN."""
    client = security.caller()
    if client is None or client is ANONYMOUS:
        return {"signed_in": OPEN_SERVER_SIGNED_IN}
    return {"signed_in": client.name}


def _held_back(application: str | None) -> list[dict[str, Any]]:
    lookup = current_app.extensions.get("config_held_back", no_held_back)
    return list(lookup(application))


def _held_back_by_application() -> dict[str, list[dict[str, Any]]]:
    """Every held-back environment, grouped by application: one lookup for the whole index."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in _held_back(None):
        grouped.setdefault(str(row.get("application", "")), []).append(row)
    return grouped


@blueprint.get("/")
def applications() -> str:
    """Every application of the default label: profiles, version per label, live instances, held back;
    callers of an application no file names listed apart, as "unknown application"; with `?q=`,
    those whose name holds it (any case): the search box's answer without JavaScript."""
    query = (request.args.get("q") or "").strip()[:MAX_QUERY_CHARS]
    state = server_state()
    service = state.service
    version, apps = history.list_applications(service)
    default_label = service.backend.default_label()
    now = time.time()
    live: dict[str, list[Any]] = {}
    for record in state.inventory.instances():
        if now - record.last_seen <= GONE_AFTER_SECONDS:
            live.setdefault(record.application, []).append(record)
    held_back = _held_back_by_application()
    rows = []
    phases: dict[str, list[tuple[Any, Any]]] = {}
    for active, current in state.rollouts.phases():
        phases.setdefault(active.rollout.application, []).append((active, current))
    unknown = [
        {"name": name, "instances": len(mine)}
        for name, mine in sorted(live.items())
        if not all(part in apps for part in name.split(","))
    ]
    for name in sorted(set(apps) | {name for name in live if all(p in apps for p in name.split(","))}):
        if query.casefold() not in name.casefold():
            continue
        mine = live.get(name, [])
        labels = sorted({default_label} | {r.label for r in mine})
        rows.append(
            {
                "name": name,
                "profiles": apps.get(name, []),
                "labels": [(label, _version_of(label)) for label in labels],
                "instances": len(mine),
                "held_back": held_back.get(name, []),
                "rollouts": [
                    (active.label, current.state, current.percent) for active, current in phases.get(name, [])
                ],
            }
        )
    return render_template(
        "console/index.html",
        rows=rows,
        unknown=unknown,
        version=version,
        default_label=default_label,
        query=query,
    )


def _version_of(label: str) -> str | None:
    try:
        return server_state().service.backend.resolve(label).version
    except ConfigServerError:
        return None


@blueprint.get("/app/<app>")
def application(app: str) -> str:
    """One application: instances and their versions, rejections, held back (with what each held
    commit would change), history (each row links to its diff) and a diff form."""
    state = server_state()
    service = state.service
    now = time.time()
    app = names.validate_application(app)
    profiles = ",".join(names.validate_profiles(request.args.get("profiles") or "default"))
    raw_label = request.args.get("label") or None
    label = names.validate_label(raw_label) if raw_label else None
    revision = service.backend.resolve(label)
    error = etag = None
    try:
        etag = service.environment(EnvironmentRequest.parse(app, profiles, raw_label))[1].etag
    except ConfigServerError as exc:
        error = str(exc)
    listed = history.changes(service, app, profiles, label)
    commits = [change.commit for change in listed]
    newest = commits[0].version if commits else revision.version
    to = _version_arg("to") or newest
    frm = _version_arg("from") or (commits[1].version if len(commits) > 1 else to)
    diff, diff_error = [], None
    try:
        diff = history.diff_settings(
            history.settings_at(service, app, profiles, frm), history.settings_at(service, app, profiles, to)
        )
    except ConfigServerError as exc:
        diff_error = str(exc)
    _, apps = history.list_applications(service, label)
    instances = _instances_context(app, revision)
    newest_settings = CurrentSettings(service).newest_if_current
    rollouts = [
        rollout_json(
            active, current, state.store, now, now - GONE_AFTER_SECONDS, service.backend, newest_settings
        )
        for active, current in state.rollouts.phases(app)
    ]
    for shown in rollouts:  # an operator's last resume or advance, with its time for `when`
        if shown["lastMove"] is not None:
            shown["lastMove"]["at_iso"] = iso(shown["lastMove"]["at"])
    labels = [service.backend.default_label(), revision.label]
    labels += [i["label"] for i in instances["instances"]]
    labels += [label for r in rollouts for label in (r["label"], r["canary"])]
    reverter = state.reverter or Reverter(None, False)
    in_view = [(i["version"], f"run by {i['id']}") for i in instances["instances"] if i["version"]]
    in_view += [(r["canaryVersion"], f"canary {r['canary']}") for r in rollouts if r["canaryVersion"]]
    held_back = _held_back(app)
    return render_template(
        "console/application.html",
        app=app,
        profiles=profiles,
        all_profiles=apps.get(app, []),
        label=raw_label or "",
        revision=revision,
        etag=etag or "",
        error=error,
        commits=[
            {
                "version": c.commit.version,
                "author": c.commit.author,
                "time": iso(c.commit.time),
                "message": c.commit.message,
                "held_back": c.held_back,
                "revert_command": reverter.command(revision.label, c.commit.version),
            }
            for c in listed
        ],
        revert_label=revision.label,
        revert_why=reverter.why_not,
        changed_in=history.changed_in(listed),
        frm=frm,
        to=to,
        choices=history.diff_choices(commits, _heads(labels), in_view, [frm, to]),
        diff=diff,
        diff_error=diff_error,
        pins=[
            {**pin.to_json(), "at_iso": iso(pin.at)}
            for pin in service.pins.records()
            if pin.application == app
        ],
        held_back=held_back,
        held_effects=held_back_effects(app, held_back),
        **instances,
        rollouts=rollouts,
        rollout_errors=[file_error_json(e) for e in state.rollouts.errors() if e.application == app],
    )


@blueprint.get("/app/<app>/change/<version>")
def change(app: str, version: str) -> str:
    """A history row's diff: what commit `version` did to the application's settings (against
    its first parent), key by key, with the file and line of each new value and its verdict."""
    app = names.validate_application(app)
    raw_label = request.args.get("label") or None
    label = names.validate_label(raw_label) if raw_label else None
    profiles = ",".join(names.validate_profiles(request.args.get("profiles") or "default"))
    backend = server_state().service.backend
    commit = backend.resolve(names.validate_label(version))
    view = commit_effect(app, commit.version, label or backend.default_label())
    return render_template(
        "console/change.html", app=app, profiles=profiles, label=raw_label or "", commit=commit, view=view
    )


@blueprint.get("/app/<app>/instances")
def instances(app: str) -> str:
    """The page's `#instances` and `#rejections` sections alone: what its refresh re-reads."""
    app = names.validate_application(app)
    raw_label = request.args.get("label") or None
    label = names.validate_label(raw_label) if raw_label else None
    revision = server_state().service.backend.resolve(label)
    return render_template(
        "console/_instances.html", app=app, revision=revision, **_instances_context(app, revision)
    )


def _instances_context(app: str, revision: Revision) -> dict[str, Any]:
    """The template values of the instances part: records, summary, and whether one catches up."""
    now = time.time()
    records = server_state().inventory.instances(app)
    is_current = CurrentSettings(server_state().service)
    catching_up = any(
        status_of(r, now) == "up" and r.label == revision.label and is_current(r) is False for r in records
    )
    return {
        "environments": summarize(records, now, is_current),
        "instances": [instance_json(r, now, is_current) for r in records],
        "catching_up": catching_up,
    }


#: The most labels whose heads the diff form offers (each one resolution).
MAX_HEADS = 16


def _heads(labels: list[str]) -> list[tuple[str, str]]:
    """(label, version) of each distinct label, at most `MAX_HEADS`; one that does not resolve is left out."""
    heads = []
    for label in list(dict.fromkeys(label for label in labels if label))[:MAX_HEADS]:
        version = _version_of(label)
        if version is not None:
            heads.append((label, version))
    return heads


def _version_arg(name: str) -> str | None:
    value = request.args.get(name) or None
    return names.validate_label(value) if value else None


@blueprint.get("/app/<app>/wait")
def wait(app: str) -> Response:
    """Hold until the environment's ETag is no longer `etag` (changed: true) or the wait ends."""
    profiles = request.args.get("profiles") or "default"
    label = request.args.get("label") or None
    names.validate_application(app)
    names.validate_profiles(profiles)
    if label is not None:
        names.validate_label(label)
    etag = request.args.get("etag", "")
    changed = server_state().hub.wait_for_change(
        EnvironmentRequest.parse(app, profiles, label), {etag}, CONSOLE_WAIT_SECONDS
    )
    return jsonify({"changed": changed is not None, "etag": changed.etag if changed is not None else etag})
