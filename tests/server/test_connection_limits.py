"""What one client can hold (issue 24 item 4): parked polls per address, connections within the
descriptor limit, and slots freed as soon as a parked poll's client leaves. Raw sockets against a
real gunicorn server; every wait has a deadline."""

from __future__ import annotations

import json
import re
import socket
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from config_server.http.auth import hash_token
from tests.helpers import wait_for


def _health(url: str) -> dict:
    return requests.get(f"{url}/health", timeout=5, headers={"Connection": "close"}).json()


def _start(server_process, repo, *args: str, command: list[str] | None = None):
    repo.commit({"orders.yml": "value: 1\n"})
    server = server_process("--repo", str(repo.path), "--workers", "1", *args, command=command)
    server.wait_ready(
        lambda: requests.get(f"{server.url}/health", timeout=1, headers={"Connection": "close"}).ok
    )
    return server


def _park(port: int, path: str, etag: str) -> socket.socket:
    """A raw socket with a long poll sent, never read."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: {etag}\r\n\r\n".encode())
    return sock


def _answer(sock: socket.socket) -> bytes:
    """Read one whole answer (headers and a Content-Length body) with the socket's deadline."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)\r\ncontent-length: *([0-9]+)", head)
    length = int(found[1]) if found else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", head) + b"\r\n\r\n" + body


def _without_time(answer: bytes) -> bytes:
    return re.sub(rb'"timestamp": ?"[^"]*"', b'"timestamp": "-"', answer)


def test_a_parked_poll_whose_client_left_frees_its_slot_at_once(server_process, repo):
    """Before: a closed client's poll stayed parked (and its connection in CLOSE-WAIT) up to 60 s."""
    server = _start(server_process, repo)
    etag = requests.get(f"{server.url}/orders/default", timeout=5).headers["ETag"]
    with ExitStack() as stack:
        for _ in range(20):
            stack.enter_context(_park(server.port, "/orders/default?wait=60", etag))
        wait_for(lambda: _health(server.url)["details"]["watchers"] == 20, what="20 parked polls")
    # every socket closed: the worker notices each EOF and lets go of its poll
    wait_for(lambda: _health(server.url)["details"]["watchers"] == 0, timeout=5, what="the polls to be freed")
    assert _health(server.url)["details"]["parkedPolls"] == 0


def test_polls_beyond_the_address_cap_get_the_same_429_from_the_fast_path_and_flask(server_process, repo):
    """Before: every poll was parked, however many one address sent."""
    server = _start(server_process, repo, "--polls-per-address", "3")
    etag = requests.get(f"{server.url}/orders/default", timeout=5).headers["ETag"]
    with ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(_park(server.port, "/orders/default?wait=60", etag))
        wait_for(lambda: _health(server.url)["details"]["parkedPolls"] == 3, what="3 parked polls")
        fast = stack.enter_context(_park(server.port, "/orders/default?wait=60", etag))
        slow = stack.enter_context(_park(server.port, "/orders/default?wait=60&via=flask", etag))
        fast_answer, slow_answer = _answer(fast), _answer(slow)
        assert fast_answer.startswith(b"HTTP/1.1 429")
        body = json.loads(fast_answer.partition(b"\r\n\r\n")[2])
        assert body["status"] == 429 and "127.0.0.1" in body["message"] and "at most 3" in body["message"]
        slow_body = json.loads(slow_answer.partition(b"\r\n\r\n")[2])
        assert slow_body["path"] == body["path"] == "/orders/default"
        assert _without_time(fast_answer) == _without_time(slow_answer)
        assert b"\r\nConnection: close\r\n" in fast_answer and fast.recv(1) == b""  # the slot is given back
        details = _health(server.url)["details"]
        assert details["limits"]["parkedPollsPerAddress"] == 3 and details["parkedPolls"] == 3
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        assert "config_server_long_polls_refused_total 2.0" in metrics
        assert "config_server_limit_parked_polls_per_address 3.0" in metrics
    # the cap counts polls parked now: once they left, the address parks again
    wait_for(lambda: _health(server.url)["details"]["parkedPolls"] == 0, timeout=5, what="the polls to leave")
    with _park(server.port, "/orders/default?wait=1", etag) as again:
        assert _answer(again).startswith(b"HTTP/1.1 304")


@pytest.mark.skipif(sys.platform != "linux", reason="ulimit -n through sh")
def test_health_and_state_files_keep_working_at_the_descriptor_limit(server_process, repo, tmp_path):
    """Before: with `ulimit -n` reached by parked polls, accept failed (EMFILE), SQLite could not open
    its file and every /health probe timed out. Now connections stay below the limit minus a reserve
    and parked polls below that, so /health, /livez and /readyz (fresh connections) are answered
    throughout."""
    limit = 256
    exe = str(Path(sys.executable).with_name("config-server"))
    command = ["sh", "-c", f'ulimit -n {limit} && exec "$0" "$@"', exe, "serve", "--port", "{port}"]
    command += ["--data-dir", str(tmp_path / "data")]
    server = _start(server_process, repo, "--polls-per-address", "0", command=command)
    limits = _health(server.url)["details"]["limits"]
    assert limits["descriptors"] == limit
    assert limits["connections"] == limit - 64 and limits["parkedPolls"] < limits["connections"]
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
        for _ in range(5):  # fresh connections: the probes and a plain read are answered at once
            for probe in ("/health", "/livez", "/readyz"):
                assert requests.get(f"{server.url}{probe}", timeout=1, headers={"Connection": "close"}).ok
            assert requests.get(f"{server.url}/orders/default", timeout=1, headers={"Connection": "close"}).ok
        refused = [
            sock for sock in socks[limits["parkedPolls"] :] if _answer(sock).startswith(b"HTTP/1.1 429")
        ]
        assert refused, "polls beyond the worker's cap are answered 429, not parked"
    log = server.stop()
    assert "Too many open files" not in log and "EMFILE" not in log


def test_one_caller_watches_at_most_slots_per_caller_environments_and_the_429_is_the_same_both_ways(
    server_process, repo
):
    """Before: every spelling of an environment a caller parked on took one more hub slot (3,000
    spellings, 3,000 slots resolved at each commit). Now one caller (its address on an open server)
    holds at most 64 distinct (application, profiles, label) at once; the next is refused 429."""
    server = _start(server_process, repo)
    etag = requests.get(f"{server.url}/orders/default", timeout=5).headers["ETag"]
    assert _health(server.url)["details"]["limits"]["slotsPerCaller"] == 64
    with ExitStack() as stack:
        for i in range(64):
            stack.enter_context(_park(server.port, f"/orders/default,p{i}?wait=60", etag))
        wait_for(lambda: _health(server.url)["details"]["watchedEnvironments"] == 64, what="64 slots")
        fast = stack.enter_context(_park(server.port, "/orders/default,p64?wait=60", etag))
        slow = stack.enter_context(_park(server.port, "/orders/default,p64?wait=60&via=flask", etag))
        fast_answer, slow_answer = _answer(fast), _answer(slow)
        assert fast_answer.startswith(b"HTTP/1.1 429"), fast_answer[:200]
        body = json.loads(fast_answer.partition(b"\r\n\r\n")[2])
        assert body["status"] == 429 and "127.0.0.1" in body["message"] and "at most 64" in body["message"]
        assert _without_time(fast_answer) == _without_time(slow_answer)
        # a spelling the caller already watches shares its slot: parked, answered 304 at the wait's end
        with _park(server.port, "/orders/default,p0?wait=1", etag) as same:
            assert _answer(same).startswith(b"HTTP/1.1 304")
        details = _health(server.url)["details"]
        assert details["watchedEnvironments"] == 64 and details["parkedPolls"] == 64
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        assert "config_server_limit_slots_per_caller 64.0" in metrics
        assert "config_server_long_polls_refused_total 2.0" in metrics
    wait_for(lambda: _health(server.url)["details"]["parkedPolls"] == 0, timeout=5, what="the polls to leave")
    with _park(server.port, "/orders/default,p64?wait=1", etag) as again:  # its slots were given back
        assert _answer(again).startswith(b"HTTP/1.1 304")


def test_a_poll_beyond_the_slot_cap_is_refused_before_its_environment_is_resolved(server_process, repo):
    """Before: a long poll on one more spelling than the caller's cap was resolved first (YAML read,
    settings checked; a caller whose ETag was stale got its 200 at once), then refused, and Flask
    resolved it again for the 429: a caller cycling through spellings cost resolutions without end
    (issue 24, item 5). Now the cap is asked first: 429 from both paths, nothing resolved."""
    server = _start(server_process, repo, "--slots-per-caller", "1")
    etag = requests.get(f"{server.url}/orders/default", timeout=5).headers["ETag"]
    with _park(server.port, "/orders/default,p0?wait=60", etag):
        wait_for(lambda: _health(server.url)["details"]["watchedEnvironments"] == 1, what="one slot")
        misses = _health(server.url)["details"]["cache"]["misses"]
        answers = []
        for i in range(1, 4):
            for via in ("", "&via=flask"):  # the fast path, then the Flask view
                with _park(server.port, f"/orders/default,p{i}?wait=60{via}", '"stale"') as refused:
                    answers.append(_answer(refused))
        assert all(answer.startswith(b"HTTP/1.1 429") for answer in answers), answers[0][:200]
        for fast, slow in zip(answers[::2], answers[1::2], strict=True):
            assert _without_time(fast) == _without_time(slow)  # the same bytes from both paths
        assert _health(server.url)["details"]["cache"]["misses"] == misses  # no spelling was resolved
        # a spelling the caller already waits on is answered as before: its stale ETag gets a 200 at once
        with _park(server.port, "/orders/default,p0?wait=60", '"stale"') as same:
            assert _answer(same).startswith(b"HTTP/1.1 200")


def test_the_slot_cap_counts_each_client_of_an_address_on_its_own(server_process, repo, tmp_path):
    """With an auth file a caller is the client and its address: a second client behind the same
    address (a NAT, a proxy) is not refused because the first one watches its share."""
    clients = tmp_path / "clients.yml"
    tokens = {name: f"token-of-{name}-{'x' * 20}" for name in ("first", "second")}
    clients.write_text(
        "clients:\n"
        + "".join(
            f"  - name: {name}\n    tokens: [{hash_token(token)}]\n    roles: [read]\n"
            for name, token in tokens.items()
        )
    )
    server = _start(server_process, repo, "--slots-per-caller", "2", "--auth-file", str(clients))

    def park(path: str, token: str) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        sock.sendall(f"{request}If-None-Match: {etag}\r\n\r\n".encode())
        return sock

    etag = requests.get(
        f"{server.url}/orders/default", timeout=5, headers={"Authorization": f"Bearer {tokens['first']}"}
    ).headers["ETag"]
    with ExitStack() as stack:
        for i in range(2):
            stack.enter_context(park(f"/orders/default,p{i}?wait=60", tokens["first"]))
        with park("/orders/default,p2?wait=60", tokens["first"]) as refused:
            answer = _answer(refused)
            assert answer.startswith(b"HTTP/1.1 429")
            assert b"client first at address 127.0.0.1" in answer
        with park("/orders/default,p2?wait=1", tokens["second"]) as other:
            assert _answer(other).startswith(b"HTTP/1.1 304")
