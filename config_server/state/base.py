"""The state store interface: what the server remembers beyond one request, shared by every worker.

One small interface with an embedded default (`sqlite.py`, a file under `--data-dir` that all
gunicorn workers of one machine share) and, for a cluster, a Redis implementation with the same
methods. It holds instance reports (who asked for which environment, what it was served, what it
says it runs and what it refused), the versions it served, and the progress of rollouts (when
each started, whether it was halted and why, which cohort instances rejected its canary). It is
chosen once at start-up (`open_state_store`).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

T = TypeVar("T")

#: Canary answers remembered per rollout (instance and version): beyond, new ones are not, so a
#: caller inventing instance ids cannot fill the disk; their rejections then do not count.
MAX_SERVED_PER_ROLLOUT = 100_000


@dataclass(frozen=True)
class InstanceState:
    """What both a report and a stored record say about an instance of one environment."""

    instance_id: str
    application: str
    profiles: str
    label: str
    served: str | None
    applied: str | None
    rejected_version: str | None
    rejected_reason: str | None
    client_labels: str
    remote: str
    user_agent: str


@dataclass(frozen=True)
class InstanceReport(InstanceState):
    """What one request says about its caller; `served` is None when nothing was served (broken commit).

    `rejected_version`/`rejected_reason` say what the instance refuses *now*: a report without them
    clears an earlier rejection. `applied` None keeps what the instance said before.
    """

    seen: float
    anonymous: bool = False

    @property
    def key(self) -> tuple[str, str, str, str]:
        """One instance watching one environment."""
        return (self.instance_id, self.application, self.profiles, self.label)


@dataclass(frozen=True)
class InstanceRecord(InstanceState):
    """An instance of one environment as stored: its latest report plus first seen and version since."""

    anonymous: bool
    first_seen: float
    last_seen: float
    version_since: float

    @property
    def version(self) -> str | None:
        """The version the instance runs: what it says it applied, else what it was last served."""
        return self.applied or self.served


@dataclass(frozen=True)
class ScheduleAnchor:
    """An operator's move of a rollout's schedule: step `step` (an index) began at `at`, and the
    steps after it follow every `bake` from there. A resume restarts the halted step's bake, an
    advance starts the next step now; `note` says which, by whom and why (for the status)."""

    at: float
    step: int
    note: str | None = None


@dataclass(frozen=True)
class RolloutRecord:
    """A rollout's progress: one per (application, base label, rollout id), shared by every replica.

    The step is not stored: it follows from `started` and the file's `bake` (`rollout.phase`),
    so every worker and replica computes the same one, and a restart resumes where it was.
    """

    application: str
    label: str
    rollout_id: str
    started: float
    halted_at: float | None = None
    halt_reason: str | None = None
    #: Why the stored record cannot be trusted (a time that is not a number, a Redis key of another
    #: type), None when it was read whole. An unreadable halt reads as halted (`halted_at` set).
    problem: str | None = None
    #: When an operator last resumed it: a halt at or after this time halts it, an older one is
    #: history (`halted`). Only ever moves forward, so no copy of an older record brings a halt back.
    resumed_at: float | None = None
    #: The last operator move of the schedule (a resume or an advance), None while it runs from `started`.
    anchor: ScheduleAnchor | None = None

    @property
    def halted(self) -> bool:
        """True when the rollout is halted now: a halt is recorded and no resume came after it."""
        return self.halted_at is not None and (self.resumed_at is None or self.halted_at >= self.resumed_at)


def read_time(value: object) -> float | None:
    """A stored time as a finite float; None when it is not one (what no server writes)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float) or not _TIME.fullmatch(str(value)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def rollout_record(
    application: str,
    label: str,
    rollout_id: str,
    started: object,
    halted_at: object,
    halt_reason: object,
    resumed_at: object = None,
    anchor_at: object = None,
    anchor_step: object = None,
    anchor_note: object = None,
) -> RolloutRecord:
    """A rollout's record from its stored fields, whatever they hold: never raises. A `started` or
    `halted_at` that is not a time sets `problem`; an unreadable halt reads as halted, an
    unreadable resume as none (so the halt stands), an unreadable anchor as none."""
    problems = []
    start = read_time(started)
    if start is None:
        problems.append(f"started is {_shown(started)}")
    resumed = None
    if resumed_at is not None and resumed_at != "":
        resumed = read_time(resumed_at)
        if resumed is None:
            problems.append(f"resumed_at is {_shown(resumed_at)}")
    halt = None
    if halted_at is not None and halted_at != "":
        halt = read_time(halted_at)
        if halt is None:
            problems.append(f"halted_at is {_shown(halted_at)}")
            halt = max(start or 0.0, resumed or 0.0)  # an unreadable halt stays a halt
    reason = None if halt_reason is None or halt_reason == "" else str(halt_reason)[:1024]
    return RolloutRecord(
        application,
        label,
        rollout_id,
        start or 0.0,
        halt,
        reason,
        "; ".join(problems) or None,
        resumed,
        stored_anchor(anchor_at, anchor_step, anchor_note),
    )


def stored_anchor(at: object, step: object, note: object) -> ScheduleAnchor | None:
    """A stored schedule anchor; None when there is none or it cannot be read (the schedule then
    runs from the start, as before any operator move)."""
    time_ = read_time(at) if at not in (None, "") else None
    if time_ is None or isinstance(step, bool) or not re.fullmatch(r"[0-9]{1,3}", str(step)):
        return None
    return ScheduleAnchor(time_, int(str(step)), None if note in (None, "") else str(note)[:1024])


def later_anchor(one: ScheduleAnchor | None, other: ScheduleAnchor | None) -> ScheduleAnchor | None:
    """The later of two schedule moves (by time, then step): the one every copy converges on."""
    if one is None or other is None:
        return one or other
    return max(one, other, key=lambda a: (a.at, a.step))


def restored_fields(
    stored: Sequence[object] | None,
    started: float,
    halted_at: float | None,
    halt_reason: str | None,
    resumed_at: float | None = None,
    anchor: ScheduleAnchor | None = None,
) -> tuple[float, float | None, str | None, float | None, ScheduleAnchor | None]:
    """(started, halted_at, halt_reason, resumed_at, anchor) that `restore_rollout` stores over
    `stored` (the stored fields in that order, the anchor as at, step, note; None when there is no
    record). A merge every copy converges on, whatever order copies arrive in:
    - the start: the stored one when readable (the first start wins);
    - the resume: the newer of the two (a resume is never undone by an older copy);
    - the halt: the stored halt while it is live (not older than the resume: the first halt wins),
      else the given one while live, else the newer of the two as history (a resume newer than
      every halt means running: a copy from before the resume does not bring its halt back);
      a halt that was stored but cannot be read stays a halt;
    - the anchor: the later of the two (`later_anchor`).
    """
    raw = list(stored) if stored is not None else []
    raw += [None] * (7 - len(raw))
    old_started, old_halted, old_reason, old_resumed, old_anchor_at, old_anchor_step, old_note = raw[:7]
    start = read_time(old_started)
    start = started if start is None else start
    resumes = [
        t
        for t in (read_time(old_resumed) if old_resumed not in (None, "") else None, resumed_at)
        if t is not None
    ]
    resumed = max(resumes) if resumes else None
    merged_anchor = later_anchor(stored_anchor(old_anchor_at, old_anchor_step, old_note), anchor)
    halts: list[tuple[float, str | None]] = []
    old_halt = read_time(old_halted)
    if old_halt is not None:
        halts.append((old_halt, None if old_reason in (None, "") else str(old_reason)))
    elif halted_at is None and old_halted not in (None, ""):
        unreadable = max(start, resumed) if resumed is not None else start
        halts.append((unreadable, "halted: the halt stored for this rollout could not be read"))
    if halted_at is not None:
        halts.append((halted_at, halt_reason))
    live = [h for h in halts if resumed is None or h[0] >= resumed]
    chosen = live[0] if live else (max(halts, key=lambda h: h[0]) if halts else None)
    if chosen is None:
        return start, None, None, resumed, merged_anchor
    return start, chosen[0], chosen[1], resumed, merged_anchor


def rollout_rejection(instance_id: str, version: object, reason: object, seen: object) -> RolloutRejection:
    """A stored rejection, whatever it holds: one that is not what a server wrote (a version that
    is not text, a time that is not one) is shown as unreadable, never an error."""
    at = read_time(seen)
    if not isinstance(version, str) or at is None or not (reason is None or isinstance(reason, str)):
        return RolloutRejection(instance_id, "", UNREADABLE_REJECTION, 0.0)
    return RolloutRejection(instance_id, version, reason, at)


#: The reason shown for a stored rejection that cannot be read.
UNREADABLE_REJECTION = "(unreadable in the state store)"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_TIME = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


@dataclass(frozen=True)
class PinRecord:
    """An environment (application, profiles, label) pinned to a commit it served before: every
    replica answers it that commit until it is unpinned, whatever lands on the label."""

    application: str
    profiles: str
    label: str
    version: str
    reason: str
    by: str
    at: float

    def to_json(self) -> dict[str, Any]:
        """The pin as `/pins`, `/health`, the console and the Redis store show it: its fields."""
        return asdict(self)

    @property
    def key(self) -> tuple[str, str, str]:
        """The environment pinned: one pin per (application, profiles, label)."""
        return (self.application, self.profiles, self.label)


@dataclass(frozen=True)
class RolloutRejection:
    """A cohort instance that refused the canary version, and why."""

    instance_id: str
    version: str
    reason: str | None
    seen: float


@dataclass(frozen=True)
class ApprovalRecord:
    """One approval: `approver` approved commit `version` on `label` (and with it every change
    before it on that label), at `at`, saying `reason`. One per (label, version, approver)."""

    label: str
    version: str
    approver: str
    reason: str
    at: float

    def to_json(self) -> dict[str, Any]:
        """The approval as `/approvals` shows it: `{"label", "version", "approver", "reason", "at"}`."""
        return asdict(self)

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes an approval one: the label, the commit and who approved it."""
        return (self.label, self.version, self.approver)


#: Approvals a store hands back at most (the newest first); older ones no head needs any more.
MAX_APPROVALS = 10_000


class StateStore(ABC):
    """Where instance reports live; every method is safe to call from any thread or process."""

    #: True when calls never block the gevent loop (cooperative sockets); False for a store whose
    #: calls may wait on a disk lock, which callers on the loop run on a thread of gevent's pool.
    cooperative: bool = False

    @abstractmethod
    def record_instances(self, reports: Sequence[InstanceReport]) -> None:
        """Store a batch of reports, oldest first (a later report of one instance wins)."""

    @abstractmethod
    def instances(
        self,
        application: str | None = None,
        profiles: str | None = None,
        label: str | None = None,
        seen_after: float = 0.0,
        limit: int = 10_000,
        accept: Callable[[InstanceRecord], bool] | None = None,
    ) -> list[InstanceRecord]:
        """Instances (optionally of one application/profiles/label) last seen after `seen_after`.

        At most `limit` of them, ordered by application, profiles, label and instance id, so
        that one read has a known cost whatever the table holds (ask for one more to know
        whether there were more). With `accept`, only records it accepts are returned and
        counted towards `limit` (the rows are filtered before the limit, not after).
        """

    @abstractmethod
    def served_versions(self, since: float, limit: int = 10_000) -> list[str]:
        """Versions the server served to an instance after `since`, the most recently served first
        (at most `limit`): `record_instances` remembers every report's `served`, and `prune` forgets
        versions last served before its time. Unlike `applied`, which the caller writes, these are
        the server's own versions (the metrics label only them)."""

    @abstractmethod
    def prune(self, seen_before: float) -> int:
        """Forget instances (and served versions) last seen before `seen_before`; returns how many
        instances were removed."""

    # Rollout progress. Each method is one small atomic step, so a Redis store maps it directly:
    # a hash per rollout (`HSETNX started`, then `HGETALL`; a halt is `HSETNX halted_at` plus the
    # reason, in a MULTI or a short Lua script), a set of rollout keys for `rollouts()`, and a hash
    # of rejections per rollout (`HSET instance -> json`, `HLEN` for the count); `end_rollout` is a
    # `DEL` of both and `SREM`.

    @abstractmethod
    def start_rollout(self, application: str, label: str, rollout_id: str, now: float) -> RolloutRecord:
        """The rollout's record, created as started `now` unless one exists (the first start wins)."""

    @abstractmethod
    def rollouts(self) -> list[RolloutRecord]:
        """Every rollout record."""

    @abstractmethod
    def halt_rollout(
        self, application: str, label: str, rollout_id: str, reason: str, now: float
    ) -> RolloutRecord | None:
        """Mark a rollout halted (the first halt's time and reason are kept); None when unknown."""

    @abstractmethod
    def restore_rollout(
        self,
        application: str,
        label: str,
        rollout_id: str,
        started: float,
        halted_at: float | None,
        halt_reason: str | None,
        resumed_at: float | None = None,
        anchor: ScheduleAnchor | None = None,
    ) -> RolloutRecord:
        """Put back what a server knows of a rollout whose record is missing or unreadable (Redis
        restarted, flushed or failed over; a record changed by hand), or halt, resume or advance
        one: the stored fields and these are merged (`restored_fields`) in one atomic step; the
        record as stored now. A halt is added unless a live one is stored (the first halt wins); a
        resume newer than every halt ends the halt, and no older copy brings it back."""

    @abstractmethod
    def end_rollout(self, application: str, label: str, rollout_id: str) -> None:
        """Forget a rollout and its rejections (its file was removed)."""

    @abstractmethod
    def record_rollout_rejection(
        self,
        application: str,
        label: str,
        rollout_id: str,
        instance_id: str,
        version: str,
        reason: str | None,
        now: float,
        caller: str = "",
    ) -> int:
        """Remember that a cohort instance rejected the canary; returns how many distinct callers
        did (`caller`: who sent it, its client and address; a rejection without one counts as its
        instance), so one caller inventing instance ids counts once."""

    @abstractmethod
    def record_canary_served(
        self, application: str, label: str, rollout_id: str, served: Sequence[tuple[str, str, float]]
    ) -> None:
        """Remember (instance id, version, when) the rollout's canary served, the earliest time per
        instance and version kept; at most MAX_SERVED_PER_ROLLOUT of them per rollout."""

    @abstractmethod
    def canary_served_at(
        self, application: str, label: str, rollout_id: str, instance_id: str, version: str
    ) -> float | None:
        """When the canary first served `version` to the instance (None: never, as far as known)."""

    @abstractmethod
    def canary_served_instances(
        self, application: str, label: str, rollout_id: str, limit: int = 1000
    ) -> list[str]:
        """The instances the rollout's canary served (its cohort as it was), sorted, at most `limit`."""

    @abstractmethod
    def rollout_rejections(self, application: str, label: str, rollout_id: str) -> list[RolloutRejection]:
        """The cohort instances that rejected the rollout's canary, oldest first."""

    # Pins (`safety/pins.py`): one record per pinned environment. `pins_intact` tells a store
    # that lost them (Redis restarted or flushed without persistence) from one where the last pin
    # was removed: every write marks the store, and a store without the mark gets back what the
    # servers knew (`restore_pins`).

    @abstractmethod
    def put_pin(self, pin: PinRecord) -> None:
        """Pin an environment (replacing its earlier pin) and mark the pins intact."""

    @abstractmethod
    def remove_pin(self, application: str, profiles: str, label: str) -> PinRecord | None:
        """Unpin an environment and mark the pins intact; the pin removed, None when there was none."""

    @abstractmethod
    def pins(self) -> list[PinRecord]:
        """Every pin, by application, profiles and label."""

    def pins_intact(self) -> bool:
        """False when the store lost its pins since a server last wrote them (a Redis that
        restarted without persistence); a store on disk never does."""
        return True

    @abstractmethod
    def restore_pins(self, pins: Sequence[PinRecord]) -> None:
        """Put back pins a server knew into a store that lost them (a stored pin wins) and mark
        the pins intact, in one atomic step."""

    # Release approvals (`safety/approvals.py`): a row per (label, version, approver), the first
    # one kept. Not abstract, so a store of a test or an embedder without them still loads: it
    # then holds no approval, and every protected change waits (fails closed).

    def record_approval(self, record: ApprovalRecord) -> bool:
        """Store an approval unless one of the same (label, version, approver) is there; True when new."""
        raise NotImplementedError(f"{type(self).__name__} keeps no approvals")

    def approvals(self, limit: int = MAX_APPROVALS) -> list[ApprovalRecord]:
        """Every approval, the newest first, at most `limit`."""
        return []

    def close(self) -> None:
        """Release connections (nothing by default)."""
        return None


def served_in(reports: Sequence[InstanceReport]) -> dict[str, float]:
    """The versions a batch of reports was served, each with the latest time it was."""
    served: dict[str, float] = {}
    for report in reports:
        if report.served is not None and report.seen > served.get(report.served, float("-inf")):
            served[report.served] = report.seen
    return served
