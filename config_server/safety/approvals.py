"""Release approvals: a commit that changes a protected environment waits for a second pair of eyes.

The repository's policy (`content/approval_policy.py`, `policy/approvals.yml` at the label's
head) names the protected environments. For one of them, the label's head is served only when
its settings equal those of the **last approved version**; otherwise that version keeps serving,
exactly as for a broken commit (`config_service.py`: `Revision.held_back`, with
`hold_reason` `awaiting approval`), and the hub, which sees the old content ETag, wakes nobody.

The last approved version of an environment on a label is found by walking the label's first
parents from its head (at most `MAX_WALK`):

- the newest commit whose approvers, counting those of the commits after it on the label
  (approving a commit approves the changes before it), reach the policy's `required`;
- when the label holds no approval yet, the newest commit whose own policy did not protect the
  environment: what was released before protection began.

An environment is protected when the head's policy protects it, or the policy of the newest
approved commit did: removing the policy is itself a change that needs an approval.

Approvals live in the state store (`state/base.py:ApprovalRecord`, SQLite or Redis) and are read
into memory by a loop (`APPROVALS_SYNC_SECONDS`), so requests touch memory and git only and
replicas agree within a second; when the approvals change, `on_change` asks the hub to re-resolve
every watched environment. In cluster mode each machine keeps a durable copy (`durable`) that
puts back what a flushed Redis lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from config_server.backends.base import Backend
from config_server.concurrency import Repeating, call_cooperatively
from config_server.content.approval_policy import (
    AWAITING_APPROVAL,
    POLICY_FILE,
    ApprovalPolicy,
    PolicyError,
    parse_policy,
)
from config_server.errors import AccessDenied, ApprovalRefused, BrokenEnvironment, ConfigServerError, Problem
from config_server.state.base import MAX_APPROVALS, ApprovalRecord, StateStore

log = logging.getLogger(__name__)

#: How often each worker reads the approvals from the state store.
APPROVALS_SYNC_SECONDS = 1.0
#: How far back on a label the last approved version is looked for.
MAX_WALK = 100
#: The longest approval reason kept.
MAX_REASON_CHARS = 512
#: Memoised chains, policies and decisions kept before they are cleared.
_MEMO_LIMIT = 4096

#: A policy file that does not parse: it protects every environment (a commit holding it is also
#: broken everywhere, `validation.policy_problems`).
_INVALID = ApprovalPolicy(profiles=("*",))


@dataclass(frozen=True)
class Approver:
    """Who approves: the auth-file client's name, email and groups (matched against the author)."""

    name: str
    email: str | None = None
    groups: tuple[str, ...] = ()

    def wrote(self, author: tuple[str, str] | None) -> bool:
        """True when the commit's author (name, email) is this approver, by name or email."""
        if author is None:
            return False
        name, email = (author[0].strip().lower(), author[1].strip().lower())
        mine = {self.name.strip().lower()} | ({self.email.strip().lower()} if self.email else set())
        return bool(mine & ({name, email} - {""}))


@dataclass(frozen=True)
class Waiting:
    """A protected environment whose label's head waits for an approval, and what is served instead."""

    application: str
    profiles: str
    label: str
    head: str
    served: str

    def to_json(self) -> dict[str, Any]:
        """`/health` and the console: the environment, the commit waiting, the version served."""
        return {
            "application": self.application,
            "profiles": self.profiles,
            "label": self.label,
            "waitingVersion": self.head,
            "servedVersion": self.served,
            "reason": AWAITING_APPROVAL,
        }


class Approvals:
    """The approvals this worker knows (memory, synced from the state store) and the decision
    `release`: which version of a protected environment may be served."""

    def __init__(
        self,
        backend: Backend,
        store: StateStore,
        durable: StateStore | None = None,
        interval: float = APPROVALS_SYNC_SECONDS,
        max_walk: int = MAX_WALK,
    ) -> None:
        self.backend = backend
        self.store = store
        self.durable = durable
        self.interval = interval
        self.max_walk = max_walk
        #: Bumped whenever the known approvals change: decisions are memoised per generation.
        self.generation = 0
        #: Called (outside any lock) after the approvals changed: the hub re-resolves its slots.
        self.on_change: list[Callable[[], object]] = []
        self._records: dict[tuple[str, str, str], ApprovalRecord] = {}
        self._approvers: dict[tuple[str, str], frozenset[str]] = {}
        #: Labels with at least one approval (elsewhere, no policy at the head means no walk).
        self._labels_approved: frozenset[str] = frozenset()
        self._policies: dict[str, ApprovalPolicy | None] = {}
        self._chains: dict[tuple[str, str], tuple[str, ...]] = {}
        self._decisions: dict[tuple[str, str, str, int], str | None] = {}
        self._waiting: dict[tuple[str, str], Waiting] = {}
        self._lock = threading.Lock()
        self._loop = Repeating(self._synced, lambda: self.interval, "config-approvals")

    # --- the loop ----------------------------------------------------------------------------

    def start(self) -> Approvals:
        """Read the approvals now, then every `interval` (a thread; a greenlet under gevent)."""
        self._synced()
        self._loop.start()
        return self

    def close(self) -> None:
        """Stop the loop."""
        self._loop.stop()

    def _synced(self) -> None:
        try:
            self.sync()
        except Exception:  # noqa: BLE001 - the loop must outlive an unreachable store
            log.exception("approvals: could not read the state store (the approvals known stay)")

    def sync(self) -> bool:
        """Read every approval from the store (and the durable copy, putting back what either
        lacks); True, and `on_change` called, when they changed."""
        records = {r.key: r for r in call_cooperatively(self.store, self.store.approvals, MAX_APPROVALS)}
        if self.durable is not None:
            kept = {r.key: r for r in call_cooperatively(self.durable, self.durable.approvals, MAX_APPROVALS)}
            for key in kept.keys() - records.keys():
                call_cooperatively(self.store, self.store.record_approval, kept[key])
            for key in records.keys() - kept.keys():
                call_cooperatively(self.durable, self.durable.record_approval, records[key])
            records = {**kept, **records}
        with self._lock:
            if records.keys() == self._records.keys():
                return False
            approvers: dict[tuple[str, str], set[str]] = {}
            for label, version, who in records:
                approvers.setdefault((label, version), set()).add(who)
            self._records = records
            self._approvers = {k: frozenset(v) for k, v in approvers.items()}
            self._labels_approved = frozenset(label for label, _ in approvers)
            self.generation += 1
            self._decisions.clear()
        for listener in self.on_change:
            try:
                listener()
            except Exception:  # noqa: BLE001 - a listener must not stop the loop
                log.exception("approvals: change listener %r failed", listener)
        return True

    # --- the request path: memory and git only -----------------------------------------------

    def release(
        self,
        label: str,
        head: str,
        applications: tuple[str, ...],
        profiles: tuple[str, ...],
        environment_key: str,
        etag_at: Callable[[str], str | None],
    ) -> str | None:
        """The version to serve instead of the label's `head` for this environment (the last
        approved one), or None when the head may be served (not protected, approved, or its
        settings equal the last approved version's). `etag_at(version)` is the environment's
        content ETag there (None: broken). BrokenEnvironment when the head waits and no approved
        version is within `max_walk` commits."""
        key = (label, head, environment_key, self.generation)
        if key in self._decisions:
            return self._decisions[key]
        base = self._last_approved(label, head, applications, profiles)
        if base is None:
            raise BrokenEnvironment(
                f"{AWAITING_APPROVAL}: {label} {head[:12]} changes a protected environment and no "
                f"approved version is within the {self.max_walk} commits before it",
                (Problem(POLICY_FILE, None, f"{AWAITING_APPROVAL}: no approved version to serve"),),
            )
        if base != head:
            base = self._newest_alike(self._chain(label, head), base, etag_at)
        decided = None if base == head else base
        with self._lock:
            if len(self._decisions) >= _MEMO_LIMIT:
                self._decisions.clear()
            self._decisions[key] = decided
            where = (label, environment_key)
            if decided is None:
                self._waiting.pop(where, None)
            else:
                application, _, rest = environment_key.partition("/")
                if len(self._waiting) >= _MEMO_LIMIT:
                    self._waiting.clear()
                self._waiting[where] = Waiting(application, rest, label, head, decided)
        return decided

    @staticmethod
    def _newest_alike(chain: Sequence[str], base: str, etag_at: Callable[[str], str | None]) -> str:
        """The newest commit after `base` on the chain (the head included) up to which this
        environment's settings stayed those of `base`: commits that change other environments
        move its version on; the head itself when nothing it is served changed."""
        settled = etag_at(base)
        if settled is None:
            return base
        newest = base
        for version in reversed(chain[: chain.index(base)]):
            if etag_at(version) != settled:
                break
            newest = version
        return newest

    def waiting(self, application: str | None = None) -> list[Waiting]:
        """The environments asked for whose label's head still waits for an approval (of one
        application, or all), for `/health` and the console."""
        found = []
        for held in list(self._waiting.values()):
            if application is not None and held.application != application:
                continue
            try:
                current = self.backend.resolve(held.label).version
            except ConfigServerError:
                continue
            if current != held.head:
                continue
            key = (held.label, held.head, f"{held.application}/{held.profiles}", self.generation)
            if key in self._decisions:
                still = self._decisions[key] is not None
            else:  # approvals changed since it was asked for: waiting unless the head is approved
                still = not self.covers(held.label, held.head)
            if still:
                found.append(held)
        return sorted(found, key=lambda w: (w.application, w.profiles, w.label))

    def covers(self, label: str, version: str) -> bool:
        """Whether `version` is approved on `label`: it is on the label's first-parent history and
        it, or a commit after it there, has the approvers the policy at the head requires."""
        try:
            head = self.backend.resolve(label).version
        except ConfigServerError:
            return False
        chain = self._chain(label, head)
        if version not in chain:
            return False
        policy = self.policy(head)
        required = policy.required if policy is not None else 1
        seen: set[str] = set()
        for one in chain[: chain.index(version) + 1]:
            seen |= self._approvers.get((label, one), frozenset())
        return len(seen) >= required

    def records(self, label: str | None = None) -> list[ApprovalRecord]:
        """The approvals known (of one label, or all), the newest first."""
        return sorted(
            (r for r in self._records.values() if label is None or r.label == label), key=lambda r: -r.at
        )

    def policy(self, version: str) -> ApprovalPolicy | None:
        """The policy at a commit (None: there is none; one that does not parse protects all)."""
        if version in self._policies:
            return self._policies[version]
        try:
            found = parse_policy(self.backend.read(version, POLICY_FILE))
        except PolicyError:
            found = _INVALID
        with self._lock:
            if len(self._policies) >= _MEMO_LIMIT:
                self._policies.clear()
            self._policies[version] = found
        return found

    def _chain(self, label: str, head: str) -> tuple[str, ...]:
        """The label's first-parent history from `head`, at most `max_walk` + 1 commits."""
        chain = self._chains.get((label, head))
        if chain is None:
            versions = [head]
            while len(versions) <= self.max_walk:
                parents = self.backend.parents(versions[-1])
                if not parents:
                    break
                versions.append(parents[0])
            chain = tuple(versions)
            with self._lock:
                if len(self._chains) >= _MEMO_LIMIT:
                    self._chains.clear()
                self._chains[(label, head)] = chain
        return chain

    def _last_approved(
        self, label: str, head: str, applications: tuple[str, ...], profiles: tuple[str, ...]
    ) -> str | None:
        """The version this environment may be served at on the label (the head when it is not
        protected); None when it is protected and nothing within the walk is approved."""
        at_head = self.policy(head)
        if at_head is None and label not in self._labels_approved:
            return head  # no policy and never an approval here: no walk (most repositories)
        chain = self._chain(label, head)
        approved = next((v for v in chain if self._approvers.get((label, v))), None)
        at_approved = self.policy(approved) if approved is not None else None
        guarding = [p for p in (at_head, at_approved) if p is not None and p.protects(applications, profiles)]
        if not guarding:
            return head
        if approved is not None:
            required = max(p.required for p in guarding)
            seen: set[str] = set()
            for version in chain:
                seen |= self._approvers.get((label, version), frozenset())
                if len(seen) >= required:
                    return version
        for version in chain:  # no approval yet: what was released before protection began
            policy = self.policy(version)
            if policy is None or not policy.protects(applications, profiles):
                return version
        return None

    # --- approving ---------------------------------------------------------------------------

    def approve(
        self, label: str, version: str, approver: Approver, reason: str, now: float
    ) -> ApprovalRecord:
        """Record `approver`'s approval of `version` (a full commit id or a prefix of at least 7
        hex digits on the label's first-parent history) on `label`, and with it the changes before
        it. Refused when the commit is not on the label (ApprovalRefused, 409), when neither the
        head nor the last approved commit has a policy (409), when the policy names a group the
        approver is not in, or when the approver wrote one of the commits it would approve
        (AccessDenied, 403)."""
        head = self.backend.resolve(label).version
        chain = self._chain(label, head)
        wanted = version.strip().lower()
        matches = [v for v in chain if len(wanted) >= 7 and v.startswith(wanted)]
        if len(matches) != 1:
            raise ApprovalRefused(
                f"commit {version[:40]!r} is not on label {label!r} within its last {self.max_walk} "
                "commits (first-parent history)"
            )
        target = matches[0]
        approved = next((v for v in chain if self._approvers.get((label, v))), None)
        policy = self.policy(head) or (self.policy(approved) if approved is not None else None)
        if policy is None:  # the last approved commit's policy counts: removing it needs an approval
            raise ApprovalRefused(f"label {label!r} has no {POLICY_FILE}: nothing there needs an approval")
        if policy.group is not None and policy.group not in approver.groups:
            raise AccessDenied(f"only approvers of group {policy.group!r} may approve on label {label!r}")
        for commit in self._approved_by(label, chain, target):
            if approver.wrote(self.backend.author(commit)):
                raise AccessDenied(
                    f"{approver.name!r} wrote commit {commit[:12]}: its author may not approve it "
                    "(a second pair of eyes)"
                )
        text = "".join(ch if ch.isprintable() else " " for ch in reason)[:MAX_REASON_CHARS].strip()
        record = ApprovalRecord(label, target, approver.name, text, now)
        call_cooperatively(self.store, self.store.record_approval, record)
        if self.durable is not None:
            call_cooperatively(self.durable, self.durable.record_approval, record)
        self.sync()
        return record

    def _approved_by(self, label: str, chain: Sequence[str], target: str) -> list[str]:
        """The commits an approval of `target` approves: it and the commits before it, back to the
        newest one approved already (or the walk's end)."""
        index = chain.index(target)
        commits = []
        for version in chain[index:]:
            if version != target and self._approvers.get((label, version)):
                break
            commits.append(version)
        return commits
