"""The host names this server answers for (`--allowed-hosts`), against DNS rebinding.

A web page can point a name it controls at 127.0.0.1 (DNS rebinding) and then read, from the
browser of someone running the server on a laptop, whatever the server answers: the browser
thinks it talks to the page's own origin, so the same-origin policy does not stop it. The only
thing that gives it away is the `Host` header, which carries the page's name. So a request is
answered only when its host name (the port aside) is on an allow-list: by default the loopback
names when the server listens on a loopback address, any name otherwise; `--allowed-hosts` sets
the list (exact names, or globs such as `*.config.example.com`; `*` allows every name). Pure and
free of Flask: the fast path and the Flask hook ask the same `HostAllowList`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

#: What a server on a loopback address answers to unless told otherwise.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1), the listening host's kind."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(host: str) -> str:
    """The name of a `Host` value, lower case, without the port, brackets or a final dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


class HostAllowList:
    """The names (globs) a request's `Host` may carry; `allows` is cheap and remembers its answers."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(host_name(p) if p.strip() != "*" else "*" for p in patterns if p.strip())
        self.any = "*" in self.patterns
        self._known: dict[str, bool] = {}

    @classmethod
    def for_server(cls, allowed: Iterable[str], listen_host: str) -> HostAllowList:
        """The allow-list of a server listening on `listen_host`: `allowed` when given, else the
        loopback names (and the listening address) on a loopback address, else every name."""
        allowed = [p for p in allowed if p.strip()]
        if allowed:
            return cls(allowed)
        if is_loopback(listen_host):
            return cls((*LOOPBACK_NAMES, listen_host))
        return cls(("*",))

    def allows(self, host: str) -> bool:
        """True when the `Host` value's name is on the list."""
        if self.any:
            return True
        known = self._known.get(host)
        if known is None:
            name = host_name(host)
            known = any(fnmatchcase(name, p) for p in self.patterns)
            if len(self._known) < 1024:
                self._known[host] = known
        return known

    def allows_environ(self, environ: Mapping[str, Any]) -> bool:
        """`allows` for a WSGI request: its `Host` header, else the server's name (HTTP/1.0)."""
        return self.any or self.allows(str(environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or ""))
