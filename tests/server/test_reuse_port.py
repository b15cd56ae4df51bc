"""Reconnecting watchers spread over the workers (`--reuse-port`), and its port guard."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import requests

from config_client.transport import backoff
from tests.helpers import wait_for

CONFIG_SERVER = Path(sys.executable).with_name("config-server")
WATCHERS = 100


def _answer(conn: socket.socket) -> bytes:
    """Read one HTTP answer with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
    length = int(next(value for name, value in fields.items() if name.lower() == b"content-length"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return body


def _watch(port: int, etag: str) -> tuple[socket.socket, int]:
    """A keep-alive watcher: asks /health which worker holds its connection, then parks a long poll."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    worker = json.loads(_answer(conn))["details"]["worker"]
    conn.sendall(
        f"GET /orders/default?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: {etag}\r\n\r\n".encode()
    )
    return conn, worker


def _dropped(conn: socket.socket) -> bool:
    try:
        return conn.recv(1) == b""
    except ConnectionError:
        return True


def _get(url: str, timeout: float = 5) -> requests.Response:
    return requests.get(url, timeout=timeout, headers={"Connection": "close"})


def _started(server):
    """Wait until the server answers /health."""
    return server.wait_ready(lambda: _get(f"{server.url}/health", timeout=1).ok)


def _parked(url: str) -> int:
    return _get(f"{url}/health").json()["details"]["watchers"]


def test_watchers_of_a_killed_worker_reconnect_spread_over_both_workers(server_process, repo):
    repo.commit({"orders.yml": "value: 1\n"})
    server = server_process("--repo", str(repo.path), "--workers", "2", "--reuse-port", "true")
    _started(server)
    etag = _get(f"{server.url}/orders/default").headers["ETag"]
    watchers = [_watch(server.port, etag) for _ in range(WATCHERS)]
    try:
        wait_for(lambda: _parked(server.url) == WATCHERS, what="every watcher to park")
        busy, held = Counter(worker for _, worker in watchers).most_common(1)[0]
        os.kill(busy, signal.SIGKILL)
        before = {worker for _, worker in watchers}
        cut = [index for index, (_, worker) in enumerate(watchers) if worker == busy]
        for index in cut:
            assert _dropped(watchers[index][0])
            watchers[index][0].close()
        time.sleep(next(backoff(0.2)))  # the client library's first retry delay, not a synchronisation
        for index in cut:
            watchers[index] = _watch(server.port, etag)
        counts = Counter(worker for _, worker in watchers)
        assert busy not in counts and len(counts) == 2, counts
        (fresh,) = set(counts) - before
        # Each reconnecting watcher lands on a worker by the kernel's hash of its address and port:
        # the fresh worker gets about half of them (at least a quarter, or the test fails).
        assert counts[fresh] >= held / 4, counts
    finally:
        for conn, _ in watchers:
            conn.close()


def test_a_second_reuse_port_server_on_the_same_port_refuses_to_start(server_process, repo, tmp_path):
    """Two SO_REUSEPORT servers would share a port silently; the second one stops with a clear error."""
    repo.commit({"orders.yml": "value: 1\n"})
    first = server_process("--repo", str(repo.path), "--workers", "1", "--reuse-port", "true")
    _started(first)
    second = subprocess.run(
        [str(CONFIG_SERVER), "serve", "--repo", str(repo.path), "--port", str(first.port)]
        + ["--data-dir", str(tmp_path / "second"), "--reuse-port", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode != 0
    assert f"port {first.port} on 127.0.0.1 is in use" in second.stderr
    assert "Traceback" not in second.stderr
    for _ in range(20):  # every connection still reaches the first server
        answer = _get(f"{first.url}/orders/default")
        assert answer.json()["propertySources"][0]["source"] == {"value": 1}


def _answered(url: str) -> int:
    """How many of 10 probes, each on a new connection, get /health within 0.5 s."""
    answered = 0
    for _ in range(10):
        try:
            answered += _get(f"{url}/health", timeout=0.5).ok
        except requests.RequestException:
            pass
    return answered


def test_the_trade_off_a_stopped_worker_keeps_its_share_of_new_connections_only_with_reuse_port(
    server_process, repo
):
    """Why --reuse-port is off by default: with one shared listener a worker that does not run
    takes no new connection; with SO_REUSEPORT it keeps its hash share (probes time out)."""
    repo.commit({"orders.yml": "value: 1\n"})
    answered = {}
    for mode in ("false", "true"):
        server = server_process("--repo", str(repo.path), "--workers", "2", "--reuse-port", mode)
        server.expect_blocking = True  # the stopped worker's loop did not run, on purpose
        worker = _get(f"{_started(server).url}/health").json()["details"]["worker"]
        os.kill(worker, signal.SIGSTOP)
        try:
            answered[mode] = _answered(server.url)
        finally:
            os.kill(worker, signal.SIGCONT)
        server.stop()
    assert answered["false"] == 10
    assert answered["true"] < 10
