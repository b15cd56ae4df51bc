"""Test helpers: real git repositories, real HTTP servers and waiting on conditions with deadlines."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import make_server

#: Spring Cloud Config's own test vector: "SUPER SECRET" encrypted under the key "foo".
SPRING_VECTOR = "d1b2458ccede07c856ff952bd841638ff4dd12ed1d36812663c3c7262d57bf46"

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": os.environ.get("HOME", "/tmp"),
}


class GitRepo:
    """A real git repository in a temporary folder, with a helper that commits a dict of files."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", f"--initial-branch={branch}")

    def git(self, *args: str) -> str:
        """Run git in the repository and return its output."""
        return subprocess.run(
            ["git", *args], cwd=self.path, env=GIT_ENV, check=True, capture_output=True, text=True
        ).stdout.strip()

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        """Write (or, for None, delete) files, commit them all and return the commit id."""
        for name, content in files.items():
            target = self.path / name
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        """The commit id of HEAD."""
        return self.git("rev-parse", "HEAD")


class LiveServer:
    """A WSGI app on a real HTTP server on 127.0.0.1, on a port the OS chose."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self.server.server_port

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def free_port() -> int:
    """A TCP port that was free a moment ago (for servers that cannot take port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns a truthy value, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last_error = exc
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}" + (f": {last_error}" if last_error else ""))


def port_open(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ready(url: str) -> bool:
    """True when `url` answers HTTP at all (a raw TCP probe would leave an idle connection behind)."""
    import requests

    try:
        requests.get(url, timeout=1)
        return True
    except requests.ConnectionError:
        return False


#: gevent's own blocking monitor (`--blocking-monitor`), on in every gevent server a test starts: a
#: greenlet that keeps the event loop for longer than this many seconds is reported (with its
#: stack) on the server's standard error, and the `server_process` fixture fails the test (see
#: `blocking_reports`).
BLOCKING_MONITOR_ENV = {"CONFIG_SERVER_BLOCKING_MONITOR": "0.1"}


def blocking_reports(log: str) -> list[str]:
    """gevent's blocking-monitor reports in a server's standard error, each with the blocked stack."""
    return [chunk.strip()[:4000] for chunk in log.split("=" * 80)[1:] if " appears to be blocked" in chunk]


class ServerProcess:
    """`config-server serve` on gunicorn in a subprocess; `stop()` ends it and returns its stderr.

    gevent's blocking monitor is on (BLOCKING_MONITOR_ENV); `expect_blocking` lets a test that
    blocks the event loop on purpose say so. `command` replaces `config-server serve` (a `{port}`
    in it becomes the port picked).
    """

    def __init__(
        self,
        args: list[str],
        tmp: Path,
        env: dict[str, str] | None = None,
        scheme: str = "http",
        command: list[str] | None = None,
        capture_stdout: bool = False,
    ):
        import sys

        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log_path = tmp / f"server-{self.port}.log"
        self.expect_blocking = False
        self._log = self.log_path.open("w")
        #: With `capture_stdout`, the server's standard output (access lines) goes to this file.
        self.out_path = tmp / f"server-{self.port}.out" if capture_stdout else None
        self._out = self.out_path.open("w") if self.out_path else None
        if command is None:
            command = [str(Path(sys.executable).with_name("config-server")), "serve", "--port", "{port}"]
            command += ["--data-dir", str(tmp / "data")]
        command = [part.replace("{port}", str(self.port)) for part in command]
        self.process = subprocess.Popen(
            [*command, *args],
            env={**os.environ, **BLOCKING_MONITOR_ENV, **(env or {})},
            stdout=self._out or subprocess.DEVNULL,
            stderr=self._log,
        )

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 30) -> ServerProcess:
        """Wait until `probe()` is true, failing early with the log if the server died."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()}")
            return probe()

        wait_for(ready, timeout=timeout, what="config-server to listen")
        return self

    def stop(self) -> str:
        """Terminate the server, wait for it and return what it wrote to standard error."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()
        if self._out:
            self._out.close()
        return self.log_path.read_text()


def wsgi_layers(app: Any) -> list[str]:
    """The class names of the WSGI middleware wrapped around a Flask app's own `wsgi_app`, outermost first."""
    names = []
    layer = app.wsgi_app
    while layer is not None and not hasattr(layer, "__self__"):  # down to Flask's bound wsgi_app
        names.append(type(layer).__name__)
        layer = getattr(layer, "app", None) or getattr(layer, "downstream", None)
    return names


class RedisServer:
    """A real `redis-server` on 127.0.0.1 (no persistence) that a test can stop and start again."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp
        self.log_path = tmp / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        """Start it on its port and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.log_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), what="redis-server to listen")
        return self

    def stop(self) -> None:
        """Stop it (and wait, with a deadline) if it runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


def held_long_polls(server) -> int:
    """Long polls held by the server (every worker), from its metrics."""
    text = requests.get(f"{server.url}/metrics", timeout=2).text
    match = re.search(r"^config_server_watchers (\d+)", text, re.M)
    return int(match.group(1)) if match else 0


def served(service: Any, application: str, profiles: str, label: str | None = None) -> tuple[Any, ...]:
    """Everything a `ConfigService` answers a request that may differ between two services: body,
    ETag, settings, the versions served and held back, the headers' facts; or the error."""
    from config_server.errors import ConfigServerError
    from config_server.names import EnvironmentRequest

    try:
        revision, resolved = service.environment(EnvironmentRequest.parse(application, profiles, label))
    except ConfigServerError as exc:
        return ("error", type(exc).__name__, str(exc))
    return (
        resolved.body(label),
        resolved.etag,
        resolved.merged_resolved,
        resolved.environment.version,
        revision.version,
        revision.held_back,
        revision.hold_reason,
        revision.pin,
    )
