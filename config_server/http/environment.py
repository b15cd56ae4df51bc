"""Environment JSON (`/{app}/{profiles}[/{label}]`) and the rendered formats (`/{app}-{profiles}.yml`)."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

from flask import Blueprint, Response, request

from config_server import names
from config_server.backends.base import Revision
from config_server.content import render
from config_server.content.environment_answer import BASE_ROUTE, Answer, Route, environment_answer
from config_server.delivery.watch_hub import MAX_WAIT_SECONDS, REROUTED, REVOKED
from config_server.errors import (
    BrokenEnvironment,
    ConfigServerError,
    InvalidConfigFile,
    InvalidName,
    ResourceNotFound,
)
from config_server.http import security
from config_server.http.auth import ANONYMOUS
from config_server.http.context import server_state
from config_server.http.environ_keys import ANSWERED, DIRECT_ANSWER
from config_server.http.resources import serve_resource
from config_server.names import RENDERED_DOCUMENT
from config_server.observability.inventory import ClientHeaders, parse_client_headers
from config_server.safety.config_service import ConfigService
from config_server.safety.environment_cache import ResolvedEnvironment

blueprint = Blueprint("environment", __name__)
_FORMATS = {
    "yml": (render.to_yaml, "text/plain; charset=utf-8"),
    "yaml": (render.to_yaml, "text/plain; charset=utf-8"),
    "properties": (render.to_properties, "text/plain; charset=utf-8"),
    "json": (render.to_json, "application/json"),
}


def _service() -> ConfigService:
    service: ConfigService = server_state().service
    return service


@blueprint.get("/<name>")
def rendered_default_label(name: str) -> Response:
    """`/{app}-{profiles}.{ext}` at the default label."""
    return _rendered(None, name)


@blueprint.get("/<first>/<second>")
def environment_or_rendered(first: str, second: str) -> Response:
    """`/{app}/{profiles}`, or `/{label}/{app}-{profiles}.{ext}` when the second part has an extension."""
    if RENDERED_DOCUMENT.fullmatch(second):
        return _rendered(first, second)
    return environment(first, second, None)


@blueprint.get("/<app>/<profiles>/<label>")
def environment_with_label(app: str, profiles: str, label: str) -> Response:
    """`/{app}/{profiles}/{label}`, or a plain-text file at the default label with `?useDefaultLabel`."""
    if "useDefaultLabel" in request.args:
        return serve_resource(app, profiles, None, label)
    return environment(app, profiles, label)


def environment(app: str, profiles: str, label: str | None) -> Response:
    """The Environment JSON with a content ETag; `If-None-Match` with that ETag answers 304.

    With `?wait=SECONDS` as well, the request is held until the ETag moves (200 with the new
    Environment) or the wait (at most 60 s) ends (304): the long-poll watch.
    """
    wait = _wait_seconds()
    security.require_read(app, profiles, label, event="watch" if wait else "read")
    reporter = parse_client_headers(request.environ)  # 400 naming a malformed report header
    known = request.if_none_match
    state = server_state()
    hub = state.hub
    since = hub.reroutes(app)
    route = _route(app, profiles, label, reporter)
    revision: Revision | None = None
    try:
        try:
            revision, resolved = _service().environment(app, profiles, _source(route, label))
        except ConfigServerError:
            if route.source is None:
                raise
            route = BASE_ROUTE  # a canary label that is gone, or broken with no good version: the base
            revision, resolved = _service().environment(app, profiles, label)
        security.note("watch" if wait else "read", version=revision.version)
    except (BrokenEnvironment, InvalidConfigFile):
        if not (wait and known):
            raise
        resolved = None  # a watcher waits through a broken commit for the next good one
    headers = _service().answer_headers(app, revision) if revision is not None else ()
    extra = headers + route.headers
    _record(reporter, app, profiles, label, resolved)
    _rollout_report(app, label, route, reporter, resolved)
    if resolved is not None and not known.contains(resolved.etag):
        return _response(environment_answer(resolved, label, extra_headers=extra))
    if wait and known:
        # counted as one of its address's parked polls and its caller's watched environments:
        # 429 (TooManyPolls) beyond a cap
        client = security.caller()
        name = None if client is None or client is ANONYMOUS else client.name
        with state.parked.hold(request.environ.get("REMOTE_ADDR"), name, (app, profiles, label)):
            direct = request.environ.get(DIRECT_ANSWER)  # offered by the gevent worker
            deadline = time.monotonic() + wait
            allowed = _still_reads(app, profiles, label)
            while True:
                remaining = deadline - time.monotonic()
                waited = hub.wait(
                    app, profiles, label, known.as_set(), remaining, direct, route, since, allowed
                )
                if waited is REVOKED:
                    if direct is not None and direct.finish():  # answered before the token was revoked
                        request.environ[ANSWERED] = True
                        security.note("watch", version=direct.version)
                        return Response(status=200)
                    security.identify()  # 401 for a token the auth file no longer holds
                    security.require_read(app, profiles, label, event="watch")  # 403 for one that lost it
                    waited = None  # granted again meanwhile: the wait ends as at its timeout
                    break
                if waited is not REROUTED:
                    break
                # a rollout of the application moved: decide again; a new answer goes out at once
                since = hub.reroutes(app)
                route = _route(app, profiles, label, reporter)
                found = hub.current(app, profiles, label, route)
                if found is not None:
                    extra = found[1]
                    if not known.contains(found[0].etag):
                        waited = found
                        break
                if deadline - time.monotonic() <= 0 or (direct is not None and direct.answered):
                    waited = None
                    break
            if isinstance(waited, tuple):
                _record(reporter, app, profiles, label, waited[0])
            if direct is not None and direct.finish():
                request.environ[ANSWERED] = True  # the hub wrote the answer; the worker sends nothing more
                security.note("watch", version=direct.version)  # the version sent, not the one parked
                return Response(status=200)
            if isinstance(waited, tuple):
                security.note("watch", version=waited[0].environment.version)
                return _response(environment_answer(waited[0], label, extra_headers=waited[1]))
    etag = resolved.etag if resolved is not None else next(iter(known.as_set()), "")
    return _response(environment_answer(None, label, etag=etag, extra_headers=extra))


def _still_reads(app: str, profiles: str, label: str | None) -> Callable[[], bool] | None:
    """The hub's check that this request's token still lets it read (None on an open server)."""
    state = server_state()
    if state.auth is None:
        return None
    default_label = state.service.backend.default_label()
    token = security.presented_token()
    return functools.partial(security.still_reads, state.auth, token, app, profiles, label, default_label)


def _source(route: Route, label: str | None) -> str | None:
    """The label an answer is resolved at: the rollout's canary, or the label asked for."""
    return route.source if route.source is not None else label


def _route(app: str, profiles: str, label: str | None, reporter: ClientHeaders) -> Route:
    """This caller's route: a rollout's canary for a cohort instance that may read it, else the base."""
    rollouts = server_state().rollouts
    instance_id = None if reporter.anonymous else reporter.instance_id
    client = security.caller()
    wanted = names.validate_profiles(profiles)

    def may_read(canary: str) -> bool:
        return client is None or client is ANONYMOUS or client.may_read(app, wanted, canary)

    route: Route = rollouts.route(app, profiles, label, instance_id, reporter.client_labels, may_read)
    return route


def _rollout_report(
    app: str, label: str | None, route: Route, reporter: ClientHeaders, served: ResolvedEnvironment | None
) -> None:
    """Remember the canary version served (to which instance), and pass on a cohort instance's
    rejection of it with its caller: the client and the address that sent it."""
    if route.source is None or served is None:
        return
    rollouts = server_state().rollouts
    version = served.environment.version
    now = rollouts.clock()
    rollouts.canary_served(app, label, version, None if reporter.anonymous else reporter.instance_id, now)
    if reporter.rejected_version is not None and not reporter.anonymous:
        client = security.caller()
        caller = f"{client.name if client is not None else 'anonymous'}@{reporter.remote}"
        rollouts.note_rejection(
            app,
            label,
            reporter.instance_id,
            reporter.rejected_version,
            reporter.rejected_reason,
            version,
            caller,
            now,
        )


def _response(answer: Answer) -> Response:
    """The Flask response carrying exactly the answer's status, headers (in order) and body."""
    return Response(answer.body or None, status=answer.status, headers=list(answer.headers))


def _record(
    reporter: ClientHeaders, app: str, profiles: str, label: str | None, served: ResolvedEnvironment | None
) -> None:
    """Queue the instance report of this request (no I/O: the inventory writes in the background)."""
    state = server_state()
    labels = names.validate_labels(label) if label is not None else (state.service.backend.default_label(),)
    state.inventory.observe(
        reporter,
        ",".join(names.validate_applications(app)),
        names.validate_profiles(profiles),
        ",".join(labels),
        served.environment.version if served is not None else None,
    )


def _wait_seconds() -> float:
    if "wait" not in request.environ.get("QUERY_STRING", ""):
        return 0.0  # the common case, without parsing the query string
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        raise InvalidName(f"wait must be a number of seconds, not {raw!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidName("wait must be a non-negative number of seconds")
    return min(seconds, MAX_WAIT_SECONDS)


def _rendered(label: str | None, name: str) -> Response:
    match = RENDERED_DOCUMENT.fullmatch(name)
    if not match:
        raise ResourceNotFound(
            f"{name!r} is not a rendered configuration: use {{application}}-{{profiles}}.yml, "
            ".yaml, .properties or .json"
        )
    security.require_read(match["app"], match["profiles"], label)
    revision, resolved = _service().environment(match["app"], match["profiles"], label)
    security.note("read", version=revision.version, format=match["ext"])
    placeholders = request.args.get("resolvePlaceholders", "true").lower() != "false"
    settings = resolved.merged_resolved if placeholders else resolved.merged
    renderer, mimetype = _FORMATS[match["ext"]]
    headers = {"ETag": f'"{resolved.etag}"', **dict(_service().answer_headers(match["app"], revision))}
    return Response(renderer(settings), content_type=mimetype, headers=headers)
