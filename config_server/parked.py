"""What one worker lets its callers hold: connections within its descriptor limit, parked polls
per client address and in all.

A parked long poll holds a connection (a descriptor, a greenlet, a `worker_connections` slot) for
up to 60 s. Without caps one client could park every connection a worker may have, and the
worker then answers nothing else: no `/health`, no state-store file (no descriptor left to open
it). So each worker:

- accepts at most `connection_cap(...)` connections at once: `--worker-connections`, but never
  more than its descriptor limit (`RLIMIT_NOFILE`) minus `FD_RESERVE`, which stay free for the
  listener, the state-store and verdict files, git's pipes and the log files;
- parks at most `--polls-per-address` long polls per client address, and in all as many as its
  connection cap minus a spare kept for other requests (`total_poll_cap`); a long poll beyond
  either is answered 429 (`TooManyPolls`) instead of being parked.

Stdlib only: the gunicorn worker imports this module before the app.
"""

from __future__ import annotations

import resource
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from config_server.errors import TooManyPolls

#: Descriptors a worker keeps free of connections: the listener, state-store, verdict and audit
#: files, git subprocess pipes, the heartbeat, the file-watch child and log files.
FD_RESERVE = 64


def descriptor_limit() -> int:
    """This process's soft `RLIMIT_NOFILE` (a large number when unlimited)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(worker_connections: int, descriptors: int, reserve: int = FD_RESERVE) -> int:
    """The connections a worker may hold at once: `worker_connections`, within `descriptors - reserve`."""
    return max(1, min(worker_connections, descriptors - reserve))


def total_poll_cap(connections: int) -> int:
    """Parked polls a worker holds at most: its connection cap less a spare for other requests
    (a tenth, at least 16), so that `/health` and plain reads always find a connection slot."""
    return max(1, connections - max(16, connections // 10))


@dataclass(frozen=True)
class Limits:
    """The limits one worker applies, as `/health` and the metrics show them."""

    descriptors: int
    connections: int
    polls: int
    polls_per_address: int

    def as_dict(self) -> dict[str, int]:
        """The limits by their names in `/health`'s details."""
        return {
            "descriptors": self.descriptors,
            "connections": self.connections,
            "parkedPolls": self.polls,
            "parkedPollsPerAddress": self.polls_per_address,
        }


class ParkedPolls:
    """Counts the long polls parked now, per client address and in all, and refuses beyond the caps.

    A cap of 0 means none. Only `threading` primitives: the same code runs on greenlets.
    """

    def __init__(self, per_address: int, total: int = 0) -> None:
        self.per_address = per_address
        self.total = total
        self._by_address: dict[str, int] = {}
        self._count = 0
        self._lock = threading.Lock()
        #: Called (no arguments) for each poll refused, such as a metrics counter's `inc`.
        self.on_refused: Callable[[], object] | None = None

    def admits(self, address: str | None) -> bool:
        """Whether a poll from `address` would be parked now (a hint: `hold` decides and counts)."""
        with self._lock:
            return self._room(address or "-")

    @contextmanager
    def hold(self, address: str | None) -> Iterator[None]:
        """Count one parked poll of `address` while the block runs; raise TooManyPolls beyond a cap."""
        key = address or "-"
        with self._lock:
            if not self._room(key):
                if self.on_refused is not None:
                    self.on_refused()
                limit = self.total if self.total and self._count >= self.total else self.per_address
                scope = "this worker" if limit == self.total else f"address {key}"
                raise TooManyPolls(f"too many long polls parked for {scope} (at most {limit}); retry shortly")
            self._count += 1
            self._by_address[key] = self._by_address.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1
                left = self._by_address[key] - 1
                if left:
                    self._by_address[key] = left
                else:
                    del self._by_address[key]

    def parked(self) -> int:
        """How many polls are parked now."""
        return self._count

    def _room(self, key: str) -> bool:
        if self.total and self._count >= self.total:
            return False
        return not (self.per_address and self._by_address.get(key, 0) >= self.per_address)
