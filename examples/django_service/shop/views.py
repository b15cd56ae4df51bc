"""Views reading settings that change: from the client's snapshot, never from Django's settings."""

import logging
import os

from django.http import HttpRequest, JsonResponse

import config_client.django as config

log = logging.getLogger(__name__)
#: Versions this process was told about by the `config_changed` signal.
changes: list[str | None] = []


def record_change(sender: object, change: object, **kwargs: object) -> None:
    """`config_changed` receiver (runs on the client's watcher thread)."""
    changes.append(change.new_version)  # type: ignore[attr-defined]
    log.info("settings changed to %s", change.new_version)  # type: ignore[attr-defined]


def index(request: HttpRequest) -> JsonResponse:
    """Every value of one request from one version."""
    settings = config.snapshot()
    return JsonResponse(
        {
            "pid": os.getpid(),
            "version": settings.version,
            "max_items": settings.get("orders.max-items"),
            "currency": config.get("orders.currency"),
            "signalled": changes,
        }
    )
