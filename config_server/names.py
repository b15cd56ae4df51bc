"""Validation of the names a caller sends: application, profiles, label and resource path.

Results are cached (bounded), since the same few names arrive on every request.

`EnvironmentRequest` is what an Environment request names, parsed once at the edge (the Flask view
and the fast path) and passed down: the layers below take it and do not validate again.

Every name is hostile until it passes here. A valid label cannot be read by git as an option or
as a revision expression (`HEAD~1`, `main@{yesterday}`, `:/text`), and a valid path cannot leave
the repository.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from config_server.errors import InvalidName

MAX_NAME_LENGTH = 128
MAX_LABEL_LENGTH = 255
MAX_PATH_LENGTH = 1024
#: Most names, or labels, one request may list (`orders,shared`, `main,release-1`).
MAX_LIST_ITEMS = 16

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+\-]*")
_LABEL_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+\-]*")
_PATH_PART = re.compile(r"[^\x00-\x1f\\]+")
#: A key or a value of an instance's labels (`X-Config-Client-Labels`, a rollout's `match:`).
INSTANCE_LABEL = r"[A-Za-z0-9._-]{1,128}"

SLASH_ALIAS = "(_)"

#: `{app}-{profiles}.{ext}`: a rendered document's name (it splits at the last hyphen). A path
#: segment matching it is a rendered document, not an application; defined here once for the
#: Flask routes and the fast path alike.
RENDERED_DOCUMENT = re.compile(r"(?P<app>.+)-(?P<profiles>[^-]+)\.(?P<ext>yml|yaml|properties|json)")


@functools.lru_cache(maxsize=4096)
def validate_application(name: str) -> str:
    """Return `name` when it is a well-formed application name, else raise InvalidName."""
    return _validate_simple(name, "application")


@functools.lru_cache(maxsize=4096)
def validate_applications(text: str) -> tuple[str, ...]:
    """Split `orders,shared` into validated application names, in request order (a later one wins)."""
    return tuple(validate_application(name) for name in _split_list(text, "application"))


@functools.lru_cache(maxsize=4096)
def validate_profiles(profiles: str) -> tuple[str, ...]:
    """Split comma-separated profiles and validate each; an empty list means `default`."""
    if len(profiles) > MAX_NAME_LENGTH * 4:
        raise InvalidName("profiles are too long")
    parts = tuple(p.strip() for p in profiles.split(",") if p.strip())
    if not parts:
        return ("default",)
    return tuple(_validate_simple(p, "profile") for p in parts)


@functools.lru_cache(maxsize=4096)
def validate_label(label: str) -> str:
    """Turn `(_)` into `/` and check the result is a safe git ref name or commit id."""
    if label.startswith(SLASH_ALIAS):
        raise InvalidName(f"label {label!r} must not start with '(_)'")
    real = label.replace(SLASH_ALIAS, "/")
    if not real or len(real) > MAX_LABEL_LENGTH:
        raise InvalidName("label is empty or too long")
    parts = real.split("/")
    for part in parts:
        if not _LABEL_PART.fullmatch(part) or ".." in part or part.endswith((".lock", ".")):
            raise InvalidName(f"label {label!r} is not a valid branch, tag or commit name")
    return real


@functools.lru_cache(maxsize=4096)
def validate_labels(text: str) -> tuple[str, ...]:
    """Split `main,release-1` into validated labels (each with `(_)` as `/`), in request order."""
    return tuple(validate_label(label) for label in _split_list(text, "label"))


def _split_list(text: str, what: str) -> list[str]:
    """The comma-separated elements of `text`; none may be empty, and there are a bounded number."""
    if len(text) > MAX_LIST_ITEMS * (MAX_LABEL_LENGTH + 1):
        raise InvalidName(f"{what} list is too long")
    parts = text.split(",", MAX_LIST_ITEMS)
    if len(parts) > MAX_LIST_ITEMS:
        raise InvalidName(f"at most {MAX_LIST_ITEMS} {what}s may be listed in one request")
    if len(parts) > 1 and not all(parts):
        raise InvalidName(f"{what} list {text!r} has an empty element")
    return parts


@dataclass(frozen=True)
class EnvironmentRequest:
    """The applications, profiles and label(s) one request names: as sent, and validated.

    The text as sent (`application`, `profiles`, `label`) keys the caches and the hub's slots and
    is echoed in answers; the validated tuples are what every check and lookup uses. Build it with
    `parse` (InvalidName, a 400, for a malformed name), never field by field.
    """

    #: The applications as sent (`orders,shared`).
    application: str
    #: The profiles as sent (`prod,eu`; empty means `default`).
    profiles: str
    #: The label(s) as sent (`(_)` for `/`), None for the default label.
    label: str | None
    #: The validated application names, in request order (a later one wins).
    applications: tuple[str, ...]
    #: The validated profile names (`("default",)` when none were sent).
    profile_names: tuple[str, ...]
    #: The validated labels (`/` for `(_)`), in request order; None for the default label.
    labels: tuple[str, ...] | None

    @staticmethod
    def parse(application: str, profiles: str, label: str | None) -> EnvironmentRequest:
        """Validate the names (applications, then profiles, then labels: the first bad one is the
        400's message) into a request; cached, since the same few names arrive on every request."""
        return _parse_request(application, profiles, label)

    def at(self, label: str) -> EnvironmentRequest:
        """The same applications and profiles at one label already validated (a rollout's canary)."""
        return EnvironmentRequest(
            self.application, self.profiles, label, self.applications, self.profile_names, (label,)
        )

    @property
    def applications_text(self) -> str:
        """The applications joined with `,` (what audit lines and instance reports name)."""
        return ",".join(self.applications)

    @property
    def profiles_text(self) -> str:
        """The profiles joined with `,`."""
        return ",".join(self.profile_names)

    @property
    def labels_text(self) -> str | None:
        """The labels joined with `,` (`/` for `(_)`), None for the default label."""
        return None if self.labels is None else ",".join(self.labels)

    def effective_labels(self, default_label: str) -> tuple[str, ...]:
        """The labels asked for, or the default label when none was."""
        return self.labels if self.labels is not None else (default_label,)


@functools.lru_cache(maxsize=4096)
def _parse_request(application: str, profiles: str, label: str | None) -> EnvironmentRequest:
    return EnvironmentRequest(
        application,
        profiles,
        label,
        validate_applications(application),
        validate_profiles(profiles),
        validate_labels(label) if label is not None else None,
    )


def validate_path(path: str) -> str:
    """Normalise a plain-text resource path; refuse absolute paths and any `..` segment."""
    real = path.replace(SLASH_ALIAS, "/")
    if not real or len(real) > MAX_PATH_LENGTH:
        raise InvalidName("resource path is empty or too long")
    if real.startswith("/"):
        raise InvalidName("resource path must be relative to the repository")
    parts = [p for p in real.split("/") if p not in ("", ".")]
    for part in parts:
        if part == ".." or not _PATH_PART.fullmatch(part):
            raise InvalidName(f"resource path {path!r} leaves the repository or is malformed")
    if not parts:
        raise InvalidName("resource path is empty")
    return "/".join(parts)


def _validate_simple(name: str, what: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"{what} name is too long (at most {MAX_NAME_LENGTH} characters)")
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidName(f"{what} name {name!r} is malformed: use letters, digits, '.', '_', '+' and '-'")
    return name
