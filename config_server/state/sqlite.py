"""The embedded state store: one SQLite file (WAL mode) under `--data-dir`, shared by all workers.

WAL lets readers (`GET /instances`, the console, the metrics scrape) run while a worker's flusher
writes. Each call opens its own short-lived connection, so the store is safe from any thread,
greenlet or process without sharing a connection; writers wait for each other at most
`busy_timeout` seconds (the flusher runs on a real thread, never in a request).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from config_server.state.base import (
    MAX_APPROVALS,
    MAX_SERVED_PER_ROLLOUT,
    ApprovalRecord,
    InstanceRecord,
    InstanceReport,
    PinRecord,
    RolloutRecord,
    RolloutRejection,
    ScheduleAnchor,
    StateStore,
    read_time,
    restored_fields,
    rollout_record,
    rollout_rejection,
    served_in,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT NOT NULL,
    application TEXT NOT NULL,
    profiles TEXT NOT NULL,
    label TEXT NOT NULL,
    served TEXT,
    applied TEXT,
    rejected_version TEXT,
    rejected_reason TEXT,
    client_labels TEXT NOT NULL DEFAULT '',
    remote TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    anonymous INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    version_since REAL NOT NULL,
    PRIMARY KEY (instance_id, application, profiles, label)
);
CREATE INDEX IF NOT EXISTS instances_by_application ON instances (application, last_seen);
CREATE INDEX IF NOT EXISTS instances_by_last_seen ON instances (last_seen);
CREATE INDEX IF NOT EXISTS instances_in_order ON instances (application, profiles, label, instance_id);
CREATE TABLE IF NOT EXISTS served_versions (
    version TEXT PRIMARY KEY,
    last_served REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS served_versions_by_time ON served_versions (last_served);
CREATE TABLE IF NOT EXISTS rollouts (
    application TEXT NOT NULL,
    label TEXT NOT NULL,
    rollout_id TEXT NOT NULL,
    started REAL NOT NULL,
    halted_at REAL,
    halt_reason TEXT,
    resumed_at REAL,
    anchor_at REAL,
    anchor_step INTEGER,
    anchor_note TEXT,
    PRIMARY KEY (application, label, rollout_id)
);
CREATE TABLE IF NOT EXISTS rollout_rejections (
    application TEXT NOT NULL,
    label TEXT NOT NULL,
    rollout_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    version TEXT NOT NULL,
    reason TEXT,
    seen REAL NOT NULL,
    caller TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (application, label, rollout_id, instance_id)
);
CREATE TABLE IF NOT EXISTS rollout_served (
    application TEXT NOT NULL,
    label TEXT NOT NULL,
    rollout_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    version TEXT NOT NULL,
    seen REAL NOT NULL,
    PRIMARY KEY (application, label, rollout_id, instance_id, version)
);
CREATE TABLE IF NOT EXISTS pins (
    application TEXT NOT NULL,
    profiles TEXT NOT NULL,
    label TEXT NOT NULL,
    version TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    pinned_by TEXT NOT NULL DEFAULT '',
    pinned_at REAL NOT NULL,
    PRIMARY KEY (application, profiles, label)
);
CREATE TABLE IF NOT EXISTS approvals (
    label TEXT NOT NULL,
    version TEXT NOT NULL,
    approver TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL,
    PRIMARY KEY (label, version, approver)
);
"""

# The running version is COALESCE(applied, served); `version_since` moves only when it changes.
_UPSERT = """
INSERT INTO instances (instance_id, application, profiles, label, served, applied, rejected_version,
    rejected_reason, client_labels, remote, user_agent, anonymous, first_seen, last_seen, version_since)
VALUES (:instance_id, :application, :profiles, :label, :served, :applied, :rejected_version,
    :rejected_reason, :client_labels, :remote, :user_agent, :anonymous, :seen, :seen, :seen)
ON CONFLICT (instance_id, application, profiles, label) DO UPDATE SET
    version_since = CASE
        WHEN COALESCE(excluded.applied, applied, excluded.served, served) IS NOT COALESCE(applied, served)
        THEN excluded.last_seen ELSE version_since END,
    served = COALESCE(excluded.served, served),
    applied = COALESCE(excluded.applied, applied),
    rejected_version = excluded.rejected_version,
    rejected_reason = excluded.rejected_reason,
    client_labels = excluded.client_labels,
    remote = excluded.remote,
    user_agent = excluded.user_agent,
    last_seen = MAX(last_seen, excluded.last_seen)
"""

_SERVED_VERSION = """
INSERT INTO served_versions (version, last_served) VALUES (?, ?)
ON CONFLICT (version) DO UPDATE SET last_served = MAX(last_served, excluded.last_served)
"""

_COLUMNS = (
    "instance_id, application, profiles, label, served, applied, rejected_version, rejected_reason, "
    "client_labels, remote, user_agent, anonymous, first_seen, last_seen, version_since"
)


class SQLiteStateStore(StateStore):
    """The state store in one SQLite database file (created with its folder when missing)."""

    def __init__(self, path: str | Path, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Workers booting together create the file at once: switching to WAL and a schema change
        # racing another may be refused at once ("database is locked", SQLite's busy handler is
        # not asked), so the set-up is tried again until the busy timeout has passed.
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                self._set_up()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def _set_up(self) -> None:
        """WAL mode, the tables, and the columns a state.db of an older server lacks."""
        with closing(self._connect()) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(rollout_rejections)")}
            if "caller" not in columns:  # a state.db written before rejections named their caller
                _add_column(conn, "ALTER TABLE rollout_rejections ADD COLUMN caller TEXT NOT NULL DEFAULT ''")
            columns = {row[1] for row in conn.execute("PRAGMA table_info(rollouts)")}
            for column, kind in _ROLLOUT_MOVES:  # a state.db written before resume and advance
                if column not in columns:
                    _add_column(conn, f"ALTER TABLE rollouts ADD COLUMN {column} {kind}")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        return conn

    def record_instances(self, reports: Sequence[InstanceReport]) -> None:
        """Upsert the reports, and the versions they were served, in one transaction."""
        if not reports:
            return
        rows = [
            {
                "instance_id": r.instance_id,
                "application": r.application,
                "profiles": r.profiles,
                "label": r.label,
                "served": r.served,
                "applied": r.applied,
                "rejected_version": r.rejected_version,
                "rejected_reason": r.rejected_reason,
                "client_labels": r.client_labels,
                "remote": r.remote,
                "user_agent": r.user_agent,
                "anonymous": int(r.anonymous),
                "seen": r.seen,
            }
            for r in reports
        ]
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_UPSERT, rows)
                conn.executemany(_SERVED_VERSION, served_in(reports).items())
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def instances(
        self,
        application: str | None = None,
        profiles: str | None = None,
        label: str | None = None,
        seen_after: float = 0.0,
        limit: int = 10_000,
        accept: Callable[[InstanceRecord], bool] | None = None,
    ) -> list[InstanceRecord]:
        """Matching instances, ordered by environment then instance id; at most `limit`.

        With `accept`, the rows are read in chunks after the last one seen (the order's index)
        until `limit` are accepted or none are left."""
        where = ["last_seen > ?"]
        params: list[str | float] = [seen_after]
        for column, value in (("application", application), ("profiles", profiles), ("label", label)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        wanted = max(0, int(limit))
        if accept is None:
            return [_instance(row) for row in self._select(where, params, wanted)]
        records: list[InstanceRecord] = []
        after: list[str | float] = []
        while len(records) < wanted:
            rows = self._select(
                [*where, "(application, profiles, label, instance_id) > (?, ?, ?, ?)"] if after else where,
                [*params, *after],
                _CHUNK,
            )
            records.extend(r for r in map(_instance, rows) if accept(r))
            if len(rows) < _CHUNK:
                break
            after = list(rows[-1][1:4]) + [rows[-1][0]]
        return records[:wanted]

    def _select(self, where: list[str], params: list[str | float], limit: int) -> list[Any]:
        query = (
            f"SELECT {_COLUMNS} FROM instances WHERE {' AND '.join(where)} "
            "ORDER BY application, profiles, label, instance_id LIMIT ?"
        )
        with closing(self._connect()) as conn:
            return conn.execute(query, [*params, limit]).fetchall()

    def served_versions(self, since: float, limit: int = 10_000) -> list[str]:
        """Versions served after `since`, the most recently served first; at most `limit`."""
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT version FROM served_versions WHERE last_served > ? "
                "ORDER BY last_served DESC, version LIMIT ?",
                (since, max(0, int(limit))),
            ).fetchall()
        return [row[0] for row in rows]

    def prune(self, seen_before: float) -> int:
        """Delete instances not seen, and versions not served, since `seen_before`."""
        with closing(self._connect()) as conn:
            conn.execute("DELETE FROM served_versions WHERE last_served < ?", (seen_before,))
            return conn.execute("DELETE FROM instances WHERE last_seen < ?", (seen_before,)).rowcount

    def start_rollout(self, application: str, label: str, rollout_id: str, now: float) -> RolloutRecord:
        """Insert the record unless it exists, then read it back (another worker may have won)."""
        key = (application, label, rollout_id)
        with closing(self._connect()) as conn:
            conn.execute(_START_ROLLOUT, (*key, now))
            row = conn.execute(_SELECT_ROLLOUT, key).fetchone()
        return rollout_record(*row)

    def rollouts(self) -> list[RolloutRecord]:
        """Every rollout record, by application and label."""
        with closing(self._connect()) as conn:
            rows = conn.execute(
                f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts ORDER BY application, label, rollout_id"
            ).fetchall()
        return [rollout_record(*row) for row in rows]

    def halt_rollout(
        self, application: str, label: str, rollout_id: str, reason: str, now: float
    ) -> RolloutRecord | None:
        """Set the halt unless one is set; return the record as stored."""
        key = (application, label, rollout_id)
        with closing(self._connect()) as conn:
            conn.execute(_HALT_ROLLOUT, (now, reason, *key))
            row = conn.execute(_SELECT_ROLLOUT, key).fetchone()
        return rollout_record(*row) if row else None

    def restore_rollout(
        self,
        application: str,
        label: str,
        rollout_id: str,
        started: float,
        halted_at: float | None,
        halt_reason: str | None,
        resumed_at: float | None = None,
        anchor: ScheduleAnchor | None = None,
    ) -> RolloutRecord:
        """Read the record and write it back repaired (`restored_fields`) in one transaction."""
        key = (application, label, rollout_id)
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    f"SELECT {_ROLLOUT_FIELDS} FROM rollouts WHERE {_ROLLOUT_KEY}", key
                ).fetchone()
                start, halt, reason, resumed, moved = restored_fields(
                    row, started, halted_at, halt_reason, resumed_at, anchor
                )
                conn.execute(
                    f"INSERT OR REPLACE INTO rollouts ({_ROLLOUT_COLUMNS}) VALUES ({', '.join('?' * 10)})",
                    (
                        *key,
                        start,
                        halt,
                        reason,
                        resumed,
                        *((moved.at, moved.step, moved.note) if moved else (None, None, None)),
                    ),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return RolloutRecord(*key, start, halt, reason, None, resumed, moved)

    def end_rollout(self, application: str, label: str, rollout_id: str) -> None:
        """Delete the record and its rejections in one transaction."""
        key = (application, label, rollout_id)
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"DELETE FROM rollouts WHERE {_ROLLOUT_KEY}", key)
                conn.execute(f"DELETE FROM rollout_rejections WHERE {_ROLLOUT_KEY}", key)
                conn.execute(f"DELETE FROM rollout_served WHERE {_ROLLOUT_KEY}", key)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def record_rollout_rejection(
        self,
        application: str,
        label: str,
        rollout_id: str,
        instance_id: str,
        version: str,
        reason: str | None,
        now: float,
        caller: str = "",
    ) -> int:
        """Upsert the instance's rejection and count the distinct callers."""
        key = (application, label, rollout_id)
        with closing(self._connect()) as conn:
            conn.execute(_REJECTION, (*key, instance_id, version, reason, now, caller))
            count: int = conn.execute(_COUNT_REJECTIONS, key).fetchone()[0]
        return count

    def record_canary_served(
        self, application: str, label: str, rollout_id: str, served: Sequence[tuple[str, str, float]]
    ) -> None:
        """Insert what is not there yet (an earlier time stays), up to the cap, in one transaction."""
        key = (application, label, rollout_id)
        if not served:
            return
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                room = MAX_SERVED_PER_ROLLOUT - conn.execute(_COUNT_SERVED, key).fetchone()[0]
                if room > 0:
                    conn.executemany(_CANARY_SERVED, [(*key, *entry) for entry in served[:room]])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def canary_served_at(
        self, application: str, label: str, rollout_id: str, instance_id: str, version: str
    ) -> float | None:
        """The stored time, if any."""
        with closing(self._connect()) as conn:
            row = conn.execute(
                f"SELECT seen FROM rollout_served WHERE {_ROLLOUT_KEY} AND instance_id = ? AND version = ?",
                (application, label, rollout_id, instance_id, version),
            ).fetchone()
        return float(row[0]) if row else None

    def canary_served_instances(
        self, application: str, label: str, rollout_id: str, limit: int = 1000
    ) -> list[str]:
        """Distinct instance ids of the rollout's served rows, sorted."""
        with closing(self._connect()) as conn:
            rows = conn.execute(
                f"SELECT DISTINCT instance_id FROM rollout_served WHERE {_ROLLOUT_KEY} "
                "ORDER BY instance_id LIMIT ?",
                (application, label, rollout_id, max(0, int(limit))),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def rollout_rejections(self, application: str, label: str, rollout_id: str) -> list[RolloutRejection]:
        """The rejections, oldest first."""
        with closing(self._connect()) as conn:
            rows = conn.execute(
                f"SELECT instance_id, version, reason, seen FROM rollout_rejections WHERE {_ROLLOUT_KEY} "
                "ORDER BY seen, instance_id",
                (application, label, rollout_id),
            ).fetchall()
        return [rollout_rejection(str(i), v, r, t) for i, v, r, t in rows]

    def record_approval(self, record: ApprovalRecord) -> bool:
        """Insert the approval unless the approver already approved that commit on that label."""
        with closing(self._connect()) as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO approvals (label, version, approver, reason, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (record.label, record.version, record.approver, record.reason, record.at),
            )
            return cursor.rowcount > 0

    def approvals(self, limit: int = MAX_APPROVALS) -> list[ApprovalRecord]:
        """The approvals, the newest first."""
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT label, version, approver, reason, at FROM approvals ORDER BY at DESC LIMIT ?",
                (max(0, int(limit)),),
            ).fetchall()
        return [
            ApprovalRecord(str(label), str(version), str(who), str(reason), read_time(at) or 0.0)
            for label, version, who, reason, at in rows
        ]

    def put_pin(self, pin: PinRecord) -> None:
        """Insert or replace the environment's pin."""
        with closing(self._connect()) as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO pins ({_PIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", _pin_row(pin)
            )

    def remove_pin(self, application: str, profiles: str, label: str) -> PinRecord | None:
        """Delete the environment's pin in one transaction; the pin it was."""
        key = (application, profiles, label)
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(f"SELECT {_PIN_COLUMNS} FROM pins WHERE {_PIN_KEY}", key).fetchone()
                conn.execute(f"DELETE FROM pins WHERE {_PIN_KEY}", key)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return _pin(row) if row else None

    def pins(self) -> list[PinRecord]:
        """Every pin, by application, profiles and label."""
        with closing(self._connect()) as conn:
            rows = conn.execute(f"SELECT {_PIN_COLUMNS} FROM pins ORDER BY application, profiles, label")
            return [_pin(row) for row in rows.fetchall()]

    def restore_pins(self, pins: Sequence[PinRecord]) -> None:
        """Insert the pins not stored (a file on disk loses nothing: only a copy ever needs it)."""
        with closing(self._connect()) as conn:
            conn.executemany(
                f"INSERT OR IGNORE INTO pins ({_PIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [_pin_row(pin) for pin in pins],
            )


_PIN_COLUMNS = "application, profiles, label, version, reason, pinned_by, pinned_at"
_PIN_KEY = "application = ? AND profiles = ? AND label = ?"


def _pin_row(pin: PinRecord) -> tuple[str, str, str, str, str, str, float]:
    return (pin.application, pin.profiles, pin.label, pin.version, pin.reason, pin.by, pin.at)


def _pin(row: Any) -> PinRecord:
    application, profiles, label, version, reason, by, at = row
    return PinRecord(application, profiles, label, version, reason or "", by or "", read_time(at) or 0.0)


#: Rows read per chunk when the caller filters them (`instances(accept=...)`).
_CHUNK = 500


def _instance(row: Any) -> InstanceRecord:
    # One starred tuple: mypy cannot count the fields of a slice followed by more arguments;
    # a time that is not one (what no server writes) reads as 0, never an error for all.
    return InstanceRecord(*(*row[:11], bool(row[11]), *(read_time(t) or 0.0 for t in row[12:15])))


#: The columns resume and advance added to `rollouts` (`_set_up` adds them to an older state.db).
_ROLLOUT_MOVES = (
    ("resumed_at", "REAL"),
    ("anchor_at", "REAL"),
    ("anchor_step", "INTEGER"),
    ("anchor_note", "TEXT"),
)
_ROLLOUT_FIELDS = "started, halted_at, halt_reason, resumed_at, anchor_at, anchor_step, anchor_note"
_ROLLOUT_COLUMNS = f"application, label, rollout_id, {_ROLLOUT_FIELDS}"
_ROLLOUT_KEY = "application = ? AND label = ? AND rollout_id = ?"
_START_ROLLOUT = (
    "INSERT OR IGNORE INTO rollouts (application, label, rollout_id, started) VALUES (?, ?, ?, ?)"
)
_SELECT_ROLLOUT = f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts WHERE {_ROLLOUT_KEY}"
_HALT_ROLLOUT = (
    f"UPDATE rollouts SET halted_at = ?, halt_reason = ? WHERE {_ROLLOUT_KEY} "
    "AND (halted_at IS NULL OR halted_at < resumed_at)"  # a halt older than a resume is history
)
_REJECTION = """
INSERT INTO rollout_rejections (application, label, rollout_id, instance_id, version, reason, seen, caller)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (application, label, rollout_id, instance_id) DO UPDATE SET
    version = excluded.version, reason = excluded.reason, seen = excluded.seen, caller = excluded.caller
"""
# Distinct callers; a row without one (written before callers were kept) counts as its instance.
_COUNT_REJECTIONS = (
    "SELECT COUNT(DISTINCT CASE WHEN caller = '' THEN char(31) || instance_id ELSE caller END) "
    f"FROM rollout_rejections WHERE {_ROLLOUT_KEY}"
)
_CANARY_SERVED = """
INSERT OR IGNORE INTO rollout_served (application, label, rollout_id, instance_id, version, seen)
VALUES (?, ?, ?, ?, ?, ?)
"""
_COUNT_SERVED = f"SELECT COUNT(*) FROM rollout_served WHERE {_ROLLOUT_KEY}"


def _add_column(conn: sqlite3.Connection, statement: str) -> None:
    """Add a column an older state.db lacks; another worker may have added it meanwhile."""
    try:
        conn.execute(statement)
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):
            raise
