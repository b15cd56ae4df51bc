"""`GET /instances` (who runs which version) and `GET /metrics` (Prometheus text format).

`/instances` needs the `read` role and shows only environments the client may read (an admin, or
anybody on an open server, sees all); naming an application the client may not read is a 403.
An instance of a list request (`/orders,payments/...`) is shown only to a client that may read
every application and every label of the list. One answer holds at most `limit` instances (1000
unless asked, at most 10,000) of those the client may see (filtered before the limit); `truncated`
says whether more matched, and a `note` says what to do.
`/metrics` needs the `monitor` role (or admin), the role a Prometheus scrape token is given.
"""

from __future__ import annotations

import functools
import time
from fnmatch import fnmatchcase

from flask import Blueprint, Response, jsonify, request

from config_server import names
from config_server.errors import AccessDenied, InvalidLimit
from config_server.http import security
from config_server.http.auth import Client
from config_server.http.context import server_state
from config_server.observability.currency import CurrentSettings
from config_server.observability.inventory import instance_json, summarize
from config_server.observability.metrics import CONTENT_TYPE
from config_server.state import InstanceRecord

blueprint = Blueprint("observe", __name__)

#: Instances in one `/instances` answer unless `limit` says otherwise, and the most it may say.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidLimit(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


@blueprint.get("/instances")
def instances() -> Response:
    """Instances of the environments asked for, and a summary per environment."""
    application = request.args.get("application") or None
    profiles = request.args.get("profiles") or None
    label = request.args.get("label") or None
    if application is not None:
        application = names.validate_application(application)
    if profiles is not None:
        profiles = ",".join(names.validate_profiles(profiles))
    if label is not None:
        label = names.validate_label(label)
    limit = _limit()
    client = security.require_role("read", event="instances")
    security.note("instances", application=application, profiles=profiles, label=label)
    admin = client.has_role("admin")
    if (
        application is not None
        and not admin
        and not any(fnmatchcase(application, p) for p in client.applications)
    ):
        raise AccessDenied(f"client {client.name!r} may not read application {application!r}")
    state = server_state()
    accept = None if admin else functools.partial(may_see, client)
    records = state.inventory.instances(application, profiles, label, limit=limit + 1, accept=accept)
    truncated = len(records) > limit
    records = records[:limit]
    now = time.time()
    is_current = CurrentSettings(state.service)
    answer = {
        "instances": [instance_json(r, now, is_current) for r in records],
        "environments": summarize(
            records,
            now,
            is_current,
            state.changed_in.budget() if state.changed_in is not None else None,
        ),
        "limit": limit,
        "truncated": truncated,
    }
    if truncated:
        answer["note"] = (
            f"more than {limit} instances match: this answer holds the first {limit} (by application, "
            "profiles, label and id) and the environments summary counts only those; narrow it with "
            f"application, profiles and label, or raise limit (at most {MAX_LIMIT})"
        )
    return jsonify(answer)


def may_see(client: Client, record: InstanceRecord) -> bool:
    """Whether `client` may read every application at every label a record names.

    A list request (`/orders,payments/prod/main,release`) is stored under the joined names; a
    glob such as `orders*` must not match the joined text, so each part is checked on its own.
    """
    profiles = record.profiles.split(",")
    return all(
        client.may_read(application, profiles, label)
        for application in record.application.split(",")
        for label in record.label.split(",")
    )


@blueprint.get("/metrics")
def metrics() -> Response:
    """Every worker's metrics, summed, in the Prometheus text exposition format."""
    security.require_role("monitor", event="metrics")
    state = server_state()
    stats = state.service.cache.stats()
    state.metrics.sync_cache(stats["hits"], stats["misses"])
    return Response(state.metrics.exposition(), content_type=CONTENT_TYPE)
