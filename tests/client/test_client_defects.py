"""Regression tests for the client defects of issue 8 (item 9, and the client side of items 2 and 3).

Each test is named after what it guards and failed before its fix.
"""

from __future__ import annotations

import sys
import threading

import pytest
import requests

from config_client import ConfigClient, RejectedVersion
from config_client import cli as client_cli
from config_client.snapshot import Snapshot, unflatten
from config_server import create_app
from config_server.http.auth import hash_token
from config_server.settings import Settings
from tests.client.conftest import environment
from tests.helpers import LiveServer, free_port, wait_for


def test_diff_reports_one_to_true_and_zero_to_false():
    old = Snapshot(environment({"a": 1, "b": 0, "c": 1.0, "d": "x"}), etag="1")
    new = Snapshot(environment({"a": True, "b": False, "c": 1, "d": "x"}, version="v2"), etag="2")
    change = old.diff(new)
    assert change.changed == {"a": (1, True), "b": (0, False), "c": (1.0, 1)}


def test_listeners_registered_concurrently_are_all_kept(repo, serve, clients):
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    client = clients(server.url, "orders").start()
    calls: list[int] = []
    threads, per_thread = 8, 300
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a lost update shows
    try:

        def register() -> None:
            for _ in range(per_thread):
                client.on_change(lambda change: calls.append(1))
                client.on_change(lambda change: None)()  # subscribe and unsubscribe at once

        workers = [threading.Thread(target=register) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(previous)
    repo.commit({"orders.yml": "a: 2\n"})
    wait_for(lambda: client.get("a") == 2, what="the change")
    wait_for(lambda: len(calls) >= threads * per_thread, timeout=5, what="every listener")
    assert len(calls) == threads * per_thread


class HoldNextAnswer:
    """WSGI middleware: once armed, the next answer is produced at once, then held until released
    (a slow network between the server and one request)."""

    def __init__(self, app):
        self.app = app
        self.armed = False
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self, environ, start_response):
        if not self.armed:
            return self.app(environ, start_response)
        self.armed = False
        captured = {}

        def capture(status, headers, exc_info=None):
            captured.update(status=status, headers=headers)
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        self.held.set()
        self.release.wait(10)
        start_response(captured["status"], captured["headers"])
        return [body]


def test_concurrent_refresh_never_applies_an_older_answer(repo, serve, clients):
    repo.commit({"orders.yml": "v: 1\n"})
    server = serve(repo.path)
    gate = HoldNextAnswer(server.app)
    front = LiveServer(gate)
    try:
        client = clients(front.url, "orders", watch=False).start()

        def serves(sha: str) -> bool:
            return requests.get(f"{server.url}/orders/default", timeout=5).json()["version"] == sha

        second = repo.commit({"orders.yml": "v: 2\n"})
        wait_for(lambda: serves(second), what="the server to see the second commit")
        gate.armed = True
        errors: list[BaseException] = []

        def slow_refresh() -> None:
            try:
                client.refresh()
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        slow = threading.Thread(target=slow_refresh)
        slow.start()
        wait_for(gate.held.is_set, what="the first refresh's answer (version 2) to be held")
        third = repo.commit({"orders.yml": "v: 3\n"})
        wait_for(lambda: serves(third), what="the server to see the third commit")
        assert client.refresh() is True
        assert client.version == third
        gate.release.set()
        slow.join(10)
        assert not errors
        assert client.version == third and client.get("v") == 3
    finally:
        gate.release.set()
        front.stop()


def test_source_becomes_server_when_the_server_confirms_the_cached_version(repo, tmp_path, clients):
    repo.commit({"orders.yml": "a: 1\n"})
    port = free_port()
    app = create_app(Settings(repo=str(repo.path), data_dir=str(tmp_path / "d")))
    try:
        server = LiveServer(app, port)
        clients(server.url, "orders", cache_dir=tmp_path / "lkg", watch=False).start()
        server.stop()
        client = clients(
            server.url, "orders", cache_dir=tmp_path / "lkg", start_attempts=1, wait=1, max_backoff=0.2
        ).start()
        assert client.source == "cache" and client.get("a") == 1
        server = LiveServer(app, port)  # back, with the very version the copy holds
        wait_for(lambda: client.source == "server", what="the client to see the server again")
        assert client.get("a") == 1
        server.stop()
    finally:
        app.extensions["config_server"].close()


def test_token_is_read_from_config_client_token_env(repo, serve, tmp_path, monkeypatch, capsys):
    repo.commit({"orders.yml": "a: 7\n"})
    token = "token-of-orders-" + "x" * 20
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(
        f"clients:\n  - name: orders\n    tokens: [{hash_token(token)}]\n    roles: [read]\n"
    )
    server = serve(repo.path, auth_file=str(auth_file))
    with pytest.raises(Exception, match="401"):
        ConfigClient(server.url, "orders", fail_fast=True, start_attempts=1, watch=False).start()
    monkeypatch.setenv("CONFIG_CLIENT_TOKEN", token)
    client = ConfigClient(server.url, "orders", fail_fast=True, start_attempts=1, watch=False).start()
    assert client.get("a") == 7
    assert client_cli.main(["get", "--server", server.url, "orders", "default", "a"]) == 0
    assert capsys.readouterr().out == "7\n"


def test_huge_list_index_is_refused_and_last_good_settings_kept(env_server, clients):
    env_server.publish(environment({"servers[0]": "a", "name": "one"}, version="good"))
    client = clients(env_server.url, "orders").start()
    seen = []
    client.on_change(seen.append)
    env_server.publish(environment({"servers[2000000000]": "x", "name": "two"}, version="bomb"))
    wait_for(lambda: client.rejected, what="the version to be refused")
    assert client.rejected[0] == "bomb" and "servers[2000000000]" in client.rejected[1]
    assert client.version == "good" and client.settings == {"servers": ["a"], "name": "one"}
    assert seen == []
    with pytest.raises(RejectedVersion):
        Snapshot(environment({"servers[10001]": "x"}))
    assert Snapshot(environment({"servers[10000]": "x"})).get("servers[10000]") == "x"
    assert unflatten({"l[2000000000]": 1}) == {"l": []}  # bounded even when called directly


def test_undecryptable_value_version_is_not_applied(env_server, clients, tmp_path):
    env_server.publish(environment({"password": "s3cret"}, version="good"))
    client = clients(env_server.url, "orders", cache_dir=tmp_path / "lkg").start()
    env_server.publish(environment({"invalid.password": "<n/a>"}, version="no-key"))
    wait_for(lambda: client.rejected, what="the version to be refused")
    assert "password" in client.rejected[1]
    assert client.get("password") == "s3cret" and client.version == "good"
    assert '"good"' in client.store.path.read_text()
    env_server.publish(environment({"password": "n3w"}, version="repaired"))
    wait_for(lambda: client.version == "repaired", what="the repair")
    assert client.rejected is None and client.get("password") == "n3w"


def test_first_version_refused_falls_back_to_last_good_copy(env_server, clients, tmp_path):
    env_server.publish(environment({"a": 1}, version="good"))
    clients(env_server.url, "orders", cache_dir=tmp_path / "lkg", watch=False).start()
    env_server.publish(environment({"invalid.a": "<n/a>"}, version="bad"))
    client = clients(env_server.url, "orders", cache_dir=tmp_path / "lkg", fail_fast=True).start()
    assert client.version == "good" and client.source == "cache" and client.rejected[0] == "bad"
