"""A remote repository's local mirror: cloned once, fetched on demand, shared by every process.

git runs as a subprocess that ends before the call returns, so the gunicorn master clones or
refreshes the mirror before it starts any worker (`serving.prepare_repository`) and leaves no
process or handle for the workers to inherit; they read it through GitPython (`backends/git.py`)
and find it ready.

Nothing here can freeze a gevent worker:
- `git` runs with a deadline and is killed with its helpers when it passes; gevent's patched
  `subprocess` waits cooperatively.
- Within a process one clone or fetch runs at a time under a `threading` lock (cooperative under
  gevent), acquired with a deadline.
- Across the processes sharing a cache directory an `flock` is only ever *tried* (`LOCK_NB`):
  while another process fetches, a refresh polls with cooperative sleeps until that fetch ends
  (its result may be all that is needed) or its own deadline passes; while another clones,
  nothing waits at all.
- A stamp file beside the mirror records when the last successful fetch (or the clone) started.
  A refresh that finds one recent enough (one that started after a webhook arrived, or within
  the refresh interval) does not fetch: one fetch per host per interval however many workers,
  and a webhook storm coalesces into a fetch or two.
- A clone is made in a `.clone-*` folder and renamed into place; the next clone removes folders
  left by a process killed while cloning.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from config_server.backends.repo_spec import redact
from config_server.backends.ssh import SshOptions, is_ssh, ssh_hint
from config_server.errors import GitFailed

log = logging.getLogger(__name__)

#: Longest a `git fetch` may run before it is killed.
FETCH_TIMEOUT = 60.0
#: Longest a `git clone` may run before it is killed (its leftovers are removed by the next clone).
CLONE_TIMEOUT = 600.0
#: Pause between tries of a lock another process holds (a cooperative sleep under gevent).
_LOCK_POLL = 0.05


@contextlib.contextmanager
def try_file_lock(path: Path) -> Iterator[bool]:
    """Try once to take an exclusive lock on `path`, shared by every process that uses it.

    Yields whether it is held; never waits (a blocking `flock` would freeze a gevent worker).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Mirror:
    """The mirror of one remote in a cache directory: `path` is a bare (`--mirror`) clone."""

    def __init__(self, spec: str, cache_dir: str | Path, ssh: SshOptions | None = None) -> None:
        self.spec = spec
        self.uri = redact(spec).rstrip("/")
        #: An SSH remote's `GIT_SSH_COMMAND` (`backends/ssh.py`); nothing for other remotes, and
        #: nothing without SSH settings when the environment already has a GIT_SSH_COMMAND.
        self.ssh = ssh
        self._git_env = (ssh or SshOptions()).git_environment() if is_ssh(spec) else {}
        if ssh is None and "GIT_SSH_COMMAND" in os.environ:
            self._git_env = {}
        digest = hashlib.sha256(spec.encode()).hexdigest()[:16]
        self.path = Path(cache_dir) / f"mirror-{digest}.git"
        self.last_error: str | None = None
        self._lock = threading.Lock()  # one clone or fetch at a time in this process

    def exists(self) -> bool:
        """True once a clone has been renamed into place."""
        return (self.path / "HEAD").exists()

    def ensure_cloned(self) -> bool:
        """Clone the remote unless the mirror exists; True when it exists afterwards.

        When another process is cloning it, return False at once: the caller opens the mirror
        when it appears.
        """
        if self.exists():
            return True
        if not self._lock.acquire(timeout=CLONE_TIMEOUT):
            return self.exists()
        try:
            return self._clone_unless_present()
        finally:
            self._lock.release()

    def refresh(self, max_age: float = 0.0) -> bool:
        """Make the mirror hold a fetch that started at most `max_age` seconds before this call.

        By this process or another; 0 asks for one that started after the call (a webhook's
        push). Fetches only when there is none; clones when there is no mirror yet. False when
        that failed or timed out.
        """
        asked = time.time()
        if not self._lock.acquire(timeout=CLONE_TIMEOUT if not self.exists() else 3 * FETCH_TIMEOUT):
            log.warning("refresh of %s gave up: another refresh in this process did not end", self.uri)
            return False
        try:
            if not self.exists():
                return self._clone_unless_present()
            return self._fetch_unless_fresh(asked - max_age)
        finally:
            self._lock.release()

    def fetched_at(self) -> float | None:
        """When the last successful fetch (or the clone) started, by any process."""
        try:
            return float(self._stamp_path().read_text())
        except (OSError, ValueError):
            return None

    # -- under the in-process lock ------------------------------------------------------------

    def _clone_unless_present(self) -> bool:
        with self._process_lock() as held:
            if not held:
                self.last_error = "another process is cloning the repository"
                return False
            if self.exists():
                return True
            try:
                self._clone()
            except (GitFailed, OSError) as exc:
                self.last_error = self._reason(exc)
                log.warning("cannot clone %s: %s", self.uri, self.last_error)
                return False
        self.last_error = None
        return True

    def _clone(self) -> None:
        """Clone into a fresh folder beside the mirror, then rename it into place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale_clones()
        tmp = Path(tempfile.mkdtemp(prefix=f".clone-{self.path.stem}-", dir=self.path.parent))
        try:
            started = time.time()
            run_git(
                ["clone", "--mirror", "--quiet", "--", self.spec, str(tmp / "repo.git")],
                CLONE_TIMEOUT,
                self._git_env,
            )
            (tmp / "repo.git").rename(self.path)
            self._write_stamp(started)
            log.info("cloned %s into %s", self.uri, self.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _remove_stale_clones(self) -> None:
        """Remove folders of clones that never finished: this mirror's (its lock is held), and any
        other older than a clone may run (left by an older version or a killed process)."""
        for leftover in self.path.parent.glob(".clone-*"):
            try:
                ours = leftover.name.startswith(f".clone-{self.path.stem}-")
                if ours or time.time() - leftover.stat().st_mtime > CLONE_TIMEOUT:
                    shutil.rmtree(leftover, ignore_errors=True)
            except OSError:
                continue

    def _fetch_unless_fresh(self, since: float) -> bool:
        deadline = time.monotonic() + FETCH_TIMEOUT
        while True:
            if self._fetched_since(since):
                return True
            with self._process_lock() as held:
                if held:
                    return self._fetched_since(since) or self._fetch()
            if time.monotonic() > deadline:
                self.last_error = "another process held the fetch lock for too long"
                log.warning("cannot fetch %s: %s", self.uri, self.last_error)
                return False
            time.sleep(_LOCK_POLL)  # another process is fetching; cooperative under gevent

    def _fetch(self) -> bool:
        started = time.time()
        try:
            run_git(
                ["-C", str(self.path), "fetch", "--prune", "--quiet", "origin"], FETCH_TIMEOUT, self._git_env
            )
        except (GitFailed, OSError) as exc:
            self.last_error = self._reason(exc)
            log.warning("cannot fetch %s: %s", self.uri, self.last_error)
            return False
        self._write_stamp(started)
        self.last_error = None
        return True

    def _reason(self, exc: Exception) -> str:
        """Why git failed, in one line without credentials; for SSH, what to do about it."""
        if self._git_env:
            return ssh_hint(git_error(exc), str(getattr(exc, "stderr", "")), self.ssh)
        return git_error(exc)

    def _fetched_since(self, since: float) -> bool:
        stamp = self.fetched_at()
        return stamp is not None and stamp >= since

    def _process_lock(self) -> contextlib.AbstractContextManager[bool]:
        """Try once to take the lock shared by the processes using this cache directory."""
        return try_file_lock(self.path.parent / f"{self.path.name}.lock")

    def _stamp_path(self) -> Path:
        return self.path.parent / f"{self.path.name}.fetched"

    def _write_stamp(self, started: float) -> None:
        tmp = self._stamp_path().with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(repr(started))
        tmp.replace(self._stamp_path())


def run_git(args: list[str], timeout: float, extra_env: dict[str, str] | None = None) -> str:
    """Run git without a terminal, killing it and its children when `timeout` passes; `extra_env`
    is added to its environment (an SSH remote's GIT_SSH_COMMAND). Its standard output; GitFailed
    when it fails."""
    returncode, stdout, stderr = git_result(args, timeout, extra_env)
    if returncode != 0:
        raise GitFailed(stderr or f"git exited with {returncode}")
    return stdout


def git_result(
    args: list[str], timeout: float, extra_env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run git as `run_git` does and return (exit status, stdout, stderr) whatever the status, for
    the callers to whom a non-zero status is an answer (`merge-base --is-ancestor`, a conflict).
    GitFailed only when the deadline passed."""
    # No prompt can hang it: no terminal prompt, no stdin, and no controlling terminal for ssh.
    env = {**os.environ, **(extra_env or {}), "GIT_TERMINAL_PROMPT": "0"}
    process = subprocess.Popen(
        ["git", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own process group, so a timeout kills its helpers too
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a helper outside the group may hold stderr
            process.communicate(timeout=5)
        raise GitFailed(f"git {_subcommand(args)} took longer than {timeout:g} s") from None
    return (
        process.returncode,
        stdout.decode("utf-8", "replace"),
        stderr.decode("utf-8", "replace"),
    )


def _subcommand(args: list[str]) -> str:
    """The git command of `args`, after the global options (`-C <path>`, `-c <name=value>`)."""
    position = 0
    while position < len(args) and args[position] in ("-C", "-c"):
        position += 2
    return args[position] if position < len(args) else "?"


def git_error(exc: Exception) -> str:
    """A one-line reason without credentials (git echoes the URL it was given)."""
    text = getattr(exc, "stderr", "") or str(exc)
    text = " ".join(str(text).split())
    return re.sub(r"://[^/@\s]+@", "://", text)[:300]
