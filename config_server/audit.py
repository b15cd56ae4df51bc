"""The audit log: one JSON line per read, encrypt, decrypt, monitor and denied request.

A line says who (client name, remote address), what (event, method, path, application,
profiles, label, version) and how it ended (status, reason); it never holds a configuration
value, a ciphertext, a plaintext or a token. Lines are appended with `O_APPEND`, whole lines per
write, so several gunicorn workers can share one file; `WatchedFileHandler` reopens it after
logrotate moves it.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from typing import Any


class AuditLog:
    """Writes audit records to a file (or standard error for `-`); `None` disables it."""

    def __init__(self, target: str | None) -> None:
        self.enabled = bool(target)
        self._logger = logging.getLogger(f"config_server.audit.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._handler: logging.Handler | None = None
        if target == "-":
            self._handler = logging.StreamHandler(sys.stderr)
        elif target:
            self._handler = logging.handlers.WatchedFileHandler(target, encoding="utf-8")
        if self._handler is not None:
            self._handler.setFormatter(logging.Formatter("%(message)s"))
            self._logger.addHandler(self._handler)

    def record(self, event: str, **fields: Any) -> None:
        """Append one record; fields that are None are left out."""
        if not self.enabled:
            return
        entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event}
        entry.update({k: v for k, v in fields.items() if v is not None})
        self._logger.info(json.dumps(entry, ensure_ascii=False, separators=(",", ":")))

    def close(self) -> None:
        """Flush and close the file."""
        if self._handler is not None:
            self._logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
            self.enabled = False
