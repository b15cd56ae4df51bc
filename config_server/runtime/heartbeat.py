"""A gevent worker's heartbeat to gunicorn's master, given only while its event loop turns.

gunicorn's gevent worker touches its heartbeat file from a greenlet once a second. That proves
little: a worker whose hub was blocked while it booted never touched the file, and gunicorn's
master does not time out a worker that never did (its file still holds the creation time), so a
worker stuck in a blocking call answered nothing for as long as anyone watched. Here a real OS
thread asks the hub to run a small callback every second and touches the file only while the hub
ran the last one recently. A hub blocked for gunicorn's `timeout` therefore gets its worker killed
and replaced by the master, whenever the block began. A block longer than `BLOCKED_AFTER_SECONDS`
is logged once, with the stack that blocks, and again when the loop turns once more.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from config_server.concurrency import real_thread_primitives

log = logging.getLogger(__name__)

#: Seconds without a turn of the event loop after which the heartbeat stops and the block is logged.
BLOCKED_AFTER_SECONDS = 3.0


class HubHeartbeat:
    """Calls `beat` once a second from a real OS thread while the gevent hub keeps turning."""

    def __init__(
        self,
        beat: Callable[[], None],
        interval: float = 1.0,
        blocked_after: float = BLOCKED_AFTER_SECONDS,
    ) -> None:
        from gevent import get_hub

        self._beat = beat
        self._interval = interval
        self._blocked_after = blocked_after
        hub = get_hub()
        self._loop: Any = hub.loop
        self._hub_thread = hub.thread_ident
        self._start_thread, self._sleep = real_thread_primitives()
        self._asked_at = 0.0
        self._asked = False
        self._turned_at = time.monotonic()
        self._stopped = False
        self._reported = False

    def start(self) -> HubHeartbeat:
        """Beat once now, then start the thread."""
        self._beat()
        self._start_thread(self._run, ())
        return self

    def stop(self) -> None:
        """Stop beating (the thread ends within one interval)."""
        self._stopped = True

    def blocked_for(self) -> float:
        """Seconds the event loop has left the heartbeat's last callback waiting (0 once it ran)."""
        return time.monotonic() - self._asked_at if self._asked else 0.0

    def turned_ago(self) -> float:
        """Seconds since the event loop last ran the heartbeat's callback (`/livez` reports it)."""
        return time.monotonic() - self._turned_at

    def _turned(self) -> None:
        """Run by the hub: the loop turns."""
        self._asked = False
        self._turned_at = time.monotonic()

    def _run(self) -> None:
        while not self._stopped:
            self._check()
            self._sleep(self._interval)

    def _check(self) -> None:
        blocked = self.blocked_for()
        if blocked < self._blocked_after:
            if self._reported:
                log.warning("the event loop turns again after %.1f s", time.monotonic() - self._asked_at)
                self._reported = False
            try:
                self._beat()
            except ValueError:  # the worker is exiting: gunicorn closed the heartbeat file
                self._stopped = True
                return
            except Exception:  # noqa: BLE001 - a failed touch must not end the heartbeat
                log.exception("the worker heartbeat failed")
        elif not self._reported:
            self._reported = True
            log.critical(
                "the event loop has been blocked for %.1f s; this worker gets no heartbeat until it "
                "turns, and gunicorn replaces it after its timeout. Blocked in:\n%s",
                blocked,
                self._blocked_stack(),
            )
        if not self._asked:
            self._asked_at = time.monotonic()
            self._asked = True
            self._loop.run_callback_threadsafe(self._turned)

    def _blocked_stack(self) -> str:
        frame = sys._current_frames().get(self._hub_thread)
        return "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"
