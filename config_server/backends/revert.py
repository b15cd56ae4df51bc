"""Undo a commit on a label (a branch) with a new commit: `git revert`, never a rewrite of history.

Where the server may write to its repository (a local repository, or a remote with `--push-url`),
`Reverter.revert` runs `git revert` of the commit on the label's tip in a temporary worktree (the
served objects and refs are untouched while it works), commits it with the operator as author and
the reason in the message, and publishes it only as a fast-forward of the tip it was made on:
`git update-ref <branch> <new> <tip>` for a local repository, a plain (never forced) `git push` for
a remote. If the label moved meanwhile, or the revert conflicts or changes nothing, it refuses
(`RevertRefused`, 409) and nothing changed. A merge commit is refused (`NotRevertable`, 422): which
parent is the mainline is a person's call, so the answer names the `git revert -m 1` command.

Where the server may not write, `Reverter.command` is the exact command a person runs instead.
git runs as subprocesses with deadlines (`mirror.git_result`), cooperative under gevent.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config_server.backends.mirror import git_error, git_result
from config_server.errors import GitFailed, NotRevertable, RevertFailed, RevertRefused

log = logging.getLogger(__name__)

#: Longest one local git step (checkout of the tip, revert, commit) may run.
STEP_TIMEOUT = 120.0
#: Longest the push of a revert to the remote may run.
PUSH_TIMEOUT = 60.0
#: Longest a revert waits for another revert of this process to end.
LOCK_TIMEOUT = 300.0
#: Who commits every revert (the operator is its author): the server did the git work.
COMMITTER = ("config-server", "config-server@noreply.invalid")
#: Options for every git step: no hooks of the repository run, no signing key is asked for.
_GIT_OPTIONS = ["-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false"]
_HEX = re.compile(r"[0-9a-f]{4,64}")


@dataclass(frozen=True)
class Operator:
    """Who asked for the revert: the author of the revert commit (its `email`, when the auth file
    gives one, lets the approval rule see that this person wrote it)."""

    name: str
    email: str | None = None

    def identity(self) -> tuple[str, str]:
        """The git author name and email, without the characters git's identity lines cannot hold."""
        name = re.sub(r"[<>\n\r]", "", self.name).strip() or "unknown"
        fallback = re.sub(r"[^A-Za-z0-9._-]", "-", name) + "@config-server.invalid"
        return name, re.sub(r"[<>\s]", "", self.email or "") or fallback


@dataclass(frozen=True)
class RevertDone:
    """A revert published on the label: `commit` (new) reverts `version`, made on `parent`."""

    label: str
    version: str
    parent: str
    commit: str
    pushed: bool
    message: str


def revert_command(label: str, version: str, remote: bool, mainline: bool = False) -> str:
    """The commands a person runs in a clone of the repository to make the same revert by hand."""
    branch = shlex.quote(label)
    revert = f"git revert --no-edit {'-m 1 ' if mainline else ''}{version}"
    if not remote:
        return f"git switch {branch} && {revert}"
    return f"git switch {branch} && git pull --ff-only && {revert} && git push origin {branch}"


class Reverter:
    """Reverts commits of one repository, or says why it may not and what to run instead.

    `path` is where git runs (`GitBackend.repository_path`); `push_url` where a remote's revert is
    pushed (None for a local repository); `refresh` fetches the remote into the mirror (max age);
    `why_not` says why this server may not write (None when it may).
    """

    def __init__(
        self,
        path: str | None,
        remote: bool,
        push_url: str | None = None,
        git_env: dict[str, str] | None = None,
        refresh: Callable[[float], bool] | None = None,
        why_not: str | None = None,
    ) -> None:
        self.path = path
        self.remote = remote
        self.push_url = push_url
        self.git_env = git_env or {}
        self.refresh = refresh
        self.why_not = why_not if path is not None else why_not or "the repository is not a git repository"
        self._lock = threading.Lock()  # one revert at a time in this process (cooperative under gevent)

    @property
    def can_write(self) -> bool:
        """True when `revert` may write to the repository."""
        return self.why_not is None

    def command(self, label: str, version: str) -> str:
        """What a person runs to revert `version` on `label` by hand."""
        return revert_command(label, version, self.remote)

    def revert(self, label: str, version: str, operator: Operator, reason: str) -> RevertDone:
        """Revert `version` (a commit id, full or abbreviated) on the branch `label` and publish it
        as a fast-forward of the branch; RevertRefused / NotRevertable (nothing changed) or
        RevertFailed (git could not) otherwise."""
        if not self.can_write or self.path is None:
            raise RevertRefused(f"this server cannot write to its repository: {self.why_not}")
        if not _HEX.fullmatch(version):
            raise NotRevertable(f"{version!r} is not a commit id")
        if not self._lock.acquire(timeout=LOCK_TIMEOUT):
            raise RevertFailed("another revert on this server did not end")
        try:
            return self._revert(self.path, label, version, operator, reason)
        finally:
            self._lock.release()

    def _revert(self, path: str, label: str, version: str, operator: Operator, reason: str) -> RevertDone:
        if self.remote and self.refresh is not None and not self.refresh(0.0):
            raise RevertFailed("cannot fetch the remote before reverting: try again")
        branch = f"refs/heads/{label}"
        tip = self._commit_of(path, branch, f"label {label!r} is not a branch of the repository")
        full = self._commit_of(path, version, f"no commit {version} in the repository")
        command = self.command(label, full)
        if self._git(path, "merge-base", "--is-ancestor", full, tip)[0] != 0:
            raise NotRevertable(f"commit {full[:12]} is not on label {label!r}", command)
        parents = self._ok(path, "rev-list", "--parents", "-n", "1", full).split()[1:]
        if len(parents) > 1:
            raise NotRevertable(
                f"commit {full[:12]} is a merge commit: which parent is the mainline is yours to choose;"
                " revert it by hand",
                revert_command(label, full, self.remote, mainline=True),
            )
        checked_out = [] if self.remote else self._checked_out(path, branch, command)
        subject = self._ok(path, "log", "-1", "--format=%s", full).strip()
        author, email = operator.identity()
        message = (
            f'Revert "{subject}"\n\nThis reverts commit {full}.\n\n'
            f"Reason: {reason}\nReverted-by: {author} <{email}>\n"
        )
        new = self._commit_revert(path, label, tip, full, operator, message, command)
        if self.remote:
            self._push(path, label, new, command)
        else:
            self._update_branch(path, branch, new, tip, label, checked_out)
        log.info("reverted %s on %s as %s by %s", full[:12], label, new[:12], operator.name)
        return RevertDone(label, full, tip, new, self.remote, message)

    def _commit_revert(
        self, path: str, label: str, tip: str, full: str, operator: Operator, message: str, command: str
    ) -> str:
        """The revert commit, made on `tip` in a temporary worktree that is removed afterwards."""
        scratch = Path(tempfile.mkdtemp(prefix="config-server-revert-"))
        tree = scratch / "tree"
        try:
            self._ok(path, "worktree", "add", "--detach", "--quiet", str(tree), tip)
            code, _, err = self._git(str(tree), "revert", "--no-commit", full)
            if code != 0:
                conflicted = self._git(str(tree), "diff", "--name-only", "--diff-filter=U")[1].split()
                where = ", ".join(conflicted) or git_error(GitFailed(err))
                raise RevertRefused(
                    f"reverting {full[:12]} conflicts with later changes on {label!r} ({where}):"
                    " nothing was changed; revert it by hand and resolve the conflict",
                    command,
                )
            if self._git(str(tree), "diff", "--cached", "--quiet")[0] == 0:
                raise RevertRefused(
                    f"reverting {full[:12]} changes nothing on {label!r} (already reverted?):"
                    " nothing was changed"
                )
            (scratch / "message").write_text(message)
            author, email = operator.identity()
            identity = {
                "GIT_AUTHOR_NAME": author,
                "GIT_AUTHOR_EMAIL": email,
                "GIT_COMMITTER_NAME": COMMITTER[0],
                "GIT_COMMITTER_EMAIL": COMMITTER[1],
            }
            message_file = str(scratch / "message")
            self._ok(str(tree), "commit", "--quiet", "--no-verify", "-F", message_file, env=identity)
            return self._ok(str(tree), "rev-parse", "HEAD").strip()
        finally:
            self._git(path, "worktree", "remove", "--force", str(tree))
            shutil.rmtree(scratch, ignore_errors=True)
            self._git(path, "worktree", "prune")

    def _update_branch(
        self, path: str, branch: str, new: str, tip: str, label: str, checked_out: list[str]
    ) -> None:
        """Move a local branch from `tip` to `new`, only if it is still at `tip`; a clean working tree
        that has the branch checked out is brought along (as a fast-forward would)."""
        code, _, err = self._git(path, "update-ref", "-m", "config-server revert", branch, new, tip)
        if code != 0:
            raise RevertRefused(
                f"label {label!r} moved while the revert was made: nothing was changed; try again"
            )
        for tree in checked_out:
            code, _, err = self._git(tree, "read-tree", "-u", "-m", tip, new)
            if code != 0:
                log.warning("revert %s is on %s; working tree %s did not follow: %s", new, label, tree, err)

    def _push(self, path: str, label: str, new: str, command: str) -> None:
        """Push the revert to the remote's branch, never forced: a branch that moved refuses it."""
        assert self.push_url is not None
        code, _, err = self._git(
            path, "push", "--quiet", "--", self.push_url, f"{new}:refs/heads/{label}", timeout=PUSH_TIMEOUT
        )
        if code == 0:
            if self.refresh is not None:
                self.refresh(0.0)  # the mirror's branch follows now, not at the next refresh
            return
        if re.search(r"\[rejected\]|non-fast-forward|fetch first", err):
            raise RevertRefused(
                f"label {label!r} moved on the remote while the revert was made: nothing was changed;"
                " try again",
                command,
            )
        raise RevertFailed(f"cannot push the revert: {git_error(GitFailed(err))}")

    def _checked_out(self, path: str, branch: str, command: str) -> list[str]:
        """Working trees of a local repository that have `branch` checked out; RevertRefused when one
        has uncommitted changes (the revert would leave them behind their branch)."""
        trees, current = [], ""
        for line in self._ok(path, "worktree", "list", "--porcelain").splitlines():
            if line.startswith("worktree "):
                current = line.removeprefix("worktree ")
            elif line == f"branch {branch}":
                trees.append(current)
        for tree in trees:
            if self._ok(tree, "status", "--porcelain", "--untracked-files=no").strip():
                raise RevertRefused(
                    f"the working tree {tree} has {branch.removeprefix('refs/heads/')!r} checked out with"
                    " uncommitted changes: nothing was changed; commit them first",
                    command,
                )
        return trees

    def _commit_of(self, path: str, revision: str, missing: str) -> str:
        """The full commit id `revision` names; NotRevertable(`missing`) when it names none."""
        code, out, _ = self._git(
            path, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"
        )
        if code != 0:
            raise NotRevertable(missing)
        return out.strip()

    def _ok(self, path: str, *args: str, env: dict[str, str] | None = None) -> str:
        """git's output; RevertFailed when it fails."""
        code, out, err = self._git(path, *args, env=env)
        if code != 0:
            raise RevertFailed(f"git {args[0]} failed: {git_error(GitFailed(err))}")
        return out

    def _git(
        self, path: str, *args: str, env: dict[str, str] | None = None, timeout: float = STEP_TIMEOUT
    ) -> tuple[int, str, str]:
        """Run git in `path` with a deadline (RevertFailed when it passes)."""
        try:
            return git_result(["-C", path, *_GIT_OPTIONS, *args], timeout, {**self.git_env, **(env or {})})
        except GitFailed as exc:
            raise RevertFailed(str(exc)) from None
