"""Flask integration: keep `app.config` current with a ConfigClient's settings.

`init_app(app, client)` copies the flat settings (`db.pool.max`) into `app.config` (optionally
under a prefix) and updates them after every applied version; removed keys are removed. A
request reading several related keys should read them from one `client.snapshot`, which is
consistent; `app.config` is updated key by key.
"""

from __future__ import annotations

from typing import Any

from config_client.client import ConfigClient
from config_client.snapshot import Change


def init_app(app: Any, client: ConfigClient, prefix: str = "") -> None:
    """Copy the client's settings into `app.config` now and after every change."""

    def update(change: Change | None = None) -> None:
        values = client.snapshot.values
        if change is not None:
            for key in change.removed:
                app.config.pop(prefix + key, None)
        app.config.update({prefix + key: value for key, value in values.items()})

    update()
    client.on_change(update)
    app.extensions["config_client"] = client
