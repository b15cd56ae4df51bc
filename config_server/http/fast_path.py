"""The hottest requests, a plain `GET /{app}/{profiles}[/{label}]` and its long poll, without Flask.

Every service instance asks the first at start-up, so a release storm is thousands of them, and
holds the second open all the time, so a commit wakes thousands at once. Flask's request context,
routing and response objects cost more than resolving a cached environment (and a parked request
would hold its context for the whole wait), so this WSGI middleware answers the plain cases
itself: GET, a path of two or three segments that is not a rendered document and whose first
segment is not the static first segment of another route (`/console/app/<app>`,
`/encrypt/status`, `/static/...`: read from Flask's url_map, so a new route is never taken over),
and either no query string and no `If-None-Match`, or a query of exactly `wait=<seconds>` with
`If-None-Match` (the long poll, held by the one loop of `delivery/long_poll.py`, as the Flask view
holds it). Anything else goes to the Flask app unchanged. With an auth file it serves authorised
reads only (the token identifies a client that may read the application, profiles and label:
`security.refused_read`, the check Flask's `require_read` makes); with an audit log it writes the
same `read` (or `watch`) line as Flask's hooks would (`audit.environment_fields` for both).

Invariants:
- It answers only 200s (and a long poll's 304), built by `answer.environment_answer` as the
  Flask view builds them: the same bytes (tests compare them, Date aside); and one refusal, the
  429 of a long poll beyond its caller's or address's cap (`parked.py`), built as Flask's error
  handler builds it (`_refuse`), on a server without an audit log, for a caller that may read
  what it asks (else Flask answers: the 403, the audit line).
- It never answers an error: any exception, a `ConfigServerError` or not, hands the request to
  Flask, whose JSON error handlers decide the status and body; never a bare 500 from gunicorn.
  A long poll is handed over before anything is written, or, when a rollout moves the caller
  into its cohort (or the hub fails) while it waits and the hub has not answered it, with the
  rest of its wait.
- It answers only what Flask routes to an Environment view: a path whose first segment is
  the static first segment of any other rule (`reserved_prefixes`) goes to Flask, where static
  parts win over `<app>` (an application named like such a prefix is answered by Flask, the same).
- It never refuses: no token, an unknown or malformed one, a client that may not read, a name
  that does not validate, a `Host` not on the allow-list (`hosts.py`): Flask answers (401, 403,
  400, 421) and writes the `denied` audit line. The one exception is the 429 above: a caller
  cycling through spellings is refused hundreds of times a second, each through Flask a third
  more CPU than the refusal itself.
- Handing over costs no second parse: the service's cache remembers a broken version's error,
  so Flask's attempt at a broken request is a cache hit.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from werkzeug.datastructures import ETags
from werkzeug.http import HTTP_STATUS_CODES, parse_etags
from werkzeug.wsgi import get_path_info

from config_server.backends.base import Revision
from config_server.content.environment_answer import BASE_ROUTE, Answer, Headers, Route, environment_answer
from config_server.delivery import long_poll
from config_server.delivery.direct_answer import DirectAnswer
from config_server.delivery.parked import ParkedPolls
from config_server.delivery.rollout_runner import Rollouts
from config_server.delivery.watch_hub import WatchHub
from config_server.errors import TooManyPolls
from config_server.http.auth import ANONYMOUS, AuthFile, Client
from config_server.http.environ_keys import ANSWERED, DIRECT_ANSWER
from config_server.http.errors import error_document
from config_server.http.hosts import HostAllowList
from config_server.http.log_context import note_request
from config_server.http.security import refused_read, still_reads, token_from
from config_server.names import RENDERED_DOCUMENT, EnvironmentRequest
from config_server.observability.audit import AuditLog, environment_fields, serialise_fields
from config_server.observability.inventory import ClientHeaders, Inventory, parse_client_headers
from config_server.safety.config_service import ConfigService
from config_server.safety.environment_cache import ResolvedEnvironment

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: The query string of a long poll the fast path takes: exactly `wait=<seconds>`, a plain decimal
#: (anything else, `wait=0` or a second parameter, is Flask's to parse and to refuse).
_PLAIN_WAIT = re.compile(r"wait=([0-9]{1,6}(?:\.[0-9]{1,6})?)")


def plain_wait(query: str) -> float | None:
    """The seconds of a plain `wait=<seconds>` query (at most the hub's cap), else None."""
    match = _PLAIN_WAIT.fullmatch(query)
    if match is None:
        return None
    seconds = long_poll.wait_seconds(match[1])
    return seconds if seconds > 0 else None


@dataclass(frozen=True)
class _Poll:
    """What a long poll found when it arrived: the caller, the environment and what it holds."""

    client: Client
    asked: EnvironmentRequest
    known: ETags
    revision: Revision
    resolved: ResolvedEnvironment
    extra: Headers
    reporter: ClientHeaders
    since: int


class FastEnvironmentPath:
    """WSGI middleware: plain Environment GETs answered from the cache, the rest passed to Flask."""

    def __init__(
        self,
        app: Flask,
        service: ConfigService,
        downstream: WSGIApp,
        auth: AuthFile | None,
        audit: AuditLog | None,
        inventory: Inventory,
        rollouts: Rollouts,
        hub: WatchHub,
        hosts: HostAllowList | None = None,
        parked: ParkedPolls | None = None,
    ) -> None:
        self.hub = hub
        self.parked = parked if parked is not None else ParkedPolls(0)
        self.hosts = hosts or HostAllowList(("*",))
        self.rollouts = rollouts
        self.service = service
        self.inventory = inventory
        self.downstream = downstream
        self.auth = auth
        self.audit = audit if audit is not None and audit.enabled else None
        self.app = app
        self._reserved: frozenset[str] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answer a plain Environment GET or long poll, or hand the request to Flask."""
        if not self.hosts.allows_environ(environ):
            return self.downstream(environ, start_response)  # Flask answers the 421
        query = environ.get("QUERY_STRING")
        if query:
            wait = plain_wait(query)
            if wait is None:
                return self.downstream(environ, start_response)
            return self._long_poll(environ, start_response, wait)
        answer = self._answer(environ)
        if answer is None:
            return self.downstream(environ, start_response)
        start_response(answer.status_line, list(answer.headers))
        return [answer.body]

    @property
    def reserved(self) -> frozenset[str]:
        """`reserved_prefixes` of the app, read at the first request (Flask adds no route after it)."""
        if self._reserved is None:
            self._reserved = reserved_prefixes(self.app)
        return self._reserved

    def _environment_path(self, environ: dict[str, Any]) -> list[str] | None:
        """['', application, profiles(, label)] of a GET that Flask routes to an Environment view."""
        if environ.get("REQUEST_METHOD") != "GET":
            return None
        parts: list[str] = environ.get("PATH_INFO", "").split("/")
        if len(parts) not in (3, 4) or parts[0] or not all(parts[1:]) or parts[1] in self.reserved:
            return None
        if len(parts) == 3 and RENDERED_DOCUMENT.fullmatch(parts[2]):
            return None
        return parts

    def _answer(self, environ: dict[str, Any]) -> Answer | None:
        if environ.get("QUERY_STRING") or "HTTP_IF_NONE_MATCH" in environ:
            return None
        parts = self._environment_path(environ)
        if parts is None:
            return None
        label = parts[3] if len(parts) == 4 else None
        try:
            asked = EnvironmentRequest.parse(parts[1], parts[2], label)
            caller = self._plain_caller(environ, asked)
            if caller is None:
                return None
            client, reporter = caller
            revision, resolved = self.service.environment(asked)
            # checked after resolving, at the default label the service resolved (one lookup of it)
            if refused_read(client, asked, revision.label) is not None:
                return None
            extra = self.service.answer_headers(parts[1], revision)
            answer = environment_answer(resolved, label, extra_headers=extra)
            if self.audit is not None:
                _audit(self.audit, environ, client, asked, revision.version)
            note_request(environ, None if client is ANONYMOUS else client.name, asked.application)
            self.inventory.observe_request(reporter, asked, revision.label, revision.version)
        except Exception:  # noqa: BLE001 - any failure: Flask answers it, with the usual JSON body
            return None
        return answer

    def _long_poll(
        self, environ: dict[str, Any], start_response: Callable[..., Any], wait: float
    ) -> Iterable[bytes]:
        """`GET ...?wait=N` with `If-None-Match`, as the Flask view answers it (`environment` in
        `http/environment.py`): 200 at once when the caller's version is not current, else held
        in the hub until the ETag moves (200, or the hub's direct answer) or the wait ends (304).

        Whatever the view would answer differently (a rollout's cohort, a broken environment, a
        refusal, an error) goes to Flask before anything is written. When a rollout of the
        application moves while the request waits (REROUTED), it decides again as the view does:
        still outside the cohort, it answers a newer base version or waits on; now inside, it
        hands the request to Flask for the rest of its wait."""
        try:
            poll = self._begin_poll(environ)
        except TooManyPolls as refusal:  # one environment more than its caller may watch
            return self._refuse(environ, start_response, refusal)
        if poll is None:
            return self.downstream(environ, start_response)
        if not poll.known.contains(poll.resolved.etag):
            answer = environment_answer(poll.resolved, poll.asked.label, extra_headers=poll.extra)
            return self._send(environ, start_response, poll, answer)
        address = environ.get("REMOTE_ADDR")
        client = None if poll.client is ANONYMOUS else poll.client.name
        asked = poll.asked
        slot = (asked.application, asked.profiles, asked.label)  # as the Flask view counts it
        try:
            if self.audit is not None and not self.parked.admits(address, client, slot):
                raise TooManyPolls(address)  # Flask answers (and counts) the 429 and its audit line
            with self.parked.hold(address, client, slot):
                return self._park(environ, start_response, poll, wait)
        except TooManyPolls as refusal:
            if self.audit is not None:
                return self.downstream(environ, start_response)
            return self._refuse(environ, start_response, refusal)  # `hold` counted it

    def _park(
        self, environ: dict[str, Any], start_response: Callable[..., Any], poll: _Poll, wait: float
    ) -> Iterable[bytes]:
        """The wait of `_long_poll` (`delivery/long_poll.py`), counted as one of its address's
        parked polls; this writes only what the loop says happened."""
        direct = environ.get(DIRECT_ANSWER)
        deadline = time.monotonic() + wait
        asked = poll.asked

        def decide_route() -> Route | None:  # a rollout moved: into its cohort, Flask answers
            return None if self._in_a_cohort(poll.reporter, asked) else BASE_ROUTE

        try:
            outcome = long_poll.hold(
                self.hub,
                asked,
                long_poll.KnownEtags(frozenset(poll.known.as_set())),
                deadline,
                BASE_ROUTE,
                poll.since,
                poll.extra,
                decide_route,
                direct,
                self._still_reads(environ, poll),
            )
        except Exception:  # noqa: BLE001 - Flask answers it (its JSON 500), unless already answered
            return self._hand_over(environ, start_response, poll, direct, deadline)
        if isinstance(outcome, (long_poll.Revoked, long_poll.HandedOver)):
            # the reloaded auth file refuses it (Flask answers 401/403), or it is in a cohort now
            return self._hand_over(environ, start_response, poll, direct, deadline)
        if isinstance(outcome, long_poll.AnsweredByHub):
            if outcome.seen is not None:
                self._observe(poll, outcome.seen)
            return self._answered(environ, start_response, poll, outcome.version)
        if isinstance(outcome, long_poll.Changed):
            self._observe(poll, outcome.resolved)
            answer = environment_answer(outcome.resolved, asked.label, extra_headers=outcome.headers)
            return self._send(environ, start_response, poll, answer, outcome.resolved.environment.version)
        answer = environment_answer(None, asked.label, etag=poll.resolved.etag, extra_headers=outcome.headers)
        return self._send(environ, start_response, poll, answer)

    def _hand_over(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        poll: _Poll,
        direct: DirectAnswer | None,
        deadline: float,
    ) -> Iterable[bytes]:
        """Let Flask answer a long poll for the rest of its wait, unless the hub has answered it.

        The request's audit line is then Flask's (with the version Flask resolves), not this
        path's; the instance report is queued again, which the inventory folds into one."""
        if direct is not None and direct.finish():
            return self._answered(environ, start_response, poll, direct.version)
        environ["QUERY_STRING"] = f"wait={max(deadline - time.monotonic(), 0.001):.3f}"
        return self.downstream(environ, start_response)

    def _answered(
        self, environ: dict[str, Any], start_response: Callable[..., Any], poll: _Poll, version: str | None
    ) -> Iterable[bytes]:
        """The hub wrote the answer (the settings at `version`) on the connection: the worker sends
        nothing more."""
        environ[ANSWERED] = True
        self._audit_poll(environ, poll, 200, version)
        start_response("200 OK", [])
        return [b""]

    def _begin_poll(self, environ: dict[str, Any]) -> _Poll | None:
        """The long poll's caller and environment, recorded; None for whatever Flask must answer."""
        known = parse_etags(environ.get("HTTP_IF_NONE_MATCH"))
        parts = self._environment_path(environ)
        if parts is None or not known or known.star_tag:
            return None
        label = parts[3] if len(parts) == 4 else None
        try:
            asked = EnvironmentRequest.parse(parts[1], parts[2], label)
            since = self.hub.reroutes(asked.application)  # read before the route is decided
            caller = self._plain_caller(environ, asked)
            if caller is None:
                return None
            client, reporter = caller
            name = None if client is ANONYMOUS else client.name
            slot = (asked.application, asked.profiles, asked.label)
            if not self.parked.watches_within_cap(environ.get("REMOTE_ADDR"), name, slot):
                # refused (429) before anything is resolved: here, or by Flask when its answer
                # differs (a client that may not read it gets 403; an audit log wants its line)
                if self.audit is None and self._may_read(client, asked):
                    note_request(environ, name, asked.application)
                    self.parked.refuse_unwatched(environ.get("REMOTE_ADDR"), name, slot)  # raises, counted
                return None
            revision, resolved = self.service.environment(asked)
            if refused_read(client, asked, revision.label) is not None:
                return None
            extra = self.service.answer_headers(asked.application, revision)
            poll = _Poll(client, asked, known, revision, resolved, extra, reporter, since)
            self._observe(poll, resolved)
            note_request(environ, None if client is ANONYMOUS else client.name, asked.application)
        except TooManyPolls:
            raise
        except Exception:  # noqa: BLE001 - any failure: Flask answers it, with the usual JSON body
            return None
        return poll

    def _may_read(self, client: Client, asked: EnvironmentRequest) -> bool:
        """Flask's `require_read` check, without the audit note: whether `client` may read `asked`
        (its default label when none is asked)."""
        return refused_read(client, asked, self.service.backend.default_label) is None

    def _refuse(
        self, environ: dict[str, Any], start_response: Callable[..., Any], refusal: TooManyPolls
    ) -> Iterable[bytes]:
        """A long poll beyond a cap (`delivery/parked.py`): the 429 Flask's error handler answers
        (`errors.error_document`, the app's JSON provider, `Connection: close`), without Flask.

        A caller cycling through spellings beyond its slot cap, or parking beyond its address's
        cap, is refused hundreds of times a second; through Flask each refusal cost a request
        context, routing and the error handler (a third of a worker under issue 24's attacks)."""
        path = "/" + get_path_info(environ).lstrip("/")
        document = error_document(refusal.status, refusal.reason, str(refusal), path)
        body = self.app.json.dumps(document).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),  # a refused poll gives its connection back
        ]
        start_response(f"{refusal.status} {HTTP_STATUS_CODES[refusal.status].upper()}", headers)
        return [body]

    def _observe(self, poll: _Poll, served: ResolvedEnvironment) -> None:
        """Queue the instance report, as the Flask view's `_record` does."""
        version = served.environment.version
        self.inventory.observe_request(poll.reporter, poll.asked, poll.revision.label, version)

    def _send(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        poll: _Poll,
        answer: Answer,
        version: str | None = None,
    ) -> Iterable[bytes]:
        """Answer the long poll; its `watch` line names `version`, the settings sent (by default
        the version it found when it arrived: a 304 confirms that one)."""
        self._audit_poll(environ, poll, answer.status, version)
        start_response(answer.status_line, list(answer.headers))
        return [answer.body]

    def _still_reads(self, environ: dict[str, Any], poll: _Poll) -> Callable[[], bool] | None:
        """The hub's check that the poll's token still lets it read (None on an open server)."""
        if self.auth is None:
            return None
        token = token_from(environ.get("HTTP_AUTHORIZATION", ""), environ.get("HTTP_X_CONFIG_TOKEN", ""))
        return functools.partial(still_reads, self.auth, token, poll.asked, poll.revision.label)

    def _audit_poll(self, environ: dict[str, Any], poll: _Poll, status: int, version: str | None) -> None:
        """The poll's `watch` line, naming the version of the settings it was answered with."""
        if self.audit is not None:
            _audit(
                self.audit,
                environ,
                poll.client,
                poll.asked,
                version if version is not None else poll.revision.version,
                event="watch",
                status=status,
            )

    def _plain_caller(
        self, environ: dict[str, Any], asked: EnvironmentRequest
    ) -> tuple[Client, ClientHeaders] | None:
        """The caller its token identifies and its instance report (raises on a malformed one), or
        None when Flask must answer: no acceptable token, or a rollout routes it to its canary."""
        client = self._authenticated(environ)
        if client is None:
            return None
        reporter = parse_client_headers(environ)
        if self._in_a_cohort(reporter, asked):
            return None  # a rollout's canary answer: Flask builds it (X-Config-Rollout, reroutes)
        return client, reporter

    def _in_a_cohort(self, reporter: ClientHeaders, asked: EnvironmentRequest) -> bool:
        """True when a rollout routes this caller to its canary label (Flask answers it then)."""
        if reporter.anonymous:
            return False  # callers without an id always get the base label
        route = self.rollouts.route_for(asked, reporter.instance_id, reporter.client_labels)
        return route.source is not None

    def _authenticated(self, environ: dict[str, Any]) -> Client | None:
        """The client the request's token identifies (ANONYMOUS on an open server), else None."""
        if self.auth is None:
            return ANONYMOUS
        token = token_from(environ.get("HTTP_AUTHORIZATION", ""), environ.get("HTTP_X_CONFIG_TOKEN", ""))
        return self.auth.authenticate(token) if token is not None else None


#: The Flask endpoints whose answers the fast path gives (every other rule's paths are Flask's).
ENVIRONMENT_ENDPOINTS = frozenset(
    {"environment.environment_or_rendered", "environment.environment_with_label"}
)


def reserved_prefixes(app: Flask) -> frozenset[str]:
    """First path segments the fast path must leave to Flask, derived from the app's url_map.

    Every rule whose first segment is static text (no converter) and that is not an Environment
    route: Werkzeug ranks static parts above `<app>`, so any path under such a segment may be
    routed to that rule (`/console/app/orders` is the console, not application `console`).
    """
    reserved = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ENVIRONMENT_ENDPOINTS:
            continue
        first = rule.rule.lstrip("/").split("/", 1)[0]
        if first and "<" not in first:
            reserved.add(first)
    return frozenset(reserved)


def _audit(
    audit: AuditLog,
    environ: dict[str, Any],
    client: Client,
    asked: EnvironmentRequest,
    version: str,
    event: str = "read",
    status: int = 200,
) -> None:
    """The `read` (or `watch`) line Flask's hooks write for the same request (`http/security.py`)."""
    remote, path = environ.get("REMOTE_ADDR"), environ.get("PATH_INFO", "")
    fields = _read_fields(client.name, remote, path, asked, version, status)
    audit.record_serialised(event, fields)


@functools.lru_cache(maxsize=4096)
def _read_fields(
    client: str,
    remote: str | None,
    raw_path: str,
    asked: EnvironmentRequest,
    version: str,
    status: int = 200,
) -> str:
    """A `read` line's fields, serialised once per distinct request (the same instances ask again)."""
    path = raw_path.encode("latin-1").decode("utf-8", "replace")
    return serialise_fields(
        client=client,
        remote=remote,
        method="GET",
        path="/" + path.lstrip("/"),
        status=status,
        **environment_fields(asked),
        version=version,
    )
