"""Expansion bombs: time and peak RSS of one rendered GET of a placeholder bomb and a list-index bomb.

Each request runs in a fresh child process (create_app + Flask's test client), with an address
space limit and a wall-clock timeout so that an unbounded server cannot take the machine down.
Prints the status, the wall time and the child's peak RSS per case.

    .venv/bin/python bench/expansion_bomb.py                    # 2 GiB limit, 20 s timeout
    .venv/bin/python bench/expansion_bomb.py --limit-mib 4096 --timeout 60
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import PROJECT, RESULTS, git, print_table, write_json

#: 13 lines; each value is its predecessor four times: a12 would be 4**12 * 10 characters (160 MiB),
#: and resolving it pass by pass builds far more than that.
PLACEHOLDER_BOMB = "a0: xxxxxxxxxx\n" + "".join(
    f"a{i}: ${{a{i - 1}}}${{a{i - 1}}}${{a{i - 1}}}${{a{i - 1}}}\n" for i in range(1, 13)
)
INDEX_BOMB = "servers[2000000000]=x\n"

CASES = {
    "placeholder bomb (bomb-default.yml)": ("bomb.yml", PLACEHOLDER_BOMB, "/bomb-default.yml"),
    "list index bomb (servers-default.json)": ("servers.properties", INDEX_BOMB, "/servers-default.json"),
}

_CHILD = """
import sys, time
from config_server import create_app
from config_server.settings import Settings
app = create_app(Settings(repo=sys.argv[1], data_dir=sys.argv[2], watch=False))
client = app.test_client()
started = time.perf_counter()
response = client.get(sys.argv[3])
body = response.get_json(silent=True) or {}
elapsed = time.perf_counter() - started
message = body.get("message", "") if isinstance(body, dict) else ""
print(f"{elapsed * 1000:.0f}", response.status_code, message.rsplit("/", 1)[-1][:70])
app.extensions["config_server"].close()
"""


def run_case(
    repo: Path, data: Path, path: str, limit_mib: int, timeout: float
) -> tuple[str, str, float, int]:
    """(status or failure, request ms, seconds, peak RSS in MiB) of one GET in a limited child."""

    def limit() -> None:
        size = limit_mib * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(repo), str(data), path],
            cwd=PROJECT,
            stdout=out,
            stderr=err,
            preexec_fn=limit,
        )
        killed = False
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout:
                child.kill()
                killed = True
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.01)
        child.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen quiet
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        request_ms = "-"
        if killed:
            outcome = f"killed after {timeout:g} s"
        elif child.returncode == 0:
            request_ms, outcome = out.read().strip().split(" ", 1)
        else:
            last = (err.read().strip().splitlines() or ["?"])[-1]
            outcome = f"died: {last[:60]}"
    return outcome, request_ms, elapsed, usage.ru_maxrss // 1024


def main(argv: list[str] | None = None) -> dict:
    """Run each case once, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-mib", type=int, default=2048, help="address space limit of the child")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds before the child is killed")
    parser.add_argument("--json", default=str(RESULTS / "expansion_bomb.json"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (filename, content, path) in CASES.items():
            repo = Path(tmp) / filename.replace(".", "-")
            repo.mkdir()
            git(repo, "init", "--quiet", "--initial-branch=main")
            (repo / filename).write_text(content)
            git(repo, "add", "--all")
            git(repo, "commit", "--quiet", "-m", "bomb")
            outcome, request_ms, seconds, rss = run_case(
                repo, Path(tmp) / "data", path, args.limit_mib, args.timeout
            )
            rows.append((name, outcome, request_ms, f"{seconds:.2f}", rss))
    print_table(
        "One rendered GET of committed expansion bombs (fresh process each; wall time includes start-up)",
        ("case", "answer", "request ms", "process seconds", "peak RSS MiB"),
        rows,
    )
    headers = ("case", "answer", "request_ms", "process_s", "peak_rss_mib")
    result = {"rows": [dict(zip(headers, row, strict=True)) for row in rows]}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
