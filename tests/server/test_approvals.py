"""Release approvals: a commit that changes a protected environment waits for a second pair of eyes,
over real git repositories and HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from config_server.content.approval_policy import ApprovalPolicy, PolicyError, parse_policy
from config_server.safety.approvals import Approver
from tests.helpers import GitRepo, wait_for
from tests.server.test_fast_path import raw_get
from tests.server.test_gevent_worker import fetch, read_answer, without_server_lines
from tests.server.test_rollouts import write_auth_file

POLICY = "profiles: [prod]\nrequired: 1\n"
ALICE, BOB, READER, ADMIN = "alice-" + "a" * 30, "bob-" + "b" * 30, "reader-" + "r" * 30, "admin-" + "x" * 30


def as_author(repo: GitRepo, files: dict[str, str], who: str, message: str = "change") -> str:
    """Commit `files` with `who` (`Name <email>`) as the author; the commit id."""
    for name, content in files.items():
        (repo.path / name).parent.mkdir(parents=True, exist_ok=True)
        (repo.path / name).write_text(content)
    repo.git("add", "--all")
    repo.git("commit", "--quiet", f"--author={who}", "-m", message)
    return repo.head()


def auth_file(folder: Path) -> str:
    return write_auth_file(
        folder,
        ("alice", ALICE, "email: alice@example.com, roles: [approver, read]"),
        ("bob", BOB, "email: bob@example.com, roles: [approver, read]"),
        ("reader", READER, "roles: [read]"),
        ("admin", ADMIN, "roles: [admin]"),
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def protected(repo: GitRepo) -> GitRepo:
    """orders (dev, prod) released before the policy, then the policy (no settings change)."""
    repo.before_policy = repo.commit(
        {"orders.yml": "limit: 1\n", "orders-prod.yml": "limit: 10\n", "orders-dev.yml": "limit: 2\n"}
    )
    repo.policy = repo.commit({"policy/approvals.yml": POLICY}, "protect prod")
    return repo


def get(server, path: str, token: str = READER) -> requests.Response:
    return requests.get(server.url + path, headers=bearer(token), timeout=10)


def approve(server, version: str, token: str, reason: str = "looks right") -> requests.Response:
    return requests.post(
        f"{server.url}/approvals/{version}", json={"reason": reason}, headers=bearer(token), timeout=10
    )


def test_the_policy_file_is_parsed_strictly():
    assert parse_policy(None) is None
    policy = parse_policy(b"profiles: [prod, 'eu-*']\napplications: [orders]\nrequired: 2\ngroup: sre\n")
    assert policy == ApprovalPolicy(("prod", "eu-*"), ("orders",), 2, "sre")
    assert policy.protects(("orders",), ("default", "eu-west"))
    assert not policy.protects(("payments",), ("prod",)) and not policy.protects(("orders",), ("dev",))
    for text, line in (
        (b"profiles: [prod]\nreqiured: 1\n", 2),
        (b"profiles: [prod\n", 2),
        (b"required: 0\n", None),
    ):
        with pytest.raises(PolicyError) as raised:
            parse_policy(text)
        assert raised.value.problem.file == "policy/approvals.yml" and raised.value.problem.line == line


def test_a_prod_commit_is_held_until_someone_other_than_its_author_approves_while_dev_moves_on(
    protected, serve, tmp_path
):
    repo = protected
    server = serve(repo.path, auth_file=auth_file(tmp_path), audit_log=str(tmp_path / "audit.log"))
    assert get(server, "/orders/prod").json()["version"] == repo.policy  # the policy changed no setting

    change = as_author(
        repo, {"orders-prod.yml": "limit: 20\n", "orders-dev.yml": "limit: 3\n"}, "Bob <bob@example.com>"
    )
    prod = get(server, "/orders/prod")
    assert prod.json()["version"] == repo.policy and prod.json()["propertySources"][0]["source"] == {
        "limit": 10
    }
    assert prod.headers["X-Config-Held-Back"] == change
    assert prod.headers["X-Config-Held-Back-Reason"] == "awaiting approval"
    plain = get(server, "/orders/prod/main/orders-prod.yml")  # a plain-text file: the same headers
    assert plain.text == "limit: 10\n" and plain.headers["X-Config-Held-Back"] == change
    assert plain.headers["X-Config-Held-Back-Reason"] == "awaiting approval"
    dev = get(server, "/orders/dev")
    assert dev.json()["version"] == change and "X-Config-Held-Back" not in dev.headers

    health = get(server, "/health", ADMIN).json()["details"]
    assert health["awaitingApproval"] == [
        {
            "application": "orders",
            "profiles": "prod",
            "label": "main",
            "waitingVersion": change,
            "servedVersion": repo.policy,
            "reason": "awaiting approval",
        }
    ]
    assert get(server, "/approvals?label=main", ALICE).json()["waiting"] == health["awaitingApproval"]

    refused = approve(server, change, BOB)
    assert refused.status_code == 403 and "its author may not approve it" in refused.json()["message"]
    assert approve(server, change, READER).status_code == 403  # no approver role
    assert approve(server, "0" * 40, ALICE).status_code == 409  # not on the label

    done = approve(server, change[:12], ALICE, "raise the prod limit")
    assert done.status_code == 201 and done.json()["version"] == change and done.json()["approver"] == "alice"
    prod = get(server, "/orders/prod")
    assert prod.json()["version"] == change and "X-Config-Held-Back" not in prod.headers
    assert get(server, "/health", ADMIN).json()["details"]["awaitingApproval"] == []

    later = as_author(repo, {"orders-prod.yml": "limit: 30\n"}, "Carol <carol@example.com>")
    prod = get(server, "/orders/prod")
    assert (
        prod.json()["version"] == change and prod.headers["X-Config-Held-Back"] == later
    )  # its own approval

    state = server.app.extensions["config_server"]
    state.audit.flush()
    lines = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    approvals = [line for line in lines if line["event"] == "approval" and line["status"] == 201]
    assert len(approvals) == 1
    assert approvals[0]["client"] == "alice" and approvals[0]["version"] == change
    assert approvals[0]["reason"] == "raise the prod limit"


def test_approving_a_later_commit_approves_the_changes_before_it(protected, serve, tmp_path):
    repo = protected
    server = serve(repo.path, auth_file=auth_file(tmp_path))
    as_author(repo, {"orders-prod.yml": "limit: 20\n"}, "Carol <carol@example.com>")
    second = as_author(repo, {"orders-prod.yml": "limit: 21\n"}, "Carol <carol@example.com>")
    assert get(server, "/orders/prod").json()["version"] == repo.policy
    assert approve(server, second, ALICE).status_code == 201
    assert get(server, "/orders/prod").json()["version"] == second


def test_an_approver_may_not_approve_a_change_it_wrote_below_a_later_commit(protected, serve, tmp_path):
    repo = protected
    server = serve(repo.path, auth_file=auth_file(tmp_path))
    as_author(repo, {"orders-prod.yml": "limit: 20\n"}, "Alice Smith <alice@example.com>")
    later = as_author(repo, {"orders-dev.yml": "limit: 5\n"}, "Carol <carol@example.com>")
    refused = approve(server, later, ALICE)
    assert refused.status_code == 403 and "its author may not approve it" in refused.json()["message"]
    assert approve(server, later, BOB).status_code == 201


def test_an_approval_survives_a_restart(protected, serve, tmp_path):
    repo = protected
    auth = auth_file(tmp_path)
    first = serve(repo.path, auth_file=auth)
    change = as_author(repo, {"orders-prod.yml": "limit: 20\n"}, "Bob <bob@example.com>")
    assert approve(first, change, ALICE).status_code == 201
    first.stop()
    first.app.extensions["config_server"].close()

    again = serve(repo.path, auth_file=auth)
    assert get(again, "/orders/prod").json()["version"] == change


def test_a_malformed_policy_holds_every_environment_back_as_broken(protected, serve, tmp_path):
    repo = protected
    server = serve(repo.path, auth_file=auth_file(tmp_path))
    bad = repo.commit(
        {"policy/approvals.yml": "profiles: [prod]\nrequird: 1\n", "orders-dev.yml": "limit: 9\n"}
    )
    for path in ("/orders/dev", "/orders/prod"):
        answer = get(server, path)
        assert answer.json()["version"] == repo.policy and answer.headers["X-Config-Held-Back"] == bad
        assert "X-Config-Held-Back-Reason" not in answer.headers  # held back as broken
    held = get(server, "/health", ADMIN).json()["details"]["heldBack"]
    assert {"file": "policy/approvals.yml", "line": 2, "message": held[0]["problems"][0]["message"]} == held[
        0
    ]["problems"][0]
    assert "unknown key 'requird'" in held[0]["problems"][0]["message"]


def test_an_open_server_takes_no_approvals(protected, serve):
    server = serve(protected.path)
    change = as_author(protected, {"orders-prod.yml": "limit: 20\n"}, "Bob <bob@example.com>")
    answer = requests.post(f"{server.url}/approvals/{change}", json={}, timeout=10)
    assert answer.status_code == 403 and "auth-file" in answer.json()["message"]


def test_a_cross_site_approval_is_refused(protected, serve, tmp_path):
    server = serve(protected.path, auth_file=auth_file(tmp_path))
    change = as_author(protected, {"orders-prod.yml": "limit: 20\n"}, "Bob <bob@example.com>")
    forged = requests.post(
        f"{server.url}/approvals/{change}",
        json={},
        headers={**bearer(ALICE), "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        timeout=10,
    )
    assert forged.status_code == 403
    assert get(server, "/orders/prod").json()["version"] == protected.policy


def test_an_approval_wakes_the_long_polls_of_the_environment(protected, serve, tmp_path):
    import threading

    server = serve(protected.path, auth_file=auth_file(tmp_path))
    etag = get(server, "/orders/prod").headers["ETag"]
    change = as_author(protected, {"orders-prod.yml": "limit: 20\n"}, "Bob <bob@example.com>")
    hub = server.app.extensions["config_server"].hub
    answers: dict[str, bytes] = {}

    def poll(path: str) -> None:
        answers[path] = raw_get(server, path, headers={**bearer(READER), "If-None-Match": etag})

    paths = ("/orders/prod?wait=30", "/orders/prod?wait=30&via=flask")
    polls = [threading.Thread(target=poll, args=(path,)) for path in paths]
    for thread in polls:
        thread.start()
    try:
        wait_for(lambda: hub.watchers() == 2, what="both long polls to park")
        hub.check()  # the held commit moves nothing: nobody is woken
        assert hub.watchers() == 2 and not answers
        assert approve(server, change, ALICE).status_code == 201
    finally:
        for thread in polls:
            thread.join(timeout=20)
    assert answers[paths[0]].startswith(b"HTTP/1.1 200") and change.encode() in answers[paths[0]]
    assert answers[paths[0]] == answers[paths[1]]


def test_replicas_agree_on_approvals_through_redis(protected, serve, tmp_path, redis_server):
    auth = auth_file(tmp_path)
    one = serve(protected.path, auth_file=auth, redis=redis_server.url, data_dir=str(tmp_path / "one"))
    two = serve(protected.path, auth_file=auth, redis=redis_server.url, data_dir=str(tmp_path / "two"))
    change = as_author(protected, {"orders-prod.yml": "limit: 20\n"}, "Bob <bob@example.com>")
    assert get(two, "/orders/prod").json()["version"] == protected.policy
    assert approve(one, change, ALICE).status_code == 201
    wait_for(lambda: get(two, "/orders/prod").json()["version"] == change, timeout=5, what="replica two")


def test_the_approver_is_matched_by_name_or_email():
    alice = Approver("alice", "Alice@Example.com")
    assert alice.wrote(("Alice Smith", "alice@example.com")) and alice.wrote(("alice", "a@b.c"))
    assert not alice.wrote(("Bob", "bob@example.com")) and not alice.wrote(None)


def test_diff_shows_a_protected_change_awaiting_approval_and_the_server_knows_once_approved(
    protected, serve, tmp_path
):
    from click.testing import CliRunner

    from config_server.cli import main

    repo = protected
    base = repo.head()
    change = as_author(
        repo, {"orders-prod.yml": "limit: 20\n", "orders-dev.yml": "limit: 3\n"}, "Bob <bob@example.com>"
    )
    result = CliRunner().invoke(
        main,
        ["diff", f"{base}..{change}", "--repo", str(repo.path), "--format", "json"],
        env={"ENCRYPT_KEY": None},
    )
    assert result.exit_code == 1, result.output
    found = {tuple(e["profiles"]): e for e in json.loads(result.stdout)["environments"]}
    assert [h["reason"] for h in found[("prod",)]["holds"]] == ["awaiting approval"]
    assert found[("dev",)]["holds"] == [] and not found[("dev",)]["heldBack"]

    server = serve(repo.path, auth_file=auth_file(tmp_path))
    url = f"/diff?from={base}&to=main"
    body = get(server, url, ADMIN).json()
    assert [e["holds"][0]["reason"] for e in body["environments"] if e["heldBack"]] == ["awaiting approval"]
    assert approve(server, change, ALICE).status_code == 201
    assert get(server, url, ADMIN).json()["heldBack"] == 0


def test_the_hubs_direct_answer_of_a_newly_approved_version_carries_the_next_hold(
    protected, server_process, tmp_path
):
    """Under gunicorn: a watcher holds the policy commit's settings; two prod changes land (both
    held: nobody is woken); the first is approved: the hub's direct answer is that version, with
    the second held back `awaiting approval`, the same bytes as the fast path and Flask send."""
    import socket

    repo = protected
    server = server_process("--repo", str(repo.path), "--workers", "1", "--auth-file", auth_file(tmp_path))
    server.wait_ready(lambda: requests.get(f"{server.url}/health", timeout=1).ok)
    auth = f"Authorization: Bearer {READER}\r\n"
    etag = get(server, "/orders/prod").headers["ETag"]
    first = as_author(repo, {"orders-prod.yml": "limit: 20\n"}, "Bob <bob@example.com>")
    second = as_author(repo, {"orders-prod.yml": "limit: 30\n"}, "Bob <bob@example.com>")
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(
            f"GET /orders/prod?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
            f"If-None-Match: {etag}\r\n\r\n".encode()
        )
        wait_for(
            lambda: get(server, "/health", ADMIN).json()["details"]["watchers"] == 1, what="the poll to park"
        )
        assert approve(server, first, ALICE).status_code == 201
        direct = read_answer(sock, bytearray())
    assert b"\r\nServer:" not in direct  # written by the hub
    assert f"\r\nX-Config-Held-Back: {second}\r\n".encode() in direct and first.encode() in direct
    assert b"\r\nX-Config-Held-Back-Reason: awaiting approval\r\n" in direct
    flask = fetch(server, "/orders/prod?via=flask", auth)
    fast = fetch(server, "/orders/prod", auth)
    assert without_server_lines(direct) == without_server_lines(flask) == without_server_lines(fast)


def test_the_console_shows_the_waiting_commit_with_an_approve_button_that_approves_it(
    protected, serve, tmp_path
):
    """The button's request as the console's script sends it: same origin, Basic, JSON."""
    server = serve(protected.path, auth_file=auth_file(tmp_path))
    change = as_author(protected, {"orders-prod.yml": "limit: 20\n"}, "Bob <bob@example.com>")
    get(server, "/orders/prod")  # asked for: now known to wait
    page = requests.get(f"{server.url}/console/app/orders", auth=("admin", ADMIN), timeout=10).text
    section = page.split('id="held-back"')[1].split("</section>")[0]
    assert f'data-commit="{change}"' in section and "awaiting approval" in section
    assert 'class="approve"' in section and "/approvals/COMMIT" in page
    answer = requests.post(
        f"{server.url}/approvals/{change}?label=main",
        json={"reason": "from the console"},
        auth=("admin", ADMIN),
        headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"},
        timeout=10,
    )
    assert answer.status_code == 201 and answer.json()["approver"] == "admin"
    assert get(server, "/orders/prod").json()["version"] == change
    page = requests.get(f"{server.url}/console/app/orders", auth=("admin", ADMIN), timeout=10).text
    assert 'id="held-back"' not in page


def test_removing_the_policy_is_itself_a_change_that_needs_an_approval(protected, serve, tmp_path):
    repo = protected
    server = serve(repo.path, auth_file=auth_file(tmp_path))
    change = as_author(repo, {"orders-prod.yml": "limit: 20\n"}, "Bob <bob@example.com>")
    assert get(server, "/orders/prod").headers["X-Config-Held-Back"] == change
    assert approve(server, change, ALICE).status_code == 201
    assert get(server, "/health", ADMIN).json()["details"]["awaitingApproval"] == []  # nobody asked since

    (repo.path / "policy/approvals.yml").unlink()
    sneaky = as_author(repo, {"orders-prod.yml": "limit: 99\n"}, "Bob <bob@example.com>")
    prod = get(server, "/orders/prod")
    assert prod.json()["version"] == change and prod.headers["X-Config-Held-Back"] == sneaky
    assert approve(server, sneaky, BOB).status_code == 403
    assert approve(server, sneaky, ALICE).status_code == 201
    assert get(server, "/orders/prod").json()["version"] == sneaky
    later = as_author(repo, {"orders-prod.yml": "limit: 100\n"}, "Bob <bob@example.com>")
    assert get(server, "/orders/prod").json()["version"] == later  # approved without a policy: unprotected


def test_a_policy_may_require_two_approvers_of_one_group(repo, serve, tmp_path):
    repo.commit({"orders.yml": "limit: 1\n", "orders-prod.yml": "limit: 10\n"})
    policy = repo.commit({"policy/approvals.yml": "profiles: [prod]\nrequired: 2\ngroup: release\n"})
    carol = "carol-" + "c" * 30
    auth = write_auth_file(
        tmp_path,
        ("alice", ALICE, "email: alice@example.com, groups: [release], roles: [approver, read]"),
        ("bob", BOB, "email: bob@example.com, roles: [approver, read]"),
        ("carol", carol, "groups: [release], roles: [approver]"),
        ("reader", READER, "roles: [read]"),
    )
    server = serve(repo.path, auth_file=auth)
    change = as_author(repo, {"orders-prod.yml": "limit: 20\n"}, "Dave <dave@example.com>")
    refused = approve(server, change, BOB)
    assert refused.status_code == 403 and "group 'release'" in refused.json()["message"]
    assert approve(server, change, ALICE).status_code == 201
    assert get(server, "/orders/prod").json()["version"] == policy  # one of two
    assert approve(server, change, carol).status_code == 201
    assert get(server, "/orders/prod").json()["version"] == change
