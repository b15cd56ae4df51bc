"""Every socket read and write has a deadline; a write that does not complete ends the connection.

Raw sockets against the production server (gunicorn's gevent worker). A client that "stops
reading" is a socket with a small receive buffer that never calls `recv`; whether the server
dropped it is read from the client's own TCP state (Linux `TCP_INFO`), without reading.
"""

import socket
import threading
import time

import pytest
import requests

from tests.helpers import held_long_polls, wait_for

CLOSE = {"Connection": "close"}
#: `tcpi_state` values (include/net/tcp_states.h): reset by the server, or closed by it after
#: everything it sent was taken.
TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8
#: Long enough for the server to answer, short enough that the request deadline (61 s) is not it.
CLIENT_TIMEOUT = 2


def big_environment() -> dict[str, str]:
    """About 7 MB of Environment JSON: more than a stalled client's and the kernel's buffers hold."""
    value = "x" * 3_000_000
    return {
        "orders.yml": f"big: {value}\n",
        "application.yml": f"shared: {value}\n",
        "payments.yml": "p: 1\n",
    }


@pytest.fixture
def server(server_process, repo):
    repo.commit(big_environment())
    started = server_process(
        "--repo",
        str(repo.path),
        "--workers",
        "1",
        "--client-timeout",
        str(CLIENT_TIMEOUT),
        "--request-timeout",
        "61",
    )
    started.wait_ready(lambda: requests.get(f"{started.url}/health", timeout=1, headers=CLOSE).ok)
    started.repo = repo
    return started


def stalled_client(port: int) -> socket.socket:
    """A connection whose client never reads: a 1-byte receive buffer (the kernel's minimum)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    sock.connect(("127.0.0.1", port))
    return sock


def dropped(sock: socket.socket) -> bool:
    """True once the server has ended the connection (reset it, or closed it), read without `recv`."""
    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    return state in (TCP_CLOSE, TCP_CLOSE_WAIT)


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send `data` from a thread (it blocks once the server stops reading); errors end it quietly."""

    def send() -> None:
        sock.settimeout(60)
        try:
            sock.sendall(data)
        except OSError:
            pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_a_header_only_answer_to_a_client_that_stops_reading_is_cut_off(server):
    """Item 1: pipelined HEAD /health answers (headers only, sent by the last write) to a client
    that never reads: the connection is dropped within the client timeout, not held."""
    sock = stalled_client(server.port)
    with sock:
        started = time.monotonic()
        sender = send_in_background(sock, b"HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 60_000)
        wait_for(lambda: dropped(sock), timeout=20, what="the server to drop a client that stopped reading")
        assert time.monotonic() - started < 20
        sender.join(timeout=5)
    assert requests.get(f"{server.url}/health", timeout=5, headers=CLOSE).ok


def health_heads_answered(url: str) -> float:
    """How many `HEAD /health` the server has answered (its request counter)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{url}/metrics", timeout=10, headers=CLOSE).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "config_server_http_requests_total"
        and sample.labels.get("endpoint") == "health"
        and sample.labels.get("method") == "HEAD"
    )


def test_a_client_that_pipelines_and_never_reads_gets_few_answers_computed(server):
    """Issue 24, /health under the pipeliners: 3,000 pipelined `HEAD /health` from a client that
    never reads. The server answers only until what it left unsent passes `UNSENT_AT_MOST`
    (16 KiB: some 100 answers), then waits for the client to take it and drops it after the
    client timeout. Before, it computed all 3,000 (each CPU the worker's other connections wait
    for; about 1.6 MB fit in the kernel's buffers) and kept the connection."""
    sent = 3_000
    sock = stalled_client(server.port)
    with sock:
        sender = send_in_background(sock, b"HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * sent)
        wait_for(
            lambda: dropped(sock) or health_heads_answered(server.url) >= sent,
            timeout=20,
            what="the server to drop the client, or to answer every request",
        )
        sender.join(timeout=5)
        answered = health_heads_answered(server.url)
        assert answered < sent / 10, answered
        assert dropped(sock)


def test_a_large_answer_to_a_client_that_stops_reading_is_cut_off(server):
    """Item 2: `--client-timeout` bounds each write: a 7 MB environment a client stops reading is
    not held until the request deadline (61 s)."""
    sock = stalled_client(server.port)
    with sock:
        sock.sendall(b"GET /orders/default HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        wait_for(lambda: dropped(sock), timeout=15, what="the server to drop a client that stopped reading")
    assert requests.get(f"{server.url}/payments/default", timeout=5, headers=CLOSE).ok


def test_a_body_that_stops_arriving_is_cut_off_at_the_client_timeout(server):
    """Item 2: `--client-timeout` bounds each read: a body declared 100 bytes with 10 sent is cut
    off after the client timeout, not the request deadline (61 s)."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /monitor HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\n\r\npath=a.yml"
        )
        started = time.monotonic()
        sock.settimeout(15)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 10
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4")  # refused (the form cannot be read), never a 5xx


def test_a_direct_answer_that_cannot_be_completed_ends_the_connection(server):
    """Item 3: the hub's direct answer (7 MB) to a long poll whose client stops reading: when the
    rest cannot be sent in time, the connection ends; the request pipelined behind it is never
    served (it used to be parked, its answer to start inside the unfinished body)."""
    etag = requests.get(f"{server.url}/orders/default", timeout=10, headers=CLOSE).headers["ETag"]
    small = requests.get(f"{server.url}/payments/default", timeout=10, headers=CLOSE).headers["ETag"]
    sock = stalled_client(server.port)
    with sock:
        sock.sendall(
            f"GET /orders/default?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: {etag}\r\n\r\n"
            f"GET /payments/default?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"If-None-Match: {small}\r\n\r\n".encode()
        )
        wait_for(lambda: held_long_polls(server) == 1, what="the long poll to park")
        changed = big_environment()
        changed["orders.yml"] = changed["orders.yml"].replace("big:", "bigger:")
        server.repo.commit(changed)
        wait_for(lambda: dropped(sock), timeout=15, what="the server to end the unfinished answer")
        assert held_long_polls(server) == 0


def test_the_direct_answer_reports_a_rest_it_could_not_send():
    """Item 3, the unit: `finish` after a partial write says the connection must be closed."""
    from config_server.delivery.direct_answer import DirectAnswer

    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        server_side.setblocking(False)

        def sendall(data: bytes) -> None:
            server_side.settimeout(0.2)
            server_side.sendall(data)

        answer = DirectAnswer(server_side.send, sendall)
        answer.deliver(b"x" * (8 << 20))  # far more than the socket pair buffers
        assert answer.answered and not answer.broken
        assert answer.finish() is True
        assert answer.broken  # the worker closes the connection


def test_shutdown_answers_parked_polls_with_connection_close_and_exits_promptly(server_process, repo):
    """Item 7: on SIGTERM every parked poll is answered 304 with `Connection: close` and its
    connection closed, so the master exits well before the 10 s graceful timeout (the default
    client timeout, 15 s, is also how long gunicorn waits for a keep-alive client's next request)."""
    repo.commit({"payments.yml": "p: 1\n"})
    server = server_process("--repo", str(repo.path), "--workers", "1")
    server.wait_ready(lambda: requests.get(f"{server.url}/health", timeout=1, headers=CLOSE).ok)
    etag = requests.get(f"{server.url}/payments/default", timeout=10, headers=CLOSE).headers["ETag"]
    polls = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    try:
        for sock in polls:
            sock.sendall(
                f"GET /payments/default?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"If-None-Match: {etag}\r\n\r\n".encode()
            )
        wait_for(lambda: held_long_polls(server) == len(polls), what="the long polls to park")
        started = time.monotonic()
        server.process.terminate()
        server.process.wait(timeout=15)
        assert time.monotonic() - started < 5
        for sock in polls:
            sock.settimeout(5)
            answer = b""
            while chunk := sock.recv(65536):  # the server closes: the read ends
                answer += chunk
            head = answer.split(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.1 304") and b"\r\nconnection: close" in head
    finally:
        for sock in polls:
            sock.close()
