"""FastAPI under a real uvicorn server, its settings changed by a real commit (issue 14)."""

from __future__ import annotations

import threading

import pydantic
import requests
import uvicorn
from fastapi import Depends, FastAPI

from config_client import ConfigClient, Snapshot
from config_client.asgi import lifespan, model_dependency, snapshot_dependency
from tests.helpers import free_port, wait_for


class OrdersSettings(pydantic.BaseModel):
    limit: int
    currency: str


def make_app(server_url: str) -> tuple[FastAPI, ConfigClient]:
    client = ConfigClient(server_url, "orders", wait=5)
    orders = client.bind(OrdersSettings, prefix="orders")
    app = FastAPI(lifespan=lifespan(client))
    current_settings = snapshot_dependency(client)
    orders_settings = model_dependency(orders, current_settings)

    @app.get("/")
    def index(
        settings: Snapshot = Depends(current_settings),  # noqa: B008 - FastAPI's idiom
        same: Snapshot = Depends(current_settings),  # noqa: B008
        limits: OrdersSettings = Depends(orders_settings),  # noqa: B008
        live: OrdersSettings = Depends(orders),  # noqa: B008
    ) -> dict:
        return {
            "version": settings.version,
            "one_snapshot": same is settings,
            "limit": limits.limit,
            "flat_limit": settings.get("orders.limit"),
            "live_currency": live.currency,
        }

    return app, client


def test_fastapi_app_under_uvicorn_follows_a_commit(repo, serve):
    repo.commit({"orders.yml": "orders:\n  limit: 1\n  currency: EUR\n"})
    config = serve(repo.path)
    app, client = make_app(config.url)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="uvicorn to start")
        url = f"http://127.0.0.1:{port}/"
        first = requests.get(url, timeout=5).json()
        assert first == {
            "version": repo.head(),
            "one_snapshot": True,
            "limit": 1,
            "flat_limit": 1,
            "live_currency": "EUR",
        }
        assert app.state.config_client is client and client.source == "server"
        sha = repo.commit({"orders.yml": "orders:\n  limit: 2\n  currency: USD\n"})
        wait_for(lambda: requests.get(url, timeout=5).json()["version"] == sha, what="the new version")
        assert requests.get(url, timeout=5).json() == {
            "version": sha,
            "one_snapshot": True,
            "limit": 2,
            "flat_limit": 2,
            "live_currency": "USD",
        }
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive()
    assert client._stop.is_set()  # the lifespan stopped the client
