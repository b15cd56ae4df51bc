"""What a server knows of its rollouts' records, to put back what the shared state store lost.

Redis may run without persistence (docs/deployment.md): a restart, a flush or a failover loses
every rollout's record, and a missing record used to start the rollout afresh, un-halting a halted
one. So every worker remembers the records it has read (in memory and, in cluster mode, in a
durable copy on its machine: the rollout tables of the SQLite store under `--data-dir`), and puts
a record back when the store lost it, holds one that cannot be read, or lost its halt, its
resume or its schedule's anchor. A rollout starts afresh only when no server knows it; a halt
stands once any one of them knew it, until an operator's resume newer than it (`resume`), which
no copy from before undoes either: every field of a record only moves forward
(`state.base.restored_fields` merges them).

Only records of rollouts whose file is at its label's head are kept: a record is forgotten (here
and in the durable copy) when its file is seen gone, as the store's own record is ended then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from config_server.concurrency import call_cooperatively
from config_server.errors import InternalError
from config_server.state import RolloutRecord, ScheduleAnchor, StateStore
from config_server.state.base import later_anchor

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # application, base label, rollout id
T = TypeVar("T")


class RolloutMemory:
    """One worker's copy of the rollout records it has read, and the durable copy on its machine."""

    def __init__(self, store: StateStore, durable: StateStore | None = None) -> None:
        self.store = store
        self.durable = durable
        self._known: dict[Key, RolloutRecord] = {}
        self._durable_failing = False

    def load(self) -> None:
        """Read what the durable copy kept from before this worker started (nothing without one)."""
        if self.durable is not None:
            kept = self._durably(self.durable.rollouts) or []
            self._known.update({_key(r): r for r in kept if r.problem is None})

    def settle(self, key: Key, stored: RolloutRecord | None, now: float) -> RolloutRecord:
        """The rollout's record: as stored; put back from what this worker knows when the store has
        none, one that cannot be read, or one without the halt known here; started `now` when
        nobody knew it. It may carry a `problem` (unreadable, and not known here): the caller
        reports it and serves the base label."""
        known = self._known.get(key)
        lost = _lost(stored, known)
        if known is not None and lost is not None:
            record = self._io(self.store.restore_rollout, *key, *_fields(known))
            log.warning(
                "rollout %s/%s %s: its record in the state store %s (Redis restarted, flushed or "
                "failed over?); put back what this worker knew: %s",
                *key,
                lost,
                "halted" if record.halted else "running",
            )
            return record
        if stored is None:
            record = self._io(self.store.start_rollout, *key, now)
            log.info("rollout %s/%s %s started", *key)
            return record
        return stored

    def halt(self, key: Key, reason: str, now: float) -> RolloutRecord:
        """Halt the rollout (the first halt wins), putting its record back when the store lost it
        or cannot read it."""
        known = self._known.get(key)
        started = known.started if known is not None else now
        moves = (known.resumed_at, known.anchor) if known is not None else (None, None)
        record = self._io(self.store.restore_rollout, *key, started, now, reason, *moves)
        self.remember(key, record)
        return record

    def move(self, key: Key, anchor: ScheduleAnchor, resumed_at: float | None = None) -> RolloutRecord:
        """Record an operator's move of the schedule (an advance; with `resumed_at`, a resume that
        ends the halt), putting the record back too when the store lost it."""
        known = self._known.get(key)
        if known is None:
            raise InternalError(f"rollout {key} is not known to this worker")
        started, halted_at, halt_reason, *_ = _fields(known)
        record = self._io(
            self.store.restore_rollout, *key, started, halted_at, halt_reason, resumed_at, anchor
        )
        self.remember(key, record)
        return record

    def remember(self, key: Key, record: RolloutRecord) -> None:
        """Keep a record as read from the store (a record that cannot be read is not kept)."""
        if record.problem is None and self._known.get(key) != record:
            self._known[key] = record
            if self.durable is not None:
                self._durably(self.durable.restore_rollout, *key, *_fields(record))

    def forget(self, key: Key) -> None:
        """Drop a rollout whose file is gone, here and in the durable copy."""
        if self._known.pop(key, None) is not None and self.durable is not None:
            self._durably(self.durable.end_rollout, *key)

    def keys(self) -> Iterable[Key]:
        """The rollouts known here."""
        return list(self._known)

    def _io(self, call: Callable[..., T], *args: Any) -> T:
        return call_cooperatively(self.store, call, *args)

    def _durably(self, call: Callable[..., T], *args: Any) -> T | None:
        """A call on the durable copy; its failure (a full or locked disk) is logged once, never
        raised: the shared store still holds the record."""
        assert self.durable is not None
        try:
            result = call_cooperatively(self.durable, call, *args)
        except Exception as exc:  # noqa: BLE001 - a copy: a locked or full disk is never fatal
            if not self._durable_failing:
                log.warning("rollouts: the durable copy on this machine cannot be written: %s", exc)
            self._durable_failing = True
            return None
        self._durable_failing = False
        return result


def _key(record: RolloutRecord) -> Key:
    return (record.application, record.label, record.rollout_id)


def _lost(stored: RolloutRecord | None, known: RolloutRecord | None) -> str | None:
    """What the store lost of a record known here, in words; None when it lost nothing."""
    if stored is None:
        return "was missing"
    if stored.problem is not None:
        return f"could not be read ({stored.problem})"
    if known is None:
        return None
    if known.halted_at is not None and stored.halted_at is None:
        return "had lost its halt"
    if known.resumed_at is not None and (stored.resumed_at is None or stored.resumed_at < known.resumed_at):
        return "had lost its resume"
    if known.anchor is not None and later_anchor(stored.anchor, known.anchor) != stored.anchor:
        return "had lost an advance or resume of its schedule"
    return None


def _fields(
    record: RolloutRecord,
) -> tuple[float, float | None, str | None, float | None, ScheduleAnchor | None]:
    """What `StateStore.restore_rollout` takes of a record: started, the halt, the resume, the anchor."""
    return record.started, record.halted_at, record.halt_reason, record.resumed_at, record.anchor
