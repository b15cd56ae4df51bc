"""`--log-format json`: one JSON object per log line, for log shippers (Loki, Elasticsearch, ...).

Every line carries `time` (ISO 8601, UTC, milliseconds), `level`, `logger` and `message`, and
when the line is about a request, its `request_id` (the caller's `X-Request-Id`), `client` (the
auth file's client name) and `application`. gunicorn's access lines (logger `gunicorn.access`)
carry the request's `remote` address, `method`, `path` (never the query string), `status`,
`bytes`, `duration_ms` and `user_agent`, read from the fields gunicorn hands its logger; the
request's headers and WSGI environ (tokens among them) are never copied. A traceback is one
`exception` string in the same object.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

#: WSGI environ keys the HTTP layer fills in for the access line (`http/log_context.py`);
#: gunicorn hands environ values to its access logger as `{key}e`, lower-cased.
CLIENT_ENVIRON_KEY = "config_server.log.client"
APPLICATION_ENVIRON_KEY = "config_server.log.application"

#: Longest request id kept (the caller chooses it).
MAX_REQUEST_ID = 128

#: The request fields a record may carry as attributes (set by `http/log_context.RequestFields`).
REQUEST_FIELDS = ("request_id", "client", "application")


class JsonLogFormatter(logging.Formatter):
    """Formats a record as one line of JSON with the fields the module docstring lists."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line (json.dumps escapes newlines in values)."""
        line: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
        }
        atoms = record.args if record.name == "gunicorn.access" else None
        if isinstance(atoms, Mapping):
            line.update(access_fields(atoms))
        else:
            line["message"] = record.getMessage()
            for name in REQUEST_FIELDS:
                value = getattr(record, name, None)
                if value:
                    line[name] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    """The access line's fields from gunicorn's atoms (a `SafeAtoms`: a missing one reads '-')."""
    method, path, status = str(atoms["m"]), str(atoms["U"]), str(atoms["s"])
    fields: dict[str, Any] = {
        "message": f"{method} {path} {status}",
        "remote": atoms["h"],
        "method": method,
        "path": path,
        "status": int(status) if status.isdigit() else status,
        "bytes": atoms["B"] if isinstance(atoms["B"], int) else None,
        "duration_ms": round(int(atoms["D"]) / 1000, 3) if str(atoms["D"]).isdigit() else None,
        "user_agent": atoms["a"],
    }
    request_id = request_id_from(str(atoms["{x-request-id}i"]))
    for name, value in (
        ("request_id", request_id),
        ("client", atoms["{" + CLIENT_ENVIRON_KEY + "}e"]),
        ("application", atoms["{" + APPLICATION_ENVIRON_KEY + "}e"]),
    ):
        if value and value != "-":
            fields[name] = value
    return fields


def request_id_from(header: str | None) -> str | None:
    """The caller's `X-Request-Id`, printable ASCII only and at most MAX_REQUEST_ID characters."""
    if not header or header == "-":
        return None
    kept = "".join(c for c in header[:MAX_REQUEST_ID] if " " < c < "\x7f")
    return kept or None


def _iso_time(created: float) -> str:
    seconds = int(created)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"
    )
