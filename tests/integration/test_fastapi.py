"""FastAPI under a real uvicorn server, its settings changed by a real commit (issue 14)."""

from __future__ import annotations

import contextlib
import logging
import runpy
import threading
from collections.abc import Iterator
from pathlib import Path

import pydantic
import requests
import uvicorn
from fastapi import Depends, FastAPI

from config_client import ConfigClient, Snapshot
from config_client.asgi import lifespan, model_dependency, snapshot_dependency
from tests.helpers import free_port, wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_service.py"


@contextlib.contextmanager
def uvicorn_serving(app: FastAPI) -> Iterator[str]:
    """Serve `app` with a real uvicorn on 127.0.0.1; yields its URL; stopped afterwards."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="uvicorn to start")
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive()


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
    with uvicorn_serving(app) as url:
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
    assert client._stop.is_set()  # the lifespan stopped the client


def test_fastapi_example_follows_a_commit_and_refuses_a_bad_one(repo, serve, tmp_path, monkeypatch, caplog):
    repo.commit({"orders.yml": "orders:\n  max-items: 100\n  currency: EUR\ndatabase:\n  host: db1\n"})
    config = serve(repo.path)
    monkeypatch.setenv("CONFIG_CLIENT_SERVERS", config.url)
    monkeypatch.setenv("CONFIG_CACHE_DIR", str(tmp_path / "cache"))
    example = runpy.run_path(str(EXAMPLE))
    with caplog.at_level(logging.INFO, logger="orders"), uvicorn_serving(example["app"]) as url:
        assert requests.get(url, timeout=5).json() == {
            "version": repo.head(),
            "max_items": 100,
            "currency": "EUR",
            "database": "db1",
        }
        sha = repo.commit(
            {"orders.yml": "orders:\n  max-items: 5\n  currency: USD\ndatabase:\n  host: db2\n"}
        )
        wait_for(lambda: requests.get(url, timeout=5).json()["version"] == sha, what="the commit")
        assert requests.get(url, timeout=5).json()["max_items"] == 5
        wait_for(lambda: f"settings changed to {sha}" in caplog.text, what="the coroutine listener")
        bad = repo.commit({"orders.yml": "orders:\n  max-items: lots\n"})
        wait_for(lambda: example["client"].rejected, what="the bad commit to be refused")
        assert example["client"].rejected[0] == bad
        assert requests.get(url, timeout=5).json()["version"] == sha


def test_starlette_app_with_the_lifespan_follows_a_commit(repo, serve):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    repo.commit({"orders.yml": "limit: 1\n"})
    config = serve(repo.path)
    client = ConfigClient(config.url, "orders", wait=5)

    async def index(request):
        settings = request.app.state.config_client.snapshot  # one version for this request
        return JSONResponse({"version": settings.version, "limit": settings.get("limit")})

    app = Starlette(routes=[Route("/", index)], lifespan=lifespan(client))
    with uvicorn_serving(app) as url:
        assert requests.get(url, timeout=5).json()["limit"] == 1
        sha = repo.commit({"orders.yml": "limit: 2\n"})
        wait_for(
            lambda: requests.get(url, timeout=5).json() == {"version": sha, "limit": 2}, what="the commit"
        )
