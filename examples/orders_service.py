"""A small service that reads its settings from the config server on every request.

Run the server (`make run`), then in another terminal:

    .venv/bin/python examples/orders_service.py            # serves http://127.0.0.1:8080
    curl -s localhost:8080/                                  # {"max_items": 100, ...}

The config server is read from `CONFIG_CLIENT_SERVERS` (default http://127.0.0.1:8888, the
address `make run` serves; several URLs comma-separated), the token from `CONFIG_CLIENT_TOKEN`,
and this service listens on `PORT` (default 8080), e.g.:

    CONFIG_CLIENT_SERVERS=http://127.0.0.1:9000 PORT=8081 .venv/bin/python examples/orders_service.py

Edit `.data/config-repo/orders.yml`, commit, and the next request shows the new value: the
client's watcher applied it within a second, without a restart.
"""

from __future__ import annotations

import logging
import os

from flask import Flask, jsonify

from config_client import ConfigClient
from config_client.flask import init_app
from config_client.variables import configured_servers

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

client = ConfigClient(
    configured_servers(default="http://127.0.0.1:8888"),  # CONFIG_CLIENT_SERVERS
    app="orders",
    profiles=os.environ.get("PROFILES", "default"),
    cache_dir=os.environ.get("CONFIG_CACHE_DIR", ".data/client-cache"),
)
client.on_change(
    lambda change: logging.info("settings changed to version %s: %s", change.new_version, change.keys)
)

app = Flask(__name__)


@app.get("/")
def index():
    """Every request reads the current settings: no restart needed after a commit."""
    settings = client.snapshot  # one consistent version for this request
    return jsonify(
        version=settings.version,
        max_items=settings.get("orders.max-items"),
        currency=settings.get("orders.currency"),
        database=settings.get("database.host"),
    )


def main() -> None:
    """Start the config client, keep app.config current, and serve on PORT (default 8080)."""
    client.start()
    init_app(app, client)
    try:
        app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
    finally:
        client.stop()


if __name__ == "__main__":
    main()
