"""Environment JSON (`/{app}/{profiles}[/{label}]`) and the rendered formats (`/{app}-{profiles}.yml`)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from flask import Blueprint, Response, request

from config_server.backends.base import Revision
from config_server.content import render
from config_server.content.environment_answer import BASE_ROUTE, Answer, Route, environment_answer
from config_server.delivery import long_poll
from config_server.errors import (
    BrokenEnvironment,
    ConfigServerError,
    InvalidConfigFile,
    ResourceNotFound,
)
from config_server.http import security
from config_server.http.auth import ANONYMOUS
from config_server.http.context import server_state
from config_server.http.environ_keys import ANSWERED, DIRECT_ANSWER
from config_server.http.resources import serve_resource
from config_server.names import RENDERED_DOCUMENT, EnvironmentRequest
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
    Environment) or the wait (at most 60 s) ends (304): the long-poll watch (`delivery/long_poll.py`).
    """
    wait = _wait_seconds()
    asked = EnvironmentRequest.parse(app, profiles, label)  # 400 naming the first malformed name
    security.require_read(asked, event="watch" if wait else "read")
    reporter = parse_client_headers(request.environ)  # 400 naming a malformed report header
    known = request.if_none_match
    state = server_state()
    if wait and known:  # one environment more than its caller may watch: 429 before resolving it
        state.parked.refuse_unwatched(
            request.environ.get("REMOTE_ADDR"), _client_name(), (app, profiles, label)
        )
    hub = state.hub
    since = hub.reroutes(app)
    route = _route(asked, reporter)
    revision: Revision | None = None
    try:
        try:
            revision, resolved = _service().environment(_source(route, asked))
        except ConfigServerError:
            if route.source is None:
                raise
            route = BASE_ROUTE  # a canary label that is gone, or broken with no good version: the base
            revision, resolved = _service().environment(asked)
        security.note("watch" if wait else "read", version=revision.version)
    except (BrokenEnvironment, InvalidConfigFile):
        if not (wait and known):
            raise
        resolved = None  # a watcher waits through a broken commit for the next good one
    headers = _service().answer_headers(app, revision) if revision is not None else ()
    extra = headers + route.headers
    _record(reporter, asked, resolved)
    _rollout_report(asked, route, reporter, resolved)
    if resolved is not None and not known.contains(resolved.etag):
        return _response(environment_answer(resolved, label, extra_headers=extra))
    if wait and known:
        # counted as one of its address's parked polls and its caller's watched environments:
        # 429 (TooManyPolls) beyond a cap
        with state.parked.hold(request.environ.get("REMOTE_ADDR"), _client_name(), (app, profiles, label)):
            outcome = long_poll.hold(
                hub,
                asked,
                long_poll.KnownEtags(frozenset(known.as_set()), known.star_tag),
                time.monotonic() + wait,
                route,
                since,
                extra,
                lambda: _route(asked, reporter),
                request.environ.get(DIRECT_ANSWER),  # offered by the gevent worker
                _still_reads(asked),
            )
            if isinstance(outcome, long_poll.Revoked):
                security.identify()  # 401 for a token the auth file no longer holds
                security.require_read(asked, event="watch")  # 403 for one that lost it
                extra = outcome.headers  # granted again meanwhile: the wait ends as at its timeout
            elif isinstance(outcome, long_poll.AnsweredByHub):
                if outcome.seen is not None:
                    _record(reporter, asked, outcome.seen)
                request.environ[ANSWERED] = True  # the hub wrote the answer; the worker sends nothing more
                security.note("watch", version=outcome.version)  # the version sent, not the one parked
                return Response(status=200)
            elif isinstance(outcome, long_poll.Changed):
                _record(reporter, asked, outcome.resolved)
                security.note("watch", version=outcome.resolved.environment.version)
                return _response(environment_answer(outcome.resolved, label, extra_headers=outcome.headers))
            elif isinstance(outcome, long_poll.NotModified):
                extra = outcome.headers
    etag = resolved.etag if resolved is not None else next(iter(known.as_set()), "")
    return _response(environment_answer(None, label, etag=etag, extra_headers=extra))


def _client_name() -> str | None:
    """The caller's client name, as the parked-poll caps count it (None on an open server)."""
    client = security.caller()
    return None if client is None or client is ANONYMOUS else client.name


def _still_reads(asked: EnvironmentRequest) -> Callable[[], bool] | None:
    """The hub's check that this request's token still lets it read (None on an open server)."""
    state = server_state()
    if state.auth is None:
        return None
    default_label = state.service.backend.default_label()
    token = security.presented_token()
    return functools.partial(security.still_reads, state.auth, token, asked, default_label)


def _source(route: Route, asked: EnvironmentRequest) -> EnvironmentRequest:
    """The request an answer is resolved for: at the rollout's canary, or as asked."""
    return asked.at(route.source) if route.source is not None else asked


def _route(asked: EnvironmentRequest, reporter: ClientHeaders) -> Route:
    """This caller's route: a rollout's canary for a cohort instance that may read it, else the base."""
    rollouts = server_state().rollouts
    instance_id = None if reporter.anonymous else reporter.instance_id
    client = security.caller()

    def may_read(canary: str) -> bool:
        return client is None or security.refused_read(client, asked.at(canary), canary) is None

    route: Route = rollouts.route_for(asked, instance_id, reporter.client_labels, may_read)
    return route


def _rollout_report(
    asked: EnvironmentRequest, route: Route, reporter: ClientHeaders, served: ResolvedEnvironment | None
) -> None:
    """Remember the canary version served (to which instance), and pass on a cohort instance's
    rejection of it with its caller: the client and the address that sent it."""
    if route.source is None or served is None:
        return
    rollouts = server_state().rollouts
    version = served.environment.version
    now = rollouts.clock()
    app, label = asked.application, asked.labels_text  # one label: a rollout routes no list
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


def _record(reporter: ClientHeaders, asked: EnvironmentRequest, served: ResolvedEnvironment | None) -> None:
    """Queue the instance report of this request (no I/O: the inventory writes in the background)."""
    state = server_state()
    default_label = state.service.backend.default_label() if asked.labels is None else ""
    version = served.environment.version if served is not None else None
    state.inventory.observe_request(reporter, asked, default_label, version)


def _wait_seconds() -> float:
    if "wait" not in request.environ.get("QUERY_STRING", ""):
        return 0.0  # the common case, without parsing the query string
    raw = request.args.get("wait")
    return 0.0 if raw is None else long_poll.wait_seconds(raw)


def _rendered(label: str | None, name: str) -> Response:
    match = RENDERED_DOCUMENT.fullmatch(name)
    if not match:
        raise ResourceNotFound(
            f"{name!r} is not a rendered configuration: use {{application}}-{{profiles}}.yml, "
            ".yaml, .properties or .json"
        )
    asked = EnvironmentRequest.parse(match["app"], match["profiles"], label)
    security.require_read(asked)
    revision, resolved = _service().environment(asked)
    security.note("read", version=revision.version, format=match["ext"])
    placeholders = request.args.get("resolvePlaceholders", "true").lower() != "false"
    settings = resolved.merged_resolved if placeholders else resolved.merged
    renderer, mimetype = _FORMATS[match["ext"]]
    headers = {"ETag": f'"{resolved.etag}"', **dict(_service().answer_headers(match["app"], revision))}
    return Response(renderer(settings), content_type=mimetype, headers=headers)
