"""A client given several servers: sticks to one, moves on connection errors and 5xx, never back in
version. Real servers on 127.0.0.1 (the 503 server is a real HTTP server that answers 503)."""

from __future__ import annotations

import pytest

from config_client import ConfigClient
from config_client.cli import main as client_main
from config_client.errors import ConfigUnavailable, ServerError
from config_client.transport import Transport, server_urls
from tests.helpers import LiveServer, free_port, wait_for


def unavailable_app(environ, start_response):
    start_response("503 Service Unavailable", [("Content-Type", "application/json")])
    return [b'{"status": 503, "message": "down for maintenance"}']


def not_found_app(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "application/json")])
    return [b'{"status": 404, "message": "no such label"}']


def test_server_lists_from_arguments_spring_commas_and_the_variable(monkeypatch):
    assert server_urls("http://a:1/, http://b:2") == ["http://a:1", "http://b:2"]
    assert server_urls(["http://a:1", "http://b:2,http://c:3"]) == ["http://a:1", "http://b:2", "http://c:3"]
    monkeypatch.setenv("CONFIG_CLIENT_SERVERS", "http://x:1,http://y:2")
    assert server_urls(None) == ["http://x:1", "http://y:2"]
    monkeypatch.delenv("CONFIG_CLIENT_SERVERS")
    with pytest.raises(ValueError, match="CONFIG_CLIENT_SERVERS"):
        server_urls(None)


def test_sticks_to_the_first_server_that_answers(repo, serve):
    repo.commit({"svc.yml": "a: 1\n"})
    a, b = serve(repo.path), serve(repo.path)
    transport = Transport([a.url, b.url])
    for _ in range(3):
        assert transport.fetch("svc", "default", None).server == a.url
    transport.close()


def test_connection_error_and_5xx_move_to_the_next_server(repo, serve):
    repo.commit({"svc.yml": "a: 1\n"})
    dead = f"http://127.0.0.1:{free_port()}"
    failing = LiveServer(unavailable_app)
    good = serve(repo.path)
    try:
        transport = Transport([dead, failing.url, good.url])
        result = transport.fetch("svc", "default", None)
        assert result.status == 200 and result.server == good.url
        assert transport.server_url == good.url  # and it stays there
        transport.close()
    finally:
        failing.stop()


def test_every_server_failing_raises_the_last_error_and_4xx_does_not_move(repo):
    failing = LiveServer(unavailable_app)
    missing = LiveServer(not_found_app)
    try:
        transport = Transport([f"http://127.0.0.1:{free_port()}", failing.url])
        with pytest.raises(ServerError) as info:
            transport.fetch("svc", "default", None)
        assert info.value.status == 503
        with pytest.raises(ConfigUnavailable):
            Transport([f"http://127.0.0.1:{free_port()}"]).fetch("svc", "default", None)
        transport = Transport([missing.url, failing.url])
        with pytest.raises(ServerError) as info:
            transport.fetch("svc", "default", None)
        assert info.value.status == 404 and transport.server_url == missing.url
    finally:
        failing.stop()
        missing.stop()


def test_watching_client_moves_when_its_server_stops_and_misses_no_version(repo, serve):
    repo.commit({"svc.yml": "a: 1\n"})
    a, b = serve(repo.path), serve(repo.path)
    client = ConfigClient([a.url, b.url], "svc", wait=5, max_backoff=0.5).start()
    try:
        assert client.get("a") == 1
        wait_for(lambda: a.app.extensions["config_server"].hub.watchers() == 1, what="the long poll on a")
        a.stop()
        a.app.extensions["config_server"].hub.close()  # what a killed server does to its long polls
        wait_for(lambda: b.app.extensions["config_server"].hub.watchers() == 1, timeout=5, what="moved to b")
        sha = repo.commit({"svc.yml": "a: 2\n"})
        wait_for(lambda: client.version == sha, what="the next commit through b")
        assert client.get("a") == 2
    finally:
        client.stop()


def test_after_a_move_an_older_version_from_a_lagging_server_is_not_applied(repo, git_daemon, serve):
    """Replica b has not fetched yet (interval fetches off): it answers the version the client held
    before; the client keeps the newer one until b catches up."""
    first = repo.commit({"svc.yml": "a: 1\n"})
    url = git_daemon(repo)
    a = serve(url, refresh_interval=0, cache_dir=str(repo.path.parent / "cache-a"))
    b = serve(url, refresh_interval=0, cache_dir=str(repo.path.parent / "cache-b"))
    client = ConfigClient([a.url, b.url], "svc", wait=2, max_backoff=0.5).start()
    try:
        assert client.version == first
        second = repo.commit({"svc.yml": "a: 2\n"})
        repo.git("push", "--quiet", "origin", "main")
        a.app.extensions["config_server"].detector.refresh_now()
        wait_for(lambda: client.version == second, what="the second commit through a")
        a.stop()
        a.app.extensions["config_server"].hub.close()
        wait_for(lambda: client.transport.server_url == b.url, timeout=5, what="the move to b")
        # b still serves the first commit: the client holds on to the second.
        for _ in range(3):
            assert client.transport.fetch("svc", "default", None, etag=client.snapshot.etag).status == 304
        assert client.version == second and client.get("a") == 2
        third = repo.commit({"svc.yml": "a: 3\n"})
        repo.git("push", "--quiet", "origin", "main")
        b.app.extensions["config_server"].detector.refresh_now()
        wait_for(lambda: client.version == third, what="the third commit through b")
    finally:
        client.stop()


def test_cli_takes_repeated_servers(repo, serve, capsys):
    repo.commit({"svc.yml": "a: 7\n"})
    good = serve(repo.path)
    dead = f"http://127.0.0.1:{free_port()}"
    assert client_main(["get", "--server", dead, "--server", good.url, "svc", "default", "a"]) == 0
    assert capsys.readouterr().out == "7\n"


def test_cli_without_a_server_says_so(monkeypatch, capsys):
    monkeypatch.delenv("CONFIG_CLIENT_SERVERS", raising=False)
    assert client_main(["get", "svc", "default"]) == 2
    assert "CONFIG_CLIENT_SERVERS" in capsys.readouterr().err
