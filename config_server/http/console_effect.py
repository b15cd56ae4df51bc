"""The console's "what would change" views: the effect of a change on one application's settings.

Two places of the application page show it, both with the code of `GET /diff`
(`observability/change_effect.py:change_effect` and the same gates, `http/diff.py:release_gates`):
per key added, removed or changed, old and new value (`{cipher}` values masked), the file and line
of the new value, and whether the newer version would be held back and why.

- The held-back section: for each held-back or awaiting-approval commit, the served version
  against the held one (`held_back_effects`; environments held back by the same commit from the
  same served version share one comparison).
- A history row's "diff" link: that commit against its first parent (`commit_effect`).

Only the application's environments are resolved (`change_effect(application=...)`: no other
application's files are read, even for a change to a shared file), and of those only what the
signed-in client may read at the label. The diff code pauses for other greenlets as it goes, so a
page never holds the gevent hub.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from config_server.errors import ConfigServerError
from config_server.http import security
from config_server.http.auth import ANONYMOUS
from config_server.http.context import server_state
from config_server.http.diff import release_gates
from config_server.observability.change_effect import ChangeEffect, Visible, change_effect


@dataclass(frozen=True)
class EffectView:
    """What the console shows of one comparison: the effect, or why there is none."""

    base: str | None
    head: str
    effect: ChangeEffect | None
    error: str | None = None


def shown_value(value: Any) -> str:
    """A setting's value as the view shows it: a string as it is, anything else as JSON (`true`,
    `10`, `["a", "b"]`), the way a YAML or JSON file writes it; nothing for a missing value."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def readable_by_caller(label: str) -> Visible | None:
    """The environments the signed-in client may read at `label`; None (every one) for an admin
    or anybody on an open server."""
    client = security.caller()
    if client is None or client is ANONYMOUS or client.has_role("admin"):
        return None
    return lambda application, profiles: client.may_read(application, profiles, label)


def application_effect(application: str, base: str, head: str, label: str) -> EffectView:
    """The effect on `application`'s environments of going from version `base` to `head` (of
    `label`), as `GET /diff` computes it; a comparison that cannot be made says why."""
    service = server_state().service
    try:
        effect = change_effect(
            service,
            base,
            head,
            None,
            release_gates(service),
            readable_by_caller(label),
            application=application,
        )
    except ConfigServerError as exc:
        return EffectView(base, head, None, str(exc))
    return EffectView(base, head, effect)


def held_back_effects(application: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One "what would change" per distinct (label, served version, held commit) of the held-back
    rows: `{"label", "profiles" (the rows'), "served", "commit", "view"}`, in the rows' order."""
    label_default = server_state().service.backend.default_label()
    grouped: dict[tuple[str, str | None, str], dict[str, Any]] = {}
    for row in rows:
        commit = row.get("commit")
        if not commit:
            continue
        label = row.get("label") or label_default
        key = (label, row.get("served"), commit)
        if key not in grouped:
            grouped[key] = {"label": label, "served": row.get("served"), "commit": commit, "profiles": []}
        grouped[key]["profiles"].append(row.get("profiles") or "default")
    for (label, served, commit), group in grouped.items():
        group["view"] = (
            application_effect(application, served, commit, label)
            if served
            else EffectView(None, commit, None, "no earlier version of this label is good: nothing is served")
        )
    return list(grouped.values())


def commit_effect(application: str, version: str, label: str) -> EffectView:
    """A history row's diff: `version` against its first parent, for `application` (a commit
    without a parent says so)."""
    backend = server_state().service.backend
    try:
        parents = backend.parents(version)
    except ConfigServerError as exc:
        return EffectView(None, version, None, str(exc))
    if not parents:
        return EffectView(None, version, None, "the first commit: it has no parent to compare with")
    return application_effect(application, parents[0], version, label)
