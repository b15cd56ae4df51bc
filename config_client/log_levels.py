"""Log levels from settings, as Spring does: `logging.level.<logger>: LEVEL` and `logging.level.root`.

`levels_from(values)` reads them (a level Python does not know rejects the version, naming the
key); `LevelApplier` sets them on Python's `logging` and, when a key disappears, gives that logger
back the level it had before the client first touched it. Names are case-insensitive; Spring's
`TRACE` (5, below DEBUG) and `OFF` (above CRITICAL) are understood besides Python's own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from config_client.errors import RejectedVersion

PREFIX = "logging.level."
_SPRING_LEVELS = {"TRACE": 5, "OFF": logging.CRITICAL + 10}


def levels_from(values: Mapping[str, Any], version: str | None = None) -> dict[str, int]:
    """Logger name ("" for root) -> level for every `logging.level.*` key; RejectedVersion names
    the first key whose value is not a level."""
    known = {**logging.getLevelNamesMapping(), **_SPRING_LEVELS}
    levels: dict[str, int] = {}
    for key in sorted(values):
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        value = values[key]
        level = known.get(value.strip().upper()) if isinstance(value, str) else None
        if level is None or not name:
            raise RejectedVersion(version, f"{key}: {value!r} is not a log level")
        levels["" if name == "root" else name] = level
    return levels


class LevelApplier:
    """Applies level maps to `logging`, restoring a logger's first-seen level when its key goes."""

    def __init__(self) -> None:
        self._original: dict[str, int] = {}
        self._applied: dict[str, int] = {}
        self._lock = threading.Lock()

    def apply(self, levels: Mapping[str, int]) -> None:
        """Make `logging` match `levels` (and undo keys no longer present)."""
        with self._lock:
            for name in set(self._applied) - set(levels):
                logging.getLogger(name or None).setLevel(self._original.pop(name))
            for name, level in levels.items():
                logger = logging.getLogger(name or None)
                self._original.setdefault(name, logger.level)
                logger.setLevel(level)
            self._applied = dict(levels)
