"""Production serving on gunicorn (never Flask's development server).

The worker model is gunicorn's threaded worker (`gthread`): requests are short and bounded, and
GitPython's blocking calls release the GIL. The repository is prepared once in the master (the
sample copied into git, a remote cloned) so that workers never race to create it.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from config_server.app import create_app
from config_server.backends import open_backend
from config_server.sample import ensure_sample_repository
from config_server.settings import Settings


class ConfigServerApplication(BaseApplication):
    """A gunicorn application that builds one config-server app per worker."""

    def __init__(self, settings: Settings, extra: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.extra = extra or {}
        super().__init__()

    def load_config(self) -> None:
        """Translate Settings into gunicorn's settings."""
        options = {
            "bind": [_bind(self.settings.host, self.settings.port)],
            "workers": self.settings.workers,
            "threads": self.settings.threads,
            "worker_class": "gthread",
            "loglevel": self.settings.log_level,
            "accesslog": "-",
            "timeout": 60,
            "graceful_timeout": 10,
            "limit_request_line": 8190,
            "limit_request_fields": 100,
            **self.extra,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        """The WSGI app for one worker."""
        return create_app(self.settings)


def prepare_repository(settings: Settings) -> Settings:
    """Create the sample copy or clone the remote once, before workers start."""
    if not settings.repo:
        settings.repo = str(ensure_sample_repository(settings.data_dir))
    open_backend(settings.repo, settings.cache_dir, settings.default_label).close()
    return settings


def serve(settings: Settings) -> None:
    """Prepare the repository, then run gunicorn until it is stopped."""
    ConfigServerApplication(prepare_repository(settings)).run()


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
