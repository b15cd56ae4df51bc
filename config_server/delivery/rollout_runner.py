"""Rollouts at the edge: rollout files read from git, progress in the state store, long polls moved.

`content/rollout_plan.py` decides; this module feeds it and keeps the state: the loop and what it
read. How a rollout is shown lives with whoever shows it: its JSON in `http/rollout_json.py`, the
command line's text in `cli.py`, its gauges in `observability/metrics.py` (`RolloutsCollector`,
reading `Rollouts.progress`).

A background loop (`tick`, every `interval` seconds) reads `rollouts/*.yml` at the head of the
default label (and of every other label asked for), starts a rollout's schedule in the state store
the first time it sees its file, forgets it when the file is gone, records cohort rejections and
halts, and reads every rollout's state back, so the workers and replicas sharing the store agree.
Whenever what a rollout serves may have changed (it started, stepped, halted, completed or ended)
it asks the hub to `reroute` the application's long polls, which decide their route again: an
instance entering or leaving the cohort is answered as for a new commit.

The request path (`route`, `note_rejection`) reads only the loop's in-memory snapshot: no git, no
disk, no lock held across I/O. A rollout file that does not parse or names an unknown label is
not applied at all; its error is logged once and shown in `/health`, `/rollouts` and the console.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from config_server import names
from config_server.backends.base import Backend
from config_server.concurrency import Repeating, call_cooperatively
from config_server.content.environment_answer import BASE_ROUTE, Route
from config_server.content.rollout_plan import (
    HALTED,
    ROLLOUT_HEADER,
    ROLLOUTS_FOLDER,
    RUNNING,
    Instance,
    Phase,
    Rollout,
    RolloutState,
    decide,
    parse_client_labels,
    parse_rollout,
    phase,
    rejection_halt_reason,
    rollout_path,
    without_rejection_reason,
)
from config_server.delivery.rollout_memory import RolloutMemory
from config_server.errors import (
    ConfigServerError,
    LabelNotFound,
    RolloutFileError,
    StateRecordError,
    StateUnavailable,
)
from config_server.names import EnvironmentRequest
from config_server.state import RolloutRecord, ScheduleAnchor, StateStore

log = logging.getLogger(__name__)

#: How often the loop reads the repository heads and the state store.
TICK_SECONDS = 0.2
#: How long a tick waits for another to finish (a halt request must not wait without end).
TICK_WAIT_SECONDS = 10.0
#: At most this many labels besides the default are watched for rollout files.
MAX_LABELS = 64
#: Canary versions remembered per rollout (a rejection of any of them counts).
MAX_CANARY_VERSIONS = 32
#: Rejections remembered per rollout and worker (beyond, a report is not passed on again).
MAX_REPORTED = 10_000
#: Queued rejections a tick looks up in the store at most (the others wait for the next tick).
MAX_CHECKS_PER_TICK = 1000
#: How long a rejection may wait for the store to hold the canary answer that came before it (an
#: answer of another worker reaches the store on that worker's next tick); after that it is
#: dropped, and the client's next report (it repeats it on every request) is looked at afresh.
CONFIRM_SECONDS = 5.0

Key = tuple[str, str, str]  # application, base label, rollout id
#: A queued rejection: rollout, instance, version, reason, caller, when it was sent.
Rejection = tuple[Key, str, str, str | None, str, float]
T = TypeVar("T")


@dataclass
class Active:
    """A rollout whose file is at its base label's head: the file, where, and the stored progress."""

    rollout: Rollout
    label: str
    version: str
    record: RolloutRecord | None = None
    canary_versions: set[str] = field(default_factory=set)
    #: (instance, version) rejections this worker already counted: a refusing instance repeats
    #: its report on every request, and it is written once.
    reported: set[tuple[str, str]] = field(default_factory=set)
    #: (instance, version) canary answers this worker queued for the store, and when the first was.
    served: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        """(application, base label, rollout id)."""
        return (self.rollout.application, self.label, self.rollout.rollout_id)

    def state(self) -> RolloutState | None:
        """The pure module's view of the stored record (None, the base label for everyone, when
        there is none or it cannot be read)."""
        if self.record is None or self.record.problem is not None:
            return None
        record = self.record
        moved = record.anchor
        return RolloutState(
            record.started,
            record.halted_at,
            record.halt_reason,
            record.resumed_at,
            moved.at if moved is not None else None,
            moved.step if moved is not None else 0,
        )


@dataclass(frozen=True)
class FileError:
    """A rollout file that is ignored, and why."""

    application: str
    label: str
    version: str
    error: RolloutFileError


class Rollouts:
    """The rollouts of one backend: routes for requests, the background loop, halts."""

    def __init__(
        self,
        backend: Backend,
        store: StateStore,
        reroute: Callable[[str], None] = lambda application: None,
        clock: Callable[[], float] = time.time,
        interval: float = TICK_SECONDS,
        durable: StateStore | None = None,
    ) -> None:
        self.backend = backend
        self.store = store
        #: The records this worker has read, to put back what the store loses (`rollout_memory`);
        #: `durable` keeps a copy on this machine when the shared store is Redis.
        self.memory = RolloutMemory(store, durable)
        self._record_errors: dict[tuple[str, str], FileError] = {}
        self.reroute = reroute
        self.clock = clock
        self.interval = interval
        self._active: dict[tuple[str, str], Active] = {}
        self._errors: dict[tuple[str, str], FileError] = {}
        self._signatures: dict[tuple[str, str], tuple[Key, Rollout, tuple[str, int] | None]] = {}
        #: Replaced, never changed in place: read by the loop while requests add to it.
        self._labels: frozenset[str] = frozenset()
        self._labels_full_said = False
        self._rejections: deque[Rejection] = deque(maxlen=10_000)
        self._served: deque[tuple[Key, str, str, float]] = deque(maxlen=100_000)
        self._parsed: dict[tuple[str, str], Rollout | RolloutFileError] = {}
        self._default_label: str | None = None
        self._loop = Repeating(self._checked, lambda: self.interval, "config-rollouts")
        self._tick_lock = threading.Lock()
        #: What the loop's last tick failed with ("state" for an unreachable store), None when it worked.
        self._failing: str | None = None
        #: Whether a request's environment is pinned (`ConfigService.is_pinned`): a pinned
        #: environment is never in a rollout's cohort.
        self.pinned: Callable[[EnvironmentRequest], bool] | None = None

    # --- the request path: memory only ---------------------------------------------------------

    def route(
        self,
        application: str,
        profiles: str,
        label: str | None,
        instance_id: str | None,
        client_labels: str = "",
        may_read: Callable[[str], bool] | None = None,
    ) -> Route:
        """`route_for` the names as sent (the base route when one does not validate)."""
        try:
            request = EnvironmentRequest.parse(application, profiles, label)
        except ConfigServerError:
            return BASE_ROUTE
        return self.route_for(request, instance_id, client_labels, may_read)

    def route_for(
        self,
        request: EnvironmentRequest,
        instance_id: str | None,
        client_labels: str = "",
        may_read: Callable[[str], bool] | None = None,
    ) -> Route:
        """The route of one request: the canary label with its `X-Config-Rollout` header for an
        identified cohort instance (that may read the canary label), else the label asked for.

        A request for several applications or labels, or for a commit id, is never in a rollout.
        """
        labels = request.labels
        several = len(request.applications) > 1 or (labels is not None and len(labels) > 1)
        if (labels is None and not self._active) or several:
            return BASE_ROUTE  # the common case without a rollout: nothing to look up
        base = self._default_label if labels is None else labels[0]
        if base is None:
            return BASE_ROUTE
        application = request.application
        active = self._active.get((application, base))
        if active is None:
            if labels is not None and base not in self._labels:
                self._watch_label(base)
            return BASE_ROUTE
        wanted = request.profile_names
        if not active.rollout.applies_to(wanted):
            return BASE_ROUTE
        if self.pinned is not None and self.pinned(request):
            return BASE_ROUTE  # a pin wins over a rollout: every instance is answered the pinned version
        instance = Instance(instance_id, parse_client_labels(client_labels)) if instance_id else None
        canary, current = decide(active.rollout, active.state(), instance, self.clock())
        if canary is None or current is None:
            return BASE_ROUTE
        if may_read is not None and not may_read(canary):
            return BASE_ROUTE
        return Route(canary, ((ROLLOUT_HEADER, current.header(application)),))

    def canary_served(
        self,
        application: str,
        label: str | None,
        version: str,
        instance_id: str | None = None,
        now: float | None = None,
    ) -> None:
        """Remember a version the canary label served (a rejection of it counts), and to which
        instance (for the store: only an instance served the canary before may reject it).
        `label` is the validated label asked for (None: the default label)."""
        active = self._active_for(application, label)
        if active is None:
            return
        if len(active.canary_versions) < MAX_CANARY_VERSIONS:
            active.canary_versions.add(version)
        if instance_id is not None and (instance_id, version) not in active.served:
            if len(active.served) >= MAX_REPORTED:
                active.served = {}  # the store keeps the first time; queuing again costs a write
            when = self.clock() if now is None else now
            active.served[(instance_id, version)] = when
            self._served.append((active.key, instance_id, version, when))

    def note_rejection(
        self,
        application: str,
        label: str | None,
        instance_id: str,
        version: str,
        reason: str | None,
        served: str | None = None,
        caller: str = "",
        now: float | None = None,
    ) -> bool:
        """Queue a cohort instance's rejection of a canary version for the loop to count; True when
        it may count (the instance was answered from the canary and refuses a canary version).

        The loop counts it only once the store confirms that the canary served that version to
        the instance on an earlier request (before `now`), and counts distinct callers (`caller`:
        the client and address that sent it), so that a reader who computes cohort ids offline
        and forges their rejections counts once, not once per id. `label` is the validated label
        asked for (None: the default label)."""
        active = self._active_for(application, label)
        if active is None or active.record is None or active.record.halted:
            return False
        if version != served and version not in active.canary_versions:
            return False
        if (instance_id, version) in active.reported or len(active.reported) >= MAX_REPORTED:
            return True
        when = self.clock() if now is None else now
        self._rejections.append((active.key, instance_id, version, reason, caller, when))
        return True

    def _active_for(self, application: str, label: str | None) -> Active | None:
        """The active rollout of `application` at the validated `label` (None: the default label)."""
        base = self._default_label if label is None else label
        return self._active.get((application, base)) if base is not None else None

    # --- the background loop ---------------------------------------------------------------------

    def _io(self, call: Callable[..., T], *args: Any) -> T:
        """Run a state-store call; under gevent, a store that may block (SQLite) is called on a
        thread of gevent's pool, so a write waiting for its lock (at most its busy timeout) holds up
        this greenlet only, never the worker. A cooperative store (Redis) is called directly."""
        return call_cooperatively(self.store, call, *args)

    def start(self) -> Rollouts:
        """Run the loop (a thread; a greenlet under gevent, like the change detector's); the first
        check runs now, so a rollout applies from the first request (a repository that cannot be
        read yet is retried by the loop)."""
        self.memory.load()
        self._checked()  # a remote not cloned yet, or Redis away, must not stop the server starting
        self._loop.start()
        return self

    def close(self) -> None:
        """Stop the loop."""
        self._loop.stop()

    def _checked(self) -> None:
        """One tick of the loop, its failure said once while it lasts (not every 0.2 s), and once
        when checks work again: a state store that cannot be reached (Redis away) in one line, any
        other failure with its traceback, again only when it changes."""
        try:
            self.tick()
        except StateUnavailable as exc:
            if self._failing != "state":
                log.error(
                    "rollouts: %s; each rollout is served as last read, halts and rejections wait "
                    "until it is back (said once per outage)",
                    exc,
                )
            self._failing = "state"
        except Exception as exc:  # noqa: BLE001 - the loop must outlive a locked disk or a git hiccup
            failure = f"{type(exc).__name__}: {exc}"
            if self._failing != failure:
                log.exception("rollout check failed (said again only when the failure changes)")
            self._failing = failure
        else:
            if self._failing is not None:
                log.warning("rollouts: checks work again, the state store is back")
            self._failing = None

    def tick(self) -> None:
        """Read the rollout files at the heads, record rejections, sync with the state store, and
        reroute the long polls of every application whose rollout moved. Waits for another tick
        (the loop's, or a halt's) at most TICK_WAIT_SECONDS; StateUnavailable (503) after that."""
        if not self._tick_lock.acquire(timeout=TICK_WAIT_SECONDS):
            raise StateUnavailable(f"the rollout state is busy for more than {TICK_WAIT_SECONDS:g} s")
        try:
            now = self.clock()
            seen, errors, scanned = self._scan()
            records = {(r.application, r.label, r.rollout_id): r for r in self._io(self.store.rollouts)}
            record_errors: dict[tuple[str, str], FileError] = {}
            for where, active in seen.items():
                active.record = self._settled(active, records.get(active.key), now, record_errors)
                if active.record is not None:
                    records[active.key] = active.record
                old = self._active.get(where)
                if old is not None and old.key == active.key:
                    active.canary_versions = old.canary_versions
                    active.reported = old.reported
                    active.served = old.served
            for key in {*records, *self.memory.keys()}:
                if key[1] not in scanned or key[:2] in errors:
                    continue  # a label not read now, or a file ignored for an error: its state stays
                if seen.get(key[:2]) is None or seen[key[:2]].key != key:
                    self.memory.forget(key)
                    if key in records:
                        self._io(self.store.end_rollout, *key)  # its file is gone (or names another rollout)
                        log.info("rollout %s/%s %s ended: its file is gone", *key)
            halted = self._count_rejections(seen, now)
            self._record_served(seen)  # after: this worker's own answers are confirmed from memory
            for active in seen.values():
                if active.key in halted:
                    active.record = halted[active.key]
                if active.record is not None:
                    self.memory.remember(active.key, active.record)
            self._active = seen
            self._errors = errors
            self._record_errors = record_errors
            self._reroute_moved(now)
        finally:
            self._tick_lock.release()

    def _settled(
        self,
        active: Active,
        stored: RolloutRecord | None,
        now: float,
        record_errors: dict[tuple[str, str], FileError],
    ) -> RolloutRecord | None:
        """The rollout's record (`RolloutMemory.settle`: started, or put back from what this
        worker knows). A record that cannot be read, and is not known here, is the rollout's own
        error (its cohort gets the base label until it is halted, its file removed or its `id`
        changed); so is a failure writing it that is not the store's outage."""
        where = (active.rollout.application, active.label)
        record: RolloutRecord | None = None
        try:
            record = self.memory.settle(active.key, stored, now)
            problem = record.problem
        except StateUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - one rollout's record is that rollout's error
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            message = (
                f"its record in the state store cannot be read ({problem}): every instance gets "
                f"{active.label}; halt the rollout to reset its record as halted, remove the file, "
                "or give it a new `id`"
            )
            error = FileError(*where, active.version, RolloutFileError(rollout_path(where[0]), None, message))
            if self._record_errors.get(where) != error:
                log.error("rollout %s/%s %s: %s", *active.key, message)
            record_errors[where] = error
        return record

    def _watch_label(self, label: str) -> None:
        """Have the loop look for rollout files at `label` too, while fewer than MAX_LABELS are."""
        if len(self._labels) < MAX_LABELS:
            self._labels = self._labels | {label}
        elif not self._labels_full_said:
            self._labels_full_said = True
            log.warning(
                "rollouts: already watching %d labels besides the default; a rollout file at %r "
                "(or any further label) is not looked for until this worker restarts",
                MAX_LABELS,
                label,
            )

    def _scanned_labels(self) -> set[str]:
        default = self._default_label
        return {*self._labels, *([default] if default else [])}

    def _scan(self) -> tuple[dict[tuple[str, str], Active], dict[tuple[str, str], FileError], set[str]]:
        """Every valid rollout file at the watched labels' heads, every invalid one, and the labels
        that could be read (a rollout is ended only when its label was read without its file)."""
        try:
            self._default_label = self.backend.default_label()
        except ConfigServerError:
            pass  # a remote not reachable yet: the labels asked for are still looked at
        seen: dict[tuple[str, str], Active] = {}
        errors: dict[tuple[str, str], FileError] = {}
        scanned: set[str] = set()
        for label in sorted(self._scanned_labels()):
            try:
                revision = self.backend.resolve(label)
                if getattr(revision, "pinned", False):
                    self._labels = self._labels - {label}
                    continue
                listing = self.backend.listing(revision.version, ROLLOUTS_FOLDER)
            except LabelNotFound:
                self._labels = self._labels - {label}  # not a branch or tag: not looked at again
                continue
            except ConfigServerError:
                # the label cannot be read right now: what was seen there stays as it was
                seen.update({w: a for w, a in self._active.items() if w[1] == label})
                errors.update({w: e for w, e in self._errors.items() if w[1] == label})
                continue
            scanned.add(label)
            for name in sorted(listing.files):
                if not name.endswith(".yml") or name.startswith("."):
                    continue
                application = name[: -len(".yml")]
                try:
                    parsed = self._parse(revision.version, application)
                    if isinstance(parsed, Rollout):
                        parsed = self._check_canary(parsed)
                except Exception as exc:  # noqa: BLE001 - one file's failure is that file's error (not
                    # remembered: a git hiccup is tried again on the next tick)
                    message = f"cannot be read ({type(exc).__name__})"
                    parsed = RolloutFileError(rollout_path(application), None, message)
                if isinstance(parsed, RolloutFileError):
                    error = FileError(application, label, revision.version, parsed)
                    if (application, label) not in self._errors or self._errors[
                        (application, label)
                    ].version != revision.version:
                        log.error("rollout ignored at %s %s: %s", label, revision.version[:12], parsed)
                    errors[(application, label)] = error
                    continue
                seen[(application, label)] = Active(parsed, label, revision.version)
        return seen, errors, scanned

    def _parse(self, version: str, application: str) -> Rollout | RolloutFileError:
        cached = self._parsed.get((version, application))
        if cached is None:
            try:
                names.validate_application(application)
                data = self.backend.read(version, rollout_path(application))
                cached = parse_rollout(application, data or b"")
            except RolloutFileError as exc:
                cached = exc
            except ConfigServerError as exc:
                cached = RolloutFileError(rollout_path(application), None, str(exc))
            if len(self._parsed) > 4096:
                self._parsed.clear()
            self._parsed[(version, application)] = cached
        return cached

    def _check_canary(self, rollout: Rollout) -> Rollout | RolloutFileError:
        """The rollout, or an error when its canary label is not in the repository (checked each
        time: the branch may be pushed later)."""
        try:
            self.backend.resolve(rollout.canary)
        except ConfigServerError:
            path = rollout_path(rollout.application)
            return RolloutFileError(path, None, f"canary: unknown label {rollout.canary!r}")
        return rollout

    def _record_served(self, seen: dict[tuple[str, str], Active]) -> None:
        """Write the queued canary answers (instance, version, when) to the store, per rollout."""
        live = {active.key: active for active in seen.values()}
        batches: dict[Key, list[tuple[str, str, float]]] = {}
        while self._served:
            key, instance_id, version, when = self._served.popleft()
            if key in live:
                batches.setdefault(key, []).append((instance_id, version, when))
        while batches:
            key, batch = next(iter(batches.items()))
            try:
                self._io(self.store.record_canary_served, *key, batch)
            except Exception:
                for key, batch in batches.items():  # not written: the next answer queues each again
                    for instance_id, version, _ in batch:
                        live[key].served.pop((instance_id, version), None)
                raise
            del batches[key]

    def _count_rejections(self, seen: dict[tuple[str, str], Active], now: float) -> dict[Key, RolloutRecord]:
        """Record the queued rejections the store confirms (the canary served that version to the
        instance before); keep the others for CONFIRM_SECONDS; halt each rollout whose `halt-on`
        tripped (distinct callers). A rejection sent before the halt is recorded after it too (the
        status names every instance that refused), without halting again."""
        halted: dict[Key, RolloutRecord] = {}
        by_key = {active.key: active for active in seen.values()}
        latest: dict[tuple[Key, str, str], Rejection] = {}
        while self._rejections:  # an instance repeats its report: the latest one is looked at
            report = self._rejections.popleft()
            latest[report[:3]] = report
        reports = list(latest.values())
        self._rejections.extend(reports[MAX_CHECKS_PER_TICK:])  # the next tick looks at the rest
        waiting: list[Rejection] = []
        for index, report in enumerate(reports[:MAX_CHECKS_PER_TICK]):
            key, instance_id, version, reason, caller, when = report
            active = by_key.get(key)
            if active is None or active.record is None:
                continue
            record = active.record
            if (
                record.halted_at is not None
                and when > record.halted_at
                and (record.resumed_at is None or when < record.resumed_at)
            ):
                continue  # sent while halted: the instance is served the base label again
            if (instance_id, version) in active.reported or active.record.problem is not None:
                continue  # a record's problem: its cohort already gets the base label, the error is shown
            try:
                served_at = active.served.get((instance_id, version))  # this worker's answer
                if served_at is None or served_at >= when:
                    served_at = self._io(self.store.canary_served_at, *key, instance_id, version)
                if served_at is None or served_at >= when:
                    if now - when < CONFIRM_SECONDS:  # the answer before may be another worker's
                        waiting.append(report)
                    continue
                count = self._io(
                    self.store.record_rollout_rejection, *key, instance_id, version, reason, now, caller
                )
            except StateRecordError as exc:  # one rollout's record: the others go on
                log.error("rollout %s/%s %s: a rejection cannot be recorded: %s", *key, exc)
                continue
            except Exception:
                self._rejections.extend(reports[index:MAX_CHECKS_PER_TICK])  # not lost: the next tick
                self._rejections.extend(waiting)
                raise
            active.reported.add((instance_id, version))
            fresh = record.resumed_at is None or when >= record.resumed_at  # not from before a resume
            if count >= active.rollout.halt_on_rejected and not active.record.halted and fresh:
                why = rejection_halt_reason(count, version, instance_id, reason)
                record = self.memory.halt(key, why, now)  # put back too, were the record lost meanwhile
                log.warning(
                    "rollout %s/%s halted: %s", key[0], key[1], without_rejection_reason(record.halt_reason)
                )
                halted[key] = record
                active.record = record
        self._rejections.extend(waiting)
        return halted

    def _reroute_moved(self, now: float) -> None:
        """Reroute the applications whose rollouts started, stepped, halted, completed or ended."""
        signatures = {}
        for where, active in self._active.items():
            state = active.state()
            current = phase(active.rollout, state, now) if state is not None else None
            signatures[where] = (
                active.key,
                active.rollout,
                None if current is None else (current.state, current.step),
            )
        moved = {
            where[0]
            for where in set(signatures) | set(self._signatures)
            if signatures.get(where) != self._signatures.get(where)
        }
        self._signatures = signatures
        for application in sorted(moved):
            self.reroute(application)

    # --- operations ------------------------------------------------------------------------------

    def halt(self, application: str, label: str | None, reason: str) -> RolloutRecord | None:
        """Halt the application's rollout at `label` (default label) now; None when there is none."""
        self.tick()
        active = self._active_for(application, label)
        if active is None:
            return None
        record = self.memory.halt(active.key, reason, self.clock())
        self.tick()
        return record

    def resume(self, application: str, label: str | None, note: str) -> RolloutRecord | Phase | None:
        """Resume the application's halted rollout at `label` (default label) now: its halted step
        starts a full bake again. The record (a resume newer than the halt, which every worker and
        replica honours); the phase when it is not halted; None when there is no rollout."""
        return self._move(application, label, note, resume=True)

    def advance(self, application: str, label: str | None, note: str) -> RolloutRecord | Phase | None:
        """Start the next step of the application's running rollout now (after the last step: it
        is complete). The record; the phase when it is not running; None when there is none."""
        return self._move(application, label, note, resume=False)

    def _move(
        self, application: str, label: str | None, note: str, resume: bool
    ) -> RolloutRecord | Phase | None:
        """A resume or an advance: the schedule re-anchored at the current step (resume) or the
        next (advance), recorded through `RolloutMemory.move` so that no copy undoes it."""
        self.tick()
        active = self._active_for(application, label)
        state = active.state() if active is not None else None
        if active is None or state is None:
            return None
        now = self.clock()
        current = phase(active.rollout, state, now)
        if current.state != (HALTED if resume else RUNNING):
            return current
        if resume:
            assert state.halted_at is not None
            at = max(now, state.halted_at + 0.001)  # strictly after the halt it ends
            record = self.memory.move(active.key, ScheduleAnchor(at, current.step, note), resumed_at=at)
        else:
            record = self.memory.move(active.key, ScheduleAnchor(now, current.step + 1, note))
        self.tick()
        return record

    def errors(self) -> list[FileError]:
        """Rollout files ignored right now, and rollouts whose stored record cannot be read."""
        found = {**self._record_errors, **self._errors}
        return [found[k] for k in sorted(found)]

    def halted(self) -> list[tuple[Active, Phase]]:
        """Halted rollouts with their phase."""
        return [(a, p) for a, p in self.phases() if p.state == HALTED]

    def phases(self, application: str | None = None) -> list[tuple[Active, Phase]]:
        """Every active rollout (of one application) with its phase now."""
        now = self.clock()
        out = []
        for where in sorted(self._active):
            active = self._active[where]
            state = active.state()
            if state is None or (application is not None and where[0] != application):
                continue
            out.append((active, phase(active.rollout, state, now)))
        return out

    def progress(self) -> list[tuple[str, str, str, float]]:
        """(application, base label, state, step percent) of every active rollout now: the plain
        snapshot the metrics' `RolloutsCollector` reads at scrape time."""
        return [(a.rollout.application, a.label, p.state, p.percent) for a, p in self.phases()]

    def labels(self) -> Iterable[str]:
        """The labels whose heads are read for rollout files."""
        return sorted(self._scanned_labels())
