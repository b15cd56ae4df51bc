"""The state store: one interface (`base.StateStore`), chosen once at start-up by `open_state_store`."""

from __future__ import annotations

from pathlib import Path

from config_server.state.base import InstanceRecord, InstanceReport, StateStore
from config_server.state.sqlite import SQLiteStateStore

__all__ = ["InstanceRecord", "InstanceReport", "StateStore", "SQLiteStateStore", "open_state_store"]


def open_state_store(data_dir: str | Path) -> StateStore:
    """The embedded SQLite store under `data_dir` (`state.db`), shared by every worker of this machine."""
    return SQLiteStateStore(Path(data_dir) / "state.db")
