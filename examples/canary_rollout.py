"""A canary that the orders service refuses, and the rollout halting by itself.

    .venv/bin/python examples/canary_rollout.py [WORKDIR] [--port PORT]

Self-contained (a temporary folder unless WORKDIR is given); the config server it starts listens
on 127.0.0.1:PORT (`--port`, else the `PORT` variable, else a port that is free, so it never
clashes with `make run` on 8888), and its log is WORKDIR/server.log. docs/rollouts.md walks
through it:

1. the sample repository becomes a git repository; branch `release/orders-v2` raises
   `orders.max-items` from 100 to 800 (the repository's schema allows up to 1000, so the server
   serves it: the change is valid for the repository, not for this build of the service);
2. `config-server` starts on it, and ten instances of the orders service start, each a
   `ConfigClient` whose `validate=` refuses more than 500 items (this build pages at most 500);
3. `rollouts/orders.yml` is committed on `main`: half of the instances get the canary;
4. those instances refuse it (the client reports `X-Config-Rejected`), the rollout halts at the
   first rejection, and every instance is answered `main` again at once;
5. `config-server rollout status orders` shows why.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from config_client import ConfigClient

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Release bot",
    "GIT_AUTHOR_EMAIL": "release@example.com",
    "GIT_COMMITTER_NAME": "Release bot",
    "GIT_COMMITTER_EMAIL": "release@example.com",
}
ROLLOUT = """\
# Roll release/orders-v2 out to half of the orders instances, then to all of them.
canary: release/orders-v2
steps: [50, 100]
bake: 10m
halt-on:
  rejected: 1
"""
#: This build of the service pages at most this many items at once.
MAX_PAGE = 500


def refuse_large_pages(settings) -> None:
    """The service's own check (`validate=`): raising refuses the version, nothing changes."""
    wanted = settings.get("orders.max-items")
    if wanted is None or wanted > MAX_PAGE:
        raise ValueError(f"orders.max-items={wanted}: this build pages at most {MAX_PAGE} items")


def git(repo: Path, *args: str) -> str:
    """Run git in the repository (as the release bot) and return its output."""
    return subprocess.run(
        ["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repository(repo: Path) -> None:
    """The sample repository in git, with the canary branch."""
    shutil.copytree(ROOT / "sample-config-repo", repo)
    git(repo, "init", "-q", "--initial-branch=main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the sample configuration")
    git(repo, "checkout", "-q", "-b", "release/orders-v2")
    orders = repo / "orders.yml"
    orders.write_text(orders.read_text().replace("max-items: 100", "max-items: 800", 1))
    git(repo, "commit", "-q", "-am", "orders v2: pages of 800 items")
    git(repo, "checkout", "-q", "main")


def wait_until(condition, timeout: float, what: str):
    """Poll `condition` until it is truthy (its value is returned) or give up after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except requests.RequestException:
            result = None
        if result:
            return result
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def free_port() -> int:
    """A port that is free now on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(workdir: Path, port: int | None = None) -> int:
    """The whole story in `workdir`, the server on `port` (None: a free one); 0 when the rollout
    halted and every instance is back on main."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    repo = workdir / "repo"
    make_repository(repo)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "server.log").open("w")
    server = subprocess.Popen(
        [
            str(BIN / "config-server"),
            "serve",
            "--repo",
            str(repo),
            "--port",
            str(port),
            "--data-dir",
            str(workdir / "data"),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=log,
    )
    clients: list[ConfigClient] = []
    try:
        wait_until(lambda: requests.get(f"{url}/health", timeout=1).ok, 30, "the server")
        main_version = git(repo, "rev-parse", "main")
        for n in range(10):
            client = ConfigClient(
                url, "orders", client_id=f"orders-{n}", validate=refuse_large_pages, wait=20
            )
            client.start()
            clients.append(client)
        print(
            f"10 instances run main ({main_version[:12]}), "
            f"orders.max-items = {clients[0].get('orders.max-items')}"
        )

        (repo / "rollouts").mkdir()
        (repo / "rollouts" / "orders.yml").write_text(ROLLOUT)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "roll out release/orders-v2")
        print("committed rollouts/orders.yml: release/orders-v2 to 50% of the instances")

        def halted():
            status = requests.get(f"{url}/rollouts", params={"application": "orders"}, timeout=5).json()
            rollouts = status["rollouts"]
            return rollouts[0] if rollouts and rollouts[0]["state"] == "halted" else None

        rollout = wait_until(halted, 30, "the rollout to halt")
        print(f"the rollout halted by itself: {rollout['haltReason']}")
        canary = git(repo, "rev-parse", "release/orders-v2")
        wait_until(lambda: not any(c.rejected for c in clients), 10, "every instance to be answered main")
        versions = sorted({c.version[:12] for c in clients})
        print(
            f"no instance ever applied {canary[:12]}; all run main ({', '.join(versions)}), "
            f"orders.max-items = {sorted({c.get('orders.max-items') for c in clients})}"
        )
        status = subprocess.run(
            [str(BIN / "config-server"), "rollout", "status", "orders", "--server", url],
            capture_output=True,
            text=True,
            check=True,
        )
        print("\n$ config-server rollout status orders\n" + status.stdout, end="")
        return 0
    finally:
        for client in clients:
            client.stop()
        server.terminate()
        server.wait(timeout=15)
        log.close()


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """WORKDIR (optional) and --port (default: the PORT variable, else a free port)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir", nargs="?", type=Path, help="folder to work in (default: a temporary one)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ["PORT"]) if os.environ.get("PORT") else None,
        help="port of the config server it starts (default: the PORT variable, else a free port)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = arguments()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        sys.exit(main(args.workdir, args.port))
    with tempfile.TemporaryDirectory(prefix="canary-rollout-") as tmp:
        sys.exit(main(Path(tmp), args.port))
