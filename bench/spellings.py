"""Many spellings of one environment, watched, and a commit that changes them all (issue 24 item 5).

One gevent worker. `--spellings` watchers long-poll `/orders/prod,p{i}` (profiles no file names:
the same settings), at most `--slots-per-caller` of them per source address (127.0.1.x), each
re-parking with the ETag it was answered. One legitimate watcher (127.0.0.2) long-polls
`/payments/default`. Each round commits a change to `application.yml`, which every environment
reads, so every watched slot moves; the table gives, per round, the legitimate watcher's
commit-to-answer time, when the last spelling had that commit, and the worker's CPU.

    .venv/bin/python -m bench.spellings                      # 3,000 spellings, 3 rounds
    .venv/bin/python -m bench.spellings --spellings 0        # the same without them
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import (
    RESULTS,
    ConfigServer,
    git,
    print_table,
    process_tree_cpu_seconds,
    raise_fd_limit,
    timed_commit,
    write_json,
)
from bench.watchers import CONNECT_BATCH, keep_watching
from bench.watchers import run as watchers_run

LEGITIMATE = "127.0.0.2"


def _source(index: int, per_address: int) -> str:
    """The source address of spelling `index`: 127.0.1.1, 127.0.1.2, ... one per `per_address`."""
    number = index // per_address
    return f"127.0.{1 + number // 250}.{1 + number % 250}"


async def _rounds(
    server: ConfigServer, repo: Path, spellings: int, per_address: int, rounds: int
) -> list[list]:
    stop = asyncio.Event()
    legitimate: list[tuple[float, str]] = []
    seen: list[list[tuple[float, str]]] = [[] for _ in range(spellings)]
    tasks = [
        asyncio.create_task(keep_watching(server.port, "/payments/default", LEGITIMATE, legitimate, stop))
    ]
    for start in range(0, spellings, CONNECT_BATCH):
        for i in range(start, min(spellings, start + CONNECT_BATCH)):
            watch = keep_watching(server.port, f"/orders/prod,p{i}", _source(i, per_address), seen[i], stop)
            tasks.append(asyncio.create_task(watch))
        await asyncio.sleep(0.1)
    deadline = time.monotonic() + 120
    while not (legitimate and all(seen)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {sum(map(bool, seen))} of {spellings} spellings answered")
        await asyncio.sleep(0.1)
    await asyncio.sleep(2)  # every watcher parked again
    loop = asyncio.get_running_loop()
    rows = []
    for round_no in range(rounds):
        line = f"spellings-round-{time.time_ns()}: {round_no}"
        cpu_before = process_tree_cpu_seconds(server.process.pid)
        started, version = await loop.run_in_executor(
            None, timed_commit, repo, "application.yml", line, "spellings round"
        )
        deadline = time.monotonic() + 60

        def answered(
            answers: list[tuple[float, str]], started: float = started, version: str = version
        ) -> float | None:
            return next((at - started for at, v in answers if v == version), None)

        while time.monotonic() < deadline and not (
            answered(legitimate) is not None and all(answered(a) is not None for a in seen)
        ):
            await asyncio.sleep(0.02)
        legit = answered(legitimate)
        last = max((answered(a) or float("inf") for a in seen), default=0.0)
        cpu = process_tree_cpu_seconds(server.process.pid) - cpu_before
        rows.append([round_no + 1, _seconds(legit), _seconds(last), f"{cpu:.2f}"])
        await asyncio.sleep(1)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return rows


def _seconds(value: float | None) -> str:
    return "missed" if value is None or value == float("inf") else f"{value:.2f}"


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, run the rounds, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spellings", type=int, default=3000)
    parser.add_argument("--slots-per-caller", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=200, help="keys in orders.yml")
    parser.add_argument("--json", default=str(RESULTS / "spellings.json"))
    args = parser.parse_args(argv)
    raise_fd_limit()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / "application.yml").write_text("region: eu\n")
        (repo / "orders.yml").write_text("".join(f"key{i}: value {i}\n" for i in range(args.keys)))
        (repo / "payments.yml").write_text("fee: 1\n")
        git(repo, "init", "-q", "--initial-branch=main")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "orders with many keys")
        with ConfigServer(
            repo, Path(tmp) / "data", 1, "--slots-per-caller", str(args.slots_per_caller)
        ) as server:
            server.wait_ready()
            rows = watchers_run(_rounds(server, repo, args.spellings, args.slots_per_caller, args.rounds))
    print_table(
        f"{args.spellings} spellings of /orders/prod watched, a commit to application.yml (1 worker)",
        ["round", "legitimate commit-to-answer s", "last spelling answered s", "worker CPU s"],
        rows,
    )
    result = {"spellings": args.spellings, "rows": rows}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
