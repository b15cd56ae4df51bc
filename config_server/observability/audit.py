"""The audit log: one JSON line per read, encrypt, decrypt, monitor and denied request.

A line says who (client name, remote address), what (event, method, path, application,
profiles, label, version) and how it ended (status, reason); it never holds a configuration
value, a ciphertext, a plaintext or a token. Each line is one `write` to a file opened with
`O_APPEND`, so several gunicorn workers can share one file; after logrotate moves it, the file
is reopened within a second (lines of that second go to the moved file, none is lost). Written
without the logging machinery: a line is on every read, so it costs microseconds, not tens.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from config_server.names import EnvironmentRequest

_REOPEN_CHECK_SECONDS = 1.0


def serialise_fields(**fields: Any) -> str:
    """The fields of a record as the inside of a JSON object (None values left out), in order."""
    present = {k: v for k, v in fields.items() if v is not None}
    return json.dumps(present, ensure_ascii=False, separators=(",", ":"))[1:-1]


def environment_fields(asked: EnvironmentRequest) -> dict[str, str | None]:
    """The `application`, `profiles` and `label` fields of a line about an Environment request, in
    that order: the one builder of them for Flask's hooks and the fast path alike."""
    return {
        "application": asked.applications_text,
        "profiles": asked.profiles_text,
        "label": asked.labels_text,
    }


class AuditLog:
    """Writes audit records to a file (or standard error for `-`); `None` disables it."""

    def __init__(self, target: str | None) -> None:
        self.enabled = bool(target)
        self._path = target if target and target != "-" else None
        self._to_stderr = target == "-"
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._checked = 0.0
        if self._path is not None:
            self._open()

    def _open(self) -> None:
        assert self._path is not None
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._checked = time.monotonic()

    def record(self, event: str, **fields: Any) -> None:
        """Append one record; fields that are None are left out."""
        if not self.enabled:
            return
        self.record_serialised(event, serialise_fields(**fields))

    def record_serialised(self, event: str, fields: str) -> None:
        """Append one record whose fields `serialise_fields` has already turned into JSON.

        The hot path (the fast path's `read` line) keeps that JSON for a repeated request, so a
        line costs a clock read and one `write`.
        """
        if not self.enabled:
            return
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        separator = "," if fields else ""
        line = f'{{"time":"{now}","event":{json.dumps(event)}{separator}{fields}}}\n'.encode()
        if self._to_stderr:
            sys.stderr.buffer.write(line)
            sys.stderr.flush()
            return
        with self._lock:
            if self._fd is None:
                return
            if time.monotonic() - self._checked >= _REOPEN_CHECK_SECONDS:
                self._reopen_if_moved()
            os.write(self._fd, line)

    def _reopen_if_moved(self) -> None:
        """Reopen the path when the open file is no longer the one there (logrotate moved it)."""
        self._checked = time.monotonic()
        assert self._path is not None and self._fd is not None  # only called with the file open
        try:
            current = os.stat(self._path)
            opened = os.fstat(self._fd)
            if (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
                return
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._open()

    def flush(self) -> None:
        """Nothing is buffered (each line is written at once); kept for callers that ask."""

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self.enabled = False
