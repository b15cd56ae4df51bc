"""The file watcher's own process: watchdog, unpatched, printing one JSON line per file event.

Started by `file_watch.ChildFileWatch` as `python -m config_server.delivery.file_watch_child SPEC`,
where SPEC is a JSON list of `[folder, recursive]` pairs. It prints `"ready"` once every folder is
watched (or `{"error": ...}` and exits with status 3 when watching cannot start, say at the inotify
limit), then `[src_path, dest_path]` per event. It exits when its standard input closes, so it never
outlives the worker that started it, however that worker ends.

It imports neither gevent nor anything of the server beyond this package: watchdog runs here exactly
as its authors test it, with real threads and real queues.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

READY = "ready"
CANNOT_WATCH_STATUS = 3
#: Events that say a file was looked at, not changed.
IGNORED_EVENT_TYPES = frozenset({"opened", "closed_no_write"})


class _PrintPaths(FileSystemEventHandler):
    """Writes each event's paths as one JSON line; one writer at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        """Print `[src_path, dest_path]` of a change."""
        if event.event_type in IGNORED_EVENT_TYPES:
            return
        _write([_text(event.src_path), _text(getattr(event, "dest_path", ""))], self._lock)


def _text(path: Any) -> str:
    return os.fsdecode(path) if path else ""


def _write(message: Any, lock: threading.Lock | None = None) -> None:
    line = json.dumps(message) + "\n"
    if lock is None:
        sys.stdout.write(line)
        sys.stdout.flush()
        return
    with lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    """Watch the folders named on the command line until standard input closes."""
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    observer = Observer()
    handler = _PrintPaths()
    try:
        for folder, recursive in spec:
            observer.schedule(handler, folder, recursive=bool(recursive))
        observer.daemon = True
        observer.start()
    except OSError as exc:
        _write({"error": str(exc)})
        os._exit(CANNOT_WATCH_STATUS)
    _write(READY)
    while sys.stdin.buffer.read(4096):  # the worker never writes; EOF means it is gone
        pass
    os._exit(0)  # watchdog's threads need no goodbye


if __name__ == "__main__":
    main()
