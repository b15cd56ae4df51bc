"""The framework's ceiling: a bare Flask app answering `GET /orders/prod` with fixed bytes.

Served by `bench/serving.py` under the same gunicorn worker class and settings as config-server;
the bytes (and content type and ETag) are the ones config-server served, read from the file named
by `BARE_FLASK_BODY`.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, Response

BODY = Path(os.environ.get("BARE_FLASK_BODY", "/dev/null")).read_bytes()
ETAG = os.environ.get("BARE_FLASK_ETAG", '"bench"')

app = Flask(__name__)


@app.get("/orders/prod")
def orders_prod() -> Response:
    """The fixed answer."""
    return Response(BODY, mimetype="application/json", headers={"ETag": ETAG, "Cache-Control": "no-cache"})
