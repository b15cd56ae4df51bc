"""A git repository read through GitPython: local, or a remote mirrored into a cache directory.

Files are read from git objects at the resolved commit, never from a checkout, so requests for
different labels never disturb one another. Branches and tags are read from the ref files (no git
process); a remote mirror is fetched only by `refresh()`, which the server calls from a background
thread and the webhook, never on a request.

A remote is mirrored by `config_server.backends.mirror` (clone, fetch, locks and deadlines, shared
between processes); this module only reads the mirror.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import git
from gitdb.exc import BadName, BadObject

from config_server.backends.base import MAX_FILE_BYTES, Backend, Commit, Listing, Revision
from config_server.backends.mirror import Mirror, git_error
from config_server.backends.repo_spec import is_remote
from config_server.backends.ssh import SshOptions
from config_server.errors import (
    ConfigServerError,
    InvalidConfigFile,
    LabelNotFound,
    RepositoryUnavailable,
)

_HEX = re.compile(r"[0-9a-f]{4,40}")
_FILE_TYPE = 0o100000  # regular files; symlinks (0o120000) and submodules (0o160000) are not
_TREE_TYPE = 0o040000
_TYPE_MASK = 0o170000
#: A ref's loose file stat and (when it has none) packed-refs' stat: it moved when either changed.
_RefSignature = tuple[tuple[int, int, int] | None, tuple[int, int, int] | None]
#: Bytes of blobs kept per backend (a worker): many spellings of one environment, and commits that
#: leave a file alone, read the same blob, which a round trip to git for each resolution made the
#: largest part of a cold resolution (issue 24 item 5). Emptied when full.
BLOB_CACHE_BYTES = 16 * 1024 * 1024


class GitBackend(Backend):
    """Serves a git repository; a remote one is cloned once (as a mirror) and then fetched."""

    def __init__(
        self,
        spec: str,
        cache_dir: str | Path,
        default_label: str | None = None,
        ssh: SshOptions | None = None,
    ) -> None:
        self.spec = spec
        self.remote = is_remote(spec)
        self._default_label = default_label
        self._lock = threading.RLock()
        self._repo: git.Repo | None = None
        self._last_error: str | None = None
        self._last_refresh: float | None = None
        self._root_tree = functools.lru_cache(maxsize=4096)(self._commit_tree)
        self._tree_entries = functools.lru_cache(maxsize=1024)(self._read_tree)
        self._peeled = functools.lru_cache(maxsize=4096)(self._peel)
        self._refs: dict[str, tuple[_RefSignature, str | None, str | None]] = {}
        self._oversized: dict[bytes, int] = {}  # blob id -> size, refused without streaming again
        self._blobs: dict[bytes, bytes] = {}  # blob id -> its bytes (a blob never changes)
        self._blob_bytes = 0
        if self.remote:
            self._mirror = Mirror(spec, cache_dir, ssh)
            self.uri = self._mirror.uri
            self.mirror = self._mirror.path
            if self._mirror.ensure_cloned():
                self._open_existing_mirror()
            else:
                self._last_error = self._mirror.last_error
        else:
            path = Path(spec).resolve()
            try:
                self._repo = git.Repo(path)
            except (git.NoSuchPathError, git.InvalidGitRepositoryError) as exc:
                raise ConfigServerError(f"{spec} is not a git repository") from exc
            self.uri = path.as_uri()

    # -- labels -----------------------------------------------------------------------------

    def default_label(self) -> str:
        """`main`, or `master` when the repository has no `main` (unless configured)."""
        return self._default_ref()[0]

    def _default_ref(self) -> tuple[str, str | None]:
        """The default label and the commit its branch points to (None when it is no branch)."""
        repo = self._require_repo()
        if self._default_label:
            return self._default_label, self._ref_sha(repo, f"refs/heads/{self._default_label}")
        for candidate in ("main", "master"):
            sha = self._ref_sha(repo, f"refs/heads/{candidate}")
            if sha:
                return candidate, sha
        return "main", None

    def resolve(self, label: str | None) -> Revision:
        """Branch, then tag, then full or abbreviated commit id; an annotated tag gives its commit."""
        repo = self._require_repo()
        if label is None:
            name, sha = self._default_ref()
            if sha:
                return Revision(name, self._peeled(sha))
        else:
            name = label
        for ref in (f"refs/heads/{name}", f"refs/tags/{name}", f"refs/remotes/origin/{name}"):
            sha = self._ref_sha(repo, ref)
            if sha:
                return Revision(name, self._peeled(sha))
        if _HEX.fullmatch(name):
            try:
                return Revision(name, self._peeled(name), pinned=True)
            except LabelNotFound:
                pass
        raise LabelNotFound(f"label {name!r} not found: no such branch, tag or commit")

    def _peel(self, sha: str) -> str:
        """The commit a ref target or commit id names; the argument is hexadecimal, never an option."""
        if not _HEX.fullmatch(sha):
            raise LabelNotFound(f"{sha!r} is not a commit id")
        with self._lock:
            try:
                return self._require_repo().rev_parse(f"{sha}^{{commit}}").hexsha
            except (BadName, BadObject, ValueError, git.GitCommandError) as exc:
                raise LabelNotFound(f"label {sha!r} not found: no such commit") from exc

    def _ref_sha(self, repo: git.Repo, ref: str, depth: int = 0) -> str | None:
        """The id a ref points to, remembered until its file or `packed-refs` changes on disk.

        Two `stat` calls replace GitPython's ref parsing on every request; git moves a ref by
        renaming a new file into place, so a moved ref always changes the signature. A symbolic
        ref (`HEAD`, `refs/remotes/origin/HEAD`: `ref: refs/...`) is remembered as its target's
        name, never as an id: its own file does not change when the target branch moves.
        """
        git_dir = repo.git_dir
        loose = _stat_signature(f"{git_dir}/{ref}")
        # A loose ref file wins over packed-refs, so only a missing one needs packed-refs checked.
        signature: _RefSignature = (loose, None if loose else _stat_signature(f"{git_dir}/packed-refs"))
        cached = self._refs.get(ref)
        if cached is None or cached[0] != signature:
            target = _symbolic_target(f"{git_dir}/{ref}") if loose else None
            sha = None
            if target is None:
                try:
                    sha = git.SymbolicReference.dereference_recursive(repo, ref)
                except (ValueError, OSError):
                    sha = None
            if len(self._refs) > 4096:
                self._refs.clear()
            cached = self._refs[ref] = (signature, sha, target)
        target = cached[2]
        if target is None:
            return cached[1]
        return self._ref_sha(repo, target, depth + 1) if depth < 5 else None

    def commit_of(self, revision: str) -> str:
        """The commit a git revision expression names (`HEAD`, `origin/main`, `HEAD~1`, `v1^{}`):
        for the command line only (`config-server diff`), never for a request's label, which
        `resolve` reads. Raises LabelNotFound."""
        if not revision or revision.startswith("-"):
            raise LabelNotFound(f"{revision!r} is not a git revision")
        with self._lock:
            try:
                return str(
                    self._require_repo().git.rev_parse("--verify", "--quiet", f"{revision}^{{commit}}")
                ).strip()
            except git.GitCommandError:
                raise LabelNotFound(f"{revision!r} is not a branch, tag or commit of {self.uri}") from None

    def parents(self, version: str) -> list[str]:
        """The commit's parents, first parent first (the history of the branch it was made on)."""
        with self._lock:
            try:
                return [p.hexsha for p in self._require_repo().commit(version).parents]
            except (BadName, BadObject, ValueError, git.GitCommandError):
                return []

    def author(self, version: str) -> tuple[str, str] | None:
        """The commit's author (name, email) from its header; None for an unknown commit."""
        with self._lock:
            try:
                actor = self._require_repo().commit(version).author
            except (BadName, BadObject, ValueError, git.GitCommandError):
                return None
            return (actor.name or "", actor.email or "")

    def changed_paths(self, old: str, new: str) -> frozenset[str] | None:
        """Files that differ between two commits, found by comparing their trees: a folder whose
        tree id is the same in both is not read (a change to one file of thousands reads the
        root tree and nothing else). No git process is run. None when either commit is no longer
        in the repository (a mirror pruned after a force push): the caller cannot tell then."""
        with self._lock:
            changed: set[str] = set()
            try:
                self._tree_changes(self._root_tree(old), self._root_tree(new), "", changed)
            except ValueError:  # GitPython's answer for an unknown commit id
                return None
        return frozenset(changed)

    def _tree_changes(self, old: bytes | None, new: bytes | None, prefix: str, changed: set[str]) -> None:
        if old == new:
            return
        before = self._tree_entries(old) if old is not None else {}
        after = self._tree_entries(new) if new is not None else {}
        for name in before.keys() | after.keys():
            was, now = before.get(name), after.get(name)
            if was == now:
                continue
            path = prefix + name
            was_tree = was is not None and _is(was, _TREE_TYPE)
            now_tree = now is not None and _is(now, _TREE_TYPE)
            if was_tree or now_tree:
                self._tree_changes(
                    was[1] if was is not None and was_tree else None,
                    now[1] if now is not None and now_tree else None,
                    path + "/",
                    changed,
                )
            if (was is not None and not was_tree) or (now is not None and not now_tree):
                changed.add(path)

    # -- reading ----------------------------------------------------------------------------

    def read(self, version: str, path: str) -> bytes | None:
        """The blob at `path` in commit `version`; symlinks and submodules are not files."""
        folder, _, name = path.rpartition("/")
        with self._lock:
            entries = self._folder_entries(version, folder)
            entry = entries.get(name) if entries is not None else None
            if entry is None or not _is(entry, _FILE_TYPE):
                return None
            cached = self._blobs.get(entry[1])
            if cached is not None:
                return cached
            size = self._oversized.get(entry[1])
            if size is None:
                stream = self._require_repo().odb.stream(entry[1])
                if stream.size <= MAX_FILE_BYTES:
                    data: bytes = stream.read()  # gitdb is untyped
                    self._keep_blob(entry[1], data)
                    return data
                while stream.read(1 << 16):  # drain it: an unread stream would jam git's pipe
                    pass
                size = stream.size
                if len(self._oversized) > 1024:
                    self._oversized.clear()
                self._oversized[entry[1]] = size  # a blob never changes: never stream it again
            raise InvalidConfigFile(f"{path} is {size} bytes: larger than the {MAX_FILE_BYTES} allowed")

    def _keep_blob(self, blob_id: bytes, data: bytes) -> None:
        """Keep a read blob's bytes by its id, within `BLOB_CACHE_BYTES` (emptied when full; a blob
        of more than a quarter of it is not kept, so one file never holds the whole budget)."""
        if len(data) > BLOB_CACHE_BYTES // 4:
            return
        if self._blob_bytes + len(data) > BLOB_CACHE_BYTES:
            self._blobs.clear()
            self._blob_bytes = 0
        self._blobs[blob_id] = data
        self._blob_bytes += len(data)

    def listing(self, version: str, folder: str) -> Listing:
        """Files and sub-folders of `folder` in commit `version` (commits never change)."""
        with self._lock:
            entries = self._folder_entries(version, folder)
        if entries is None:
            return Listing(frozenset(), frozenset())
        files = frozenset(n for n, entry in entries.items() if _is(entry, _FILE_TYPE))
        folders = frozenset(n for n, entry in entries.items() if _is(entry, _TREE_TYPE))
        return Listing(files, folders)

    def _folder_entries(self, version: str, folder: str) -> dict[str, tuple[int, bytes]] | None:
        """Name -> (mode, object id) of one folder at a commit; None when there is no such folder.

        Trees are parsed from their raw bytes once per tree id and kept (a folder unchanged
        between commits is parsed once), so a repository with thousands of files at its root
        costs one parse per new root tree, not one per file read.
        """
        entries = self._tree_entries(self._root_tree(version))
        for part in filter(None, folder.split("/")):
            entry = entries.get(part)
            if entry is None or not _is(entry, _TREE_TYPE):
                return None
            entries = self._tree_entries(entry[1])
        return entries

    def _commit_tree(self, version: str) -> bytes:
        return self._require_repo().commit(version).tree.binsha

    def _read_tree(self, binsha: bytes) -> dict[str, tuple[int, bytes]]:
        return parse_tree(self._require_repo().odb.stream(binsha).read())

    # -- remote mirror ----------------------------------------------------------------------

    def _require_repo(self) -> git.Repo:
        if self._repo is None and self.remote and self._mirror.exists():
            self._open_existing_mirror()  # another process (the master, a worker) cloned it
        if self._repo is None:
            raise RepositoryUnavailable(
                f"repository {self.uri} is not available yet: {self._last_error or 'not cloned'}"
            )
        return self._repo

    def _open_existing_mirror(self) -> None:
        try:
            self._repo = git.Repo(self.mirror)
        except (git.NoSuchPathError, git.InvalidGitRepositoryError, OSError) as exc:
            self._last_error = git_error(exc)
            return
        self._last_error = None
        self._last_refresh = self._mirror.fetched_at() or time.time()

    def history(self, version: str, patterns: list[str], limit: int = 50) -> list[Commit]:
        """`git log` of `version` (a resolved commit id, never a caller's label) limited to the patterns."""
        if not _HEX.fullmatch(version):
            return []
        pathspecs = [f":(glob)**/{p}" for p in patterns]
        out = self._require_repo().git.log(
            f"--max-count={int(limit)}",
            "--format=%H%x1f%an%x1f%at%x1f%s%x1e",
            version,
            "--",
            *pathspecs,
            kill_after_timeout=20,
        )
        commits = []
        for entry in out.split("\x1e"):
            fields = entry.strip("\n").split("\x1f")
            if len(fields) == 4:
                commits.append(Commit(fields[0], fields[1], float(fields[2]), fields[3]))
        return commits

    def refresh(self, max_age: float = 0.0) -> bool:
        """Fetch the remote into the mirror (or clone it, if that never worked).

        True when the mirror holds a fetch that started at most `max_age` seconds before the
        call, by this process or another (`Mirror.refresh`); False when that failed.
        """
        if not self.remote:
            return True
        ok = self._mirror.refresh(max_age)
        self._last_error = self._mirror.last_error
        self._last_refresh = self._mirror.fetched_at() or self._last_refresh
        if ok and self._repo is None:
            self._open_existing_mirror()
        return ok and self._repo is not None

    def refs(self) -> dict[str, str]:
        """Every branch and tag of the (mirrored) repository: full ref name -> the id it points to."""
        output = self._require_repo().git.for_each_ref(
            "--format=%(refname) %(objectname)", "refs/heads", "refs/tags", kill_after_timeout=30
        )
        return dict(line.split(" ", 1) for line in output.splitlines() if " " in line)

    def ref_target(self, ref: str) -> str | None:
        """The id a full ref name (`refs/heads/main`) points to now, None when there is no such ref."""
        return self._ref_sha(self._require_repo(), ref)

    def repository_path(self) -> str:
        """The folder git commands run in (`git -C`): a local repository's working tree (its git
        directory when it is bare), or a remote's mirror. Used by `backends/revert.py`."""
        if self.remote:
            return str(self.mirror)
        repo = self._require_repo()
        return str(repo.working_tree_dir or repo.git_dir)

    def _git_dir(self) -> str:
        return str(self.mirror) if self.remote else str(self._require_repo().git_dir)

    def watch_paths(self) -> list[tuple[str, bool]]:
        """The git directory itself (`packed-refs`, `HEAD`) and `refs/` below it.

        Not `objects/`: a commit writes many objects, and their events would only be filtered out.
        """
        base = self._git_dir()
        return [(base, False), (str(Path(base) / "refs"), True)]

    def is_change_path(self, path: str) -> bool:
        """Refs, `packed-refs` and `HEAD` announce new commits; objects and logs do not."""
        if self._repo is None:
            return False
        base = self._git_dir()
        relative = Path(path).as_posix().removeprefix(Path(base).as_posix()).lstrip("/")
        return relative.startswith("refs/") or relative in ("packed-refs", "HEAD")

    def health(self) -> dict[str, Any]:
        """UP when the repository can be served; remote details for operators."""
        details: dict[str, Any] = {"repository": self.uri}
        if self.remote:
            details["lastRefresh"] = self._mirror.fetched_at() or self._last_refresh
            if self._last_error:
                details["lastError"] = self._last_error
        details["status"] = "UP" if self._repo is not None else "DOWN"
        return details

    def close(self) -> None:
        """Stop GitPython's persistent `git cat-file` processes."""
        if self._repo is not None:
            self._repo.close()


def parse_tree(data: bytes) -> dict[str, tuple[int, bytes]]:
    """A raw git tree object's entries: name -> (mode, 20-byte object id)."""
    entries: dict[str, tuple[int, bytes]] = {}
    position, end = 0, len(data)
    while position < end:
        space = data.index(b" ", position)
        nul = data.index(b"\0", space)
        name = data[space + 1 : nul].decode("utf-8", "surrogateescape")
        entries[name] = (int(data[position:space], 8), data[nul + 1 : nul + 21])
        position = nul + 21
    return entries


def _is(entry: tuple[int, bytes], kind: int) -> bool:
    return entry[0] & _TYPE_MASK == kind


def _stat_signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def _symbolic_target(path: str) -> str | None:
    """The ref a loose symbolic ref file names (`ref: refs/heads/main`), None for an id or no file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return None
    if not head.startswith(b"ref: "):
        return None
    target = head[5:].strip().decode("utf-8", "replace")
    return target if target.startswith("refs/") and ".." not in target else None
