"""Replicas that agree through a real Redis: two `config-server serve` processes (gunicorn, two
workers each), each with its own mirror of one bare repository served by `git daemon`.

Interval fetches are off (`--refresh-interval 0`) unless a test says otherwise, so a change that
reaches the second replica can only have come through Redis.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from config_client import ConfigClient
from config_server.delivery.cluster import STREAM_KEY, ClusterLink, Hint
from config_server.settings import Settings
from tests.helpers import RedisServer, held_long_polls, http_ready, wait_for


def start_replica(server_process, tmp_path, url, redis_url, name, *extra):
    server = server_process(
        "--repo",
        url,
        "--redis",
        redis_url,
        "--data-dir",
        str(tmp_path / name),
        "--workers",
        "2",
        "--refresh-interval",
        "0",
        *extra,
    )
    return server.wait_ready(lambda: http_ready(f"{server.url}/health"))


def push(repo, files):
    sha = repo.commit(files)
    repo.git("push", "--quiet", "origin", "main")
    return sha


def webhook(url, path="orders.yml"):
    response = requests.post(f"{url}/monitor", data={"path": path}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def long_poll(url, etag, results):
    response = requests.get(
        f"{url}/orders/default", params={"wait": "30"}, headers={"If-None-Match": etag}, timeout=40
    )
    results.append(response)


def cluster_status(url):
    return requests.get(f"{url}/health", timeout=5).json().get("details", {}).get("cluster", {})


@pytest.fixture
def two_replicas(repo, git_daemon, redis_server, server_process, tmp_path):
    repo.commit({"orders.yml": "orders:\n  limit: 1\n", "application.yml": "shared: x\n"})
    url = git_daemon(repo)
    a = start_replica(server_process, tmp_path, url, redis_server.url, "a")
    b = start_replica(server_process, tmp_path, url, redis_server.url, "b")
    for server in (a, b):  # every worker of both replicas follows the stream
        wait_for(lambda s=server: cluster_status(s.url).get("replicas") == 2, timeout=20, what="joined")
    return a, b


def test_webhook_to_one_replica_wakes_watchers_on_the_other(repo, two_replicas):
    a, b = two_replicas
    before = requests.get(f"{b.url}/orders/default", timeout=5)
    results: list[requests.Response] = []
    watchers = [
        threading.Thread(target=long_poll, args=(b.url, before.headers["ETag"], results)) for _ in range(4)
    ]
    for watcher in watchers:
        watcher.start()
    wait_for(lambda: held_long_polls(b) == 4, what="the 4 long polls held by b")
    sha = push(repo, {"orders.yml": "orders:\n  limit: 2\n"})
    assert webhook(a.url) == ["orders"]
    for watcher in watchers:
        watcher.join(timeout=20)
    assert [r.status_code for r in results] == [200] * 4
    assert {r.json()["version"] for r in results} == {sha}
    assert {r.json()["propertySources"][0]["source"]["orders.limit"] for r in results} == {2}
    # Replica b fetched once for the hint, not once per worker; a had the commit already.
    b_log, a_log = b.stop(), a.stop()
    assert b_log.count("cluster: fetched for hint refs/heads/main") == 1, b_log
    assert a_log.count("cluster: fetched for hint") == 0, a_log


def test_replicas_give_identical_etags_and_bodies(repo, two_replicas):
    a, b = two_replicas
    sha = push(repo, {"orders.yml": "orders:\n  limit: 3\n"})
    webhook(a.url)
    wait_for(lambda: requests.get(f"{b.url}/orders/default", timeout=5).json()["version"] == sha)
    for path in ("/orders/default", "/orders/default/main", "/orders-default.yml", "/orders-default.json"):
        first = requests.get(a.url + path, timeout=5)
        second = requests.get(b.url + path, timeout=5)
        assert first.status_code == second.status_code == 200
        assert first.content == second.content, path
        assert first.headers.get("ETag") == second.headers.get("ETag"), path
    # A client moving between replicas with its ETag gets a 304, not a spurious change.
    answer = requests.get(f"{a.url}/orders/default", headers={"X-Config-Client-Id": "svc-1"}, timeout=5)
    etag = answer.headers["ETag"]
    assert (
        requests.get(f"{b.url}/orders/default", headers={"If-None-Match": etag}, timeout=5).status_code == 304
    )
    # ... and the instance it reported to a (a gevent worker's flusher thread) is in b's inventory.
    wait_for(
        lambda: (
            "svc-1" in [i["id"] for i in requests.get(f"{b.url}/instances", timeout=5).json()["instances"]]
        ),
        what="a's report in b's inventory",
    )


def test_redis_restart_keeps_replicas_serving_and_they_rejoin(repo, two_replicas, redis_server):
    a, b = two_replicas
    redis_server.stop()
    for server in (a, b):
        wait_for(
            lambda s=server: requests.get(f"{s.url}/health", timeout=5).json().get("cluster") == "DEGRADED",
            timeout=20,
            what="health to say DEGRADED",
        )
        health = requests.get(f"{server.url}/health", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "UP"
        assert requests.get(f"{server.url}/orders/default", timeout=5).status_code == 200
        metrics = requests.get(f"{server.url}/metrics", timeout=5)  # still scraped, saying so
        assert metrics.status_code == 200 and "config_server_cluster_redis_up 0.0" in metrics.text
        inventory = requests.get(f"{server.url}/instances", timeout=5)  # a clear 503, no trace
        assert inventory.status_code == 503 and "state store" in inventory.json()["message"]
    # A webhook while Redis is down refreshes its own replica and keeps the hint for later.
    sha = push(repo, {"orders.yml": "orders:\n  limit: 4\n"})
    webhook(a.url)
    assert requests.get(f"{a.url}/orders/default", timeout=5).json()["version"] == sha
    redis_server.start()  # same port, empty: no persistence
    for server in (a, b):
        wait_for(
            lambda s=server: requests.get(f"{s.url}/health", timeout=5).json().get("cluster") == "UP",
            timeout=30,
            what="replicas to rejoin",
        )
    # The held hint is published on reconnection and brings replica b up to date.
    wait_for(
        lambda: requests.get(f"{b.url}/orders/default", timeout=5).json()["version"] == sha,
        timeout=30,
        what="the hint held during the outage to reach b",
    )
    a_log = a.stop()
    assert "Redis redis://127.0.0.1" in a_log and "unreachable" in a_log


def kill(server):
    """SIGKILL a replica's gunicorn master and its workers at once: a crashed machine, no goodbye."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in [pid, *map(int, children)]:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.process.wait(timeout=10)


def test_killed_replica_client_moves_on_and_misses_no_version(repo, two_replicas):
    a, b = two_replicas
    client = ConfigClient([a.url, b.url], "orders", wait=30, max_backoff=0.5).start()
    try:
        assert client.transport.server_url == a.url and client.get("orders.limit") == 1
        wait_for(lambda: requests.get(f"{a.url}/health", timeout=5).json()["details"]["watchers"] == 1)
        kill(a)  # how fast the clients move is measured by bench/cluster.py, not here
        wait_for(lambda: client.transport.server_url == b.url, timeout=10, what="the move to b")
        wait_for(lambda: requests.get(f"{b.url}/health", timeout=5).json()["details"]["watchers"] == 1)
        sha = push(repo, {"orders.yml": "orders:\n  limit: 5\n"})
        webhook(b.url)
        wait_for(lambda: client.version == sha, what="the next commit through b")
        assert client.get("orders.limit") == 5
    finally:
        client.stop()


def drain(server) -> float:
    """SIGTERM a replica's gunicorn master, as a rolling upgrade stops it; seconds until it exited."""
    started = time.monotonic()
    server.process.terminate()
    server.process.wait(timeout=15)
    return time.monotonic() - started


def test_a_rolling_restart_drains_each_replica_in_turn_and_the_client_misses_no_version(
    repo, two_replicas, server_process, redis_server, tmp_path
):
    """docs/deployment.md, "Upgrades": stop one replica at a time with SIGTERM, start the new
    version on its port, then the next. Each drain answers the parked long poll at once and
    exits within seconds; the client moves to the replica that is up and gets every commit."""
    a, b = two_replicas
    client = ConfigClient([a.url, b.url], "orders", wait=30, max_backoff=0.5).start()
    try:
        assert client.transport.server_url == a.url
        wait_for(lambda: requests.get(f"{a.url}/health", timeout=5).json()["details"]["watchers"] == 1)
        assert drain(a) < 5  # parked polls answered with Connection: close, not the 10 s graceful wait
        wait_for(lambda: client.transport.server_url == b.url, timeout=10, what="the move to b")
        wait_for(lambda: requests.get(f"{b.url}/health", timeout=5).json()["details"]["watchers"] == 1)
        first = push(repo, {"orders.yml": "orders:\n  limit: 2\n"})
        webhook(b.url)
        wait_for(lambda: client.version == first, what="the commit made while a was down")

        remote = a.process.args[a.process.args.index("--repo") + 1]  # the git daemon's URL
        command = [str(Path(sys.executable).with_name("config-server")), "serve", "--port", str(a.port)]
        new_a = server_process(
            "--repo", remote, "--redis", redis_server.url, "--data-dir", str(tmp_path / "a"),
            "--workers", "2", "--refresh-interval", "0", command=command,
        )  # fmt: skip
        new_a.wait_ready(lambda: http_ready(f"{a.url}/health"))  # the new version, on a's port
        wait_for(lambda: cluster_status(a.url).get("replicas") == 2, timeout=20, what="a to rejoin")

        assert drain(b) < 5
        wait_for(lambda: client.transport.server_url == a.url, timeout=10, what="the move back to a")
        wait_for(lambda: requests.get(f"{a.url}/health", timeout=5).json()["details"]["watchers"] == 1)
        second = push(repo, {"orders.yml": "orders:\n  limit: 3\n"})
        webhook(a.url)
        wait_for(lambda: client.version == second, what="the commit made while b was down")
        assert client.get("orders.limit") == 3
    finally:
        client.stop()


@pytest.mark.parametrize(
    "fields",
    [
        {"ref": "--upload-pack=touch /tmp/x", "commit": "a" * 40},
        {"ref": "refs/heads/../../etc", "commit": "a" * 40},
        {"ref": "refs/heads/main", "commit": "not-hex"},
        {"ref": "refs/heads/main", "commit": "a" * 40, "apps": "x y;z"},
        {},
    ],
)
def test_malformed_hints_are_ignored(fields):
    assert Hint.parse(fields) is None


def test_hint_lists_applications():
    assert (
        Hint.parse({"ref": "refs/heads/main", "commit": "b" * 40, "apps": "orders,*"}).application_list()
        is None
    )
    assert Hint.parse({"ref": "refs/tags/v1", "commit": "", "apps": "orders"}).application_list() == [
        "orders"
    ]


def test_redis_setting_must_be_a_redis_url():
    with pytest.raises(ValueError, match="redis"):
        Settings(redis="http://example.com").validate()
    assert Settings(redis="redis://:secret@127.0.0.1:6379/1").validate().redis


def test_a_replicas_own_interval_fetch_is_published_to_the_others(
    repo, git_daemon, redis_server, serve, tmp_path
):
    """Replica a fetches every 0.3 s (no webhook); b never fetches by itself, yet follows.
    In-process apps on real threads; `port` only names the replica here."""
    repo.commit({"orders.yml": "orders:\n  limit: 1\n"})
    url = git_daemon(repo)
    a = serve(url, redis=redis_server.url, refresh_interval=0.3, cache_dir=str(tmp_path / "a"), port=1)
    b = serve(url, redis=redis_server.url, refresh_interval=0, cache_dir=str(tmp_path / "b"), port=2)
    for server in (a, b):
        wait_for(lambda s=server: s.app.extensions["config_server"].cluster.connected, what="joined")
    sha = push(repo, {"orders.yml": "orders:\n  limit: 6\n"})
    wait_for(
        lambda: requests.get(f"{b.url}/orders/default", timeout=5).json()["version"] == sha,
        timeout=30,
        what="b",
    )
    link = b.app.extensions["config_server"].cluster
    # the fetch is counted once it returned, and b may answer from its mirror just before that
    wait_for(lambda: link.fetches >= 1, timeout=5, what="b's fetch to be counted")
    assert link.fetches == 1 and link.hints_received >= 1, link.health()
    assert a.app.extensions["config_server"].cluster.hints_published == 1


def test_a_reader_resumes_after_its_last_hint_unless_the_stream_is_new(redis_server):
    link = ClusterLink(redis_server.url, backend=object(), detector=None, replica="r:1")
    try:
        first = link._writer.xadd(STREAM_KEY, {"ref": "refs/heads/main", "commit": "a" * 40})
        second = link._writer.xadd(STREAM_KEY, {"ref": "refs/heads/main", "commit": "b" * 40})
        assert link._resume_from(None) == second  # joining: only what comes next
        assert link._resume_from(first) == first  # back after a blip: what came meanwhile
        redis_server.stop()
        redis_server.start()  # no persistence: a new, empty stream
        link._writer.xadd(STREAM_KEY, {"ref": "refs/heads/main", "commit": "c" * 40}, id="5-0")
        assert link._resume_from(second) == "0-0"  # older ids than ours: read it all
    finally:
        link.stop()


def test_a_replica_started_without_redis_serves_and_joins_when_it_appears(repo, serve, tmp_path, caplog):
    repo.commit({"orders.yml": "orders:\n  limit: 1\n"})
    later = RedisServer(tmp_path)  # not started yet
    try:
        server = serve(repo.path, redis=later.url)
        health = requests.get(f"{server.url}/health", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "UP"
        wait_for(lambda: requests.get(f"{server.url}/health", timeout=5).json()["cluster"] == "DEGRADED")
        assert requests.get(f"{server.url}/orders/default", timeout=5).status_code == 200
        details = requests.get(f"{server.url}/health", timeout=5).json()["details"]["cluster"]
        assert details["lastError"] and details["redis"] == later.url
        assert "config_server_cluster_redis_up 0.0" in requests.get(f"{server.url}/metrics", timeout=5).text
        later.start()
        wait_for(
            lambda: requests.get(f"{server.url}/health", timeout=5).json()["cluster"] == "UP", timeout=15
        )
        assert "config_server_cluster_redis_up 1.0" in requests.get(f"{server.url}/metrics", timeout=5).text
        assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1  # loud, once
    finally:
        later.stop()


def test_the_redis_password_never_shows_in_health():
    link = ClusterLink("redis://:s3cret@127.0.0.1:1/0", backend=object(), detector=None, replica="r:1")
    try:
        assert "s3cret" not in str(link.health()) and link.health()["redis"] == "redis://127.0.0.1:1/0"
    finally:
        link.stop()


def test_inventory_is_the_same_from_every_replica(repo, git_daemon, redis_server, serve, tmp_path):
    """An instance that asked replica a is listed by replica b's /instances (one store in Redis)."""
    repo.commit({"orders.yml": "orders:\n  limit: 1\n"})
    url = git_daemon(repo)
    a = serve(url, redis=redis_server.url, refresh_interval=0, cache_dir=str(tmp_path / "a"), port=1)
    b = serve(url, redis=redis_server.url, refresh_interval=0, cache_dir=str(tmp_path / "b"), port=2)
    sha = requests.get(
        f"{a.url}/orders/default", headers={"X-Config-Client-Id": "orders-7:42@host-a"}, timeout=5
    ).json()["version"]

    def listed_by_b():
        return requests.get(f"{b.url}/instances", params={"application": "orders"}, timeout=5).json()[
            "instances"
        ]

    instances = wait_for(listed_by_b, what="the instance in b's inventory")
    assert [(i["id"], i["version"]) for i in instances] == [("orders-7:42@host-a", sha)]
    metrics = requests.get(f"{b.url}/metrics", timeout=5).text
    assert f'config_server_instances{{application="orders",version="{sha}"}} 1.0' in metrics
