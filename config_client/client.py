"""`ConfigClient`: a service's settings, fetched at start-up, watched, and hot-reloaded.

Reads (`get`, `client[key]`) take no lock and never block: the current settings are one
immutable `Snapshot`, replaced whole when a new version arrives. A background thread long-polls
the server (or, against a server without long poll, such as Spring Cloud Config itself, polls
with conditional requests), applies each good new version, saves it as the last-known-good copy
and calls the change listeners. A bad answer is never applied.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config_client.errors import ConfigClientError, ConfigUnavailable, InvalidResponse, ServerError
from config_client.snapshot import Change, Snapshot
from config_client.store import LastKnownGood
from config_client.transport import DEFAULT_TIMEOUT, FetchResult, Transport, backoff

log = logging.getLogger(__name__)

Listener = Callable[[Change], Any]
_MISSING = object()


@dataclass(frozen=True)
class _Subscription:
    callback: Listener
    patterns: tuple[str, ...] | None


class ConfigClient:
    """Settings of one application, profiles and label, kept current from a config server."""

    def __init__(
        self,
        server_url: str,
        app: str,
        profiles: str | Iterable[str] = "default",
        label: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        verify: bool | str = True,
        cache_dir: str | Path | None = None,
        fail_fast: bool = False,
        watch: bool = True,
        wait: float = 30.0,
        poll_interval: float = 30.0,
        start_attempts: int = 3,
        max_backoff: float = 30.0,
        client_id: str | None = None,
    ) -> None:
        self.app = app
        self.profiles = profiles if isinstance(profiles, str) else ",".join(profiles)
        self.label = label
        self.fail_fast = fail_fast
        self.watch = watch
        self.wait = wait
        self.poll_interval = poll_interval
        self.start_attempts = max(1, start_attempts)
        self.max_backoff = max_backoff
        self.transport = Transport(
            server_url,
            username=username,
            password=password,
            token=token,
            timeout=timeout,
            verify=verify,
            client_id=client_id,
        )
        self.store = LastKnownGood(cache_dir, app, self.profiles, label) if cache_dir else None
        self._snapshot = Snapshot.empty()
        self._subscriptions: tuple[_Subscription, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._apply_lock = threading.Lock()
        self.long_poll = True
        #: Where the current settings came from: "server", "cache" or "none".
        self.source = "none"

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> ConfigClient:
        """Fetch the settings (with retries), else fall back to the last-known-good copy; then watch.

        Raises ConfigUnavailable when the server cannot be reached, there is no copy on disk and
        `fail_fast` is set.
        """
        delays = backoff(0.2, self.max_backoff)
        error: ConfigClientError | None = None
        for attempt in range(self.start_attempts):
            try:
                self._apply(self.transport.fetch(self.app, self.profiles, self.label), notify=False)
                self.source = "server"
                break
            except ConfigClientError as exc:
                error = exc
                log.warning(
                    "fetching %s/%s failed (attempt %d): %s", self.app, self.profiles, attempt + 1, exc
                )
                if attempt + 1 < self.start_attempts and self._stop.wait(next(delays)):
                    break
        else:
            self._start_from_copy(error)
        if self.watch:
            self._thread = threading.Thread(
                target=self._watch_loop, name=f"config-watch-{self.app}", daemon=True
            )
            self._thread.start()
        return self

    def _start_from_copy(self, error: ConfigClientError | None) -> None:
        saved = self.store.load() if self.store else None
        if saved is not None:
            try:
                self._snapshot = Snapshot(saved[0], saved[1])
                self.source = "cache"
                log.warning(
                    "config server unavailable (%s); starting from the last-known-good copy %s (version %s)",
                    error,
                    self.store.path,
                    self._snapshot.version,
                )
                return
            except InvalidResponse as exc:
                log.warning("ignoring corrupt last-known-good copy %s (%s)", self.store.path, exc)
        if self.fail_fast:
            raise ConfigUnavailable(
                f"cannot fetch settings for {self.app}/{self.profiles} and no last-known-good copy "
                f"exists: {error}"
            )
        log.warning(
            "config server unavailable (%s) and no last-known-good copy: starting with no "
            "settings and retrying in the background",
            error,
        )

    def stop(self, timeout: float = 0.2) -> None:
        """Stop watching. An in-flight long poll is abandoned (its answer is never applied); the
        daemon thread ends when that request does."""
        self._stop.set()
        self.transport.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> ConfigClient:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- reads --------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value of a flat key such as `db.pool.max` or `hosts[0]`, or `default`."""
        return self._snapshot.values.get(key, default)

    def __getitem__(self, key: str) -> Any:
        value = self._snapshot.values.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._snapshot.values

    @property
    def snapshot(self) -> Snapshot:
        """The current immutable snapshot (keep it to read several keys of one version)."""
        return self._snapshot

    @property
    def settings(self) -> dict[str, Any]:
        """All settings nested (`{"db": {"pool": {"max": 10}}}`), as a copy."""
        return self._snapshot.nested()

    @property
    def version(self) -> str | None:
        """The version (commit id) of the current settings."""
        return self._snapshot.version

    # -- changes ------------------------------------------------------------------------------

    def on_change(self, callback: Listener, keys: str | Iterable[str] | None = None) -> Callable[[], None]:
        """Call `callback(change)` after each applied version that touches `keys` (globs, e.g. `db.*`).

        Returns a function that unsubscribes. A listener that raises is logged and the others
        still run.
        """
        patterns = None if keys is None else ((keys,) if isinstance(keys, str) else tuple(keys))
        subscription = _Subscription(callback, patterns)
        self._subscriptions = (*self._subscriptions, subscription)

        def unsubscribe() -> None:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

        return unsubscribe

    def refresh(self) -> bool:
        """Fetch now and apply a new version if there is one; True when something was applied."""
        result = self.transport.fetch(self.app, self.profiles, self.label, etag=self._snapshot.etag or None)
        return self._apply(result) is not None

    def _apply(self, result: FetchResult, notify: bool = True) -> Change | None:
        if result.status != 200 or result.environment is None:
            return None
        candidate = Snapshot(result.environment, result.etag)
        with self._apply_lock:
            if notify and self._stop.is_set():
                return None  # an answer that arrives after stop() is never applied
            old = self._snapshot
            if candidate.etag == old.etag and candidate.version == old.version:
                return None
            change = old.diff(candidate)
            self._snapshot = candidate
            self.source = "server"
            if self.store is not None:
                try:
                    self.store.save(result.environment, candidate.etag)
                except OSError as exc:
                    log.warning("cannot write last-known-good copy %s: %s", self.store.path, exc)
        if notify:
            self._notify(change)
        return change

    def _notify(self, change: Change) -> None:
        for subscription in self._subscriptions:
            part = change.only(subscription.patterns)
            if subscription.patterns is not None and not part:
                continue
            try:
                subscription.callback(part)
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                log.exception("change listener %r failed", subscription.callback)

    # -- the watcher --------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        delays = backoff(0.2, self.max_backoff)
        while not self._stop.is_set():
            try:
                self._watch_once()
                delays = backoff(0.2, self.max_backoff)
            except (ConfigUnavailable, ServerError, InvalidResponse) as exc:
                if self._stop.is_set():
                    return
                pause = next(delays)
                log.warning("watching %s/%s: %s; retrying in %.1fs", self.app, self.profiles, exc, pause)
                self._stop.wait(pause)
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                log.exception("unexpected error while watching %s/%s", self.app, self.profiles)
                self._stop.wait(next(delays))

    def _watch_once(self) -> None:
        current = self._snapshot
        wait = self.wait if self.long_poll else None
        result = self.transport.fetch(
            self.app, self.profiles, self.label, etag=current.etag or None, wait=wait
        )
        if self._stop.is_set():
            return
        if result.status == 200 and self.long_poll and _server_ignored_long_poll(result, current):
            self.long_poll = False
            log.info("server does not hold long polls; polling every %ss", self.poll_interval)
        self._apply(result)
        if not self.long_poll:
            self._stop.wait(self.poll_interval)


def _server_ignored_long_poll(result: FetchResult, current: Snapshot) -> bool:
    """A server that sends no ETag, or answers 200 with unchanged content, does not long-poll."""
    if result.etag is None:
        return True
    return result.environment is not None and Snapshot(result.environment, result.etag).etag == current.etag
