"""A remote is cloned once in the gunicorn master, and fetched once per interval per host.

The remote is served by a real `git daemon --verbose`, whose log lists every upload-pack (each
clone or fetch): three workers with `--refresh-interval 1` used to clone three times and fetch
three times a second.
"""

import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import GIT_ENV, GitRepo, free_port, port_open, wait_for

WORKERS = 3
WINDOW_SECONDS = 5.0


@pytest.fixture
def counted_daemon(tmp_path):
    """A verbose git daemon serving a bare repository; returns (url, function counting accesses)."""
    base = tmp_path / "daemon"
    base.mkdir()
    log_path = tmp_path / "daemon.log"
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                "git",
                "daemon",
                "--verbose",
                "--reuseaddr",
                "--export-all",
                f"--base-path={base}",
                "--listen=127.0.0.1",
                f"--port={port}",
                str(base),
            ],
            env=GIT_ENV,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for(lambda: port_open(port), what="git daemon to listen")

        def accesses() -> int:
            return log_path.read_text().count("Request upload-pack")

        yield base, f"git://127.0.0.1:{port}/config.git", accesses
    finally:
        process.terminate()
        process.wait(timeout=10)


def clone_dirs(cache: Path) -> list[str]:
    return [p.name for p in cache.glob(".clone-*")] if cache.exists() else []


def test_remote_is_cloned_in_the_master_once_and_fetched_once_per_interval(
    tmp_path, counted_daemon, server_process
):
    base, url, accesses = counted_daemon
    upstream = GitRepo(tmp_path / "upstream")
    upstream.commit({"svc.yml": "round: 0\n"})
    subprocess.run(
        ["git", "clone", "--quiet", "--bare", str(upstream.path), str(base / "config.git")],
        env=GIT_ENV,
        check=True,
        capture_output=True,
    )
    upstream.git("remote", "add", "origin", str(base / "config.git"))
    cache = tmp_path / "data" / "cache"
    stale = cache / ".clone-left-by-a-killed-worker"
    stale.mkdir(parents=True)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))

    server = server_process("--repo", url, "--workers", str(WORKERS), "--refresh-interval", "1")
    ready = server.wait_ready(lambda: requests.get(f"{server.url}/svc/default", timeout=2).status_code == 200)
    assert ready.process.poll() is None
    for _ in range(2 * WORKERS):  # every worker serves it at once: the master cloned before they started
        fresh = requests.get(f"{server.url}/svc/default", headers={"Connection": "close"}, timeout=5)
        assert fresh.status_code == 200, fresh.text
    assert clone_dirs(cache) == []

    before = accesses()
    time.sleep(WINDOW_SECONDS)  # the measured window: the refresh loops run on their own
    during = accesses() - before
    # One fetch per interval for the host (plus one for a tick at the window's edges), not one
    # per worker: three workers fetching every second would make about 15.
    assert 1 <= during <= WINDOW_SECONDS + 2, during

    upstream.commit({"svc.yml": "round: 1\n"})
    upstream.git("push", "--quiet", "origin", "main")

    def every_worker_serves_the_push() -> bool:
        answers = [
            requests.get(f"{server.url}/svc/default", headers={"Connection": "close"}, timeout=5).json()
            for _ in range(2 * WORKERS)
        ]
        return all(a["propertySources"][0]["source"] == {"round": 1} for a in answers)

    wait_for(every_worker_serves_the_push, timeout=15, what="every worker to serve the pushed commit")
    log = server.stop()
    assert "WORKER TIMEOUT" not in log
    cloned, booted = log.find(f"cloned {url}"), log.find("Booting worker")
    assert 0 <= cloned < booted, log  # the master cloned, before it started a worker
    assert clone_dirs(cache) == []
