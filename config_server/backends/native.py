"""A plain folder served as-is, for local development: the version is a hash of its content."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from config_server.backends.base import MAX_FILE_BYTES, Backend, Listing, Revision
from config_server.errors import InvalidConfigFile, LabelNotFound

_KEEP_SNAPSHOTS = 4


class NativeBackend(Backend):
    """Serves the files of a folder; symlinks that leave it and hidden entries are ignored.

    Every request re-reads the folder's metadata (names, sizes, modification times); the files are
    read again only when that metadata changed, so a saved file is served at once.
    """

    #: A saved file is truncated, then written: check once its events have stopped for this long.
    change_settle_seconds = 0.05

    def __init__(self, root: str | os.PathLike[str], label: str = "main") -> None:
        self.root = Path(root).resolve()
        self.uri = self.root.as_uri()
        self._label = label
        self._lock = threading.Lock()
        self._signature: tuple[tuple[str, int, int], ...] = ()
        self._snapshots: dict[str, dict[str, bytes | int]] = {}  # int: size of an oversized file
        self._current = ""

    def default_label(self) -> str:
        """The one label a folder has."""
        return self._label

    def resolve(self, label: str | None) -> Revision:
        """A folder has one label; any other is unknown."""
        if label not in (None, self._label):
            raise LabelNotFound(f"label {label!r} not found: a plain folder only has {self._label!r}")
        return Revision(self._label, self._snapshot())

    def read(self, version: str, path: str) -> bytes | None:
        """A file from the snapshot taken for `version`; an oversized file is an error, not absent."""
        files = self._snapshots.get(version)
        data = None if files is None else files.get(path)
        if isinstance(data, int):
            raise InvalidConfigFile(f"{path} is {data} bytes: larger than the {MAX_FILE_BYTES} allowed")
        return data

    def listing(self, version: str, folder: str) -> Listing:
        """Entries of one folder in the snapshot taken for `version`."""
        files = self._snapshots.get(version, {})
        prefix = f"{folder}/" if folder else ""
        names: set[str] = set()
        folders: set[str] = set()
        for path in files:
            if path.startswith(prefix):
                head, _, rest = path[len(prefix) :].partition("/")
                (folders if rest else names).add(head)
        return Listing(frozenset(names), frozenset(folders))

    def watch_paths(self) -> list[tuple[str, bool]]:
        """The folder and everything under it."""
        return [(str(self.root), True)]

    def is_change_path(self, path: str) -> bool:
        """Any file that is not hidden."""
        relative = Path(path).relative_to(self.root) if Path(path).is_relative_to(self.root) else None
        return relative is not None and not any(p.startswith(".") for p in relative.parts)

    def _snapshot(self) -> str:
        entries = list(self._walk())
        signature = tuple((rel, st.st_size, st.st_mtime_ns) for rel, _, st in entries)
        with self._lock:
            if signature == self._signature and self._current in self._snapshots:
                return self._current
            files = {
                rel: full.read_bytes() if st.st_size <= MAX_FILE_BYTES else st.st_size
                for rel, full, st in entries
            }
            digest = hashlib.sha256()
            for rel in sorted(files):
                content = files[rel]
                fingerprint = (
                    hashlib.sha256(content).digest() if isinstance(content, bytes) else b"%d" % content
                )
                digest.update(rel.encode() + b"\0" + fingerprint)
            version = digest.hexdigest()[:40]
            self._snapshots[version] = files
            while len(self._snapshots) > _KEEP_SNAPSHOTS:
                self._snapshots.pop(next(iter(self._snapshots)))
            self._signature, self._current = signature, version
            return version

    def _walk(self) -> Iterator[tuple[str, Path, os.stat_result]]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = Path(dirpath, name)
                real = full.resolve()
                if not real.is_relative_to(self.root) or not real.is_file():
                    continue
                st = real.stat()
                yield full.relative_to(self.root).as_posix(), real, st
