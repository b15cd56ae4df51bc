"""Change detection and the long-poll hub.

`ChangeDetector` notices new commits: watchdog on the repository's refs (or the plain folder), a
background fetch for a remote, and a slow safety poll. Each notice asks the `WatchHub` to check
the environments somebody is waiting on. The hub resolves each watched (application, profiles,
label) once per change, through the cache, and wakes only the waiters of environments whose
content ETag moved, all of them with the same resolved result: no re-resolution per waiter.

Only `threading` primitives are used, so the same code runs on real threads (tests, the threaded
worker) and on greenlets under gunicorn's gevent worker, where `threading` is monkey-patched.

Direct answers: a waiter may hand the hub a `DirectAnswer` (the gevent worker offers its socket).
On a change the hub writes one pre-built HTTP answer to every such socket in a tight loop, before
it wakes anybody, so ten thousand watchers get the new settings in one pass instead of each
waiting for its turn through the framework; the woken requests then only unwind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from config_server.backends.base import Backend
from config_server.cache import ResolvedEnvironment
from config_server.errors import ConfigServerError
from config_server.service import ConfigService

log = logging.getLogger(__name__)

#: The longest a long-poll request is held, whatever `?wait=` asks for.
MAX_WAIT_SECONDS = 60.0


@dataclass
class _Slot:
    """The waiters of one environment: the latest resolved result and the event that wakes them."""

    application: str
    profiles: str
    label: str | None
    latest: ResolvedEnvironment | None
    event: threading.Event = field(default_factory=threading.Event)
    waiters: int = 0
    direct: set[DirectAnswer] = field(default_factory=set)


class DirectAnswer:
    """A waiting request the hub may answer itself by writing raw HTTP to its connection.

    The hub calls `deliver` (from the dispatcher), which never blocks: it sends what the socket
    takes at once and leaves the rest to the request. The request calls `finish` when it resumes,
    which sends any rest and returns True when the answer was the hub's. A lock makes sure exactly
    one of them answers, and a client that does not read cannot stall the others' answers.
    """

    def __init__(self, send_nowait: Callable[[bytes], int], sendall: Callable[[bytes], None]) -> None:
        self._send_nowait = send_nowait
        self._sendall = sendall
        self._lock = threading.Lock()
        self._finished = False
        self._rest = b""
        self.answered = False

    def deliver(self, response: bytes) -> None:
        """Send as much of `response` as the socket takes now, unless the request has moved on."""
        with self._lock:
            if self._finished:
                return
            try:
                sent = self._send_nowait(response)
            except BlockingIOError:
                sent = 0
            except OSError:
                return  # a dead connection: the request's own path will notice
            self.answered = True
            self._rest = response[sent:]

    def finish(self) -> bool:
        """Stop further deliveries, send what the hub could not, and say whether the hub answered."""
        with self._lock:
            self._finished = True
            answered, rest, self._rest = self.answered, self._rest, b""
        if rest:
            try:
                self._sendall(rest)
            except OSError:
                pass
        return answered


class WatchHub:
    """Holds long-poll waiters per environment and wakes them when that environment's ETag moves."""

    def __init__(self, service: ConfigService) -> None:
        self.service = service
        self._slots: dict[tuple[str, str, str | None], _Slot] = {}
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._closed = False
        self.checks = 0

    def wait_for_change(
        self,
        application: str,
        profiles: str,
        label: str | None,
        known_etags: Iterable[str],
        timeout: float,
        direct: DirectAnswer | None = None,
    ) -> ResolvedEnvironment | None:
        """Block until the environment's ETag is not one of `known_etags` (return it) or timeout (None).

        While the environment does not resolve (a broken file was committed) the waiter keeps
        waiting: a broken version is never something to hand a watcher.
        """
        known = set(known_etags)
        current = self._resolve(application, profiles, label)
        key = (application, profiles, label)
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(application, profiles, label, current)
            slot.waiters += 1
            if direct is not None:
                slot.direct.add(direct)
        deadline = time.monotonic() + min(timeout, MAX_WAIT_SECONDS)
        try:
            while True:
                event = slot.event
                latest = slot.latest
                if latest is not None and latest.etag not in known:
                    return latest
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return None
                event.wait(remaining)
        finally:
            with self._lock:
                slot.waiters -= 1
                slot.direct.discard(direct)  # type: ignore[arg-type]
                if slot.waiters == 0 and self._slots.get(key) is slot:
                    del self._slots[key]

    def check(self, applications: Iterable[str] | None = None) -> int:
        """Re-resolve watched environments (all, or only those of `applications`; `*` means all).

        Returns how many environments changed, whose waiters were woken.
        """
        wanted = None if applications is None else set(applications)
        if wanted is not None and "*" in wanted:
            wanted = None
        with self._check_lock:
            self.checks += 1
            with self._lock:
                slots = list(self._slots.values())
            changed = 0
            for slot in slots:
                if wanted is not None and wanted.isdisjoint(slot.application.split(",")):
                    continue  # `orders,shared` is watched by a change to either name
                current = self._resolve(slot.application, slot.profiles, slot.label)
                if current is None:
                    continue
                if slot.latest is None or current.etag != slot.latest.etag:
                    slot.latest = current
                    self._answer_directly(slot, current)
                    woken, slot.event = slot.event, threading.Event()
                    woken.set()
                    changed += 1
            return changed

    def _answer_directly(self, slot: _Slot, current: ResolvedEnvironment) -> None:
        """Write the new answer to every waiter that offered its connection, in one pass."""
        with self._lock:
            waiting = list(slot.direct)
        if not waiting:
            return
        response = current.http_response(slot.label, formatdate(usegmt=True))
        for answer in waiting:
            answer.deliver(response)

    def close(self) -> None:
        """Answer every waiter now (304) and every later one at once: the server is shutting down."""
        self._closed = True
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            slot.event.set()

    def watchers(self) -> int:
        """How many requests are waiting right now."""
        with self._lock:
            return sum(slot.waiters for slot in self._slots.values())

    def _resolve(self, application: str, profiles: str, label: str | None) -> ResolvedEnvironment | None:
        try:
            return self.service.environment(application, profiles, label)[1]
        except ConfigServerError as exc:
            log.info("watched %s/%s/%s does not resolve: %s", application, profiles, label, exc)
            return None


class _RefsChanged(FileSystemEventHandler):
    """Turns file-system events under the watched paths into a trigger."""

    def __init__(self, detector: ChangeDetector) -> None:
        self.detector = detector

    def on_any_event(self, event: FileSystemEvent) -> None:
        """Trigger a check when a relevant path changed."""
        if event.event_type in ("opened", "closed_no_write"):
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path and self.detector.backend.is_change_path(str(path)):
                self.detector.trigger()
                return


class ChangeDetector:
    """Runs watchdog, the remote refresh and a safety poll; each notice checks the hub.

    One dispatcher thread performs the checks, so a burst of file events (a commit writes
    several files) coalesces into one or two checks.
    """

    def __init__(
        self,
        backend: Backend,
        hub: WatchHub,
        refresh_interval: float = 0.0,
        poll_interval: float = 5.0,
        use_watchdog: bool = True,
    ) -> None:
        self.backend = backend
        self.hub = hub
        self.refresh_interval = refresh_interval
        self.poll_interval = poll_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: set[str] | None = set()
        self._pending_lock = threading.Lock()
        self._observer: Observer | None = None
        self._threads: list[threading.Thread] = []
        self.use_watchdog = use_watchdog

    def start(self) -> ChangeDetector:
        """Start the observer and the dispatcher (and the refresh loop for a remote)."""
        paths = self.backend.watch_paths() if self.use_watchdog else []
        if paths:
            observer = Observer()
            handler = _RefsChanged(self)
            for path, recursive in paths:
                if Path(path).is_dir():
                    observer.schedule(handler, str(path), recursive=recursive)
            observer.daemon = True
            try:
                observer.start()
                self._observer = observer
            except OSError as exc:  # inotify limits: fall back to the safety poll
                log.warning("cannot watch %s (%s); polling every %ss", paths, exc, self.poll_interval)
        self._spawn(self._dispatch, "config-watch")
        if self.refresh_interval > 0 and getattr(self.backend, "remote", False):
            self._spawn(self._refresh_loop, "config-refresh")
        return self

    def trigger(self, applications: Iterable[str] | None = None) -> None:
        """Ask for a check soon (of some applications, or of all when None)."""
        with self._pending_lock:
            if applications is None or self._pending is None:
                self._pending = None
            else:
                self._pending.update(applications)
        self._wake.set()

    def refresh_now(self, applications: Iterable[str] | None = None) -> bool:
        """Fetch the remote (if any) and check the hub at once; used by the webhook."""
        ok = self.backend.refresh()
        self.trigger(applications)
        return ok

    def stop(self) -> None:
        """Stop every thread this detector started."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            woke = self._wake.wait(self.poll_interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            with self._pending_lock:
                pending, self._pending = self._pending, set()
            apps = None if (pending is None or not woke) else pending
            try:
                self.hub.check(apps)
            except Exception:  # noqa: BLE001 - the dispatcher must outlive any one failure
                log.exception("watch check failed")

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            try:
                if self.backend.refresh():
                    self.trigger()
            except Exception:  # noqa: BLE001 - a failed refresh must never end the loop
                log.exception("background refresh failed")
