"""Resolved environments, computed once per (version, application, profiles) and kept in a bounded LRU.

A version is immutable, so an entry never goes stale: when a label moves, requests resolve to a
new version and therefore a new key. The entry carries what every response needs already
serialised (JSON body, content ETag) so a repeat request parses no YAML and runs no git.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NoReturn

from config_server.content import render
from config_server.errors import InvalidConfigFile
from config_server.model import Environment


@dataclass(frozen=True)
class ResolvedEnvironment:
    """An Environment with its content ETag (unquoted) and lazily built merged views. It is never
    broken: a version with a file that does not parse or a value that does not decrypt is a
    `BrokenEnvironment` before it gets here (`validation.py`)."""

    environment: Environment
    etag: str = field(init=False)
    _bodies: dict[str | None, bytes] = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        content = json.dumps(
            [[ps.name, ps.source] for ps in self.environment.property_sources],
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        object.__setattr__(self, "etag", hashlib.sha256(content.encode()).hexdigest()[:32])

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


class _Broken:
    """A cache entry for a (version, application, profiles) whose files do not parse."""

    __slots__ = ("error",)

    def __init__(self, error: InvalidConfigFile) -> None:
        self.error = error

    def raise_again(self) -> NoReturn:
        """Raise a fresh copy of the error (one instance raised again would grow its traceback)."""
        raise copy.copy(self.error).with_traceback(None)


class EnvironmentCache:
    """A thread-safe LRU of ResolvedEnvironment keyed by (version, app, profiles, ...).

    Invariants: each key is computed at most once while it stays cached, also when it is broken:
    an `InvalidConfigFile` (content that does not parse at that immutable version) is remembered
    and raised again, so a release storm against a broken commit parses it once, not per request.
    Other errors (a repository that cannot be read right now) are not remembered.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, ResolvedEnvironment | _Broken] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def get_or_compute(
        self, key: Hashable, compute: Callable[[], ResolvedEnvironment]
    ) -> ResolvedEnvironment:
        """The cached entry, or compute it once (concurrent callers of one key wait for it).

        Raises the `InvalidConfigFile` of a broken key, computed once and remembered.
        """
        with self._lock:
            entry = self._lookup(key)
            if entry is None:
                key_lock = self._key_locks.setdefault(key, threading.Lock())
        if entry is None:
            with key_lock:
                entry = self._compute_once(key, compute)
        if isinstance(entry, _Broken):
            entry.raise_again()
        return entry

    def _compute_once(
        self, key: Hashable, compute: Callable[[], ResolvedEnvironment]
    ) -> ResolvedEnvironment | _Broken:
        with self._lock:
            entry = self._lookup(key)
            if entry is not None:
                return entry
            self.misses += 1
        computed: ResolvedEnvironment | _Broken | None = None
        try:
            computed = compute()
        except InvalidConfigFile as exc:
            computed = _Broken(exc)
        finally:
            with self._lock:  # stored before the key lock goes, so nobody computes it again
                if computed is not None:
                    self._entries[key] = computed
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
                self._key_locks.pop(key, None)
        return computed

    def _lookup(self, key: Hashable) -> ResolvedEnvironment | _Broken | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return entry

    def stats(self) -> dict[str, int]:
        """Entries, hits and misses, for `/health` and tests."""
        return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses}
