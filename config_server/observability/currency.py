"""Whether an instance runs the newest settings of its environment: decided by content, not by
commit id.

A commit to `payments.yml` moves the label, so every `orders` instance runs an older commit, yet
its settings are exactly the newest. The content ETag of a resolved environment is a hash of its
settings, so an instance is current when the environment's ETag at the version it runs equals the
ETag at its label now. Both come from the service's cache (an environment is resolved once per
version); one judge answers many records and asks for each environment and version once, at most
`MAX_LOOKUPS` distinct ones (beyond them, the commit id decides, as it did before).
"""

from __future__ import annotations

from config_server.errors import ConfigServerError
from config_server.names import EnvironmentRequest
from config_server.safety.config_service import ConfigService
from config_server.state import InstanceRecord

#: Distinct (environment, version) pairs one judge resolves; the rest are compared by commit id.
MAX_LOOKUPS = 64


class CurrentSettings:
    """Judges records: True (runs the newest settings), False (behind), None (version unknown)."""

    def __init__(self, service: ConfigService, max_lookups: int = MAX_LOOKUPS) -> None:
        self.service = service
        self.max_lookups = max_lookups
        self._etags: dict[tuple[str, str, str], tuple[str, str] | None] = {}

    def __call__(self, record: InstanceRecord) -> bool | None:
        """Whether the record's running version has the settings its label serves now."""
        if not record.version:
            return None
        newest = self._lookup(record.application, record.profiles, record.label)
        if newest is None:
            return None
        newest_version, newest_etag = newest
        if record.version == newest_version:
            return True
        at_version = self._lookup(record.application, record.profiles, record.version)
        if at_version is None:
            return False  # not resolvable (a folder's older snapshot, a broken version): by commit id
        return at_version[1] == newest_etag

    def newest_if_current(self, record: InstanceRecord) -> str | None:
        """The newest version of the record's label when the record runs its settings, else None:
        what the instances metric and rollout counts group such a record under."""
        if not self(record):
            return None
        newest = self._lookup(record.application, record.profiles, record.label)
        return newest[0] if newest is not None else None

    def _lookup(self, application: str, profiles: str, label: str) -> tuple[str, str] | None:
        """(version, ETag) of the environment at a label or version, remembered; None when unknown."""
        key = (application, profiles, label)
        if key in self._etags:
            return self._etags[key]
        found: tuple[str, str] | None = None
        if len(self._etags) < self.max_lookups:
            try:
                asked = EnvironmentRequest.parse(application, profiles, label or None)
                revision, resolved = self.service.environment(asked)
                found = (revision.version, resolved.etag)
            except ConfigServerError:
                found = None
        self._etags[key] = found
        return found
