"""What one worker lets its callers hold: connections within its descriptor limit, parked polls
per client address and in all, and watched environments (hub slots) per caller.

A parked long poll holds a connection (a descriptor, a greenlet, a `worker_connections` slot) for
up to 60 s. Without caps one client could park every connection a worker may have, and the
worker then answers nothing else: no `/health`, no state-store file (no descriptor left to open
it). So each worker:

- accepts at most `connection_cap(...)` connections at once: `--worker-connections`, but never
  more than its descriptor limit (`RLIMIT_NOFILE`) minus `FD_RESERVE`, which stay free for the
  listener, the state-store and verdict files, git's pipes and the log files;
- parks at most `--polls-per-address` long polls per client address, and in all as many as its
  connection cap minus a spare kept for other requests (`total_poll_cap`); a long poll beyond
  either is answered 429 (`TooManyPolls`) instead of being parked;
- lets one caller (a client and its address; the address alone on an open server) wait on at most
  `--slots-per-caller` distinct (application, profiles, label) at once: each is a slot of the
  watch hub, resolved again at every commit of its label, so spellings of one environment
  (`/orders/prod,p1`, `/orders/prod,p2`, ...) would otherwise multiply the hub's work. A long poll
  on one more is answered 429; one on an environment the caller already waits on is not refused.

Stdlib only: the gunicorn worker imports this module before the app.
"""

from __future__ import annotations

import resource
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

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


def caller_of(address: str | None, client: str | None) -> str:
    """Who holds a parked poll, as the caps and their 429 name it: the client (None on an open
    server, where every caller is anonymous) and its address."""
    where = f"address {address or '-'}"
    return where if client is None else f"client {client} at {where}"


class ParkedPolls:
    """Counts the long polls parked now, per client address and in all, and the distinct
    environments each caller waits on; refuses a poll beyond a cap.

    A cap of 0 means none. Only `threading` primitives: the same code runs on greenlets.
    """

    def __init__(self, per_address: int, total: int = 0, slots_per_caller: int = 0) -> None:
        self.per_address = per_address
        self.total = total
        self.slots_per_caller = slots_per_caller
        self._by_address: dict[str, int] = {}
        #: Per caller (`caller_of`), its polls parked per environment it waits on.
        self._slots: dict[str, dict[Hashable, int]] = {}
        self._count = 0
        self._lock = threading.Lock()
        #: Called (no arguments) for each poll refused, such as a metrics counter's `inc`.
        self.on_refused: Callable[[], object] | None = None

    def admits(self, address: str | None, client: str | None = None, slot: Hashable = None) -> bool:
        """Whether a poll from `address` (by `client`, on `slot`) would be parked now (a hint:
        `hold` decides and counts)."""
        with self._lock:
            return self._refusal(address or "-", caller_of(address, client), slot) is None

    def refuse_unwatched(self, address: str | None, client: str | None = None, slot: Hashable = None) -> None:
        """Raise TooManyPolls, as `hold` would, when `slot` is an environment the caller does not
        wait on yet and it already waits on `slots_per_caller` others; nothing is counted held.

        Called before the poll's environment is resolved, so a caller cycling through spellings
        beyond its cap costs a dictionary lookup each, not a resolution (issue 24, item 5)."""
        caller = caller_of(address, client)
        with self._lock:
            refusal = self._slot_refusal(caller, slot)
            if refusal is not None and self.on_refused is not None:
                self.on_refused()
        if refusal is not None:
            raise TooManyPolls(refusal)

    def watches_within_cap(
        self, address: str | None, client: str | None = None, slot: Hashable = None
    ) -> bool:
        """Whether `refuse_unwatched` would let the poll through (a check that counts nothing)."""
        with self._lock:
            return self._slot_refusal(caller_of(address, client), slot) is None

    @contextmanager
    def hold(self, address: str | None, client: str | None = None, slot: Hashable = None) -> Iterator[None]:
        """Count one parked poll of `address` while the block runs; raise TooManyPolls beyond a cap.

        `client` is the caller's client name (None on an open server) and `slot` the environment
        it waits on, such as its (application, profiles, label): at most `slots_per_caller`
        distinct ones per caller."""
        key = address or "-"
        caller = caller_of(address, client)
        with self._lock:
            refusal = self._refusal(key, caller, slot)
            if refusal is not None:
                if self.on_refused is not None:
                    self.on_refused()
                raise TooManyPolls(refusal)
            self._count += 1
            self._by_address[key] = self._by_address.get(key, 0) + 1
            slots = self._slots.setdefault(caller, {})
            slots[slot] = slots.get(slot, 0) + 1
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
                slots = self._slots[caller]
                if slots[slot] > 1:
                    slots[slot] -= 1
                else:
                    del slots[slot]
                    if not slots:
                        del self._slots[caller]

    def parked(self) -> int:
        """How many polls are parked now."""
        return self._count

    def _refusal(self, key: str, caller: str, slot: Hashable) -> str | None:
        """Why a poll of address `key` by `caller` on `slot` may not be parked now; None: it may."""
        if self.total and self._count >= self.total:
            return f"too many long polls parked for this worker (at most {self.total}); retry shortly"
        if self.per_address and self._by_address.get(key, 0) >= self.per_address:
            return f"too many long polls parked for address {key} (at most {self.per_address}); retry shortly"
        return self._slot_refusal(caller, slot)

    def _slot_refusal(self, caller: str, slot: Hashable) -> str | None:
        """Why `caller` may not wait on one more environment, `slot`; None: it may."""
        slots = self._slots.get(caller, {})
        if self.slots_per_caller and slot not in slots and len(slots) >= self.slots_per_caller:
            return (
                f"too many environments watched at once by {caller} (at most {self.slots_per_caller} "
                "distinct application/profiles/label); wait on fewer"
            )
        return None
