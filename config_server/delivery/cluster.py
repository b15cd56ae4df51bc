"""Replicas that agree through Redis: change hints, and which replicas are alive.

Each replica keeps its own mirror of the remote repository. When one of them learns of new
commits (a `POST /monitor` webhook, or its own interval fetch), it appends a *hint* (ref, commit
id, applications) to a Redis stream. Every worker of every replica reads that stream; a replica
whose mirror lacks the commit fetches it once (its workers share one mirror and take turns on a
non-blocking file lock, and a worker finding the commit already there does not fetch), then every
worker wakes its own long-poll watchers through the change detector.

A hint is only a hint: interval fetches go on as without Redis, so a lost hint delays a change by
at most one refresh interval and never loses it. When Redis is unreachable the replica keeps
serving from its mirror, logs it loudly, reports `"cluster": "DEGRADED"` in `/health` (which stays
UP: the replica can serve) and `config_server_cluster_redis_up 0` in `/metrics`, keeps unsent
hints, and reconnects with back-off by itself. (The instance inventory's Redis store is
`state/redis.py`.)

Why a stream (XADD/XREAD) rather than pub/sub: a reader resumes from the last entry id it saw, so
a worker whose connection dropped for a moment still gets the hints published meanwhile; pub/sub
drops them. No consumer groups: every worker must see every hint, and groups would leave
per-replica state in Redis to clean up after replicas that are gone. The stream is capped
(`MAXLEN ~ 1000`), so Redis needs no persistence and little memory.

Everything talks to Redis with timeouts (connect, read, blocking read), on the gevent worker over
monkey-patched sockets, so no call blocks a worker.
"""

from __future__ import annotations

import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config_server.backends.base import Backend
from config_server.backends.mirror import try_file_lock
from config_server.backends.repo_spec import redact
from config_server.delivery.change_detector import ChangeDetector

if TYPE_CHECKING:
    from config_server.observability.metrics import Metrics

log = logging.getLogger(__name__)

#: Redis keys (use another database number, or another Redis, per cluster).
STREAM_KEY = "config-server:hints"
REFS_KEY = "config-server:refs"
REPLICAS_KEY = "config-server:replicas"
#: Hints kept in the stream (approximately): enough for a reconnecting worker to catch up.
STREAM_LENGTH = 1000
#: How long one blocking read waits for a hint; the socket timeout is longer.
BLOCK_SECONDS = 5.0
#: A replica not seen for this long is not counted as alive.
REPLICA_TTL = 30.0
#: The longest a worker waits for its replica's fetch of a hinted commit.
FETCH_DEADLINE = 60.0

_REF = re.compile(r"refs/(heads|tags)/[A-Za-z0-9._/@+-]{1,200}")
_COMMIT = re.compile(r"([0-9a-f]{40}|[0-9a-f]{64})?")
_APPS = re.compile(r"[A-Za-z0-9._,*-]{0,2000}")

# Publish a hint only when the ref's commit differs from the one last published: the workers and
# replicas that notice the same fetch result send one hint between them, not one each.
_PUBLISH = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[2] then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
  'ref', ARGV[1], 'commit', ARGV[2], 'apps', ARGV[3], 'origin', ARGV[4], 'time', ARGV[5])
return 1
"""


@dataclass(frozen=True)
class Hint:
    """A ref that moved: its full name, the commit it points to now ('' when deleted), and which
    applications changed (`*`: all)."""

    ref: str
    commit: str
    applications: str = "*"
    origin: str = ""

    @classmethod
    def parse(cls, fields: dict[str, str]) -> Hint | None:
        """A hint from stream fields, or None when they are malformed (never trusted blindly)."""
        ref, commit = fields.get("ref", ""), fields.get("commit", "")
        apps, origin = fields.get("apps", "*") or "*", fields.get("origin", "")[:200]
        if not _REF.fullmatch(ref) or ".." in ref or not _COMMIT.fullmatch(commit):
            return None
        if not _APPS.fullmatch(apps):
            return None
        return cls(ref, commit, apps, origin)

    def application_list(self) -> list[str] | None:
        """The applications to re-check, None for all."""
        names = [a for a in self.applications.split(",") if a]
        return None if not names or "*" in names else names


def replica_id(port: int) -> str:
    """This replica's name in the cluster: host name and port (shared by its workers)."""
    return f"{socket.gethostname()}:{port}"


class ClusterLink:
    """One worker's link to the cluster: publishes this replica's hints, follows the others'."""

    def __init__(
        self,
        url: str,
        backend: Backend,
        detector: ChangeDetector,
        replica: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics  # with enable_cluster() called
        self.shown_url = redact(url)
        self.backend = backend
        self.detector = detector
        self.replica = replica
        common = {
            "socket_connect_timeout": 2.0,
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": True,
            "health_check_interval": 0,
        }
        self._reader = redis.Redis.from_url(url, socket_timeout=BLOCK_SECONDS + 5.0, **common)
        self._writer = redis.Redis.from_url(url, socket_timeout=3.0, **common)
        self._publish = self._writer.register_script(_PUBLISH)
        self._outbox: queue.Queue[Hint | None] = queue.Queue()
        self._pending: dict[str, Hint] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._known_refs: dict[str, str] | None = None
        self._refs_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self.connected = False
        self._joined = False
        self._told_down = False
        self.down_since: float | None = time.time()
        self.last_error: str | None = "not connected yet"
        self.replicas_seen = 0
        self.hints_received = 0
        self.hints_published = 0
        self.fetches = 0
        remote = getattr(backend, "remote", False)
        mirror = getattr(backend, "mirror", None)
        self._fetch_lock_path = Path(f"{mirror}.hint-fetch.lock") if remote and mirror else None

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> ClusterLink:
        """Remember the refs as they are, hook into the detector, start reading and publishing."""
        self._known_refs = self._read_refs()
        self.detector.refresh_listeners.append(self.refreshed)
        for target, name in ((self._listen, "cluster-listen"), (self._send, "cluster-publish")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop both threads and close the connections."""
        self._stop.set()
        self._outbox.put(None)
        for client in (self._reader, self._writer):  # ends a blocking read at once
            try:
                client.connection_pool.disconnect()
            except (redis.RedisError, OSError):
                pass
        for thread in self._threads:
            thread.join(timeout=BLOCK_SECONDS + 6)

    def health(self) -> dict[str, Any]:
        """UP while Redis answers, DEGRADED while it does not (the replica still serves)."""
        with self._state_lock:
            details: dict[str, Any] = {
                "status": "UP" if self.connected else "DEGRADED",
                "redis": self.shown_url,
                "replica": self.replica,
                "replicas": self.replicas_seen,
                "hintsReceived": self.hints_received,
                "hintsPublished": self.hints_published,
                "fetches": self.fetches,
            }
            if not self.connected:
                details["downSince"] = self.down_since
                details["lastError"] = self.last_error
                details["pendingHints"] = len(self._pending)
        return details

    # -- publishing -------------------------------------------------------------------------

    def refreshed(self, applications: Iterable[str] | None = None) -> None:
        """After a fetch: publish a hint for each ref that moved since this worker last looked."""
        refs = self._read_refs()
        if refs is None:
            return
        with self._refs_lock:
            before, self._known_refs = self._known_refs or {}, refs
        apps = ",".join(applications) if applications is not None else "*"
        for ref in sorted(set(before) | set(refs)):
            if before.get(ref) != refs.get(ref) and _REF.fullmatch(ref):
                self._outbox.put(Hint(ref, refs.get(ref, ""), apps or "*", self.replica))

    def _send(self) -> None:
        """Publish queued hints; keep them (the newest per ref) while Redis is unreachable."""
        delays = _backoff()
        while not self._stop.is_set():
            try:
                hint = self._outbox.get(timeout=1.0)
            except queue.Empty:
                hint = None
            if self._stop.is_set():
                return
            if hint is not None:
                self._pending[hint.ref] = hint
            if not self._pending:
                continue
            try:
                for ref in list(self._pending):
                    item = self._pending[ref]
                    published = self._publish(
                        keys=[REFS_KEY, STREAM_KEY],
                        args=[
                            item.ref,
                            item.commit,
                            item.applications,
                            item.origin,
                            time.time(),
                            STREAM_LENGTH,
                        ],
                    )
                    del self._pending[ref]
                    if published:
                        with self._state_lock:
                            self.hints_published += 1
                        self._count("published")
                        log.info("cluster: published %s -> %s", item.ref, item.commit[:12] or "(deleted)")
                delays = _backoff()
            except Exception as exc:  # noqa: BLE001 - the publisher must outlive anything
                if self._stop.is_set():
                    return
                if isinstance(exc, (redis.RedisError, OSError)):
                    self._went_down(exc)
                else:
                    log.exception("cluster: publishing a hint failed")
                self._stop.wait(next(delays))

    # -- following --------------------------------------------------------------------------

    def _listen(self) -> None:
        """Read hints from the stream, resuming after the last one seen; reconnect with back-off."""
        delays = _backoff()
        last_id: str | None = None
        next_beat = 0.0
        while not self._stop.is_set():
            try:
                if last_id is None or not self.connected:
                    last_id = self._resume_from(last_id)
                if time.monotonic() >= next_beat:
                    self._heartbeat()
                    next_beat = time.monotonic() + BLOCK_SECONDS
                self._came_up()
                answer = cast(
                    list[tuple[str, list[tuple[str, dict[str, str]]]]],
                    self._reader.xread({STREAM_KEY: last_id}, count=100, block=int(BLOCK_SECONDS * 1000)),
                )
                delays = _backoff()
                for _stream, entries in answer or []:
                    for entry_id, fields in entries:
                        last_id = entry_id
                        self._follow(fields)
            except Exception as exc:  # noqa: BLE001 - the listener must outlive anything
                if self._stop.is_set():
                    return  # closing the connection ended the read (stop)
                if isinstance(exc, (redis.RedisError, OSError)):
                    self._went_down(exc)
                else:
                    log.exception("cluster: reading hints failed")
                self._stop.wait(next(delays))

    def _resume_from(self, last_id: str | None) -> str:
        """Where to read on (re)connection: after the last hint seen, unless the stream was made
        anew meanwhile (Redis restarted without persistence), then from its start."""
        newest = cast(list[tuple[str, dict[str, str]]], self._reader.xrevrange(STREAM_KEY, count=1))
        newest_id = newest[0][0] if newest else "0-0"
        if last_id is None:
            return newest_id  # joining: only hints from now on
        if _stream_id(newest_id) < _stream_id(last_id):
            return "0-0"
        return last_id

    def _heartbeat(self) -> None:
        now = time.time()
        pipe = self._reader.pipeline(transaction=False)
        pipe.zadd(REPLICAS_KEY, {self.replica: now})
        pipe.zremrangebyscore(REPLICAS_KEY, 0, now - REPLICA_TTL)
        pipe.zcard(REPLICAS_KEY)
        count = pipe.execute()[-1]
        with self._state_lock:
            self.replicas_seen = int(count)

    def _follow(self, fields: dict[str, str]) -> None:
        """Make sure this replica's mirror has the hinted commit, then wake the watchers."""
        hint = Hint.parse(fields)
        if hint is None:
            log.warning("cluster: ignoring a malformed hint %r", {k: str(v)[:80] for k, v in fields.items()})
            return
        with self._state_lock:
            self.hints_received += 1
        self._count("received")
        log.debug("cluster: hint %s -> %s from %s", hint.ref, hint.commit[:12], hint.origin)
        triggered = False
        try:
            if not self._has(hint):
                triggered = self._fetch_once_per_replica(hint)
        except Exception:  # noqa: BLE001 - one bad fetch must not end the listener
            log.exception("cluster: fetching for %s failed", hint.ref)
        if not triggered:
            self.detector.trigger(hint.application_list())
        log.debug("cluster: watchers of %s asked to check", hint.applications)

    def _has(self, hint: Hint) -> bool:
        """True when this replica's mirror already has the ref where the hint says it is."""
        target = getattr(self.backend, "ref_target", None)
        if target is None:
            return True  # not a git backend: nothing to fetch
        try:
            return (target(hint.ref) or "") == hint.commit
        except Exception:  # noqa: BLE001 - not cloned yet: a fetch will tell
            return False

    def _fetch_once_per_replica(self, hint: Hint) -> bool:
        """Fetch unless another worker of this replica is doing it or has done it; True when this
        worker fetched and has already asked for its watchers to be checked."""
        if self._fetch_lock_path is None:
            return False  # a local repository: every replica reads it directly
        deadline = time.monotonic() + FETCH_DEADLINE
        while not self._stop.is_set() and time.monotonic() < deadline:
            with try_file_lock(self._fetch_lock_path) as mine:
                if mine:
                    if not self._has(hint):
                        started = time.monotonic()
                        if self.backend.refresh():
                            with self._state_lock:
                                self.fetches += 1
                            self._count("fetched")
                            log.info(
                                "cluster: fetched for hint %s -> %s from %s in %.2fs",
                                hint.ref,
                                hint.commit[:12] or "(deleted)",
                                hint.origin,
                                time.monotonic() - started,
                            )
                            # Watchers first; then tell the others of any other ref it brought.
                            self.detector.trigger(hint.application_list())
                            self.refreshed(hint.application_list())
                            return True
                    return False
            if self._has(hint):
                return False
            self._stop.wait(0.05)
        return False

    def _read_refs(self) -> dict[str, str] | None:
        reader = getattr(self.backend, "refs", None)
        if reader is None:
            return None
        try:
            return cast(dict[str, str], reader())
        except Exception as exc:  # noqa: BLE001 - a repository not cloned yet has no refs
            log.info("cluster: cannot read refs: %s", exc)
            return None

    # -- connection state -------------------------------------------------------------------

    def _count(self, event: str) -> None:
        if self.metrics is not None:
            self.metrics.count_cluster_event(event)

    def _went_down(self, exc: Exception) -> None:
        with self._state_lock:
            loud = not self._told_down  # once per outage, the one at start-up included
            self._told_down = True
            self.connected = False
            self.last_error = " ".join(str(exc).split())[:300]
            if loud:
                self.down_since = time.time()
        if self.metrics is not None:
            self.metrics.set_cluster_redis_up(False)
        if loud:
            log.error(
                "!!! cluster: Redis %s unreachable (%s): serving from the local mirror, fetching every "
                "refresh interval, hints held until it is back; reconnecting !!!",
                self.shown_url,
                self.last_error,
            )

    def _came_up(self) -> None:
        with self._state_lock:
            if self.connected:
                return
            self.connected = True
            since, self.down_since, self.last_error = self.down_since, None, None
            rejoined, self._joined, self._told_down = self._joined, True, False
        if self.metrics is not None:
            self.metrics.set_cluster_redis_up(True)
        if rejoined:
            log.warning(
                "cluster: rejoined through Redis %s as %s after %.1fs unreachable",
                self.shown_url,
                self.replica,
                time.time() - (since or time.time()),
            )
        else:
            log.info("cluster: joined through Redis %s as %s", self.shown_url, self.replica)


def _stream_id(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def _backoff(initial: float = 0.25, maximum: float = 5.0) -> Iterator[float]:
    """Reconnection delays: doubling from `initial` to `maximum`."""
    delay = initial
    while True:
        yield delay
        delay = min(delay * 2, maximum)
