"""The hottest request, a plain `GET /{app}/{profiles}[/{label}]`, answered without Flask.

Every service instance asks this at start-up, so a release storm is thousands of them. Flask's
request context, routing and response objects cost more than resolving a cached environment, so
this WSGI middleware answers the plain case itself: GET, no query string, no `If-None-Match`, a
path of two or three segments that is not a fixed route or a rendered document. Anything else
goes to the Flask app unchanged. It is installed only on an open server without an audit log (a
server with an auth file or an audit log needs Flask's hooks on every request).

Invariants:
- It answers only 200s, built by `answer.environment_answer` as the Flask view builds them: the
  same bytes (a test compares them, Date aside).
- It never answers an error: any exception, a `ConfigServerError` or not, hands the request to
  Flask, whose JSON error handlers decide the status and body; never a bare 500 from gunicorn.
- Handing over costs no second parse: the service's cache remembers a broken version's error,
  so Flask's attempt at a broken request is a cache hit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from config_server.answer import Answer, environment_answer
from config_server.names import RENDERED_DOCUMENT
from config_server.service import ConfigService

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FastEnvironmentPath:
    """WSGI middleware: plain Environment GETs answered from the cache, the rest passed to Flask."""

    def __init__(self, app: Flask, service: ConfigService, downstream: WSGIApp) -> None:
        self.service = service
        self.downstream = downstream
        self.fixed_paths = frozenset(rule.rule for rule in app.url_map.iter_rules() if not rule.arguments)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answer a plain Environment GET, or hand the request to Flask."""
        answer = self._answer(environ)
        if answer is None:
            return self.downstream(environ, start_response)
        start_response(answer.status_line, list(answer.headers))
        return [answer.body]

    def _answer(self, environ: dict[str, Any]) -> Answer | None:
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
            return None
        if "HTTP_IF_NONE_MATCH" in environ:
            return None
        path = environ.get("PATH_INFO", "")
        parts = path.split("/")
        if len(parts) not in (3, 4) or parts[0] or not all(parts[1:]) or path in self.fixed_paths:
            return None
        if len(parts) == 3 and RENDERED_DOCUMENT.fullmatch(parts[2]):
            return None
        label = parts[3] if len(parts) == 4 else None
        try:
            _, resolved = self.service.environment(parts[1], parts[2], label)
        except Exception:  # noqa: BLE001 - any failure: Flask answers it, with the usual JSON body
            return None
        return environment_answer(resolved, label)
