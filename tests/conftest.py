"""Fixtures: real git repositories, a real HTTP server per app, and a real `git daemon`."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from config_server import create_app
from config_server.settings import Settings
from tests.helpers import (
    GIT_ENV,
    GitRepo,
    LiveServer,
    RedisServer,
    ServerProcess,
    blocking_reports,
    free_port,
    port_open,
    wait_for,
)


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    """An empty git repository on branch main."""
    return GitRepo(tmp_path / "repo")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start create_app(settings) on a real HTTP server; every server is stopped afterwards."""
    servers: list[LiveServer] = []
    apps = []

    def start(repo: str | Path, **settings) -> LiveServer:
        settings.setdefault("data_dir", str(tmp_path / "data"))
        app = create_app(Settings(repo=str(repo), **settings))
        apps.append(app)
        server = LiveServer(app)
        server.app = app
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    for app in apps:
        app.extensions["config_server"].close()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A requests session, closed afterwards."""
    with requests.Session() as session:
        yield session


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[Callable[[GitRepo], str]]:
    """Serve bare copies of repositories over `git daemon` on 127.0.0.1; returns git:// URLs."""
    base = tmp_path / "daemon"
    base.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        env=GIT_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: port_open(port), what="git daemon to listen")

        def publish(repo: GitRepo, name: str = "config.git") -> str:
            subprocess.run(
                ["git", "clone", "--quiet", "--bare", str(repo.path), str(base / name)],
                env=GIT_ENV,
                check=True,
                capture_output=True,
            )
            if "origin" not in repo.git("remote").split():
                repo.git("remote", "add", "origin", str(base / name))
            return f"git://127.0.0.1:{port}/{name}"

        yield publish
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start `config-server serve` subprocesses (gunicorn); every one is stopped afterwards."""
    started: list[ServerProcess] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        scheme: str = "http",
        command: list[str] | None = None,
        capture_stdout: bool = False,
    ) -> ServerProcess:
        server = ServerProcess(list(args), tmp_path, env, scheme, command, capture_stdout)
        started.append(server)
        return server

    yield start
    blocked = []
    for server in started:
        log = server.stop()
        if not server.expect_blocking:
            blocked += blocking_reports(log)
    if blocked:
        pytest.fail(f"the gevent event loop was blocked ({len(blocked)} reports):\n" + "\n\n".join(blocked))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real `redis-server` on a free port, stopped afterwards even when the test fails."""
    server = RedisServer(tmp_path)
    try:
        yield server.start()
    finally:
        server.stop()
