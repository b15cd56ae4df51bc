"""Immutable settings: one Environment merged into flat keys, dotted-key lookup, and diffs.

A snapshot is built once, never changed, and swapped in whole, so a reader always sees one
complete version. Merging, unflattening and placeholders are the server's own code
(`settings_tree.py`, which the server imports): the most specific property source wins, a list
set by a higher source replaces a lower source's list whole, and `${key}` / `${key:default}`
resolve against the whole merged environment, then the process environment (as Spring's clients
do), then the default. `values`, `get`, `nested()` and every bound model see resolved values, and
`diff` compares resolved values, so a change to `orders.currency` also changes every key whose
value refers to it. The answer as the server sent it (placeholders unresolved) stays in
`environment`.

A version is refused (`RejectedVersion`) before it can be applied when a list index exceeds
`MAX_LIST_INDEX` (`servers[2000000000]=x` would allocate two billion entries in `nested()`),
when it carries Spring's undecryptable-value marker (`invalid.<key>` = `<n/a>`), when a
placeholder cannot be resolved (the reason names the key), or when resolving goes over the
server's limits (`settings_tree.MAX_VALUE_CHARS`, `MAX_EXPANSION_CHARS`).
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from config_client import settings_tree
from config_client.errors import InvalidResponse, RejectedVersion
from config_client.settings_tree import MAX_LIST_INDEX as MAX_LIST_INDEX
from config_client.settings_tree import origin_of
from config_client.settings_tree import unflatten as unflatten

#: What the server sends, as `invalid.<key>`, for a value it could not decrypt.
UNDECRYPTABLE = "<n/a>"

_INDEX_VALUE = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class Change:
    """What one new version changed: added and removed keys, changed keys with (old, new) values."""

    old_version: str | None
    new_version: str | None
    added: Mapping[str, Any] = field(default_factory=dict)
    removed: Mapping[str, Any] = field(default_factory=dict)
    changed: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        """Every key this change touches, sorted."""
        return sorted({*self.added, *self.removed, *self.changed})

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def only(self, patterns: Iterable[str] | None) -> Change:
        """The part of the change whose keys match any of the glob patterns (all when None)."""
        if patterns is None:
            return self
        pats = list(patterns)

        def keep(mapping: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in mapping.items() if any(fnmatch.fnmatchcase(k, p) for p in pats)}

        return Change(
            self.old_version, self.new_version, keep(self.added), keep(self.removed), keep(self.changed)
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict of the change."""
        return {
            "old_version": self.old_version,
            "version": self.new_version,
            "changed": self.keys,
            "added": dict(self.added),
            "removed": dict(self.removed),
            "modified": {k: {"old": o, "new": n} for k, (o, n) in self.changed.items()},
        }


class Snapshot:
    """One version of a service's settings, read-only."""

    __slots__ = ("version", "etag", "label", "environment", "values", "_nested", "_models")

    def __init__(self, environment: Mapping[str, Any], etag: str | None = None) -> None:
        """Merge an Environment; raises InvalidResponse for a malformed one and RejectedVersion for
        one that must not be applied (list index over the bound, undecryptable value)."""
        sources = _property_sources(environment)
        self.environment = environment
        self.version: str | None = environment.get("version")
        self.label: str | None = environment.get("label")
        check_usable(sources, self.version)
        merged = settings_tree.merge(zip(_source_names(environment), sources, strict=True))
        self.values: Mapping[str, Any] = MappingProxyType(resolved_values(merged, self.version))
        self.etag = etag or content_tag(environment)
        self._nested: dict[str, Any] | None = None
        self._models: Mapping[object, Any] = MappingProxyType({})

    @classmethod
    def empty(cls) -> Snapshot:
        """A snapshot with no settings and no version (before anything was fetched)."""
        return cls({"version": None, "propertySources": []}, etag="")

    def get(self, key: str, default: Any = None) -> Any:
        """The value of a flat key (`db.pool.max`, `hosts[0]`), or `default`."""
        return self.values.get(key, default)

    def nested(self) -> dict[str, Any]:
        """All settings as nested dicts and lists (a fresh copy the caller may change)."""
        if self._nested is None:
            self._nested = settings_tree.unflatten(self.values)
        return copy.deepcopy(self._nested)

    def diff(self, newer: Snapshot) -> Change:
        """What changes from this snapshot to `newer`."""
        old, new = self.values, newer.values
        return Change(
            self.version,
            newer.version,
            added={k: v for k, v in new.items() if k not in old},
            removed={k: v for k, v in old.items() if k not in new},
            changed={k: (old[k], v) for k, v in new.items() if k in old and _differs(old[k], v)},
        )

    def model(self, binding: object) -> Any:
        """The instance of a bound model (see `ConfigClient.bind`) built from this very version."""
        try:
            return self._models[binding]
        except KeyError:
            raise KeyError(f"{binding!r} has no instance in version {self.version}") from None

    def with_models(self, models: Mapping[object, Any]) -> Snapshot:
        """A copy of this snapshot (same version, same values) carrying these bound-model instances."""
        twin = object.__new__(Snapshot)
        for name in Snapshot.__slots__:
            object.__setattr__(twin, name, getattr(self, name))
        twin._models = MappingProxyType(dict(models))
        return twin


def _differs(old: Any, new: Any) -> bool:
    """`1 -> true` and `0 -> false` are changes: Python's `1 == True` must not hide them."""
    return type(old) is not type(new) or old != new


def check_usable(sources: list[Mapping[str, Any]], version: str | None) -> None:
    """Raise RejectedVersion when a source has a list index over MAX_LIST_INDEX or an
    undecryptable value (Spring's `invalid.<key>` = `<n/a>`)."""
    for source in sources:
        for key, value in source.items():
            if not isinstance(key, str):
                raise InvalidResponse("a property source has a key that is not a string")
            if "[" in key:
                for index in _INDEX_VALUE.findall(key):
                    if len(index.lstrip("0")) > 6 or int(index) > MAX_LIST_INDEX:
                        raise RejectedVersion(
                            version, f"{key}: list index over the limit of {MAX_LIST_INDEX}"
                        )
            if key.startswith("invalid.") and value == UNDECRYPTABLE:
                raise RejectedVersion(version, f"{key[len('invalid.') :]}: the server could not decrypt it")


def content_tag(environment: Mapping[str, Any]) -> str:
    """A tag for servers that send no ETag: a hash of the property sources."""
    sources = environment.get("propertySources")
    text = json.dumps(sources, sort_keys=True, separators=(",", ":"), default=str)
    return "content-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def merge_sources(sources: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Flat settings from property sources given most specific first; lists replaced whole."""
    return dict(settings_tree.merge((f"source {i}", source) for i, source in enumerate(sources)))


def resolved_values(merged: Mapping[str, Any], version: str | None) -> dict[str, Any]:
    """The merged settings with every `${...}` resolved (the settings, then the process
    environment, then the default), by the server's rules and limits.

    Raises RejectedVersion naming the key when a placeholder cannot be resolved (or a cycle never
    ends) or when resolving goes over a limit (`settings_tree.MAX_VALUE_CHARS`, ...).
    """
    try:
        resolved = settings_tree.resolve_placeholders(merged, process_variable)
    except settings_tree.SettingsLimitExceeded as exc:
        raise RejectedVersion(version, str(exc)) from None
    for key, value in resolved.items():
        if isinstance(value, str) and "${" in value:
            left = settings_tree.unresolved_placeholder(value)
            if left is not None:
                raise RejectedVersion(
                    version,
                    f"{key}: placeholder ${{{settings_tree.shorten(left)}}} cannot be resolved "
                    f"(in {origin_of(merged, key)})",
                )
    return resolved


def process_variable(name: str) -> str | None:
    """A placeholder's name in the process environment, looked up as Spring's relaxed binding
    does: as written, then with `.` and `-` as `_`, then each of those upper-cased."""
    plain = name.replace(".", "_").replace("-", "_")
    for candidate in (name, name.replace(".", "_"), name.replace("-", "_"), plain):
        for spelling in (candidate, candidate.upper()):
            value = os.environ.get(spelling)
            if value is not None:
                return value
    return None


def _source_names(environment: Mapping[str, Any]) -> list[str]:
    """Each property source's name (cut short: it goes into a rejection reason)."""
    names = []
    for i, item in enumerate(environment["propertySources"]):
        name = item.get("name")
        names.append(settings_tree.shorten(name) if isinstance(name, str) else f"source {i}")
    return names


def _property_sources(environment: Any) -> list[Mapping[str, Any]]:
    if not isinstance(environment, Mapping):
        raise InvalidResponse("the answer is not a JSON object")
    sources = environment.get("propertySources")
    if not isinstance(sources, list):
        raise InvalidResponse("the answer has no propertySources list")
    result = []
    for item in sources:
        if not isinstance(item, Mapping) or not isinstance(item.get("source"), Mapping):
            raise InvalidResponse("a property source has no source object")
        result.append(item["source"])
    return result
