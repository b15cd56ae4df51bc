"""Plain-text resources: `/{app}/{profile}/{label}/{path}` with placeholders substituted."""

from __future__ import annotations

import mimetypes

from flask import Blueprint, Response, request

from config_server.http import security
from config_server.http.context import server_state
from config_server.names import EnvironmentRequest

blueprint = Blueprint("resources", __name__)


@blueprint.get("/<app>/<profiles>/<label>/<path:path>")
def resource(app: str, profiles: str, label: str, path: str) -> Response:
    """A file at a label; with `?useDefaultLabel` the label part is the first folder of the path."""
    if "useDefaultLabel" in request.args:
        return serve_resource(app, profiles, None, f"{label}/{path}")
    return serve_resource(app, profiles, label, path)


def serve_resource(app: str, profiles: str, label: str | None, path: str) -> Response:
    """Answer with the file's (substituted) content and a type guessed from its name."""
    asked = EnvironmentRequest.parse(app, profiles, label)  # 400 naming the first malformed name
    security.require_read(asked)
    service = server_state().service
    content, found, revision = service.resource(asked, path, authorize=security.file_guard())
    security.note("read", resource=found)
    mimetype = mimetypes.guess_type(found)[0] or "text/plain"
    if mimetype.startswith("text/") or mimetype in ("application/json", "application/xml"):
        mimetype += "; charset=utf-8"
    headers = service.answer_headers(asked.application, revision)  # as an Environment answer
    return Response(content, content_type=mimetype, headers=headers)
