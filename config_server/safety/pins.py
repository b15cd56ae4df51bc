"""Pins: environments answered a version they served before, whatever lands on their label.

A pin names one environment as instances ask for it (one application, its profiles, one label)
and a commit of that label's history. While it stands, `ConfigService` resolves that environment
at the pinned commit instead of the label's head (`PinBoard.find`), and every answer carries
`X-Config-Pinned: <commit>; by=<client>`. The board is this worker's copy of the pins in the state
store: `delivery/pin_sync.py` keeps it current (and wakes the long polls a pin moves); requests
only read memory.

What may be pinned (`pinnable_version`): a commit reachable from the label's head (within
`MAX_PIN_WALK` commits), at which the environment is good (not broken). Serving it needs nothing
but the repository's objects: a mirror keeps every commit it ever fetched, so a pin is served while
the remote is unreachable.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable

from config_server.backends.base import Backend, Revision
from config_server.errors import LabelNotFound, NotPinnable
from config_server.state.base import PinRecord

#: The most commits walked back from a label's head to find the version to pin.
MAX_PIN_WALK = 10_000

PinKey = tuple[str, str, str]  # application, profiles (`prod,eu`), label


class PinBoard:
    """This worker's copy of every pin, read on each request without I/O.

    `generation` moves with every change, so the long-poll hub (`watch_hub.WatchHub._head`)
    resolves its slots again when a pin moved, as it does when a label moved.
    """

    def __init__(self) -> None:
        self._pins: dict[PinKey, PinRecord] = {}
        self._lock = threading.Lock()
        #: Counts the changes of the board: part of what a long-poll slot's answer depends on.
        self.generation = 0

    @property
    def empty(self) -> bool:
        """True when nothing is pinned (what every request asks first)."""
        return not self._pins

    def find(self, application: str, profiles: str, label: str) -> PinRecord | None:
        """The pin of an environment, None when it is not pinned."""
        if not self._pins:
            return None  # the common case: nothing pinned, nothing to look up
        return self._pins.get((application, profiles, label))

    def records(self) -> list[PinRecord]:
        """Every pin, by application, profiles and label."""
        with self._lock:
            return sorted(self._pins.values(), key=lambda pin: pin.key)

    def replace(self, records: Iterable[PinRecord]) -> set[str]:
        """Make `records` the pins; the applications whose pins changed (added, moved, removed)."""
        new = {pin.key: pin for pin in records}
        with self._lock:
            old = self._pins
            changed = {
                key[0] for key in old.keys() | new.keys() if _served(old.get(key)) != _served(new.get(key))
            }
            self._pins = new
            if changed or old != new:
                self.generation += 1
        return changed


def _served(pin: PinRecord | None) -> tuple[str, str] | None:
    """What a pin changes in an answer: its version and its header."""
    return None if pin is None else (pin.version, pin.by)


def pinned_header(pin: PinRecord) -> str:
    """The value of `X-Config-Pinned`: `<commit>; by=<client>`."""
    return f"{pin.version}; by={pin.by}"


def pinnable_version(backend: Backend, head: Revision, version: str, max_walk: int = MAX_PIN_WALK) -> str:
    """The full commit id of `version` (a full or abbreviated id) when it is on the history of
    `head` (the label's newest commit, or one of its ancestors within `max_walk` commits); raises
    NotPinnable otherwise."""
    try:
        full = backend.resolve(version).version
    except LabelNotFound:
        raise NotPinnable(f"no commit {version!r} in the repository") from None
    if not reachable(backend.parents, head.version, full, max_walk):
        raise NotPinnable(
            f"commit {full[:12]} is not on the history of label {head.label!r} "
            f"(within its {max_walk} newest commits): only a version the label served may be pinned"
        )
    return full


def reachable(parents: Callable[[str], list[str]], head: str, wanted: str, max_walk: int) -> bool:
    """Whether `wanted` is `head` or one of its ancestors, walking at most `max_walk` commits."""
    seen = {head}
    frontier = deque([head])
    while frontier and len(seen) <= max_walk:
        commit = frontier.popleft()
        if commit == wanted:
            return True
        for parent in parents(commit):
            if parent not in seen:
                seen.add(parent)
                frontier.append(parent)
    return wanted in seen
