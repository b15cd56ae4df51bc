"""Fixtures for client tests: clients stopped afterwards, and a scripted Environment server.

`env_server` is a real HTTP server on 127.0.0.1 that answers the Environment endpoint with
whatever the test set (ETag, conditional GET and `?wait=` long poll as our server does). It exists
for versions our own server no longer sends (it holds back a list index over the bound or an
undecryptable value), which older servers and Spring Cloud Config still send: the client's own
defence can only be shown against a server that sends them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from config_client import ConfigClient


def environment(source: dict[str, Any], version: str = "v1", name: str = "orders") -> dict[str, Any]:
    """An Environment with one property source."""
    return {
        "name": name,
        "profiles": ["default"],
        "label": None,
        "version": version,
        "state": None,
        "propertySources": [{"name": f"repo/{name}.yml", "source": source}],
    }


class EnvServer:
    """Serves one Environment (any app/profile path) with an ETag; `publish()` changes it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.body = b""
        self.etag = ""
        self.requests: list[dict[str, str]] = []
        self.publish(environment({}, version="v0"))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(dict(self.headers.items()))
                wait = float(parse_qs(urlsplit(self.path).query).get("wait", ["0"])[0])
                asked = (self.headers.get("If-None-Match") or "").strip('"')
                with server._changed:
                    if asked == server.etag and wait:
                        server._changed.wait_for(lambda: asked != server.etag, timeout=wait)
                    body, etag = server.body, server.etag
                if asked == etag:
                    self.send_response(304)
                    self.send_header("ETag", f'"{etag}"')
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{etag}"')
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def publish(self, env: dict[str, Any]) -> None:
        """Serve `env` from now on and wake held long polls."""
        body = json.dumps(env).encode()
        with self._changed:
            self.body = body
            self.etag = hashlib.sha256(body).hexdigest()[:16]
            self._changed.notify_all()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def env_server() -> Iterator[EnvServer]:
    """A scripted Environment server, stopped afterwards."""
    server = EnvServer()
    yield server
    server.stop()


@pytest.fixture
def clients() -> Iterator[Any]:
    """Make ConfigClients (short long polls); every one is stopped afterwards."""
    made: list[ConfigClient] = []

    def make(*args: Any, **kwargs: Any) -> ConfigClient:
        kwargs.setdefault("wait", 2)
        client = ConfigClient(*args, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()
