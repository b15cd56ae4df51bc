"""What `/livez` and `/readyz` decide, from plain facts: is this worker alive, may it take traffic.

Kept apart from the HTTP layer (which gathers the facts and writes the JSON) so that the rules are
read in one place:

- **Alive** (`/livez`): the worker answered, and its event loop last ran the heartbeat's callback
  less than `BLOCKED_AFTER_SECONDS` ago (`runtime/heartbeat.py`). A worker whose loop is blocked
  answers nothing at all, so the probe's own timeout is what catches a blocked worker; the age
  catches a heartbeat that has stopped seeing its loop. Nothing else (the repository, Redis,
  the parked-poll caps) makes a worker not alive: restarting it would not mend them.
- **Ready** (`/readyz`): the repository is readable (the default label resolves) and, for a
  remote repository, its last successful fetch is at most `max_intervals` refresh intervals old,
  so a replica cut off from its git host leaves the rotation instead of serving old settings
  forever. With Redis, the cluster link is reported (`UP` or `DEGRADED`) and never fails
  readiness: a replica without Redis still serves, and hears of changes on the interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Seconds without a turn of the event loop after which a worker is not alive (the heartbeat's
#: own threshold: `runtime/heartbeat.py` logs the block and stops beating then).
LOOP_STALE_SECONDS = 3.0


@dataclass(frozen=True)
class ProbeAnswer:
    """A probe's verdict and the JSON body that explains it (no secret, no repository URL)."""

    ok: bool
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> int:
        """200 when the probe passes, 503 when it does not."""
        return 200 if self.ok else 503


def liveness(worker: int, loop_turned_ago: float | None) -> ProbeAnswer:
    """`/livez`: alive unless the heartbeat saw no turn of the event loop for `LOOP_STALE_SECONDS`.

    `loop_turned_ago` is None where no heartbeat runs (the threaded worker, tests' servers): the
    worker answered, which is all there is to know."""
    body: dict[str, Any] = {"worker": worker}
    ok = True
    if loop_turned_ago is not None:
        body["loopTurnedSecondsAgo"] = round(loop_turned_ago, 3)
        ok = loop_turned_ago < LOOP_STALE_SECONDS
    return ProbeAnswer(ok, {"status": "UP" if ok else "DOWN", **body})


@dataclass(frozen=True)
class ReadinessFacts:
    """What `/readyz` is decided on, gathered by the HTTP layer at the time of the probe."""

    #: The default label resolved (the repository can be read), and why not when it did not.
    repository_readable: bool
    repository_error: str | None
    #: Unix time of the last successful fetch of a remote repository; None for a local one (its
    #: commits are seen by watching it, there is nothing to fetch) or one never fetched.
    last_fetch: float | None
    remote: bool
    refresh_interval: float
    max_intervals: int
    now: float
    #: The cluster link's status ("UP" or "DEGRADED") with --redis, else None.
    cluster: str | None = None


def readiness(facts: ReadinessFacts) -> ProbeAnswer:
    """`/readyz`: ready when the repository is readable and a remote's last fetch is recent enough."""
    checks: dict[str, Any] = {
        "repository": {"status": "UP" if facts.repository_readable else "DOWN"},
    }
    if facts.repository_error is not None:
        checks["repository"]["error"] = facts.repository_error
    ok = facts.repository_readable
    if facts.remote:
        fetch: dict[str, Any] = {"status": "UP"}
        limit = facts.refresh_interval * facts.max_intervals
        if facts.last_fetch is None:
            fetch = {"status": "DOWN", "lastFetchSecondsAgo": None}
        else:
            fetch["lastFetchSecondsAgo"] = round(max(0.0, facts.now - facts.last_fetch), 1)
        if limit > 0:
            fetch["limitSeconds"] = limit
            if facts.last_fetch is not None and facts.now - facts.last_fetch > limit:
                fetch["status"] = "DOWN"
        elif facts.last_fetch is not None:
            fetch["limitSeconds"] = None  # --refresh-interval 0 or --ready-refresh-intervals 0
        checks["fetch"] = fetch
        ok = ok and fetch["status"] == "UP"
    body: dict[str, Any] = {"status": "UP" if ok else "DOWN", "checks": checks}
    if facts.cluster is not None:
        body["cluster"] = facts.cluster  # reported, never a reason to leave the rotation
    return ProbeAnswer(ok, body)
