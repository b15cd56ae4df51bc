"""The orders service on FastAPI: settings from the config server, typed, hot-reloaded.

Run the server (`make run`), then in another terminal:

    .venv/bin/uvicorn examples.fastapi_service:app --port 8080
    curl -s localhost:8080/

The config server is read from `CONFIG_CLIENT_SERVERS` (default http://127.0.0.1:8888, the
address `make run` serves; several URLs comma-separated), the token from `CONFIG_CLIENT_TOKEN`;
this service's own port is uvicorn's `--port`, e.g.:

    CONFIG_CLIENT_SERVERS=http://127.0.0.1:9000 .venv/bin/uvicorn examples.fastapi_service:app --port 8081

Commit a change to `orders.yml` in the served repository and the next request shows it, without a
restart. A commit whose `orders` section does not fit `OrdersSettings` (say `max-items: lots`) is
refused: the service keeps its last good settings and tells the server (`X-Config-Rejected`).
"""

from __future__ import annotations

import logging
import os

import pydantic
from fastapi import Depends, FastAPI

from config_client import Change, ConfigClient, Snapshot
from config_client.asgi import lifespan, model_dependency, snapshot_dependency
from config_client.variables import configured_servers


class OrdersSettings(pydantic.BaseModel):
    """The `orders.*` settings this service needs (`max-items` fills `max_items`)."""

    max_items: int = 10
    currency: str = "EUR"


client = ConfigClient(
    configured_servers(default="http://127.0.0.1:8888"),  # CONFIG_CLIENT_SERVERS
    app="orders",
    profiles=os.environ.get("PROFILES", "default"),
    cache_dir=os.environ.get("CONFIG_CACHE_DIR", ".data/client-cache"),
    logging_levels=True,  # logging.level.* in the repository sets this process's log levels
)
orders = client.bind(OrdersSettings, prefix="orders")
current_settings = snapshot_dependency(client)
orders_settings = model_dependency(orders, current_settings)


async def log_change(change: Change) -> None:
    """A coroutine listener: runs on uvicorn's event loop, never on the watcher thread."""
    logging.getLogger("orders").info("settings changed to %s: %s", change.new_version, change.keys)


app = FastAPI(lifespan=lifespan(client, listeners=[log_change]))


@app.get("/")
def index(
    settings: Snapshot = Depends(current_settings),  # noqa: B008 - FastAPI's idiom
    limits: OrdersSettings = Depends(orders_settings),  # noqa: B008
) -> dict[str, object]:
    """Everything here comes from one version of the settings."""
    return {
        "version": settings.version,
        "max_items": limits.max_items,
        "currency": limits.currency,
        "database": settings.get("database.host"),
    }
