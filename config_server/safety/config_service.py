"""The configuration service: validated request in, resolved and cached environment out.

It is the one place that ties a backend (files at a version), the resolver and the cache
together, for the Environment endpoint, the rendered formats and plain-text resources alike.
"""

from __future__ import annotations

import fnmatch
import logging
import posixpath
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from config_server import names
from config_server.backends.base import Backend, Revision
from config_server.content import profiles as profile_rules
from config_server.content import render
from config_server.content.approval_policy import AWAITING_APPROVAL, POLICY_FILE
from config_server.content.crypto import Keyring
from config_server.content.decryption import decrypt_environment
from config_server.content.environment_answer import (
    Headers,
    held_back_headers,
    pinned_headers,
    unknown_headers,
)
from config_server.content.file_names import (
    file_readings,
    profiles_with_files,
    search_path_folders,
    search_path_pattern,
    source_stem,
)
from config_server.content.limits import MAX_EXPANSION_CHARS, MAX_VALUE_CHARS, shorten
from config_server.content.parsing import flatten, parse_file
from config_server.content.resolve import ParseFile, ReadFile, Request, noting_profiles, resolve_environment
from config_server.errors import (
    BrokenEnvironment,
    ConfigLimitExceeded,
    ConfigServerError,
    InvalidName,
    NotPinnable,
    Problem,
    ResourceNotFound,
    UnknownApplication,
)
from config_server.model import Environment, PropertySource
from config_server.names import EnvironmentRequest
from config_server.safety.approvals import Approvals
from config_server.safety.changed_files import TouchedBetween
from config_server.safety.environment_cache import EnvironmentCache, ProfileRelevance, ResolvedEnvironment
from config_server.safety.known_names import KnownNames
from config_server.safety.last_good import LastGood
from config_server.safety.pins import PinBoard, pinnable_version, pinned_header
from config_server.safety.validation import checked_environment
from config_server.safety.verdicts import HeldBack, VerdictStore, verdict_context

log = logging.getLogger(__name__)

#: What the server does with a request for an application no file names (`--unknown-applications`):
#: serve it (with `X-Config-Unknown-Application`), serve it and log the name once, or refuse it (404).
UNKNOWN_APPLICATION_POLICIES = ("serve", "warn", "deny")
#: Unknown application names logged once each under `warn`; beyond, one line says the rest are not.
_MAX_UNKNOWN_LOGGED = 1000

#: The name of the property source that holds the server's overrides (Spring's name).
OVERRIDES = "overrides"

_GLOB_CHARS = set("*?[")

#: (application, profiles) environments; a file may be served when the caller may read one of them.
Readings = list[tuple[str, tuple[str, ...]]]


@dataclass(frozen=True)
class _Asked:
    """One request, validated: each label's revision, the combined one, and the names asked for."""

    revisions: list[Revision]
    revision: Revision
    application: str
    apps: tuple[str, ...]
    wanted: tuple[str, ...]
    label: str | None


class ConfigService:
    """Resolves environments and resources from one backend, through one cache; decrypts `{cipher}`.

    A request may list several application names (`orders,shared`) and several labels
    (`main,release-1`): each label is resolved on its own and a later label's sources come first;
    the version is the labels' versions joined by `,`. Server-side `overrides` come first in
    every environment, their placeholders resolved against that environment.

    Only good environments are served (`validation.py`): when a branch or tag's newest commit is
    broken for an environment, the newest good version is served instead, marked in the
    revision's `held_back` (`last_good.py`); which versions are broken is remembered in one place,
    `self.verdicts` (`verdicts.py`); a commit-id label, several labels, or no good
    version within `last_good.MAX_WALK` commits raise BrokenEnvironment (422).
    """

    def __init__(
        self,
        backend: Backend,
        search_paths: Sequence[str] = (),
        cache_size: int = 1024,
        keyring: Keyring | None = None,
        overrides: Mapping[str, Any] | None = None,
        verdicts_path: str | Path | None = None,
        unknown_applications: str = "warn",
        suggest_closest: bool = True,
    ) -> None:
        if unknown_applications not in UNKNOWN_APPLICATION_POLICIES:
            raise ValueError(
                f"unknown-applications must be serve, warn or deny, not {unknown_applications!r}"
            )
        self.backend = backend
        #: `serve`, `warn` or `deny`: see UNKNOWN_APPLICATION_POLICIES.
        self.unknown_applications = unknown_applications
        #: Whether an answer names the known application closest to an unknown one (not with an auth
        #: file: a token would learn names it may not read).
        self.suggest_closest = suggest_closest
        self._unknown_logged: set[str] = set()
        self._unknown_lock = threading.Lock()
        self.keyring = keyring
        self.search_paths = tuple(p.strip().strip("/") for p in search_paths if p.strip().strip("/"))
        self.cache = EnvironmentCache(cache_size)
        #: Which requested profiles change a resolution, so spellings of one environment share it.
        self.relevance = ProfileRelevance(cache_size)
        #: Which applications a change between two versions may touch (resolutions carried across).
        self._touched = TouchedBetween(backend)
        self.overrides = _decrypted_overrides(flatten(dict(overrides)) if overrides else {}, keyring)
        self._label_in_paths = any("{label}" in p for p in self.search_paths)
        #: A `{profile}` search path makes every profile name folders: no spellings share then.
        self._profile_in_paths = any("{profile}" in p for p in self.search_paths)
        self._named_folders = [
            search_path_pattern(p) for p in self.search_paths if "{application}" in p or "{profile}" in p
        ]
        context = verdict_context(
            backend.uri, ",".join(self.search_paths), keyring.fingerprint() if keyring else "-"
        )
        #: The one memory of which (version, environment) is broken and why, and what it serves.
        self.verdicts = VerdictStore(verdicts_path, context)
        self.last_good = LastGood(self.verdicts, backend.parents)
        #: The repository's own application and profile names; only they name series and stored rows.
        self.names = KnownNames(backend, self.search_paths)
        #: Release approvals (`approvals.py`), set by `create_app` once the state store is open;
        #: None: no environment waits for one.
        self.approvals: Approvals | None = None
        #: Called with the application (`other` when the repository does not hold it) when a version
        #: is found broken for one of its environments.
        self.on_broken: Callable[[str], None] | None = None
        #: The pinned environments (`pins.py`), kept current by `delivery/pin_sync.py`.
        self.pins = PinBoard()

    def environment(self, request: EnvironmentRequest) -> tuple[Revision, ResolvedEnvironment]:
        """Resolve the request's label(s) and return the (cached) resolved environment; the names
        were validated when the request was parsed.

        An application no file names is refused (UnknownApplication, 404) under `deny`. The
        revision carries the request's unknown names for `answer_headers` (one lookup of the
        default label per request for them, not one per use)."""
        unknown = self._admitted(request)
        _, revision, resolved = self._environment(request)
        return replace(revision, unknown=unknown), resolved

    def answer_headers(self, application: str, revision: Revision) -> Headers:
        """The extra headers of an Environment answer for `application` at `revision`:
        `X-Config-Held-Back`, `X-Config-Pinned` and `X-Config-Unknown-Application` (with the closest
        known name)."""
        unknown = revision.unknown if revision.unknown is not None else self.names.unknown(application)
        if not self.suggest_closest:
            unknown = tuple((name, None) for name, _ in unknown)
        return (
            held_back_headers(revision.held_back, revision.hold_reason)
            + pinned_headers(revision.pin)
            + unknown_headers(unknown)
        )

    def pinnable(self, request: EnvironmentRequest, version: str) -> tuple[str, str]:
        """(label, full commit id) an environment of one application at one label may be pinned to:
        `version` must be on the label's history (`pins.pinnable_version`) and the environment good
        there; NotPinnable (422) otherwise."""
        if len(request.applications) != 1 or (request.labels is not None and len(request.labels) != 1):
            raise InvalidName("a pin names one application and one label")
        label = request.labels[0] if request.labels is not None else self.backend.default_label()
        full = pinnable_version(self.backend, self.backend.resolve(label), version)
        try:
            self._environment(request.at(full))
        except BrokenEnvironment as exc:
            raise NotPinnable(
                f"{request.application}/{request.profiles} is broken at {full[:12]}: {exc}"
            ) from None
        return label, full

    def _admitted(self, request: EnvironmentRequest) -> tuple[tuple[str, str | None], ...]:
        """The request's names no file names, each with the known one closest to it, once the
        policy admitted them: refused (`deny`, UnknownApplication) or logged once per name (`warn`)."""
        unknown = self.names.unknown(request.application)
        if self.unknown_applications != "serve":
            self._admit(unknown)
        return unknown

    def _admit(self, unknown: tuple[tuple[str, str | None], ...]) -> None:
        """Refuse (`deny`) or log once per name (`warn`) the `unknown` names of a request."""
        if not unknown:
            return
        if self.unknown_applications == "deny":
            listed = ", ".join(repr(name) for name, _ in unknown)
            raise UnknownApplication(f"no configuration file names application {listed}")
        with self._unknown_lock:
            new = [name for name, _ in unknown if name not in self._unknown_logged]
            full = len(self._unknown_logged) >= _MAX_UNKNOWN_LOGGED
            if not full:
                self._unknown_logged.update(new)
        if not new or full:
            return
        for name, closest in unknown:
            if name in new:
                near = f" (closest known: {closest!r})" if closest else ""
                log.warning("served application %r, which no configuration file names%s", name, near)
        if len(self._unknown_logged) >= _MAX_UNKNOWN_LOGGED:
            log.warning("%d unknown application names logged: further ones are not", _MAX_UNKNOWN_LOGGED)

    def _environment(
        self, request: EnvironmentRequest
    ) -> tuple[list[Revision], Revision, ResolvedEnvironment]:
        """Each label's revision, the combined revision (versions joined by `,`) and the result."""
        asked = self._asked(request)
        if self.approvals is None or asked.revision.pinned:
            return self._checked_at(asked)  # a commit id asked for is served as asked
        waiting = [(one, self._approved(asked, one)) for one in asked.revisions]
        if len(asked.revisions) > 1:
            held = [one for one, approved in waiting if approved is not None]
            if held:
                raise BrokenEnvironment(
                    f"{AWAITING_APPROVAL} (at labels {asked.revision.label}: {held[0].label} "
                    f"{held[0].version[:12]} changes a protected environment)",
                    (Problem(POLICY_FILE, None, AWAITING_APPROVAL),),
                )
            return self._checked_at(asked)
        revision, approved = waiting[0]
        if approved is None:
            return self._checked_at(asked)
        older = replace(revision, version=approved)
        revisions, served, resolved = self._checked_at(replace(asked, revisions=[older], revision=older))
        reason = None if self._broken_head(asked, served.version) else AWAITING_APPROVAL
        return revisions, replace(served, held_back=revision.version, hold_reason=reason), resolved

    def _broken_head(self, asked: _Asked, served: str) -> bool:
        """Whether the label's head, held back for an approval, is broken too (a malformed policy,
        a schema): then it is held back as broken (no reason header, listed with its problems in
        `/health`), since no approval makes it servable; `served` is what is served instead."""
        revision = asked.revision
        scope = revision.label if self._label_in_paths else None
        environment_key = _environment_key(asked.application, asked.wanted, scope)
        try:
            self._resolved(asked)
        except BrokenEnvironment as exc:
            if self.verdicts.held(revision.version, environment_key) is None:  # once, not per request
                persist = self.names.known(asked.application, asked.wanted)
                held = HeldBack(revision.version, served, tuple(exc.problems))
                self.verdicts.set_held(environment_key, revision.label, held, persist)
            return True
        return False

    def _approved(self, asked: _Asked, revision: Revision) -> str | None:
        """The last approved version to serve instead of the label's head `revision` for the
        asked environment, or None when the head may be served (`approvals.py`)."""
        assert self.approvals is not None
        scope = revision.label if self._label_in_paths else None

        def etag_at(version: str) -> str | None:
            at = replace(revision, version=version)
            try:
                return self._resolved(replace(asked, revisions=[at], revision=at)).etag
            except BrokenEnvironment:
                return None

        return self.approvals.release(
            revision.label,
            revision.version,
            asked.apps,
            asked.wanted,
            _environment_key(asked.application, asked.wanted, scope),
            etag_at,
        )

    def _checked_at(self, asked: _Asked) -> tuple[list[Revision], Revision, ResolvedEnvironment]:
        """The environment at the asked revisions, or the newest good version when it is broken."""
        application = asked.application
        revisions, revision, wanted = asked.revisions, asked.revision, asked.wanted
        scope = revision.label if self._label_in_paths else None
        environment_key = _environment_key(application, wanted, scope)
        error = self.verdicts.known_broken(revision.version, environment_key)
        if error is None:
            try:
                resolved = self._resolved(asked)
            except BrokenEnvironment as exc:
                error = exc
            else:
                return revisions, revision, resolved
        if revision.pinned or len(revisions) > 1:
            where = f"commit {revision.version}" if revision.pinned else f"labels {revision.label}"
            raise BrokenEnvironment(f"{error} (at {where})", error.problems)

        def is_good(version: str) -> bool:
            older = replace(revision, version=version)
            try:
                self._resolved(replace(asked, revisions=[older], revision=older))
                return True
            except BrokenEnvironment:
                return False

        held = self.last_good.hold_back(
            revision.version,
            environment_key,
            revision.label,
            error,
            is_good,
            persist=lambda: self.names.known(application, wanted),  # not asked on a remembered verdict
        )
        if held.good is None:
            raise BrokenEnvironment(
                f"{error} (at {revision.label} {revision.version[:12]}, and no good commit in the "
                f"{self.last_good.max_walk} before it)",
                error.problems,
            )
        good = replace(revision, version=held.good, held_back=revision.version)
        return [good], good, self._resolved(replace(asked, revisions=[good], revision=good))

    def _asked(self, request: EnvironmentRequest) -> _Asked:
        """The request's label(s) resolved (a later label's sources win)."""
        apps, wanted = request.applications, request.profile_names
        labels: tuple[str | None, ...] = request.labels if request.labels is not None else (None,)
        pinned = self._pinned(request, labels[0]) if len(labels) == 1 and len(apps) == 1 else None
        revisions = [pinned] if pinned is not None else [self.backend.resolve(one) for one in labels]
        if len(revisions) == 1:
            revision = revisions[0]
        else:
            revision = Revision(",".join(r.label for r in revisions), ",".join(r.version for r in revisions))
        return _Asked(revisions, revision, request.application, apps, wanted, request.label)

    def is_pinned(self, request: EnvironmentRequest) -> bool:
        """Whether the request's environment (one application, one label) is pinned now."""
        labels = request.labels if request.labels is not None else (None,)
        if self.pins.empty or len(labels) != 1 or len(request.applications) != 1:
            return False
        return self._pinned(request, labels[0]) is not None

    def _pinned(self, request: EnvironmentRequest, label: str | None) -> Revision | None:
        """The pinned revision of a one-application, one-label request, None when it is not pinned:
        the pinned commit stands for the label (a commit id: nothing is held back in its place)."""
        if self.pins.empty:
            return None
        name = label if label is not None else self.backend.default_label()
        pin = self.pins.find(request.application, ",".join(request.profile_names), name)
        if pin is None:
            return None
        return Revision(name, pin.version, pinned=True, pin=pinned_header(pin))

    def held_back_environments(self) -> list[tuple[str, str, str]]:
        """(application, profiles, label) of every environment held back now (the metrics gauge);
        names the repository does not hold are `other`."""
        return [
            (*self.names.environment_labels(row["application"], row["profiles"]), row["label"] or "")
            for row in self.held_back()
        ]

    def held_back_for(self, application: str | None = None) -> list[dict[str, Any]]:
        """The console's view: `{"application", "profiles", "label", "commit", "served", "error"}` per
        held-back environment (`served`: the version answered instead, None when none is good), of
        one application or (None) of all of them; those waiting for a
        release approval also `"awaiting_approval": True` (the console's approve button)."""
        return [
            {
                "application": row["application"],
                "profiles": row["profiles"],
                "label": row["label"],
                "commit": row["brokenVersion"],
                "served": row["servedVersion"],
                "error": _problem_text(row["problems"]),
            }
            for row in self.held_back()
            if application is None or row["application"] == application
        ] + [
            {
                "application": row["application"],
                "profiles": row["profiles"],
                "label": row["label"],
                "commit": row["waitingVersion"],
                "served": row["servedVersion"],
                "error": f"{AWAITING_APPROVAL}: serving {row['servedVersion'][:12]}",
                "awaiting_approval": True,
            }
            for row in self.awaiting_approval(application)
        ]

    def awaiting_approval(self, application: str | None = None) -> list[dict[str, Any]]:
        """Environments whose label's head waits for a release approval (of one application, or
        all): `{"application", "profiles", "label", "waitingVersion", "servedVersion", "reason"}`."""
        if self.approvals is None:
            return []
        return [waiting.to_json() for waiting in self.approvals.waiting(application)]

    def _resolved(self, asked: _Asked) -> ResolvedEnvironment:
        """The checked environment at the asked revisions, from the cache; BrokenEnvironment when broken.

        Only good environments are cached; a broken one is remembered in the verdict store
        (`self.verdicts`, asked before the cache by `_environment` and here on a miss), so it is
        resolved once per version, not once per request.
        """
        revision, application, wanted = asked.revision, asked.application, asked.wanted
        scope = revision.label if self._label_in_paths else None
        key = (revision.version, application, wanted, scope)

        def compute() -> ResolvedEnvironment:
            environment_key = _environment_key(application, wanted, scope)
            known = self.verdicts.known_broken(revision.version, environment_key)
            if known is None:
                try:
                    resolved = self._carried(asked, scope) or self._shared(asked, scope)
                    if len(asked.revisions) == 1:
                        self.cache.note_newest((application, wanted, scope), revision.version, resolved)
                    return resolved
                except BrokenEnvironment as exc:
                    persist = self.names.known(application, wanted)  # a hostile name is not stored
                    self.verdicts.remember_broken(revision.version, environment_key, exc, persist)
                    if self.on_broken is not None:
                        self.on_broken(self.names.application_label(application))
                    known = exc
            raise BrokenEnvironment(str(known), known.problems)  # a fresh one: no traceback kept

        return self.cache.get_or_compute(key, compute)

    def _carried(self, asked: _Asked, scope: str | None) -> ResolvedEnvironment | None:
        """The environment's last good resolution, moved to the asked version, when the change
        between the two versions touched none of its applications' files nor a file every
        environment reads or is checked with (a shared `application*` file, a schema, the
        approval policy: `changed_files.TouchedBetween`): a commit to `orders.yml` does not make
        `/payments/default` parse and check its files again. None otherwise, or with several
        labels."""
        if len(asked.revisions) != 1:
            return None
        newest = self.cache.newest((asked.application, asked.wanted, scope))
        if newest is None:
            return None
        version, resolved = newest
        touched = self._touched(version, asked.revision.version)
        if touched is None or not touched.isdisjoint(asked.apps):
            return None
        return resolved.moved_to(asked.revision.version)

    def _shared(self, asked: _Asked, scope: str | None) -> ResolvedEnvironment:
        """The checked environment, resolved once for every spelling of it at one version:
        `/orders/prod,p1` is answered from the resolution of `/orders/prod,p2` when neither `p1`
        nor `p2` names a file or is mentioned by an activation expression (`ProfileRelevance`),
        respelled. Not shared: several labels, a `{profile}` search path, a broken environment."""
        if len(asked.revisions) != 1 or self._profile_in_paths:
            return self._checked(asked)
        revision = asked.revision
        where = (revision.version, asked.apps, scope)
        with_files = self.relevance.known_files(where)
        if with_files is not None:
            named = self.relevance.named(where, frozenset(p for p in asked.wanted if p in with_files))
            if named is not None:
                relevant = profile_rules.relevant(asked.wanted, with_files, named)
                same = self.cache.peek(("same", revision.version, asked.application, relevant, scope))
                if same is not None:
                    return same.respelled(asked.wanted)
        noted: set[str] = set()
        resolved = self._checked(asked, noting_profiles(noted))
        # listed once the version proved readable (a made-up commit id is broken, not an error)
        with_files = self.relevance.with_files(where, lambda: self._profiles_with_files(revision, asked.apps))
        read_for = frozenset(p for p in asked.wanted if p in with_files)
        self.relevance.learn(where, read_for, frozenset(noted))
        relevant = profile_rules.relevant(asked.wanted, with_files, frozenset(noted))
        self.cache.put(("same", revision.version, asked.application, relevant, scope), resolved)
        return resolved

    def _profiles_with_files(self, revision: Revision, apps: tuple[str, ...]) -> frozenset[str]:
        """The profiles that name a file of `apps` (or a shared one) in the folders they search."""
        stems = [
            stem
            for folder in self._folders(revision, apps, ())
            for stem in map(source_stem, self.backend.listing(revision.version, folder).files)
            if stem is not None
        ]
        return profiles_with_files(apps, stems)

    def _checked(self, asked: _Asked, parse: ParseFile = parse_file) -> ResolvedEnvironment:
        """Resolve, decrypt and check the asked environment (BrokenEnvironment when it is broken),
        the server's overrides first."""
        environment = checked_environment(
            lambda: self._combined(asked, parse),
            asked.apps,
            _reader(self.backend, asked.revisions),
            self.backend.uri,
            self.keyring,
        )
        return ResolvedEnvironment(self._with_overrides(environment))

    def _combined(self, asked: _Asked, parse: ParseFile = parse_file) -> Environment:
        """The files of every label, a later label's first (not yet decrypted nor checked)."""
        files = [
            self._files(asked.application, asked.apps, asked.wanted, asked.label, one, parse)
            for one in asked.revisions
        ]
        sources = tuple(source for env in reversed(files) for source in env)
        return Environment(asked.application, asked.wanted, asked.label, asked.revision.version, sources)

    def held_back(self, limit: int = 100) -> list[dict[str, Any]]:
        """Environments whose label's newest commit is held back right now, with the reasons."""
        out = []
        for row in self.verdicts.held_rows(limit * 4):
            try:
                current = self.backend.resolve(row["label"]).version if row["label"] else None
            except ConfigServerError:
                continue
            if current is not None and current != row["head"]:
                continue  # the label moved on since
            application, _, profiles = row["environment"].partition("/")
            out.append(
                {
                    "application": application,
                    "profiles": profiles,
                    "label": row["label"],
                    "brokenVersion": row["head"],
                    "servedVersion": row["good"],
                    "problems": [p.to_json() for p in row["problems"]],
                }
            )
            if len(out) >= limit:
                break
        return out

    def _files(
        self,
        application: str,
        apps: tuple[str, ...],
        wanted: tuple[str, ...],
        label: str | None,
        revision: Revision,
        parse: ParseFile = parse_file,
    ) -> tuple[PropertySource, ...]:
        """The property sources of the files at one resolved label, most specific first."""
        request = Request(application, wanted, label, apps)
        folders = self._folders(revision, apps, wanted)
        resolved = resolve_environment(
            request,
            revision.version,
            folders,
            lambda path: self.backend.read(revision.version, path),
            self.backend.uri,
            parse,
        )
        return resolved.property_sources

    def _with_overrides(self, environment: Environment) -> Environment:
        """The environment with the `overrides` source first, its placeholders resolved against it."""
        if not self.overrides:
            return environment
        merged = render.merge((PropertySource(OVERRIDES, self.overrides), *environment.property_sources))
        values = {
            key: _resolve_override(key, value, merged) if isinstance(value, str) else value
            for key, value in self.overrides.items()
        }
        return replace(
            environment, property_sources=(PropertySource(OVERRIDES, values), *environment.property_sources)
        )

    def raw_environment(self, application: str, profiles: str, label: str | None) -> Environment:
        """The files' settings as committed, `{cipher}` values still encrypted, without the server's
        overrides (history diffs); not cached."""
        return self._combined(self._asked(EnvironmentRequest.parse(application, profiles, label)))

    def resource(
        self,
        request: EnvironmentRequest,
        path: str,
        authorize: Callable[[list[Readings], str], None] | None = None,
    ) -> tuple[bytes, str, Revision]:
        """A plain-text file with placeholders substituted; returns (content, repository path, the
        revision served: its held-back commit, hold reason and pin go in the answer's headers as
        for an Environment, `answer_headers`).

        For `nginx.conf` and profile `prod` it looks for `nginx-prod.conf` before `nginx.conf`,
        in the search paths (later first) before the root; with several labels, in the later
        label first. `authorize` is called with what the file found denotes
        (`denoted_environments`) and the label it was found at, before its content is used, and
        raises to refuse it.
        """
        safe_path = names.validate_path(path)
        unknown = self._admitted(request)  # `deny` refuses a file of an unknown application too
        revisions, revision, resolved = self._environment(request)
        revision = replace(revision, unknown=unknown)
        apps = request.applications
        wanted = resolved.environment.profiles
        stem, ext = posixpath.splitext(safe_path)
        candidates = [f"{stem}-{p}{ext}" for p in reversed(wanted)]
        candidates.append(safe_path)
        for one in reversed(revisions):
            folders = self._folders(one, apps, wanted)
            for candidate in candidates:
                for folder in reversed(folders):
                    full = f"{folder}/{candidate}" if folder else candidate
                    data = self.backend.read(one.version, full)
                    if data is None:
                        continue
                    if authorize is not None:
                        authorize(self.denoted_environments(full, apps, wanted, folders), one.label)
                    try:
                        text = data.decode("utf-8")
                    except UnicodeDecodeError:
                        return data, full, revision
                    try:
                        content = render.resolve_text(text, resolved.merged).encode("utf-8")
                        return content, full, revision
                    except render.ExpansionTooLarge as exc:
                        raise ConfigLimitExceeded(
                            f"{full}: placeholder ${{{shorten(exc.placeholder)}}}: placeholders add "
                            f"more than {MAX_EXPANSION_CHARS} characters to the file"
                        ) from None
        raise ResourceNotFound(f"no file {safe_path!r} at label {revision.label!r}")

    def denoted_environments(
        self,
        path: str,
        apps: tuple[str, ...],
        profiles: tuple[str, ...],
        searched: Sequence[str] = (),
    ) -> list[Readings]:
        """What a served file is the configuration of: groups of readings, one of each must be allowed.

        Its name (`file_names.file_readings`), and its folder when that is not one of the folders
        `searched` for this request but a search path names it after an application or profile
        (`{application}`): `payments/application.yml` asked for as `orders` is the configuration
        of `payments`. Empty for a template in an ordinary folder. `apps` and `profiles` are
        what the request asked for (and was allowed).
        """
        folder, _, name = path.rpartition("/")
        groups: list[Readings] = []
        named = file_readings(name, apps, profiles)
        if named is not None:
            groups.append(named)
        if folder in searched:
            return groups
        for pattern in self._named_folders:
            match = pattern.fullmatch(folder)
            if match:
                owner = match.groupdict().get("application")
                profile = match.groupdict().get("profile")
                owners = (owner,) if owner else apps
                groups.append([(one, (profile,) if profile else profiles) for one in owners])
        return groups

    def folders(self, revision: Revision, apps: tuple[str, ...], profiles: tuple[str, ...]) -> list[str]:
        """Where an environment's files are looked for: the root, then every search path."""
        return self._folders(revision, apps, profiles)

    def _folders(self, revision: Revision, apps: tuple[str, ...], profiles: tuple[str, ...]) -> list[str]:
        """The root, then every search path (placeholders filled, globs expanded), in order."""
        folders = [""]
        for pattern in self.search_paths:
            for app in apps:
                for expanded in search_path_folders(pattern, app, profiles, revision.label):
                    for folder in self._glob(revision.version, expanded):
                        if folder not in folders:
                            folders.append(folder)
        return folders

    def _glob(self, version: str, pattern: str) -> list[str]:
        parts = [p for p in pattern.split("/") if p and p != "."]
        if any(p == ".." for p in parts):
            return []
        if not any(_GLOB_CHARS & set(p) for p in parts):
            return ["/".join(parts)]
        found = [""]
        for part in parts:
            nxt: list[str] = []
            for base in found:
                children = sorted(self.backend.listing(version, base).folders)
                matched = (
                    fnmatch.filter(children, part)
                    if _GLOB_CHARS & set(part)
                    else ([part] if part in children else [])
                )
                nxt.extend(f"{base}/{m}" if base else m for m in matched)
            found = nxt
        return found


def _decrypted_overrides(overrides: dict[str, Any], keyring: Keyring | None) -> dict[str, Any]:
    """The flat overrides with `{cipher}` values decrypted (or marked invalid), once at start-up."""
    if not overrides:
        return {}
    holder = Environment(OVERRIDES, (), None, "", (PropertySource(OVERRIDES, overrides),))
    return decrypt_environment(holder, keyring).environment.property_sources[0].source


def _resolve_override(key: str, value: str, merged: Mapping[str, Any]) -> str:
    """An override's placeholders resolved against the environment, bounded like any value."""
    try:
        return render.resolve_text(value, merged, max(MAX_VALUE_CHARS, len(value)))
    except render.ExpansionTooLarge as exc:
        raise ConfigLimitExceeded(f"{OVERRIDES}: key {shorten(key)!r}: {exc}") from None


def _reader(backend: Backend, revisions: list[Revision]) -> ReadFile:
    """Reads a file from the latest label that has it (where problems and schemas are looked up)."""

    def read(path: str) -> bytes | None:
        for one in reversed(revisions):
            data = backend.read(one.version, path)
            if data is not None:
                return data
        return None

    return read


def _problem_text(problems: list[dict[str, Any]]) -> str:
    if not problems:
        return ""
    first = problems[0]
    where = first.get("file") or "-"
    if first.get("line"):
        where = f"{where}:{first['line']}"
    return f"{where}: {first.get('message', '')}"


def _environment_key(app: str, profiles: tuple[str, ...], scope: str | None) -> str:
    """How the verdict store names an environment: `orders/prod,eu` (`@label` when paths use it)."""
    return f"{app}/{','.join(profiles)}" + (f"@{scope}" if scope is not None else "")
