"""Keeps this worker's pins (`safety/pins.py:PinBoard`) equal to the state store's, and moves the
long polls a pin moves.

Every worker (and, in cluster mode, every replica) reads the store's pins every `interval`
(half a second): a pin or unpin on any of them is honoured everywhere within that, plus the time
the hub takes to answer its waiters. The worker that takes the action applies it at once. Polling
the store, rather than a message on the cluster link, covers the workers of one machine (SQLite,
no link) and the replicas of a cluster (Redis) with one mechanism, and a message cannot be missed.

A store that cannot be read leaves the pins as last read: a pin keeps being honoured while Redis is
away. A Redis that lost its pins (restarted or flushed without persistence: `pins_intact` is
False) gets back what this worker knew (`restore_pins`), as rollout records do
(`rollout_memory.py`); in cluster mode each machine also keeps a durable copy under `--data-dir`,
read at start, so a cluster restarted with its Redis keeps its pins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from config_server.concurrency import Repeating, call_cooperatively
from config_server.safety.pins import PinBoard, PinKey
from config_server.state import PinRecord, StateStore

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two reads of the store's pins: a pin reaches every worker within this.
PIN_POLL_SECONDS = 0.5


class PinSync:
    """Reads the store's pins into the board; pins and unpins through the store."""

    def __init__(
        self,
        store: StateStore,
        board: PinBoard,
        on_change: Callable[[set[str]], None],
        durable: StateStore | None = None,
        interval: float = PIN_POLL_SECONDS,
    ) -> None:
        self.store = store
        self.board = board
        #: Called with the applications whose pins changed, after the board changed.
        self.on_change = on_change
        self.durable = durable
        self.interval = interval
        self._loop = Repeating(self.refresh, lambda: self.interval, "config-pins")
        self._lock = threading.Lock()
        self._failing = False

    def start(self) -> PinSync:
        """Read the durable copy (cluster mode), then the store, now; then every `interval` in a
        thread (a greenlet under gevent, like the rollout loop)."""
        if self.durable is not None:
            kept = self._durably(self.durable.pins)
            if kept:
                self.board.replace(kept)
        self.refresh()
        self._loop.start()
        return self

    def close(self) -> None:
        """Stop the loop."""
        self._loop.stop(timeout=2)

    def refresh(self) -> set[str]:
        """Read the store's pins into the board (putting back what a store lost first); the
        applications whose pins changed. A store that fails leaves the board as it was."""
        try:
            with self._lock:
                self._restore_if_lost()
                records = self._io(self.store.pins)
                before = {pin.key: pin for pin in self.board.records()}
                changed = self.board.replace(records)
        except Exception as exc:  # noqa: BLE001 - the pins as last read keep being honoured
            if not self._failing:
                log.warning("pins: the state store cannot be read, the pins as last read stand: %s", exc)
            self._failing = True
            return set()
        self._failing = False
        if self.durable is not None and before != {pin.key: pin for pin in records}:
            self._copy(before, records)
        if changed:
            try:
                self.on_change(changed)
            except Exception:  # noqa: BLE001 - the loop must go on; the next commit's check answers them
                log.exception("pins: waking the long polls of %s failed", sorted(changed))
        return changed

    def pin(self, record: PinRecord) -> set[str]:
        """Store a pin and apply it here at once; the applications changed."""
        with self._lock:
            self._restore_if_lost()
            self._io(self.store.put_pin, record)
        return self.refresh()

    def unpin(self, key: PinKey) -> PinRecord | None:
        """Remove a pin from the store and here at once; the pin removed, None when there was none."""
        with self._lock:
            self._restore_if_lost()
            removed = self._io(self.store.remove_pin, *key)
        self.refresh()
        return removed

    def _restore_if_lost(self) -> None:
        """Put back the pins known here into a store that lost them (nothing known: nothing to do)."""
        known = self.board.records()
        if known and not self._io(self.store.pins_intact):
            self._io(self.store.restore_pins, known)
            log.warning(
                "pins: the state store had lost its pins (Redis restarted or flushed?); put back the "
                "%d this worker knew",
                len(known),
            )

    def _copy(self, before: dict[PinKey, PinRecord], records: list[PinRecord]) -> None:
        """Make the durable copy on this machine hold `records`."""
        assert self.durable is not None
        now = {pin.key: pin for pin in records}
        for key in before.keys() - now.keys():
            self._durably(self.durable.remove_pin, *key)
        for key, pin in now.items():
            if before.get(key) != pin:
                self._durably(self.durable.put_pin, pin)

    def _io(self, call: Callable[..., T], *args: Any) -> T:
        return call_cooperatively(self.store, call, *args)

    def _durably(self, call: Callable[..., T], *args: Any) -> T | None:
        """A call on the durable copy; a failure is logged, never raised (the store holds the pins)."""
        assert self.durable is not None
        try:
            return call_cooperatively(self.durable, call, *args)
        except Exception as exc:  # noqa: BLE001 - a copy: a locked or full disk is never fatal
            log.warning("pins: the durable copy on this machine cannot be used: %s", exc)
            return None
