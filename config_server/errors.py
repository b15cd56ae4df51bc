"""The server's exceptions: one base class, one subclass per way a request can fail.

Every exception the server defines lives here, under `ConfigServerError`. Two kinds:
- an error a caller can see carries its HTTP `status` and `reason`; the HTTP layer maps each
  class to its answer in one place (`http/errors.py`), so services raise what went wrong and never
  think about HTTP;
- an `InternalError` is raised and handled inside the server (or stops it at startup); no caller
  is shown its message: one that reached the HTTP layer would be answered as an unexpected 500.

(`runtime/gevent_worker.ClientGone` is not here: it is a `BaseException` that cancels a parked
long poll, not an error, and must pass every `except Exception`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One reason an environment is broken: the repository file and line it comes from, and what."""

    file: str | None
    line: int | None
    message: str

    @property
    def location(self) -> str:
        """`file:line`, `file`, or `-` when no file is to blame."""
        if self.file is None:
            return "-"
        return f"{self.file}:{self.line}" if self.line else self.file

    def describe(self, application: str, profiles: Sequence[str]) -> str:
        """The line `config-server validate` prints: `file:line: application/profile: message`."""
        return f"{self.location}: {application}/{','.join(profiles)}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """`{"file", "line", "message"}` for JSON output and the verdict store."""
        return {"file": self.file, "line": self.line, "message": self.message}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Problem:
        """The inverse of `to_json`."""
        return cls(data.get("file"), data.get("line"), str(data.get("message", "")))


class ConfigServerError(Exception):
    """Base class of every error the server reports to a caller."""

    status = 500
    reason = "Internal Server Error"


class InternalError(ConfigServerError):
    """An error no caller sees: the code that raises it, or the one place that calls it, handles it
    (a 500 with nothing of its message, should one ever reach the HTTP layer)."""


class InvalidName(ConfigServerError):
    """An application, profile, label or path that is malformed or hostile."""

    status = 400
    reason = "Bad Request"


class LabelNotFound(ConfigServerError):
    """A label that is neither a branch, a tag nor a commit of the repository."""

    status = 404
    reason = "Not Found"


class ResourceNotFound(ConfigServerError):
    """A plain-text file that the repository does not have at that label."""

    status = 404
    reason = "Not Found"


class UnknownApplication(ConfigServerError):
    """An application no file of the repository names, on a server that refuses them
    (`--unknown-applications deny`)."""

    status = 404
    reason = "Not Found"


class RepositoryUnavailable(ConfigServerError):
    """A remote repository that cannot be reached and was never cloned."""

    status = 404
    reason = "Not Found"


class InvalidConfigFile(ConfigServerError):
    """A configuration file that does not parse, or has duplicate keys."""

    status = 500
    reason = "Internal Server Error"


class ConfigLimitExceeded(InvalidConfigFile):
    """Committed content that would expand past a limit (`limits.py`): a placeholder or index bomb.

    A subclass of InvalidConfigFile, so everything that treats a broken file as a broken
    environment treats a bomb the same way.
    """


class BrokenEnvironment(ConfigServerError):
    """An environment that exists but must not be served: a file that does not parse, a limit hit,
    a `{cipher}` value that does not decrypt, or a schema violation (`validation.py` decides).

    Answered 422 when the caller named the broken commit (or no good version exists); on a branch
    or tag the service serves the newest good version instead. `problems` holds every finding
    (`Problem`), the message the first of them.
    """

    status = 422
    reason = "Unprocessable Entity"

    def __init__(self, message: str, problems: tuple[Problem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class NotPinnable(ConfigServerError):
    """A version an environment may not be pinned to: not on its label's history, or broken there
    (`safety/pins.py`)."""

    status = 422
    reason = "Unprocessable Entity"


class AuthenticationRequired(ConfigServerError):
    """No credentials, or a token that no client holds."""

    status = 401
    reason = "Unauthorized"


class AccessDenied(ConfigServerError):
    """A known client asking for something its roles or globs do not allow."""

    status = 403
    reason = "Forbidden"


class CrossSiteRequest(AccessDenied):
    """A state change a browser may have been made to send by another site's page: 403."""


class MisdirectedRequest(ConfigServerError):
    """A `Host` this server does not answer for (`--allowed-hosts`): DNS rebinding, 421."""

    status = 421
    reason = "Misdirected Request"


class EncryptionUnavailable(ConfigServerError):
    """`/encrypt` or `/decrypt` with no key configured (Spring's `NO_KEY`)."""

    status = 404
    reason = "Not Found"


class PayloadRejected(ConfigServerError):
    """A request body that cannot be used: not text, or a value that cannot be decrypted."""

    status = 400
    reason = "Bad Request"


class PayloadTooLarge(ConfigServerError):
    """A request body larger than the endpoint accepts."""

    status = 413
    reason = "Request Entity Too Large"


class ApprovalRefused(ConfigServerError):
    """An approval that cannot be given: the commit is not on the label, or nothing there needs one."""

    status = 409


class RevertRefused(ConfigServerError):
    """A revert that would not be a clean new commit on the label's tip: the label moved meanwhile,
    the revert conflicts, or it changes nothing. Nothing was changed; `command` is what a person
    can run instead (empty when there is nothing to run)."""

    status = 409
    reason = "Conflict"

    def __init__(self, message: str, command: str = "") -> None:
        super().__init__(message)
        self.command = command


class NotRevertable(RevertRefused):
    """A commit the server does not revert: not on the label, or a merge commit (whose mainline a
    person chooses)."""

    status = 422
    reason = "Unprocessable Entity"


class RevertFailed(ConfigServerError):
    """git could not make or push the revert (the remote refused the credentials, was unreachable,
    a deadline passed); nothing was changed on the label."""

    status = 502
    reason = "Bad Gateway"


class RolloutMoveRefused(ConfigServerError):
    """A resume of a rollout that is not halted, or an advance of one that is not running."""

    status = 409


class TooManyPolls(ConfigServerError):
    """A long poll beyond what one client address (or the worker) may hold parked (`parked.py`)."""

    status = 429
    reason = "Too Many Requests"


class StateUnavailable(ConfigServerError):
    """The shared state store (Redis, in cluster mode) cannot be reached now."""

    status = 503
    reason = "Service Unavailable"


class StateRecordError(ConfigServerError):
    """One record of the state store holds what no server wrote (in Redis, a key of another type):
    that record's error, reported with it; the store and its other records are read as usual."""

    status = 503
    reason = "Service Unavailable"


class InvalidHeader(ConfigServerError):
    """A malformed instance-report header (`observability/inventory.py`): 400, the message names
    the header."""

    status = 400
    reason = "Bad Request"


class InvalidLimit(ConfigServerError):
    """`limit` of `/instances` is not a whole number from 1 to its maximum: 400."""

    status = 400
    reason = "Bad Request"


class RolloutFileError(ConfigServerError):
    """A rollout file that cannot be applied; `line` is where it went wrong (1-based) if known."""

    status = 422
    reason = "Unprocessable Entity"

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


class WebhookRejected(ConfigServerError):
    """A `/monitor` delivery whose signature or token is missing or wrong: 401, challenged with
    `Signature realm="monitor"` (`http/errors.py`)."""

    status = 401
    reason = "Unauthorized"


class CryptoError(InternalError):
    """A value that cannot be encrypted or decrypted, or a key that cannot be used; the message
    never contains the value. Callers see it only as the error its handler raises instead (a 400
    from `/decrypt`, a broken environment, a usage error of the command line)."""


class NoKeyError(CryptoError):
    """No key is configured, or the named key is unknown."""


class AuthFileError(InternalError, ValueError):
    """An auth file that cannot be used: the message says which entry and why. Also a ValueError,
    as settings mistakes are, so the start-up paths that stop on a bad setting stop on it too."""


class GitFailed(InternalError):
    """A git command (a remote's mirror clone or fetch) that failed or ran past its deadline;
    `stderr` says why."""

    def __init__(self, stderr: str) -> None:
        super().__init__(stderr)
        self.stderr = stderr


class BackupError(InternalError):
    """A backup or restore of the state store that cannot be done (`state/backup.py`); the message
    says why and what to do. The command line shows it and exits 1."""
