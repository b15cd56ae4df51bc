"""HTTP to the config server: one `requests.Session` with auth, timeouts, conditional GET and long poll.

Several servers (replicas of one cluster) may be given: the transport sticks to one, and moves to
the next on a connection error, a timeout or a 5xx answer (trying each once per fetch; the
caller backs off when all failed). It never goes backwards in version when it moves: right
after a move, an answer naming a version this client already held before its current one comes
from a replica that has not fetched yet, so it is taken as "not modified" (the client keeps its
settings) for up to `stale_grace` seconds, by which time every replica has fetched at least once.
After that grace the answer is accepted, so a deliberate rollback of the label still arrives.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from config_client.errors import ConfigUnavailable, InvalidResponse, ServerError
from config_client.variables import SERVERS_ENV, configured_servers

#: (connect, read) seconds for an ordinary request; a long poll adds its wait to the read timeout.
DEFAULT_TIMEOUT = (3.05, 10.0)
#: Seconds after a move to another server during which an older version it answers is held off.
DEFAULT_STALE_GRACE = 60.0
#: Versions remembered to recognise an older one.
_HISTORY = 64


@dataclass(frozen=True)
class FetchResult:
    """An answer: 200 with an Environment, or 304 (not modified); `etag` as the server sent it."""

    status: int
    environment: dict[str, Any] | None
    etag: str | None
    server: str | None = None
    #: The application names the server says no file names (`X-Config-Unknown-Application`), and
    #: each one's closest known application where the server names one.
    unknown: tuple[tuple[str, str | None], ...] = ()


def server_urls(value: str | Sequence[str] | None) -> list[str]:
    """The server URLs from a URL, a comma-separated list (Spring's form), a sequence of either,
    or (None) the CONFIG_CLIENT_SERVERS variable (or the deprecated CONFIG_SERVER_URL, with a
    warning: see `config_client.variables`); raises ValueError when there is none."""
    if value is None:
        value = configured_servers("") or ""
    items = [value] if isinstance(value, str) else list(value)
    urls = [part.strip().rstrip("/") for item in items for part in str(item).split(",") if part.strip()]
    if not urls:
        raise ValueError(f"no config server URL given (pass one, or set {SERVERS_ENV})")
    return urls


class Transport:
    """Fetches one (application, profiles, label) Environment from a server, or from the first of
    several that answers (see the module docstring for how it moves between them)."""

    def __init__(
        self,
        server_url: str | Sequence[str] | None,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        verify: bool | str = True,
        stale_grace: float = DEFAULT_STALE_GRACE,
    ) -> None:
        self.servers = server_urls(server_url)
        self._current = 0
        self.stale_grace = stale_grace
        self._answered_by: str | None = None  # the server of the newest version accepted
        self._moved_at = 0.0
        self._versions: OrderedDict[str, None] = OrderedDict()  # held versions, newest last
        self._closed = threading.Event()
        self.timeout = timeout
        self.session = requests.Session()
        # Passed with each request too: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self.verify = verify
        self.session.verify = verify
        self.session.headers["Accept"] = "application/json"
        if username is not None or password is not None:
            self.session.auth = (username or "", password or "")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    @property
    def server_url(self) -> str:
        """The server asked now."""
        return self.servers[self._current]

    def environment_url(self, app: str, profiles: str, label: str | None) -> str:
        """`/{app}/{profiles}[/{label}]` with each part escaped and `/` in a label written `(_)`."""
        parts = [app, profiles] + ([label.replace("/", "(_)")] if label else [])
        return self.server_url + "/" + "/".join(quote(p, safe="(),_-.") for p in parts)

    def fetch(
        self,
        app: str,
        profiles: str,
        label: str | None,
        etag: str | None = None,
        wait: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> FetchResult:
        """GET the Environment; with `etag` it is conditional, with `wait` it is a long poll;
        `headers` are added (the instance report).

        A connection error, timeout or 5xx moves to the next server at once; the error of the
        last one is raised when every server failed.
        """
        error: ConfigUnavailable | ServerError | None = None
        for _ in self.servers:
            try:
                return self._fetch_from_current(app, profiles, label, etag, wait, headers)
            except ConfigUnavailable as exc:
                error = exc
            except ServerError as exc:
                if exc.status < 500:
                    raise
                error = exc
            if len(self.servers) == 1 or self._closed.is_set():
                break
            self._current = (self._current + 1) % len(self.servers)
            self._moved_at = time.monotonic()
        assert error is not None
        raise error

    def _fetch_from_current(
        self,
        app: str,
        profiles: str,
        label: str | None,
        etag: str | None,
        wait: float | None,
        extra_headers: dict[str, str] | None,
    ) -> FetchResult:
        headers = dict(extra_headers or {})
        if etag:
            headers["If-None-Match"] = _quoted(etag)
        params = {"wait": f"{wait:g}"} if wait else None
        timeout = (self.timeout[0], self.timeout[1] + (wait or 0))
        url = self.environment_url(app, profiles, label)
        try:
            response = self.session.get(
                url, headers=headers, params=params, timeout=timeout, verify=self.verify
            )
        except requests.RequestException as exc:
            raise ConfigUnavailable(f"cannot reach {self.server_url}: {exc}") from exc
        tag = _unquoted(response.headers.get("ETag"))
        unknown = _unknown_applications(response.headers)
        if response.status_code == 304:
            return FetchResult(304, None, tag or etag, self.server_url, unknown)
        if response.status_code != 200:
            raise ServerError(response.status_code, _message(response))
        try:
            body = response.json()
        except ValueError as exc:
            raise InvalidResponse(f"the answer from {url} is not JSON") from exc
        if not isinstance(body, dict):
            raise InvalidResponse(f"the answer from {url} is not a JSON object")
        if self._older_than_held(body.get("version")):
            # A replica that has not fetched yet: keep what we hold, ask again in a moment.
            self._closed.wait(min(wait or 0.0, 0.5))
            return FetchResult(304, None, etag, self.server_url)
        return FetchResult(200, body, tag, self.server_url, unknown)

    def _older_than_held(self, version: Any) -> bool:
        """True for a version held before the current one, answered by another server than the
        current version's, within the grace after a move; otherwise remember it as held."""
        if not isinstance(version, str) or not version:
            return False
        newest = next(reversed(self._versions), None)
        if (
            version != newest
            and version in self._versions
            and self._answered_by not in (None, self.server_url)
            and time.monotonic() - self._moved_at < self.stale_grace
        ):
            return True
        self._versions.pop(version, None)
        self._versions[version] = None
        while len(self._versions) > _HISTORY:
            self._versions.popitem(last=False)
        self._answered_by = self.server_url
        return False

    def close(self) -> None:
        """Close the session's connections."""
        self._closed.set()
        self.session.close()


def _unknown_applications(headers: Mapping[str, str]) -> tuple[tuple[str, str | None], ...]:
    """(name, closest known application or None) per name of `X-Config-Unknown-Application`, the
    closest from `X-Config-Closest-Application` (`ordres=orders,...`)."""
    names = [name.strip() for name in headers.get("X-Config-Unknown-Application", "").split(",")]
    closest: dict[str, str] = {}
    for pair in headers.get("X-Config-Closest-Application", "").split(","):
        name, _, near = pair.partition("=")
        if name.strip() and near.strip():
            closest[name.strip()] = near.strip()
    return tuple((name, closest.get(name)) for name in names if name)


def backoff(initial: float = 0.5, maximum: float = 30.0) -> Iterator[float]:
    """Exponential back-off delays with jitter: each in [d/2, d], d doubling up to `maximum`."""
    delay = initial
    while True:
        yield random.uniform(delay / 2, delay)
        delay = min(delay * 2, maximum)


def _quoted(etag: str) -> str:
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'


def _unquoted(etag: str | None) -> str | None:
    if not etag:
        return None
    return etag.removeprefix("W/").strip('"')


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except ValueError:
        pass
    return response.reason or "error"
