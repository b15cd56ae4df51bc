"""Clients, their hashed tokens and what each may do, read from the `--auth-file`.

```yaml
clients:
  - name: orders-service
    tokens: [sha256:9f86d0...]          # `config-server token` makes one; two during a rotation
    roles: [read]                       # read, encrypt, decrypt, monitor, rollout, release (pins),
                                        # approver (approvals), admin (admin: all)
    applications: [orders]              # globs; default "*"
    profiles: ["*"]
    labels: [main, "release-*"]
  - name: alice
    email: alice@example.com            # optional: who the person is in git (release approvals)
    groups: [release-managers]          # optional: a policy may let only one group approve
    tokens: [sha256:2c26b4...]
    roles: [approver]
```

Tokens are random 256-bit strings, so one SHA-256 is an adequate hash (as for GitHub's tokens);
the file never holds a token in plain text. A presented token is hashed and looked up by its hash
in an index of the stored hashes (built when the file is read, so bounded by it; never the plain
token), then confirmed with a constant-time compare: no scan of every client per request. The
file is re-read when it changes, so tokens are added, rotated and revoked without a restart; a
broken edit keeps the last good clients.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

from config_server.errors import AuthFileError

log = logging.getLogger(__name__)

ROLES = frozenset({"read", "encrypt", "decrypt", "monitor", "rollout", "release", "approver", "admin"})
HASH_PREFIX = "sha256:"
_RELOAD_CHECK_SECONDS = 1.0


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The `sha256:<hex>` form the auth file stores."""
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Client:
    """One caller: its name, roles and the applications, profiles and labels it may read."""

    name: str
    roles: frozenset[str]
    applications: tuple[str, ...] = ("*",)
    profiles: tuple[str, ...] = ("*",)
    labels: tuple[str, ...] = ("*",)
    token_digests: tuple[bytes, ...] = ()
    #: The person's email in git: an approver may not approve a commit it wrote (name or email).
    email: str | None = None
    #: Groups the client belongs to (a release policy may name the one whose approvals count).
    groups: tuple[str, ...] = ()

    def has_role(self, role: str) -> bool:
        """True when the client holds `role` or `admin`."""
        return role in self.roles or "admin" in self.roles

    def covers(self, application: str, label: str | None = None) -> bool:
        """True when the application (and the label, when given) match the client's globs, or the
        client is an admin: the scope of what it may see or do beyond reading (rollouts, instances)."""
        if "admin" in self.roles:
            return True
        return _matches(application, self.applications) and (label is None or _matches(label, self.labels))

    def may_read(self, application: str, profiles: Iterable[str], label: str) -> bool:
        """True when the application, every profile and the label match the client's globs."""
        return (
            self.has_role("read")
            and _matches(application, self.applications)
            and all(_matches(p, self.profiles) for p in profiles)
            and _matches(label, self.labels)
        )


#: The caller when no auth file is configured: the server is open.
ANONYMOUS = Client("anonymous", frozenset({"admin"}))


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


def parse_clients(data: object, source: str = "auth file") -> tuple[Client, ...]:
    """Validate the YAML structure and build the clients; raise AuthFileError on any mistake."""
    if not isinstance(data, dict) or not isinstance(data.get("clients"), list):
        raise AuthFileError(f"{source}: expected a mapping with a 'clients' list")
    clients, names = [], set()
    for index, entry in enumerate(data["clients"]):
        where = f"{source}: client #{index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise AuthFileError(f"{where} needs a name")
        where = f"{source}: client {entry['name']!r}"
        if entry["name"] in names:
            raise AuthFileError(f"{where} is listed twice")
        names.add(entry["name"])
        if "token" in entry:
            raise AuthFileError(f"{where} has a plain 'token': store its hash under 'tokens'")
        roles = frozenset(_strings(entry.get("roles", ["read"]), where, "roles"))
        if roles - ROLES:
            raise AuthFileError(f"{where} has unknown roles {sorted(roles - ROLES)}")
        digests = tuple(_digest(h, where) for h in _strings(entry.get("tokens", []), where, "tokens"))
        if not digests:
            raise AuthFileError(f"{where} has no tokens")
        clients.append(
            Client(
                name=entry["name"],
                roles=roles,
                applications=tuple(_strings(entry.get("applications", ["*"]), where, "applications")),
                profiles=tuple(_strings(entry.get("profiles", ["*"]), where, "profiles")),
                labels=tuple(_strings(entry.get("labels", ["*"]), where, "labels")),
                token_digests=digests,
                email=_email(entry.get("email"), where),
                groups=tuple(_strings(entry.get("groups", []), where, "groups")),
            )
        )
    return tuple(clients)


def _strings(value: object, where: str, what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AuthFileError(f"{where}: {what} must be a list of strings")
    return value


def _email(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "@" not in value or any(ch.isspace() for ch in value.strip()):
        raise AuthFileError(f"{where}: email must be an address like name@example.com")
    return value.strip()


def _digest(stored: str, where: str) -> bytes:
    if not stored.startswith(HASH_PREFIX):
        raise AuthFileError(f"{where}: a token hash must look like sha256:<64 hex digits>")
    try:
        digest = bytes.fromhex(stored[len(HASH_PREFIX) :])
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise AuthFileError(f"{where}: a token hash must look like sha256:<64 hex digits>")
    return digest


class AuthFile:
    """The clients of an auth file, re-read (at most once a second) when the file changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._set(self._load())
        self._checked = time.monotonic()
        #: Called after each reload that changed the clients: the watch hub rechecks parked polls.
        self.on_reload: list[Callable[[], object]] = []

    def _set(self, clients: tuple[Client, ...]) -> None:
        """Install new clients with the index from each stored token hash to its client."""
        index: dict[bytes, Client] = {}
        for client in clients:
            for digest in client.token_digests:
                index.setdefault(digest, client)
        self._clients, self._index = clients, index

    def _file_stamp(self) -> tuple[int, int, int]:
        st = self.path.stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> tuple[Client, ...]:
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise AuthFileError(f"{self.path}: not valid YAML ({exc})") from None
        return parse_clients(data, str(self.path))

    def clients(self) -> tuple[Client, ...]:
        """The current clients, reloading the file first when it changed."""
        now = time.monotonic()
        reloaded = False
        if now - self._checked >= _RELOAD_CHECK_SECONDS:
            with self._lock:
                if now - self._checked >= _RELOAD_CHECK_SECONDS:
                    self._checked = now
                    reloaded = self._reload_if_changed()
        if reloaded:
            for listener in self.on_reload:  # outside the lock: a listener may authenticate
                try:
                    listener()
                except Exception:  # noqa: BLE001 - a listener must not undo a good reload
                    log.exception("auth reload listener %r failed", listener)
        return self._clients

    def _reload_if_changed(self) -> bool:
        """Re-read the file when it changed; True when new clients were installed."""
        try:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return False
            self._set(self._load())
            self._stamp = stamp
            log.info("auth file %s reloaded: %d clients", self.path, len(self._clients))
            return True
        except (OSError, AuthFileError) as exc:
            log.error("auth file %s not reloaded, keeping the previous clients: %s", self.path, exc)
            return False

    def authenticate(self, token: str) -> Client | None:
        """The client holding `token`: looked up by the token's SHA-256, confirmed in constant time."""
        presented = hashlib.sha256(token.encode()).digest()
        self.clients()  # reload first when the file changed
        client = self._index.get(presented)
        if client is None:
            return None
        confirmed = False
        for digest in client.token_digests:
            confirmed |= hmac.compare_digest(presented, digest)
        return client if confirmed else None
