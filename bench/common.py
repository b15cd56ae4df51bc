"""What every benchmark shares: tools, git, a config-server process, RSS, percentiles, tables, JSON."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "bench" / "results"
CONFIG_SERVER = Path(sys.executable).with_name("config-server")
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
}
#: Debian package of each tool a benchmark may need.
PACKAGES = {"wrk": "wrk", "nginx": "nginx", "etcd": "etcd-server", "redis-server": "redis-server"}
_apt_updated = False


def ensure_tools(*tools: str) -> dict[str, str]:
    """Paths of the tools, installing their Debian packages (as root) when missing."""
    global _apt_updated
    missing = [t for t in tools if not _which(t)]
    if missing:
        if os.geteuid() != 0:
            raise RuntimeError(f"missing {missing}: install {[PACKAGES[t] for t in missing]} or run as root")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if not _apt_updated:
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
            _apt_updated = True
        packages = [PACKAGES[t] for t in missing]
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, capture_output=True
        )
    return {t: _which(t) or "" for t in tools}


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (str(p) for p in (Path("/usr/sbin") / tool, Path("/usr/bin") / tool) if p.exists()), None
    )


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    """Run git in `repo`, return its output."""
    return subprocess.run(
        ["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, input=stdin
    ).stdout.decode()


def timed_commit(repo: Path, name: str, line: str, message: str) -> tuple[float, str]:
    """Put `line` at the top of the file `name`, commit it; (perf_counter just before `git commit`,
    the new commit id): where a commit-to-answer clock starts."""
    target = repo / name
    target.write_text(line + "\n" + target.read_text())
    git(repo, "add", "-A")
    started = time.perf_counter()
    git(repo, "commit", "-qm", message)
    return started, git(repo, "rev-parse", "HEAD").strip()


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    """Poll until `condition()` is truthy; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met in {timeout} s")
        time.sleep(0.01)


def http_ok(url: str) -> bool:
    """True when `url` answers 2xx (a fresh connection, closed at once)."""
    try:
        return requests.get(url, timeout=2, headers={"Connection": "close"}).ok
    except requests.RequestException:
        return False


def sample_repository(target: Path) -> Path:
    """A git repository holding a copy of sample-config-repo/, on branch main."""
    shutil.copytree(PROJECT / "sample-config-repo", target)
    git(target, "init", "-q", "--initial-branch=main")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "sample")
    return target


class ConfigServer:
    """`config-server serve` (gunicorn, gevent) in a subprocess, stopped on exit."""

    def __init__(self, repo: Path, data_dir: Path, workers: int = 2, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [
                str(CONFIG_SERVER),
                "serve",
                "--repo",
                str(repo),
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--data-dir",
                str(data_dir),
                "--log-level",
                "warning",
                # every simulated watcher comes from 127.0.0.1: no per-address cap on parked polls
                "--polls-per-address",
                "0",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, path: str = "/health", timeout: float = 60) -> float:
        """Seconds from start until `path` answered 2xx."""
        wait_until(lambda: self.process.poll() is None and http_ok(self.url + path), timeout, "server ready")
        return time.perf_counter() - self.started

    def rss_kib(self) -> int:
        """Resident memory of the master and all its workers, KiB."""
        return process_tree_rss_kib(self.process.pid)

    def stop(self) -> None:
        """Terminate gracefully, kill if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ConfigServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def process_tree_rss_kib(pid: int) -> int:
    """VmRSS of `pid` and its descendants, KiB."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, StopIteration):
            continue
        pending.extend(int(c) for c in children)
    return total


def process_tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` and its descendants so far, seconds."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, IndexError, ValueError):
            continue
        pending.extend(int(c) for c in children)
    return total / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value at `fraction` (0..1) of the sorted values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered))) - 1))]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99, max and mean of durations given in seconds, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown table on standard output."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    sys.stdout.flush()


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write the result, with the machine it ran on."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine(), **data}
    path.write_text(json.dumps(data, indent=2))


def machine() -> dict[str, Any]:
    """CPU count, memory and Python of this machine."""
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kib = int(next(line.split()[1] for line in meminfo if line.startswith("MemTotal:")))
    return {
        "nproc": os.cpu_count(),
        "mem_gib": round(total_kib / 1024 / 1024, 1),
        "python": sys.version.split()[0],
    }
