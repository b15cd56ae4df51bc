"""Resolved environments, computed once per (version, application, profiles) and kept in a bounded LRU.

A version is immutable, so an entry never goes stale: when a label moves, requests resolve to a
new version and therefore a new key. The entry carries what every response needs already
serialised (JSON body, content ETag) so a repeat request parses no YAML and runs no git.

Only good environments are kept here. Which versions are broken, and why, is remembered in one
place, the verdict store (`verdicts.py`), which the service asks before it computes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from config_server.content import render
from config_server.model import Environment


@dataclass(frozen=True)
class ResolvedEnvironment:
    """An Environment with its content ETag (unquoted) and lazily built merged views. It is never
    broken: a version with a file that does not parse or a value that does not decrypt is a
    `BrokenEnvironment` before it gets here (`validation.py`)."""

    environment: Environment
    etag: str = ""
    _bodies: dict[str | None, bytes] = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.etag:
            return  # a respelling: the same property sources, so the same content ETag
        content = json.dumps(
            [[ps.name, ps.source] for ps in self.environment.property_sources],
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        object.__setattr__(self, "etag", hashlib.sha256(content.encode()).hexdigest()[:32])

    def respelled(self, profiles: tuple[str, ...]) -> ResolvedEnvironment:
        """This resolution as answered to a request that named `profiles` (the Environment echoes
        them): the same property sources, ETag and merged views, computed once for every spelling
        that resolves the same (`ProfileRelevance`)."""
        if profiles == self.environment.profiles:
            return self
        return self._twin(replace(self.environment, profiles=profiles))

    def moved_to(self, version: str) -> ResolvedEnvironment:
        """This resolution at a later (or other) version that changed none of the files it reads
        (`ConfigService._carried`): the same property sources and ETag, the new version."""
        return self._twin(replace(self.environment, version=version))

    def _twin(self, environment: Environment) -> ResolvedEnvironment:
        twin = ResolvedEnvironment(environment, self.etag)
        for view in ("merged", "merged_resolved"):  # cached_property values, shared when computed
            if view in self.__dict__:
                twin.__dict__[view] = self.__dict__[view]
        return twin

    @cached_property
    def merged(self) -> dict[str, Any]:
        """Flat merged settings, most specific source winning, lists replaced whole."""
        return render.merge(self.environment.property_sources)

    @cached_property
    def merged_resolved(self) -> dict[str, Any]:
        """The merged settings with `${...}` placeholders resolved."""
        return render.resolve_placeholders(self.merged)

    def body(self, label: str | None) -> bytes:
        """The Environment JSON for a request that asked for `label` (echoed as asked).

        Serialised once per label and kept: a change woken for thousands of watchers, or a warm
        request, costs a dict lookup here.
        """
        body = self._bodies.get(label)
        if body is None:
            data = self.environment.to_json()
            data["label"] = label
            body = json.dumps(data, ensure_ascii=False, default=str).encode()
            if len(self._bodies) < 16:
                self._bodies[label] = body
        return body


class EnvironmentCache:
    """A thread-safe LRU of ResolvedEnvironment keyed by (version, app, profiles, ...).

    Invariants: each key is computed at most once while it stays cached; concurrent callers of
    one key wait for the one computing it. A computation that raises is not kept: a broken
    environment is remembered by the verdict store (`verdicts.py`), which the service's `compute`
    asks first, so a release storm against a broken commit checks it once, not per request; other
    errors (a repository that cannot be read right now) are tried again.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, ResolvedEnvironment] = OrderedDict()
        self._newest: OrderedDict[Hashable, tuple[str, ResolvedEnvironment]] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def get_or_compute(
        self, key: Hashable, compute: Callable[[], ResolvedEnvironment]
    ) -> ResolvedEnvironment:
        """The cached entry, or compute it once (concurrent callers of one key wait for it); what
        `compute` raises propagates and nothing is kept."""
        with self._lock:
            entry = self._lookup(key)
            if entry is None:
                key_lock = self._key_locks.setdefault(key, threading.Lock())
        if entry is None:
            with key_lock:
                entry = self._compute_once(key, compute)
        return entry

    def _compute_once(self, key: Hashable, compute: Callable[[], ResolvedEnvironment]) -> ResolvedEnvironment:
        with self._lock:
            entry = self._lookup(key)
            if entry is not None:
                return entry
            self.misses += 1
        try:
            computed = compute()
        except BaseException:
            with self._lock:
                self._key_locks.pop(key, None)
            raise
        with self._lock:  # stored before the key lock goes, so nobody computes it again
            self._entries[key] = computed
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            self._key_locks.pop(key, None)
        return computed

    def peek(self, key: Hashable) -> ResolvedEnvironment | None:
        """The cached entry, or None; never computes."""
        with self._lock:
            return self._lookup(key)

    def put(self, key: Hashable, entry: ResolvedEnvironment) -> None:
        """Keep `entry` under `key` too (a resolution shared by the spellings of one environment)."""
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def newest(self, environment: Hashable) -> tuple[str, ResolvedEnvironment] | None:
        """(version, entry) of the last good resolution noted for `environment` (its key without
        the version), or None."""
        with self._lock:
            return self._newest.get(environment)

    def note_newest(self, environment: Hashable, version: str, entry: ResolvedEnvironment) -> None:
        """Remember `entry` as the last good resolution of `environment`, at `version` (bounded
        like the entries)."""
        with self._lock:
            self._newest[environment] = (version, entry)
            self._newest.move_to_end(environment)
            while len(self._newest) > self.max_entries:
                self._newest.popitem(last=False)

    def _lookup(self, key: Hashable) -> ResolvedEnvironment | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return entry

    def stats(self) -> dict[str, int]:
        """Entries, hits and misses, for `/health` and tests."""
        return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses}


@dataclass
class _Relevance:
    with_files: frozenset[str]
    named: dict[frozenset[str], frozenset[str]] = field(default_factory=dict)


class ProfileRelevance:
    """Which requested profiles change what an environment resolves to, learnt once per (version,
    applications, label scope) and kept in a bounded LRU.

    `/orders/prod,p1` and `/orders/prod,p2` resolve to the same property sources when no file is
    named after `p1` or `p2` and no activation expression of a file read mentions them; the
    service then resolves (parses, decrypts, checks) once and answers the other spellings with
    `ResolvedEnvironment.respelled`. Two facts decide it (`profiles.relevant`): the profiles files
    are named after (`with_files`, from the folders' listings: every spelling asks the same), and
    the profiles the read files' activation expressions mention, which depend on which profile
    files were read, so they are kept per set of those (`named`), learnt from a resolution.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, _Relevance] = OrderedDict()
        self._lock = threading.Lock()

    def known_files(self, where: Hashable) -> frozenset[str] | None:
        """The profiles that name a file at `where`, or None when not yet listed."""
        with self._lock:
            known = self._entries.get(where)
            if known is None:
                return None
            self._entries.move_to_end(where)
            return known.with_files

    def with_files(self, where: Hashable, listed: Callable[[], frozenset[str]]) -> frozenset[str]:
        """The profiles that name a file at `where`; `listed` works them out the first time."""
        with self._lock:
            known = self._entries.get(where)
            if known is not None:
                self._entries.move_to_end(where)
                return known.with_files
        with_files = listed()
        with self._lock:
            known = self._entries.setdefault(where, _Relevance(with_files))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return known.with_files

    def named(self, where: Hashable, read_for: frozenset[str]) -> frozenset[str] | None:
        """The profiles the activation expressions mention of the files read for the profile files
        `read_for`, or None when no resolution has told yet."""
        with self._lock:
            known = self._entries.get(where)
            return None if known is None else known.named.get(read_for)

    def learn(self, where: Hashable, read_for: frozenset[str], named: frozenset[str]) -> None:
        """Remember what a resolution that read the profile files `read_for` found mentioned."""
        with self._lock:
            known = self._entries.get(where)
            if known is not None and len(known.named) < 64:
                known.named[read_for] = named
