"""The hottest request, a plain `GET /{app}/{profiles}[/{label}]`, answered without Flask.

Every service instance asks this at start-up, so a release storm is thousands of them. Flask's
request context, routing and response objects cost more than resolving a cached environment, so
this WSGI middleware answers the plain case itself: GET, no query string, no `If-None-Match`, a
path of two or three segments that is not a rendered document and whose first segment is not
the static first segment of another route (`/console/app/<app>`, `/encrypt/status`, `/static/...`:
read from Flask's url_map, so a new route is never taken over). Anything else goes to the Flask
app unchanged. With an auth file it serves authorised reads only (the token
identifies a client that may read the application, profiles and label); with an audit log it
writes the same `read` line as Flask's hooks would.

Invariants:
- It answers only 200s, built by `answer.environment_answer` as the Flask view builds them: the
  same bytes (a test compares them, Date aside).
- It never answers an error: any exception, a `ConfigServerError` or not, hands the request to
  Flask, whose JSON error handlers decide the status and body; never a bare 500 from gunicorn.
- It answers only what Flask routes to an Environment view: a path whose first segment is
  the static first segment of any other rule (`reserved_prefixes`) goes to Flask, where static
  parts win over `<app>` (an application named like such a prefix is answered by Flask, the same).
- It never refuses: no token, an unknown or malformed one, a client that may not read, a name
  that does not validate: Flask answers (401, 403, 400) and writes the `denied` audit line.
- Handing over costs no second parse: the service's cache remembers a broken version's error,
  so Flask's attempt at a broken request is a cache hit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from config_server import names
from config_server.answer import Answer, environment_answer, held_back_headers
from config_server.audit import AuditLog, serialise_fields
from config_server.auth import ANONYMOUS, AuthFile, Client
from config_server.http.security import token_from
from config_server.inventory import Inventory, parse_client_headers
from config_server.names import RENDERED_DOCUMENT
from config_server.rollouts import Rollouts
from config_server.service import ConfigService

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FastEnvironmentPath:
    """WSGI middleware: plain Environment GETs answered from the cache, the rest passed to Flask."""

    def __init__(
        self,
        app: Flask,
        service: ConfigService,
        downstream: WSGIApp,
        auth: AuthFile | None = None,
        audit: AuditLog | None = None,
        inventory: Inventory | None = None,
        rollouts: Rollouts | None = None,
    ) -> None:
        self.rollouts = rollouts
        self.service = service
        self.inventory = inventory
        self.downstream = downstream
        self.auth = auth
        self.audit = audit if audit is not None and audit.enabled else None
        self.app = app
        self._reserved: frozenset[str] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answer a plain Environment GET, or hand the request to Flask."""
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

    def _answer(self, environ: dict[str, Any]) -> Answer | None:
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
            return None
        if "HTTP_IF_NONE_MATCH" in environ:
            return None
        path = environ.get("PATH_INFO", "")
        parts = path.split("/")
        if len(parts) not in (3, 4) or parts[0] or not all(parts[1:]) or parts[1] in self.reserved:
            return None
        if len(parts) == 3 and RENDERED_DOCUMENT.fullmatch(parts[2]):
            return None
        label = parts[3] if len(parts) == 4 else None
        try:
            client = self._authenticated(environ)
            if client is None:
                return None
            reporter = parse_client_headers(environ) if self.inventory is not None else None
            if self.rollouts is not None and self._in_a_cohort(environ, parts[1], parts[2], label):
                return None  # a rollout's canary answer: Flask builds it (X-Config-Rollout, reroutes)
            revision, resolved = self.service.environment(parts[1], parts[2], label)
            if not self._may_read(client, parts[1], parts[2], label, revision.label):
                return None
            answer = environment_answer(resolved, label, extra_headers=held_back_headers(revision.held_back))
            if self.audit is not None:
                _audit(self.audit, environ, client, parts[1], parts[2], label, revision.version)
            if reporter is not None:
                application = ",".join(names.validate_applications(parts[1]))
                self.inventory.observe(  # type: ignore[union-attr]
                    reporter, application, resolved.environment.profiles, revision.label, revision.version
                )
        except Exception:  # noqa: BLE001 - any failure: Flask answers it, with the usual JSON body
            return None
        return answer

    def _in_a_cohort(
        self, environ: dict[str, Any], application: str, profiles: str, label: str | None
    ) -> bool:
        """True when a rollout routes this caller to its canary label (Flask answers it then)."""
        instance_id = environ.get("HTTP_X_CONFIG_CLIENT_ID")
        if not instance_id:
            return False  # callers without an id always get the base label
        client_labels = environ.get("HTTP_X_CONFIG_CLIENT_LABELS") or ""
        if self.rollouts is None:
            return False
        route = self.rollouts.route(application, profiles, label, instance_id.strip(), client_labels.strip())
        return route.source is not None

    def _authenticated(self, environ: dict[str, Any]) -> Client | None:
        """The client the request's token identifies (ANONYMOUS on an open server), else None."""
        if self.auth is None:
            return ANONYMOUS
        token = token_from(environ.get("HTTP_AUTHORIZATION", ""), environ.get("HTTP_X_CONFIG_TOKEN", ""))
        return self.auth.authenticate(token) if token is not None else None

    def _may_read(
        self, client: Client, application: str, profiles: str, label: str | None, resolved_label: str
    ) -> bool:
        """As `security.require_read`: every listed application at every listed label.

        Asked after resolving, so that a request naming no label is checked at the default label
        the service resolved (one lookup of it per request, not two); nothing is answered unless
        this says yes.
        """
        if client is ANONYMOUS:
            return True
        apps = names.validate_applications(application)
        wanted = names.validate_profiles(profiles)
        labels = names.validate_labels(label) if label is not None else (resolved_label,)
        return all(_may_read(client, app, wanted, one) for one in labels for app in apps)


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
    application: str,
    profiles: str,
    label: str | None,
    version: str,
) -> None:
    """The `read` line Flask's hooks write for the same request (`http/security.py`)."""
    fields = _read_fields(
        client.name,
        environ.get("REMOTE_ADDR"),
        environ.get("PATH_INFO", ""),
        application,
        profiles,
        label,
        version,
    )
    audit.record_serialised("read", fields)


@functools.lru_cache(maxsize=4096)
def _read_fields(
    client: str,
    remote: str | None,
    raw_path: str,
    application: str,
    profiles: str,
    label: str | None,
    version: str,
) -> str:
    """A `read` line's fields, serialised once per distinct request (the same instances ask again)."""
    path = raw_path.encode("latin-1").decode("utf-8", "replace")
    return serialise_fields(
        client=client,
        remote=remote,
        method="GET",
        path="/" + path.lstrip("/"),
        status=200,
        application=",".join(names.validate_applications(application)),
        profiles=",".join(names.validate_profiles(profiles)),
        label=",".join(names.validate_labels(label)) if label is not None else None,
        version=version,
    )


@functools.lru_cache(maxsize=4096)
def _may_read(client: Client, application: str, profiles: tuple[str, ...], label: str) -> bool:
    """`client.may_read`, remembered: the same few clients read the same few environments.

    Keyed by the client object, so a reloaded auth file (new Client objects) is checked afresh.
    """
    return client.may_read(application, profiles, label)
