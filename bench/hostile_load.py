"""Hostile load: N legitimate watchers and `/health` probes, without and with the attacks of issue 24.

Two phases, each on a fresh server (gunicorn, gevent, 2 workers, default caps and timeouts):
"no attack", then "under attack". In each, N legitimate watchers (127.0.0.2) keep long-polling
`/orders/default` on keep-alive connections, a commit to `orders.yml` comes every `--interval`
seconds, and the clock runs per watcher from just before `git commit` to the moment it has read the
Environment of that commit (or a later one). A prober (127.0.0.3) asks `GET /health` on a fresh
connection every 0.25 s; a probe counts as answered when the whole answer came within 1 s.

The attacks run together in a process of their own, each reopening its sockets when the server
closed or reset them:
- item 1: pipelined `HEAD /health` from sockets with a tiny receive buffer that never read;
- item 2: `POST /monitor` declaring 100 bytes and sending 10; clients that never read a large
  (~1.5 MB) environment;
- item 4: many long polls on `/payments/default` parked from one address (127.0.0.1) that never
  read, beyond the per-address cap;
- item 5: long polls on many spellings `/payments/prod,p{i}` (127.0.0.4), same content.
Attacks 4 and 5 watch an application the commits do not change, so they stay parked.

    .venv/bin/python -m bench.hostile_load                          # 200 watchers, 10 commits
    .venv/bin/python -m bench.hostile_load --watchers 50 --rounds 3 --parked 100 --spellings 100
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    RESULTS,
    ConfigServer,
    git,
    print_table,
    raise_fd_limit,
    sample_repository,
    summary_ms,
    timed_commit,
    write_json,
)
from bench.watchers import keep_watching, read_answer
from bench.watchers import run as watchers_run

LEGITIMATE, PROBER, PARKER, SPELLER, OTHER = "127.0.0.2", "127.0.0.3", "127.0.0.1", "127.0.0.4", "127.0.0.5"
PROBE_EVERY, PROBE_WITHIN = 0.25, 1.0
TCP_ESTABLISHED = 1


@dataclass
class Attacks:
    """How many sockets each attack keeps open (0: that attack is off)."""

    pipeliners: int = 20
    slow_bodies: int = 50
    non_readers: int = 20
    parked: int = 1200
    spellings: int = 1000

    def describe(self) -> str:
        """A short summary for the table."""
        return (
            f"{self.pipeliners} HEAD pipeliners, {self.slow_bodies} slow bodies,"
            f" {self.non_readers} non-readers of 1.5 MB, {self.parked} parked polls (one address),"
            f" {self.spellings} spellings"
        )


@dataclass
class Phase:
    """What one phase measured."""

    latencies: list[float] = field(default_factory=list)
    missed: int = 0
    probes: list[float | None] = field(default_factory=list)
    attack_stats: dict[str, int] = field(default_factory=dict)


def big_environment(repo: Path, keys: int = 20_000) -> None:
    """`big.yml`: about 1.5 MB of settings, for the clients that never read it."""
    lines = [f"key-{i:05d}: {'x' * 60}" for i in range(keys)]
    (repo / "big.yml").write_text("big:\n" + "\n".join("  " + line for line in lines) + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "big environment")


# --- the attacker (a process of its own) ---------------------------------------------------------


def _open(port: int, source: str, payload: bytes, tiny_buffer: bool) -> socket.socket | None:
    sock = socket.socket()
    try:
        if tiny_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        sock.bind((source, 0))
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        try:
            sock.send(payload)  # what the kernel takes; a never-reading client sends no more
        except BlockingIOError:
            pass
        return sock
    except OSError:
        sock.close()
        return None


def _alive(sock: socket.socket) -> bool:
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == TCP_ESTABLISHED
    except OSError:
        return False


def attack(
    port: int,
    attacks: Attacks,
    spelling_etags: list[str],
    payments_etag: str,
    stop: Any,
    ready: Any,
    out: Any,
) -> None:
    """Keep every attack's sockets open until `stop` is set; put how many were (re)opened in `out`."""
    raise_fd_limit()
    head = b"HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 5000
    kinds: list[tuple[str, str, bytes, bool]] = []
    kinds += [("pipeliner", OTHER, head, True)] * attacks.pipeliners
    slow = b"POST /monitor HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
    slow += b"Content-Length: 100\r\n\r\n0123456789"  # 10 of the 100 bytes declared
    kinds += [("slow body", OTHER, slow, False)] * attacks.slow_bodies
    kinds += [
        ("non-reader", OTHER, b"GET /big/default HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", True)
    ] * attacks.non_readers
    poll = "GET /payments/default?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    poll += f'If-None-Match: "{payments_etag}"\r\n\r\n'
    kinds += [("parked", PARKER, poll.encode(), True)] * attacks.parked
    for i, etag in enumerate(spelling_etags[: attacks.spellings]):
        spelled = (
            f'GET /payments/prod,p{i}?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: "{etag}"\r\n\r\n'
        )
        kinds.append(("spelling", SPELLER, spelled.encode(), True))
    sockets: list[socket.socket | None] = [None] * len(kinds)
    opened = {kind: 0 for kind, *_ in kinds}
    first = True
    while not stop.is_set():
        for index, (kind, source, payload, tiny) in enumerate(kinds):
            current = sockets[index]
            if current is not None and _alive(current):
                continue
            if current is not None:
                current.close()
            sockets[index] = _open(port, source, payload, tiny)
            opened[kind] += sockets[index] is not None
        if first:
            ready.set()
            first = False
        stop.wait(0.5)
    for sock in sockets:
        if sock is not None:
            sock.close()
    out.put(opened)


# --- the legitimate side (asyncio) ----------------------------------------------------------------


async def _probe(port: int) -> float | None:
    """Seconds for one whole `GET /health` on a fresh connection; None beyond PROBE_WITHIN."""
    started = time.perf_counter()

    async def once() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(PROBER, 0))
        try:
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            await read_answer(reader)
        finally:
            writer.close()

    try:
        await asyncio.wait_for(once(), PROBE_WITHIN)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
        return None
    return time.perf_counter() - started


async def _prober(port: int, probes: list[float | None], stop: asyncio.Event) -> None:
    while not stop.is_set():
        probes.append(await _probe(port))
        await asyncio.sleep(PROBE_EVERY)


async def _measure(port: int, repo: Path, watchers: int, rounds: int, interval: float, phase: Phase) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    seen: list[list[tuple[float, str]]] = [[] for _ in range(watchers)]
    tasks = [
        asyncio.create_task(keep_watching(port, "/orders/default", LEGITIMATE, seen[i], stop, wait=30))
        for i in range(watchers)
    ]
    tasks.append(asyncio.create_task(_prober(port, phase.probes, stop)))
    deadline = time.monotonic() + 60
    while not all(seen_by for seen_by in seen):  # every watcher has its first answer
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {sum(map(bool, seen))} of {watchers} watchers started")
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)  # let them park
    commits: list[tuple[float, str]] = []
    for round_no in range(rounds):
        line = f"hostile-round-{time.time_ns()}-{round_no}: 1"
        commits.append(
            await loop.run_in_executor(None, timed_commit, repo, "orders.yml", line, "hostile round")
        )
        await asyncio.sleep(interval)
    last = commits[-1][1]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(any(v == last for _, v in answers) for answers in seen):
        await asyncio.sleep(0.05)  # stragglers, up to 10 s
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    order = {version: index for index, (_, version) in enumerate(commits)}
    for answers in seen:
        reached = -1
        for at, version in answers:
            index = order.get(version, -1)
            for round_no in range(reached + 1, index + 1):
                phase.latencies.append(at - commits[round_no][0])
            reached = max(reached, index)
        phase.missed += len(commits) - 1 - reached


def _etags(url: str, paths: list[str]) -> list[str]:
    with requests.Session() as session:
        return [session.get(url + path, timeout=10).headers["ETag"].strip('"') for path in paths]


def run_phase(
    repo: Path,
    data_dir: Path,
    workers: int,
    watchers: int,
    rounds: int,
    interval: float,
    attacks: Attacks | None,
) -> Phase:
    """One phase on a fresh server: the watchers and the prober, with the attacks when given."""
    phase = Phase()
    with ConfigServer(repo, data_dir, workers, "--polls-per-address", "500") as server:
        server.wait_ready()
        attacker = None
        if attacks is not None:
            spellings = _etags(server.url, [f"/payments/prod,p{i}" for i in range(attacks.spellings)])
            (payments,) = _etags(server.url, ["/payments/default"])
            context = multiprocessing.get_context("spawn")
            stop, ready, out = context.Event(), context.Event(), context.Queue()
            attacker = context.Process(
                target=attack, args=(server.port, attacks, spellings, payments, stop, ready, out), daemon=True
            )
            attacker.start()
            if not ready.wait(120):
                raise TimeoutError("the attacks did not open their sockets")
        try:
            watchers_run(_measure(server.port, repo, watchers, rounds, interval, phase))
        finally:
            if attacker is not None:
                stop.set()
                phase.attack_stats = out.get(timeout=30)
                attacker.join(timeout=30)
    return phase


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, run both phases, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10, help="commits per phase")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between commits")
    parser.add_argument("--workers", type=int, default=2)
    for name, default in vars(Attacks()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, help="attack sockets")
    parser.add_argument("--json", default=str(RESULTS / "hostile_load.json"))
    args = parser.parse_args(argv)
    attacks = Attacks(*(getattr(args, name) for name in vars(Attacks())))
    raise_fd_limit()
    with tempfile.TemporaryDirectory() as tmp:
        repo = sample_repository(Path(tmp) / "repo")
        big_environment(repo)
        phases = {
            "no attack": run_phase(
                repo, Path(tmp) / "d0", args.workers, args.watchers, args.rounds, args.interval, None
            ),
            "under attack": run_phase(
                repo, Path(tmp) / "d1", args.workers, args.watchers, args.rounds, args.interval, attacks
            ),
        }
    rows = []
    for name, phase in phases.items():
        answered = [p for p in phase.probes if p is not None]
        rows.append(
            {
                "phase": name,
                "watchers": args.watchers,
                "rounds": args.rounds,
                "answers": len(phase.latencies),
                "missed": phase.missed,
                **(
                    summary_ms(phase.latencies)
                    if phase.latencies
                    else {"p50_ms": 0, "p99_ms": 0, "max_ms": 0, "mean_ms": 0}
                ),
                "probes": len(phase.probes),
                "probes_within_1s": len(answered),
                "probe_max_ms": round(max(answered) * 1000, 1) if answered else None,
                "attack_sockets_opened": phase.attack_stats,
            }
        )
    baseline = rows[0]["p99_ms"] or 1.0
    ratio = round(rows[1]["p99_ms"] / baseline, 2)
    table = [
        [
            r["phase"],
            r["watchers"],
            r["rounds"],
            f"{r['answers']} ({r['missed']} missed)",
            r["p50_ms"],
            r["p99_ms"],
            r["max_ms"],
            round(r["p99_ms"] / baseline, 2),
            f"{r['probes_within_1s']}/{r['probes']}",
            r["probe_max_ms"],
        ]
        for r in rows
    ]
    print_table(
        f"Hostile load, {args.workers} workers; attacks: {attacks.describe()}",
        [
            "phase",
            "watchers",
            "commits",
            "answers",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p99 / no attack",
            "/health within 1 s",
            "/health max ms",
        ],
        table,
    )
    result = {
        "rows": rows,
        "attacks": vars(attacks),
        "p99_ratio": ratio,
        "health_always_within_1s": all(r["probes_within_1s"] == r["probes"] for r in rows),
        "targets": {"p99_ratio": 2.0, "health_within_s": PROBE_WITHIN},
    }
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
