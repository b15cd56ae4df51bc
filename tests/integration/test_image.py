"""The container image (issue 23): run as an operator would, with a repository mounted from the
host. It serves `/orders/prod`, a commit on the host reaches a `ConfigClient` on the host, the
HEALTHCHECK passes, and SIGTERM (tini hands it to gunicorn) stops it cleanly in under 10 s.

Building the image takes about a minute (its base about 30 s more, once), too slow for `make test`:
`make image-test` (a step of `.ci/run`) builds it and runs this file with CONFIG_SERVER_IMAGE set;
without it the tests are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from config_client import ConfigClient
from tests.helpers import GitRepo, free_port, wait_for

IMAGE = os.environ.get("CONFIG_SERVER_IMAGE", "")
ROOT = Path(__file__).resolve().parents[2]
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "containers.conf")}

pytestmark = pytest.mark.skipif(not IMAGE, reason="needs the image: run by `make image-test` (.ci/run)")


def podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def container(tmp_path: Path) -> Iterator[tuple[str, str, GitRepo]]:
    """The image serving a repository of the host (mounted read-only) on a free port of 127.0.0.1."""
    repo = GitRepo(tmp_path / "repo")
    repo.path.chmod(0o755)
    repo.commit(
        {
            "orders.yml": "orders:\n  currency: EUR\n  max-items: 100\n",
            "orders-prod.yml": "orders:\n  max-items: 500\n",
        }
    )
    name = f"config-server-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    started = podman(
        "run", "--detach", "--name", name, "--network", "host",
        "--volume", f"{repo.path}:/repo:ro", "--env", "CONFIG_SERVER_REPO=/repo",
        "--env", f"CONFIG_SERVER_PORT={port}", "--env", "CONFIG_SERVER_WORKERS=1",
        IMAGE,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{url}/readyz"), timeout=60, what="the container to serve")
        yield name, url, repo
    finally:
        logs = podman("logs", name).stderr
        podman("rm", "--force", "--volumes", "--time", "0", name)
        print(logs)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_the_image_serves_a_mounted_repository_and_a_host_client_follows_a_commit(container, tmp_path):
    name, url, repo = container
    answer = requests.get(f"{url}/orders/prod", timeout=5)
    assert answer.status_code == 200
    sources = answer.json()["propertySources"]
    assert sources[0]["source"] == {"orders.max-items": 500}
    assert answer.json()["version"] == repo.head()

    client = ConfigClient(url, "orders", "prod", wait=5, cache_dir=tmp_path / "client").start()
    try:
        changes = []
        client.on_change(changes.append)
        assert client.get("orders.max-items") == 500
        sha = repo.commit({"orders-prod.yml": "orders:\n  max-items: 750\n"}, "Raise the prod limit")
        wait_for(lambda: changes, timeout=15, what="the client to see the commit")
        assert changes[0].new_version == sha and client.get("orders.max-items") == 750
    finally:
        client.stop()

    health = podman("healthcheck", "run", name)
    assert health.returncode == 0, health.stdout + health.stderr


def test_the_image_runs_as_a_non_root_user_with_tini_as_pid_1_and_its_labels(container):
    name, _url, _repo = container
    inspected = json.loads(podman("inspect", name).stdout)[0]
    assert inspected["Config"]["User"] == "10001:10001"
    process = podman("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert process[0] == "/usr/bin/tini" and "config-server" in process[2]
    image = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    labels = image["Config"]["Labels"] or image["Labels"]
    assert labels["org.opencontainers.image.title"] == "config-server"
    assert labels["org.opencontainers.image.version"]
    assert "/data" in image["Config"]["Volumes"]
    assert "/readyz" in " ".join(image["Healthcheck"]["Test"])


def test_sigterm_stops_the_container_in_under_10_seconds_answering_its_watchers(container):
    name, url, _repo = container
    etag = requests.get(f"{url}/orders/prod", timeout=5).headers["ETag"]
    session = requests.Session()
    results: list[requests.Response] = []

    def watch() -> None:
        results.append(session.get(f"{url}/orders/prod?wait=60", headers={"If-None-Match": etag}, timeout=30))

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(1)  # the long poll is parked
    began = time.monotonic()
    stopped = podman("stop", "--time", "10", name, timeout=30)
    took = time.monotonic() - began
    watcher.join(timeout=10)
    assert stopped.returncode == 0, stopped.stderr
    assert took < 10, f"the container took {took:.1f} s to stop"
    state = json.loads(podman("inspect", name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, state  # gunicorn exited by itself: not killed after the grace
    assert [r.status_code for r in results] == [304]  # the parked long poll was answered, not cut
