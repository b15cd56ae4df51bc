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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

#: Connections opened at once; more would overflow the listen backlog and wait on SYN retries.
CONNECT_BATCH = 256


@dataclass
class WatchResult:
    """One watcher's outcome: when it had the new value (perf_counter), and what it read."""

    done_at: float | None = None
    status: int = 0
    payload: dict = field(default_factory=dict)


async def _read_http_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before an answer")
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return status, headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


async def _connect_all(count: int, port: int, start: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable]):
    """Open `count` connections in batches and start one task per connection."""
    tasks = []
    for first in range(0, count, CONNECT_BATCH):
        batch = range(first, min(count, first + CONNECT_BATCH))
        streams = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in batch))
        tasks.extend(asyncio.create_task(start(r, w)) for r, w in streams)
    return tasks


class LongPollWatchers:
    """N long polls `GET path?wait=60` with `If-None-Match` against our server."""

    def __init__(self, port: int, path: str, etag: str, count: int) -> None:
        self.port, self.path, self.etag, self.count = port, path, etag, count
        self.results = [WatchResult() for _ in range(count)]
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Open every connection and send every request (the server may not have parked them yet)."""
        index = iter(range(self.count))
        request = (
            f"GET {self.path}?wait=60 HTTP/1.1\r\nHost: bench\r\nIf-None-Match: \"{self.etag}\"\r\n"
            "Connection: close\r\n\r\n"
        ).encode()

        async def watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            result = self.results[next(index)]
            self.writers.append(writer)
            writer.write(request)
            await writer.drain()
            status, headers = await _read_http_head(reader)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            result.payload = json.loads(body) if status == 200 else {}
            result.status, result.done_at = status, time.perf_counter()
            writer.close()

        self.tasks = await _connect_all(self.count, self.port, watch)

    async def finish(self, timeout: float) -> None:
        """Wait for every watcher to get its answer (or the timeout)."""
        await asyncio.wait(self.tasks, timeout=timeout)
        for writer in self.writers:
            writer.close()


class EtcdWatchers:
    """N etcd watches of one key over etcd's HTTP/JSON gateway (`POST /v3/watch`, a chunked stream)."""

    def __init__(self, port: int, key: str, count: int) -> None:
        self.port, self.key, self.count = port, key, count
        self.results = [WatchResult() for _ in range(count)]
        self.created = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Open every watch; `created` counts those etcd has confirmed."""
        index = iter(range(self.count))
        body = json.dumps({"create_request": {"key": base64.b64encode(self.key.encode()).decode()}}).encode()
        request = (
            f"POST /v3/watch HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

        async def watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            result = self.results[next(index)]
            self.writers.append(writer)
            writer.write(request)
            await writer.drain()
            status, _ = await _read_http_head(reader)
            result.status = status
            buffer = b""
            while True:
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    return
                buffer += await reader.readexactly(size)
                await reader.readline()
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    message = json.loads(line).get("result", {})
                    if message.get("created"):
                        self.created += 1
                    if message.get("events"):
                        result.payload, result.done_at = message, time.perf_counter()
                        writer.close()
                        return

        self.tasks = await _connect_all(self.count, self.port, watch)

    async def finish(self, timeout: float) -> None:
        """Wait for every watcher to see the event (or the timeout)."""
        await asyncio.wait(self.tasks, timeout=timeout)
        for writer in self.writers:
            writer.close()
