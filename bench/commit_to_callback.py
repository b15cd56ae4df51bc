"""Commit-to-callback latency: `git commit` in a repository to a ConfigClient's change listener.

Starts `config-server serve` (gunicorn, gevent worker) on a temporary git repository, starts one
ConfigClient watching `orders/default`, commits a new value `--rounds` times and measures, for
each commit, the time from just before `git commit` starts until the listener has run with the
new value. Prints a table and writes JSON.

    .venv/bin/python bench/commit_to_callback.py --rounds 50
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from config_client import ConfigClient

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.01)


def measure(rounds: int, workers: int) -> list[float]:
    """Run the benchmark; returns one latency in seconds per commit."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "--initial-branch=main")
        (repo / "orders.yml").write_text("value: 0\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "start")
        port = free_port()
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("config-server")),
                "serve",
                "--repo",
                str(repo),
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--data-dir",
                str(Path(tmp) / "data"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _ready(url), 30)
            applied: dict[int, float] = {}
            seen = threading.Condition()
            client = ConfigClient(url, "orders", "default", wait=30)

            def listener(change) -> None:
                with seen:
                    applied[client.snapshot.get("value")] = time.perf_counter()
                    seen.notify_all()

            client.on_change(listener)
            client.start()
            time.sleep(0.5)  # let the first long poll reach the server before the first commit
            latencies = []
            for i in range(1, rounds + 1):
                (repo / "orders.yml").write_text(f"value: {i}\n")
                git(repo, "add", "-A")
                started = time.perf_counter()
                git(repo, "commit", "-qm", f"round {i}")
                with seen:
                    if not seen.wait_for(lambda i=i: i in applied, timeout=10):
                        raise TimeoutError(f"round {i} was not applied")
                latencies.append(applied[i] - started)
                time.sleep(0.05)  # let the client's next long poll start
            client.stop()
            return latencies
        finally:
            server.terminate()
            server.wait(timeout=20)


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=1, headers={"Connection": "close"}).ok
    except requests.RequestException:
        return False


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default="bench/results/commit_to_callback.json")
    args = parser.parse_args(argv)
    latencies = sorted(measure(args.rounds, args.workers))
    ms = [x * 1000 for x in latencies]
    result = {
        "rounds": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
        "max_ms": round(ms[-1], 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }
    print("| rounds | p50 ms | p99 ms | max ms | mean ms |")
    print("|---|---|---|---|---|")
    print(
        f"| {result['rounds']} | {result['p50_ms']} | {result['p99_ms']} | {result['max_ms']} | "
        f"{result['mean_ms']} |"
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
