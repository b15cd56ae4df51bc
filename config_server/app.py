"""`create_app(settings)`: the Flask app factory that the CLI, tests and embedders use."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from config_server.backends import Backend, open_backend
from config_server.errors import ConfigServerError
from config_server.http import admin, environment, resources
from config_server.sample import ensure_sample_repository
from config_server.service import ConfigService
from config_server.settings import Settings
from config_server.wsgi import EncodedSlashMiddleware

log = logging.getLogger(__name__)

#: Largest request body accepted (webhooks, encrypt): anything bigger is a 413.
MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> Flask:
    """Build the app for `settings` (or defaults); `backend` may be given to embed another source."""
    settings = (settings or Settings()).validate()
    if backend is None:
        spec = settings.repo or str(ensure_sample_repository(settings.data_dir))
        backend = open_backend(spec, settings.cache_dir, settings.default_label)
    service = ConfigService(backend, settings.search_paths, settings.cache_size)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["config_service"] = service
    app.extensions["config_settings"] = settings
    app.register_blueprint(admin.blueprint)
    app.register_blueprint(environment.blueprint)
    app.register_blueprint(resources.blueprint)
    _register_error_handlers(app)
    app.wsgi_app = EncodedSlashMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    if backend_is_remote(backend) and settings.refresh_interval > 0:
        start_refresh_loop(backend, settings.refresh_interval)
    return app


def backend_is_remote(backend: Backend) -> bool:
    """True for a backend that needs background fetching."""
    return bool(getattr(backend, "remote", False))


def start_refresh_loop(backend: Backend, interval: float) -> threading.Event:
    """Fetch the remote every `interval` seconds in a daemon thread; set the event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                backend.refresh()
            except Exception:  # noqa: BLE001 - a failed refresh must never end the loop
                log.exception("background refresh failed")

    threading.Thread(target=loop, name="config-refresh", daemon=True).start()
    return stop


def error_body(status: int, error: str, message: str) -> Response:
    """A Spring-style JSON error: timestamp, status, error, message, path."""
    body = {
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "status": status,
        "error": error,
        "message": message,
        "path": request.path,
    }
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ConfigServerError)
    def config_error(exc: ConfigServerError) -> Response:
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc)
        return error_body(exc.status, exc.reason, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return error_body(exc.code or 500, exc.name, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_body(500, "Internal Server Error", "unexpected server error; see the server log")
