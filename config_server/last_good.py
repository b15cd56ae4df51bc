"""The newest good version of an environment on a label, remembered across requests and restarts.

When a branch or tag's newest commit is broken for an environment (`validation.py`), the service
serves the newest good commit before it: this module walks the label's first-parent history
back (at most `MAX_WALK` commits), remembering each verdict. Commits never change, so a verdict
"commit C is broken for orders/prod, because ..." is a pure cache: it is kept in memory and in a
small SQLite file under `--data-dir`, shared by the workers and surviving a restart. Verdicts are
keyed by a context (backend, search paths, keyring fingerprint, rules version), so a server with
another key or other rules re-checks instead of trusting old verdicts.

Every store operation has a deadline (SQLite's busy timeout) and a failure degrades to memory
only: the store can make the server faster, never unavailable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config_server.errors import BrokenEnvironment
from config_server.validation import Problem, broken

log = logging.getLogger(__name__)

#: How many commits back the walk looks for a good version before giving up (422).
MAX_WALK = 100
#: Bumped when what counts as broken changes, so old verdicts are not trusted.
RULES_VERSION = "1"
#: Entries kept in memory per table before it is cleared.
_MEMORY_LIMIT = 20_000
#: Longest a store operation may wait for another process's write.
_BUSY_TIMEOUT_S = 2.0

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
    """Broken verdicts and held-back answers, in memory and (with a path) in SQLite."""

    def __init__(self, path: str | Path | None, context: str = "") -> None:
        self.context = context
        self._lock = threading.Lock()
        self._broken: dict[tuple[str, str], tuple[Problem, ...]] = {}
        self._held: dict[tuple[str, str], HeldBack] = {}
        self._db: sqlite3.Connection | None = None
        if path is not None:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(str(path), timeout=_BUSY_TIMEOUT_S, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                self._db = db
            except (sqlite3.Error, OSError) as exc:
                log.warning("verdict store %s unavailable (%s): verdicts kept in memory only", path, exc)

    def broken(self, version: str, environment: str) -> tuple[Problem, ...] | None:
        """The problems of a version known to be broken for the environment, else None."""
        key = (version, environment)
        found = self._broken.get(key)
        if found is not None:
            return found
        row = self._query(
            "SELECT problems FROM broken WHERE context=? AND version=? AND environment=?",
            (self.context, version, environment),
        )
        if row is None:
            return None
        problems = _problems(row[0])
        self._remember(self._broken, key, problems)
        return problems

    def set_broken(
        self, version: str, environment: str, problems: Sequence[Problem], persist: bool = True
    ) -> None:
        """Remember that the version is broken for the environment (in memory only unless `persist`)."""
        self._remember(self._broken, (version, environment), tuple(problems))
        if persist:
            self._write(
                "INSERT OR REPLACE INTO broken VALUES (?, ?, ?, ?)",
                (self.context, version, environment, _dump(problems)),
            )

    def held(self, head: str, environment: str) -> HeldBack | None:
        """The remembered answer for a broken head, else None."""
        key = (head, environment)
        found = self._held.get(key)
        if found is not None:
            return found
        row = self._query(
            "SELECT good, problems FROM held WHERE context=? AND head=? AND environment=?",
            (self.context, head, environment),
        )
        if row is None:
            return None
        held = HeldBack(head, row[0], _problems(row[1]))
        self._remember(self._held, key, held)
        return held

    def set_held(self, environment: str, label: str, held: HeldBack, persist: bool = True) -> None:
        """Remember what a broken head serves, and on which label it was seen (for `/health`);
        in memory only unless `persist`."""
        self._remember(self._held, (held.head, environment), held)
        if persist:
            self._write(
                "INSERT OR REPLACE INTO held VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.context, held.head, environment, label, held.good, _dump(held.problems), time.time()),
            )

    def held_rows(self, limit: int = 200) -> list[dict[str, Any]]:
        """Held-back answers given, newest first: environment, label, head, good, problems."""
        if self._db is None:
            return [
                {"environment": env, "label": None, "head": h.head, "good": h.good, "problems": h.problems}
                for (_, env), h in list(self._held.items())[-limit:][::-1]
            ]
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT environment, label, head, good, problems FROM held WHERE context=? "
                    "ORDER BY seen DESC LIMIT ?",
                    (self.context, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                log.warning("verdict store read failed: %s", exc)
                return []
        return [
            {"environment": r[0], "label": r[1], "head": r[2], "good": r[3], "problems": _problems(r[4])}
            for r in rows
        ]

    def close(self) -> None:
        """Close the SQLite connection."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _remember(self, table: dict[tuple[str, str], Any], key: tuple[str, str], value: Any) -> None:
        if len(table) >= _MEMORY_LIMIT:
            table.clear()
        table[key] = value

    def _query(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if self._db is None:
            return None
        with self._lock:
            try:
                row: tuple[Any, ...] | None = self._db.execute(sql, args).fetchone()
                return row
            except sqlite3.Error as exc:
                log.warning("verdict store read failed: %s", exc)
                return None

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        if self._db is None:
            return
        with self._lock:
            try:
                with self._db:
                    self._db.execute(sql, args)
            except sqlite3.Error as exc:
                log.warning("verdict store write failed: %s", exc)


class LastGood:
    """Finds and remembers the newest good version before a broken head, per environment."""

    def __init__(
        self,
        store: VerdictStore,
        parents: Callable[[str], list[str]],
        max_walk: int = MAX_WALK,
    ) -> None:
        self.store = store
        self.parents = parents
        self.max_walk = max_walk

    def known_broken(self, version: str, environment: str) -> BrokenEnvironment | None:
        """The error of a version already known to be broken for the environment, else None."""
        problems = self.store.broken(version, environment)
        return None if problems is None else broken(problems)

    def remember_broken(
        self, version: str, environment: str, error: BrokenEnvironment, persist: bool = True
    ) -> None:
        """Record a version found broken for the environment (persisted only when `persist`)."""
        self.store.set_broken(version, environment, error.problems, persist)

    def hold_back(
        self,
        head: str,
        environment: str,
        label: str,
        error: BrokenEnvironment,
        is_good: Callable[[str], bool],
        persist: bool = True,
    ) -> HeldBack:
        """What to serve instead of the broken `head`: walk first parents until `is_good` says yes."""
        held = self.store.held(head, environment)
        if held is not None:
            return held
        good = None
        version = head
        for _ in range(self.max_walk):
            parents = self.parents(version)
            if not parents:
                break
            version = parents[0]
            if self.store.broken(version, environment) is not None:
                continue
            if is_good(version):
                good = version
                break
        held = HeldBack(head, good, tuple(error.problems))
        self.store.set_held(environment, label, held, persist)
        return held


def _dump(problems: Sequence[Problem]) -> str:
    return json.dumps([p.to_json() for p in problems])


def _problems(text: str) -> tuple[Problem, ...]:
    try:
        return tuple(Problem.from_json(item) for item in json.loads(text))
    except (ValueError, TypeError, AttributeError):
        return ()
