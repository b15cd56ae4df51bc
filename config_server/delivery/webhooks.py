"""Push webhooks for `POST /monitor`: who sent it, is it genuine, which applications changed.

GitHub (`X-GitHub-Event`, HMAC-SHA256 in `X-Hub-Signature-256`), Gitea (`X-Gitea-Event`,
HMAC-SHA256 hex in `X-Gitea-Signature`), GitLab (`X-Gitlab-Event`, shared token in
`X-Gitlab-Token`), Bitbucket (`X-Event-Key`, HMAC-SHA256 in `X-Hub-Signature`), or a plain form
`path=orders.yml`. With a secret configured, every delivery must prove it knows the secret; the
comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import parse_qs

from config_server.content.file_names import applications_reading
from config_server.errors import WebhookRejected

ALL = "*"


@dataclass(frozen=True)
class Push:
    """A verified delivery: the sender and the changed file paths (None: unknown, refresh all)."""

    sender: str
    paths: tuple[str, ...] | None


def parse_push(request_headers: Iterable[tuple[str, str]], body: bytes, secret: str | None) -> Push:
    """Identify the sender, verify the delivery when a secret is set, and list the changed paths.
    Header names are matched without regard to case, as HTTP says."""
    headers = {name.lower(): value for name, value in request_headers}
    sender = _sender(headers)
    if secret:
        _verify(sender, headers, body, secret)
    if sender == "form":
        form = parse_qs(body.decode("utf-8", "replace"))
        paths = form.get("path", [])
        return Push(sender, tuple(paths) if paths else None)
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        payload = {}
    return Push(sender, _changed_paths(payload))


def applications_for(paths: Iterable[str] | None) -> list[str]:
    """`orders-prod.yml` -> `orders` (and `orders-prod`, a hyphenated application's own file), as
    `file_names.applications_reading` says; any `application*` file, a file that is no
    configuration source (a template may be used by anyone), or an unknown list -> `*` (all)."""
    if paths is None:
        return [ALL]
    apps: set[str] = set()
    for path in paths:
        reading = applications_reading(PurePosixPath(path).name)
        if reading is None:
            return [ALL]
        apps.update(reading)
    return sorted(apps)


def _sender(headers: Mapping[str, str]) -> str:
    if "x-github-event" in headers:
        return "github"
    if "x-gitea-event" in headers:
        return "gitea"
    if "x-gitlab-event" in headers:
        return "gitlab"
    if "x-event-key" in headers:
        return "bitbucket"
    return "form"


def _verify(sender: str, headers: Mapping[str, str], body: bytes, secret: str) -> None:
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if sender == "gitlab":
        supplied = headers.get("x-gitlab-token", "")
        ok = hmac.compare_digest(supplied.encode(), secret.encode())
    elif sender == "gitea":
        ok = hmac.compare_digest(headers.get("x-gitea-signature", "").encode(), expected.encode())
    else:
        header = "x-hub-signature" if sender == "bitbucket" else "x-hub-signature-256"
        supplied = headers.get(header) or headers.get("x-hub-signature-256", "")
        ok = hmac.compare_digest(supplied.encode(), f"sha256={expected}".encode())
    if not ok:
        raise WebhookRejected(f"{sender} webhook signature or token is missing or wrong")


def _changed_paths(payload: object) -> tuple[str, ...] | None:
    if not isinstance(payload, dict) or not isinstance(payload.get("commits"), list):
        return None
    paths: list[str] = []
    for commit in payload["commits"]:
        if not isinstance(commit, dict):
            continue
        for kind in ("added", "modified", "removed"):
            files = commit.get(kind)
            if isinstance(files, list):
                paths.extend(str(f) for f in files)
    return tuple(paths) if paths else None
