"""The JSON log line (`observability/log_format.py`) and the request fields a Flask request adds
to it (`http/log_context.py`)."""

from __future__ import annotations

import io
import json
import logging

from flask import Flask, g

from config_server.http import log_context
from config_server.http.auth import Client
from config_server.observability.log_format import JsonLogFormatter, request_id_from


def one_line(record: logging.LogRecord) -> dict:
    text = JsonLogFormatter().format(record)
    assert "\n" not in text
    return json.loads(text)


def test_a_record_is_one_json_line_with_its_traceback_inside():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "config_server.x", logging.ERROR, __file__, 1, "failed: %s", ("a\nb",), sys.exc_info()
        )
    line = one_line(record)
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "config_server.x", "failed: a\nb")
    assert "ValueError: bad" in line["exception"] and line["time"].endswith("Z")


def test_the_request_id_is_printable_and_bounded():
    assert request_id_from("abc-123") == "abc-123"
    assert request_id_from("a b\x00c\u00e9") == "abc"
    assert request_id_from("x" * 500) == "x" * 128
    assert request_id_from("-") is None and request_id_from(None) is None


def test_a_line_written_in_a_flask_request_names_its_request_client_and_application():
    app = Flask(__name__)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        log_context.install(app)
        assert any(isinstance(f, log_context.RequestFields) for f in handler.filters)

        @app.get("/<app>/<profiles>")
        def view(app: str, profiles: str) -> str:
            g.client = Client("orders-service", frozenset({"read"}))
            logging.getLogger("config_server.test").warning("inside")
            return "ok"

        response = app.test_client().get("/orders/prod", headers={"X-Request-Id": "req-9"})
        assert response.status_code == 200
    finally:
        root.removeHandler(handler)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert (line["message"], line["request_id"], line["client"], line["application"]) == (
        "inside",
        "req-9",
        "orders-service",
        "orders",
    )
