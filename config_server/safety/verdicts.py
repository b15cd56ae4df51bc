"""The one memory of broken versions: which (version, environment) is broken and why, and what
a broken head serves instead (held back), remembered across requests, workers and restarts.

Every question "is this version broken for this environment?" is asked here (`VerdictStore`):
the service before it resolves and when a check finds problems (`known_broken`,
`remember_broken`), the walk back to the newest good version (`last_good.py`), `/health`, the
console and the metrics (`held_rows`). Commits never change, so a verdict "commit C is broken
for orders/prod, because ..." is a pure cache: it is kept in memory and in a small SQLite file
under `--data-dir` (`verdicts.sqlite3`), shared by the workers of one machine and surviving a
restart. Verdicts are keyed by a context (backend, search paths, keyring fingerprint, rules
version), so a server with another key or other rules re-checks instead of trusting old verdicts.
Verdicts about names the repository does not hold are kept in memory only (`known_names.py`).

Requests touch memory only: verdicts are loaded at start, written and synced with the other
workers by a writer on a real OS thread (`concurrency.py`; WAL, `synchronous=NORMAL`,
checkpointed and truncated every `CHECKPOINT_INTERVAL_S`); a failure degrades to memory only:
the store can make the server faster, never unavailable. In cluster mode (`--redis`) each
machine keeps its own verdicts, by design: docs/deployment.md says why.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import sqlite3
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config_server.concurrency import RealWakeup, real_lock, real_thread_primitives
from config_server.errors import BrokenEnvironment, Problem
from config_server.safety.validation import broken

log = logging.getLogger(__name__)

#: Bumped when what counts as broken changes, so old verdicts are not trusted.
RULES_VERSION = "1"
#: Entries kept in memory per table before it is cleared.
_MEMORY_LIMIT = 20_000
#: Longest the writer thread waits for another process's write (never a request: it only
#: touches memory).
_BUSY_TIMEOUT_S = 2.0
#: How often the writer thread picks up verdicts written by other workers.
SYNC_INTERVAL_S = 1.0
#: How often the writer thread checkpoints the WAL into the database and truncates it (SQLite's
#: own checkpoint waits for 1,000 pages and never shrinks the file).
CHECKPOINT_INTERVAL_S = 60.0
#: Writes waiting for the writer thread beyond this are dropped (the oldest first): a verdict
#: is a cache, found again if lost.
_MAX_PENDING_WRITES = 50_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS broken (
    context TEXT, version TEXT, environment TEXT, problems TEXT,
    PRIMARY KEY (context, version, environment));
CREATE TABLE IF NOT EXISTS held (
    context TEXT, head TEXT, environment TEXT, label TEXT, good TEXT, problems TEXT, seen REAL,
    PRIMARY KEY (context, head, environment));
"""


def verdict_context(*parts: str) -> str:
    """A short digest of everything a verdict depends on besides the commit and the environment."""
    return hashlib.sha256("\0".join((RULES_VERSION, *parts)).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class HeldBack:
    """What to serve for a broken head: the newest good version (None: there is none) and why."""

    head: str
    good: str | None
    problems: tuple[Problem, ...]


class VerdictStore:
    """Broken verdicts and held-back answers: in memory for requests, persisted in the background.

    The request path only touches memory (dict lookups, a deque append): verdicts of this context
    are loaded at start (the newest `_MEMORY_LIMIT`), every write is handed to a writer on a real
    OS thread (`concurrency.real_thread_primitives`, so SQLite never blocks a gevent worker), and
    that thread also picks up, every `SYNC_INTERVAL_S`, the verdicts other workers wrote. A miss
    in memory is only a cost (the environment is checked again), never a wrong answer: verdicts
    are a pure cache of what commits never change. `persist=False` keeps a verdict in memory only
    (names the repository does not hold, `known_names.py`).
    """

    def __init__(
        self, path: str | Path | None, context: str = "", checkpoint_interval: float = CHECKPOINT_INTERVAL_S
    ) -> None:
        self.context = context
        self._checkpoint_interval = checkpoint_interval
        self._broken: dict[tuple[str, str], tuple[Problem, ...]] = {}
        #: (head, environment) -> held row; insertion order is age order (the oldest is evicted).
        self._held: OrderedDict[tuple[str, str], _HeldRow] = OrderedDict()
        self._pending: deque[tuple[str, tuple[Any, ...]]] = deque(maxlen=_MAX_PENDING_WRITES)
        self._rowids = {"broken": 0, "held": 0}
        self._closed = False
        self._db: sqlite3.Connection | None = None
        start_new_thread, self._sleep = real_thread_primitives()
        self._db_lock = real_lock()  # the writer thread and close() share the connection
        self._wake = RealWakeup()  # a write wakes the writer at once
        self._idle = True
        if path is None:
            return
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(path), timeout=_BUSY_TIMEOUT_S, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, no fsync per write
            db.executescript(_SCHEMA)
            self._db = db
            self._sync()  # this context's verdicts, newest first, into memory before serving
        except (sqlite3.Error, OSError) as exc:
            log.warning("verdict store %s unavailable (%s): verdicts kept in memory only", path, exc)
            return
        _OPEN_STORES.add(self)
        start_new_thread(self._run, ())

    def known_broken(self, version: str, environment: str) -> BrokenEnvironment | None:
        """The error of a version known to be broken for the environment, else None (memory only):
        what the service raises for it, as when it was found."""
        problems = self._broken.get((version, environment))
        return None if problems is None else broken(problems)

    def remember_broken(
        self, version: str, environment: str, error: BrokenEnvironment, persist: bool = True
    ) -> None:
        """Record a version found broken for the environment (persisted only when `persist`)."""
        self.set_broken(version, environment, error.problems, persist)

    def broken(self, version: str, environment: str) -> tuple[Problem, ...] | None:
        """The problems of a version known to be broken for the environment, else None (memory only)."""
        return self._broken.get((version, environment))

    def set_broken(
        self, version: str, environment: str, problems: Sequence[Problem], persist: bool = True
    ) -> None:
        """Remember that the version is broken for the environment (in memory only unless `persist`)."""
        self._remember_broken((version, environment), tuple(problems))
        if persist:
            self._write(
                "INSERT OR REPLACE INTO broken VALUES (?, ?, ?, ?)",
                (self.context, version, environment, _dump(problems)),
            )

    def held(self, head: str, environment: str) -> HeldBack | None:
        """The remembered answer for a broken head, else None (memory only)."""
        row = self._held.get((head, environment))
        return None if row is None else row.held

    def set_held(self, environment: str, label: str, held: HeldBack, persist: bool = True) -> None:
        """Remember what a broken head serves, and on which label it was seen (for `/health`);
        in memory only unless `persist`."""
        seen = time.time()
        self._remember_held((held.head, environment), _HeldRow(environment, label, held, seen, persist))
        if persist:
            self._write(
                "INSERT OR REPLACE INTO held VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.context, held.head, environment, label, held.good, _dump(held.problems), seen),
            )

    def held_rows(self, limit: int = 200) -> list[dict[str, Any]]:
        """Held-back answers given (by any worker, as far as synced), newest first: environment,
        label, head, good, problems. Verdicts kept in memory only (unknown names) are not listed."""
        rows = sorted((r for r in list(self._held.values()) if r.persisted), key=lambda r: -r.seen)
        return [
            {
                "environment": r.environment,
                "label": r.label,
                "head": r.held.head,
                "good": r.held.good,
                "problems": r.held.problems,
            }
            for r in rows[:limit]
        ]

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait (up to `timeout`) until every write handed over so far is in the file; True if so."""
        if self._db is None:
            return True
        deadline = time.monotonic() + timeout
        while self._pending or not self._idle:
            if time.monotonic() > deadline:
                return False
            self._sleep(0.005)
        return True

    def close(self) -> None:
        """Write what is still pending, stop the writer and close the connection."""
        if self._closed:
            return
        self._closed = True
        _OPEN_STORES.discard(self)
        self._wake.signal()
        if self._db_lock.acquire(timeout=_BUSY_TIMEOUT_S * 2):
            try:
                self._write_pending()
                if self._db is not None:
                    self._db.close()
                    self._db = None
            finally:
                self._db_lock.release()

    def _remember_broken(self, key: tuple[str, str], problems: tuple[Problem, ...]) -> None:
        if len(self._broken) >= _MEMORY_LIMIT:
            self._broken.clear()
        self._broken[key] = problems

    def _remember_held(self, key: tuple[str, str], row: _HeldRow) -> None:
        held = self._held
        held.pop(key, None)
        while len(held) >= _MEMORY_LIMIT:
            try:
                held.popitem(last=False)
            except KeyError:
                break
        held[key] = row

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        """Hand a write to the writer thread: an append and a lock release, nothing that waits."""
        if self._db is None or self._closed:
            return
        self._pending.append((sql, args))
        self._wake.signal()

    def _run(self) -> None:
        """The writer thread: write what is handed over, pick up other workers' verdicts."""
        last_sync = last_checkpoint = time.monotonic()
        while not self._closed:
            self._wake.wait(SYNC_INTERVAL_S)
            if self._closed:
                return
            if not self._db_lock.acquire(timeout=_BUSY_TIMEOUT_S):
                continue
            self._idle = False
            try:
                if self._db is None:
                    return
                self._write_pending()
                if time.monotonic() - last_sync >= SYNC_INTERVAL_S:
                    last_sync = time.monotonic()
                    self._sync()
                if not self._pending and time.monotonic() - last_checkpoint >= self._checkpoint_interval:
                    last_checkpoint = time.monotonic()
                    self._checkpoint()
            except Exception:  # noqa: BLE001 - the writer must outlive a locked or full disk
                log.exception("verdict store: background work failed")
            finally:
                self._idle = not self._pending
                self._db_lock.release()
            if self._pending:  # the file was locked: try again shortly, not in a tight loop
                self._sleep(0.05)

    def _write_pending(self) -> None:
        """Write every pending row in one transaction; on failure keep them for the next try."""
        if self._db is None or not self._pending:
            return
        batch = []
        while self._pending:
            try:
                batch.append(self._pending.popleft())
            except IndexError:
                break
        try:
            with self._db:
                for sql, args in batch:
                    self._db.execute(sql, args)
        except sqlite3.Error as exc:
            log.warning("verdict store write failed (%s): retrying", exc)
            self._pending.extendleft(reversed(batch))

    def _checkpoint(self) -> None:
        """Move the WAL into the database and truncate it (a busy file: the next interval retries)."""
        if self._db is None:
            return
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("verdict store checkpoint failed: %s", exc)

    def _sync(self) -> None:
        """Load verdicts of this context written since the last sync (by any worker) into memory."""
        if self._db is None:
            return
        try:
            broken = self._db.execute(
                "SELECT rowid, version, environment, problems FROM broken WHERE context=? AND rowid>? "
                "ORDER BY rowid DESC LIMIT ?",
                (self.context, self._rowids["broken"], _MEMORY_LIMIT),
            ).fetchall()
            held = self._db.execute(
                "SELECT rowid, head, environment, label, good, problems, seen FROM held "
                "WHERE context=? AND rowid>? ORDER BY rowid DESC LIMIT ?",
                (self.context, self._rowids["held"], _MEMORY_LIMIT),
            ).fetchall()
        except sqlite3.Error as exc:
            log.warning("verdict store read failed: %s", exc)
            return
        for rowid, version, environment, problems in reversed(broken):
            self._remember_broken((version, environment), _problems(problems))
            self._rowids["broken"] = max(self._rowids["broken"], rowid)
        for rowid, head, environment, label, good, problems, seen in reversed(held):
            row = _HeldRow(environment, label, HeldBack(head, good, _problems(problems)), seen or 0.0, True)
            self._remember_held((head, environment), row)
            self._rowids["held"] = max(self._rowids["held"], rowid)


@dataclass(frozen=True)
class _HeldRow:
    """A held-back answer as remembered: for which environment and label, when, and whether stored."""

    environment: str
    label: str | None
    held: HeldBack
    seen: float
    persisted: bool


#: Stores with a writer thread; what they still hold is written when the process exits.
_OPEN_STORES: weakref.WeakSet[VerdictStore] = weakref.WeakSet()


@atexit.register
def _write_on_exit() -> None:
    for store in list(_OPEN_STORES):
        try:
            store.close()
        except Exception:  # noqa: BLE001 - exiting: never raise
            log.exception("verdict store: could not write on exit")


def _dump(problems: Sequence[Problem]) -> str:
    return json.dumps([p.to_json() for p in problems])


def _problems(text: str) -> tuple[Problem, ...]:
    try:
        return tuple(Problem.from_json(item) for item in json.loads(text))
    except (ValueError, TypeError, AttributeError):
        return ()
