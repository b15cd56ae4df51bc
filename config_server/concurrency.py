"""The one home of the thread and gevent helpers: what runs on a real OS thread, what may block.

The server runs under gevent's worker (threads are greenlets there) and, in tests and under
`gthread`, on plain threads. Code that must not hold the event loop, or that shares a lock with a
real OS thread, asks here instead of importing gevent itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class MayBlock(Protocol):
    """Something whose calls may block the caller (a state store): `cooperative` says they do not."""

    @property
    def cooperative(self) -> bool:
        """True when its calls yield to the gevent loop themselves (Redis through patched sockets)."""


def gevent_patched_threading() -> bool:
    """True inside the gevent worker, where `threading` has been monkey-patched (threads are greenlets)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a server dependency
        return False
    return bool(monkey.is_module_patched("threading"))


def call_cooperatively(target: MayBlock, call: Callable[..., T], *args: Any) -> T:
    """Run `call(*args)` on `target` so that it never blocks the gevent loop: under the gevent
    worker a target that may block (SQLite, waiting for its lock at most its busy timeout) is called
    on a thread of gevent's pool, holding up the calling greenlet only; a cooperative target (Redis),
    or any target without gevent, is called directly."""
    pool = None if target.cooperative else _gevent_threadpool()
    return call(*args) if pool is None else pool.apply(call, args)


def _gevent_threadpool() -> Any:
    """gevent's thread pool when gevent has patched `threading` (the gevent worker), else None."""
    if not gevent_patched_threading():
        return None
    from gevent import get_hub

    return get_hub().threadpool


def real_thread_primitives() -> tuple[Callable[..., Any], Callable[[float], None]]:
    """`start_new_thread` and `sleep` of the OS, even when gevent has patched them."""
    try:
        from gevent import monkey

        return monkey.get_original("_thread", "start_new_thread"), monkey.get_original("time", "sleep")
    except ImportError:  # pragma: no cover - gevent is a dependency
        import _thread

        return _thread.start_new_thread, time.sleep


def real_lock() -> Any:
    """A lock of the OS even under gevent's monkey patching, to share with a real OS thread."""
    try:
        from gevent import monkey

        return monkey.get_original("_thread", "allocate_lock")()
    except ImportError:  # pragma: no cover - gevent is a dependency
        import _thread

        return _thread.allocate_lock()


class RealWakeup:
    """Wakes a real OS thread that waits for work (a background writer) at once, from any thread or
    greenlet, without ever blocking the caller: a lock of the OS held while there is nothing to
    do, released by `signal`. Several signals before a wait wake it once."""

    def __init__(self) -> None:
        self._lock = real_lock()
        self._lock.acquire()

    def signal(self) -> None:
        """Wake the waiting thread (or the next `wait`); never waits itself."""
        try:
            self._lock.release()
        except RuntimeError:  # already signalled, not yet waited for
            pass

    def wait(self, timeout: float) -> bool:
        """On the real thread: wait until signalled or `timeout` seconds passed; True when signalled."""
        return bool(self._lock.acquire(timeout=timeout))


class Repeating:
    """A background loop: `tick()` every `interval()` seconds on a daemon thread named `name` (a
    greenlet under gevent's patches, like every loop of the server) until `stop()`.

    The rollout runner, the approvals and the pins each read the state store this way; `interval`
    is asked before each wait, so a test may shorten it on a running loop."""

    def __init__(self, tick: Callable[[], object], interval: Callable[[], float], name: str) -> None:
        self._tick = tick
        self._interval = interval
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop (its first tick after one interval: callers tick once themselves first)."""
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the loop and wait up to `timeout` seconds for its tick in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval()):
            self._tick()
