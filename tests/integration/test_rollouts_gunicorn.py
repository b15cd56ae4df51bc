"""Rollouts under gunicorn (two gevent workers sharing the state store): a halt reported to one
worker reaches the long polls of both; the fast path answers base instances byte for byte as
Flask does; a restart of the whole server resumes the rollout where it was."""

from __future__ import annotations

import re
import socket
import threading
import time

import requests

from config_server.content.rollout_plan import cohort_point
from tests.helpers import GitRepo, held_long_polls, wait_for

INSTANCES = [f"svc-{n}" for n in range(200)]


def cohort(percent: float) -> list[str]:
    return sorted(i for i in INSTANCES if cohort_point("orders", "canary", i) < percent)


def make_repo(repo: GitRepo) -> tuple[str, str]:
    repo.commit({"orders.yml": "message: base\n"}, "base")
    repo.git("checkout", "-q", "-b", "canary")
    canary = repo.commit({"orders.yml": "message: canary\n"}, "canary")
    repo.git("checkout", "-q", "main")
    base = repo.commit(
        {"rollouts/orders.yml": "canary: canary\nsteps: [50, 100]\nbake: 1h\nhalt-on: {rejected: 1}\n"},
        "roll",
    )
    return base, canary


def start(server_process, repo: GitRepo):
    server = server_process("--repo", str(repo.path), "--workers", "2")
    server.wait_ready(
        lambda: requests.get(f"{server.url}/health", timeout=1, headers={"Connection": "close"}).ok
    )
    wait_for(
        lambda: requests.get(f"{server.url}/rollouts", timeout=2).json()["rollouts"][0]["state"] == "running",
        what="the rollout to start",
    )
    return server


def raw_get(port: int, path: str, headers: str = "") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return re.sub(rb"\r\n(?:Date|Server|Connection): [^\r]*", b"", data)


def test_fast_path_and_flask_give_the_same_bytes_under_a_rollout(server_process, repo):
    base, canary = make_repo(repo)
    server = start(server_process, repo)
    outside = sorted(set(INSTANCES) - set(cohort(50)))[0]
    inside = cohort(50)[0]
    for instance, version in ((outside, base), (inside, canary)):
        header = f"X-Config-Client-Id: {instance}\r\n"
        fast = raw_get(server.port, "/orders/default", header)
        slow = raw_get(server.port, "/orders/default?via=flask", header)
        assert fast.startswith(b"HTTP/1.1 200")
        assert fast == slow
        assert f'"version": "{version}"'.encode() in fast
        assert (b"X-Config-Rollout: orders; step=50; state=running" in fast) == (instance == inside)


def test_a_rejection_at_one_worker_halts_the_long_polls_at_every_worker_within_a_second(server_process, repo):
    base, canary = make_repo(repo)
    server = start(server_process, repo)
    members = cohort(50)
    first = requests.get(
        f"{server.url}/orders/default", headers={"X-Config-Client-Id": members[0]}, timeout=5
    )
    canary_etag = first.headers["ETag"]
    assert first.json()["version"] == canary
    answered: dict[str, tuple[float, requests.Response]] = {}

    def watch(instance: str) -> None:
        with requests.Session() as session:  # one connection each: the kernel spreads them over the workers
            response = session.get(
                f"{server.url}/orders/default?wait=30",
                headers={"X-Config-Client-Id": instance, "If-None-Match": canary_etag},
                timeout=40,
            )
        answered[instance] = (time.monotonic(), response)

    watchers = [threading.Thread(target=watch, args=(i,)) for i in members[1:41]]
    for thread in watchers:
        thread.start()

    wait_for(lambda: held_long_polls(server) >= 40, what="40 long polls held")
    rejected_at = time.monotonic()
    rejection = requests.get(
        f"{server.url}/orders/default",
        headers={"X-Config-Client-Id": members[0], "X-Config-Rejected": f'{canary}; reason="bad canary"'},
        timeout=5,
    )
    assert rejection.status_code == 200
    for thread in watchers:
        thread.join(timeout=40)
    assert len(answered) == 40
    assert {r.json()["version"] for _, r in answered.values()} == {base}
    assert max(at for at, _ in answered.values()) - rejected_at < 1.0

    def halted_here() -> dict | None:
        """/rollouts as one worker sees it: a worker that held none of the long polls may read the
        halt from the shared store only on its next loop (0.2 s)."""
        status = requests.get(f"{server.url}/rollouts", timeout=5).json()["rollouts"][0]
        return status if status["state"] == "halted" else None

    status = wait_for(halted_here, timeout=5, what="/rollouts to show the halt")
    assert "bad canary" in status["haltReason"]
    # /metrics too may be answered by the worker that has not read the halt yet (its next loop).
    halted_metric = 'config_server_rollout_halted{application="orders",label="main"} 1.0'
    wait_for(
        lambda: halted_metric in requests.get(f"{server.url}/metrics", timeout=5).text,
        timeout=5,
        what="/metrics to show the halt",
    )


def test_a_restarted_server_resumes_the_rollout(server_process, repo):
    _, canary = make_repo(repo)
    server = start(server_process, repo)
    before = requests.get(f"{server.url}/rollouts", timeout=5).json()["rollouts"][0]
    server.stop()
    server = start(server_process, repo)
    after = requests.get(f"{server.url}/rollouts", timeout=5).json()["rollouts"][0]
    assert (after["started"], after["step"], after["state"]) == (before["started"], 50, "running")
    on_canary = {
        i
        for i in INSTANCES[:60]
        if requests.get(f"{server.url}/orders/default", headers={"X-Config-Client-Id": i}, timeout=5).json()[
            "version"
        ]
        == canary
    }
    assert on_canary == set(cohort(50)) & set(INSTANCES[:60])


def test_a_commit_on_the_canary_branch_reaches_the_cohort_long_polls_with_the_rollout_header(
    server_process, repo
):
    base, canary = make_repo(repo)
    server = start(server_process, repo)
    inside, outside = cohort(50)[0], sorted(set(INSTANCES) - set(cohort(50)))[0]
    etags = {
        i: requests.get(f"{server.url}/orders/default", headers={"X-Config-Client-Id": i}, timeout=5).headers[
            "ETag"
        ]
        for i in (inside, outside)
    }
    answers: dict[str, bytes] = {}

    def watch(instance: str) -> None:
        headers = f"X-Config-Client-Id: {instance}\r\nIf-None-Match: {etags[instance]}\r\n"
        answers[instance] = raw_get(server.port, "/orders/default?wait=5", headers)

    threads = [threading.Thread(target=watch, args=(i,)) for i in (inside, outside)]
    for thread in threads:
        thread.start()
    wait_for(lambda: held_long_polls(server) >= 2, what="both long polls held")
    repo.git("checkout", "-q", "canary")
    fixed = repo.commit({"orders.yml": "message: canary 2\n"}, "canary 2")
    repo.git("checkout", "-q", "main")
    for thread in threads:
        thread.join(timeout=20)
    assert answers[inside].startswith(b"HTTP/1.1 200")
    assert f'"version": "{fixed}"'.encode() in answers[inside]
    assert b"\r\nX-Config-Rollout: orders; step=50; state=running\r\n" in answers[inside]
    assert answers[outside].startswith(b"HTTP/1.1 304")  # the base did not move: not woken
    flask = raw_get(server.port, "/orders/default?via=flask", f"X-Config-Client-Id: {inside}\r\n")
    assert answers[inside] == flask
