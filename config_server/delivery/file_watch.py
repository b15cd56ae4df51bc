"""File-system change notices for the change detector, never run on gevent's hub.

watchdog runs threads and queues of its own, and how they block is its business: watchdog 7 waits
on a C `queue.SimpleQueue`, which no monkey patch makes cooperative, so in the gevent worker that
wait stopped the whole event loop and the worker never answered. Running "the observer in a real
OS thread" is not enough there: watchdog starts its own threads through `threading`, which gevent
has patched, so they would still be greenlets. Where gevent has patched `threading`, the observer
therefore runs in a child process of its own (`file_watch_child`, unpatched, 16.5 MB resident), and the
worker reads its events from a pipe, cooperatively. Everywhere else (tests on threads, the gthread
worker) it runs in this process, as before. Both hand every changed path to the same callback.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Protocol

from config_server.concurrency import gevent_patched_threading
from config_server.delivery import file_watch_child

log = logging.getLogger(__name__)

#: (folder, recursive) pairs to watch.
WatchPaths = Sequence[tuple[str | Path, bool]]
#: Called with the paths of one event (source, and destination for a move); with none when
#: changes may have been missed (a restarted child), which asks for a check of everything.
OnPaths = Callable[[list[str]], None]

#: How long a child may take to start watching before the detector falls back to polling.
CHILD_START_SECONDS = 20.0
#: Waits between restarts of a child that died, doubling up to the last.
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


class FileWatch(Protocol):
    """A running watch of some folders."""

    def stop(self) -> None:
        """Stop watching and release what the watch holds."""


def watch_files(paths: WatchPaths, on_paths: OnPaths) -> FileWatch:
    """Start watching `paths`: in a child process under gevent, in this process otherwise.

    Raises OSError when watching cannot start (the inotify limits); the caller polls instead.
    """
    if gevent_patched_threading():
        return ChildFileWatch(paths, on_paths).start()
    return ThreadFileWatch(paths, on_paths).start()


class ThreadFileWatch:
    """watchdog's observer in this process, on real threads (no gevent patching here)."""

    def __init__(self, paths: WatchPaths, on_paths: OnPaths) -> None:
        from watchdog.observers import Observer

        self._observer = Observer()
        self._paths = paths
        self._on_paths = on_paths

    def start(self) -> ThreadFileWatch:
        """Schedule every folder and start the observer."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler

        on_paths = self._on_paths

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type not in file_watch_child.IGNORED_EVENT_TYPES:
                    on_paths([os.fsdecode(p) for p in (event.src_path, getattr(event, "dest_path", "")) if p])

        handler = Handler()
        for folder, recursive in self._paths:
            self._observer.schedule(handler, str(folder), recursive=recursive)
        self._observer.daemon = True
        self._observer.start()
        return self

    def stop(self) -> None:
        """Stop the observer and wait for its threads."""
        self._observer.stop()
        self._observer.join(timeout=5)


class ChildFileWatch:
    """watchdog in a child process whose JSON lines are read here, restarted if it dies.

    Under gevent the pipe is cooperative (gevent's `subprocess`) and the reader is a greenlet, so
    the callback runs on the hub like any request: no hand-over between threads is needed.
    """

    def __init__(self, paths: WatchPaths, on_paths: OnPaths) -> None:
        self._spec = json.dumps([[str(folder), bool(recursive)] for folder, recursive in paths])
        self._on_paths = on_paths
        self._stopping = threading.Event()
        self._settled = threading.Event()  # set once the first child watches, or failed to
        self._watching = False
        self._error: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> ChildFileWatch:
        """Start the child and wait until it watches every folder; OSError if it cannot."""
        self._reader = threading.Thread(target=self._run, name="config-file-watch", daemon=True)
        self._reader.start()
        if not self._settled.wait(CHILD_START_SECONDS) or not self._watching:
            self.stop()
            raise OSError(self._error or f"the file watcher did not start in {CHILD_START_SECONDS:.0f} s")
        return self

    def stop(self) -> None:
        """End the child (its standard input closes) and the reader."""
        self._stopping.set()
        process = self._process
        if process is not None:
            _end(process)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (for tests and diagnostics)."""
        return self._process.pid if self._process is not None else None

    def _run(self) -> None:
        restarts = 0
        while not self._stopping.is_set():
            status = self._run_child()
            if self._stopping.is_set():
                return
            if status == file_watch_child.CANNOT_WATCH_STATUS or not self._watching:
                self._error = self._error or f"the file watcher exited with status {status}"
                if self._watching:
                    log.warning("cannot watch files: %s; the safety poll finds new commits", self._error)
                self._settled.set()
                return
            delay = RESTART_DELAYS[min(restarts, len(RESTART_DELAYS) - 1)]
            restarts += 1
            log.warning("the file watcher exited with status %s; starting it again in %.0f s", status, delay)
            if self._stopping.wait(delay):
                return

    def _run_child(self) -> int | None:
        """Run one child until it exits; returns its exit status."""
        env = {**os.environ, "PYTHONPATH": _package_root() + os.pathsep + os.environ.get("PYTHONPATH", "")}
        process = subprocess.Popen(
            [sys.executable, "-m", file_watch_child.__name__, self._spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._process = process
        assert process.stdout is not None
        try:
            self._read(process.stdout)
        finally:
            _end(process)
        return process.returncode

    def _read(self, stdout: IO[bytes]) -> None:
        for raw in stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                log.warning("the file watcher wrote an unreadable line: %r", raw[:200])
                continue
            if message == file_watch_child.READY:
                if self._watching:  # a restarted child: a change may have been missed meanwhile
                    self._notify([])
                self._watching = True
                self._settled.set()
            elif isinstance(message, dict):
                self._error = str(message.get("error"))
            elif isinstance(message, list):
                self._notify([str(path) for path in message if path])

    def _notify(self, paths: list[str]) -> None:
        try:
            self._on_paths(paths)
        except Exception:  # noqa: BLE001 - one failed notice must not end the watch
            log.exception("file change handler failed")


def _end(process: subprocess.Popen[bytes]) -> None:
    """Close the child's standard input (it exits), then wait; kill it if it does not."""
    if process.stdin is not None and not process.stdin.closed:
        try:
            process.stdin.close()
        except OSError:
            pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    if process.stdout is not None:
        process.stdout.close()


def _package_root() -> str:
    """The folder holding the `config_server` package, so the child imports this same code."""
    return str(Path(file_watch_child.__file__).resolve().parents[2])
