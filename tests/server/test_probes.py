"""The probes (issue 23): `/livez` (this worker's event loop turns) and `/readyz` (the repository is
readable, a remote's last fetch is recent enough; the cluster link reported, never failing it).
Real gunicorn servers with the gevent worker; every wait has a deadline."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from config_server.observability.probes import ReadinessFacts, liveness, readiness
from tests.helpers import GitRepo, http_ready, wait_for
from tests.server.test_connection_limits import _answer, _health, _park
from tests.server.test_remote_refresh_storm import bare_remote


def _get(url: str) -> requests.Response:
    return requests.get(url, timeout=2, headers={"Connection": "close"})


def test_livez_and_readyz_answer_up_from_a_gevent_worker_on_a_local_repository(server_process, repo):
    repo.commit({"orders.yml": "value: 1\n"})
    server = server_process("--repo", str(repo.path), "--workers", "1")
    server.wait_ready(lambda: http_ready(f"{server.url}/livez"))
    live = _get(f"{server.url}/livez")
    assert live.status_code == 200 and live.headers["Cache-Control"] == "no-store"
    body = live.json()
    assert body["status"] == "UP" and isinstance(body["worker"], int)
    assert 0 <= body["loopTurnedSecondsAgo"] < 2  # the heartbeat saw the loop turn within its interval
    ready = _get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "UP", "checks": {"repository": {"status": "UP"}}}
    assert _get(f"{server.url}/health").json()["status"] == "UP"  # /health is as it was


def test_readyz_fails_when_a_remotes_last_fetch_is_too_old_and_recovers(tmp_path, server_process):
    """Cut off from its git host for more than N refresh intervals, a replica leaves the rotation
    (503) while it is still alive and still serves its mirror; it comes back with the next fetch."""
    upstream = GitRepo(tmp_path / "upstream")
    upstream.commit({"orders.yml": "value: 1\n"})
    bare = bare_remote(tmp_path, upstream)
    server = server_process(
        "--repo", f"file://{bare}", "--workers", "1", "--refresh-interval", "0.5",
        "--ready-refresh-intervals", "2",
    )  # fmt: skip
    server.wait_ready(lambda: http_ready(f"{server.url}/readyz"))
    wait_for(lambda: _get(f"{server.url}/readyz").status_code == 200, what="ready")
    fetch = _get(f"{server.url}/readyz").json()["checks"]["fetch"]
    assert fetch["status"] == "UP" and fetch["limitSeconds"] == 1.0
    assert 0 <= fetch["lastFetchSecondsAgo"] <= fetch["limitSeconds"]  # UP means no older than the limit

    hidden = tmp_path / "remote-away.git"
    bare.rename(hidden)  # the git host is gone: every fetch fails from now on
    wait_for(lambda: _get(f"{server.url}/readyz").status_code == 503, timeout=10, what="not ready")
    body = _get(f"{server.url}/readyz").json()
    assert body["status"] == "DOWN" and body["checks"]["fetch"]["status"] == "DOWN"
    assert body["checks"]["repository"] == {"status": "UP"}  # the mirror is still readable
    assert _get(f"{server.url}/livez").status_code == 200  # alive: a restart would not help
    assert _get(f"{server.url}/orders/default").status_code == 200  # and it still serves its mirror
    assert str(bare) not in _get(f"{server.url}/readyz").text  # no repository URL to anyone

    hidden.rename(bare)
    wait_for(lambda: _get(f"{server.url}/readyz").status_code == 200, timeout=10, what="ready again")


def test_readyz_fails_while_the_repository_cannot_be_read(tmp_path, server_process):
    """A remote that was never cloned: not ready, but alive (restarting the pod would not clone it)."""
    missing = tmp_path / "no-such-remote.git"
    server = server_process("--repo", f"file://{missing}", "--workers", "1", "--refresh-interval", "1")
    server.wait_ready(lambda: http_ready(f"{server.url}/livez"))
    ready = _get(f"{server.url}/readyz")
    assert ready.status_code == 503
    repository = ready.json()["checks"]["repository"]
    assert repository["status"] == "DOWN" and repository["error"] == "RepositoryUnavailable"
    assert str(missing) not in ready.text
    assert _get(f"{server.url}/livez").status_code == 200


def test_readyz_reports_a_lost_redis_without_leaving_the_rotation(repo, redis_server, server_process):
    repo.commit({"orders.yml": "value: 1\n"})
    server = server_process("--repo", str(repo.path), "--workers", "1", "--redis", redis_server.url)
    server.wait_ready(lambda: http_ready(f"{server.url}/readyz"))
    wait_for(lambda: _get(f"{server.url}/readyz").json().get("cluster") == "UP", what="the cluster link")
    redis_server.stop()
    wait_for(
        lambda: _get(f"{server.url}/readyz").json().get("cluster") == "DEGRADED",
        timeout=15,
        what="the lost Redis to be reported",
    )
    ready = _get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "UP"
    assert _get(f"{server.url}/livez").status_code == 200


@pytest.mark.skipif(sys.platform != "linux", reason="ulimit -n through sh")
def test_probes_are_answered_while_the_worker_holds_all_the_polls_it_may(server_process, repo, tmp_path):
    """With as many long polls parked as the worker's cap allows (its connection cap less the spare
    of `parked.total_poll_cap`), a kubelet's probes on fresh connections are still answered."""
    limit = 256
    repo.commit({"orders.yml": "value: 1\n"})
    exe = str(Path(sys.executable).with_name("config-server"))
    command = ["sh", "-c", f'ulimit -n {limit} && exec "$0" "$@"', exe, "serve", "--port", "{port}"]
    command += ["--data-dir", str(tmp_path / "data")]
    server = server_process(
        "--repo", str(repo.path), "--workers", "1", "--polls-per-address", "0", command=command
    )
    server.wait_ready(lambda: http_ready(f"{server.url}/livez"))
    limits = _health(server.url)["details"]["limits"]
    etag = requests.get(f"{server.url}/orders/default", timeout=5).headers["ETag"]
    with ExitStack() as stack:
        socks = [
            stack.enter_context(_park(server.port, "/orders/default?wait=60", etag)) for _ in range(limit)
        ]
        wait_for(
            lambda: _health(server.url)["details"]["parkedPolls"] == limits["parkedPolls"],
            timeout=15,
            what="the worker's parked polls to reach their cap",
        )
        for _ in range(5):
            assert _get(f"{server.url}/livez").status_code == 200
            assert _get(f"{server.url}/readyz").status_code == 200
        assert any(_answer(sock).startswith(b"HTTP/1.1 429") for sock in socks[limits["parkedPolls"] :])


def test_the_rules_of_the_probes():
    assert liveness(7, None).ok and liveness(7, None).body == {"status": "UP", "worker": 7}
    assert liveness(7, 0.2).ok and not liveness(7, 3.5).ok and liveness(7, 3.5).status == 503
    facts = dict(
        repository_readable=True,
        repository_error=None,
        last_fetch=1000.0,
        remote=True,
        refresh_interval=30.0,
        max_intervals=3,
        now=1089.0,
    )
    assert readiness(ReadinessFacts(**facts)).ok
    assert not readiness(ReadinessFacts(**{**facts, "now": 1091.0})).ok
    assert readiness(ReadinessFacts(**{**facts, "now": 5000.0, "max_intervals": 0})).ok  # age not checked
    assert readiness(ReadinessFacts(**{**facts, "now": 5000.0, "refresh_interval": 0.0})).ok
    assert not readiness(ReadinessFacts(**{**facts, "last_fetch": None})).ok  # never fetched
    assert readiness(ReadinessFacts(**{**facts, "remote": False, "last_fetch": None})).ok  # local
    unread = readiness(ReadinessFacts(**{**facts, "repository_readable": False, "repository_error": "X"}))
    assert not unread.ok and unread.body["checks"]["repository"] == {"status": "DOWN", "error": "X"}
    degraded = readiness(ReadinessFacts(**{**facts, "cluster": "DEGRADED"}))
    assert degraded.ok and degraded.body["cluster"] == "DEGRADED"
