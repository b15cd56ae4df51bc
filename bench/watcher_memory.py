"""Watcher memory: the server's resident memory with N idle long-poll watchers, per watcher.

Starts config-server (gunicorn, gevent, 2 workers) on the sample repository, warms it, measures
the RSS of the master and its workers, parks N long polls on `orders/default` (no change comes),
measures again once every one is parked, and divides. Prints a table and writes JSON.

    .venv/bin/python bench/watcher_memory.py                 # 10,000 watchers
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import requests

from bench.common import (
    RESULTS,
    ConfigServer,
    print_table,
    raise_fd_limit,
    sample_repository,
    wait_until,
    write_json,
)
from bench.propagation import parked
from bench.watchers import LongPollWatchers
from bench.watchers import run as watchers_run

TARGET_KIB = 64


async def _hold(server: ConfigServer, count: int, workers: int) -> tuple[int, int]:
    loop = asyncio.get_running_loop()
    etag = requests.get(f"{server.url}/orders/default", timeout=10).headers["ETag"].strip('"')
    before = server.rss_kib()
    watchers = LongPollWatchers(server.port, "/orders/default", etag, count)
    await watchers.start()
    await loop.run_in_executor(
        None, lambda: wait_until(lambda: parked(server.url, count, workers), 120, "parked")
    )
    during = server.rss_kib()
    for watch in watchers.watches:
        watch.close()
    return before, during


def measure(count: int, workers: int) -> dict:
    """RSS before and with `count` idle watchers."""
    raise_fd_limit()
    with tempfile.TemporaryDirectory() as tmp:
        repo = sample_repository(Path(tmp) / "repo")
        with ConfigServer(repo, Path(tmp) / "data", workers) as server:
            server.wait_ready()
            for _ in range(200):  # warm every worker's cache and code paths
                requests.get(f"{server.url}/orders/default", timeout=10, headers={"Connection": "close"})
            before, during = watchers_run(_hold(server, count, workers))
    per_watcher = (during - before) / count
    return {
        "watchers": count,
        "workers": workers,
        "rss_before_kib": before,
        "rss_with_watchers_kib": during,
        "per_watcher_kib": round(per_watcher, 2),
        "target_kib": TARGET_KIB,
    }


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, measure, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watchers", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=str(RESULTS / "watcher_memory.json"))
    args = parser.parse_args(argv)
    result = measure(args.watchers, args.workers)
    print_table(
        "Watcher memory: server RSS (master + workers) with idle long polls",
        ["watchers", "workers", "RSS before MiB", "RSS with watchers MiB", "KiB per watcher", "target KiB"],
        [
            [
                result["watchers"],
                result["workers"],
                round(result["rss_before_kib"] / 1024, 1),
                round(result["rss_with_watchers_kib"] / 1024, 1),
                result["per_watcher_kib"],
                TARGET_KIB,
            ]
        ],
    )
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
