"""Many concurrent watchers from one process (asyncio, raw HTTP/1.1): ours (long poll) and etcd's.

Each watcher is one TCP connection holding one request, the way ten thousand service instances
would watch. A watcher records the moment it has read and parsed the whole answer, so the time
measured is "this instance has the new settings".
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def run(coroutine):
    """Run `coroutine` on uvloop when it is installed (a faster loop for the harness), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


#: Connections opened at once; more would overflow the listen backlog and wait on SYN retries.
CONNECT_BATCH = 256


@dataclass
class WatchResult:
    """One watcher's outcome: when it had the new value (perf_counter), and what it read."""

    done_at: float | None = None
    status: int = 0
    payload: dict = field(default_factory=dict)


class _Watch(asyncio.Protocol):
    """One connection: send the request, then hand every byte received to `on_data`."""

    def __init__(self, request: bytes, on_data: Callable[[_Watch, bytes], None]) -> None:
        self.request, self.on_data = request, on_data
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.on_data(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect_all(
    port: int, requests: list[tuple[bytes, Callable[[_Watch, bytes], None]]]
) -> list[_Watch]:
    """Open one connection per request, in batches (a burst would overflow the listen backlog)."""
    loop = asyncio.get_running_loop()
    watches: list[_Watch] = []
    for first in range(0, len(requests), CONNECT_BATCH):
        batch = requests[first : first + CONNECT_BATCH]
        made = await asyncio.gather(
            *(loop.create_connection(lambda r=r, h=h: _Watch(r, h), "127.0.0.1", port) for r, h in batch)
        )
        watches.extend(protocol for _, protocol in made)
    return watches


def _split_head(buffer: bytes) -> tuple[int, dict[bytes, bytes], bytes] | None:
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buffer[:end].split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, buffer[end + 4 :]


class _Watchers:
    """N watchers of one thing: their connections, their results, and waiting for them all."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.results = [WatchResult() for _ in range(count)]
        self.watches: list[_Watch] = []

    async def _open(
        self, request: bytes, handler: Callable[[WatchResult], Callable[[_Watch, bytes], None]]
    ) -> None:
        self.watches = await _connect_all(self.port, [(request, handler(r)) for r in self.results])

    async def finish(self, timeout: float) -> None:
        """Wait for every watcher to get its answer (or the timeout), then close them all."""
        await asyncio.wait([w.closed for w in self.watches], timeout=timeout)
        for watch in self.watches:
            watch.close()


class LongPollWatchers(_Watchers):
    """N long polls `GET path?wait=60` with `If-None-Match` against our server."""

    def __init__(self, port: int, path: str, etag: str, count: int, identified: bool = False) -> None:
        super().__init__(port, count)
        self.path, self.etag, self.identified = path, etag, identified

    def _request(self, index: int) -> bytes:
        """The long poll of watcher `index`; with `identified`, it names itself as our client does."""
        identity = f"X-Config-Client-Id: bench-watcher-{index}\r\n" if self.identified else ""
        return (
            f'GET {self.path}?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: "{self.etag}"\r\n'
            f"{identity}Connection: close\r\n\r\n"
        ).encode()

    async def start(self) -> None:
        """Open every connection and send every request (the server may not have parked them yet)."""

        def handler(result: WatchResult) -> Callable[[_Watch, bytes], None]:
            def on_data(watch: _Watch, _: bytes) -> None:
                head = _split_head(watch.buffer)
                if head is None or result.done_at is not None:
                    return
                status, headers, body = head
                if len(body) < int(headers.get(b"content-length", b"0")):
                    return
                result.payload = json.loads(body) if status == 200 else {}
                result.status, result.done_at = status, time.perf_counter()
                watch.close()

            return on_data

        if not self.identified:
            await self._open(self._request(0), handler)
            return
        pairs = [(self._request(i), handler(r)) for i, r in enumerate(self.results)]
        self.watches = await _connect_all(self.port, pairs)


class EtcdWatchers(_Watchers):
    """N etcd watches of one key over etcd's HTTP/JSON gateway (`POST /v3/watch`, a chunked stream)."""

    def __init__(self, port: int, key: str, count: int) -> None:
        super().__init__(port, count)
        self.key = key
        self.created = 0

    async def start(self) -> None:
        """Open every watch; `created` counts those etcd has confirmed."""
        body = json.dumps({"create_request": {"key": base64.b64encode(self.key.encode()).decode()}}).encode()
        request = (
            f"POST /v3/watch HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

        def handler(result: WatchResult) -> Callable[[_Watch, bytes], None]:
            def on_data(watch: _Watch, _: bytes) -> None:
                # The gateway streams one JSON message per line: first "created", then the events.
                while b"\n" in watch.buffer:
                    line, watch.buffer = watch.buffer.split(b"\n", 1)
                    if b'"created":true' in line:
                        self.created += 1
                    elif b'"events"' in line:
                        result.payload = json.loads(line)["result"]
                        result.status, result.done_at = 200, time.perf_counter()
                        watch.close()
                        return

            return on_data

        await self._open(request, handler)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer: status, headers (lower-case names) and the body of its Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


async def keep_watching(
    port: int, path: str, source: str, seen: list[tuple[float, str]], stop: asyncio.Event, wait: int = 60
) -> None:
    """Long-poll `path` from `source` on one keep-alive connection until `stop`, re-parking with
    each answer's ETag and noting (when, version) of every 200; reconnects after any error or a
    status other than 200/304."""
    etag = ""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            await asyncio.sleep(0.2)
            continue
        try:
            while not stop.is_set():
                condition = f'If-None-Match: "{etag}"\r\n' if etag else ""
                writer.write(
                    f"GET {path}?wait={wait} HTTP/1.1\r\nHost: 127.0.0.1\r\n{condition}\r\n".encode()
                )
                status, headers, body = await read_answer(reader)
                if status == 200:
                    etag = headers["etag"].strip('"')
                    version = body.split(b'"version":', 1)[1].split(b'"', 2)[1].decode()
                    seen.append((time.perf_counter(), version))
                elif status != 304:
                    raise ValueError(f"{path}: {status}")
                if headers.get("connection", "").lower() == "close":
                    break
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError, KeyError):
            await asyncio.sleep(0.2)
        finally:
            writer.close()
