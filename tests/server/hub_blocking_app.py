"""A config-server app for gunicorn whose `/block?seconds=N` blocks the worker's event loop on purpose.

It calls the operating system's own `time.sleep`, which gevent's monkey patching does not reach, as
a library that does blocking I/O of its own would. Used by test_hub_blocking.py only.
"""

import os

from flask import request
from gevent import monkey

from config_server import create_app
from config_server.settings import Settings

_blocking_sleep = monkey.get_original("time", "sleep")

app = create_app(
    Settings(
        repo=os.environ["BLOCKING_APP_REPO"],
        data_dir=os.environ["BLOCKING_APP_DATA"],
        blocking_monitor=float(os.environ.get("CONFIG_SERVER_BLOCKING_MONITOR", "0")),
    )
)


@app.get("/block")
def block() -> str:
    """Hold the event loop for `seconds`, as a blocking library call would."""
    seconds = float(request.args.get("seconds", "1"))
    _blocking_sleep(seconds)
    return "blocked\n"
