"""WSGI middleware: a percent-encoded slash (`%2F`) inside a path segment means the same as `(_)`.

Servers decode `%2F` into `/` before routing, which would split `feature%2Fx` into two segments.
We decide that an encoded slash is always part of its segment: the middleware reads the raw
request URI and rewrites each `%2F` to `(_)`, the Spring Cloud Config spelling of a `/` in a label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class EncodedSlashMiddleware:
    """Rewrites PATH_INFO so that `%2F` stays inside its segment as `(_)`."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Rewrite the path when the raw URI holds an encoded slash, then call the app."""
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        raw_path = raw.split("?", 1)[0]
        if "://" in raw_path:
            raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
        if "%2f" in raw_path.lower():
            segments = [
                unquote_to_bytes(seg.replace("%2F", "(_)").replace("%2f", "(_)")).decode("latin-1")
                for seg in raw_path.split("/")
            ]
            path = "/".join(segments)
            script = environ.get("SCRIPT_NAME", "")
            if script and path.startswith(script):
                path = path[len(script) :]
            environ["PATH_INFO"] = path
        return self.app(environ, start_response)
