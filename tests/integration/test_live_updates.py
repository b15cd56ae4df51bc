"""The client against a real server and real git: hot reload, resilience, and fallbacks."""

import hashlib
import hmac
import json
import logging
import queue
import threading

import flask
import pytest

from config_client import ConfigClient, ConfigUnavailable
from config_client.flask import init_app
from config_server import create_app
from config_server.settings import Settings
from tests.helpers import LiveServer, free_port, wait_for

FILES = {
    "application.yml": "db:\n  host: localhost\n  pool:\n    max: 10\n",
    "orders.yml": "orders:\n  limit: 1\n",
    "payments.yml": "fee: 1\n",
}


class Recorder:
    """A change listener that records what it was given."""

    def __init__(self):
        self.changes = []

    def __call__(self, change):
        self.changes.append(change)


@pytest.fixture
def clients():
    made = []

    def make(*args, **kwargs):
        kwargs.setdefault("wait", 5)
        client = ConfigClient(*args, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()


def test_commit_fires_the_listener_and_updates_reads(repo, serve, clients, tmp_path):
    repo.commit(FILES)
    server = serve(repo.path)
    client = clients(server.url, "orders", "default", cache_dir=tmp_path / "lkg").start()
    assert client.get("orders.limit") == 1
    assert client["db.pool.max"] == 10
    assert client.settings["db"]["host"] == "localhost"
    assert client.version == repo.head()
    recorder = Recorder()
    client.on_change(recorder)
    sha = repo.commit({"orders.yml": "orders:\n  limit: 2\n  extra: yes\n"})
    wait_for(lambda: recorder.changes, what="the listener")
    change = recorder.changes[0]
    assert change.changed == {"orders.limit": (1, 2)}
    assert change.added == {"orders.extra": True}
    assert change.new_version == sha and client.version == sha
    assert client.get("orders.limit") == 2
    saved = json.loads(client.store.path.read_text())
    assert saved["environment"]["version"] == sha


def test_commit_to_another_application_does_not_fire(repo, serve, clients):
    repo.commit(FILES)
    server = serve(repo.path)
    client = clients(server.url, "orders", "default").start()
    recorder = Recorder()
    client.on_change(recorder)
    hub = server.app.extensions["config_server"].hub
    wait_for(lambda: hub.watchers() == 1, what="the client to watch")
    checks = hub.checks
    repo.commit({"payments.yml": "fee: 2\n"})
    wait_for(lambda: hub.checks > checks, what="the server to see the commit")
    repo.commit({"orders.yml": "orders:\n  limit: 3\n"})
    wait_for(lambda: recorder.changes, what="the orders change")
    assert [c.keys for c in recorder.changes] == [["orders.limit"]]


def test_key_filters_and_a_failing_listener(repo, serve, clients):
    repo.commit(FILES)
    server = serve(repo.path)
    client = clients(server.url, "orders", "default").start()
    db_changes, all_changes = Recorder(), Recorder()

    def broken(change):
        raise RuntimeError("listener bug")

    client.on_change(broken)
    client.on_change(db_changes, keys="db.*")
    client.on_change(all_changes)
    repo.commit({"orders.yml": "orders:\n  limit: 5\n"})
    wait_for(lambda: all_changes.changes, what="the first change")
    assert db_changes.changes == []
    repo.commit({"application.yml": "db:\n  host: db2\n  pool:\n    max: 10\n"})
    wait_for(lambda: db_changes.changes, what="the db change")
    assert db_changes.changes[0].keys == ["db.host"]
    assert len(all_changes.changes) == 2


def test_server_restarted_mid_watch_is_reconnected_to(repo, tmp_path, clients):
    repo.commit(FILES)
    port = free_port()
    settings = Settings(repo=str(repo.path), data_dir=str(tmp_path / "d"))
    app = create_app(settings)
    server = LiveServer(app, port)
    try:
        client = clients(server.url, "orders", "default", wait=1, max_backoff=0.5).start()
        recorder = Recorder()
        client.on_change(recorder)
        wait_for(lambda: app.extensions["config_server"].hub.watchers() == 1, what="the watch")
    finally:
        server.stop()
        app.extensions["config_server"].close()
    repo.commit({"orders.yml": "orders:\n  limit: 7\n"})
    app = create_app(settings)
    server = LiveServer(app, port)
    try:
        wait_for(lambda: client.get("orders.limit") == 7, timeout=20, what="the reconnect")
        assert recorder.changes[-1].changed == {"orders.limit": (1, 7)}
    finally:
        server.stop()
        app.extensions["config_server"].close()


def test_server_down_at_start_uses_the_cached_copy(repo, serve, clients, tmp_path, caplog):
    repo.commit(FILES)
    server = serve(repo.path)
    cache = tmp_path / "lkg"
    first = clients(server.url, "orders", "default", cache_dir=cache, watch=False).start()
    assert first.source == "server"
    dead = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING):
        client = clients(
            dead, "orders", "default", cache_dir=cache, fail_fast=True, start_attempts=2, watch=False
        ).start()
    assert client.source == "cache"
    assert client.get("orders.limit") == 1
    assert client.version == repo.head()
    assert "last-known-good" in caplog.text


def test_fail_fast_without_a_copy_raises(clients, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    client = clients(
        dead, "orders", "default", cache_dir=tmp_path / "none", fail_fast=True, start_attempts=1, watch=False
    )
    with pytest.raises(ConfigUnavailable, match="no last-known-good copy"):
        client.start()


def test_without_fail_fast_a_dead_server_starts_empty_and_catches_up(repo, tmp_path, clients):
    repo.commit(FILES)
    port = free_port()
    client = clients(
        f"http://127.0.0.1:{port}", "orders", "default", start_attempts=1, max_backoff=0.3
    ).start()
    assert client.get("orders.limit") is None and client.source == "none"
    app = create_app(Settings(repo=str(repo.path), data_dir=str(tmp_path / "d")))
    server = LiveServer(app, port)
    try:
        wait_for(lambda: client.get("orders.limit") == 1, timeout=20, what="the late fetch")
    finally:
        server.stop()
        app.extensions["config_server"].close()


def test_corrupt_copy_is_ignored(repo, clients, tmp_path, caplog):
    cache = tmp_path / "lkg"
    client = clients(
        f"http://127.0.0.1:{free_port()}", "orders", "default", cache_dir=cache, start_attempts=1, watch=False
    )
    cache.mkdir()
    client.store.path.write_text("garbage")
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigUnavailable):
        client.fail_fast = True
        client.start()
    assert "corrupt" in caplog.text


def test_broken_yaml_is_not_applied_and_the_next_good_commit_is(repo, serve, clients):
    repo.commit(FILES)
    server = serve(repo.path)
    client = clients(server.url, "orders", "default", max_backoff=0.3).start()
    recorder = Recorder()
    client.on_change(recorder)
    hub = server.app.extensions["config_server"].hub
    wait_for(lambda: hub.watchers() == 1, what="the watch")
    checks = hub.checks
    repo.commit({"orders.yml": "orders: [broken\n"})
    wait_for(lambda: hub.checks > checks, what="the broken commit to be seen")
    assert client.get("orders.limit") == 1
    repo.commit({"orders.yml": "orders:\n  limit: 8\n"})
    wait_for(lambda: client.get("orders.limit") == 8, what="the good commit")
    assert [c.changed for c in recorder.changes] == [{"orders.limit": (1, 8)}]


def test_signed_webhook_for_a_remote_reaches_the_client(repo, git_daemon, serve, clients):
    repo.commit(FILES)
    url = git_daemon(repo)
    secret = "s3cret"
    server = serve(url, refresh_interval=0, webhook_secret=secret, watch=False)
    client = clients(server.url, "orders", "default").start()
    wait_for(lambda: server.app.extensions["config_server"].hub.watchers() == 1, what="the watch")
    sha = repo.commit({"orders-dev.yml": "x: 1\n", "orders.yml": "orders:\n  limit: 4\n"})
    repo.git("push", "--quiet", "origin", "main")
    body = json.dumps({"commits": [{"modified": ["orders.yml"]}]}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    import requests

    response = requests.post(
        f"{server.url}/monitor",
        data=body,
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": signature},
    )
    assert response.status_code == 200
    wait_for(lambda: client.version == sha, what="the pushed commit")
    assert client.get("orders.limit") == 4


def spring_like_server(state):
    """A stand-in for a real Spring Cloud Config server: no ETag, no long poll (it cannot run here)."""
    app = flask.Flask("spring-like")

    @app.get("/<app_name>/<profiles>")
    def environment(app_name, profiles):
        state["requests"].put(flask.request.args.get("wait"))
        if state.get("broken"):
            return flask.Response("{not json", mimetype="application/json")
        return flask.jsonify(
            {
                "name": app_name,
                "profiles": [profiles],
                "label": None,
                "version": state["version"],
                "state": None,
                "propertySources": [{"name": "x", "source": state["source"]}],
            }
        )

    return app


def test_falls_back_to_polling_without_long_poll_and_never_applies_garbage(clients):
    state = {"version": "1", "source": {"a": 1}, "requests": queue.Queue()}
    server = LiveServer(spring_like_server(state))
    try:
        client = clients(server.url, "svc", "default", poll_interval=0.05, max_backoff=0.1).start()
        recorder = Recorder()
        client.on_change(recorder)
        wait_for(lambda: not client.long_poll, what="the switch to polling")
        state["broken"] = True
        seen = state["requests"].qsize()
        wait_for(lambda: state["requests"].qsize() > seen + 2, what="polls of a broken answer")
        assert client.get("a") == 1 and recorder.changes == []
        state.update(broken=False, version="2", source={"a": 2})
        wait_for(lambda: client.get("a") == 2, what="the polled change")
        assert recorder.changes[0].changed == {"a": (1, 2)}
    finally:
        server.stop()


def test_flask_integration_keeps_app_config_current(repo, serve, clients):
    repo.commit(FILES)
    server = serve(repo.path)
    client = clients(server.url, "orders", "default").start()
    app = flask.Flask("service")
    init_app(app, client)
    assert app.config["orders.limit"] == 1
    repo.commit({"orders.yml": "orders:\n  other: 1\n"})
    wait_for(lambda: "orders.limit" not in app.config, what="app.config to update")
    assert app.config["orders.other"] == 1


def test_reads_are_consistent_during_changes(repo, serve, clients):
    repo.commit({"orders.yml": "a: 0\nb: 0\n"})
    server = serve(repo.path)
    client = clients(server.url, "orders", "default").start()
    torn = []
    done = threading.Event()

    def reader():
        while not done.is_set():
            snap = client.snapshot
            if snap.get("a") != snap.get("b"):
                torn.append((snap.get("a"), snap.get("b")))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, 4):
            repo.commit({"orders.yml": f"a: {i}\nb: {i}\n"})
            wait_for(lambda i=i: client.get("a") == i, what=f"version {i}")
    finally:
        done.set()
        thread.join()
    assert torn == []
