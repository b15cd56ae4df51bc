"""Revert (issue 22, section 2): a commit undone by a new `git revert` commit on its label, made by
the server where it may write (a local repository; a remote with --push-url), served like any
commit; elsewhere the git command to run. Never a force push, never a rewrite of history."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from config_server.backends.revert import Operator, Reverter
from config_server.cli import main
from config_server.errors import RevertRefused
from tests.helpers import GitRepo, blocking_reports, held_long_polls, http_ready, wait_for
from tests.server.test_rollouts import write_auth_file


@pytest.fixture
def history(repo: GitRepo) -> tuple[GitRepo, str, str]:
    """main: `a: 1` (good), then `a: 2` (the bad change to revert); returns the repo and both ids."""
    good = repo.commit({"orders.yml": "a: 1\n", "payments.yml": "p: 1\n"}, "good")
    bad = repo.commit({"orders.yml": "a: 2\n"}, "raise a")
    return repo, good, bad


def value(response: requests.Response) -> object:
    """The `a` of an orders answer."""
    return next(s["source"]["a"] for s in response.json()["propertySources"] if "a" in s["source"])


def revert(url: str, version: str, reason: str = "a: 2 breaks checkout", **kwargs) -> requests.Response:
    return requests.post(f"{url}/reverts/{version}", json={"reason": reason}, timeout=60, **kwargs)


def long_poll(url: str, etag: str, results: list) -> None:
    response = requests.get(f"{url}/orders/prod?wait=30", headers={"If-None-Match": etag}, timeout=40)
    results.append(response)


def test_a_revert_on_a_local_repository_reaches_a_parked_watcher_under_the_gevent_worker(
    history, server_process
):
    repo, good, bad = history
    server = server_process("--repo", str(repo.path), "--workers", "1")
    server.wait_ready(lambda: http_ready(f"{server.url}/health"))
    first = requests.get(f"{server.url}/orders/prod", timeout=5)
    assert value(first) == 2
    results: list = []
    poll = threading.Thread(target=long_poll, args=(server.url, first.headers["ETag"], results))
    poll.start()
    wait_for(lambda: held_long_polls(server) == 1, what="the long poll to park")
    answer = revert(server.url, bad[:10])
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["reverted"], body["label"], body["version"], body["parent"], body["pushed"]) == (
        True,
        "main",
        bad,
        bad,
        False,
    )
    poll.join(timeout=10)
    assert len(results) == 1 and value(results[0]) == 1
    assert results[0].json()["version"] == body["commit"]
    # a new commit on top, history kept; the operator authors it, the server commits it
    assert repo.git("rev-parse", "main") == body["commit"]
    assert repo.git("rev-parse", "main^") == bad
    assert repo.git("log", "-1", "--format=%an|%ae|%cn|%ce", "main") == (
        "127.0.0.1|127.0.0.1@config-server.invalid|config-server|config-server@noreply.invalid"
    )
    message = repo.git("log", "-1", "--format=%B", "main")
    assert message.startswith(f'Revert "raise a"\n\nThis reverts commit {bad}.')
    assert "Reason: a: 2 breaks checkout" in message and "Reverted-by: 127.0.0.1" in message
    # the checked-out working tree followed its branch, and no temporary worktree is left
    assert (repo.path / "orders.yml").read_text() == "a: 1\n" and repo.git("status", "--porcelain") == ""
    assert len(repo.git("worktree", "list").splitlines()) == 1
    assert blocking_reports(server.stop()) == []


def test_a_revert_pushed_to_a_served_remote_reaches_a_watcher(history, git_daemon, serve, tmp_path):
    repo, good, bad = history
    url = git_daemon(repo)
    server = serve(url, refresh_interval=0, push_url=url)
    first = requests.get(f"{server.url}/orders/prod", timeout=5)
    assert value(first) == 2
    results: list = []
    poll = threading.Thread(target=long_poll, args=(server.url, first.headers["ETag"], results))
    poll.start()
    wait_for(lambda: held_long_polls(server) == 1, what="the long poll to park")
    answer = revert(server.url, bad)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["pushed"] is True and body["parent"] == bad
    poll.join(timeout=10)
    assert len(results) == 1 and value(results[0]) == 1
    assert results[0].json()["version"] == body["commit"]
    # on the remote: a fast-forward of main, the reverted commit still in its history
    remote = tmp_path / "daemon" / "config.git"
    remote_log = GitRepo.__new__(GitRepo)
    remote_log.path = remote
    assert remote_log.git("rev-parse", "main") == body["commit"]
    assert remote_log.git("rev-list", "main").splitlines()[:3] == [body["commit"], bad, good]


def test_a_conflicting_revert_is_refused_and_changes_nothing(serve, history):
    repo, good, bad = history
    later = repo.commit({"orders.yml": "a: 3\n"}, "a later change to the same line")
    server = serve(repo.path)
    answer = revert(server.url, bad)
    assert answer.status_code == 409, answer.text
    assert "conflicts" in answer.json()["message"] and "orders.yml" in answer.json()["message"]
    assert answer.json()["command"] == f"git switch main && git revert --no-edit {bad}"
    assert repo.git("rev-parse", "main") == later
    assert repo.git("status", "--porcelain") == ""
    assert len(repo.git("worktree", "list").splitlines()) == 1
    assert value(requests.get(f"{server.url}/orders/prod", timeout=5)) == 3


def test_a_merge_commit_or_a_commit_off_the_label_is_not_reverted(serve, history):
    repo, good, bad = history
    repo.git("checkout", "-q", "-b", "side", good)
    side = repo.commit({"payments.yml": "p: 2\n"}, "side change")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "--quiet", "--no-ff", "-m", "merge side", "side")
    merge = repo.head()
    repo.git("checkout", "-q", "-b", "elsewhere", good)
    stray = repo.commit({"payments.yml": "p: 9\n"}, "not on main")
    repo.git("checkout", "-q", "main")
    server = serve(repo.path)
    refused = revert(server.url, merge)
    assert refused.status_code == 422 and "merge commit" in refused.json()["message"]
    assert refused.json()["command"] == f"git switch main && git revert --no-edit -m 1 {merge}"
    off = revert(server.url, stray)
    assert off.status_code == 422 and "not on label 'main'" in off.json()["message"]
    assert revert(server.url, "0123456789abcdef").status_code == 404
    assert revert(server.url, "main").status_code == 400
    assert repo.git("rev-parse", "main") == merge and side


def test_a_server_that_may_not_write_answers_the_git_command(history, git_daemon, serve, tmp_path):
    repo, good, bad = history
    url = git_daemon(repo)
    remote = serve(url, refresh_interval=0)  # a remote without --push-url
    answer = revert(remote.url, bad[:12])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "reverted": False,
        "label": "main",
        "version": bad,
        "why": "this server serves a remote repository and has no --push-url",
        "command": (
            f"git switch main && git pull --ff-only && git revert --no-edit {bad} && git push origin main"
        ),
    }
    printed = CliRunner().invoke(main, ["revert", bad, "--reason", "INC-7", "--server", remote.url])
    assert printed.exit_code == 1
    assert printed.stdout == answer.json()["command"] + "\n"
    local = serve(repo.path, allow_revert=False, data_dir=str(tmp_path / "other"))
    off = revert(local.url, bad)
    assert (
        off.status_code == 200 and off.json()["command"] == f"git switch main && git revert --no-edit {bad}"
    )
    assert "--allow-revert false" in off.json()["why"]
    assert repo.git("rev-parse", "main") == bad


def test_the_revert_command_talks_to_a_running_server(serve, history):
    repo, good, bad = history
    server = serve(repo.path)
    done = CliRunner().invoke(main, ["revert", bad[:12], "--reason", "INC-7", "--server", server.url])
    assert done.exit_code == 0, done.output
    head = repo.git("rev-parse", "main")
    assert done.stdout == f"{bad[:12]} reverted on main by {head}\n"
    again = CliRunner().invoke(main, ["revert", bad, "--reason", "twice", "--server", server.url])
    assert again.exit_code == 1 and "changes nothing" in again.output
    assert repo.git("rev-parse", "main") == head


def test_a_revert_needs_the_release_role_a_reason_and_scope_over_what_it_changes(serve, history, tmp_path):
    repo, good, bad = history
    shared = repo.commit({"application.yml": "shared: 1\n"}, "shared change")
    auth = write_auth_file(
        tmp_path,
        ("reader", "r" * 32, "roles: [read]"),
        ("payments-release", "p" * 32, "roles: [release], applications: [payments]"),
        ("orders-release", "q" * 32, "roles: [release], applications: [orders], email: o@example.com"),
        ("ops", "a" * 32, "roles: [admin]"),
    )
    audit = tmp_path / "audit.log"
    server = serve(repo.path, auth_file=auth, audit_log=str(audit))

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token * 32}"}

    assert revert(server.url, bad).status_code == 401
    for token in ("r", "p"):
        assert revert(server.url, bad, headers=bearer(token)).status_code == 403, token
    refused = revert(server.url, shared, headers=bearer("q"))
    assert refused.status_code == 403 and "every application" in refused.json()["message"]
    no_reason = requests.post(f"{server.url}/reverts/{bad}", json={}, headers=bearer("q"), timeout=5)
    assert no_reason.status_code == 400
    assert repo.git("rev-parse", "main") == shared
    done = revert(server.url, bad, "rollback INC-7", headers=bearer("q"))
    assert done.status_code == 201 and done.json()["by"] == "orders-release"
    assert repo.git("log", "-1", "--format=%an <%ae>", "main") == "orders-release <o@example.com>"
    server.app.extensions["config_server"].audit.flush()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    made = [line for line in lines if line["event"] == "revert" and line["status"] == 201]
    assert len(made) == 1 and made[0]["client"] == "orders-release"
    assert (made[0]["version"], made[0]["reason"], made[0]["label"]) == (bad, "rollback INC-7", "main")
    assert made[0]["commit"] == done.json()["commit"]


def test_a_cross_site_request_cannot_revert_with_the_browsers_basic_credentials(serve, history, tmp_path):
    repo, good, bad = history
    auth = write_auth_file(tmp_path, ("ops", "a" * 32, "roles: [admin]"))
    server = serve(repo.path, auth_file=auth)
    basic = {"Authorization": "Basic " + base64.b64encode(b"ops:" + b"a" * 32).decode()}
    body = json.dumps({"reason": "csrf"}).encode()
    for headers in (
        {**basic, "Content-Type": "text/plain"},
        {**basic, "Content-Type": "application/json", "Origin": "https://attacker.example"},
        {**basic, "Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
    ):
        sent = requests.post(f"{server.url}/reverts/{bad}", data=body, headers=headers, timeout=5)
        assert sent.status_code == 403
    assert repo.git("rev-parse", "main") == bad
    own = {**basic, "Content-Type": "application/json", "Origin": server.url}
    assert requests.post(f"{server.url}/reverts/{bad}", data=body, headers=own, timeout=30).status_code == 201
    assert repo.git("rev-parse", "main^") == bad


class MovedMeanwhile(Reverter):
    """A reverter during whose work someone else lands a commit on the label (`land`)."""

    land: Callable[[], object]

    def _commit_revert(self, *args: Any) -> str:
        made = super()._commit_revert(*args)
        self.land()
        return made


def test_a_local_label_that_moved_while_the_revert_was_made_refuses_it(history):
    repo, good, bad = history
    reverter = MovedMeanwhile(str(repo.path), remote=False)
    reverter.land = lambda: repo.commit({"payments.yml": "p: 2\n"}, "landed meanwhile")
    with pytest.raises(RevertRefused, match="moved while the revert was made"):
        reverter.revert("main", bad, Operator("ops"), "INC-7")
    assert repo.git("log", "-1", "--format=%s", "main") == "landed meanwhile"
    assert repo.git("rev-parse", "main^") == bad
    assert len(repo.git("worktree", "list").splitlines()) == 1


def test_a_remote_label_that_moved_while_the_revert_was_made_refuses_the_push(history, git_daemon, tmp_path):
    from config_server.backends.git import GitBackend

    repo, good, bad = history
    url = git_daemon(repo)
    backend = GitBackend(url, tmp_path / "cache")
    reverter = MovedMeanwhile(backend.repository_path(), True, url, refresh=backend.refresh)

    def land() -> None:
        repo.commit({"payments.yml": "p: 2\n"}, "landed meanwhile")
        repo.git("push", "--quiet", "origin", "main")

    reverter.land = land
    with pytest.raises(RevertRefused, match="moved on the remote") as refused:
        reverter.revert("main", bad, Operator("ops"), "INC-7")
    assert refused.value.command.endswith("git push origin main")
    remote = GitRepo.__new__(GitRepo)
    remote.path = tmp_path / "daemon" / "config.git"
    assert remote.git("rev-parse", "main") == repo.head()
    backend.close()
