"""The approval policy of a configuration repository: which environments need a second pair of eyes.

The repository says it in one file, `policy/approvals.yml`, read at the label's head like the
schemas:

```yaml
profiles: [prod]          # globs; an environment is protected when one of its profiles matches
applications: ["*"]       # globs (default every application)
required: 1               # distinct approvers a release needs (default 1)
group: release-managers   # optional: only approvers of this auth-file group count
```

A commit that changes a protected environment is held back until it is approved
(`safety/approvals.py`). A file that is not this shape is a `Problem` naming the file and line:
the commit is then broken for every environment (`validation.checked_environment`), so a policy
cannot be switched off by a typo. Pure: bytes in, a policy or problems out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

import yaml

from config_server.errors import Problem

#: Where the policy lives in the repository.
POLICY_FILE = "policy/approvals.yml"
#: The reason of a hold by an approval (the `X-Config-Held-Back-Reason` header, `/diff`'s holds).
AWAITING_APPROVAL = "awaiting approval"
#: The most approvals a policy may require (more is a mistake, not a policy).
MAX_REQUIRED = 10

_KEYS = frozenset({"profiles", "applications", "required", "group"})


@dataclass(frozen=True)
class ApprovalPolicy:
    """Which environments are protected and who must approve a change to them."""

    profiles: tuple[str, ...]
    applications: tuple[str, ...] = ("*",)
    required: int = 1
    group: str | None = None

    def protects(self, applications: Sequence[str], profiles: Sequence[str]) -> bool:
        """True when one of the applications and one of the profiles match the policy's globs."""
        return any(_matches(a, self.applications) for a in applications) and any(
            _matches(p, self.profiles) for p in profiles
        )


class PolicyError(ValueError):
    """The policy file is not a policy: its problem names the file and line."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.location}: {problem.message}")
        self.problem = problem


def parse_policy(data: bytes | None) -> ApprovalPolicy | None:
    """The policy in the file's bytes (None: no file, nothing is protected); PolicyError when the
    file is not valid YAML or not the shape above (an unknown key too: a misspelling must not
    switch protection off)."""
    if data is None:
        return None
    try:
        document = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise PolicyError(Problem(POLICY_FILE, line, f"not valid YAML ({_first_line(exc)})")) from None
    if not isinstance(document, dict):
        raise PolicyError(
            Problem(
                POLICY_FILE,
                None,
                "must be a mapping with 'profiles' (and optionally 'applications', 'required', 'group')",
            )
        )
    unknown = sorted(str(k) for k in document if k not in _KEYS)
    if unknown:
        raise _error(data, unknown[0], f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    profiles = _globs(data, document, "profiles", None)
    applications = _globs(data, document, "applications", ("*",))
    required = document.get("required", 1)
    if isinstance(required, bool) or not isinstance(required, int) or not 1 <= required <= MAX_REQUIRED:
        raise _error(data, "required", f"required must be a whole number from 1 to {MAX_REQUIRED}")
    group = document.get("group")
    if group is not None and (not isinstance(group, str) or not group.strip()):
        raise _error(data, "group", "group must be the name of an auth-file group")
    return ApprovalPolicy(profiles, applications, required, group.strip() if group else None)


def _globs(
    data: bytes, document: dict[object, object], key: str, default: tuple[str, ...] | None
) -> tuple[str, ...]:
    value = document.get(key)
    if value is None:
        if default is None:
            raise _error(data, key, f"{key} is required: the profiles a release needs an approval for")
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _error(data, key, f"{key} must be a list of names or globs")
    return tuple(value)


def _error(data: bytes, key: str, message: str) -> PolicyError:
    """A PolicyError at the line of a top-level `key` (the first line when it is not found)."""
    line = None
    for number, text in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if text.startswith(f"{key}:") or text.startswith(f'"{key}":'):
            line = number
            break
    return PolicyError(Problem(POLICY_FILE, line, message))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)
