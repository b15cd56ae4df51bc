"""The gunicorn worker class's public path: `config_server.gevent_worker.GeventWorker` (`-k`).

The worker lives in `runtime/gevent_worker.py`; this name stays so that gunicorn command lines and
configuration files written for earlier releases keep working.
"""

from config_server.runtime.gevent_worker import GeventWorker

__all__ = ["GeventWorker"]
