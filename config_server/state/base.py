"""The state store interface: what the server remembers beyond one request, shared by every worker.

One small interface with an embedded default (`sqlite.py`, a file under `--data-dir` that all
gunicorn workers of one machine share) and, for a cluster, a Redis implementation with the same
methods. It holds instance reports (who asked for which environment, what it was served, what it
says it runs and what it refused), the versions it served, and the progress of rollouts (when
each started, whether it was halted and why, which cohort instances rejected its canary). It is
chosen once at start-up (`open_state_store`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class RolloutRejection:
    """A cohort instance that refused the canary version, and why."""

    instance_id: str
    version: str
    reason: str | None
    seen: float


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
    def rollout_rejections(self, application: str, label: str, rollout_id: str) -> list[RolloutRejection]:
        """The cohort instances that rejected the rollout's canary, oldest first."""

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


def call_cooperatively(store: StateStore, call: Callable[..., T], *args: Any) -> T:
    """Run `call(*args)` on `store` so that it never blocks the gevent loop: under the gevent
    worker a store that may block (SQLite, waiting for its lock at most its busy timeout) is called
    on a thread of gevent's pool, holding up the calling greenlet only; a cooperative store (Redis),
    or any store without gevent, is called directly."""
    pool = None if store.cooperative else _gevent_threadpool()
    return call(*args) if pool is None else pool.apply(call, args)


def _gevent_threadpool() -> Any:
    """gevent's thread pool when gevent has patched `threading` (the gevent worker), else None."""
    try:
        from gevent import get_hub, monkey
    except ImportError:  # pragma: no cover - gevent is a server dependency
        return None
    return get_hub().threadpool if monkey.is_module_patched("threading") else None
