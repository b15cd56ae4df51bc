"""Backup and restore of the embedded state store (`<data-dir>/state.db`), online, with SQLite's own
backup API (`sqlite3.Connection.backup`).

The state store holds what git cannot give back: rollout records (start, halt time and reason),
their rejections and canary answers, and the instance inventory. A backup is one self-contained
SQLite file (rollback journal, no `-wal` beside it), written while workers keep writing: the API
copies a consistent snapshot and starts again by itself when a writer changed a page it had
copied. A restore first checks that the file is a state store (SQLite's integrity check and the
tables), then copies it into the target through the same API, in one step, so a reader of the
target sees either the old store or the restored one, never a mix.

Redis (cluster mode) is not backed up here: use Redis's own persistence (RDB snapshots or AOF).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from config_server.errors import BackupError

#: The tables a file must hold to be restored as a state store.
STATE_TABLES = frozenset({"instances", "served_versions", "rollouts", "rollout_rejections", "rollout_served"})

#: The state store's file name under `--data-dir`.
STATE_FILE = "state.db"

#: How long the backup waits for another process's write lock, in seconds.
_BUSY_TIMEOUT_S = 30.0


def backup_state(source: str | Path, target: str | Path) -> dict[str, int]:
    """Copy the state store at `source` into a new file `target` (replacing one that exists, through
    a temporary file beside it and a rename); returns the rows per table in the copy."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise BackupError(f"no state store at {source} (is --data-dir right?)")
    if target.resolve() == source.resolve():
        raise BackupError(f"{target} is the state store itself: back it up to another file")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    partial.unlink(missing_ok=True)
    try:
        with closing(_open(source)) as origin, closing(_open(partial)) as copy:
            origin.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one file: no -wal, no -shm beside it
        counts = check_state_file(partial)
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {source}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return counts


def restore_state(backup: str | Path, target: str | Path, force: bool = False) -> dict[str, int]:
    """Copy the backup file into the state store at `target`; returns the rows per table restored.

    An existing store is replaced only with `force` (it may be a live server's, and the restore
    throws away whatever it recorded since the backup): without it a BackupError is raised and
    the store is left as it is."""
    backup, target = Path(backup), Path(target)
    if not backup.is_file():
        raise BackupError(f"no backup file at {backup}")
    counts = check_state_file(backup)
    if target.exists() and not force:
        raise BackupError(
            f"{target} exists: stop the server and give --force to replace it with {backup} "
            "(what was recorded since the backup is lost)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with closing(_open(backup)) as origin, closing(_open(target)) as store:
            origin.backup(store)  # one step (pages=-1): the target changes in one transaction
            store.execute("PRAGMA journal_mode=WAL")  # as the server opens it
    except sqlite3.Error as exc:
        raise BackupError(f"cannot restore into {target}: {exc}") from exc
    return counts


def check_state_file(path: str | Path) -> dict[str, int]:
    """The rows per table of a state store file; BackupError when it is not a sound one."""
    try:
        with closing(sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)) as conn:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise BackupError(f"{path} is damaged: {verdict}")
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = STATE_TABLES - tables
            if missing:
                raise BackupError(
                    f"{path} is not a config-server state store (no {', '.join(sorted(missing))})"
                )
            return {
                name: conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
                for name in sorted(STATE_TABLES)
            }
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a SQLite state store: {exc}") from exc


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
