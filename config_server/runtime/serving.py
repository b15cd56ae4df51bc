"""Production serving on gunicorn (never Flask's development server).

The default worker model is gunicorn's gevent worker: a long-poll watcher is a parked greenlet
(a few KiB) instead of a thread (a stack and a scheduler slot), so one worker holds many thousands
of them; see docs/serving.md. The repository is prepared once in the master (the sample copied
into git, a remote cloned or fetched by `mirror.Mirror`, git as a subprocess, no GitPython
process or handle left open to be inherited) so that workers never race to create it.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from config_server.backends.mirror import Mirror
from config_server.backends.repo_spec import is_remote
from config_server.backends.sample import ensure_sample_repository
from config_server.backends.ssh import check_ssh_files, ssh_options
from config_server.content.crypto import load_keyring
from config_server.http.auth import AuthFile
from config_server.http.hosts import is_loopback
from config_server.runtime.log_setup import JSON_GUNICORN_LOGGER
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
            "worker_class": WORKER_CLASSES[self.settings.worker_class],
            "worker_connections": self.settings.worker_connections,
            "loglevel": self.settings.log_level,
            "accesslog": "-" if self.settings.access_log else None,
            "timeout": math.ceil(self.settings.worker_timeout),
            "keepalive": max(1, math.ceil(self.settings.client_timeout)),
            "graceful_timeout": 10,
            "control_socket_disable": True,
            "limit_request_line": 8190,
            "limit_request_fields": 100,
            "limit_request_field_size": 8190,
            "reuse_port": self.settings.reuse_port,
            "sendfile": False,  # the worker joins headers and body in one write; see gevent_worker.py
            **self.extra,
        }
        if self.settings.log_format == "json":
            options["logger_class"] = JSON_GUNICORN_LOGGER
        if self.settings.certfile:
            options.update(certfile=self.settings.certfile, keyfile=self.settings.keyfile)
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Callable[..., Iterable[bytes]]:
        """The WSGI app for one worker (imported here, after the worker patched the library)."""
        from config_server.app import create_app

        return create_app(self.settings)


log = logging.getLogger(__name__)

WORKER_CLASSES = {"gevent": "config_server.runtime.gevent_worker.GeventWorker", "gthread": "gthread"}


def prepare_repository(settings: Settings) -> Settings:
    """Before workers start: seed the sample repository, check a local one exists, or clone
    (or refresh) a remote's mirror once, so workers neither race to clone it nor get killed
    while a slow clone runs. A remote that cannot be reached is logged; the workers retry it.
    """
    if not settings.repo:
        settings.repo = str(ensure_sample_repository(settings.data_dir))
    elif is_remote(settings.repo):
        mirror = Mirror(
            settings.repo, settings.cache_dir or Path(settings.data_dir) / "cache", ssh_options(settings)
        )
        present = mirror.exists()
        if not mirror.refresh():
            log.warning(
                "cannot %s %s before starting workers: %s",
                "refresh" if present else "clone",
                mirror.uri,
                mirror.last_error,
            )
    elif not Path(settings.repo).is_dir():
        raise FileNotFoundError(f"repository {settings.repo} does not exist")
    return settings


def check_security(settings: Settings) -> None:
    """Read the key and auth files once before workers start, so a mistake stops the start-up."""
    load_keyring(settings.encrypt_key, settings.encrypt_key_file, settings.encrypt_salt)
    if settings.auth_file:
        AuthFile(settings.auth_file)
    for path in (settings.certfile, settings.keyfile):
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"TLS file {path} does not exist")
    check_ssh_files(ssh_options(settings))
    warning = open_server_warning(settings)
    if warning:
        log.warning(warning)


def open_server_warning(settings: Settings) -> str | None:
    """A loud warning when the server has no auth file and listens beyond the loopback address."""
    if settings.auth_file or is_loopback(settings.host):
        return None
    return (
        f"!!! OPEN SERVER: no --auth-file, listening on {settings.host}: anyone who can reach port "
        f"{settings.port} reads every application's configuration, secrets decrypted. "
        "Configure --auth-file (docs/security.md). !!!"
    )


def serve(settings: Settings) -> None:
    """Check the settings, prepare the repository, then run gunicorn until it is stopped."""
    check_security(settings)
    if settings.reuse_port:
        check_port_free(settings.host, settings.port)
    prepare_metrics(settings.data_dir)
    ConfigServerApplication(prepare_repository(settings), {"child_exit": _worker_exited}).run()


def check_port_free(host: str, port: int) -> None:
    """With --reuse-port, before workers start: bind the port *without* SO_REUSEPORT, so that a
    port held by any listener (another reuse-port server too, which would otherwise share it
    silently and take half of our connections) stops the start-up with a clear error.
    """
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            try:
                probe.bind(address)
            except OSError as exc:
                raise OSError(
                    f"port {port} on {host} is in use ({exc.strerror}); with --reuse-port a second "
                    "server would share it silently, so this one does not start"
                ) from exc


#: prometheus-client picks its multiprocess mode when it is first imported, so the master sets this
#: before it (or any worker forked from it) imports the library.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics(data_dir: str) -> Path:
    """In the master, before workers fork: an empty `<data-dir>/metrics` shared by all workers."""
    folder = Path(data_dir).resolve() / "metrics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[METRICS_DIR_ENV] = str(folder)
    return folder


def _worker_exited(server: Any, worker: Any) -> None:
    """gunicorn's child_exit: forget the exited worker's live gauges (its counters stay counted)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
