"""An application's history: which applications a version holds, the commits that changed an
application's files, and the per-key difference between two versions of its resolved settings.

The decisions are pure functions over plain data (`file_names.applications_from_files` and
`file_patterns`, `diff_settings`, `mask`); the I/O (listing a version, `git log`, resolving an
environment at a version) goes through the backend and the configuration service handed in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config_server.backends.base import Commit
from config_server.content import render
from config_server.content.crypto import CIPHER_PREFIX
from config_server.content.file_names import applications_from_files, file_patterns
from config_server.errors import BrokenEnvironment, ConfigServerError
from config_server.names import EnvironmentRequest
from config_server.safety.config_service import ConfigService

#: What a `{cipher}` value is shown as: never the ciphertext, never the plain text.
MASKED = CIPHER_PREFIX + "****"


@dataclass(frozen=True)
class DiffRow:
    """One key that differs between two versions: `added`, `removed` or `changed` (values masked)."""

    key: str
    kind: str
    old: Any
    new: Any


def list_applications(service: ConfigService, label: str | None = None) -> tuple[str, dict[str, list[str]]]:
    """(version, applications with their profiles) of a label's root folder."""
    revision = service.backend.resolve(label)
    listing = service.backend.listing(revision.version, "")
    return revision.version, applications_from_files(listing.files)


def commits(
    service: ConfigService, application: str, label: str | None = None, limit: int = 50
) -> list[Commit]:
    """Commits of the label that changed any file of the application (shared files included), newest first."""
    revision = service.backend.resolve(label)
    return service.backend.history(revision.version, file_patterns(application), limit)


#: The most versions the console's diff form offers (the label's history first).
MAX_CHOICES = 100


def diff_choices(
    commits: list[Commit],
    heads: list[tuple[str, str]],
    in_view: list[tuple[str, str]],
    chosen: list[str],
    limit: int = MAX_CHOICES,
) -> list[tuple[str, str]]:
    """(version, description) pairs the diff form offers, each version once: the label's history,
    the heads of the labels in view (a canary's branch), the versions in view (instances', a
    rollout's), then the versions chosen (`from`, `to`) so the form always shows what it compares."""
    offered: dict[str, str] = {}
    for version, text in [
        *((c.version, c.message[:40]) for c in commits),
        *((version, f"head of {label}") for label, version in heads),
        *in_view,
    ]:
        if version and version not in offered and len(offered) < limit:
            offered[version] = text
    for version in chosen:
        offered.setdefault(version, "chosen")
    return list(offered.items())


@dataclass(frozen=True)
class Change:
    """A commit in an environment's history: it changed the resolved settings, or it was held back
    (its settings do not resolve: the server kept serving the last good commit)."""

    commit: Commit
    held_back: bool


#: Commits of the files' history one listing looks at (each one resolution, cached per version).
MAX_CHANGE_LOOKBACK = 50


def changes(
    service: ConfigService,
    application: str,
    profiles: str,
    label: str | None = None,
    limit: int = MAX_CHANGE_LOOKBACK,
) -> list[Change]:
    """The commits of the label that changed the environment's resolved settings (their content
    ETag differs from the next older good commit's), and the held-back ones, newest first.

    Only commits that touched the application's files are looked at (at most `limit` + 1, the
    extra one to judge the oldest); each is resolved once per version by the service's cache, a
    broken one once by its remembered verdict."""
    found = commits(service, application, label, limit + 1)
    etags: list[str | None] = []
    for commit in found:
        try:
            asked = EnvironmentRequest.parse(application, profiles, commit.version)
            etags.append(service.environment(asked)[1].etag)
        except BrokenEnvironment:
            etags.append(None)
        except ConfigServerError:
            etags.append("")  # not resolvable for another reason: no change of its own
    listed = []
    for index, commit in enumerate(found[:limit]):
        etag = etags[index]
        older = next((e for e in etags[index + 1 :] if e is not None), "")
        if etag is None:
            listed.append(Change(commit, held_back=True))
        elif etag and etag != older:
            listed.append(Change(commit, held_back=False))
    return listed


def changed_in(listed: list[Change]) -> str | None:
    """The newest commit of a history that changed the settings (held-back ones changed nothing)."""
    return next((c.commit.version for c in listed if not c.held_back), None)


class ChangedIn:
    """The commit that last changed each environment's resolved settings, remembered per head.

    An environment's answer depends only on its label's head, so it is worked out once per
    (application, profiles, label, head) and kept (at most `MAX_REMEMBERED` of them, the oldest
    forgotten first). One request works out at most `per_request` new ones (`budget()`): the rest
    read None until a later request, so a page of many environments costs a bounded number of
    `git log` runs and resolutions after a commit."""

    MAX_REMEMBERED = 4096

    def __init__(self, service: ConfigService, per_request: int = 8) -> None:
        self._service = service
        self._per_request = per_request
        self._known: dict[tuple[str, str, str, str], str | None] = {}
        self._lock = threading.Lock()

    def budget(self) -> Callable[[str, str, str], str | None]:
        """A lookup for one request: (application, profiles, label) -> the commit, or None."""
        left = [self._per_request]

        def lookup(application: str, profiles: str, label: str) -> str | None:
            try:
                head = self._service.backend.resolve(label or None).version
            except ConfigServerError:
                return None
            key = (application, profiles, label, head)
            with self._lock:
                if key in self._known:
                    return self._known[key]
            if left[0] <= 0:
                return None
            left[0] -= 1
            try:
                found = changed_in(changes(self._service, application, profiles, label or None))
            except ConfigServerError:
                found = None
            with self._lock:
                if len(self._known) >= self.MAX_REMEMBERED:
                    self._known.pop(next(iter(self._known)))
                self._known[key] = found
            return found

        return lookup


def mask(value: Any) -> Any:
    """A `{cipher}` value hidden; anything else unchanged."""
    return MASKED if isinstance(value, str) and value.startswith(CIPHER_PREFIX) else value


def settings_at(service: ConfigService, application: str, profiles: str, version: str) -> dict[str, Any]:
    """The merged settings of an environment at a version, as committed (`{cipher}` values encrypted)."""
    environment = service.raw_environment(application, profiles, version)
    return render.merge(environment.property_sources)


def diff_settings(old: dict[str, Any], new: dict[str, Any]) -> list[DiffRow]:
    """Per key, sorted: added, removed, or changed (a `{cipher}` value changed when its ciphertext did).

    Values are masked in the rows, so a diff never shows a secret or its ciphertext.
    """
    rows = []
    for key in sorted(old.keys() | new.keys()):
        if key not in old:
            rows.append(DiffRow(key, "added", None, mask(new[key])))
        elif key not in new:
            rows.append(DiffRow(key, "removed", mask(old[key]), None))
        elif old[key] != new[key] or type(old[key]) is not type(new[key]):
            rows.append(DiffRow(key, "changed", mask(old[key]), mask(new[key])))
    return rows
