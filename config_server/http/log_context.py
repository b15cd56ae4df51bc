"""Which request a log line is about, for `--log-format json` (`observability/log_format.py`).

App log lines written while a Flask request runs get its request id, client and application
through `RequestFields` (a logging filter); gunicorn's access line reads the client and
application from the WSGI environ, where `note_request` puts them (the Flask path after each
request, the fast path when it answers).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from config_server.observability.log_format import (
    APPLICATION_ENVIRON_KEY,
    CLIENT_ENVIRON_KEY,
    request_id_from,
)

#: Route arguments that name the application (`/{app}/{profiles}`, `/rollouts/{application}/...`).
_APPLICATION_ARGUMENTS = ("app", "application")


def note_request(environ: dict[str, Any], client: str | None, application: str | None) -> None:
    """Put the request's client name and application where gunicorn's access line finds them."""
    if client:
        environ[CLIENT_ENVIRON_KEY] = client
    if application:
        environ[APPLICATION_ENVIRON_KEY] = application


def _note_flask_request(response: Response) -> Response:
    fields = _flask_fields()
    note_request(request.environ, fields.get("client"), fields.get("application"))
    return response


def _flask_fields() -> dict[str, str]:
    fields: dict[str, str] = {}
    request_id = request_id_from(request.headers.get("X-Request-Id"))
    if request_id:
        fields["request_id"] = request_id
    client = g.get("client")
    if client is not None:
        fields["client"] = client.name
    for name in _APPLICATION_ARGUMENTS:
        value = (request.view_args or {}).get(name)
        if value:
            fields["application"] = str(value)
            break
    return fields


class RequestFields(logging.Filter):
    """Adds `request_id`, `client` and `application` to records written inside a Flask request."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Never drops a record; only adds the fields it finds."""
        if has_request_context():
            for name, value in _flask_fields().items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


def install(app: Flask) -> None:
    """JSON logs only: register the after-request step that notes the client and application, and
    give the root logger's handlers (`runtime/log_setup.py`) the request's fields. Done here, in
    the worker that builds the app: the gunicorn master never imports Flask."""
    app.after_request(_note_flask_request)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestFields) for f in handler.filters):
            handler.addFilter(RequestFields())
