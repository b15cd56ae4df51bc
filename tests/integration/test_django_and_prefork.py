"""Django and pre-fork servers (issue 14), with real gunicorn workers and real commits.

- A minimal real Django project (written to a temporary folder) served by gunicorn with two
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

DJANGO_FILES = {
    "proj/__init__.py": "",
    "proj/settings.py": """
        import os
        SECRET_KEY = "test-only"
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1"]
        INSTALLED_APPS = ["config_client.django", "shop"]
        MIDDLEWARE = []
        ROOT_URLCONF = "proj.urls"
        DATABASES = {}
        USE_TZ = True
        CONFIG_SERVER = {"url": os.environ["CONFIG_URL"], "app": "orders", "profiles": "default",
                         "wait": 5}
        """,
    "proj/urls.py": """
        from django.urls import path
        from shop.views import index
        urlpatterns = [path("", index)]
        """,
    "proj/wsgi.py": """
        import os
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
        from django.core.wsgi import get_wsgi_application
        application = get_wsgi_application()
        """,
    "shop/__init__.py": "",
    "shop/apps.py": """
        from django.apps import AppConfig

        class ShopConfig(AppConfig):
            name = "shop"

            def ready(self):
                from config_client.django import config_changed
                from shop import views
                config_changed.connect(views.record_change)
        """,
    "shop/views.py": """
        import os
        from django.http import JsonResponse
        import config_client.django as config

        changes = []

        def record_change(sender, change, **kwargs):
            changes.append(change.new_version)

        def index(request):
            settings = config.snapshot()  # one version for this request
            return JsonResponse({"pid": os.getpid(), "version": settings.version,
                                 "limit": settings.get("orders.limit"),
                                 "limit_via_get": config.get("orders.limit"), "signalled": changes})
        """,
}


def write_files(base: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        target = base / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(content))


class Gunicorn:
    """gunicorn in a subprocess; stopped (and its log returned) by `stop()`."""

    def __init__(self, cwd: Path, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = cwd / f"gunicorn-{self.port}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [GUNICORN, "--bind", f"127.0.0.1:{self.port}", "--workers", "2", *args],
                cwd=cwd,
                env={**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{ROOT}", **env},
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

    def start(args: list[str], env: dict[str, str]) -> Gunicorn:
        server = Gunicorn(tmp_path, args, env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("preload", [False, True], ids=["per-worker-import", "preload"])
def test_django_project_reads_changing_values_and_gets_signals(repo, serve, tmp_path, gunicorn, preload):
    repo.commit({"orders.yml": "orders:\n  limit: 1\n"})
    config = serve(repo.path)
    write_files(tmp_path, DJANGO_FILES)
    args = ["proj.wsgi:application"] + (["--preload"] if preload else [])
    server = gunicorn(args, {"CONFIG_URL": config.url})
    wait_for(lambda: server.get()["limit"] == 1, timeout=30, what="Django to answer")
    sha = repo.commit({"orders.yml": "orders:\n  limit: 2\n"})

    def all_new() -> bool:
        answers = [server.get() for _ in range(8)]
        return all(a["version"] == sha and a["limit"] == a["limit_via_get"] == 2 for a in answers)

    wait_for(all_new, timeout=20, what="every worker to apply the commit")
    answers = [server.get() for _ in range(8)]
    assert all(sha in a["signalled"] for a in answers)
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
