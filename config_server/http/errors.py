"""Every error as a Spring-style JSON body, mapped from exception classes in one place."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from config_server.errors import ConfigServerError, InternalError, RevertRefused, WebhookRejected

log = logging.getLogger(__name__)

#: What a 401 offers: a bearer token, or the token as the password of HTTP Basic.
AUTH_CHALLENGES = ('Bearer realm="config-server"', 'Basic realm="config-server", charset="UTF-8"')


def error_document(status: int, error: str, message: str, path: str, **extra: str) -> dict[str, object]:
    """The fields of a Spring-style JSON error: timestamp, status, error, message, path, and `extra`
    fields such as a refused revert's `command` (also for the fast path, which answers a refused
    long poll's 429 without Flask)."""
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "status": status,
        "error": error,
        "message": message,
        "path": path,
        **extra,
    }


def error_body(status: int, error: str, message: str, **extra: str) -> Response:
    """A Spring-style JSON error: timestamp, status, error, message, path (and `extra` fields)."""
    body = error_document(status, error, message, request.path, **extra)
    return Response(json.dumps(body), status=status, mimetype="application/json")


def register_error_handlers(app: Flask) -> None:
    """Map every error to a JSON body with the right status; never a stack trace. The one place
    that turns the exceptions of `config_server.errors` into answers: a caller-visible error by its
    `status` (a rejected webhook with its own challenge), an `InternalError` as any unexpected one."""

    @app.errorhandler(ConfigServerError)
    def config_error(exc: ConfigServerError) -> Response:
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc)
        command = exc.command if isinstance(exc, RevertRefused) and exc.command else None
        extra = {"command": command} if command else {}
        response = error_body(exc.status, exc.reason, str(exc), **extra)
        if exc.status == 401:
            for challenge in AUTH_CHALLENGES:
                response.headers.add("WWW-Authenticate", challenge)
        if exc.status == 429:
            response.headers["Connection"] = "close"  # a refused poll gives its connection back
        return response

    @app.errorhandler(WebhookRejected)
    def webhook_rejected(exc: WebhookRejected) -> Response:
        log.warning("rejected webhook from %s: %s", request.remote_addr, exc)
        response = error_body(exc.status, exc.reason, str(exc))
        response.headers["WWW-Authenticate"] = 'Signature realm="monitor"'  # not a token's challenge
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return error_body(exc.code or 500, exc.name, exc.description or exc.name)

    @app.errorhandler(TimeoutError)
    def client_too_slow(exc: TimeoutError) -> Response:
        response = error_body(408, "Request Timeout", "the client was too slow sending its request")
        response.headers["Connection"] = "close"
        return response

    @app.errorhandler(InternalError)  # no caller is shown an internal error's message
    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_body(500, "Internal Server Error", "unexpected server error; see the server log")
