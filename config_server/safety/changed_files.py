"""Which applications a change may touch, from the paths it changed (by file name, never by content).

The watch hub skips a watched environment a commit left alone (`delivery/watch_hub.py`), the
configuration service carries a resolution across such a commit (`ConfigService._carried`), and
the diff resolves only the environments a change may touch (`observability/change_effect.py`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from config_server.backends.base import Backend
from config_server.content.approval_policy import POLICY_FILE
from config_server.content.file_names import applications_reading, source_stem
from config_server.safety.schema_rules import SCHEMA_FOLDER


def touched_applications(changed: Iterable[str]) -> frozenset[str] | None:
    """The applications whose environments the changed files may touch, or None for every one.

    A configuration source names them as `file_names.applications_reading` says (`orders-prod.yml`:
    `orders`' prod file, or the file of an application `orders-prod`; a shared `application*` file:
    every one). So does every file the checks of any environment read (`touches_every_application`).
    Other files (templates, `.json`) are no source of settings and touch none.
    """
    touched: set[str] = set()
    for path in changed:
        if touches_every_application(path):
            return None
        name = path.rpartition("/")[2]
        if source_stem(name) is None:
            continue
        reading = applications_reading(name)
        if reading is None:
            return None
        touched.update(reading)
    return frozenset(touched)


def touches_every_application(path: str) -> bool:
    """Whether a changed file may change the verdict on every environment: the approval policy
    (`policy/approvals.yml`: a malformed one holds every environment back) and any file of the
    schema folder (an application's schema may `$ref` any other file there, another application's
    schema included, and which ones it names is in its content)."""
    return path == POLICY_FILE or path.startswith(SCHEMA_FOLDER + "/")


class TouchedBetween:
    """`touched_applications` of what changed between two versions, memoised per pair (bounded).

    None when every application may be touched or the backend cannot tell (a plain folder)."""

    def __init__(self, backend: Backend, max_pairs: int = 256) -> None:
        self.backend = backend
        self.max_pairs = max_pairs
        self._pairs: OrderedDict[tuple[str, str], frozenset[str] | None] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, old: str, new: str) -> frozenset[str] | None:
        """The applications the change from `old` to `new` may touch (None: every one)."""
        with self._lock:
            if (old, new) in self._pairs:
                self._pairs.move_to_end((old, new))
                return self._pairs[old, new]
        changed = self.backend.changed_paths(old, new)
        touched = None if changed is None else touched_applications(changed)
        with self._lock:
            self._pairs[old, new] = touched
            while len(self._pairs) > self.max_pairs:
                self._pairs.popitem(last=False)
        return touched
