"""The last-known-good copy on disk: written atomically after each change, ignored when corrupt."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class LastKnownGood:
    """One JSON file per (application, profiles, label) holding the Environment and its ETag."""

    def __init__(self, cache_dir: str | os.PathLike[str], app: str, profiles: str, label: str | None) -> None:
        key = f"{app}|{profiles}|{label or ''}"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{app}-{profiles}")[:80]
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        self.path = Path(cache_dir) / f"{safe}-{digest}.json"

    def save(self, environment: dict[str, Any], etag: str) -> None:
        """Write the copy: a temporary file in the same folder, flushed, then renamed over the old."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"etag": etag, "environment": environment}).encode()
        fd, tmp = tempfile.mkstemp(prefix=".lkg-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self) -> tuple[dict[str, Any], str] | None:
        """The saved (environment, etag), or None when there is none or it is corrupt."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read last-known-good copy %s: %s", self.path, exc)
            return None
        try:
            data = json.loads(raw)
            environment, etag = data["environment"], data["etag"]
            if not isinstance(environment, dict) or not isinstance(etag, str):
                raise ValueError("wrong shape")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring corrupt last-known-good copy %s (%s)", self.path, exc)
            return None
        return environment, etag
