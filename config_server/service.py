"""The configuration service: validated request in, resolved and cached environment out.

It is the one place that ties a backend (files at a version), the resolver and the cache
together, for the Environment endpoint, the rendered formats and plain-text resources alike.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Sequence

from config_server import names, render
from config_server.backends.base import Backend, Revision
from config_server.cache import EnvironmentCache, ResolvedEnvironment
from config_server.crypto import Keyring
from config_server.decryption import decrypt_environment
from config_server.errors import ResourceNotFound
from config_server.resolve import Request, resolve_environment

_GLOB_CHARS = set("*?[")


class ConfigService:
    """Resolves environments and resources from one backend, through one cache; decrypts `{cipher}`."""

    def __init__(
        self,
        backend: Backend,
        search_paths: Sequence[str] = (),
        cache_size: int = 1024,
        keyring: Keyring | None = None,
    ) -> None:
        self.backend = backend
        self.keyring = keyring
        self.search_paths = tuple(p.strip().strip("/") for p in search_paths if p.strip().strip("/"))
        self.cache = EnvironmentCache(cache_size)
        self._label_in_paths = any("{label}" in p for p in self.search_paths)

    def environment(
        self, application: str, profiles: str, label: str | None
    ) -> tuple[Revision, ResolvedEnvironment]:
        """Validate the names, resolve the label, and return the (cached) resolved environment."""
        app = names.validate_application(application)
        wanted = names.validate_profiles(profiles)
        real_label = names.validate_label(label) if label is not None else None
        revision = self.backend.resolve(real_label)
        key = (revision.version, app, wanted, revision.label if self._label_in_paths else None)

        def compute():
            request = Request(app, wanted, label)
            folders = self._folders(revision, app, wanted)
            resolved = resolve_environment(
                request,
                revision.version,
                folders,
                lambda path: self.backend.read(revision.version, path),
                self.backend.uri,
            )
            return decrypt_environment(resolved, self.keyring)

        return revision, self.cache.get_or_compute(key, compute)

    def resource(self, application: str, profiles: str, label: str | None, path: str) -> tuple[bytes, str]:
        """A plain-text file with placeholders substituted; returns (content, repository path).

        For `nginx.conf` and profile `prod` it looks for `nginx-prod.conf` before `nginx.conf`,
        in the search paths (later first) before the root.
        """
        safe_path = names.validate_path(path)
        revision, resolved = self.environment(application, profiles, label)
        folders = self._folders(revision, resolved.environment.name, resolved.environment.profiles)
        stem, ext = posixpath.splitext(safe_path)
        candidates = [f"{stem}-{p}{ext}" for p in reversed(resolved.environment.profiles)]
        candidates.append(safe_path)
        for candidate in candidates:
            for folder in reversed(folders):
                full = f"{folder}/{candidate}" if folder else candidate
                data = self.backend.read(revision.version, full)
                if data is None:
                    continue
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    return data, full
                return render.resolve_text(text, resolved.merged).encode("utf-8"), full
        raise ResourceNotFound(f"no file {safe_path!r} at label {revision.label!r}")

    def _folders(self, revision: Revision, app: str, profiles: tuple[str, ...]) -> list[str]:
        """The root, then every search path (placeholders filled, globs expanded), in order."""
        folders = [""]
        for pattern in self.search_paths:
            for expanded in _expand_placeholders(pattern, app, profiles, revision.label):
                for folder in self._glob(revision.version, expanded):
                    if folder not in folders:
                        folders.append(folder)
        return folders

    def _glob(self, version: str, pattern: str) -> list[str]:
        parts = [p for p in pattern.split("/") if p and p != "."]
        if any(p == ".." for p in parts):
            return []
        if not any(_GLOB_CHARS & set(p) for p in parts):
            return ["/".join(parts)]
        found = [""]
        for part in parts:
            nxt = []
            for base in found:
                children = sorted(self.backend.listing(version, base).folders)
                matched = (
                    fnmatch.filter(children, part)
                    if _GLOB_CHARS & set(part)
                    else ([part] if part in children else [])
                )
                nxt.extend(f"{base}/{m}" if base else m for m in matched)
            found = nxt
        return found


def _expand_placeholders(pattern: str, app: str, profiles: tuple[str, ...], label: str) -> list[str]:
    pattern = pattern.replace("{application}", app).replace("{label}", label)
    if "{profile}" not in pattern:
        return [pattern]
    return [pattern.replace("{profile}", p) for p in profiles]
