"""`ConfigClient`: a service's settings, fetched at start-up, watched, and hot-reloaded.

Reads (`get`, `client[key]`) take no lock and never block: the current settings are one
immutable `Snapshot` (with the bound models built from it), replaced whole when a new version
arrives. A background thread long-polls the server (or, against a server without long poll, such
as Spring Cloud Config itself, polls with conditional requests), checks each new version, applies
a good one, saves it as the last-known-good copy and calls the change listeners.

Invariants:
- A version is applied only after every check passed: the snapshot's own bounds (list index,
  undecryptable values), every bound model, the log levels (with `logging_levels=True`) and the
  `validate` callable. A refused version changes nothing and is reported to the server in
  `X-Config-Rejected` until the server offers something else.
- Versions never go backwards: an answer is applied only if nothing was applied while its request
  was in flight (otherwise it may predate what was applied, and `refresh()` asks again).
- Listeners run in the order versions were applied; coroutine listeners run on the event loop
  they were registered from, never on the watcher thread.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
import secrets
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from config_client.binding import Binding
from config_client.errors import (
    ConfigClientError,
    ConfigUnavailable,
    InvalidResponse,
    RejectedVersion,
    ServerError,
    UnknownApplication,
)
from config_client.log_levels import LevelApplier, levels_from
from config_client.masking import masked_reason
from config_client.snapshot import Change, Snapshot, content_tag
from config_client.store import LastKnownGood
from config_client.transport import DEFAULT_TIMEOUT, FetchResult, Transport, backoff
from config_client.variables import TOKEN_ENV as TOKEN_ENV
from config_client.variables import configured_token

log = logging.getLogger(__name__)

Listener = Callable[[Change], Any]
Validator = Callable[[Snapshot], Any]
M = TypeVar("M")
_MISSING = object()
_STALE = object()
_ID_CHARS = re.compile(r"[^A-Za-z0-9._:@-]")
_MAX_REASON = 512


@dataclass(frozen=True)
class _Subscription:
    callback: Listener
    patterns: tuple[str, ...] | None
    loop: asyncio.AbstractEventLoop | None = None


@dataclass(frozen=True)
class _Rejection:
    version: str | None
    etag: str | None
    reason: str


class ConfigClient:
    """Settings of one application, profiles and label, kept current from a config server.

    `server_url` is one URL, several (a list, or comma-separated as Spring writes them: replicas
    of one cluster, see `Transport` for how the client moves between them), or None for the
    CONFIG_CLIENT_SERVERS variable.
    """

    def __init__(
        self,
        server_url: str | Sequence[str] | None,
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
        validate: Validator | None = None,
        logging_levels: bool = False,
        instance_labels: Mapping[str, str] | None = None,
        strict: bool = False,
    ) -> None:
        """`token` defaults to the CONFIG_CLIENT_TOKEN environment variable (see
        `config_client.variables`); `validate(snapshot)`
        raising rejects a version; `logging_levels` applies `logging.level.*` to `logging`;
        `instance_labels` (such as `{"zone": "eu-west-1"}`) say what this instance is, for a
        rollout's `match` (sent as `X-Config-Client-Labels`). When the server says no file names
        the application (`X-Config-Unknown-Application`), the client logs a warning naming the
        closest known one; `strict` makes it an error instead: `start` raises UnknownApplication
        and such an answer is never applied."""
        self.strict = strict
        self._unknown_warned: tuple[tuple[str, str | None], ...] = ()
        self.instance_labels = _labels_header(instance_labels or {})
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
            token=token if token is not None else configured_token(),
            timeout=timeout,
            verify=verify,
        )
        self.store = LastKnownGood(cache_dir, app, self.profiles, label) if cache_dir else None
        self.validate = validate
        self.logging_levels = logging_levels
        self._levels = LevelApplier()
        self._snapshot = Snapshot.empty()
        self._subscriptions: tuple[_Subscription, ...] = ()
        self._subscriptions_lock = threading.Lock()
        self._bindings: tuple[Binding[Any], ...] = ()
        self._version_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], str]] = []
        self._waiters_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._apply_lock = threading.Lock()
        self._notify_lock = threading.RLock()
        self._applied_count = 0
        self._rejected: _Rejection | None = None
        self._given_client_id = _clean_id(client_id) if client_id else None
        self._client_id: tuple[int, str] | None = None
        self._started_pid: int | None = None
        self._fork_warned = False
        #: Set by integrations that start a fresh client in a forked child themselves (Django's
        #: `client()`): the parent's copy is then expected to go stale, and no warning is given.
        self.restarts_after_fork = False
        self.long_poll = True
        #: Where the current settings came from: "server", "cache" or "none".
        self.source = "none"

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> ConfigClient:
        """Fetch the settings (with retries), else fall back to the last-known-good copy; then watch.

        Raises ConfigUnavailable when the server cannot be reached (or offers only a version the
        service refuses), there is no copy on disk and `fail_fast` is set.
        """
        self._started_pid = os.getpid()
        _watch_forks(self)
        delays = backoff(0.2, self.max_backoff)
        error: ConfigClientError | None = None
        for attempt in range(self.start_attempts):
            try:
                self._fetch_and_apply(notify=False)
                self.source = "server"
                break
            except RejectedVersion as exc:
                error = exc
                log.warning("%s/%s: %s", self.app, self.profiles, exc)
                self._start_from_copy(error)
                break
            except UnknownApplication:
                raise  # strict: a name the server does not know is the caller's mistake, not an outage
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
        if saved is not None and self.store is not None:
            try:
                candidate = self._checked(Snapshot(saved[0], saved[1]))
                with self._apply_lock:
                    self._snapshot = candidate
                    self._applied_count += 1
                    self._apply_levels(candidate)
                self.source = "cache"
                log.warning(
                    "config server unavailable (%s); starting from the last-known-good copy %s (version %s)",
                    error,
                    self.store.path,
                    candidate.version,
                )
                return
            except ConfigClientError as exc:
                log.warning("ignoring unusable last-known-good copy %s (%s)", self.store.path, exc)
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

    @property
    def rejected(self) -> tuple[str | None, str] | None:
        """(version, reason) of the newest version refused, while the server still offers it."""
        rejection = self._rejected
        return None if rejection is None else (rejection.version, rejection.reason)

    @property
    def client_id(self) -> str:
        """This instance's identity sent as `X-Config-Client-Id` (default `hostname:pid:random`,
        made afresh in a forked child)."""
        if self._given_client_id:
            return self._given_client_id
        pid = os.getpid()
        if self._client_id is None or self._client_id[0] != pid:
            raw = f"{socket.gethostname()}:{pid}:{secrets.token_hex(4)}"
            self._client_id = (pid, _clean_id(raw))
        return self._client_id[1]

    # -- typed settings -----------------------------------------------------------------------

    def bind(self, model: type[M], prefix: str = "") -> Binding[M]:
        """A typed view of the settings under `prefix` (pydantic model or dataclass).

        Its attributes come from the current version; `binding.current()` gives one instance of
        one version. From now on a version that does not fit the model is rejected whole. Bound
        after start, the current settings must fit (else RejectedVersion is raised here).
        """
        binding = Binding(self, model, prefix)
        with self._apply_lock:
            current = self._snapshot
            models = dict(current._models)
            if current.version is not None or current.values:
                models[binding] = binding.build(current)
            self._bindings = (*self._bindings, binding)
            self._snapshot = current.with_models(models)
        return binding

    # -- changes ------------------------------------------------------------------------------

    def on_change(self, callback: Listener, keys: str | Iterable[str] | None = None) -> Callable[[], None]:
        """Call `callback(change)` after each applied version that touches `keys` (globs, e.g. `db.*`).

        A coroutine function is run on the event loop it was registered from (register it from
        that loop). Returns a function that unsubscribes. A listener that raises is logged and the
        others still run.
        """
        patterns = None if keys is None else ((keys,) if isinstance(keys, str) else tuple(keys))
        loop = None
        if inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
            getattr(callback, "__call__", None)  # noqa: B004 - an object with an async __call__
        ):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise ConfigClientError(
                    "register a coroutine listener from inside the event loop it should run on"
                ) from None
        subscription = _Subscription(callback, patterns, loop)
        with self._subscriptions_lock:
            self._subscriptions = (*self._subscriptions, subscription)

        def unsubscribe() -> None:
            with self._subscriptions_lock:
                self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

        return unsubscribe

    async def wait_for_version(self, version: str, timeout: float | None = None) -> None:
        """Wait (without blocking the loop) until `version` is applied; RejectedVersion if the
        client refuses it; TimeoutError after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future, version)
        with self._waiters_lock:
            if self._snapshot.version == version:
                return
            rejection = self._rejected
            if rejection is not None and rejection.version == version:
                raise RejectedVersion(version, rejection.reason)
            self._version_waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            with self._waiters_lock:
                if entry in self._version_waiters:
                    self._version_waiters.remove(entry)

    def refresh(self) -> bool:
        """Fetch now and apply a new version if there is one; True when something was applied.

        Raises RejectedVersion when the server's version is refused (nothing changes)."""
        for _ in range(5):
            change = self._fetch_and_apply()
            if change is not _STALE:
                return change is not None
        return False

    def _fetch_and_apply(self, notify: bool = True, wait: float | None = None) -> Any:
        """One request and its answer applied; returns the Change, None, or _STALE when something
        else was applied while the request was in flight (its answer might be older)."""
        applied_before = self._applied_count
        rejection = self._rejected
        etag = rejection.etag if rejection is not None and wait else self._snapshot.etag
        result = self.transport.fetch(
            self.app,
            self.profiles,
            self.label,
            etag=etag or None,
            wait=wait,
            headers=self._report_headers(),
        )
        if wait and self._stop.is_set():
            return None
        self._check_known(result)
        if result.status == 200 and wait and self.long_poll and _server_ignored_long_poll(result, etag):
            self.long_poll = False
            log.info("server does not hold long polls; polling every %ss", self.poll_interval)
        return self._apply(result, applied_before, notify=notify)

    def _check_known(self, result: FetchResult) -> None:
        """Warn (once per answer's names) when the server says no file names the application;
        raise UnknownApplication instead when `strict`."""
        if not result.unknown:
            self._unknown_warned = ()
            return
        if self.strict:
            name, closest = result.unknown[0]
            raise UnknownApplication(name, closest)
        if result.unknown != self._unknown_warned:
            self._unknown_warned = result.unknown
            for name, closest in result.unknown:
                log.warning("%s", UnknownApplication(name, closest))

    def _apply(self, result: FetchResult, applied_before: int | None = None, notify: bool = True) -> Any:
        """Check and apply one answer. `applied_before` is the apply count when its request was
        sent: if another version was applied since, the answer is _STALE (None: no such check)."""
        if result.status == 304:
            if self._rejected is None:
                self.source = "server"  # the server confirmed what runs
            return None
        if result.status != 200 or result.environment is None:
            return None
        tag = result.etag or content_tag(result.environment)
        version = result.environment.get("version")
        with self._apply_lock:
            if notify and self._stop.is_set():
                return None  # an answer that arrives after stop() is never applied
            if applied_before is not None and self._applied_count != applied_before:
                return _STALE
            old = self._snapshot
            if tag == old.etag and version == old.version:
                self._rejected = None  # the server offers what runs: nothing is refused any more
                self.source = "server"
                return None
            rejection = self._rejected
            if rejection is not None and rejection.etag == tag and rejection.version == version:
                raise RejectedVersion(version, rejection.reason)  # refused before: not again
            try:
                candidate = self._checked(Snapshot(result.environment, tag))
            except RejectedVersion as exc:
                self._reject(exc, tag)
                raise
            self.source = "server"
            change = old.diff(candidate)
            self._apply_levels(candidate)  # before the swap: whoever sees the version sees them
            self._rejected = None
            self._snapshot = candidate
            self._applied_count += 1
            self._wake_version_waiters(candidate.version, None)
            if self.store is not None:
                try:
                    self.store.save(result.environment, candidate.etag)
                except OSError as exc:
                    log.warning("cannot write last-known-good copy %s: %s", self.store.path, exc)
            self._notify_lock.acquire()  # taken before the apply lock is let go: listeners in order
        try:
            if notify:
                self._notify(change)
        finally:
            self._notify_lock.release()
        return change

    def _checked(self, candidate: Snapshot) -> Snapshot:
        """The candidate with its bound models built, after every check; else RejectedVersion,
        whose reason never holds the value of a secret key (`masking.py`)."""
        try:
            return self._check(candidate)
        except RejectedVersion as exc:
            raise RejectedVersion(exc.version, masked_reason(exc.reason, candidate.values)) from exc.__cause__

    def _check(self, candidate: Snapshot) -> Snapshot:
        models: dict[object, Any] = {binding: binding.build(candidate) for binding in self._bindings}
        candidate = candidate.with_models(models)
        if self.logging_levels:
            levels_from(candidate.values, candidate.version)
        if self.validate is not None:
            try:
                self.validate(candidate)
            except Exception as exc:  # noqa: BLE001 - whatever the service's check raises rejects
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise RejectedVersion(candidate.version, reason) from exc
        return candidate

    def _reject(self, exc: RejectedVersion, etag: str | None) -> None:
        log.error("%s/%s: not applying %s", self.app, self.profiles, exc)
        self._rejected = _Rejection(exc.version, etag, exc.reason)
        self._wake_version_waiters(exc.version, exc)

    def _apply_levels(self, snapshot: Snapshot) -> None:
        if self.logging_levels:
            self._levels.apply(levels_from(snapshot.values, snapshot.version))

    def _wake_version_waiters(self, version: str | None, error: RejectedVersion | None) -> None:
        with self._waiters_lock:
            woken = [entry for entry in self._version_waiters if entry[2] == version]
            for entry in woken:
                self._version_waiters.remove(entry)
        for loop, future, _ in woken:
            try:
                loop.call_soon_threadsafe(_settle, future, error)
            except RuntimeError:
                pass  # that loop is closed: nobody waits any more

    def _notify(self, change: Change) -> None:
        for subscription in self._subscriptions:
            part = change.only(subscription.patterns)
            if subscription.patterns is not None and not part:
                continue
            if subscription.loop is not None:
                try:
                    subscription.loop.call_soon_threadsafe(_run_coroutine, subscription.callback, part)
                except RuntimeError:
                    log.warning("change listener %r: its event loop is closed", subscription.callback)
                continue
            try:
                subscription.callback(part)
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                log.exception("change listener %r failed", subscription.callback)

    def _report_headers(self) -> dict[str, str]:
        """What this instance runs and refused, sent on every Environment request (protocol.md)."""
        headers = {"X-Config-Client-Id": self.client_id}
        if self.instance_labels:
            headers["X-Config-Client-Labels"] = self.instance_labels
        version = self._snapshot.version
        if version and _is_clean_id(version):
            headers["X-Config-Applied"] = version
        rejection = self._rejected
        if rejection is not None and rejection.version and _is_clean_id(rejection.version):
            headers["X-Config-Rejected"] = rejected_header(rejection.version, rejection.reason)
        return headers

    # -- pre-fork servers ---------------------------------------------------------------------

    def _warn_forked(self) -> None:
        if self.restarts_after_fork:
            return
        if not self._fork_warned:
            self._fork_warned = True
            log.warning(
                "ConfigClient for %s/%s was started in process %s and this is process %s (a fork): "
                "its watcher thread did not survive the fork, so these settings will never change. "
                "Start the client after the fork (gunicorn post_fork hook, uWSGI postfork) or "
                "lazily on first use.",
                self.app,
                self.profiles,
                self._started_pid,
                os.getpid(),
            )

    # -- the watcher --------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        delays = backoff(0.2, self.max_backoff)
        while not self._stop.is_set():
            try:
                self._watch_once()
                delays = backoff(0.2, self.max_backoff)
            except RejectedVersion:
                delays = backoff(0.2, self.max_backoff)  # logged; the next poll waits past it
            except (ConfigUnavailable, ServerError, InvalidResponse, UnknownApplication) as exc:
                if self._stop.is_set():
                    return
                pause = next(delays)
                log.warning("watching %s/%s: %s; retrying in %.1fs", self.app, self.profiles, exc, pause)
                self._stop.wait(pause)
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                log.exception("unexpected error while watching %s/%s", self.app, self.profiles)
                self._stop.wait(next(delays))

    def _watch_once(self) -> None:
        # Until the server has confirmed the settings (started from the copy), ask without waiting.
        confirmed = self.source == "server" or self._rejected is not None
        wait = self.wait if self.long_poll and confirmed else None
        self._fetch_and_apply(wait=wait)
        if not self.long_poll and not self._stop.is_set():
            self._stop.wait(self.poll_interval)


def rejected_header(version: str, reason: str) -> str:
    """`<version>; reason="<text>"`: the reason made printable ASCII on one line, `\\` and `"`
    escaped, at most 512 characters between the quotes."""
    text = "".join(c if " " <= c <= "~" else "?" for c in " ".join(reason.split()))
    out: list[str] = []
    length = 0
    for char in text:
        piece = "\\" + char if char in '\\"' else char
        if length + len(piece) > _MAX_REASON:
            break
        out.append(piece)
        length += len(piece)
    return f'{version}; reason="{"".join(out)}"'


def _clean_id(raw: str) -> str:
    return _ID_CHARS.sub("-", raw)[:128] or "client"


def _is_clean_id(value: str) -> bool:
    return 0 < len(value) <= 128 and not _ID_CHARS.search(value)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _run_coroutine(callback: Listener, change: Change) -> None:
    async def run() -> None:
        try:
            await callback(change)
        except Exception:  # noqa: BLE001 - one listener must not stop the others
            log.exception("change listener %r failed", callback)

    asyncio.get_running_loop().create_task(run())


def _server_ignored_long_poll(result: FetchResult, asked_with: str | None) -> bool:
    """A server that sends no ETag, or answers 200 with the ETag asked about, does not long-poll."""
    return result.etag is None or result.etag == asked_with


_started_clients: weakref.WeakSet[ConfigClient] = weakref.WeakSet()
_fork_hook_installed = False
_fork_hook_lock = threading.Lock()


def _watch_forks(client: ConfigClient) -> None:
    """Warn in a forked child about every client started in the parent (see docs/client.md)."""
    global _fork_hook_installed
    with _fork_hook_lock:
        _started_clients.add(client)
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_installed = True


def _after_fork_in_child() -> None:
    for client in list(_started_clients):
        if client._started_pid is not None and not client._stop.is_set():
            client._warn_forked()


_LABEL_TEXT = re.compile(r"[A-Za-z0-9._-]+")


def _labels_header(labels: Mapping[str, str]) -> str:
    """`k=v,k=v` for X-Config-Client-Labels; ValueError for a key or value the protocol refuses."""
    if len(labels) > 16:
        raise ValueError("instance_labels: at most 16 labels")
    for key, value in labels.items():
        if not _LABEL_TEXT.fullmatch(str(key)) or not _LABEL_TEXT.fullmatch(str(value)):
            raise ValueError(f"instance_labels: {key}={value}: letters, digits and . _ - only")
    return ",".join(f"{key}={value}" for key, value in labels.items())
