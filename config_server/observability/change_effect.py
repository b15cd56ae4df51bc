"""The effect of a change before it is merged: per environment, how its resolved settings change
between two versions, where each new value is set, and whether the new version would be held back.

`change_effect(service, base, head)` answers `config-server diff BASE..HEAD` and `GET /diff`:

- **Which environments.** The (application, profile) pairs the repository names at either version
  (`repo_check.environments`, what `config-server validate` checks). Of those, only the ones that
  read a changed file are resolved: the applications a changed file may shape
  (`file_names.applications_reading`), and of their environments those
  whose search order (`file_names.search_order` over their folders, the order the server resolves:
  their own files and the shared `application*` ones, in the root and every search path) or
  schemas (`schema_rules.schema_paths`) hold a changed file. So a change to `orders.yml` resolves
  `orders`' environments only, and lists no other application's profiles by reading its files;
  one to `application.yml`, to any file of `schemas/` (a schema may `$ref` any other, another
  application's included) or to `policy/approvals.yml` (every environment's checks read it)
  resolves every environment. `path` counts only the changed files under
  that repository path (a file or a folder), as `git diff BASE..HEAD -- PATH` would.
- **Which values.** The settings as the server renders them (`/orders-prod.yml`): the files
  merged by precedence, placeholders resolved; without the server's own overrides (as in the
  console's history). `{cipher}` values are never decrypted nor shown: one is compared by its
  ciphertext and shown as `{cipher}****`, also inside a value a placeholder copied it into.
- **Where.** The file and line of the most specific source that set the new value (for a removed
  key, where it was set before), from `content/positions.py`.
- **Verdict.** Each environment with a difference goes through the gates (`release_gates`) at
  the head version: today change safety (`broken_gate`: the check the server runs before it
  serves a commit); approvals plug in as another gate.

An environment is listed when its settings differ or a gate holds it back (a new schema that
rejects unchanged settings changes what is served as much as a changed value).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from config_client.settings_tree import MergedSettings
from config_server.backends.base import Revision
from config_server.content import render
from config_server.content.crypto import CIPHER_PREFIX
from config_server.content.file_names import (
    EXTENSIONS,
    applications_reading,
    is_shared,
    search_order,
    source_stem,
)
from config_server.content.parsing import Document
from config_server.content.positions import key_line
from config_server.content.resolve import Request, resolve_environment
from config_server.errors import InvalidConfigFile
from config_server.model import Environment
from config_server.observability.history import MASKED, diff_settings
from config_server.safety import schema_rules
from config_server.safety.changed_files import touched_applications, touches_every_application
from config_server.safety.config_service import ConfigService
from config_server.safety.release_gates import Candidate, Gate, Hold, holds
from config_server.safety.repo_check import environments, memo_parse, memo_read
from config_server.safety.validation import problem_of_error, source_file

#: A `{cipher}` value as compared: the prefix and a digest of its ciphertext (never shown).
_CIPHER_MARK = re.compile(re.escape(CIPHER_PREFIX) + r"#[0-9a-f]{16}")
#: Environments looked at between two pauses for other greenlets (`GET /diff` runs in a worker).
_PAUSE_EVERY = 16

#: Which (application, profiles) environments the caller may see (`GET /diff` for a scoped token).
Visible = Callable[[str, tuple[str, ...]], bool]


@dataclass(frozen=True)
class KeyChange:
    """One key of an environment that differs: `added`, `removed` or `changed`, values masked,
    and the file and line that set the new value (the old one, for a removed key)."""

    key: str
    kind: str
    old: Any
    new: Any
    file: str | None
    line: int | None

    @property
    def location(self) -> str:
        """`file:line`, `file`, or `-`."""
        if self.file is None:
            return "-"
        return f"{self.file}:{self.line}" if self.line else self.file

    def to_json(self) -> dict[str, Any]:
        """`{"key", "kind", "old", "new", "file", "line"}`."""
        return {
            "key": self.key,
            "kind": self.kind,
            "old": self.old,
            "new": self.new,
            "file": self.file,
            "line": self.line,
        }


@dataclass
class EnvironmentEffect:
    """What a change does to one environment: its key changes and the gates' holds at the head."""

    application: str
    profiles: tuple[str, ...]
    changes: list[KeyChange]
    holds: list[Hold]
    #: Why the environment does not resolve at the base version (its old settings are then empty).
    base_error: str | None = None
    #: Why it does not resolve at the head version (the `broken` hold says where).
    head_error: str | None = None
    #: Live instances of the environment per label they ask for; None when not asked.
    instances: dict[str, int] | None = None

    @property
    def name(self) -> str:
        """`application/profiles`."""
        return f"{self.application}/{','.join(self.profiles)}"

    @property
    def held_back(self) -> bool:
        """True when some gate would hold the head version back for this environment."""
        return bool(self.holds)

    def to_json(self) -> dict[str, Any]:
        """The environment's part of the JSON answer."""
        return {
            "application": self.application,
            "profiles": list(self.profiles),
            "heldBack": self.held_back,
            "holds": [hold.to_json() for hold in self.holds],
            "changes": [change.to_json() for change in self.changes],
            "baseError": self.base_error,
            "headError": self.head_error,
            "instances": self.instances,
        }


@dataclass
class ChangeEffect:
    """The effect of going from `base` to `head`: every environment that changes, and counts."""

    base: Revision
    head: Revision
    path: str | None
    environments: list[EnvironmentEffect] = field(default_factory=list)
    #: Environments the repository names at either version (that the caller may see).
    named: int = 0
    #: Of those, the ones that read a changed file and were resolved at both versions.
    resolved: int = 0

    @property
    def differs(self) -> bool:
        """True when some environment's settings (or verdict) change."""
        return bool(self.environments)

    @property
    def held_back(self) -> list[EnvironmentEffect]:
        """The environments the head version would be held back for."""
        return [e for e in self.environments if e.held_back]

    def to_json(self) -> dict[str, Any]:
        """The shape `config-server diff --format json` prints and `GET /diff` answers."""
        return {
            "base": {"label": self.base.label, "version": self.base.version},
            "head": {"label": self.head.label, "version": self.head.version},
            "path": self.path,
            "differs": self.differs,
            "heldBack": len(self.held_back),
            "environmentsNamed": self.named,
            "environmentsResolved": self.resolved,
            "environments": [e.to_json() for e in self.environments],
        }


@dataclass
class _Version:
    """One side of the comparison: a resolved revision and its memoizing file reader."""

    revision: Revision
    read: Callable[[str], bytes | None]


def change_effect(
    service: ConfigService,
    base_label: str | None,
    head_label: str | None,
    path: str | None = None,
    gates: Sequence[Gate] = (),
    visible: Visible | None = None,
    application: str | None = None,
) -> ChangeEffect:
    """The effect of the change from `base_label` to `head_label` (branches, tags or commit ids;
    None is the default label), environment by environment; see the module's docstring.

    `application` limits it to that application's environments (the console's application page):
    no other application's files are read, even for a change to a shared `application*` file.

    Raises LabelNotFound for a label that does not resolve, and any other ConfigServerError that
    is not about the content (a repository that cannot be read)."""
    backend = service.backend
    base_revision, head_revision = backend.resolve(base_label), backend.resolve(head_label)
    base = _Version(base_revision, memo_read(backend, base_revision.version))
    head = _Version(head_revision, memo_read(backend, head_revision.version))
    effect = ChangeEffect(base.revision, head.revision, path.strip("/") if path else None)
    changed = backend.changed_paths(base.revision.version, head.revision.version)
    if changed is not None and effect.path:
        changed = frozenset(p for p in changed if p == effect.path or p.startswith(effect.path + "/"))
    if changed is not None and not changed:
        return effect
    parse = memo_parse()  # shared by both versions: a file unchanged between them is parsed once
    touched = None if changed is None else touched_applications(changed)
    if application is not None:
        touched = frozenset({application}) if touched is None else touched & {application}
    named = sorted(_listed(service, base, parse, touched) | _listed(service, head, parse, touched))
    lines: dict[tuple[str, int, str, str], int | None] = {}
    everything = changed is None or any(map(touches_every_application, changed))
    revisions = (base.revision, head.revision)
    for count, (name, profiles) in enumerate(named):
        if count % _PAUSE_EVERY == 0:
            time.sleep(0)  # let other greenlets run (time.sleep is gevent's in the gevent worker)
        if visible is not None and not visible(name, profiles):
            continue
        if application is not None and name != application:
            continue
        effect.named += 1
        if touched is not None and name not in touched:
            continue
        if not everything and not reads_any(service, revisions, name, profiles, changed or frozenset()):
            continue
        effect.resolved += 1
        one = _environment_effect(service, base, head, name, profiles, parse, gates, lines)
        if one.changes or one.holds or one.head_error:
            effect.environments.append(one)
    return effect


def _listed(
    service: ConfigService,
    side: _Version,
    parse: Callable[[str, bytes], list[Document]],
    touched: frozenset[str] | None,
) -> set[tuple[str, tuple[str, ...]]]:
    """The environments the repository names at one version (`repo_check.environments`).

    When the change touches some applications only, the documents of the others are not read for
    the profiles they name (in a repository of thousands of applications, that reading is most of
    the work): the applications are listed first from the file names, and then only the touched
    ones that exist (`orders-prod.yml` may name `orders`) have their files read."""
    if touched is None:
        return set(environments(service, side.revision, side.read, parse))
    by_names = set(environments(service, side.revision, _only_files_of(frozenset(), side.read), parse))
    existing = touched & {application for application, _ in by_names}
    if not existing:
        return by_names
    return set(environments(service, side.revision, _only_files_of(existing, side.read), parse))


def _only_files_of(
    applications: frozenset[str], read: Callable[[str], bytes | None]
) -> Callable[[str], bytes | None]:
    """A reader that reads the shared files and those of `applications` only, for listing the
    environments: an untouched application's documents are not parsed for the profiles they name."""

    def only(path: str) -> bytes | None:
        name = path.rpartition("/")[2]
        stem = source_stem(name)
        if stem is not None and is_shared(stem):
            return read(path)
        return read(path) if applications.intersection(applications_reading(name) or ()) else None

    return only


def reads_any(
    service: ConfigService,
    revisions: Iterable[Revision],
    application: str,
    profiles: tuple[str, ...],
    changed: frozenset[str],
) -> bool:
    """Whether the environment reads one of the `changed` paths at any of the revisions: a file of
    its search order (in its folders at that revision) or a schema that applies to it."""
    for revision in revisions:
        folders = service.folders(revision, (application,), profiles)
        for stem, _ in search_order((application,), profiles, folders):
            if any(stem + ext in changed for ext in EXTENSIONS):
                return True
    return any(p in changed for candidates in schema_rules.schema_paths([application]) for p in candidates)


def _environment_effect(
    service: ConfigService,
    base: _Version,
    head: _Version,
    application: str,
    profiles: tuple[str, ...],
    parse: Callable[[str, bytes], list[Document]],
    gates: Sequence[Gate],
    lines: dict[tuple[str, int, str, str], int | None],
) -> EnvironmentEffect:
    uri = service.backend.uri
    new_env = _resolved(service, head, application, profiles, parse)
    old_env = _resolved(service, base, application, profiles, parse)
    old, base_error = _settings(old_env, uri, base.read)
    new, head_error = _settings(new_env, uri, head.read)
    changes = []
    if head_error is None:
        for row in diff_settings(old, new):
            side, settings = (base, old) if row.kind == "removed" else (head, new)
            file, line = _where(settings, row.key, side, uri, lines)
            changes.append(KeyChange(row.key, row.kind, _masked(row.old), _masked(row.new), file, line))

    def resolve_head() -> Environment:
        if isinstance(new_env, InvalidConfigFile):
            raise new_env
        return new_env

    candidate = Candidate(
        application,
        profiles,
        head.revision.label,
        head.revision.version,
        base.revision.version,
        resolve_head,
        head.read,
        uri,
        changed=not (
            isinstance(new_env, Environment)
            and isinstance(old_env, Environment)
            and new_env.property_sources == old_env.property_sources
        ),
    )
    return EnvironmentEffect(application, profiles, changes, holds(candidate, gates), base_error, head_error)


def _resolved(
    service: ConfigService,
    side: _Version,
    application: str,
    profiles: tuple[str, ...],
    parse: Callable[[str, bytes], list[Document]],
) -> Environment | InvalidConfigFile:
    """The environment's files at one version (not decrypted), or the error that stops them."""
    revision = side.revision
    try:
        return resolve_environment(
            Request(application, profiles, revision.label),
            revision.version,
            service.folders(revision, (application,), profiles),
            side.read,
            service.backend.uri,
            parse,
        )
    except InvalidConfigFile as exc:
        return exc


def _settings(
    environment: Environment | InvalidConfigFile, uri: str, read: Callable[[str], bytes | None]
) -> tuple[MergedSettings, str | None]:
    """Merged settings with placeholders resolved, each `{cipher}` value replaced by a digest of
    its ciphertext (compared, never shown); or no settings and why (`file:line: message`)."""
    try:
        if isinstance(environment, InvalidConfigFile):
            raise environment
        merged = render.merge(environment.property_sources)
        for key, value in merged.items():
            if isinstance(value, str) and value.startswith(CIPHER_PREFIX):
                merged[key] = f"{CIPHER_PREFIX}#{hashlib.sha256(value.encode()).hexdigest()[:16]}"
        rendered = render.resolve_placeholders(merged)
    except InvalidConfigFile as exc:
        problem = problem_of_error(exc, uri, read)
        return MergedSettings(), _masked(f"{problem.location}: {problem.message}")
    settings = MergedSettings()
    settings.update(rendered)
    settings.origins.update(merged.origins)
    return settings, None


def _masked(value: Any) -> Any:
    """A value with every compared `{cipher}` digest shown as `{cipher}****`."""
    return _CIPHER_MARK.sub(MASKED, value) if isinstance(value, str) else value


def _where(
    settings: MergedSettings,
    key: str,
    side: _Version,
    uri: str,
    lines: dict[tuple[str, int, str, str], int | None],
) -> tuple[str | None, int | None]:
    """The repository file and line that set `key` in these settings (lines remembered per file)."""
    origin = settings.origins.get(key)
    if origin is None:
        return None, None
    path, document = source_file(origin, uri)
    memo = (path, document, key, side.revision.version)
    if memo not in lines:
        try:
            data = side.read(path)
        except InvalidConfigFile:
            data = None
        lines[memo] = None if data is None else key_line(path, data, document, key)
    return path, lines[memo]


def live_instances(
    records: Iterable[tuple[str, str, str]],
) -> dict[tuple[str, tuple[str, ...]], dict[str, int]]:
    """Live instances per environment and label, from (application, profiles, label) of each live
    instance (a list request, `orders,payments`, counts for no single environment)."""
    counts: dict[tuple[str, tuple[str, ...]], dict[str, int]] = {}
    for application, profiles, label in records:
        if "," in application:
            continue
        per_label = counts.setdefault((application, tuple(profiles.split(","))), {})
        per_label[label] = per_label.get(label, 0) + 1
    return counts


def with_instances(effect: ChangeEffect, counts: dict[tuple[str, tuple[str, ...]], dict[str, int]]) -> None:
    """Set each listed environment's live instances (none is an empty count, not None)."""
    for environment in effect.environments:
        environment.instances = dict(
            sorted(counts.get((environment.application, environment.profiles), {}).items())
        )
