"""Gunicorn's gevent worker, patching everything but `queue` (watchdog relies on its semantics).

gevent's `queue.Queue(maxsize=0)` stores `maxsize=None`, which watchdog's event queue compares
with `>`; the standard `queue.Queue` works on gevent's patched locks, so it is left alone.
"""

from __future__ import annotations

import socket

from gevent import monkey
from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker


class GeventWorker(_GunicornGeventWorker):
    """The gevent worker with `monkey.patch_all(queue=False)`, releasing long polls on shutdown."""

    def handle_exit(self, sig, frame) -> None:
        """On SIGTERM, answer held long polls (304) so the graceful shutdown does not wait for them."""
        super().handle_exit(sig, frame)
        state = getattr(getattr(self, "wsgi", None), "extensions", {}).get("config_server")
        if state is not None:
            state.hub.close()

    def patch(self) -> None:
        """Patch the standard library (except queue) and rebuild the listening sockets."""
        monkey.patch_all(queue=False)
        self.sockets = [
            socket.socket(s.FAMILY, socket.SOCK_STREAM, fileno=s.sock.detach()) for s in self.sockets
        ]
