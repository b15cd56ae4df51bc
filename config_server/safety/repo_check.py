"""`config-server validate`: every environment of a repository checked before it is pushed.

Finds every application and profile the repository's files name, and checks each environment
with `validation.checked_environment`, exactly as the server does before serving it. Files are
read once and parsed once per content (a shared `application.yml` is parsed once for all
applications).

Which environments: every application with a file (`{app}.yml`) or a schema
(`schemas/{app}.schema.yml`), and `application` itself; for each, `default` plus every profile
named by a profile file (`{app}-{profile}.yml`, `application-{profile}.yml`) or by a document's
`spring.config.activate.on-profile`. Which applications and profiles the files name is
`file_names.applications_from_stems`, over the files of every folder searched: a stem `a-b` is
application `a` with profile `b` when `a` has a file of its own (or is `application`), else
application `a-b`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from config_server import names
from config_server.backends.base import Backend, Revision
from config_server.backends.native import NativeBackend
from config_server.content.crypto import Keyring
from config_server.content.file_names import (
    SHARED,
    applications_from_stems,
    shared_profiles_from_stems,
    source_stem,
)
from config_server.content.parsing import Document, parse_file
from config_server.content.resolve import Request, resolve_environment
from config_server.errors import (
    BrokenEnvironment,
    ConfigServerError,
    InvalidConfigFile,
    Problem,
    RolloutFileError,
)
from config_server.safety import schema_rules
from config_server.safety.config_service import ConfigService
from config_server.safety.validation import checked_environment

_ACTIVATION_NAME = re.compile(r"[^()!&|,\s]+")


@dataclass
class Finding:
    """One problem of one environment."""

    application: str
    profiles: tuple[str, ...]
    problem: Problem

    def text(self) -> str:
        """`file:line: application/profile: message`."""
        return self.problem.describe(self.application, self.profiles)

    def to_json(self) -> dict[str, Any]:
        """The finding as a JSON object."""
        return {"application": self.application, "profiles": list(self.profiles), **self.problem.to_json()}


@dataclass
class Report:
    """What `validate` found at one version."""

    version: str
    #: "commit" (a git revision) or "working tree" (the files on disk; `version` hashes them).
    checked: str = "commit"
    #: The label the commit was read at (a branch, tag or commit id).
    label: str = ""
    environments: int = 0
    findings: list[Finding] = field(default_factory=list)

    def where(self) -> str:
        """What was checked, for the summary line: `1a2b3c4d5e6f (commit of main)` or
        `the working tree` (a folder's version is a hash of its files, neither HEAD nor its tree)."""
        if self.checked == "working tree":
            return "the working tree"
        return f"{self.version[:12]} (commit of {self.label})"

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object."""
        return {
            "version": self.version,
            "checked": self.checked,
            "environments": self.environments,
            "problems": [f.to_json() for f in self.findings],
        }


def check_repository(
    backend: Backend,
    label: str | None,
    search_paths: Iterable[str] = (),
    keyring: Keyring | None = None,
    decrypt: bool = True,
) -> Report:
    """Check every environment of the repository at `label` (the default when None)."""
    service = ConfigService(backend, list(search_paths), cache_size=1, keyring=keyring)
    revision = backend.resolve(label)
    read = _memo_read(backend, revision.version)
    parse = _memo_parse()
    checked = "working tree" if isinstance(backend, NativeBackend) else "commit"
    report = Report(revision.version, checked, revision.label)
    for application, profiles in environments(service, revision, read, parse):
        report.environments += 1
        try:
            folders = service.folders(revision, (application,), profiles)
            checked_environment(
                functools.partial(
                    resolve_environment,
                    Request(application, profiles, label),
                    revision.version,
                    folders,
                    read,
                    backend.uri,
                    parse,
                ),
                (application,),
                read,
                backend.uri,
                keyring,
                decrypt,
            )
        except BrokenEnvironment as exc:
            report.findings.extend(Finding(application, profiles, p) for p in exc.problems)
    report.findings.extend(rollout_findings(backend, revision.version))
    return report


def rollout_findings(backend: Backend, version: str) -> list[Finding]:
    """Every rollout file (`rollouts/{app}.yml`) that the server would ignore: one that does not
    parse, or (in a git repository) names a canary label the repository does not have. Reported as
    `rollouts/orders.yml:3: orders/*: message`."""
    from config_server.backends.native import NativeBackend
    from config_server.content.rollout_plan import (
        ROLLOUTS_FOLDER,
        parse_rollout,
        rollout_path,
    )

    findings = []
    for name in sorted(backend.listing(version, ROLLOUTS_FOLDER).files):
        if not name.endswith(".yml") or name.startswith("."):
            continue
        application = name[: -len(".yml")]
        path = rollout_path(application)
        try:
            names.validate_application(application)
            rollout = parse_rollout(application, backend.read(version, path) or b"", path)
            if not isinstance(backend, NativeBackend):  # a plain folder has no branches to check
                try:
                    backend.resolve(rollout.canary)
                except ConfigServerError:
                    raise RolloutFileError(path, None, f"canary: unknown label {rollout.canary!r}") from None
        except RolloutFileError as exc:
            findings.append(Finding(application, ("*",), Problem(path, exc.line, exc.message)))
        except ConfigServerError as exc:
            findings.append(Finding(application, ("*",), Problem(path, None, str(exc))))
        except Exception as exc:  # noqa: BLE001 - one file's failure is that file's finding
            message = f"cannot be read ({type(exc).__name__})"
            findings.append(Finding(application, ("*",), Problem(path, None, message)))
    return findings


def environments(
    service: ConfigService,
    revision: Revision,
    read: Callable[[str], bytes | None],
    parse: Callable[[str, bytes], list[Document]],
) -> list[tuple[str, tuple[str, ...]]]:
    """(application, profiles) pairs to check, sorted: every one the repository's files name."""
    folders = service.folders(revision, (SHARED,), ("default",))
    stems: dict[str, list[str]] = {}
    for folder in folders:
        for name in service.backend.listing(revision.version, folder).files:
            stem = source_stem(name)
            if stem is not None:
                stems.setdefault(stem, []).append(f"{folder}/{name}" if folder else name)
    listed = applications_from_stems(stems)
    applications = {SHARED, *listed}
    profiles: dict[str, set[str]] = {app: set(named) for app, named in listed.items()}
    shared = shared_profiles_from_stems(stems)
    for name in service.backend.listing(revision.version, schema_rules.SCHEMA_FOLDER).files:
        for ext in schema_rules.EXTENSIONS:
            if name.endswith(ext):
                applications.add(name[: -len(ext)])
    for stem, paths in stems.items():
        owner = stem if stem in applications else None
        if owner is None:
            continue
        for path in paths:
            named = _activation_profiles(path, read, parse)
            if owner == SHARED:
                shared |= named
            else:
                profiles.setdefault(owner, set()).update(named)
    out: list[tuple[str, tuple[str, ...]]] = []
    for application in sorted(applications):
        wanted = {"default"} | shared | profiles.get(application, set())
        out.extend((application, (p,)) for p in sorted(wanted))
    return out


def _activation_profiles(
    path: str, read: Callable[[str], bytes | None], parse: Callable[[str, bytes], list[Document]]
) -> set[str]:
    try:
        data = read(path)
        documents = parse(path, data) if data is not None else []
    except InvalidConfigFile:
        return set()  # reported when the environments that read it are checked
    names: set[str] = set()
    for document in documents:
        expression = document.activation
        parts = expression if isinstance(expression, list) else [expression]
        for part in parts:
            if part is not None:
                names.update(_ACTIVATION_NAME.findall(str(part)))
    return names


def _memo_read(backend: Backend, version: str) -> Callable[[str], bytes | None]:
    """A reader that reads each file once (the shared files are read for every application)."""
    seen: dict[str, bytes | None | InvalidConfigFile] = {}

    def read(path: str) -> bytes | None:
        if path not in seen:
            try:
                seen[path] = backend.read(version, path)
            except InvalidConfigFile as exc:
                seen[path] = exc
        found = seen[path]
        if isinstance(found, InvalidConfigFile):
            raise found
        return found

    return read


def _memo_parse() -> Callable[[str, bytes], list[Document]]:
    """A parser that parses each (path, content) once; parse errors are remembered too."""
    seen: dict[tuple[str, bytes], list[Document] | InvalidConfigFile] = {}

    def parse(path: str, data: bytes) -> list[Document]:
        key = (path, data)
        if key not in seen:
            try:
                seen[key] = parse_file(path, data)
            except InvalidConfigFile as exc:
                seen[key] = exc
        found = seen[key]
        if isinstance(found, InvalidConfigFile):
            raise found
        return found

    return parse
