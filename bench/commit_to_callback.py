"""Commit-to-callback latency: `git commit` in a repository to a ConfigClient's change listener.

Starts `config-server serve` (gunicorn, gevent worker) on a temporary git repository, starts one
ConfigClient watching `orders/default`, commits a new value `--rounds` times and measures, for
each commit, the time from just before `git commit` starts until the listener has run with the
new value. Prints a table and writes JSON.

    .venv/bin/python bench/commit_to_callback.py --rounds 50
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from bench.common import RESULTS, ConfigServer, git, print_table, summary_ms, wait_until, write_json
from bench.propagation import parked
from config_client import ConfigClient


def measure(rounds: int, workers: int) -> list[float]:
    """Run the benchmark; returns one latency in seconds per commit."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "--initial-branch=main")
        (repo / "orders.yml").write_text("value: 0\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "start")
        with ConfigServer(repo, Path(tmp) / "data", workers) as server:
            server.wait_ready()
            applied: dict[int, float] = {}
            seen = threading.Condition()
            client = ConfigClient(server.url, "orders", "default", wait=30)

            def listener(change) -> None:
                with seen:
                    applied[client.snapshot.get("value")] = time.perf_counter()
                    seen.notify_all()

            client.on_change(listener)
            client.start()
            latencies = []
            try:
                for i in range(1, rounds + 1):
                    wait_until(lambda: parked(server.url, 1, workers), 10, "the client's long poll")
                    (repo / "orders.yml").write_text(f"value: {i}\n")
                    git(repo, "add", "-A")
                    started = time.perf_counter()
                    git(repo, "commit", "-qm", f"round {i}")
                    with seen:
                        if not seen.wait_for(lambda i=i: i in applied, timeout=10):
                            raise TimeoutError(f"round {i} was not applied")
                    latencies.append(applied[i] - started)
            finally:
                client.stop()
            return latencies


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, measure, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=str(RESULTS / "commit_to_callback.json"))
    args = parser.parse_args(argv)
    result = {"rounds": args.rounds, **summary_ms(measure(args.rounds, args.workers))}
    print_table(
        "Commit to callback: git commit to a ConfigClient listener having run",
        ["rounds", "p50 ms", "p99 ms", "max ms", "mean ms"],
        [[result["rounds"], result["p50_ms"], result["p99_ms"], result["max_ms"], result["mean_ms"]]],
    )
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
