"""Where log lines go and how they look (`--log-format text|json`, `--log-level`).

The server's own loggers write to standard error through the root logger, set up once in the
master before gunicorn forks (workers inherit it). gunicorn's error and access loggers have
handlers of their own (error lines on standard error, access lines on standard output, which
gunicorn sets up in every process); with `json`, `JsonGunicornLogger` (gunicorn's
`logger_class`) gives them the same JSON formatter.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from gunicorn.glogging import Logger

from config_server.observability.log_format import JsonLogFormatter
from config_server.settings import Settings

#: The text format of the server's own lines (`--log-format text`).
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: gunicorn's `logger_class` for `--log-format json`, as gunicorn imports it.
JSON_GUNICORN_LOGGER = "config_server.runtime.log_setup.JsonGunicornLogger"


def configure_logging(settings: Settings) -> None:
    """Set up the root logger: text or JSON lines on standard error at `--log-level`."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonLogFormatter())  # each worker's app adds its request fields
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    logging.captureWarnings(True)  # a Python warning is a log line too, in the same format


class JsonGunicornLogger(Logger):
    """gunicorn's logger with every handler of its error and access logs writing JSON lines."""

    def setup(self, cfg: Any) -> None:
        """gunicorn's set-up (run again on a reload), then the JSON formatter on its handlers."""
        super().setup(cfg)
        formatter = JsonLogFormatter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
