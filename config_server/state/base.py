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
from dataclasses import dataclass
from typing import TypeVar

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


def read_time(value: object) -> float | None:
    """A stored time as a finite float; None when it is not one (what no server writes)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float) or not _TIME.fullmatch(str(value)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def rollout_record(
    application: str, label: str, rollout_id: str, started: object, halted_at: object, halt_reason: object
) -> RolloutRecord:
    """A rollout's record from its stored fields, whatever they hold: never raises. A `started` or
    `halted_at` that is not a time sets `problem`; an unreadable halt reads as halted."""
    problems = []
    start = read_time(started)
    if start is None:
        problems.append(f"started is {_shown(started)}")
    halt = None
    if halted_at is not None and halted_at != "":
        halt = read_time(halted_at)
        if halt is None:
            problems.append(f"halted_at is {_shown(halted_at)}")
            halt = start or 0.0
    reason = None if halt_reason is None or halt_reason == "" else str(halt_reason)[:1024]
    return RolloutRecord(
        application, label, rollout_id, start or 0.0, halt, reason, "; ".join(problems) or None
    )


def restored_fields(
    stored: Sequence[object] | None, started: float, halted_at: float | None, halt_reason: str | None
) -> tuple[float, float | None, str | None]:
    """(started, halted_at, halt_reason) that `restore_rollout` stores over `stored` (the stored
    fields, None when there is no record): what is readable there stays (the first start and the
    first halt win), what is missing or unreadable comes from the arguments; a halt that was
    stored but cannot be read stays a halt (a halt is final)."""
    old_started, old_halted, old_reason = stored if stored is not None else (None, None, None)
    start = read_time(old_started)
    start = started if start is None else start
    halt = read_time(old_halted)
    if halt is not None:
        return start, halt, None if old_reason in (None, "") else str(old_reason)
    if halted_at is None and old_halted not in (None, ""):
        return start, start, "halted: the halt stored for this rollout could not be read"
    return start, halted_at, halt_reason if halted_at is not None else None


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
    ) -> RolloutRecord:
        """Put back what a server knows of a rollout whose record is missing or unreadable (Redis
        restarted, flushed or failed over; a record changed by hand), or halt one: the stored
        record's readable fields stay, the rest come from these (`restored_fields`), in one atomic
        step; the record as stored now. A halt is added unless one is stored: a halt is final."""

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
