"""Direct long-poll answers: the hub writes a pre-built HTTP answer to a waiting connection.

The gevent worker (which owns the sockets) offers a `DirectAnswer` for each long-poll GET; the
hub encodes a change's answer once (`encode_http`) and hands the bytes to every offered
connection in a tight loop before it wakes anybody, so ten thousand watchers get the new settings
in one pass instead of each waiting for its turn through the framework.

Invariants: exactly one of the hub and the request answers a connection, and at most once (a
second change landing before the request wakes is not written again); `deliver` never blocks;
only a GET is offered (a HEAD must get no body, so it takes the usual path). Stdlib only: the
gunicorn master imports this module through the worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from config_server.content.environment_answer import Answer


def encode_http(answer: Answer, date: str) -> bytes:
    """The whole HTTP/1.1 answer: status line, `Date`, the answer's headers, body."""
    lines = [f"HTTP/1.1 {answer.status_line}", f"Date: {date}"]
    lines.extend(f"{name}: {value}" for name, value in answer.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body


class DirectAnswer:
    """A waiting request the hub may answer itself by writing raw HTTP to its connection.

    The hub calls `deliver` (from the dispatcher), which never blocks: it sends what the socket
    takes at once and leaves the rest to the request. The request calls `finish` when it resumes,
    which sends any rest and returns True when the answer was the hub's (`broken` says when that
    rest could not be sent). A lock makes sure exactly
    one of them answers, and a client that does not read cannot stall the others' answers.
    """

    def __init__(self, send_nowait: Callable[[bytes], int], sendall: Callable[[bytes], None]) -> None:
        self._send_nowait = send_nowait
        self._sendall = sendall
        self._lock = threading.Lock()
        self._finished = False
        self._rest = b""
        self.answered = False
        #: The version of the settings the hub's answer carried (for the audit line), once answered.
        self.version: str | None = None
        #: True when the answer was started but its rest could not be sent: end the connection.
        self.broken = False

    def deliver(self, response: bytes, version: str | None = None) -> None:
        """Send as much of `response` (the settings at `version`) as the socket takes now, unless
        the request has moved on or was already answered (a second change before the request woke
        is not written again)."""
        with self._lock:
            if self._finished or self.answered:
                return
            try:
                sent = self._send_nowait(response)
            except BlockingIOError:
                sent = 0
            except OSError:
                return  # a dead connection: the request's own path will notice
            self.answered = True
            self.version = version
            self._rest = response[sent:]

    def finish(self) -> bool:
        """Stop further deliveries, send what the hub could not, and say whether the hub answered.

        When the rest cannot be sent (the socket's timeout, a closed connection), the answer stays
        unfinished: `broken` is set and the connection must end, or the next answer on it would
        start inside this one's body."""
        with self._lock:
            self._finished = True
            answered, rest, self._rest = self.answered, self._rest, b""
        if rest:
            try:
                self._sendall(rest)
            except OSError:
                self.broken = True
        return answered
