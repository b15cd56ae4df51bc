"""Change detection: notice new commits and ask the long-poll hub to check.

watchdog on the repository's refs (or the plain folder; off the gevent hub, see `file_watch.py`),
a background fetch for a remote, and a slow safety poll. One dispatcher thread performs the checks,
so a burst of file events coalesces.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from config_server.backends.base import Backend
from config_server.delivery.file_watch import FileWatch, watch_files
from config_server.delivery.watch_hub import WatchHub

log = logging.getLogger(__name__)


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
        self._file_watch: FileWatch | None = None
        self._threads: list[threading.Thread] = []
        self.use_watchdog = use_watchdog
        #: Called with (seconds, succeeded) after each fetch of a remote repository.
        self.on_fetch: Callable[[float, bool], None] | None = None
        #: Called after each successful fetch with the applications it was for (None: all); the
        #: cluster link uses it to tell the other replicas (see cluster.py).
        self.refresh_listeners: list[Callable[[Iterable[str] | None], None]] = []

    def start(self) -> ChangeDetector:
        """Start the observer and the dispatcher (and the refresh loop for a remote)."""
        paths = self.backend.watch_paths() if self.use_watchdog else []
        folders = [(path, recursive) for path, recursive in paths if Path(path).is_dir()]
        if folders:
            try:
                self._file_watch = watch_files(folders, self._files_changed)
            except OSError as exc:  # inotify limits: fall back to the safety poll
                log.warning("cannot watch %s (%s); polling every %ss", paths, exc, self.poll_interval)
        self._spawn(self._dispatch, "config-watch")
        if self.refresh_interval > 0 and getattr(self.backend, "remote", False):
            self._spawn(self._refresh_loop, "config-refresh")
        return self

    def _files_changed(self, paths: list[str]) -> None:
        """Trigger a check when a path that may mean a new version changed (no paths: maybe any)."""
        if not paths or any(self.backend.is_change_path(path) for path in paths):
            self.trigger()

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
        ok = self._refresh()
        if ok:
            self._refreshed(applications)
        self.trigger(applications)
        return ok

    def _refresh(self, max_age: float = 0.0) -> bool:
        """The backend's refresh, timed for the fetch metrics."""
        started = time.monotonic()
        ok = False
        try:
            ok = self.backend.refresh(max_age)
            return ok
        finally:
            if self.on_fetch is not None and getattr(self.backend, "remote", False):
                self.on_fetch(time.monotonic() - started, ok)

    def _refreshed(self, applications: Iterable[str] | None) -> None:
        for listener in self.refresh_listeners:
            try:
                listener(applications)
            except Exception:  # noqa: BLE001 - a listener must not undo a good refresh
                log.exception("refresh listener %r failed", listener)

    def stop(self) -> None:
        """Stop every thread this detector started."""
        self._stop.set()
        self._wake.set()
        if self._file_watch is not None:
            self._file_watch.stop()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            woke = self._wake.wait(self.poll_interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            if woke:
                self._settle()
            with self._pending_lock:
                pending, self._pending = self._pending, set()
            apps = None if (pending is None or not woke) else pending
            try:
                self.hub.check(apps)
            except Exception:  # noqa: BLE001 - the dispatcher must outlive any one failure
                log.exception("watch check failed")

    def _settle(self) -> None:
        """Wait until change notices have stopped for the backend's settle time (at most ~1 s), so
        a half-written file of a plain folder is not what watchers get."""
        settle = getattr(self.backend, "change_settle_seconds", 0.0)
        for _ in range(20):
            if settle <= 0 or self._stop.is_set() or not self._wake.wait(settle):
                return
            self._wake.clear()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            try:
                if self._refresh(max_age=self.refresh_interval * 0.9):  # one fetch per host
                    self._refreshed(None)
                    self.trigger()
            except Exception:  # noqa: BLE001 - a failed refresh must never end the loop
                log.exception("background refresh failed")
