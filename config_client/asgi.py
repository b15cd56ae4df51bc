"""FastAPI / Starlette integration: a lifespan that runs the client, and request dependencies.

```python
client = ConfigClient(url, "orders", "prod")
orders = client.bind(OrdersSettings, prefix="orders")
app = FastAPI(lifespan=lifespan(client))
current_settings = snapshot_dependency(client)
orders_settings = model_dependency(orders, current_settings)

@app.get("/")
def index(settings: Snapshot = Depends(current_settings),
          limits: OrdersSettings = Depends(orders_settings)): ...
```

`snapshot_dependency` hands a request one immutable snapshot; FastAPI caches a dependency per
request, so every `Depends(current_settings)` of one request, and every `model_dependency` built on
it, sees the same version even if a new one is applied meanwhile. A `Binding` is itself a
dependency too (`Depends(orders)`), giving the current model. Starlette without dependency
injection: read `client.snapshot` once per request. Neither FastAPI nor Starlette is imported
here until `model_dependency` is called (the client install stays light).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

from config_client.binding import Binding
from config_client.client import ConfigClient, Listener
from config_client.snapshot import Snapshot

M = TypeVar("M")


def lifespan(
    client: ConfigClient, listeners: Iterable[Listener] = ()
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan for `FastAPI(lifespan=...)` / `Starlette(lifespan=...)`: starts the client (in a
    thread: the first fetch is blocking HTTP) before the first request, stops it at shutdown, and
    puts it in `app.state.config_client`. `listeners` (coroutine functions welcome) are registered
    on the server's event loop, so coroutine listeners run there."""

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        unsubscribers = [client.on_change(listener) for listener in listeners]
        await asyncio.to_thread(client.start)
        state = getattr(app, "state", None)
        if state is not None:
            state.config_client = client
        try:
            yield
        finally:
            for unsubscribe in unsubscribers:
                unsubscribe()
            await asyncio.to_thread(client.stop)

    return run


def snapshot_dependency(client: ConfigClient) -> Callable[[], Snapshot]:
    """A dependency returning the client's current snapshot: one version for the whole request."""

    def current_snapshot() -> Snapshot:
        return client.snapshot

    return current_snapshot


def model_dependency(binding: Binding[M], snapshot: Callable[[], Snapshot]) -> Callable[..., M]:
    """A dependency returning the bound model built from the request's snapshot (the same version
    as `Depends(snapshot)` in that request)."""
    from fastapi import Depends

    def current_model(current: Snapshot = Depends(snapshot)) -> M:  # noqa: B008 - FastAPI's idiom
        return current.model(binding)  # type: ignore[no-any-return]

    return current_model
