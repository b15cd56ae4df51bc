"""The `config-client` command line and the example service, run as real processes."""

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port, http_ready, wait_for

CLIENT = str(Path(sys.executable).with_name("config-client"))
PROJECT = Path(__file__).resolve().parents[2]
FILES = {
    "application.yml": "db:\n  host: localhost\n  pool:\n    max: 10\nlist: [a, b]\n",
    "orders.yml": "orders:\n  max-items: 100\n  currency: EUR\n",
}


@pytest.fixture
def server(repo, serve):
    repo.commit(FILES)
    return serve(repo.path)


def run(*args):
    return subprocess.run([CLIENT, *args], capture_output=True, text=True, timeout=30)


def test_get_one_key_and_formats(server):
    assert run("get", "--server", server.url, "orders", "default", "db.pool.max").stdout == "10\n"
    assert json.loads(run("get", "--server", server.url, "orders", "default", "--format", "json").stdout) == {
        "db": {"host": "localhost", "pool": {"max": 10}},
        "list": ["a", "b"],
        "orders": {"currency": "EUR", "max-items": 100},
    }
    props = run("get", "--server", server.url, "orders", "default", "--format", "properties").stdout
    assert "orders.max-items=100\n" in props and "list[1]=b\n" in props
    env = run("get", "--server", server.url, "orders", "default", "--format", "env").stdout
    assert "ORDERS_MAX_ITEMS=100\n" in env and "LIST_0=a\n" in env
    section = run("get", "--server", server.url, "orders", "default", "db", "--format", "yaml").stdout
    assert section == "db:\n  host: localhost\n  pool:\n    max: 10\n"


def test_get_errors_are_clear(server):
    missing = run("get", "--server", server.url, "orders", "default", "nope")
    assert missing.returncode == 1 and "no key" in missing.stderr
    dead = run("get", "--server", f"http://127.0.0.1:{free_port()}", "orders", "default")
    assert dead.returncode == 2 and "Traceback" not in dead.stderr
    bad_label = run("get", "--server", server.url, "orders", "default", "--label", "nope")
    assert bad_label.returncode == 2 and "404" in bad_label.stderr


def test_watch_prints_one_json_line_per_version(server, repo):
    process = subprocess.Popen(
        [CLIENT, "watch", "--server", server.url, "orders", "default", "--wait", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        first = json.loads(lines.get(timeout=20))
        assert first["version"] == repo.head()
        assert "orders.max-items" in first["changed"] and first["time"]
        hub = server.app.extensions["config_server"].hub
        wait_for(lambda: hub.watchers() == 1, what="the CLI to watch")
        sha = repo.commit({"orders.yml": "orders:\n  max-items: 250\n  currency: EUR\n"})
        second = json.loads(lines.get(timeout=20))
        assert second["version"] == sha and second["changed"] == ["orders.max-items"]
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("variable", ["CONFIG_CLIENT_SERVERS", "CONFIG_SERVER_URL"])
def test_example_service_follows_a_commit(server, repo, tmp_path, variable):
    """The example takes its server from CONFIG_CLIENT_SERVERS (issue 20 item 9), or from the
    deprecated CONFIG_SERVER_URL it read before."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("CONFIG_CLIENT_SERVERS", "CONFIG_SERVER_URL")},
        variable: server.url,
        "PORT": str(port),
        "CONFIG_CACHE_DIR": str(tmp_path / "cache"),
    }
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "examples" / "orders_service.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: http_ready(url), timeout=30, what="the example service")
        assert requests.get(url, timeout=5).json()["max_items"] == 100
        repo.commit({"orders.yml": "orders:\n  max-items: 300\n  currency: EUR\n"})
        wait_for(
            lambda: requests.get(url, timeout=5).json()["max_items"] == 300,
            what="the service to pick up the commit",
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
