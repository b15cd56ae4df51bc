"""Client: the cost of `ConfigClient.get()` and of applying a new version with 1,000 changed keys.

`get()` is timed with `timeit` on a client holding a 1,000-key snapshot (hit, miss with default,
nested key, `client[key]`). Applying a version is timed through the same path the watcher uses
(build the immutable snapshot, diff it, swap it in, call the listeners), with and without the
last-known-good copy written to disk. No server is needed: the versions are built in memory.
Prints a table and writes JSON.

    .venv/bin/python bench/client_reads.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import timeit

from bench.common import RESULTS, print_table, write_json
from config_client import ConfigClient
from config_client.transport import FetchResult

TARGET_GET_NS = 1000.0


def environment(keys: int, revision: int) -> dict:
    """An Environment JSON with `keys` keys in the application's own source."""
    own = {f"service.setting{i:04d}.value": f"v{revision}-{i}" for i in range(keys)}
    own["db.pool.max"] = 10 + revision
    return {
        "name": "orders",
        "profiles": ["prod"],
        "label": None,
        "version": f"{revision:040x}",
        "state": None,
        "propertySources": [
            {"name": "orders-prod.yml", "source": own},
            {"name": "application.yml", "source": {"logging.level": "INFO", "region": "eu-west-1"}},
        ],
    }


def time_get(client: ConfigClient, number: int, keys: int) -> dict[str, float]:
    """Nanoseconds per call, best of five repeats, for the common read shapes."""
    middle = f"service.setting{keys // 2:04d}.value"
    cases = {
        "get(hit)": lambda: client.get("db.pool.max"),
        "get(miss, default)": lambda: client.get("no.such.key", 5),
        "client[key]": lambda: client[middle],
    }
    return {
        name: round(min(timeit.repeat(case, number=number, repeat=5)) / number * 1e9, 1)
        for name, case in cases.items()
    }


def time_apply(keys: int, rounds: int, cache_dir: str | None) -> dict[str, float]:
    """Milliseconds to apply a version in which every one of `keys` keys changed."""
    client = ConfigClient("http://127.0.0.1:9", "orders", "prod", watch=False, cache_dir=cache_dir)
    seen: list[int] = []
    client.on_change(lambda change: seen.append(len(change.changed)))
    client._apply(FetchResult(200, environment(keys, 0), "etag-0"), notify=False)
    durations = []
    for revision in range(1, rounds + 1):
        result = FetchResult(200, environment(keys, revision), f"etag-{revision}")
        started = time.perf_counter()
        client._apply(result)
        durations.append(time.perf_counter() - started)
    if seen[-1] < keys:
        raise RuntimeError("the listener did not see every changed key")
    return {
        "p50_ms": round(statistics.median(durations) * 1000, 3),
        "max_ms": round(max(durations) * 1000, 3),
    }


def measure(keys: int, number: int, rounds: int) -> dict:
    """Every client measurement."""
    client = ConfigClient("http://127.0.0.1:9", "orders", "prod", watch=False)
    client._apply(FetchResult(200, environment(keys, 0), "etag-0"), notify=False)
    gets = time_get(client, number, keys)
    in_memory = time_apply(keys, rounds, None)
    with tempfile.TemporaryDirectory() as tmp:
        with_copy = time_apply(keys, rounds, tmp)
    return {"keys": keys, "get_ns": gets, "apply_ms": in_memory, "apply_with_copy_ms": with_copy}


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, measure, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--number", type=int, default=1_000_000, help="get() calls per timing")
    parser.add_argument("--rounds", type=int, default=50, help="versions applied")
    parser.add_argument("--json", default=str(RESULTS / "client.json"))
    args = parser.parse_args(argv)
    r = measure(args.keys, args.number, args.rounds)
    rows = [[name, f"{ns} ns", f"{TARGET_GET_NS:g} ns"] for name, ns in r["get_ns"].items()]
    rows.append(
        [
            f"apply {args.keys} changed keys (p50 / max)",
            f"{r['apply_ms']['p50_ms']} / {r['apply_ms']['max_ms']} ms",
            "",
        ]
    )
    rows.append(
        [
            "same, writing the last-known-good copy",
            f"{r['apply_with_copy_ms']['p50_ms']} / {r['apply_with_copy_ms']['max_ms']} ms",
            "",
        ]
    )
    print_table(
        f"Client: reads and applying a version ({args.keys} keys)", ["operation", "cost", "target"], rows
    )
    write_json(args.json, r)
    return r


if __name__ == "__main__":
    main()
