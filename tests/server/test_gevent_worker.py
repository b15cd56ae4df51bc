"""The production worker: direct long-poll answers, one connection reused, coalesced writes."""

import re
import socket
import threading

import pytest
import requests

from tests.helpers import wait_for


@pytest.fixture
def gunicorn_server(server_process, repo):
    repo.commit({"orders.yml": "value: 1\n", "payments.yml": "p: 1\n"})
    server = server_process("--repo", str(repo.path), "--workers", "1")
    server.wait_ready(
        lambda: requests.get(f"{server.url}/health", timeout=1, headers={"Connection": "close"}).ok
    )
    server.repo = repo
    return server


def watchers(url: str) -> int:
    return requests.get(f"{url}/health", timeout=5, headers={"Connection": "close"}).json()["details"][
        "watchers"
    ]


def test_long_polls_are_answered_directly_and_keep_their_connection(gunicorn_server):
    url = gunicorn_server.url
    with requests.Session() as session:
        first = session.get(f"{url}/orders/default", timeout=5)
        etag = first.headers["ETag"]
        answers = []

        def poll():
            answers.append(
                session.get(f"{url}/orders/default?wait=30", headers={"If-None-Match": etag}, timeout=35)
            )

        thread = threading.Thread(target=poll)
        thread.start()
        try:
            wait_for(lambda: watchers(url) == 1, what="the long poll to park")
            gunicorn_server.repo.commit({"orders.yml": "value: 2\n"})
            thread.join(timeout=15)
        finally:
            thread.join(timeout=35)
        answer = answers[0]
        assert answer.status_code == 200 and answer.headers["ETag"] != etag
        assert answer.headers["Content-Type"] == "application/json" and "Date" in answer.headers
        assert "Server" not in answer.headers  # written by the hub, not by gunicorn's response path
        assert answer.json()["propertySources"][0]["source"] == {"value": 2}
        # The same connection serves the next requests: a 304, then a plain 200.
        again = session.get(
            f"{url}/orders/default", headers={"If-None-Match": answer.headers["ETag"]}, timeout=5
        )
        assert again.status_code == 304
        assert session.get(f"{url}/payments/default", timeout=5).json()["propertySources"][0]["source"] == {
            "p": 1
        }


def test_a_long_poll_that_times_out_gets_304(gunicorn_server):
    url = gunicorn_server.url
    etag = requests.get(f"{url}/orders/default", timeout=5).headers["ETag"]
    answer = requests.get(
        f"{url}/orders/default?wait=0.5", headers={"If-None-Match": etag, "Connection": "close"}, timeout=10
    )
    assert answer.status_code == 304 and answer.headers["ETag"] == etag and answer.content == b""


def test_coalesced_answer_is_well_formed(gunicorn_server):
    with socket.create_connection(("127.0.0.1", gunicorn_server.port), timeout=5) as sock:
        sock.sendall(b"GET /orders/default HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b'"value": 1' in body
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    assert len(body) == length


def test_direct_answer_never_blocks_on_a_client_that_does_not_read():
    """A real socket pair whose buffer is full: the hub's write returns, the request sends the rest."""
    from config_server.delivery.direct_answer import DirectAnswer

    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        server_side.setblocking(False)
        filled = 0
        try:
            while True:
                filled += server_side.send(b"x" * 65536)
        except BlockingIOError:
            pass

        def sendall(data: bytes) -> None:
            server_side.setblocking(True)
            server_side.sendall(data)

        answer = DirectAnswer(server_side.send, sendall)
        response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        answer.deliver(response)  # returns at once although nothing fits
        assert answer.answered
        received = bytearray()

        def drain() -> None:
            while len(received) < filled + len(response):
                received.extend(client_side.recv(1 << 20))

        reader = threading.Thread(target=drain)
        reader.start()
        assert answer.finish() is True  # the request sends what the hub could not
        reader.join(timeout=10)
        assert bytes(received[filled:]) == response


def test_a_finished_request_is_never_answered_twice():
    from config_server.delivery.direct_answer import DirectAnswer

    sent = []
    answer = DirectAnswer(lambda data: sent.append(data) or len(data), sent.append)
    assert answer.finish() is False
    answer.deliver(b"late")
    assert sent == [] and answer.answered is False


def read_answer(sock: socket.socket, buffer: bytearray, head_only: bool = False) -> bytes:
    """One HTTP answer from `buffer` + the socket: the head, plus Content-Length bytes unless HEAD."""
    while b"\r\n\r\n" not in buffer:
        buffer.extend(sock.recv(65536))
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    declared = re.search(rb"(?i)content-length: (\d+)", head)
    length = 0 if head_only or declared is None else int(declared.group(1))
    while len(buffer) < end + length:
        buffer.extend(sock.recv(65536))
    answer = bytes(buffer[: end + length])
    del buffer[: end + length]
    return answer


def without_server_lines(answer: bytes) -> bytes:
    """The answer without the lines gunicorn adds to what goes through it (Date, Server, Connection)."""
    return re.sub(rb"\r\n(?:Date|Server|Connection): [^\r]*", b"", answer)


def fetch(server, path: str, headers: str = "") -> bytes:
    """One GET on a fresh connection (`headers`: extra header lines), its whole answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
        return read_answer(sock, bytearray())


def test_head_long_poll_gets_no_body(gunicorn_server):
    url = gunicorn_server.url
    etag = requests.get(f"{url}/orders/default", timeout=5).headers["ETag"]
    with socket.create_connection(("127.0.0.1", gunicorn_server.port), timeout=15) as sock:
        sock.sendall(
            f"HEAD /orders/default?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"If-None-Match: {etag}\r\n\r\n".encode()
        )
        wait_for(lambda: watchers(url) == 1, what="the long poll to park")
        gunicorn_server.repo.commit({"orders.yml": "value: 2\n"})
        buffer = bytearray()
        head = read_answer(sock, buffer, head_only=True)
        assert head.startswith(b"HTTP/1.1 200")
        # The next answer on the connection starts right after the head: no body came in between.
        sock.sendall(b"GET /payments/default HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        following = read_answer(sock, buffer)
        assert following.startswith(b"HTTP/1.1 200") and b'"p": 1' in following


def test_a_direct_answer_is_delivered_once():
    from config_server.delivery.direct_answer import DirectAnswer

    sent = []
    answer = DirectAnswer(lambda data: sent.append(data) or len(data), sent.append)
    answer.deliver(b"first change")
    answer.deliver(b"second change")  # landed before the request woke
    assert answer.finish() is True
    assert sent == [b"first change"]


def test_direct_and_fast_answers_match_the_flask_view_byte_for_byte(gunicorn_server):
    """The hub's direct answer, the fast path and Flask under gunicorn: the same bytes, apart
    from the lines gunicorn itself adds to answers that go through it (Date, Server, Connection)."""
    url = gunicorn_server.url

    etag = requests.get(f"{url}/orders/default", timeout=5).headers["ETag"]
    with socket.create_connection(("127.0.0.1", gunicorn_server.port), timeout=15) as sock:
        sock.sendall(
            f"GET /orders/default?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"If-None-Match: {etag}\r\n\r\n".encode()
        )
        wait_for(lambda: watchers(url) == 1, what="the long poll to park")
        gunicorn_server.repo.commit({"orders.yml": "value: 3\n"})
        direct = read_answer(sock, bytearray())
    assert b"\r\nServer:" not in direct  # written by the hub
    flask = fetch(gunicorn_server, "/orders/default?via=flask")
    fast = fetch(gunicorn_server, "/orders/default")
    assert b'"value": 3' in flask
    assert without_server_lines(direct) == without_server_lines(flask) == without_server_lines(fast)


def test_a_held_back_direct_answer_matches_the_flask_view_byte_for_byte(gunicorn_server):
    """A good change and a broken commit land together: the hub's direct answer is the good
    version with `X-Config-Held-Back`, the same bytes as the fast path and Flask send."""
    url, repo = gunicorn_server.url, gunicorn_server.repo

    etag = requests.get(f"{url}/orders/default", timeout=5).headers["ETag"]
    repo.git("checkout", "-q", "-b", "side")
    good = repo.commit({"orders.yml": "value: 2\n"})
    broken = repo.commit({"orders.yml": "value: [2\n"})
    repo.git("checkout", "-q", "main")
    with socket.create_connection(("127.0.0.1", gunicorn_server.port), timeout=15) as sock:
        sock.sendall(
            f"GET /orders/default?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"If-None-Match: {etag}\r\n\r\n".encode()
        )
        wait_for(lambda: watchers(url) == 1, what="the long poll to park")
        repo.git("update-ref", "refs/heads/main", broken)
        direct = read_answer(sock, bytearray())
    assert b"\r\nServer:" not in direct  # written by the hub
    assert f"\r\nX-Config-Held-Back: {broken}\r\n".encode() in direct and good.encode() in direct
    flask = fetch(gunicorn_server, "/orders/default?via=flask")
    fast = fetch(gunicorn_server, "/orders/default")
    assert without_server_lines(direct) == without_server_lines(flask) == without_server_lines(fast)


def test_fast_long_polls_match_the_flask_view_byte_for_byte(gunicorn_server):
    """Under gunicorn, a long poll answered at once (a stale ETag) and one that ends unanswered
    (304): the fast path and Flask send the same bytes (gunicorn's Date, Server, Connection aside)."""
    url = gunicorn_server.url

    etag = requests.get(f"{url}/orders/default", timeout=5).headers["ETag"]
    older, current = 'If-None-Match: "older"\r\n', f"If-None-Match: {etag}\r\n"
    stale = fetch(gunicorn_server, "/orders/default?wait=30", older)
    assert stale.startswith(b"HTTP/1.1 200") and b'"value": 1' in stale
    flask = fetch(gunicorn_server, "/orders/default?wait=30&via=flask", older)
    assert without_server_lines(stale) == without_server_lines(flask)
    unchanged = fetch(gunicorn_server, "/orders/default?wait=0.5", current)
    assert unchanged.startswith(b"HTTP/1.1 304") and etag.encode() in unchanged
    flask = fetch(gunicorn_server, "/orders/default?wait=0.5&via=flask", current)
    assert without_server_lines(unchanged) == without_server_lines(flask)
