"""The one interface every repository backend offers to the services above it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

#: Files larger than this are refused instead of read into memory.
MAX_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Revision:
    """A label resolved to an immutable version: a commit id, or a content hash for a folder."""

    label: str
    version: str
    #: True when the label named a commit id (not a branch or tag): nothing may be substituted.
    pinned: bool = False
    #: Set when the label's newest commit (this id) is broken for the environment asked for and
    #: `version` is the newest good one before it (`X-Config-Held-Back`); see `last_good.py`.
    held_back: str | None = None
    #: Set when the environment is pinned to `version` (`safety/pins.py`): the value of its answers'
    #: `X-Config-Pinned` header, `<commit>; by=<client>`.
    pin: str | None = None
    #: Why `held_back` is held when it is not broken (`awaiting approval`, `safety/approvals.py`):
    #: `X-Config-Held-Back-Reason`. None for a broken commit (the header is then absent, as before).
    hold_reason: str | None = None
    #: The names of the request no configuration file names, each with the known one closest to it
    #: (`X-Config-Unknown-Application`), worked out once per request by the service; None when
    #: not worked out yet.
    unknown: tuple[tuple[str, str | None], ...] | None = None


@dataclass(frozen=True)
class Listing:
    """The entries of one folder at one version: file names and sub-folder names."""

    files: frozenset[str]
    folders: frozenset[str]


@dataclass(frozen=True)
class Commit:
    """One commit of a history: id, author, time (Unix seconds) and subject line."""

    version: str
    author: str
    time: float
    message: str


class Backend(ABC):
    """Reads configuration files at a version; never changes the repository it reads."""

    #: Prefix of property-source names (`<uri>/orders.yml`); never contains credentials.
    uri: str
    #: How long changes must have stopped before they are checked: 0 where a change is atomic (a
    #: git commit moves a ref); more for a plain folder, where a saved file is first truncated.
    change_settle_seconds: float = 0.0

    @abstractmethod
    def default_label(self) -> str:
        """The label served when a request names none."""

    @abstractmethod
    def resolve(self, label: str | None) -> Revision:
        """Resolve a validated label (or the default) to a version; raise LabelNotFound."""

    @abstractmethod
    def read(self, version: str, path: str) -> bytes | None:
        """The bytes of the file at `path` in `version`, or None when there is no such file."""

    @abstractmethod
    def listing(self, version: str, folder: str) -> Listing:
        """Files and sub-folders of `folder` ('' for the root) in `version`; empty when absent."""

    def history(self, version: str, patterns: list[str], limit: int = 50) -> list[Commit]:
        """Commits reachable from `version` that changed a file matching one of the `patterns`
        (globs on file names, in any folder), newest first. A backend without history has none."""
        return []

    def parents(self, version: str) -> list[str]:
        """The versions `version` was made from, first parent first (none for a plain folder)."""
        return []

    def author(self, version: str) -> tuple[str, str] | None:
        """The commit's author as (name, email); None when unknown (a plain folder has no commits).
        An approver may not approve a commit it wrote (`safety/approvals.py`)."""
        return None

    def changed_paths(self, old: str, new: str) -> frozenset[str] | None:
        """Paths of the files that differ between two versions (added, removed or changed), or None
        when the backend cannot tell (then every file may have changed)."""
        return None

    def refresh(self, max_age: float = 0.0) -> bool:
        """Bring remote state up to date; return True when something may have changed.

        `max_age`: an update that started at most this many seconds ago (by any process) is
        recent enough; 0 asks for one that starts after the call (a webhook's push).
        """
        return False

    def watch_paths(self) -> list[tuple[str, bool]]:
        """(folder, recursive) pairs whose changes may mean a new version (watched with watchdog)."""
        return []

    def is_change_path(self, path: str) -> bool:
        """True when a change to this file under `watch_paths()` may mean a new version."""
        return False

    def health(self) -> dict[str, Any]:
        """A small dict for `/health`: at least `status` ("UP" or "DOWN")."""
        return {"status": "UP"}

    def close(self) -> None:
        """Release processes and handles held by the backend (nothing by default)."""
        return None
