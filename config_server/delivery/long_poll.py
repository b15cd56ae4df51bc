"""The long-poll loop, once, free of I/O: hold a request in the hub and say what happened.

Both the Flask view (`http/environment.py`) and the fast path (`http/fast_path.py`) wait the same
way: in the hub until the ETag moves, a rollout of the application moves (decide the route
again), the caller's token loses its right to read, or the wait ends. This module is that loop;
it knows no Flask, no WSGI and writes no bytes (the only bytes are the hub's own direct answer,
which `DirectAnswer.finish` completes). It returns an `Outcome`, and each adapter only writes it:
`Changed` (200 with the new answer), `NotModified` (304), `AnsweredByHub` (the hub wrote the
answer), `Revoked` (answer as a fresh request: 401/403) or `HandedOver` (the fast path lets Flask
answer the rest of the wait). Modelled on Werkzeug's `sansio/` and etcd's watch core apart
from its transport.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from config_server.content.environment_answer import Headers, Route
from config_server.delivery.direct_answer import DirectAnswer
from config_server.delivery.watch_hub import MAX_WAIT_SECONDS, REROUTED, REVOKED, WatchHub
from config_server.errors import InvalidName
from config_server.names import EnvironmentRequest
from config_server.safety.environment_cache import ResolvedEnvironment


def wait_seconds(raw: str) -> float:
    """The seconds of a `?wait=` value, at most the hub's cap; InvalidName (400) when malformed."""
    try:
        seconds = float(raw)
    except ValueError:
        raise InvalidName(f"wait must be a number of seconds, not {raw!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidName("wait must be a non-negative number of seconds")
    return min(seconds, MAX_WAIT_SECONDS)


@dataclass(frozen=True)
class KnownEtags:
    """The ETags a long poll's `If-None-Match` holds (`everything` for `*`)."""

    etags: frozenset[str]
    everything: bool = False

    def contains(self, etag: str) -> bool:
        """True when the caller already holds `etag`."""
        return self.everything or etag in self.etags


@dataclass(frozen=True)
class Changed:
    """The environment moved: answer 200 with it and its extra headers."""

    resolved: ResolvedEnvironment
    headers: Headers


@dataclass(frozen=True)
class NotModified:
    """The wait ended with nothing new: answer 304 with these extra headers (the latest route's)."""

    headers: Headers


@dataclass(frozen=True)
class AnsweredByHub:
    """The hub wrote the answer (the settings at `version`) on the connection: send nothing more.
    `seen` is the new environment the wait returned, if any (for the instance report)."""

    version: str | None
    seen: ResolvedEnvironment | None


@dataclass(frozen=True)
class Revoked:
    """The caller's token no longer lets it read: answer as a fresh request would (401 or 403);
    should it read again meanwhile, a 304 with `headers`."""

    headers: Headers


@dataclass(frozen=True)
class HandedOver:
    """The rollout moved the caller where this adapter does not answer (the fast path, into a
    cohort): another answers it, with the wait left until `deadline` (`time.monotonic`)."""

    deadline: float


Outcome = Changed | NotModified | AnsweredByHub | Revoked | HandedOver


def hold(
    hub: WatchHub,
    request: EnvironmentRequest,
    known: KnownEtags,
    deadline: float,
    route: Route,
    since: int,
    headers: Headers,
    decide_route: Callable[[], Route | None],
    direct: DirectAnswer | None = None,
    allowed: Callable[[], bool] | None = None,
) -> Outcome:
    """Wait in the hub until the answer of `route` moves past `known` or `deadline`, and say what
    happened. `since` is `hub.reroutes` read before `route` was decided; `headers` the extra
    headers of the answer the caller holds (a 304 repeats them). When a rollout of the
    application moves, `decide_route` decides again (None: the adapter does not answer that route,
    `HandedOver`); a new answer then goes out at once. `direct` is the worker's offer of the
    connection to the hub, `allowed` the hub's check that the token still reads.

    Exceptions (the hub failed) propagate: the adapter answers them."""
    while True:
        waited = hub.wait(request, known.etags, deadline - time.monotonic(), direct, route, since, allowed)
        if waited is REVOKED:
            if direct is not None and direct.finish():  # answered before the token was revoked
                return AnsweredByHub(direct.version, None)
            return Revoked(headers)
        if waited is not REROUTED:
            break
        since = hub.reroutes(request.application)
        decided = decide_route()
        if decided is None:
            if direct is not None and direct.finish():
                return AnsweredByHub(direct.version, None)
            return HandedOver(deadline)
        route = decided
        found = hub.current(request, route)
        if found is not None:
            headers = found[1]
            if not known.contains(found[0].etag):
                waited = found
                break
        if deadline - time.monotonic() <= 0 or (direct is not None and direct.answered):
            waited = None
            break
    seen = waited[0] if isinstance(waited, tuple) else None
    if direct is not None and direct.finish():
        return AnsweredByHub(direct.version, seen)  # the version sent, not the one parked
    if isinstance(waited, tuple):
        return Changed(*waited)
    return NotModified(headers)
