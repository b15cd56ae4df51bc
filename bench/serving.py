"""Serving: warm `GET /orders/prod` under wrk, beside nginx (the physical limit) and bare Flask.

Four servers answer the identical bytes on this machine: nginx serving them as a static file,
a bare Flask app under the same gunicorn worker class and settings as ours (the framework's
ceiling), config-server open, config-server as `docs/security.md` asks for production (an
auth file, the request carrying a client's token, and an audit log on disk), and config-server
open with instance recording off (what recording costs). wrk (Debian's) drives each with the
same threads and connections after a warm-up. Prints requests per second, p50/p99 latency, the
ratios, and the server's CPU time per request (its processes' user + system time over the run,
divided by the requests answered: unlike req/s, barely moved by other load on a shared
machine); writes JSON.

    .venv/bin/python bench/serving.py                      # 64 connections, 10 s each
    .venv/bin/python bench/serving.py --duration 30 --connections 64
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from bench.common import (
    PROJECT,
    RESULTS,
    ConfigServer,
    ensure_tools,
    free_port,
    http_ok,
    print_table,
    process_tree_cpu_seconds,
    raise_fd_limit,
    sample_repository,
    wait_until,
    write_json,
)
from config_server.http.auth import hash_token

PATH = "/orders/prod"
SECURED = "config-server (auth file + audit log)"
UNRECORDED = "config-server (no recording)"
#: The benchmark's client token (a fixed made-up value; only its hash goes in the auth file).
TOKEN = "bench-token-" + "0" * 32
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(
    wrk: str, url: str, connections: int, duration: float, threads: int, headers: tuple[str, ...] = ()
) -> dict[str, float]:
    """Requests per second, requests answered and p50/p99 latency (ms) from one wrk run."""
    header_args = [arg for header in headers for arg in ("-H", header)]
    out = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            *header_args,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def latency(label: str) -> float:
        value, unit = re.search(rf"\s{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        return round(float(value) * _UNITS[unit], 3)

    return {
        "rps": round(rps),
        "requests": requests_done,
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
        "errors": int(errors.group(1)) if errors else 0,
    }


class Nginx:
    """nginx serving one file at PATH, with as many workers as config-server has."""

    def __init__(self, binary: str, root: Path, body: Path, workers: int) -> None:
        self.port = free_port()
        conf = root / "nginx.conf"
        conf.write_text(
            f"""
worker_processes {workers};
daemon off;
user root;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{self.port};
        location = {PATH} {{ default_type application/json; alias {body}; }}
    }}
}}
"""
        )
        (root / "tmp").mkdir(exist_ok=True)
        self.process = subprocess.Popen([binary, "-c", str(conf), "-p", str(root)], stderr=subprocess.DEVNULL)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{self.port}{PATH}"), 30, "nginx ready")

    def stop(self) -> None:
        """Stop nginx."""
        self.process.terminate()
        self.process.wait(timeout=20)


class BareFlask:
    """bench/bare_flask.py under gunicorn with config-server's worker class and settings."""

    def __init__(self, body: Path, etag: str, workers: int) -> None:
        self.port = free_port()
        env = {**os.environ, "BARE_FLASK_BODY": str(body), "BARE_FLASK_ETAG": etag}
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "--worker-class",
                "config_server.runtime.gevent_worker.GeventWorker",
                "--workers",
                str(workers),
                "--worker-connections",
                "12000",
                "--keep-alive",
                "15",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
                "bench.bare_flask:app",
            ],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: http_ok(f"http://127.0.0.1:{self.port}{PATH}"), 30, "bare Flask ready")

    def stop(self) -> None:
        """Stop gunicorn."""
        self.process.terminate()
        self.process.wait(timeout=20)


def measure(connections: int, duration: float, workers: int, threads: int, repeat: int) -> list[dict]:
    """Run wrk against nginx, bare Flask and config-server; one row each (the median run)."""
    raise_fd_limit()
    tools = ensure_tools("wrk", "nginx")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = sample_repository(root / "repo")
        auth_file = root / "auth.yml"
        auth_file.write_text(f"clients:\n  - name: bench\n    tokens: [{hash_token(TOKEN)}]\n")
        secured_args = ("--auth-file", str(auth_file), "--audit-log", str(root / "audit.log"))
        with (
            ConfigServer(repo, root / "data", workers) as server,
            ConfigServer(repo, root / "data-secured", workers, *secured_args) as secured,
            ConfigServer(repo, root / "data-off", workers, "--record-instances", "false") as unrecorded,
        ):
            server.wait_ready()
            secured.wait_ready()
            unrecorded.wait_ready()
            answer = requests.get(server.url + PATH, timeout=10)
            body = root / "body.json"
            body.write_bytes(answer.content)
            nginx = Nginx(tools["nginx"], root, body, workers)
            bare = BareFlask(body, answer.headers["ETag"], workers)
            token = (f"Authorization: Bearer {TOKEN}",)
            targets = (
                ("nginx (static file)", f"http://127.0.0.1:{nginx.port}{PATH}", (), nginx.process.pid),
                ("bare Flask (same gunicorn)", f"http://127.0.0.1:{bare.port}{PATH}", (), bare.process.pid),
                ("config-server", server.url + PATH, (), server.process.pid),
                (SECURED, secured.url + PATH, token, secured.process.pid),
                (UNRECORDED, unrecorded.url + PATH, (), unrecorded.process.pid),
            )
            try:
                for _, url, headers, _ in targets:  # warm-up
                    run_wrk(tools["wrk"], url, connections, max(1.0, duration / 5), threads, headers)
                runs: dict[str, list[dict]] = {name: [] for name, *_ in targets}
                cpu = dict.fromkeys(runs, 0.0)
                for _ in range(repeat):  # interleaved, so a noisy moment hits every server alike
                    for name, url, headers, pid in targets:
                        before = process_tree_cpu_seconds(pid)
                        runs[name].append(run_wrk(tools["wrk"], url, connections, duration, threads, headers))
                        cpu[name] += process_tree_cpu_seconds(pid) - before
                for name, results in runs.items():
                    median = sorted(results, key=lambda r: r["rps"])[len(results) // 2]
                    answered = sum(r["requests"] for r in results)
                    cpu_us = round(cpu[name] / answered * 1e6, 1) if answered else 0.0
                    rows.append(
                        {
                            "server": name,
                            **median,
                            "runs_rps": [r["rps"] for r in results],
                            "cpu_us_per_req": cpu_us,
                        }
                    )
            finally:
                nginx.stop()
                bare.stop()
        rows.append(
            {"server": "response bytes", "rps": len(answer.content), "p50_ms": 0, "p99_ms": 0, "errors": 0}
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, measure, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--repeat", type=int, default=3, help="interleaved runs per server; the median is kept"
    )
    parser.add_argument("--json", default=str(RESULTS / "serving.json"))
    args = parser.parse_args(argv)
    rows = measure(args.connections, args.duration, args.workers, args.threads, args.repeat)
    size = rows.pop()["rps"]
    by_name = {r["server"]: r for r in rows}
    ours, nginx, bare = (
        by_name["config-server"],
        by_name["nginx (static file)"],
        by_name["bare Flask (same gunicorn)"],
    )
    table = [
        [
            r["server"],
            r["rps"],
            r["p50_ms"],
            r["p99_ms"],
            r["errors"],
            r["cpu_us_per_req"],
            round(r["rps"] / nginx["rps"], 3),
            round(r["rps"] / bare["rps"], 3),
        ]
        for r in rows
    ]
    print_table(
        f"Serving: warm GET {PATH} ({size} bytes), "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, median of {args.repeat}",
        ["server", "req/s", "p50 ms", "p99 ms", "errors", "server CPU us/req", "x nginx", "x bare Flask"],
        table,
    )
    result = {
        "connections": args.connections,
        "duration_s": args.duration,
        "workers": args.workers,
        "response_bytes": size,
        "rows": rows,
        "ratio_to_nginx": round(ours["rps"] / nginx["rps"], 3),
        "ratio_to_bare_flask": round(ours["rps"] / bare["rps"], 3),
        "secured_ratio_to_bare_flask": round(by_name[SECURED]["rps"] / bare["rps"], 3),
        "secured_p99_ms": by_name[SECURED]["p99_ms"],
        # what instance recording costs: CPU per request and req/s, recording on over off
        "recording_cpu_ratio": round(
            ours["cpu_us_per_req"] / (by_name[UNRECORDED]["cpu_us_per_req"] or 1), 3
        ),
        "recording_rps_ratio": round(ours["rps"] / by_name[UNRECORDED]["rps"], 3),
    }
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
