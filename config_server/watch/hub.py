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

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import formatdate

from config_server.answer import environment_answer
from config_server.cache import ResolvedEnvironment
from config_server.errors import ConfigServerError
from config_server.service import ConfigService
from config_server.watch.direct import DirectAnswer, encode_http

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
            slot.direct.clear()  # each connection is answered once; its request only unwinds now
        if not waiting:
            return
        response = encode_http(environment_answer(current, slot.label), formatdate(usegmt=True))
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


