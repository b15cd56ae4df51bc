"""Which application and profile names the repository holds: the only names that may name a metric
series or a persisted verdict.

Application names and profiles in a request are hostile: an unknown application is still served
(the shared `application*` files), so with a broken shared file every random name would otherwise
become a new Prometheus series in every worker, a new `/health` entry and new verdict rows. Names
the repository holds at the default label (its configuration files, in the root and in the search
paths' folders) keep their own name; anything else is counted under `other` and its verdicts are
kept in memory only (bounded), never persisted per name.

`KnownNames` lists the default label once per commit; which names a folder's files hold is
`file_names.applications_from_files` (the one file-name mapping).
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Sequence

from config_server.backends.base import Backend
from config_server.content.file_names import applications_from_files, listed_search_folders, shared_profiles
from config_server.errors import ConfigServerError

#: The name every unknown application (or profile) is counted under.
OTHER = "other"
#: The profile every environment has.
DEFAULT_PROFILE = "default"
#: Unknown names whose closest known name is remembered per commit (hostile names are unbounded).
_MAX_CLOSEST_REMEMBERED = 4096


class KnownNames:
    """The applications and profiles of the default label, listed once per commit of it."""

    def __init__(self, backend: Backend, search_paths: Sequence[str] = ()) -> None:
        self.backend = backend
        self.search_paths = tuple(search_paths)
        self._lock = threading.Lock()
        self._version: str | None = None
        self._apps: dict[str, frozenset[str]] = {}
        self._shared: frozenset[str] = frozenset()
        self._closest: dict[str, str | None] = {}

    def application_label(self, application: str) -> str:
        """`application` when the repository holds every name it lists, else `other`."""
        apps, _ = self._names()
        return application if all(name in apps for name in application.split(",")) else OTHER

    def environment_labels(self, application: str, profiles: str | Sequence[str]) -> tuple[str, str]:
        """(application, profiles) to label a series with: either one unknown becomes `other`."""
        if not self.known(application, profiles):
            known_app = self.application_label(application)
            return known_app, OTHER
        return application, profiles if isinstance(profiles, str) else ",".join(profiles)

    def known(self, application: str, profiles: str | Sequence[str]) -> bool:
        """Whether the repository holds the application(s) and every profile asked for."""
        apps, shared = self._names()
        names = application.split(",")
        if not all(name in apps for name in names):
            return False
        wanted = profiles.split(",") if isinstance(profiles, str) else list(profiles)
        allowed = set(shared).union(*(apps[name] for name in names))
        return all(p == DEFAULT_PROFILE or p in allowed for p in wanted)

    def unknown(self, application: str) -> tuple[tuple[str, str | None], ...]:
        """Each name `application` lists that no file of the repository names, with the known
        application closest to it (`difflib`), or None when none is close; () when all are known.

        An empty repository listing (never listed, or nothing there) knows no names: nothing is
        called unknown then, as the repository cannot say."""
        apps, _ = self._names()
        if not apps:
            return ()
        missing = [name for name in application.split(",") if name not in apps]
        return tuple((name, self._closest_to(name, apps)) for name in missing)

    def _closest_to(self, name: str, apps: dict[str, frozenset[str]]) -> str | None:
        """The known application closest to `name`, remembered for the commit listed."""
        with self._lock:
            if name in self._closest:
                return self._closest[name]
        found = difflib.get_close_matches(name, list(apps), n=1)
        closest = found[0] if found else None
        with self._lock:
            if len(self._closest) < _MAX_CLOSEST_REMEMBERED:
                self._closest[name] = closest
        return closest

    def _names(self) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
        try:
            version = self.backend.resolve(None).version
        except ConfigServerError:
            return self._apps, self._shared
        if version == self._version:
            return self._apps, self._shared
        try:
            apps, shared = self._listed(version)
        except ConfigServerError:
            return self._apps, self._shared
        with self._lock:
            self._version, self._apps, self._shared = version, apps, shared
            self._closest = {}
        return apps, shared

    def _listed(self, version: str) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
        """Applications and shared profiles in the root and in every search path's folder.

        A search path whose first part is `{application}` names an application per root folder.
        """
        found: dict[str, set[str]] = {}
        shared: set[str] = set()
        folders, root_folders_are_applications = listed_search_folders(self.search_paths)
        if root_folders_are_applications:
            for name in self.backend.listing(version, "").folders:
                found.setdefault(name, set())
        for folder in folders:
            files = self.backend.listing(version, folder).files
            shared |= shared_profiles(files)
            for app, profiles in applications_from_files(files).items():
                found.setdefault(app, set()).update(profiles)
        return {app: frozenset(p) for app, p in found.items()}, frozenset(shared)
