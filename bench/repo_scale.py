"""Repository scale: 5,000 applications and 10,000 commits.

Generates the repository with `git fast-import` (one commit adding `application.yml` and one
`app-NNNN.yml` per application, then commits that each change one application), then measures:
time from starting config-server to its first answer; the latency of the first request for an
application at a new commit (a cache miss: tree, files and YAML read from git); warm latency
percentiles over sequential keep-alive requests; and the server's memory. Prints a table and
writes JSON.

    .venv/bin/python bench/repo_scale.py                      # 5,000 apps, 10,000 commits
    .venv/bin/python bench/repo_scale.py --apps 500 --commits 1000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import requests

from bench.common import (
    RESULTS,
    ConfigServer,
    git,
    percentile,
    print_table,
    raise_fd_limit,
    summary_ms,
    write_json,
)

TARGETS = {"ready_s": 5.0, "first_request_ms": 50.0, "warm_p99_ms": 5.0}


def app_yaml(index: int, revision: int) -> bytes:
    """A realistic small service file."""
    return (
        f"service:\n  name: app-{index:04d}\n  revision: {revision}\n  replicas: {index % 7 + 1}\n"
        f"db:\n  url: jdbc:postgresql://db-{index % 50}.internal/app{index}\n"
        f"  pool:\n    max: {10 + index % 40}\n"
        f"features: [a{index % 3}, b{index % 5}]\n"
    ).encode()


def generate(repo: Path, apps: int, commits: int) -> None:
    """Build the repository with one fast-import stream."""
    git(repo.parent, "init", "-q", "--initial-branch=main", str(repo))
    out: list[bytes] = []

    def data(content: bytes) -> None:
        out.append(b"data %d\n" % len(content) + content + b"\n")

    stamp = 1_700_000_000
    out.append(b"commit refs/heads/main\ncommitter bench <bench@localhost> %d +0000\n" % stamp)
    data(b"initial")
    shared = b"logging:\n  level: INFO\nmanagement:\n  port: 9090\nregion: eu-west-1\n"
    out.append(b"M 100644 inline application.yml\n")
    data(shared)
    for i in range(apps):
        out.append(b"M 100644 inline app-%04d.yml\n" % i)
        data(app_yaml(i, 0))
    rng = random.Random(7)
    for n in range(1, commits):
        i = rng.randrange(apps)
        out.append(b"commit refs/heads/main\ncommitter bench <bench@localhost> %d +0000\n" % (stamp + n))
        data(b"change app-%04d" % i)
        out.append(b"M 100644 inline app-%04d.yml\n" % i)
        data(app_yaml(i, n))
    git(repo, "fast-import", "--quiet", stdin=b"".join(out))
    git(repo, "reset", "-q", "--hard", "main")


def measure(apps: int, commits: int, new_commits: int, warm_requests: int, workers: int) -> dict:
    """Generate, start, and measure."""
    raise_fd_limit()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        started = time.perf_counter()
        generate(repo, apps, commits)
        generated_s = time.perf_counter() - started
        count = int(git(repo, "rev-list", "--count", "main").strip())
        probe = f"/app-{apps // 2:04d}/default"
        with ConfigServer(repo, Path(tmp) / "data", workers) as server:
            ready_s = server.wait_ready(probe, timeout=120)
            session = requests.Session()
            first: list[float] = []
            rng = random.Random(11)
            for n in range(new_commits):
                i = rng.randrange(apps)
                (repo / f"app-{i:04d}.yml").write_bytes(app_yaml(i, commits + n))
                git(repo, "commit", "-qam", f"new commit {n}")
                head = git(repo, "rev-parse", "HEAD").strip()
                t0 = time.perf_counter()
                answer = session.get(f"{server.url}/app-{i:04d}/default", timeout=30)
                first.append(time.perf_counter() - t0)
                if answer.json()["version"] != head:
                    raise RuntimeError("the first request after a commit did not see it")
            warm: list[float] = []
            url = f"{server.url}/app-{apps // 3:04d}/prod"
            session.get(url, timeout=30)
            for _ in range(warm_requests):
                t0 = time.perf_counter()
                session.get(url, timeout=30).raise_for_status()
                warm.append(time.perf_counter() - t0)
            rss_kib = server.rss_kib()
    first_ms = summary_ms(first)
    warm_ms = summary_ms(warm)
    return {
        "applications": apps,
        "commits": count,
        "generate_s": round(generated_s, 1),
        "ready_s": round(ready_s, 2),
        "first_request_ms": first_ms,
        "first_request_p90_ms": round(percentile([x * 1000 for x in first], 0.9), 2),
        "warm_ms": warm_ms,
        "warm_requests": warm_requests,
        "rss_mib": round(rss_kib / 1024, 1),
        "workers": workers,
        "targets": TARGETS,
    }


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, measure, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=5000)
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--new-commits", type=int, default=20, help="commits whose first request is timed")
    parser.add_argument("--warm-requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=str(RESULTS / "repo_scale.json"))
    args = parser.parse_args(argv)
    r = measure(args.apps, args.commits, args.new_commits, args.warm_requests, args.workers)
    print_table(
        f"Repository scale: {r['applications']} applications, {r['commits']} commits",
        ["measure", "value", "target"],
        [
            ["start to first answer (s)", r["ready_s"], TARGETS["ready_s"]],
            [
                "first request at a new commit, p50 / max (ms)",
                f"{r['first_request_ms']['p50_ms']} / {r['first_request_ms']['max_ms']}",
                TARGETS["first_request_ms"],
            ],
            [
                "warm request p50 / p99 (ms)",
                f"{r['warm_ms']['p50_ms']} / {r['warm_ms']['p99_ms']}",
                TARGETS["warm_p99_ms"],
            ],
            ["server RSS, master + workers (MiB)", r["rss_mib"], ""],
            ["repository generation (s, not a target)", r["generate_s"], ""],
        ],
    )
    write_json(args.json, r)
    return r


if __name__ == "__main__":
    main()
