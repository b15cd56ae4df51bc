"""The verdict store keeps SQLite off the request path: memory for reads, a writer on an OS thread."""

from __future__ import annotations

import sqlite3
import threading

from config_server.errors import Problem
from config_server.safety.verdicts import HeldBack, VerdictStore
from tests.helpers import wait_for

PROBLEMS = (Problem("orders.yml", 2, "does not parse"),)


def test_reads_and_writes_of_the_request_path_run_no_sqlite_statement_in_the_caller(tmp_path):
    store = VerdictStore(tmp_path / "verdicts.sqlite3", "ctx")
    try:
        callers: list[tuple[int, str]] = []
        store._db.set_trace_callback(lambda sql: callers.append((threading.get_ident(), sql)))
        me = threading.get_ident()
        assert store.broken("c1", "orders/default") is None  # a miss
        assert store.held("c1", "orders/default") is None
        store.set_broken("c1", "orders/default", PROBLEMS)
        store.set_held("orders/default", "main", HeldBack("c1", "c0", PROBLEMS))
        assert store.broken("c1", "orders/default") == PROBLEMS
        assert store.held("c1", "orders/default").good == "c0"
        assert [r["head"] for r in store.held_rows()] == ["c1"]
        assert store.flush()
        assert callers, "the writer thread wrote the verdicts"
        assert [sql for ident, sql in callers if ident == me] == []
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL, with WAL
    finally:
        store.close()


def test_a_write_never_waits_for_a_locked_file_and_is_written_once_it_is_free(tmp_path):
    path = tmp_path / "verdicts.sqlite3"
    store = VerdictStore(path, "ctx")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # another worker holds the write lock
        writer = threading.Thread(
            target=lambda: store.set_broken("c1", "orders/default", PROBLEMS), daemon=True
        )
        writer.start()
        writer.join(timeout=1.0)  # a deadline, not a measurement: before, it waited up to 2 s
        assert not writer.is_alive()
        assert store.broken("c1", "orders/default") == PROBLEMS
        other.execute("COMMIT")
        assert store.flush(timeout=10)
        rows = other.execute("SELECT version, environment FROM broken").fetchall()
        assert rows == [("c1", "orders/default")]
    finally:
        other.close()
        store.close()


def test_verdicts_of_another_worker_reach_memory_in_the_background_and_at_start(tmp_path):
    path = tmp_path / "verdicts.sqlite3"
    first, second = VerdictStore(path, "ctx"), VerdictStore(path, "ctx")
    try:
        first.set_held("orders/prod", "main", HeldBack("c2", "c1", PROBLEMS))
        first.set_broken("c2", "orders/prod", PROBLEMS)
        assert first.flush()
        wait_for(lambda: second.held("c2", "orders/prod") is not None, what="the other worker's verdict")
        assert second.broken("c2", "orders/prod") == PROBLEMS
        assert [r["label"] for r in second.held_rows()] == ["main"]
    finally:
        first.close()
        second.close()
    third = VerdictStore(path, "ctx")
    try:
        assert third.held("c2", "orders/prod") == HeldBack("c2", "c1", PROBLEMS)
        other_context = VerdictStore(path, "another context")
        assert other_context.broken("c2", "orders/prod") is None
        other_context.close()
    finally:
        third.close()


def test_the_writer_checkpoints_the_wal_so_it_does_not_grow_between_restarts(tmp_path):
    """Issue 24 item 8: a six-minute soak grew the WAL from 24 KB to 1.1 MB with no checkpoint
    (SQLite's own checkpoint waits for 1,000 pages and never shrinks the file)."""
    path = tmp_path / "verdicts.sqlite3"
    wal = tmp_path / "verdicts.sqlite3-wal"
    store = VerdictStore(path, "ctx", checkpoint_interval=0.2)
    try:
        for i in range(300):
            store.set_broken(f"c{i}", "orders/default", PROBLEMS)
        assert store.flush(timeout=10)
        wait_for(lambda: wal.exists() and wal.stat().st_size == 0, timeout=10)
        check = sqlite3.connect(path)
        try:
            assert check.execute("SELECT count(*) FROM broken").fetchone()[0] == 300
        finally:
            check.close()
    finally:
        store.close()


def test_the_writers_wake_up_never_blocks_a_signal_and_wakes_a_waiter_once():
    from config_server.concurrency import RealWakeup

    wake = RealWakeup()
    assert wake.wait(0.01) is False  # nothing signalled: the timeout passes
    wake.signal()
    wake.signal()  # a second signal before the wait neither blocks nor raises
    assert wake.wait(1.0) is True
    assert wake.wait(0.01) is False  # several signals wake once
