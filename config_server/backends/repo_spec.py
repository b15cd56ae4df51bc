"""What a `--repo` value is: a remote URL to clone, or a local path; and how to show it safely."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_REMOTE_SCHEMES = ("file://", "http://", "https://", "ssh://", "git://")


def is_remote(spec: str) -> bool:
    """True for a URL (or scp-like `user@host:path`) that must be cloned before it is served."""
    return spec.startswith(_REMOTE_SCHEMES) or bool(re.match(r"^[\w.-]+@[\w.-]+:", spec))


def redact(url: str) -> str:
    """The URL without user name and password, fit for logs and property-source names."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
