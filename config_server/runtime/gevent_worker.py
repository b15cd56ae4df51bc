"""Gunicorn's gevent worker, patching everything but `queue`, with deadlines for slow clients.

gevent's `queue.Queue(maxsize=0)` stores `maxsize=None`, which watchdog's event queue compares
with `>`; the standard `queue.Queue` works on gevent's patched locks, so it is left alone.

Slow clients: gunicorn already bounds reading a request's headers by `keepalive` (our
`client_timeout`); this worker also sets that timeout on every socket read and write (a client
that stops sending a body, or stops reading a response, is dropped) and cuts off any request that
runs past `request_timeout` in total, however steadily its client trickles bytes.

What one client can hold: the worker accepts at most `parked.connection_cap` connections (its
`worker_connections`, within its descriptor limit less a reserve), and a parked long poll whose
client leaves (its socket turns readable with nothing in it: EOF or a reset) is ended at once,
freeing its connection, greenlet and slot instead of holding them for the rest of its wait.
"""

from __future__ import annotations

import fcntl
import gc
import os
import socket
import struct
import sys
import warnings
from collections.abc import Callable, Iterable, MutableMapping
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import gevent
from gevent import monkey
from gevent.socket import wait_write
from gunicorn.workers.base_async import ALREADY_HANDLED
from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker

from config_server.delivery.direct_answer import DirectAnswer
from config_server.delivery.parked import connection_cap, descriptor_limit
from config_server.http.environ_keys import ANSWERED, DIRECT_ANSWER
from config_server.runtime.heartbeat import HubHeartbeat
from config_server.settings import Settings

if TYPE_CHECKING:
    from gevent.socket import socket as GeventSocket
    from gunicorn.http import Request
    from gunicorn.sock import BaseSocket

    from config_server.http.context import ServerState


class GeventWorker(_GunicornGeventWorker):
    """The gevent worker with `monkey.patch_all(queue=False)`, releasing long polls on shutdown."""

    #: The app's ServerState once loaded (None for another WSGI app, such as the benchmark's).
    _state: ServerState | None = None
    _client_timeout = Settings.client_timeout
    _request_timeout = Settings.request_timeout
    _heartbeat: HubHeartbeat | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The requests being served, so that a shutdown can make each close its connection.
        self._in_flight: set[Request] = set()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """On SIGTERM, answer held long polls (304) so the graceful shutdown does not wait for them.

        Every request in flight closes its connection once answered (`Connection: close`): a
        keep-alive connection would hold its slot, and the worker's exit, until the client's next
        request or the keep-alive timeout.
        """
        super().handle_exit(sig, frame)
        for req in list(self._in_flight):
            req.must_close = True
        if self._state is not None:
            self._state.hub.close()

    def run(self) -> None:
        """Serve until told to stop; then end the heartbeat before gunicorn closes its file."""
        try:
            super().run()
        finally:
            if self._heartbeat is not None:
                self._heartbeat.stop()

    def notify(self) -> None:
        """gunicorn's greenlet calls this every second: only the parent check is left to it.

        The heartbeat file is touched by `HubHeartbeat` from a real thread, and only while the event
        loop turns (see heartbeat.py).
        """
        if self._heartbeat is None:
            super().notify()
        elif self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            sys.exit(0)

    def load_wsgi(self) -> None:
        """Start the heartbeat, load the app, read its timeouts, then hide the app from the collector.

        The heartbeat starts first so that a worker whose event loop blocks while it boots is
        replaced too. The app's long-lived objects (GitPython, caches, routes) would otherwise be
        re-scanned by every full collection, which shows as latency spikes under load.
        """
        self._heartbeat = HubHeartbeat(self.tmp.notify).start()
        # gunicorn sizes its connection pool from this when `run` starts, after loading the app
        self.worker_connections = connection_cap(self.worker_connections, descriptor_limit())
        super().load_wsgi()
        self._state = getattr(self.wsgi, "extensions", {}).get("config_server")
        if self._state is not None:
            self._state.loop_turned_ago = self._heartbeat.turned_ago
            self._client_timeout = self._state.settings.client_timeout
            self._request_timeout = self._state.settings.request_timeout
            _start_blocking_monitor(self._state.settings.blocking_monitor)
        if not self.cfg.is_ssl:  # a direct answer writes plain bytes; TLS answers take the usual path
            self.wsgi = _DirectAnswers(self.wsgi)
        gc.collect()
        gc.freeze()

    def handle_request(self, listener_name: Any, req: Request, sock: GeventSocket, addr: Any) -> bool:
        """Serve one request, closing the connection when it runs past `request_timeout`, when a
        write does not complete, or when the worker is shutting down.

        Every socket read and write of the request has `client_timeout` (set here: gunicorn's
        `handle` makes the socket blocking, which removes any timeout set before it), and every
        write, the held-back last one included, happens before the request deadline ends. A write
        that times out or fails resets the connection: what the client got is an unfinished
        answer, and the next answer must not start inside it.

        Before a kept-alive connection's next request is read, what this answer left unsent in the
        kernel must go down to `UNSENT_AT_MOST` within `client_timeout` (`wait_until_taken`): a
        client that pipelines requests and never reads their answers gets a few dozen computed,
        not thousands (each is CPU the other connections wait for), and is then dropped.

        The response goes out through a socket that joins the status line and headers with the
        first body bytes: one `send` and one packet per answer instead of two, which halves the
        system calls when thousands of long polls are answered at once.
        """
        sock.settimeout(self._client_timeout)
        deadline = gevent.Timeout(self._request_timeout)
        deadline.start()
        coalescing = _CoalescingSocket(sock)
        self._in_flight.add(req)
        if not self.alive:
            req.must_close = True
        try:
            try:
                # A proxy of the socket: every operation but sendall goes straight through (__getattr__).
                handled = super().handle_request(listener_name, req, cast("GeventSocket", coalescing), addr)
            except StopIteration:
                coalescing.flush()  # an answer that closes the connection (Connection: close)
                raise
            coalescing.flush()
            if not self.alive:
                # A directly answered long poll: gunicorn would wait for the next request.
                raise StopIteration("shutting down")
            # The connection stays open (no StopIteration): its next request waits for this answer.
            wait_until_taken(sock, self._client_timeout)
            return handled
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            self.log.warning(
                "request %s %s from %s cut off after the request timeout", req.method, req.path, addr
            )
            _reset(sock)
            raise StopIteration("request timeout") from None
        except ClientGone:
            raise StopIteration("client gone") from None  # its long poll ended; close the connection
        except OSError as exc:
            self.log.info("request %s %s from %s: connection ended: %s", req.method, req.path, addr, exc)
            _reset(sock)
            raise StopIteration("write failed") from None
        finally:
            deadline.close()
            self._in_flight.discard(req)
            # Let the other connections have their turn: a keep-alive client whose next request
            # is already in the socket would otherwise be served again and again while they wait.
            gevent.sleep(0)

    def patch(self) -> None:
        """Patch the standard library (except queue) and rebuild the listening sockets."""
        monkey.patch_all(queue=False)
        # Until replaced here they are gunicorn's listeners (the stubs give the type they become).
        listeners = cast("list[BaseSocket]", self.sockets)
        self.sockets = [
            socket.socket(s.FAMILY, socket.SOCK_STREAM, fileno=s.sock.detach()) for s in listeners
        ]


#: Bytes an open connection may leave unsent in the kernel before its next request is read: more
#: than a normal answer in flight, far less than the megabytes a client that never reads lets
#: pile up (the kernel grows a socket's send buffer to 4 MiB).
UNSENT_AT_MOST = 16 * 1024

#: Linux: `ioctl` for the bytes of a TCP socket's send queue not yet sent (linux/sockios.h), and
#: the socket option that makes it writable only below a number of such bytes (linux/tcp.h).
_SIOCOUTQNSD = 0x894B
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)


def wait_until_taken(sock: Any, timeout: float) -> None:
    """Return once the connection's unsent bytes are down to `UNSENT_AT_MOST`, at once when they
    are already (one `ioctl`); raise `TimeoutError` (an OSError) when they are not within `timeout`.

    Why: a pipelining client that never reads would otherwise have every request it sent answered
    into the kernel's send buffer (megabytes: thousands of `/health` answers), each one CPU the
    worker's other connections wait for. The wait uses `TCP_NOTSENT_LOWAT`, set for the wait only,
    so the socket turns writable exactly when the client has taken enough; on a socket that is
    not TCP (or not Linux) it returns at once.
    """
    fileno = sock.fileno()
    try:
        unsent = struct.unpack("i", fcntl.ioctl(fileno, _SIOCOUTQNSD, b"\0\0\0\0"))[0]
    except OSError:
        return
    if unsent <= UNSENT_AT_MOST:
        return
    sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, UNSENT_AT_MOST)
    try:
        wait_write(fileno, timeout=timeout, timeout_exc=TimeoutError("the client does not read its answers"))
    finally:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, 0)  # back to the system's default


def _start_blocking_monitor(max_blocking_time: float) -> None:
    """Start gevent's blocking monitor on the worker's own hub, once it has booted (importing and
    building the app hold the loop). Only that hub: a real OS thread (the inventory's flusher,
    say) may get a hub of its own from a patched lock, and waiting is that thread's job."""
    if max_blocking_time > 0:
        gevent.config.monitor_thread = True
        gevent.config.max_blocking_time = max_blocking_time
        with warnings.catch_warnings():  # "Unable to monitor memory usage. Install psutil.": not asked for
            warnings.simplefilter("ignore")
            gevent.get_hub().start_periodic_monitoring_thread()
        gevent.config.monitor_thread = False  # no monitor for hubs that other threads create later


class _CoalescingSocket:
    """Holds back the first `sendall` (gunicorn's status line and headers) to send it with the next.

    Whatever is still held back is sent by `flush()`, which the worker calls when the request is
    done (a 304 has headers only). Every other socket operation goes straight to the socket. A
    large body is not joined with the headers (that would copy it): they go out first, then it.
    A failed write raises, so that the worker ends the connection.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._held: bytes | None = None
        self._first = True

    def sendall(self, data: bytes, *args: Any) -> None:
        """Hold the first write; send it joined with the second; pass later writes through."""
        if self._first:
            self._first = False
            self._held = bytes(data)
            return
        if self._held is not None:
            if len(data) > _JOIN_AT_MOST:
                self.flush()
            else:
                data, self._held = self._held + bytes(data), None
        self._sock.sendall(data, *args)

    def flush(self) -> None:
        """Send what is held back, if anything; raises OSError (a timeout too) when it cannot."""
        if self._held is not None:
            held, self._held = self._held, None
            self._sock.sendall(held)

    @property
    def raw(self) -> socket.socket:
        """The socket itself, for writers that send whole answers at once."""
        return self._sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


#: Bodies up to this size are joined with the held-back headers into one write; larger ones are
#: sent after them, uncopied (a copy of a 10 MB environment per slow client adds up).
_JOIN_AT_MOST = 64 * 1024


def _reset(sock: Any) -> None:
    """Make the coming close of a connection abortive (RST): an unfinished answer's rest is
    dropped at once, not kept in the kernel for a client that does not read it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass  # already closed


class _DirectAnswers:
    """WSGI wrapper: offers a long-poll GET's connection for a direct answer (see `watch/direct.py`).

    The worker owns the sockets, so it builds the `DirectAnswer` over gevent's non-blocking OS
    socket (for the hub's never-blocking write) and the cooperative one (for the rest). When the
    hub has answered a request on it, gunicorn is told the request is already handled, so nothing
    more is written; the connection stays open for the client's next request. An answer whose
    headers say `Connection: close` (a refused long poll, 429) has its connection closed.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: MutableMapping[str, Any], start_response: Callable[..., Any]) -> Any:
        """Run the app; turn a directly answered request into gunicorn's ALREADY_HANDLED."""
        direct = _offer(environ)
        departure = None
        if direct is not None:
            environ[DIRECT_ANSWER] = direct
            departure = _watch_departure(environ)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if environ.get(ANSWERED):
                return _discard  # already answered: spare gunicorn's header processing
            if ("Connection", "close") in headers:  # gunicorn drops hop-by-hop headers: close it itself
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if force_close is not None:
                    force_close()
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, start)
        finally:
            if departure is not None:
                departure.close()
        if direct is not None and direct.broken:
            if hasattr(result, "close"):
                result.close()
            # The answer is unfinished: the worker resets the connection (see handle_request).
            raise ConnectionAbortedError("the direct answer could not be sent in full")
        if environ.get(ANSWERED):
            if hasattr(result, "close"):
                result.close()
            return ALREADY_HANDLED
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


def _offer(environ: MutableMapping[str, Any]) -> DirectAnswer | None:
    """A DirectAnswer for a long-poll GET (only GET: a HEAD answer must carry no body)."""
    if environ.get("REQUEST_METHOD") != "GET" or "wait=" not in environ.get("QUERY_STRING", ""):
        return None
    sock: Any = environ.get("gunicorn.socket")
    cooperative = getattr(sock, "raw", sock)
    raw = getattr(cooperative, "_sock", None)  # gevent's non-blocking OS socket under the cooperative one
    if raw is None:
        return None
    return DirectAnswer(raw.send, cooperative.sendall)


class ClientGone(BaseException):
    """Thrown into a parked long poll whose client closed its connection (a BaseException, like
    gevent's Timeout, so that no `except Exception` of the app takes it for an error to answer)."""


def _watch_departure(environ: MutableMapping[str, Any]) -> Any:
    """Watch a long poll's socket while the app holds it: when it turns readable with nothing to
    read (the client closed it, or reset it), throw `ClientGone` into the request's greenlet.

    Bytes to read (a pipelined next request) stop the watch: the poll is then held as before.
    Returns the libev watcher (its `close()` ends the watch), or None for a socket it cannot watch.
    """
    sock: Any = environ.get("gunicorn.socket")
    raw = getattr(getattr(sock, "raw", sock), "_sock", None)  # the non-blocking OS socket
    if raw is None:
        return None
    greenlet = gevent.getcurrent()
    watcher = gevent.get_hub().loop.io(raw.fileno(), 1)

    def readable() -> None:
        try:
            gone = not raw.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            gone = True
        watcher.stop()
        if gone:
            greenlet.throw(ClientGone())

    watcher.start(readable)
    return watcher


def _discard(data: bytes) -> None:
    """The WSGI `write` of a request the hub has already answered."""
