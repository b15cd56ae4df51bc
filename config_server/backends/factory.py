"""Choose the backend a repository spec needs: a git repository (local or remote) or a folder."""

from __future__ import annotations

from pathlib import Path

from config_server.backends.base import Backend
from config_server.backends.git import GitBackend
from config_server.backends.native import NativeBackend
from config_server.backends.repo_spec import is_remote
from config_server.backends.ssh import SshOptions
from config_server.errors import ConfigServerError


def open_backend(
    spec: str, cache_dir: str | Path, default_label: str | None = None, ssh: SshOptions | None = None
) -> Backend:
    """A GitBackend for a URL or a git repository's top folder, a NativeBackend for a plain folder;
    `ssh` is how git reaches an SSH remote."""
    if is_remote(spec):
        return GitBackend(spec, cache_dir, default_label, ssh)
    path = Path(spec)
    if not path.is_dir():
        raise ConfigServerError(f"repository {spec} does not exist")
    if (path / ".git").exists() or (path / "HEAD").is_file() and (path / "objects").is_dir():
        return GitBackend(str(path), cache_dir, default_label)
    return NativeBackend(path, default_label or "main")
