"""Environment JSON (`/{app}/{profiles}[/{label}]`) and the rendered formats (`/{app}-{profiles}.yml`)."""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, request

from config_server import render
from config_server.errors import ResourceNotFound
from config_server.http.resources import serve_resource
from config_server.service import ConfigService

blueprint = Blueprint("environment", __name__)

_RENDERED = re.compile(r"(?P<app>.+)-(?P<profiles>[^-]+)\.(?P<ext>yml|yaml|properties|json)")
_FORMATS = {
    "yml": (render.to_yaml, "text/plain; charset=utf-8"),
    "yaml": (render.to_yaml, "text/plain; charset=utf-8"),
    "properties": (render.to_properties, "text/plain; charset=utf-8"),
    "json": (render.to_json, "application/json"),
}


def _service() -> ConfigService:
    return current_app.extensions["config_service"]


@blueprint.get("/<name>")
def rendered_default_label(name: str) -> Response:
    """`/{app}-{profiles}.{ext}` at the default label."""
    return _rendered(None, name)


@blueprint.get("/<first>/<second>")
def environment_or_rendered(first: str, second: str) -> Response:
    """`/{app}/{profiles}`, or `/{label}/{app}-{profiles}.{ext}` when the second part has an extension."""
    if _RENDERED.fullmatch(second):
        return _rendered(first, second)
    return environment(first, second, None)


@blueprint.get("/<app>/<profiles>/<label>")
def environment_with_label(app: str, profiles: str, label: str) -> Response:
    """`/{app}/{profiles}/{label}`, or a plain-text file at the default label with `?useDefaultLabel`."""
    if "useDefaultLabel" in request.args:
        return serve_resource(app, profiles, None, label)
    return environment(app, profiles, label)


def environment(app: str, profiles: str, label: str | None) -> Response:
    """The Environment JSON with a content ETag; `If-None-Match` with that ETag answers 304."""
    _, resolved = _service().environment(app, profiles, label)
    headers = {"ETag": f'"{resolved.etag}"', "Cache-Control": "no-cache"}
    if request.if_none_match.contains(resolved.etag):
        return Response(status=304, headers=headers)
    return Response(resolved.body(label), mimetype="application/json", headers=headers)


def _rendered(label: str | None, name: str) -> Response:
    match = _RENDERED.fullmatch(name)
    if not match:
        raise ResourceNotFound(
            f"{name!r} is not a rendered configuration: use {{application}}-{{profiles}}.yml, "
            ".yaml, .properties or .json"
        )
    _, resolved = _service().environment(match["app"], match["profiles"], label)
    placeholders = request.args.get("resolvePlaceholders", "true").lower() != "false"
    settings = resolved.merged_resolved if placeholders else resolved.merged
    renderer, mimetype = _FORMATS[match["ext"]]
    return Response(renderer(settings), content_type=mimetype, headers={"ETag": f'"{resolved.etag}"'})
