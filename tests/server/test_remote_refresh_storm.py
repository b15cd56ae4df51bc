"""A remote served by real gunicorn workers stays responsive under a storm of webhooks.

Refreshing takes a cooperative lock within a worker, a non-blocking lock across workers and a
deadline for `git fetch`: 30 clients looping on `POST /monitor` while the refresh loop runs
every second must never freeze a gevent worker (`/health` answers within a second throughout),
and a push made during the storm must reach a long-poll watcher.

The issue's storm lasts 20 s; the suite runs STORM_SECONDS (default 6, which also fails on a
blocking `flock`); `STORM_SECONDS=20 pytest tests/server/test_remote_refresh_storm.py` runs it whole.
"""

import os
import subprocess
import threading
import time

import requests

from tests.helpers import GIT_ENV, GitRepo, http_ready, wait_for

STORM_SECONDS = float(os.environ.get("STORM_SECONDS", "6"))
MONITOR_LOOPS = 30


def bare_remote(tmp_path, upstream: GitRepo):
    bare = tmp_path / "remote.git"
    subprocess.run(
        ["git", "clone", "--quiet", "--bare", str(upstream.path), str(bare)],
        env=GIT_ENV,
        check=True,
        capture_output=True,
    )
    upstream.git("remote", "add", "origin", str(bare))
    return bare


def test_health_and_long_polls_survive_a_webhook_storm_on_a_remote(tmp_path, server_process):
    upstream = GitRepo(tmp_path / "upstream")
    upstream.commit({"svc.yml": "round: 0\n"})
    bare = bare_remote(tmp_path, upstream)
    server = server_process("--repo", f"file://{bare}", "--refresh-interval", "1", "--workers", "2")
    server.wait_ready(lambda: http_ready(f"{server.url}/health"))
    first = requests.get(f"{server.url}/svc/default", timeout=5)
    assert first.status_code == 200, first.text  # the master cloned before the workers started
    assert first.json()["propertySources"][0]["source"] == {"round": 0}

    stop = threading.Event()
    delivered: list[dict] = []

    def watch() -> None:
        etag = first.headers["ETag"]
        while not stop.is_set() and not delivered:
            try:
                answer = requests.get(
                    f"{server.url}/svc/default?wait=5", headers={"If-None-Match": etag}, timeout=10
                )
            except requests.RequestException:
                continue
            if answer.status_code == 200:
                delivered.append(answer.json()["propertySources"][0]["source"])

    def storm() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    session.post(f"{server.url}/monitor", data={"path": "svc.yml"}, timeout=5)
                except requests.RequestException:
                    pass

    threads = [threading.Thread(target=watch, daemon=True)]
    threads += [threading.Thread(target=storm, daemon=True) for _ in range(MONITOR_LOOPS)]
    for thread in threads:
        thread.start()
    slow: list[str] = []
    latencies: list[float] = []
    pushed = False
    started = time.monotonic()
    try:
        while time.monotonic() - started < STORM_SECONDS:
            if not pushed and time.monotonic() - started > STORM_SECONDS / 3:
                upstream.commit({"svc.yml": "round: 1\n"})
                upstream.git("push", "--quiet", "origin", "main")
                pushed = True
            probe = time.monotonic()
            try:
                health = requests.get(f"{server.url}/health", timeout=1)
                latencies.append(time.monotonic() - probe)
                if health.status_code != 200:
                    slow.append(f"{probe - started:.1f}s: {health.status_code}")
            except requests.RequestException as exc:
                slow.append(f"{probe - started:.1f}s: {type(exc).__name__}")
            time.sleep(0.2)  # the probe's pace, not synchronisation
        try:
            wait_for(lambda: delivered, timeout=15, what="the pushed commit to reach the long poll")
        except AssertionError:
            pass  # reported below, after /health
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        log = server.stop()
    slowest = max(latencies, default=0)
    print(
        f"storm {STORM_SECONDS:g} s: {len(latencies)} /health answers within 1 s (slowest {slowest:.3f} s), "
        f"{len(slow)} not; push delivered to the long poll: {bool(delivered)}"
    )
    assert not slow, f"/health did not answer within 1 s: {slow}\n{log[-2000:]}"
    assert delivered, "the pushed commit never reached the long poll"
    assert delivered[0] == {"round": 1}
