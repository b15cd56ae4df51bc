"""Cluster: 3 replicas and Redis behind nginx; a push plus a webhook to ONE replica, to every watcher.

Three `config-server serve` replicas (gunicorn, gevent), each with its own mirror of one bare
repository (`file://`), and Debian's `redis-server` and `nginx` (round-robin load balancer) on this
machine. N watchers long-poll `orders/default` through nginx, so they spread over the replicas.
A round commits, pushes to the bare repository and sends `POST /monitor` to replica 0 only; the
clock starts before the push and stops, per watcher, when it has read and parsed the new settings.

Two modes: `redis` (`--redis`: the webhooked replica's hint makes the others fetch at once) and
`interval` (no Redis: the other replicas notice on their next interval fetch, `--interval` s).

One replica alone (`--single-watchers`, 50,000 by default; 0 skips it): its resident memory per
idle watcher, and one push + webhook to all of them. No process holds more than 17,000 connections
(where the hard open-file limit is 20,000 even for root): the replica runs one gevent worker per
17,000 watchers (`--single-workers`, by default), and the watchers are held by as many harness
processes (`bench/idle_watchers.py`: idle CPU priority, so they do not take the two cores from the
server while the clock runs, and the kernel's receive timestamp of each answer, CLOCK_REALTIME,
so an answer is timed when it reached the watcher's socket, however late the harness reads it).
They spread their connections over 127.0.0.x (5,000 per source address) and raise the open-file
limit as far as allowed.

In the redis mode, after its rounds, the busiest replica is killed (SIGKILL) under watchers parked
through nginx: the time until the survivors hold all of them (nginx re-sends a long poll whose
replica died before answering), and how many miss the next push.

Then failover without nginx: M `ConfigClient`s given all three replica URLs (no nginx) watch; replica 2 (that
holds some of them) is killed with SIGKILL (master and workers); the time until each of its
clients is parked on another replica is measured, then a push and webhook must reach every client.

    .venv/bin/python bench/cluster.py                            # 9,000 watchers, 3 rounds, 30 s
    .venv/bin/python bench/cluster.py --watchers 1000 --rounds 2 --interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import resource
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    CONFIG_SERVER,
    RESULTS,
    ensure_tools,
    free_port,
    git,
    http_ok,
    print_table,
    process_tree_rss_kib,
    raise_fd_limit,
    sample_repository,
    summary_ms,
    wait_until,
    write_json,
)
from bench.held_watchers import HeldWatchers, idle_priority
from bench.watchers import LongPollWatchers
from bench.watchers import run as watchers_run

REPLICAS = 3
TARGET_P99_MS = 1000.0
TARGET_FAILOVER_S = 2.0
TARGET_SINGLE_P99_MS = 1500.0
TARGET_SINGLE_KIB = 32.0
#: Connections per source address. The ephemeral port range holds about 28,000, but `bind()` to
#: port 0 searches it for a free port and slows down sharply as it fills: with 20,000 per address,
#: parking 50,000 watchers on 2 cores had not finished after 300 s; with 5,000 it takes 27 s.
PER_SOURCE = 5000
#: Connections held by one process at most (a harness process or a gunicorn worker): the sandbox's
#: hard open-file limit is 20,000 and even root may not raise it.
HARNESS_CONNECTIONS = 17000
#: How long a harness process holds its watchers at most (parking, then the push).
SINGLE_TIMEOUT_S = 600.0


class Redis:
    """Debian's redis-server on loopback, no persistence."""

    def __init__(self, binary: str, root: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(root),
                "--maxclients",
                "10000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        """Terminate it."""
        self.process.terminate()
        self.process.wait(timeout=20)


class Replica:
    """One `config-server serve` replica with its own data directory (and so its own mirror)."""

    def __init__(
        self,
        repo_url: str,
        data_dir: Path,
        workers: int,
        interval: float,
        redis_url: str | None,
        *more: str,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        extra = (["--redis", redis_url] if redis_url else []) + list(more)
        extra += ["--polls-per-address", "0"]  # every watcher comes through nginx on 127.0.0.1
        self.process = subprocess.Popen(
            [
                str(CONFIG_SERVER),
                "serve",
                "--repo",
                repo_url,
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--data-dir",
                str(data_dir),
                "--refresh-interval",
                str(interval),
                "--log-level",
                "warning",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self) -> None:
        """Until /health answers."""
        wait_until(lambda: self.process.poll() is None and http_ok(self.url + "/health"), 60, "replica ready")

    def watchers(self) -> int:
        """Long polls held by all its workers: the `config_server_watchers` gauge of /metrics, summed
        over the live workers by prometheus-client (each /health answers for one worker only, and a
        busy worker may not be the one that accepts the probe)."""
        try:
            text = requests.get(f"{self.url}/metrics", timeout=10, headers={"Connection": "close"}).text
        except requests.RequestException:
            return 0
        for line in text.splitlines():
            if line.startswith("config_server_watchers "):
                return int(float(line.split()[1]))
        return 0

    def kill(self) -> None:
        """SIGKILL the master and its workers at once (a crashed machine)."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        for target in [pid, *map(int, children)]:
            try:
                os.kill(target, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Terminate gracefully; kill when it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


class Nginx:
    """nginx balancing round-robin over the replicas, long polls passed through."""

    def __init__(self, binary: str, root: Path, ports: list[int], connections: int) -> None:
        self.port = free_port()
        upstream = "".join(f"        server 127.0.0.1:{p};\n" for p in ports)
        root.mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)
        conf = root / "nginx.conf"
        conf.write_text(
            f"""
worker_processes 2;
worker_rlimit_nofile {2 * connections + 1024};
daemon off;
user root;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log error;
events {{ worker_connections {2 * connections + 512}; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
    upstream replicas {{
{upstream}    }}
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        location / {{
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_read_timeout 75s;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""
        )
        self.process = subprocess.Popen([binary, "-c", str(conf), "-p", str(root)], stderr=subprocess.DEVNULL)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{self.port}/health"), 30, "nginx ready")

    def stop(self) -> None:
        """Stop nginx."""
        self.process.terminate()
        self.process.wait(timeout=20)


def push_and_webhook(
    work: Path, replica: Replica, round_no: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Commit a change to orders.yml, push it, tell one replica; returns `clock()` at the start."""
    orders = work / "orders.yml"
    orders.write_text(f"bench-cluster-{round_no}: {round_no}\n" + orders.read_text())
    git(work, "commit", "-qam", f"cluster round {round_no}")
    started = clock()
    git(work, "push", "-q", "origin", "main")
    requests.post(f"{replica.url}/monitor", data={"path": "orders.yml"}, timeout=30).raise_for_status()
    return started


def _wait_parked(replicas: list[Replica], watchers: LongPollWatchers) -> list[int]:
    """Until the replicas hold every watcher; how many each holds. A timeout names what was seen
    last and the statuses of watchers answered early (an nginx 502 would show there)."""
    seen: list[int] = []

    def all_parked() -> list[int] | None:
        seen[:] = [r.watchers() for r in replicas]
        return seen if sum(seen) == watchers.count else None

    try:
        return wait_until(all_parked, 120, "watchers parked")
    except TimeoutError as error:
        early = sorted({r.status for r in watchers.results if r.done_at is not None})
        raise TimeoutError(f"{error}: held {seen} of {watchers.count}; answered early: {early}") from None


async def _propagation_round(
    nginx: Nginx, replicas: list[Replica], work: Path, count: int, round_no: int, timeout: float
) -> tuple[list[float], list[int]]:
    loop = asyncio.get_running_loop()
    url = f"http://127.0.0.1:{nginx.port}/orders/default"
    etags = {requests.get(f"{r.url}/orders/default", timeout=10).headers["ETag"] for r in replicas}
    if len(etags) != 1:
        raise RuntimeError(f"replicas disagree before the round: {etags}")
    etag = requests.get(url, timeout=10).headers["ETag"].strip('"')
    watchers = LongPollWatchers(nginx.port, "/orders/default", etag, count)
    await watchers.start()
    spread = await loop.run_in_executor(None, _wait_parked, replicas, watchers)
    started = await loop.run_in_executor(None, push_and_webhook, work, replicas[0], round_no)
    await watchers.finish(timeout=timeout)
    done = [r.done_at - started for r in watchers.results if r.done_at and r.status == 200]
    if len(done) != count:
        raise RuntimeError(f"only {len(done)} of {count} watchers got the new settings")
    return done, spread


async def _kill_round(
    nginx: Nginx, replicas: list[Replica], work: Path, count: int, timeout: float
) -> dict[str, float | int]:
    """Kill the replica holding the most watchers parked through nginx: how long until the survivors
    hold every watcher (nginx re-sends a long poll whose replica died before answering), and how
    many miss the next push."""
    loop = asyncio.get_running_loop()
    url = f"http://127.0.0.1:{nginx.port}/orders/default"
    etag = requests.get(url, timeout=10).headers["ETag"].strip('"')
    watchers = LongPollWatchers(nginx.port, "/orders/default", etag, count)
    await watchers.start()
    spread = await loop.run_in_executor(None, _wait_parked, replicas, watchers)
    busiest = max(range(len(replicas)), key=lambda i: spread[i])
    victim, survivors = replicas[busiest], [r for i, r in enumerate(replicas) if i != busiest]
    killed = time.perf_counter()
    victim.kill()
    await loop.run_in_executor(
        None,
        lambda: wait_until(lambda: sum(r.watchers() for r in survivors) == count, 60, "watchers moved"),
    )
    moved = time.perf_counter() - killed
    started = await loop.run_in_executor(None, push_and_webhook, work, survivors[0], 999)
    await watchers.finish(timeout=timeout)
    done = [r.done_at - started for r in watchers.results if r.done_at and r.status == 200]
    return {
        "on_killed_replica": spread[busiest],
        "all_on_survivors_s": round(moved, 3),
        "next_commit_missed": count - len(done),
        "next_commit_p99_ms": summary_ms(done)["p99_ms"] if done else 0.0,
    }


def propagation(
    mode: str, tools: dict[str, str], root: Path, count: int, rounds: int, workers: int, interval: float
) -> dict:
    """One mode's rounds: latencies of every watcher of every round."""
    origin, work = _repositories(root / mode)
    redis = Redis(tools["redis-server"], root / mode) if mode == "redis" else None
    replicas: list[Replica] = []
    nginx = None
    try:
        redis_url = redis.url if redis else None
        replicas = [
            Replica(f"file://{origin}", root / mode / f"replica-{i}", workers, interval, redis_url)
            for i in range(REPLICAS)
        ]
        for replica in replicas:
            replica.wait_ready()
        nginx = Nginx(tools["nginx"], root / mode / "nginx", [r.port for r in replicas], count)
        latencies: list[float] = []
        spreads = []
        for round_no in range(rounds):
            done, spread = watchers_run(
                _propagation_round(nginx, replicas, work, count, round_no, timeout=interval * 2 + 30)
            )
            latencies += done
            spreads.append(spread)
        row = {"mode": mode, "watchers": count, "rounds": rounds, "spread": spreads, **summary_ms(latencies)}
        if mode == "redis":
            row["nginx_failover"] = watchers_run(_kill_round(nginx, replicas, work, count, interval * 2 + 30))
        return row
    finally:
        if nginx:
            nginx.stop()
        for replica in replicas:
            replica.stop()
        if redis:
            redis.stop()


def raise_fd_limit_to(count: int) -> int:
    """Raise the open-file limit (soft and, as root, hard) to `count`; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if count > hard and os.geteuid() == 0:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))
            return count
        except (ValueError, OSError):  # a container may cap the hard limit even for root
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(count, hard), hard))
    return min(count, hard)


def _shares(count: int, per_process: int) -> list[tuple[int, int]]:
    """Split `count` watchers into (offset, size) shares of at most `per_process` each, as even as can be."""
    processes = max(1, math.ceil(count / per_process))
    sizes = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    offsets = [sum(sizes[:i]) for i in range(processes)]
    return list(zip(offsets, sizes, strict=True))


def _harness_share(
    port: int,
    etag: str,
    share: tuple[int, int],
    events: tuple[Event, Event],
    results: Queue[tuple[int, list[float], str]],
    timeout: float,
    idle: bool = True,
) -> None:
    """One harness process (`bench/held_watchers.py`; at idle CPU priority unless `idle` is
    False): hold `share` = (offset, size) long polls, set `events[0]` once they are sent, put the
    moments (CLOCK_REALTIME) their new settings arrived on `results`, close them when `events[1]`
    is set."""
    raise_fd_limit_to(share[1] + 1024)
    if idle:
        idle_priority()
    watchers = HeldWatchers(port, "/orders/default", etag, share[1], share[0], PER_SOURCE, idle)
    try:
        watchers.open()
        events[0].set()
        watchers.run(timeout)
        results.put((share[0], watchers.done_at(), ""))
        events[1].wait(60)
    except Exception as error:  # the parent reports it
        results.put((share[0], [], repr(error)))
    finally:
        watchers.close()


def _single_round(
    replica: Replica, work: Path, count: int, idle: bool
) -> tuple[list[float], int, int, int, int]:
    """Warm the replica, park `count` watchers held by several harness processes, push once."""
    for _ in range(200):  # warm every worker's cache and code paths
        requests.get(f"{replica.url}/orders/default", timeout=10, headers={"Connection": "close"})
    before = process_tree_rss_kib(replica.process.pid)
    etag = requests.get(f"{replica.url}/orders/default", timeout=10).headers["ETag"].strip('"')
    context = multiprocessing.get_context("spawn")
    results: Queue[tuple[int, list[float], str]] = context.Queue()
    shares = _shares(count, HARNESS_CONNECTIONS)
    harnesses: list[tuple[multiprocessing.process.BaseProcess, Event]] = []
    release = context.Event()
    try:
        for share in shares:
            opened = context.Event()
            harness = context.Process(
                target=_harness_share,
                args=(replica.port, etag, share, (opened, release), results, SINGLE_TIMEOUT_S, idle),
                daemon=True,
            )
            harness.start()
            harnesses.append((harness, opened))
        wait_until(lambda: all(o.is_set() or not p.is_alive() for p, o in harnesses), 600, "harnesses open")
        if not all(opened.is_set() for _, opened in harnesses):
            raise RuntimeError(f"a harness process failed: {results.get(timeout=10)[2]}")
        parked = [0]

        def nearly_all_parked() -> bool:  # a few may be between an expired long poll and the next
            parked[0] = replica.watchers()
            return parked[0] >= count - count // 1000

        try:
            wait_until(nearly_all_parked, 300, "watchers parked")
        except TimeoutError as error:
            raise TimeoutError(f"{error}: {parked[0]} of {count} seen parked last") from None
        during = process_tree_rss_kib(replica.process.pid)
        started = push_and_webhook(
            work, replica, 0, time.time
        )  # the kernel's receive times are CLOCK_REALTIME
        done: list[float] = []
        for _ in shares:
            _, done_at, error = results.get(timeout=SINGLE_TIMEOUT_S + 60)
            if error:
                raise RuntimeError(f"a harness process failed: {error}")
            done += [moment - started for moment in done_at]
        release.set()
        for process, _ in harnesses:
            process.join(timeout=30)
    finally:
        release.set()
        for process, _ in harnesses:
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
    if len(done) != count:
        raise RuntimeError(f"only {len(done)} of {count} watchers got the new settings")
    return done, before, during, len(shares), parked[0]


def single_replica(root: Path, count: int, workers: int | None, harness: str = "idle") -> dict[str, Any]:
    """One replica (no Redis) holding `count` idle watchers: memory each, then one push to all.

    No process holds more than HARNESS_CONNECTIONS connections: the replica gets enough gunicorn
    workers (by default), the harness enough processes, so an open-file limit of 20,000 suffices."""
    workers = workers or max(1, math.ceil(count / HARNESS_CONNECTIONS))
    per_worker = math.ceil(count / workers) + 2048
    limit = raise_fd_limit_to(max(per_worker, min(count, HARNESS_CONNECTIONS)) + 4096)
    if limit < per_worker + 512:
        raise RuntimeError(
            f"open-file limit {limit} is too low for {per_worker} connections per worker"
            " (give more --single-workers)"
        )
    origin, work = _repositories(root / "single")
    data = root / "single" / "data"
    replica = Replica(f"file://{origin}", data, workers, 0, None, "--worker-connections", str(per_worker))
    try:
        replica.wait_ready()
        done, before, during, harnesses, parked = _single_round(replica, work, count, harness == "idle")
    finally:
        replica.stop()
    return {
        "watchers": count,
        "workers": workers,
        "harness": harness,
        "harness_processes": harnesses,
        "parked_at_push": parked,
        "rss_before_kib": before,
        "rss_with_watchers_kib": during,
        "per_watcher_kib": round((during - before) / count, 1),
        **summary_ms(done),
    }


def failover(tools: dict[str, str], root: Path, clients: int, workers: int, interval: float) -> dict:
    """Kill one of three replicas under watching ConfigClients; time to move, and missed commits."""
    from config_client import ConfigClient

    origin, work = _repositories(root / "failover")
    redis = Redis(tools["redis-server"], root / "failover")
    replicas: list[Replica] = []
    watching: list[ConfigClient] = []
    try:
        replicas = [
            Replica(f"file://{origin}", root / "failover" / f"replica-{i}", workers, interval, redis.url)
            for i in range(REPLICAS)
        ]
        for replica in replicas:
            replica.wait_ready()
        urls = [r.url for r in replicas]
        for i in range(clients):  # every third client starts on the replica that will be killed
            order = urls[i % REPLICAS :] + urls[: i % REPLICAS]
            watching.append(ConfigClient(order, "orders", wait=30, max_backoff=1.0).start())
        victim = replicas[2]
        on_victim = [c for c in watching if c.transport.server_url == victim.url]
        wait_until(lambda: sum(r.watchers() for r in replicas) == clients, 60, "clients parked")
        killed = time.perf_counter()
        victim.kill()
        moved: dict[int, float] = {}

        def all_moved() -> bool:
            for client in on_victim:
                if id(client) not in moved and client.transport.server_url != victim.url:
                    moved[id(client)] = time.perf_counter() - killed
            return len(moved) == len(on_victim)

        wait_until(all_moved, 60, "clients moved")
        survivors = replicas[:2]
        wait_until(lambda: sum(r.watchers() for r in survivors) == clients, 60, "clients parked again")
        parked_again = time.perf_counter() - killed
        started = push_and_webhook(work, survivors[0], 1000)
        sha = git(work, "rev-parse", "HEAD").strip()
        deadline = time.monotonic() + interval * 2 + 30
        while time.monotonic() < deadline and any(c.version != sha for c in watching):
            time.sleep(0.01)
        missed = sum(1 for c in watching if c.version != sha)
        after = time.perf_counter() - started
        return {
            "clients": clients,
            "on_killed_replica": len(on_victim),
            "moved_max_s": round(max(moved.values(), default=0.0), 3),
            "all_parked_again_s": round(parked_again, 3),
            "next_commit_missed": missed,
            "next_commit_all_s": round(after, 3),
        }
    finally:
        for client in watching:
            client.stop()
        for replica in replicas:
            replica.stop()
        redis.stop()


def _repositories(root: Path) -> tuple[Path, Path]:
    """A bare origin holding the sample repository, and a working clone that pushes to it."""
    root.mkdir(parents=True, exist_ok=True)
    sample = sample_repository(root / "sample")
    origin = root / "origin.git"
    git(root, "clone", "-q", "--bare", str(sample), str(origin))
    work = root / "work"
    git(root, "clone", "-q", str(origin), str(work))
    return origin, work


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, measure both modes and the failover, print the tables, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watchers", type=int, default=9000, help="watchers spread over the replicas")
    parser.add_argument("--rounds", type=int, default=3, help="pushes per mode")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers per replica")
    parser.add_argument("--interval", type=float, default=30.0, help="refresh interval of every replica")
    parser.add_argument("--clients", type=int, default=30, help="ConfigClients in the failover run")
    parser.add_argument("--modes", default="redis,interval", help="redis, interval or both")
    parser.add_argument(
        "--single-watchers", type=int, default=50000, help="watchers on one replica alone (0: skip)"
    )
    parser.add_argument(
        "--single-workers",
        type=int,
        default=0,
        help=f"gunicorn workers of that replica (0: one per {HARNESS_CONNECTIONS} watchers)",
    )
    parser.add_argument(
        "--single-harness",
        choices=("idle", "eager"),
        default="idle",
        help="idle: harness at idle CPU priority, answers timed by the kernel's receive time; "
        "eager: normal priority, timed when read and parsed (its CPU counts against the server)",
    )
    parser.add_argument("--json", default=str(RESULTS / "cluster.json"))
    args = parser.parse_args(argv)
    raise_fd_limit()
    tools = ensure_tools("nginx", "redis-server")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            rows.append(
                propagation(mode, tools, Path(tmp), args.watchers, args.rounds, args.workers, args.interval)
            )
        moved = failover(tools, Path(tmp), args.clients, args.workers, args.interval)
        single = (
            single_replica(Path(tmp), args.single_watchers, args.single_workers, args.single_harness)
            if args.single_watchers
            else None
        )
    print_table(
        f"Cluster: push + webhook to one of {REPLICAS} replicas behind nginx, to every watcher",
        ["mode", "watchers", "rounds", "p50 ms", "p99 ms", "max ms", "target p99 ms"],
        [
            [r["mode"], r["watchers"], r["rounds"], r["p50_ms"], r["p99_ms"], r["max_ms"], TARGET_P99_MS]
            for r in rows
        ],
    )
    for r in rows:
        if "nginx_failover" in r:
            f = r["nginx_failover"]
            print_table(
                "Failover behind nginx: one replica killed (SIGKILL) under the watchers",
                [
                    "watchers",
                    "on killed replica",
                    "all on survivors s",
                    "next commit missed",
                    "p99 ms",
                    "target s",
                ],
                [
                    [
                        r["watchers"],
                        f["on_killed_replica"],
                        f["all_on_survivors_s"],
                        f["next_commit_missed"],
                        f["next_commit_p99_ms"],
                        TARGET_FAILOVER_S,
                    ]
                ],
            )
    print_table(
        "Failover: one replica killed (SIGKILL) under watching ConfigClients",
        [
            "clients",
            "on killed replica",
            "moved (max s)",
            "all parked again s",
            "next commit missed",
            "next commit to all s",
            "target s",
        ],
        [
            [
                moved["clients"],
                moved["on_killed_replica"],
                moved["moved_max_s"],
                moved["all_parked_again_s"],
                moved["next_commit_missed"],
                moved["next_commit_all_s"],
                TARGET_FAILOVER_S,
            ]
        ],
    )
    if single:
        print_table(
            "One replica alone: idle watchers, memory each, and one push + webhook to all",
            [
                "watchers",
                "workers",
                "harness",
                "per watcher KiB",
                "target KiB",
                "p50 ms",
                "p99 ms",
                "max ms",
                "target p99 ms",
            ],
            [
                [
                    single["watchers"],
                    single["workers"],
                    single["harness"],
                    single["per_watcher_kib"],
                    TARGET_SINGLE_KIB,
                    single["p50_ms"],
                    single["p99_ms"],
                    single["max_ms"],
                    TARGET_SINGLE_P99_MS,
                ]
            ],
        )
    result = {
        "rows": rows,
        "failover": moved,
        "single": single,
        "interval_s": args.interval,
        "workers": args.workers,
    }
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
