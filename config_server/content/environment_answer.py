"""The one place an Environment answer (status, headers, body) is built.

Every path that answers an Environment request calls `environment_answer`: the Flask view, the
fast path (`http/fast_path.py`) and the hub's direct long-poll answers (`delivery/direct_answer.py`), so
the three cannot drift apart; a test compares their bytes. It is plain data, free of Flask and
of sockets, and imports nothing of the server (the gunicorn master may load it). Headers a later
feature adds to an answer (for example a held-back version) go in through `extra_headers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

Headers = tuple[tuple[str, str], ...]


class ResolvedEnvironment(Protocol):
    """What an answer needs of a resolved environment (`safety.environment_cache.ResolvedEnvironment`)."""

    @property
    def etag(self) -> str:
        """The content ETag: a hash of the resolved settings."""

    def body(self, label: str | None) -> bytes:
        """The Environment JSON naming `label`."""


#: Reason phrases as Werkzeug writes them (Flask's answers), so every path sends the same status line.
_REASONS = {200: "OK", 304: "NOT MODIFIED"}

#: Names the label's newest commit when it is broken for the environment and an older one is served.
HELD_BACK_HEADER = "X-Config-Held-Back"


#: Why the commit of `X-Config-Held-Back` is held back when it is not broken: `awaiting approval`
#: (release approvals). Absent for a broken commit, as before approvals existed.
HOLD_REASON_HEADER = "X-Config-Held-Back-Reason"


def held_back_headers(held_back: str | None, reason: str | None = None) -> Headers:
    """`X-Config-Held-Back: <commit>` for an answer that holds a commit back (and
    `X-Config-Held-Back-Reason` when it is held for another reason than being broken), else nothing."""
    if not held_back:
        return ()
    return ((HELD_BACK_HEADER, held_back),) + (((HOLD_REASON_HEADER, reason),) if reason else ())


#: Names the commit an environment is pinned to and who pinned it (`safety/pins.py`).
PINNED_HEADER = "X-Config-Pinned"


def pinned_headers(pin: str | None) -> Headers:
    """`X-Config-Pinned: <commit>; by=<client>` for an answer of a pinned environment, else nothing."""
    return ((PINNED_HEADER, pin),) if pin else ()


#: Names each application of the request that no file of the repository names (`known_names.py`),
#: comma-separated as in the path: the answer holds only the shared `application*` settings for it.
UNKNOWN_APPLICATION_HEADER = "X-Config-Unknown-Application"
#: `<unknown>=<closest known application>` for each unknown name that has a close one.
CLOSEST_APPLICATION_HEADER = "X-Config-Closest-Application"


def unknown_headers(unknown: Sequence[tuple[str, str | None]]) -> Headers:
    """`X-Config-Unknown-Application: ordres` (and `X-Config-Closest-Application: ordres=orders`)
    for an answer to application names the repository does not hold, else nothing."""
    if not unknown:
        return ()
    headers: Headers = ((UNKNOWN_APPLICATION_HEADER, ",".join(name for name, _ in unknown)),)
    closest = ",".join(f"{name}={near}" for name, near in unknown if near)
    return headers + (((CLOSEST_APPLICATION_HEADER, closest),) if closest else ())


@dataclass(frozen=True)
class Route:
    """Where an Environment answer comes from: the label asked for (`source` None), or a rollout's
    canary label with the headers its answer carries (`X-Config-Rollout`). Hashable: the long-poll
    hub keeps the waiters of each route apart."""

    source: str | None = None
    headers: Headers = ()


#: The label asked for, with no extra headers: every answer outside a rollout's cohort.
BASE_ROUTE = Route()


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as data: status code, headers in order, body."""

    status: int
    headers: Headers
    body: bytes = b""

    @property
    def status_line(self) -> str:
        """The status as WSGI and HTTP/1.1 spell it, such as `200 OK`."""
        return f"{self.status} {_REASONS.get(self.status, '')}".rstrip()


def environment_answer(
    resolved: ResolvedEnvironment | None,
    label: str | None,
    *,
    etag: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> Answer:
    """200 with the Environment JSON of `resolved` for a request that asked for `label`; or, when
    `resolved` is None, 304 for `etag` (the version the caller holds is current).

    The ETag is the unquoted content ETag; it goes out quoted, with `Cache-Control: no-cache`.
    """
    if resolved is None:
        return Answer(304, ((("ETag", f'"{etag or ""}"'), ("Cache-Control", "no-cache"), *extra_headers)))
    body = resolved.body(label)
    headers = (
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("ETag", f'"{resolved.etag}"'),
        ("Cache-Control", "no-cache"),
        *extra_headers,
    )
    return Answer(200, headers, body)
