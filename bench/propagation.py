"""Propagation: `git commit` to every one of N watching clients having the new settings, beside etcd.

For each N, our server (gunicorn, gevent, 2 workers) holds N long polls on `orders/default`; the
clock starts just before `git commit` and stops, per watcher, when it has read and parsed the new
Environment. etcd (Debian's etcd-server) gets the same N watchers on one key over its HTTP gateway;
the clock starts just before the put and stops when each watcher has the event. Both sides are
driven by the same asyncio harness in one process. Prints a table and writes JSON.

    .venv/bin/python bench/propagation.py                   # N = 100, 1000, 10000; 3 rounds each
    .venv/bin/python bench/propagation.py --sizes 1000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from bench.common import (
    RESULTS,
    ConfigServer,
    ensure_tools,
    free_port,
    git,
    print_table,
    raise_fd_limit,
    sample_repository,
    summary_ms,
    wait_until,
    write_json,
)
from bench.watchers import EtcdWatchers, LongPollWatchers
from bench.watchers import run as watchers_run

TARGETS_MS = {1000: 200.0, 10000: 1000.0}


def parked(url: str, count: int, workers: int) -> bool:
    """True when the workers together hold `count` long polls (`/health`'s `watchers` sums every
    worker's; `workers` is kept for the callers)."""
    details = requests.get(f"{url}/health", timeout=5, headers={"Connection": "close"}).json()["details"]
    return bool(details["watchers"] == count)


async def _ours_round(
    server: ConfigServer, repo: Path, count: int, round_no: int, workers: int
) -> list[float]:
    loop = asyncio.get_running_loop()
    etag = requests.get(f"{server.url}/orders/default", timeout=10).headers["ETag"].strip('"')
    watchers = LongPollWatchers(server.port, "/orders/default", etag, count, identified=True)
    await watchers.start()
    await loop.run_in_executor(
        None, lambda: wait_until(lambda: parked(server.url, count, workers), 60, "parked")
    )
    orders = repo / "orders.yml"
    # The first document applies to every profile (later ones are profile-activated).
    orders.write_text(f"bench-round-{round_no}: {round_no}\n" + orders.read_text())
    git(repo, "add", "-A")

    def commit() -> float:
        started = time.perf_counter()
        git(repo, "commit", "-qm", f"bench round {round_no}")
        return started

    started = await loop.run_in_executor(None, commit)
    await watchers.finish(timeout=30)
    done = [r.done_at - started for r in watchers.results if r.done_at and r.status == 200]
    if len(done) != count:
        raise RuntimeError(f"only {len(done)} of {count} watchers got the new settings")
    return done


async def _etcd_round(port: int, count: int, round_no: int) -> list[float]:
    loop = asyncio.get_running_loop()
    watchers = EtcdWatchers(port, "config/orders", count)
    await watchers.start()
    deadline = time.monotonic() + 60
    while watchers.created < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {watchers.created} of {count} etcd watches created")
        await asyncio.sleep(0.01)

    def put() -> float:
        started = time.perf_counter()
        body = {
            "key": base64.b64encode(b"config/orders").decode(),
            "value": base64.b64encode(f"round {round_no}".encode()).decode(),
        }
        requests.post(f"http://127.0.0.1:{port}/v3/kv/put", json=body, timeout=10).raise_for_status()
        return started

    started = await loop.run_in_executor(None, put)
    await watchers.finish(timeout=30)
    done = [r.done_at - started for r in watchers.results if r.done_at]
    if len(done) != count:
        raise RuntimeError(f"only {len(done)} of {count} etcd watchers got the event")
    return done


class Etcd:
    """A single-member etcd on loopback in a temporary data directory."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.port, peer = free_port(), free_port()
        self.process = subprocess.Popen(
            [
                binary,
                "--name=bench",
                f"--data-dir={data_dir}",
                f"--listen-client-urls=http://127.0.0.1:{self.port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=bench=http://127.0.0.1:{peer}",
                "--log-level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self) -> None:
        """Until the gateway answers."""

        def ready() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{self.port}/health", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(ready, 30, "etcd ready")

    def stop(self) -> None:
        """Terminate etcd."""
        self.process.terminate()
        self.process.wait(timeout=20)


#: Our server as it ships (every watcher names itself and is recorded in the instance inventory),
#: and with recording off (the server as it was before the inventory), for the recording's cost.
#: Every watcher connects from 127.0.0.1: the per-address cap on new instance ids is raised so that
#: all of them are recorded, as they would be from their own addresses.
CONFIGURATIONS = {
    "config-server": ("--instance-ids-per-address", "1000000"),
    "config-server (no recording)": ("--record-instances", "false"),
}


def measure(
    sizes: list[int], rounds: int, workers: int, with_etcd: bool, systems: list[str] | None = None
) -> list[dict]:
    """Run every size against each configuration of ours and etcd; one row per (system, N)."""
    raise_fd_limit()
    tools = ensure_tools("etcd") if with_etcd else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        repo = sample_repository(Path(tmp) / "repo")
        chosen = systems or list(CONFIGURATIONS)
        servers = {}
        for index, system in enumerate(chosen):
            server = stack.enter_context(
                ConfigServer(repo, Path(tmp) / f"data-{index}", workers, *CONFIGURATIONS[system])
            )
            server.wait_ready()
            servers[system] = server
        commits = itertools.count()  # each round's commit adds a new key
        for count in sizes:
            latencies: dict[str, list[float]] = {system: [] for system in chosen}
            for _ in range(rounds):
                for system in chosen:  # interleaved, so a noisy moment hits every configuration alike
                    round_no = next(commits)
                    latencies[system] += watchers_run(
                        _ours_round(servers[system], repo, count, round_no, workers)
                    )
            for system in chosen:
                rows.append(
                    {"system": system, "watchers": count, "rounds": rounds, **summary_ms(latencies[system])}
                )
        if with_etcd:
            etcd = Etcd(tools["etcd"], Path(tmp) / "etcd")
            try:
                etcd.wait_ready()
                for count in sizes:
                    latencies = []
                    for round_no in range(rounds):
                        latencies += watchers_run(_etcd_round(etcd.port, count, round_no))
                    rows.append(
                        {"system": "etcd", "watchers": count, "rounds": rounds, **summary_ms(latencies)}
                    )
            finally:
                etcd.stop()
    return rows


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, measure, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated watcher counts")
    parser.add_argument("--rounds", type=int, default=3, help="commits (puts) per size")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-etcd", action="store_true", help="skip the etcd side")
    parser.add_argument(
        "--recording",
        choices=("both", "on", "off"),
        default="both",
        help="our server with instance recording on (as shipped), off, or both side by side",
    )
    parser.add_argument("--json", default=str(RESULTS / "propagation.json"))
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    systems = {"both": list(CONFIGURATIONS), "on": ["config-server"], "off": ["config-server (no recording)"]}
    rows = measure(sizes, args.rounds, args.workers, not args.no_etcd, systems[args.recording])
    etcd = {r["watchers"]: r for r in rows if r["system"] == "etcd"}
    table = []
    for row in rows:
        peer = etcd.get(row["watchers"])
        ratio = round(row["p99_ms"] / peer["p99_ms"], 2) if peer and row["system"] != "etcd" else ""
        target = TARGETS_MS.get(row["watchers"], "") if row["system"] != "etcd" else ""
        table.append(
            [
                row["system"],
                row["watchers"],
                row["rounds"],
                row["p50_ms"],
                row["p99_ms"],
                row["max_ms"],
                ratio,
                target,
            ]
        )
    print_table(
        "Propagation: commit (or put) to every watcher holding the new value",
        ["system", "watchers", "rounds", "p50 ms", "p99 ms", "max ms", "p99 / etcd p99", "target p99 ms"],
        table,
    )
    result = {"rows": rows}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
