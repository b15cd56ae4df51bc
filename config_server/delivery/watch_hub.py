"""The long-poll hub: waiters per environment, woken when that environment's content ETag moves.

Each notice of the change detector (`watch/detector.py`) asks the hub to check the environments
somebody is waiting on. The hub resolves each watched (application, profiles, label) once per
change, through the cache, and wakes only the waiters of environments whose content ETag moved,
all of them with the same resolved result: no re-resolution per waiter. Before it wakes them, it
writes the answer to every waiter that offered a direct answer (`watch/direct.py`).

Only `threading` primitives are used, so the same code runs on real threads (tests, the threaded
worker) and on greenlets under gunicorn's gevent worker, where `threading` is monkey-patched.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate

from config_server.content.environment_answer import (
    BASE_ROUTE,
    HELD_BACK_HEADER,
    Headers,
    Route,
    environment_answer,
)
from config_server.delivery.direct_answer import DirectAnswer, encode_http
from config_server.errors import ConfigServerError
from config_server.names import EnvironmentRequest
from config_server.safety.changed_files import touched_applications
from config_server.safety.config_service import ConfigService
from config_server.safety.environment_cache import ResolvedEnvironment

log = logging.getLogger(__name__)

#: How `_head` names the pins' generation beside the label's commits (a pin moves answers without a commit).
PINS_GENERATION = "pins@"

#: The longest a long-poll request is held, whatever `?wait=` asks for.
MAX_WAIT_SECONDS = 60.0


@dataclass
class _Slot:
    """The waiters of one environment: the newest resolved result and the event that wakes them.

    `resolution` numbers the resolution `published` came from (resolutions are numbered as they
    start, so a higher number saw the label no earlier); `direct` maps each offered connection
    to the ETags its request already holds.
    """

    request: EnvironmentRequest
    route: Route = BASE_ROUTE
    #: The newest resolved environment and its answer's extra headers (`X-Config-Held-Back` when
    #: it stands in for a broken newest commit, `last_good.py`), assigned as one pair.
    published: tuple[ResolvedEnvironment, Headers] | None = None
    resolution: int = 0
    #: The label's commit(s) when `published` was resolved (`WatchHub._head`): a check resolves the
    #: slot again only once they moved, so an idle check costs no resolution per slot.
    head: tuple[str, ...] | None = None
    #: Whether the newest resolution (whatever its ETag) held a broken newest commit back.
    held_back: bool = False
    event: threading.Event = field(default_factory=threading.Event)
    waiters: int = 0
    direct: dict[DirectAnswer, frozenset[str]] = field(default_factory=dict)
    #: Each waiter that may lose its right to read (a token), with that check (`WatchHub.recheck`).
    guarded: dict[_Guard, DirectAnswer | None] = field(default_factory=dict)


@dataclass(eq=False)
class _Guard:
    """One waiter's check that its caller still may read what it waits on, and its verdict."""

    allowed: Callable[[], bool]
    revoked: bool = False


class _Rerouted:
    """The answer of a wait whose application's rollout moved (see `WatchHub.reroute`)."""

    def __repr__(self) -> str:
        return "REROUTED"


#: Returned by `WatchHub.wait` when the caller must decide its route again and wait anew.
REROUTED = _Rerouted()


class _Revoked:
    """The answer of a wait whose caller may no longer read its environment (`WatchHub.recheck`)."""

    def __repr__(self) -> str:
        return "REVOKED"


#: Returned by `WatchHub.wait` when a reloaded auth file no longer lets the caller read: the caller
#: answers as a fresh request with its token would be answered (401 or 403), never with settings.
REVOKED = _Revoked()


class WatchHub:
    """Holds long-poll waiters per environment and wakes them when that environment's ETag moves.

    Invariant: a waiter is answered only with a resolution that started after it joined, so a
    long poll never moves a client back to a version older than one the server resolved before
    (a request joining with a newer version than the slot's publishes it, and wakes the others).
    """

    def __init__(self, service: ConfigService) -> None:
        self.service = service
        self._slots: dict[tuple[EnvironmentRequest, Route], _Slot] = {}
        self._reroutes: dict[str, int] = {}
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._resolutions = itertools.count(1)
        self._closed = False
        self.checks = 0
        #: Called with (watchers answered, seconds since the check began) for each changed environment.
        self.on_change: Callable[[int, float], None] | None = None
        #: Called at the start of each check: the auth file's reload check, so that a revoked
        #: token's waiters are rechecked (`recheck`) before anything is delivered.
        self.before_check: Callable[[], object] | None = None

    def wait_for_change(
        self,
        request: EnvironmentRequest,
        known_etags: Iterable[str],
        timeout: float,
        direct: DirectAnswer | None = None,
    ) -> ResolvedEnvironment | None:
        """Block until the environment's ETag is not one of `known_etags` (return it) or timeout (None).

        While the environment is broken (a file that does not parse, a value that does not
        decrypt) the waiter keeps waiting: a broken version is never something to hand a watcher.
        """
        waited = self.wait(request, known_etags, timeout, direct)
        return waited[0] if isinstance(waited, tuple) else None

    def reroutes(self, application: str) -> int:
        """How many times `reroute(application)` was called: read it before deciding a route."""
        return self._reroutes.get(application, 0)

    def reroute(self, application: str) -> None:
        """Wake every waiter of `application` that waits with `since` older than now: a rollout of
        it moved (started, stepped, halted, ended), so instances may enter or leave its cohort."""
        with self._publish_lock:
            self._reroutes[application] = self._reroutes.get(application, 0) + 1
            with self._lock:
                slots = [s for s in self._slots.values() if s.request.application == application]
            woken = []
            for slot in slots:
                woken.append(slot.event)
                slot.event = threading.Event()
        for event in woken:
            event.set()

    def wait(
        self,
        request: EnvironmentRequest,
        known_etags: Iterable[str],
        timeout: float,
        direct: DirectAnswer | None = None,
        route: Route = BASE_ROUTE,
        since: int | None = None,
        allowed: Callable[[], bool] | None = None,
    ) -> tuple[ResolvedEnvironment, Headers] | _Rerouted | _Revoked | None:
        """As `wait_for_change`, for the answer of `route`; returns the new environment with its
        answer's extra headers, None at the timeout, or REROUTED when `since` (the caller's
        `reroutes(application)` before it decided `route`) is no longer current: the caller decides
        its route again and waits anew, so a rollout's step or halt moves it as a commit would.
        `allowed` says whether the caller still may read the environment; when a `recheck` finds it
        may not, the wait returns REVOKED and the hub never answers its connection.
        """
        known = frozenset(known_etags)
        joined = next(self._resolutions)
        application = request.application
        head = self._head(_source_labels(request, route))  # before resolving
        found = self._resolve(request, route)
        key = (request, route)
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(request, route)
            slot.waiters += 1
        if found is not None:
            self._publish(slot, *found, joined, head)
        guard = _Guard(allowed) if allowed is not None else None
        with self._lock:
            if direct is not None:
                slot.direct[direct] = known
            if guard is not None:
                slot.guarded[guard] = direct
        deadline = time.monotonic() + min(timeout, MAX_WAIT_SECONDS)
        try:
            while True:
                event = slot.event
                if guard is not None and guard.revoked:
                    return REVOKED
                resolution = slot.resolution  # read before `published`, which `_publish` writes first
                published = slot.published
                if published is not None and resolution >= joined and published[0].etag not in known:
                    return published
                if since is not None and self._reroutes.get(application, 0) != since:
                    return REROUTED
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return None
                event.wait(remaining)
        finally:
            with self._lock:
                slot.waiters -= 1
                if direct is not None:
                    slot.direct.pop(direct, None)
                if guard is not None:
                    slot.guarded.pop(guard, None)
                if slot.waiters == 0 and self._slots.get(key) is slot:
                    del self._slots[key]

    def check(self, applications: Iterable[str] | None = None, moved_only: bool = True) -> int:
        """Re-resolve watched environments (all, or only those of `applications`; `*` means all):
        those whose label moved, or (`moved_only=False`) every one, for what moves an answer
        without moving a label (a release approval: `safety/approvals.py`).

        Returns how many environments changed, whose waiters were woken.
        """
        wanted = None if applications is None else set(applications)
        if wanted is not None and "*" in wanted:
            wanted = None
        if self.before_check is not None:
            try:
                self.before_check()
            except Exception:  # noqa: BLE001 - a failed reload check must not stop the watch
                log.exception("the check before the watch check failed")
        with self._check_lock:
            self.checks += 1
            started = time.monotonic()
            with self._lock:
                slots = list(self._slots.values())
            changed = 0
            heads: dict[tuple[str | None, ...], tuple[str, ...] | None] = {}
            touched: dict[tuple[str, str], frozenset[str] | None] = {}
            for slot in slots:
                if wanted is not None and wanted.isdisjoint(slot.request.applications):
                    continue  # `orders,shared` is watched by a change to either name
                source = _source_labels(slot.request, slot.route)
                if source not in heads:
                    heads[source] = self._head(source)  # once per label and check, not per slot
                head = heads[source]
                if moved_only and head is not None and head == slot.head:
                    continue  # the label did not move since the slot's answer: nothing to resolve
                if moved_only and self._untouched(slot, head, touched):
                    self._advance(slot, head, next(self._resolutions))
                    continue  # the commits since changed none of its applications' files
                resolution = next(self._resolutions)
                found = self._resolve(slot.request, slot.route)
                if found is not None and self._publish(slot, *found, resolution, head):
                    changed += 1
                    if self.on_change is not None:
                        self.on_change(slot.waiters, time.monotonic() - started)
            return changed

    def _untouched(
        self,
        slot: _Slot,
        head: tuple[str, ...] | None,
        touched: dict[tuple[str, str], frozenset[str] | None],
    ) -> bool:
        """Whether the label moved from `slot.head` to `head` without changing a file any of the
        slot's applications reads (`changed_files.touched_applications` of the changed paths: by
        file name, a shared `application*` file or a schema `$ref` may name touching every one).
        Then its resolution would give the same ETag: nothing to resolve, nobody to wake.

        A commit to `orders.yml` would otherwise resolve every watched spelling of `payments`
        again (issue 24: 64 per attacking caller per worker, before the legitimate slot's turn).
        Only for a slot whose last answer was a good, current version (not held back: that one
        is resolved, so the held-back listing follows the label) and a backend that can tell the
        changed paths (git; not a plain folder). `touched` memoises per commit pair and check."""
        if head is None or slot.head is None or len(head) != len(slot.head) or slot.published is None:
            return False
        if slot.held_back:
            return False
        for old, new in zip(slot.head, head, strict=True):
            if old == new:
                continue
            if old.startswith(PINS_GENERATION) or new.startswith(PINS_GENERATION):
                return False  # a pin or an unpin moves the answer with no commit at all
            if (old, new) not in touched:
                changed = self.service.backend.changed_paths(old, new)
                touched[old, new] = None if changed is None else touched_applications(changed)
            applications = touched[old, new]
            if applications is None or not applications.isdisjoint(slot.request.applications):
                return False
        return True

    def _advance(self, slot: _Slot, head: tuple[str, ...] | None, resolution: int) -> None:
        """Note that the slot's answer holds at `head` too (what `_publish` does for an unchanged
        ETag), unless a later resolution got there first."""
        with self._publish_lock:
            if resolution > slot.resolution:
                slot.head = head
                slot.resolution = resolution

    def _publish(
        self,
        slot: _Slot,
        current: ResolvedEnvironment,
        extra_headers: Headers,
        resolution: int,
        head: tuple[str, ...] | None = None,
    ) -> bool:
        """Make `current` the slot's latest unless a later resolution got there first; when its
        ETag moved, answer the direct waiters and wake the others. True when it moved. `head` is
        the label's commit(s) read before that resolution began (None: unknown).

        A broken newest commit resolves to the newest good version, whose ETag the waiters
        already hold: it moves nothing and wakes nobody."""
        with self._publish_lock:
            if resolution <= slot.resolution:
                return False
            slot.head = head
            slot.held_back = any(name == HELD_BACK_HEADER for name, _ in extra_headers)
            if slot.published is not None and slot.published[0].etag == current.etag:
                slot.published = (current, extra_headers)  # the same settings, pinned or no longer
                slot.resolution = resolution
                return False
            slot.published = (current, extra_headers)
            slot.resolution = resolution
            self._answer_directly(slot, current, extra_headers)
            woken, slot.event = slot.event, threading.Event()
        woken.set()
        return True

    def _answer_directly(self, slot: _Slot, current: ResolvedEnvironment, extra_headers: Headers) -> None:
        """Write the new answer to every waiter that offered its connection, in one pass."""
        with self._lock:
            waiting = [answer for answer, known in slot.direct.items() if current.etag not in known]
            for answer in waiting:  # each connection is answered once; its request only unwinds
                del slot.direct[answer]
        if not waiting:
            return
        built = environment_answer(current, slot.request.label, extra_headers=extra_headers)
        response = encode_http(built, formatdate(usegmt=True))
        for answer in waiting:
            answer.deliver(response, current.environment.version)

    def recheck(self) -> int:
        """Ask every guarded waiter whether its caller still may read (the auth file was reloaded):
        each that may not is taken out of the direct answers and woken to answer REVOKED.

        Returns how many were revoked."""
        with self._lock:
            slots = list(self._slots.values())
        revoked = 0
        for slot in slots:
            with self._lock:
                guarded = list(slot.guarded.items())
            refused = []
            for guard, direct in guarded:
                try:
                    still = guard.allowed()
                except Exception:  # noqa: BLE001 - a check that fails refuses: never push unchecked
                    still = False
                if not still:
                    refused.append((guard, direct))
            if not refused:
                continue
            with self._publish_lock:  # no answer is being written to the slot's connections now
                with self._lock:
                    for guard, direct in refused:
                        guard.revoked = True
                        if direct is not None:
                            slot.direct.pop(direct, None)
                woken, slot.event = slot.event, threading.Event()
            woken.set()
            revoked += len(refused)
        if revoked:
            log.info("%d parked long poll(s) may no longer read what they wait on: refused", revoked)
        return revoked

    def close(self) -> None:
        """Answer every waiter now (304) and every later one at once: the server is shutting down."""
        self._closed = True
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            slot.event.set()

    def slots(self) -> int:
        """How many environments (slots) are being waited on right now."""
        with self._lock:
            return len(self._slots)

    def watchers(self) -> int:
        """How many requests are waiting right now."""
        with self._lock:
            return sum(slot.waiters for slot in self._slots.values())

    def current(
        self, request: EnvironmentRequest, route: Route = BASE_ROUTE
    ) -> tuple[ResolvedEnvironment, Headers] | None:
        """The answer of `route` now (the environment and its extra headers); None when broken."""
        return self._resolve(request, route)

    def _head(self, labels: tuple[str | None, ...]) -> tuple[str, ...] | None:
        """The commit(s) `labels` (each of a `main,release` list; None: the default label) point at
        now; None when one does not resolve. Nothing an answer depends on moves without them
        moving: a version is immutable, a verdict on it is too, a rollout's move reroutes its
        waiters (`reroute`), a pin's move changes the pins' generation (`safety/pins.py`), and a
        new approval checks every slot (`check(moved_only=False)`)."""
        try:
            versions = tuple(self.service.backend.resolve(one).version for one in labels)
        except ConfigServerError:
            return None
        return (*versions, f"{PINS_GENERATION}{self.service.pins.generation}")

    def _resolve(
        self, request: EnvironmentRequest, route: Route = BASE_ROUTE
    ) -> tuple[ResolvedEnvironment, Headers] | None:
        """The environment now and its answer's extra headers (`X-Config-Held-Back` when a broken
        newest commit is held back, `X-Config-Unknown-Application` for a name no file names, then
        the route's), or None when it is broken for watchers with
        no good version to stand in (a value that does not decrypt makes it broken too,
        `validation.py`). A rollout's route resolves its canary label; the answer echoes `label`."""
        source = request.at(route.source) if route.source is not None else request
        try:
            revision, resolved = self.service.environment(source)
        except ConfigServerError as exc:
            asked = (request.application, request.profiles, request.label)
            log.info("watched %s/%s/%s does not resolve: %s", *asked, exc)
            return None
        return resolved, self.service.answer_headers(request.application, revision) + route.headers


def _source_labels(request: EnvironmentRequest, route: Route) -> tuple[str | None, ...]:
    """The label(s) a slot's answer is resolved at: the route's canary, the request's label(s), or
    (None) the default label."""
    if route.source is not None:
        return (route.source,)
    return request.labels if request.labels is not None else (None,)
