"""A remote repository over `git daemon`: cloned once, refreshed in the background, never on a request."""

import pytest

from config_server import create_app
from config_server.backends.repo_spec import redact
from config_server.settings import Settings
from tests.helpers import LiveServer, wait_for


def version(http, url):
    return http.get(f"{url}/svc/default").json()["version"]


def test_remote_is_cloned_and_served(repo, git_daemon, serve, http, tmp_path):
    sha = repo.commit({"svc.yml": "a: 1\n"})
    url = git_daemon(repo)
    server = serve(url, cache_dir=str(tmp_path / "cache"), refresh_interval=0)
    env = http.get(f"{server.url}/svc/default").json()
    assert env["version"] == sha
    assert env["propertySources"][0]["name"] == f"{url}/svc.yml"
    assert list((tmp_path / "cache").glob("mirror-*.git"))


def test_no_fetch_on_the_request_path(repo, git_daemon, serve, http):
    first = repo.commit({"svc.yml": "a: 1\n"})
    url = git_daemon(repo)
    server = serve(url, refresh_interval=0)
    assert version(http, server.url) == first
    repo.commit({"svc.yml": "a: 2\n"})
    repo.git("push", "--quiet", "origin", "main")
    assert version(http, server.url) == first
    server.app.extensions["config_server"].service.backend.refresh()
    assert version(http, server.url) == repo.head()


def test_background_refresh_picks_up_pushes(repo, git_daemon, serve, http):
    repo.commit({"svc.yml": "a: 1\n"})
    url = git_daemon(repo)
    server = serve(url, refresh_interval=0.2)
    second = repo.commit({"svc.yml": "a: 2\n"})
    repo.git("tag", "v2")
    repo.git("push", "--quiet", "origin", "main", "v2")
    wait_for(lambda: version(http, server.url) == second, what="the refreshed commit")
    # A push updates its refs one by one: a refresh between the two sees main moved, not yet v2.
    wait_for(lambda: http.get(f"{server.url}/svc/default/v2").json().get("version") == second, what="the tag")


def test_remote_branches_and_deleted_branches(repo, git_daemon, serve, http):
    repo.commit({"svc.yml": "a: 1\n"})
    repo.git("branch", "feature/y")
    url = git_daemon(repo)
    server = serve(url, refresh_interval=0)
    assert http.get(f"{server.url}/svc/default/feature(_)y").status_code == 200
    repo.git("push", "--quiet", "origin", "--delete", "feature/y")
    server.app.extensions["config_server"].service.backend.refresh()
    assert http.get(f"{server.url}/svc/default/feature(_)y").status_code == 404


def test_dead_remote_is_404_and_health_down_then_recovers(repo, git_daemon, tmp_path, http):
    sha = repo.commit({"svc.yml": "a: 1\n"})
    later = git_daemon(repo).replace("config.git", "later.git")
    app = create_app(Settings(repo=later, data_dir=str(tmp_path / "d"), refresh_interval=0))
    server = LiveServer(app)
    backend = app.extensions["config_server"].service.backend
    try:
        response = http.get(f"{server.url}/svc/default")
        assert response.status_code == 404
        assert "not available" in response.json()["message"]
        assert http.get(f"{server.url}/health").status_code == 503
        git_daemon(repo, "later.git")
        assert backend.refresh() is True
        assert version(http, server.url) == sha
        assert http.get(f"{server.url}/health").status_code == 200
    finally:
        server.stop()
        app.extensions["config_server"].close()


def test_dead_remote_after_clone_keeps_serving_the_mirror(repo, git_daemon, serve, http):
    sha = repo.commit({"svc.yml": "a: 1\n"})
    url = git_daemon(repo)
    server = serve(url, refresh_interval=0)
    backend = server.app.extensions["config_server"].service.backend
    backend.spec = url.replace("config.git", "missing.git")
    backend._repo.git.remote("set-url", "origin", backend.spec)
    assert backend.refresh() is False
    assert version(http, server.url) == sha
    health = http.get(f"{server.url}/health").json()
    assert "lastError" in health["details"]["repository"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:secret@git.example.com/c.git", "https://git.example.com/c.git"),
        ("https://git.example.com:8443/c.git", "https://git.example.com:8443/c.git"),
        ("/local/path", "/local/path"),
    ],
)
def test_credentials_never_appear_in_names(url, expected):
    assert redact(url) == expected
