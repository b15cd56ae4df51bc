"""The Flask-free path for plain Environment GETs answers exactly what the Flask view answers."""

import json
import re
import socket

import pytest
import requests
from flask import request

from config_server import create_app
from config_server.backends.factory import open_backend
from config_server.http.auth import hash_token
from config_server.settings import Settings
from tests.helpers import LiveServer


@pytest.fixture
def server(repo, serve):
    repo.commit(
        {
            "application.yml": "shared: 1\n",
            "orders.yml": "a: [1, 2]\nname: ${shared}\n",
            "orders-prod.yml": "a: [3]\n",
        }
    )
    repo.git("branch", "release/1")
    return serve(repo.path, encrypt_key="k")


@pytest.mark.parametrize(
    "path", ["/orders/default", "/orders/prod", "/orders/dev,prod/main", "/orders/prod/release(_)1"]
)
def test_fast_answers_match_the_flask_view(server, http, path):
    fast = http.get(server.url + path)
    # A query string sends the same request through Flask.
    slow = http.get(server.url + path + "?via=flask")
    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content
    for header in ("Content-Type", "ETag", "Cache-Control", "Content-Length"):
        assert fast.headers[header] == slow.headers[header], header


def test_everything_else_still_reaches_flask(server, http):
    assert http.get(f"{server.url}/encrypt/status").json() == {"status": "OK"}
    assert "a:" in http.get(f"{server.url}/orders-prod.yml").text
    unknown = http.get(f"{server.url}/orders/default/nope")
    assert unknown.status_code == 404 and unknown.json()["path"] == "/orders/default/nope"
    bad = http.get(f"{server.url}/..x/default")
    assert bad.status_code == 400 and bad.json()["error"] == "Bad Request"
    etag = http.get(f"{server.url}/orders/default").headers["ETag"]
    assert http.get(f"{server.url}/orders/default", headers={"If-None-Match": etag}).status_code == 304
    assert http.head(f"{server.url}/orders/default").status_code == 200


def raw_get(server, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> bytes:
    """The whole answer as the socket carried it, with the Date line normalised."""
    headers = {"Host": "127.0.0.1", **(headers or {})}
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\n{extra}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", data)


@pytest.mark.parametrize("path", ["/orders/default", "/orders/prod/release(_)1"])
def test_fast_answers_match_the_flask_view_byte_for_byte(server, path):
    fast = raw_get(server, path)
    slow = raw_get(server, path + "?via=flask")
    assert fast.startswith(b"HTTP/1.1 200") and b"\r\nDate: -\r\n" in fast
    assert fast == slow


@pytest.mark.parametrize("query", ["", "?wait=5"])
def test_a_foreign_host_gets_the_same_421_from_the_fast_path_as_from_flask(server, http, query):
    """DNS rebinding: a page that points its own name at 127.0.0.1 sends that name as the Host."""
    etag = http.get(f"{server.url}/orders/default").headers["ETag"]
    headers = {"Host": "attacker.example:8888", **({"If-None-Match": etag} if query else {})}
    fast = raw_get(server, "/orders/default" + query, headers=headers)
    slow = raw_get(server, "/orders/default" + (query + "&" if query else "?") + "via=flask", headers=headers)

    def without_time(answer: bytes) -> bytes:
        return re.sub(rb'"timestamp": ?"[^"]*"', b'"timestamp": "-"', answer)

    assert fast.startswith(b"HTTP/1.1 421 MISDIRECTED REQUEST") or fast.startswith(b"HTTP/1.1 421")
    assert without_time(fast) == without_time(slow)
    body = json.loads(fast.partition(b"\r\n\r\n")[2])
    assert body["status"] == 421 and "attacker.example" in body["message"] and "version" not in body
    assert raw_get(server, "/orders/default", headers={"Host": f"localhost:{server.port}"}).startswith(
        b"HTTP/1.1 200"
    )


def test_unexpected_errors_on_the_fast_path_get_the_json_500(repo, tmp_path):
    repo.commit({"orders.yml": "a: 1\n"})
    settings = Settings(repo=str(repo.path), data_dir=str(tmp_path / "data"))
    backend = open_backend(settings.repo, settings.cache_dir, settings.default_label)

    class DiskOnFire:
        """A read that fails with a non-ConfigServerError (an I/O fault we cannot cause for real).

        An OSError: any other exception raised while an environment is checked makes it broken
        (held back, 422), since committed content must never turn into a 500."""

        def __getattr__(self, name):
            return getattr(backend, name)

        def read(self, version, path):
            raise OSError("disk on fire")

    app = create_app(settings, backend=DiskOnFire())
    server = LiveServer(app)
    try:
        response = requests.get(f"{server.url}/orders/default", timeout=5)
        assert response.status_code == 500
        assert response.json()["message"] == "unexpected server error; see the server log"
        assert "disk on fire" not in response.text
    finally:
        server.stop()
        app.extensions["config_server"].close()


def test_a_broken_commit_is_parsed_once(repo, serve, http):
    repo.commit({"orders.yml": "a: [\n"})
    server = serve(repo.path)
    cache = server.app.extensions["config_server"].service.cache
    misses = cache.stats()["misses"]
    for _ in range(3):
        response = http.get(f"{server.url}/orders/default")
        assert response.status_code == 422 and "orders.yml" in response.json()["message"]
    assert http.get(f"{server.url}/orders/default?via=flask").status_code == 422
    assert cache.stats()["misses"] == misses + 1


def orders_reader_server(serve, repo, tmp_path, token: str):
    """A server with an audit log whose auth file lets `token` (client `orders-service`) read
    application `orders` only; returns it and the audit log's path."""
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(
        f"clients:\n  - name: orders-service\n    tokens: [{hash_token(token)}]\n    applications: [orders]\n"
    )
    audit = tmp_path / "audit.log"
    return serve(repo.path, auth_file=str(auth_file), audit_log=str(audit)), audit


def test_authorised_reads_take_the_fast_path_with_the_same_audit_line(repo, serve, http, tmp_path):
    repo.commit({"orders.yml": "a: 1\n", "payments.yml": "p: 1\n"})
    token = "orders-token-" + "y" * 30
    server, audit = orders_reader_server(serve, repo, tmp_path, token)
    through_flask = []
    server.app.before_request(lambda: through_flask.append(request.path) and None)
    headers = {"Authorization": f"Bearer {token}"}
    fast = http.get(f"{server.url}/orders/default/main", headers=headers)
    slow = http.get(f"{server.url}/orders/default/main?via=flask", headers=headers)
    assert fast.status_code == slow.status_code == 200 and fast.content == slow.content
    listed = http.get(f"{server.url}/orders,orders/default/main,main", headers=headers)
    listed_slow = http.get(f"{server.url}/orders,orders/default/main,main?via=flask", headers=headers)
    assert listed.status_code == 200 and listed.content == listed_slow.content
    # Only the requests with a query string went through Flask.
    assert through_flask == ["/orders/default/main", "/orders,orders/default/main,main"]
    # Refusals still come from Flask, with their audit lines.
    assert http.get(f"{server.url}/payments/default", headers=headers).status_code == 403
    assert http.get(f"{server.url}/orders/default").status_code == 401
    assert http.get(f"{server.url}/orders/default", headers={"X-Config-Token": "nope"}).status_code == 401
    server.app.extensions["config_server"].audit.flush()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    for line in lines:
        line.pop("time")
    assert lines[0] == lines[1] and lines[2] == lines[3]
    assert lines[0]["event"] == "read" and lines[0]["client"] == "orders-service"
    assert (lines[2]["application"], lines[2]["label"]) == ("orders,orders", "main,main")
    assert [line["event"] for line in lines[4:]] == ["denied", "denied", "denied"]
    assert [line["status"] for line in lines[4:]] == [403, 401, 401]


RESERVED_PATHS = [
    "/console/app/orders",  # a branch named `orders`: not application `console`, profile `app`
    "/console/app/payments",
    "/console/orders",
    "/static/orders/main",
    "/encrypt/status/x",
    "/encrypt/orders",
    "/instances/orders",
    "/metrics/orders/main",
    "/health/orders",
    "/openapi.json/orders",
]


@pytest.mark.parametrize("token", [None, "admin"])
def test_paths_under_other_routes_get_flasks_answer(repo, serve, http, tmp_path, token):
    """The fast path leaves every path under another route's static first segment to Flask."""
    repo.commit({"orders.yml": "a: 1\n", "console.yml": "c: 1\n", "console-app.yml": "c: 2\n"})
    repo.git("branch", "orders")
    repo.git("branch", "payments")
    settings = {}
    headers = {}
    if token is not None:
        from tests.server.test_auth import auth_yaml, bearer

        auth_file = tmp_path / "auth.yml"
        auth_file.write_text(auth_yaml())
        settings["auth_file"] = str(auth_file)
        headers = bearer(token)
    server = serve(repo.path, **settings)
    for path in RESERVED_PATHS:
        fast = http.get(server.url + path, headers=headers)
        slow = http.get(server.url + path + "?via=flask", headers=headers)  # a query: always Flask
        assert (fast.status_code, fast.headers["Content-Type"]) == (
            slow.status_code,
            slow.headers["Content-Type"],
        ), path
        assert _without_timestamp(fast) == _without_timestamp(slow), path
    console = http.get(server.url + "/console/app/orders", headers=headers)
    assert console.status_code == 200 and console.headers["Content-Type"].startswith("text/html")
    assert "<h1>orders" in console.text


def test_reserved_prefixes_come_from_the_url_map(server):
    from config_server.http.fast_path import reserved_prefixes

    reserved = reserved_prefixes(server.app)
    for rule in server.app.url_map.iter_rules():
        first = rule.rule.strip("/").split("/")[0]
        if first and "<" not in first:
            assert first in reserved, rule.rule
    assert not any("<" in prefix for prefix in reserved)
    assert {"console", "encrypt", "instances", "metrics", "health", "static"} <= reserved


def _without_timestamp(answer: requests.Response) -> bytes:
    """The body, an error's `timestamp` (the second it was made) taken out."""
    return re.sub(rb'"timestamp":\s*"[^"]*"', b"", answer.content)


def test_long_polls_take_the_fast_path_with_the_same_answers_and_audit_lines(repo, serve, tmp_path):
    """`?wait=N` with If-None-Match: at once (a stale ETag), at the end of the wait (304) and
    woken by a commit (200), the fast path answers the bytes Flask answers and writes the same
    `watch` audit line; only the requests with another query parameter go through Flask."""
    import threading

    from tests.helpers import wait_for

    repo.commit({"orders.yml": "a: 1\n"})
    token = "orders-token-" + "z" * 30
    server, audit = orders_reader_server(serve, repo, tmp_path, token)
    through_flask = []
    server.app.before_request(lambda: through_flask.append(request.full_path) and None)
    auth = {"Authorization": f"Bearer {token}"}
    etag = requests.get(f"{server.url}/orders/default", headers=auth, timeout=5).headers["ETag"]

    stale = {**auth, "If-None-Match": '"an-older-version"'}
    fast = raw_get(server, "/orders/default?wait=30", headers=stale)
    assert fast.startswith(b"HTTP/1.1 200") and fast == raw_get(
        server, "/orders/default?wait=30&via=flask", headers=stale
    )

    current = {**auth, "If-None-Match": etag}
    fast = raw_get(server, "/orders/default?wait=0.3", headers=current)
    assert fast.startswith(b"HTTP/1.1 304") and fast == raw_get(
        server, "/orders/default?wait=0.3&via=flask", headers=current
    )

    hub = server.app.extensions["config_server"].hub
    woken: dict[str, bytes] = {}

    def poll(path: str) -> None:
        woken[path] = raw_get(server, path, headers=current)

    polls = [
        threading.Thread(target=poll, args=(path,))
        for path in ("/orders/default?wait=30", "/orders/default?wait=30&via=flask")
    ]
    for thread in polls:
        thread.start()
    try:
        wait_for(lambda: hub.watchers() == 2, what="both long polls to park")
        sent = repo.commit({"orders.yml": "a: 2\n"})
    finally:
        for thread in polls:
            thread.join(timeout=20)
    assert (
        woken["/orders/default?wait=30"].startswith(b"HTTP/1.1 200")
        and b'"a": 2' in woken["/orders/default?wait=30"]
    )
    assert woken["/orders/default?wait=30"] == woken["/orders/default?wait=30&via=flask"]
    assert [path for path in through_flask if "wait" in path] == [
        "/orders/default?wait=30&via=flask",
        "/orders/default?wait=0.3&via=flask",
        "/orders/default?wait=30&via=flask",
    ]
    # A refusal is still Flask's (401, with its `denied` line).
    assert raw_get(server, "/orders/default?wait=30", headers={"If-None-Match": etag}).startswith(
        b"HTTP/1.1 401"
    )
    server.app.extensions["config_server"].audit.flush()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    for line in lines:
        line.pop("time")
    watches = [line for line in lines if line["event"] == "watch"]
    assert len(watches) == 6 and watches[0] == watches[1] and watches[2] == watches[3]
    assert [line["status"] for line in watches] == [200, 200, 304, 304, 200, 200]
    # a woken poll's line names the version it was sent, on both paths (issue 24 item 6)
    assert {watches[4]["version"], watches[5]["version"]} == {sent} != {watches[0]["version"]}
    assert lines[-1]["event"] == "denied" and lines[-1]["status"] == 401


@pytest.mark.parametrize("query", ["wait=0", "wait=1e1", "wait=-1", "wait=abc", "wait=5&wait=1"])
def test_long_polls_with_another_query_go_to_flask(server, query):
    from config_server.http.fast_path import plain_wait

    assert plain_wait(query) is None
    assert plain_wait("wait=2.5") == 2.5 and plain_wait("wait=600") == 60.0


def pinned_repo(repo) -> str:
    """orders at `a: 1` (returned: the commit to pin), then `a: 2` on main."""
    good = repo.commit({"orders.yml": "a: 1\n"})
    repo.commit({"orders.yml": "a: 2\n"})
    return good


def test_a_pinned_answer_is_the_same_on_the_fast_path_and_flask_byte_for_byte(repo, serve):
    good = pinned_repo(repo)
    server = serve(repo.path)
    pinned = requests.post(
        f"{server.url}/pins/orders/default", json={"version": good, "reason": "x"}, timeout=5
    )
    assert pinned.status_code == 201
    header = b"\r\nX-Config-Pinned: " + good.encode() + b"; by=127.0.0.1\r\n"
    for path in ("/orders/default", "/orders/default/main"):
        fast = raw_get(server, path)
        slow = raw_get(server, path + "?via=flask")
        assert fast.startswith(b"HTTP/1.1 200") and header in fast and b'"a": 1' in fast
        assert fast == slow, path
    etag = requests.get(f"{server.url}/orders/default", timeout=5).headers["ETag"]
    fast = raw_get(server, "/orders/default", headers={"If-None-Match": etag})
    assert fast.startswith(b"HTTP/1.1 304") and header in fast
    assert fast == raw_get(server, "/orders/default?via=flask", headers={"If-None-Match": etag})


def test_the_hubs_direct_answer_to_a_pin_is_flasks_byte_for_byte(repo, server_process):
    """Under the gevent worker a parked fast-path poll is answered by the hub (`direct_answer.py`),
    a `?via=flask` one by the Flask view: the pin reaches both with the same bytes."""
    import threading

    from tests.helpers import held_long_polls, http_ready, wait_for

    good = pinned_repo(repo)
    server = server_process("--repo", str(repo.path), "--workers", "1")
    server.wait_ready(lambda: http_ready(f"{server.url}/health"))
    current = {"If-None-Match": requests.get(f"{server.url}/orders/default", timeout=5).headers["ETag"]}
    woken: dict[str, bytes] = {}

    def poll(path: str) -> None:
        woken[path] = raw_get(server, path, headers=current)

    paths = ("/orders/default?wait=30", "/orders/default?wait=30&via=flask")
    polls = [threading.Thread(target=poll, args=(path,)) for path in paths]
    for thread in polls:
        thread.start()
    try:
        wait_for(lambda: held_long_polls(server) == 2, what="both long polls to park")
        answer = requests.post(
            f"{server.url}/pins/orders/default", json={"version": good, "reason": "x"}, timeout=5
        )
        assert answer.status_code == 201
    finally:
        for thread in polls:
            thread.join(timeout=20)
    fast, slow = (woken[path] for path in paths)
    assert fast.startswith(b"HTTP/1.1 200") and b'"a": 1' in fast
    assert b"\r\nX-Config-Pinned: " + good.encode() + b"; by=127.0.0.1\r\n" in fast
    assert fast == slow


def test_an_answer_awaiting_approval_is_the_same_on_the_fast_path_and_through_flask(repo, serve, tmp_path):
    """A prod commit held back for a release approval: the same bytes, with the reason header."""
    from tests.server.test_approvals import READER, as_author, auth_file

    repo.commit({"orders.yml": "limit: 1\n", "orders-prod.yml": "limit: 10\n"})
    repo.commit({"policy/approvals.yml": "profiles: [prod]\n"})
    server = serve(repo.path, auth_file=auth_file(tmp_path))
    change = as_author(repo, {"orders-prod.yml": "limit: 20\n"}, "Bob <bob@example.com>")
    headers = {"Authorization": f"Bearer {READER}"}
    fast = raw_get(server, "/orders/prod", headers=headers)
    slow = raw_get(server, "/orders/prod?via=flask", headers=headers)
    assert f"\r\nX-Config-Held-Back: {change}\r\n".encode() in fast
    assert b"\r\nX-Config-Held-Back-Reason: awaiting approval\r\n" in fast
    assert fast == slow


@pytest.mark.parametrize("cap", [{"slots_per_caller": 1}, {"polls_per_address": 1}])
def test_a_long_poll_beyond_a_cap_is_refused_by_the_fast_path_with_flasks_bytes(repo, serve, cap):
    """Issue 24: a caller cycling through spellings beyond its slot cap (or parking beyond its
    address's cap) is refused hundreds of times a second; the fast path now answers that 429
    itself, the bytes Flask's error handler answers (timestamp aside), counted the same. Before,
    each went through Flask."""
    import threading

    from tests.helpers import wait_for

    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path, **cap)
    state = server.app.extensions["config_server"]
    through_flask: list[str] = []
    server.app.before_request(lambda: through_flask.append(request.full_path) and None)
    etag = requests.get(f"{server.url}/orders/default", timeout=5).headers["ETag"]
    parked = threading.Thread(
        target=raw_get, args=(server, "/orders/default?wait=3"), kwargs={"headers": {"If-None-Match": etag}}
    )
    parked.start()
    try:
        wait_for(lambda: state.parked.parked() == 1, what="the first poll to park")
        # another spelling (the slot cap refuses it before resolving), then the same one (the address cap)
        path = "/orders/default,p1" if "slots_per_caller" in cap else "/orders/default"
        current = {"If-None-Match": etag}
        fast = raw_get(server, f"{path}?wait=3", headers=current)
        slow = raw_get(server, f"{path}?wait=3&via=flask", headers=current)
        assert fast.startswith(b"HTTP/1.1 429") and b"\r\nConnection: close\r\n" in fast, fast[:300]
        without_time = re.compile(rb'"timestamp": ?"[^"]*"')
        assert without_time.sub(b"-", fast) == without_time.sub(b"-", slow)
        assert through_flask == [f"{path}?wait=3&via=flask"]
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        assert "config_server_long_polls_refused_total 2.0" in metrics
    finally:
        state.hub.close()  # answers the parked poll at once
        parked.join(timeout=10)
