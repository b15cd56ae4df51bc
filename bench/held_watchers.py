"""Long-poll watchers held by one harness process, timed by the kernel or when read.

On a machine where the harness shares the cores with the server it measures, a Python harness
that reads every answer as it arrives takes CPU from the server while the clock runs (on two
cores, 50,000 watchers in three harness processes cost about as much CPU as the server's own
work). Real watchers live on other machines. So by default (`idle=True`) this harness:

- runs at `SCHED_IDLE` priority (`idle_priority`): it gets a core only when the server does not
  want it;
- asks the kernel for each segment's receive time (`SO_TIMESTAMPNS`, CLOCK_REALTIME), so an
  answer is timed when it reached the watcher's socket, however late the harness reads it.

With `idle=False` it reads at normal priority and times an answer when it has read and parsed it
(the harness's own CPU then counts against the server). Either way every answer is parsed
(status, Content-Length, the JSON body) as a client would.

Each watcher holds one persistent connection (HTTP/1.1 keep-alive, as our client and Spring's
keep theirs) with one `GET path?wait=60` and `If-None-Match`; a 304 (the long poll expired before
the change) is polled again at once, as our client does.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import time
from dataclasses import dataclass

#: struct timespec as the kernel hands it in a SCM_TIMESTAMPNS control message.
_TIMESPEC = struct.Struct("@qq")
#: Linux's SO_TIMESTAMPNS (the `socket` module names it only on some builds).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


@dataclass
class _Watcher:
    index: int
    sock: socket.socket
    buffer: bytes = b""
    #: Kernel receive time (CLOCK_REALTIME seconds) of the segment that completed the 200 answer.
    done_at: float | None = None


def idle_priority() -> None:
    """Run this process at SCHED_IDLE (below every nice level), where Linux offers it."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not allowed: the lowest nice level instead
        os.nice(19)


class HeldWatchers:
    """`count` long polls of `path` at `port`, from source address 127.0.0.{1 + i // per_source}
    for watcher i (offset by `offset`, the index of the first among all harness processes)."""

    def __init__(
        self,
        port: int,
        path: str,
        etag: str,
        count: int,
        offset: int = 0,
        per_source: int = 5000,
        idle: bool = True,
    ) -> None:
        self.port, self.count, self.offset, self.per_source = port, count, offset, per_source
        self.kernel_time = idle
        self.request = (
            f'GET {path}?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: "{etag}"\r\n\r\n'
        ).encode()
        self.poller = select.epoll()
        self.watchers: dict[int, _Watcher] = {}
        self.answered = 0

    def open(self) -> None:
        """Connect every watcher and send its long poll."""
        for index in range(self.count):
            self._connect(index)

    def _connect(self, index: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((f"127.0.0.{1 + (self.offset + index) // self.per_source}", 0))
        sock.settimeout(30)
        sock.connect(("127.0.0.1", self.port))
        sock.sendall(self.request)
        sock.setblocking(False)
        self.watchers[sock.fileno()] = _Watcher(index, sock)
        self.poller.register(sock.fileno(), select.EPOLLIN)

    def run(self, timeout: float) -> None:
        """Read answers until every watcher has a 200, or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while self.answered < self.count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for fd, _ in self.poller.poll(min(remaining, 1.0)):
                watcher = self.watchers.get(fd)
                if watcher is not None:
                    self._read(watcher)

    def _read(self, watcher: _Watcher) -> None:
        try:
            data, ancillary, _, _ = watcher.sock.recvmsg(65536, 256)
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        if not data:  # closed by the server before answering: poll again
            self._again(watcher)
            return
        watcher.buffer += data
        end = watcher.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head, body = watcher.buffer[:end].lower(), watcher.buffer[end + 4 :]
        if len(body) < _content_length(head):
            return
        status = int(head[9:12])
        if status == 304:
            self._again(watcher)
            return
        if status != 200:
            raise RuntimeError(f"watcher {watcher.index} was answered {status}: {watcher.buffer[:200]!r}")
        json.loads(body)  # a client parses what it got
        watcher.done_at = _received_at(ancillary) if self.kernel_time else time.time()
        watcher.buffer = b""
        self.answered += 1
        self.poller.unregister(watcher.sock.fileno())

    def _again(self, watcher: _Watcher) -> None:
        fd = watcher.sock.fileno()
        self.poller.unregister(fd)
        del self.watchers[fd]
        watcher.sock.close()
        self._connect(watcher.index)

    def done_at(self) -> list[float]:
        """When each 200 answer arrived (kernel receive time) or was read (`idle=False`):
        CLOCK_REALTIME seconds."""
        return [w.done_at for w in self.watchers.values() if w.done_at is not None]

    def close(self) -> None:
        """Close every connection."""
        for watcher in self.watchers.values():
            watcher.sock.close()
        self.poller.close()


def _content_length(head: bytes) -> int:
    mark = head.find(b"content-length:")
    if mark < 0:
        return 0
    stop = head.find(b"\r\n", mark)
    return int(head[mark + 15 : stop if stop >= 0 else len(head)])


def _received_at(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = _TIMESPEC.unpack(data[: _TIMESPEC.size])
            return seconds + nanoseconds / 1e9
    return time.time()  # no timestamp offered: the moment it was read (later, never earlier)
