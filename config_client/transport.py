"""HTTP to the config server: one `requests.Session` with auth, timeouts, conditional GET and long poll."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from config_client.errors import ConfigUnavailable, InvalidResponse, ServerError

#: (connect, read) seconds for an ordinary request; a long poll adds its wait to the read timeout.
DEFAULT_TIMEOUT = (3.05, 10.0)


@dataclass(frozen=True)
class FetchResult:
    """An answer: 200 with an Environment, or 304 (not modified); `etag` as the server sent it."""

    status: int
    environment: dict[str, Any] | None
    etag: str | None


class Transport:
    """Fetches one (application, profiles, label) Environment from a server."""

    def __init__(
        self,
        server_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        verify: bool | str = True,
    ) -> None:
        self.server_url = server_url.rstrip("/")
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
        `headers` are added (the instance report)."""
        headers = dict(headers or {})
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
        if response.status_code == 304:
            return FetchResult(304, None, tag or etag)
        if response.status_code != 200:
            raise ServerError(response.status_code, _message(response))
        try:
            body = response.json()
        except ValueError as exc:
            raise InvalidResponse(f"the answer from {url} is not JSON") from exc
        if not isinstance(body, dict):
            raise InvalidResponse(f"the answer from {url} is not a JSON object")
        return FetchResult(200, body, tag)

    def close(self) -> None:
        """Close the session's connections."""
        self.session.close()


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
