"""Rollout halt: `POST /rollouts/orders/halt` to every cohort long poll having the base version.

The sample repository gets a canary branch and `rollouts/orders.yml` at 50%; our server (gunicorn,
gevent, 2 workers) holds N identified long polls on `orders/default`, the cohort's holding the
canary's ETag and the others the base's. The clock starts just before the halt is posted and stops,
per cohort watcher, when it has read and parsed the base Environment; the others must not be
woken. Prints a table and writes JSON.

    .venv/bin/python -m bench.rollout_halt                  # N = 1000, 10000; 3 rounds each
    .venv/bin/python -m bench.rollout_halt --sizes 1000 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import requests

from bench.common import (
    RESULTS,
    ConfigServer,
    git,
    print_table,
    raise_fd_limit,
    sample_repository,
    summary_ms,
    wait_until,
    write_json,
)
from bench.propagation import parked
from bench.watchers import LongPollWatchers
from bench.watchers import run as watchers_run
from config_server.content.rollout_plan import cohort_point

ROLLOUT = "canary: release/orders-v2\nsteps: [50]\nbake: 1h\nid: {id}\n"


class RoundWatchers(LongPollWatchers):
    """Identified long polls with ids of one round (`bench-{round}-{index}`), each with its ETag."""

    def __init__(self, port: int, ids: list[str], etags: list[str]) -> None:
        super().__init__(port, "/orders/default", etags[0], len(ids), identified=True)
        self.ids, self.etags = ids, etags

    def _request(self, index: int) -> bytes:
        return (
            f'GET {self.path}?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: "{self.etags[index]}"\r\n'
            f"X-Config-Client-Id: {self.ids[index]}\r\nConnection: close\r\n\r\n"
        ).encode()


def _etag(url: str, instance: str) -> tuple[str, str]:
    answer = requests.get(f"{url}/orders/default", headers={"X-Config-Client-Id": instance}, timeout=10)
    return answer.headers["ETag"].strip('"'), answer.json()["version"]


async def _round(server: ConfigServer, repo: Path, count: int, round_no: int, workers: int) -> list[float]:
    loop = asyncio.get_running_loop()
    rollout_id = f"bench-{count}-{round_no}"
    (repo / "rollouts" / "orders.yml").write_text(ROLLOUT.format(id=rollout_id))
    git(repo, "commit", "-qam", f"rollout {rollout_id}")
    ids = [f"bench-{round_no}-{i}" for i in range(count)]
    cohort = [cohort_point("orders", rollout_id, i) < 50 for i in ids]
    inside = next(i for i, c in zip(ids, cohort, strict=True) if c)
    outside = next(i for i, c in zip(ids, cohort, strict=True) if not c)

    def started_running() -> bool:
        rollouts = requests.get(f"{server.url}/rollouts", timeout=5).json()["rollouts"]
        return bool(rollouts) and rollouts[0]["id"] == rollout_id and rollouts[0]["state"] == "running"

    def every_worker_routes_the_cohort() -> bool:
        """Each worker notices the new rollout file on its own loop: the cohort must get the
        canary from all of them (fresh connections land on either) before its ETag is taken."""
        return all(
            "X-Config-Rollout"
            in requests.get(
                f"{server.url}/orders/default",
                headers={"X-Config-Client-Id": inside, "Connection": "close"},
                timeout=10,
            ).headers
            for _ in range(8 * workers)
        )

    await loop.run_in_executor(None, lambda: wait_until(started_running, 30, "the rollout"))
    await loop.run_in_executor(
        None, lambda: wait_until(every_worker_routes_the_cohort, 30, "the rollout in every worker")
    )
    (canary_etag, _), (base_etag, base) = _etag(server.url, inside), _etag(server.url, outside)
    etags = [canary_etag if c else base_etag for c in cohort]
    watchers = RoundWatchers(server.port, ids, etags)
    await watchers.start()
    await loop.run_in_executor(
        None, lambda: wait_until(lambda: parked(server.url, count, workers), 60, "parked")
    )

    def halt() -> float:
        started = time.perf_counter()
        requests.post(f"{server.url}/rollouts/orders/halt", json={"reason": "bench"}, timeout=10)
        return started

    started = await loop.run_in_executor(None, halt)
    await watchers.finish(timeout=5)  # the others wait 60 s: they are closed unanswered
    done, woken_outside = [], 0
    for result, in_cohort in zip(watchers.results, cohort, strict=True):
        if in_cohort and result.done_at and result.payload.get("version") == base:
            done.append(result.done_at - started)
        elif not in_cohort and result.done_at:
            woken_outside += 1
    # the others still wait on the server: a base commit answers them before the next round
    orders = repo / "orders.yml"
    orders.write_text(f"bench-round-{count}-{round_no}: {round_no}\n" + orders.read_text())
    git(repo, "commit", "-qam", f"bench round {count}/{round_no}")
    await loop.run_in_executor(
        None, lambda: wait_until(lambda: parked(server.url, 0, workers), 90, "drained")
    )
    if len(done) != sum(cohort) or woken_outside:
        raise RuntimeError(
            f"{len(done)} of {sum(cohort)} cohort watchers got the base; {woken_outside} others woken"
        )
    return done


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns (and writes) the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="watchers per round, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=str(RESULTS / "rollout_halt.json"))
    args = parser.parse_args(argv)
    raise_fd_limit()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        root = Path(tmp)
        repo = sample_repository(root / "repo")
        git(repo, "checkout", "-qb", "release/orders-v2")
        orders = repo / "orders.yml"
        orders.write_text(orders.read_text().replace("max-items: 100", "max-items: 200", 1))
        git(repo, "commit", "-qam", "canary")
        git(repo, "checkout", "-q", "main")
        (repo / "rollouts").mkdir()
        (repo / "rollouts" / "orders.yml").write_text(ROLLOUT.format(id="start"))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "rollout")
        with ConfigServer(repo, root / "data", args.workers) as server:
            server.wait_ready()
            for count in (int(s) for s in args.sizes.split(",")):
                times: list[float] = []
                for round_no in range(args.rounds):
                    times += watchers_run(_round(server, repo, count, round_no, args.workers))
                rows.append({"watchers": count, "cohort": len(times) // args.rounds, **summary_ms(times)})
    print_table(
        "Rollout halt to every cohort long poll answered the base version (ms)",
        ["watchers", "cohort", "p50_ms", "p99_ms", "max_ms"],
        [[r["watchers"], r["cohort"], r["p50_ms"], r["p99_ms"], r["max_ms"]] for r in rows],
    )
    result = {"rows": rows}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
