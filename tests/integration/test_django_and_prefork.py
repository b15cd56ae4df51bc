"""Django and pre-fork servers (issue 14), with real gunicorn workers and real commits.

- The minimal real Django project of examples/django_service served by gunicorn with two
  workers: `config_client.django` starts the client in `AppConfig.ready()`, views read values
  that change, a receiver of `config_changed` sees the commit; with `--preload` (the app loaded
  before the fork) each worker starts its own client on first use.
- A plain WSGI app whose client is started in gunicorn's `post_fork` hook: every worker follows.
- A client started before a fork: the child logs a clear warning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))

DJANGO_EXAMPLE = ROOT / "examples" / "django_service"


def write_files(base: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        target = base / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(content))


class Gunicorn:
    """gunicorn in a subprocess; stopped (and its log returned) by `stop()`."""

    def __init__(self, cwd: Path, args: list[str], env: dict[str, str], path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = cwd / f"gunicorn-{self.port}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [GUNICORN, "--bind", f"127.0.0.1:{self.port}", "--workers", "2", *args],
                cwd=cwd,
                env={**os.environ, "PYTHONPATH": f"{path or cwd}{os.pathsep}{ROOT}", **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def get(self) -> dict:
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {self.log.read_text()}")
        return requests.get(self.url, timeout=5).json()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.log.read_text()


@pytest.fixture
def gunicorn(tmp_path):
    started: list[Gunicorn] = []

    def start(args: list[str], env: dict[str, str], path: Path | None = None) -> Gunicorn:
        server = Gunicorn(tmp_path, args, env, path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("preload", [False, True], ids=["per-worker-import", "preload"])
def test_django_project_reads_changing_values_and_gets_signals(repo, serve, tmp_path, gunicorn, preload):
    repo.commit({"orders.yml": "orders:\n  max-items: 1\n  currency: EUR\n"})
    config = serve(repo.path)
    args = ["orders_site.wsgi:application"] + (["--preload"] if preload else [])
    env = {"CONFIG_CLIENT_SERVERS": config.url, "CONFIG_CACHE_DIR": str(tmp_path / "cache")}
    server = gunicorn(args, env, DJANGO_EXAMPLE)
    seen: set[int] = set()

    def both_workers_answered() -> bool:
        """Each worker starts its client on first use: one first used after the commit would
        start at the new version, with no change to signal."""
        answer = server.get()
        if answer["max_items"] == 1:
            seen.add(answer["pid"])
        return len(seen) == 2

    wait_for(both_workers_answered, timeout=30, what="both Django workers to answer")
    sha = repo.commit({"orders.yml": "orders:\n  max-items: 2\n  currency: USD\n"})

    def all_new() -> bool:
        answers = [server.get() for _ in range(8)]
        return all(a["version"] == sha and (a["max_items"], a["currency"]) == (2, "USD") for a in answers)

    wait_for(all_new, timeout=20, what="every worker to apply the commit")
    # the signal is sent right after the swap: wait for it in every worker that answers
    wait_for(lambda: all(sha in server.get()["signalled"] for _ in range(8)), what="the signal")
    log = server.stop()
    assert "started in process" not in log  # Django's accessor restarts after a fork: no warning


POST_FORK_APP = """
    import json, os
    from config_client import ConfigClient

    client = ConfigClient(os.environ["CONFIG_URL"], "orders", wait=5)  # created, not started

    def report(change=None):
        path = os.path.join(os.environ["REPORT_DIR"], str(os.getpid()))
        with open(path + ".tmp", "w") as handle:
            json.dump({"version": client.version, "limit": client.get("limit")}, handle)
        os.replace(path + ".tmp", path)

    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"pid": os.getpid(), "version": client.version}).encode()]
    """

POST_FORK_CONFIG = """
    def post_fork(server, worker):
        import svc
        svc.client.on_change(svc.report)
        svc.client.start()
        svc.report()
    """


def test_client_started_in_post_fork_hook_follows_commits_in_every_worker(repo, serve, tmp_path, gunicorn):
    repo.commit({"orders.yml": "limit: 1\n"})
    config = serve(repo.path)
    write_files(tmp_path, {"svc.py": POST_FORK_APP, "gunicorn_conf.py": POST_FORK_CONFIG})
    reports = tmp_path / "reports"
    reports.mkdir()
    env = {"CONFIG_URL": config.url, "REPORT_DIR": str(reports)}
    server = gunicorn(["--preload", "--config", "gunicorn_conf.py", "svc:application"], env)

    def versions() -> list[dict]:
        return [json.loads(p.read_text()) for p in reports.iterdir() if not p.name.endswith(".tmp")]

    wait_for(lambda: len(versions()) == 2, timeout=30, what="both workers to start their clients")
    assert all(v["limit"] == 1 for v in versions())
    sha = repo.commit({"orders.yml": "limit: 2\n"})
    wait_for(
        lambda: all(v == {"version": sha, "limit": 2} for v in versions()),
        what="both workers to apply the commit",
    )
    assert server.get()["version"] == sha
    assert "started in process" not in server.stop()


FORK_SCRIPT = """
    import logging, os, sys
    from config_client import ConfigClient
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
    client = ConfigClient(os.environ["CONFIG_URL"], "orders", wait=5).start()
    pid = os.fork()
    if pid == 0:
        client.get("limit")
        os._exit(0)
    os.waitpid(pid, 0)
    client.stop()
    """


def test_client_started_before_a_fork_warns_in_the_child(repo, serve, tmp_path):
    repo.commit({"orders.yml": "limit: 1\n"})
    config = serve(repo.path)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK_SCRIPT)],
        env={**os.environ, "CONFIG_URL": config.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "started in process" in line]
    assert len(warnings) == 1  # once per client and process, at the fork (not again on reads)
    assert "post_fork" in warnings[0] and "will never change" in warnings[0]
