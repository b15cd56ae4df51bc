"""Would a commit be held back? The checks ("gates") an environment's new commit must pass to be served.

A gate looks at one environment at one commit (a `Candidate`) and answers None (it may be served)
or a `Hold`: why the server keeps serving the last good commit instead. `broken_gate` is the
change-safety check the server runs before serving (`validation.checked_environment`), so a
held-back verdict here is exactly the server's; `approval_gate` holds a change to an environment
the repository's approval policy protects (reason `awaiting approval`, `safety/approvals.py`).
Whoever asks for a verdict (`config-server diff`, `GET /diff`) passes the list of gates and shows
every hold.

Pure over what the caller hands in (the environment's resolution, a file reader, a keyring).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from config_server.content.approval_policy import AWAITING_APPROVAL, POLICY_FILE, PolicyError, parse_policy
from config_server.content.crypto import Keyring
from config_server.content.resolve import ReadFile
from config_server.errors import BrokenEnvironment, Problem
from config_server.model import Environment
from config_server.safety.validation import checked_environment

#: The reason of a hold by `broken_gate`.
BROKEN = "broken"


@dataclass(frozen=True)
class Candidate:
    """One environment at the commit that would be served (`version`), coming from `base_version`."""

    application: str
    profiles: tuple[str, ...]
    label: str
    version: str
    base_version: str
    #: Builds the environment from the files at `version` (raises InvalidConfigFile when one is broken).
    resolve: Callable[[], Environment]
    #: Reads a file at `version` (schemas, line numbers).
    read: ReadFile
    #: The repository's URI, the prefix of property-source names.
    uri: str
    #: Whether its files' settings differ from the base's (the property sources): a release
    #: approval is asked only for a change (the server holds back only a new content ETag).
    changed: bool = True


@dataclass(frozen=True)
class Hold:
    """Why a gate holds an environment back: its reason (`broken`, ...) and the problems found."""

    reason: str
    problems: tuple[Problem, ...]

    def to_json(self) -> dict[str, Any]:
        """`{"reason", "problems": [{"file", "line", "message"}, ...]}`."""
        return {"reason": self.reason, "problems": [p.to_json() for p in self.problems]}


#: A check of one candidate: None when it passes, else the hold.
Gate = Callable[[Candidate], "Hold | None"]


def broken_gate(keyring: Keyring | None, decrypt: bool = True) -> Gate:
    """The change-safety gate: the candidate is held back when it is broken (a file does not
    parse, a limit is hit, a schema rejects it, a `{cipher}` value does not decrypt when
    `decrypt`). Errors that are not about the content (a repository that cannot be read) propagate."""

    def gate(candidate: Candidate) -> Hold | None:
        try:
            checked_environment(
                candidate.resolve,
                (candidate.application,),
                candidate.read,
                candidate.uri,
                keyring,
                decrypt,
            )
        except BrokenEnvironment as exc:
            return Hold(BROKEN, exc.problems)
        return None

    return gate


def approval_gate(
    read_at: Callable[[str, str], bytes | None],
    approved: Callable[[str, str], bool] = lambda label, version: False,
) -> Gate:
    """The release-approval gate: a candidate (an environment whose settings differ from the
    base's) that the approval policy at its version protects is held `awaiting approval`; a new
    commit is never approved before it is served, but a server knows the approvals given
    (`approved(label, version)`). `read_at(version, path)` reads the policy file.
    A policy that does not parse is left to `broken_gate` (the commit is broken everywhere)."""

    def gate(candidate: Candidate) -> Hold | None:
        if not candidate.changed:
            return None
        try:
            policy = parse_policy(read_at(candidate.version, POLICY_FILE))
        except PolicyError:
            return None
        if policy is None or not policy.protects((candidate.application,), candidate.profiles):
            return None
        if approved(candidate.label, candidate.version):
            return None
        who = f" from {policy.group}" if policy.group else ""
        needed = f"{policy.required} approval{'s' if policy.required > 1 else ''}{who}"
        return Hold(AWAITING_APPROVAL, (Problem(POLICY_FILE, None, f"{AWAITING_APPROVAL}: needs {needed}"),))

    return gate


def holds(candidate: Candidate, gates: Sequence[Gate]) -> list[Hold]:
    """Every gate's hold on the candidate, in the gates' order (empty: it would be served)."""
    return [hold for hold in (gate(candidate) for gate in gates) if hold is not None]
