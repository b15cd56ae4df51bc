"""A blocked gevent event loop is caught: by gevent's monitor in tests, by the heartbeat in production.

The server is real gunicorn with our gevent worker; the block is a real blocking call (the
operating system's `time.sleep`, out of gevent's reach) made on the worker's event loop.
"""

import os
import sys
import threading
from pathlib import Path

import pytest
import requests

from tests.helpers import blocking_reports, wait_for

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


@pytest.fixture
def blocking_server(tmp_path, repo, server_process):
    """gunicorn serving tests/server/hub_blocking_app.py: one gevent worker, a 6 s worker timeout."""
    repo.commit({"orders.yml": "value: 1\n"})
    server = server_process(
        env={"BLOCKING_APP_REPO": str(repo.path), "BLOCKING_APP_DATA": str(tmp_path / "data")},
        command=[
            GUNICORN,
            "--worker-class",
            "config_server.runtime.gevent_worker.GeventWorker",
            "--workers",
            "1",
        ]
        + ["--bind", "127.0.0.1:{port}", "--timeout", "6", "--graceful-timeout", "2"]
        + ["--pythonpath", str(ROOT), "tests.server.hub_blocking_app:app"],
    )
    server.expect_blocking = True
    return server.wait_ready(lambda: _worker(server.url) is not None)


def _worker(url: str) -> int | None:
    """The pid of the worker that answers /health, or None when none answers within a second."""
    try:
        answer = requests.get(f"{url}/health", timeout=1, headers={"Connection": "close"})
    except requests.RequestException:
        return None
    return answer.json()["details"]["worker"] if answer.ok else None


def _block(url: str, seconds: float) -> threading.Thread:
    """Ask the worker to block its event loop for `seconds`, from a thread (the answer may never come)."""

    def call():
        try:
            requests.get(f"{url}/block", params={"seconds": seconds}, timeout=seconds + 5)
        except requests.RequestException:
            pass  # the worker may be killed under the request

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def test_the_blocking_monitor_reports_a_blocking_call_with_its_stack(blocking_server):
    _block(blocking_server.url, 0.6).join(timeout=10)
    reports = wait_for(
        lambda: blocking_reports(blocking_server.log_path.read_text()), what="gevent's blocking report"
    )
    assert "hub_blocking_app.py" in reports[0] and "_blocking_sleep(seconds)" in reports[0]


def test_a_worker_whose_event_loop_blocks_is_replaced_and_serves_again(blocking_server):
    url = blocking_server.url
    blocked = _worker(url)
    _block(url, 600)
    new = wait_for(
        lambda: (pid := _worker(url)) not in (None, blocked) and pid, timeout=40, what="a new worker"
    )
    with pytest.raises(ProcessLookupError):
        os.kill(blocked, 0)
    assert requests.get(f"{url}/orders/default", timeout=5).json()["propertySources"][0]["source"] == {
        "value": 1
    }
    log = blocking_server.log_path.read_text()
    assert "the event loop has been blocked for" in log and "_blocking_sleep(seconds)" in log
    assert f"WORKER TIMEOUT (pid:{blocked})" in log and new != blocked
