"""The state store: one interface (`base.StateStore`), chosen once at start-up by `open_state_store`."""

from __future__ import annotations

from pathlib import Path

from config_server.state.base import (
    InstanceRecord,
    InstanceReport,
    PinRecord,
    RolloutRecord,
    RolloutRejection,
    ScheduleAnchor,
    StateStore,
)
from config_server.state.sqlite import SQLiteStateStore

__all__ = [
    "InstanceRecord",
    "InstanceReport",
    "PinRecord",
    "RolloutRecord",
    "RolloutRejection",
    "ScheduleAnchor",
    "StateStore",
    "SQLiteStateStore",
    "open_durable_copy",
    "open_state_store",
]


def open_state_store(data_dir: str | Path, redis_url: str | None = None) -> StateStore:
    """The embedded SQLite store under `data_dir` (`state.db`), shared by every worker of this
    machine; in cluster mode (`redis_url`) the Redis store, shared by every replica."""
    if redis_url:
        from config_server.state.redis import RedisStateStore

        return RedisStateStore(redis_url)
    return SQLiteStateStore(Path(data_dir) / "state.db")


def open_durable_copy(data_dir: str | Path, redis_url: str | None = None) -> StateStore | None:
    """In cluster mode, the SQLite store under `data_dir`, where each machine keeps a durable copy
    of what it knows of rollouts (`rollout_memory`: a Redis that lost its records gets them back);
    None otherwise, where the state store is that file itself."""
    return SQLiteStateStore(Path(data_dir) / "state.db") if redis_url else None
