"""Rollouts over real HTTP: 200 simulated instances (distinct ids), a real git repository, steps,
sticky cohorts, halts by rejection and by hand, restarts on the same data directory."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests

from config_server import create_app
from config_server.content.rollout_plan import Rollout, cohort_point
from config_server.settings import Settings
from config_server.state import SQLiteStateStore
from tests.helpers import GitRepo, LiveServer, wait_for

INSTANCES = [f"orders-{n}.eu-west-1.internal:{1000 + n}" for n in range(200)]


def rollout_file(steps: str = "[10, 100]", bake: str = "1h", extra: str = "") -> str:
    return f"canary: canary\nsteps: {steps}\nbake: {bake}\nhalt-on:\n  rejected: 1\n{extra}"


def write_auth_file(folder: Path, *clients: tuple[str, str, str]) -> str:
    """An auth file in `folder` with one client per (name, token, rest of its mapping); its path."""
    from config_server.http.auth import hash_token

    lines = [
        f"  - {{name: {name}, tokens: ['{hash_token(token)}'], {rest}}}\n" for name, token, rest in clients
    ]
    path = folder / "auth.yml"
    path.write_text("clients:\n" + "".join(lines))
    return str(path)


@pytest.fixture
def repo_with_canary(repo: GitRepo) -> GitRepo:
    """main: `message: base`; branch `canary`: `message: canary`; back on main."""
    repo.commit({"orders.yml": "message: base\n"}, "base")
    repo.git("checkout", "-q", "-b", "canary")
    repo.commit({"orders.yml": "message: canary\n"}, "canary")
    repo.git("checkout", "-q", "main")
    return repo


def versions(repo: GitRepo) -> tuple[str, str]:
    return repo.git("rev-parse", "main"), repo.git("rev-parse", "canary")


def get(server, instance: str | None = None, **headers: str) -> requests.Response:
    if instance is not None:
        headers["X-Config-Client-Id"] = instance
    return requests.get(f"{server.url}/orders/default", headers=headers, timeout=10)


def started(server, state: str = "running") -> dict:
    body = requests.get(f"{server.url}/rollouts", timeout=5).json()
    return next((r for r in body["rollouts"] if r["state"] == state), None)


def long_polls(
    server, instances: list[str], etag: str, wait: int = 30
) -> tuple[list[threading.Thread], dict[str, requests.Response], dict[str, float]]:
    """One long poll per instance (its id, holding `etag`) on its own started thread; each answer
    lands in the returned dict by instance, with the moment it came (time.monotonic) in the other."""
    answers: dict[str, requests.Response] = {}
    answered_at: dict[str, float] = {}

    def watch(instance: str) -> None:
        answers[instance] = requests.get(
            f"{server.url}/orders/default?wait={wait}",
            headers={"X-Config-Client-Id": instance, "If-None-Match": etag},
            timeout=wait + 10,
        )
        answered_at[instance] = time.monotonic()

    threads = [threading.Thread(target=watch, args=(i,)) for i in instances]
    for thread in threads:
        thread.start()
    return threads, answers, answered_at


def rolled_out(serve, repo: GitRepo, content: str) -> tuple[LiveServer, str, str]:
    """Commit `content` as the orders rollout file, serve the repository until the rollout runs;
    the server, the base and the canary versions."""
    repo.commit({"rollouts/orders.yml": content}, "roll out")
    base, canary = versions(repo)
    server = serve(repo.path)
    wait_for(lambda: started(server), what="the rollout to start")
    return server, base, canary


def expected_cohort(percent: float, rollout_id: str = "canary") -> set[str]:
    return {i for i in INSTANCES if cohort_point("orders", rollout_id, i) < percent}


def test_a_ten_percent_step_canaries_the_same_tenth_on_every_poll(serve, repo_with_canary):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file()}, "roll out")
    base, canary = repo.git("rev-parse", "main"), repo.git("rev-parse", "canary")
    server = serve(repo.path)
    wait_for(lambda: started(server), what="the rollout to start")
    first = {i: get(server, i) for i in INSTANCES}
    assert all(r.status_code == 200 for r in first.values())
    on_canary = {i for i, r in first.items() if r.json()["version"] == canary}
    assert 10 <= len(on_canary) <= 30  # between 5% and 15% of 200
    assert on_canary == expected_cohort(10)
    assert all(first[i].json()["version"] == base for i in set(INSTANCES) - on_canary)
    assert {first[i].headers["X-Config-Rollout"] for i in on_canary} == {"orders; step=10; state=running"}
    assert not any("X-Config-Rollout" in first[i].headers for i in set(INSTANCES) - on_canary)
    assert all(first[i].json()["propertySources"][0]["source"]["message"] == "canary" for i in on_canary)
    again = {i for i in INSTANCES if get(server, i).json()["version"] == canary}
    assert again == on_canary
    # callers without an id (Spring clients, curl) always get the base label
    assert {get(server).json()["version"] for _ in range(20)} == {base}


def test_at_one_hundred_percent_every_identified_instance_gets_the_canary(serve, repo_with_canary):
    repo = repo_with_canary
    server, base, canary = rolled_out(serve, repo, rollout_file(steps="[100]"))
    assert {get(server, i).json()["version"] for i in INSTANCES} == {canary}
    assert get(server).json()["version"] == base


def test_instances_entering_the_cohort_at_the_next_step_are_woken(serve, repo_with_canary):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[10, 100]", bake="1s")}, "roll out")
    base, canary = versions(repo)
    server = serve(repo.path)
    outside = sorted(set(INSTANCES) - expected_cohort(10))[:20]
    base_etag = get(server).headers["ETag"]
    threads, answers, _ = long_polls(server, outside, base_etag, wait=20)
    for thread in threads:
        thread.join(timeout=30)
    assert {answers[i].status_code for i in outside} == {200}
    assert {answers[i].json()["version"] for i in outside} == {canary}
    # answered when the 100% step began (or, on a slow machine, once it had baked: complete)
    assert {answers[i].headers["X-Config-Rollout"] for i in outside} <= {
        "orders; step=100; state=running",
        "orders; step=100; state=complete",
    }
    wait_for(lambda: started(server, "complete"), what="the rollout to complete")
    assert "merge canary into main" in started(server, "complete")["advice"]
    assert get(server, outside[0]).headers["X-Config-Rollout"] == "orders; step=100; state=complete"
    assert get(server).json()["version"] == base


def test_a_rejection_by_a_cohort_instance_halts_and_every_cohort_long_poll_gets_the_base_within_a_second(
    serve, repo_with_canary
):
    repo = repo_with_canary
    server, base, canary = rolled_out(serve, repo, rollout_file(steps="[50]"))
    cohort = sorted(expected_cohort(50))
    canary_etag = get(server, cohort[0]).headers["ETag"]
    assert get(server, cohort[0]).json()["version"] == canary
    watchers, answers, answered_at = long_polls(server, cohort[1:], canary_etag)
    wait_for(lambda: server.app.extensions["config_server"].hub.watchers() >= len(watchers), what="watchers")
    assert not answers
    rejected_at = time.monotonic()
    rejection = requests.get(
        f"{server.url}/orders/default?wait=30",
        headers={
            "X-Config-Client-Id": cohort[0],
            "If-None-Match": canary_etag,
            "X-Config-Applied": base,
            "X-Config-Rejected": f'{canary}; reason="orders.max-items must be positive"',
        },
        timeout=40,
    )
    for thread in watchers:
        thread.join(timeout=40)
    assert rejection.status_code == 200 and rejection.json()["version"] == base
    assert len(answers) == len(cohort) - 1
    assert {r.status_code for r in answers.values()} == {200}
    assert {r.json()["version"] for r in answers.values()} == {base}
    latest = max(answered_at.values())
    assert latest - rejected_at < 1.0
    halted = started(server, "halted")
    assert cohort[0] in halted["haltReason"] and "orders.max-items must be positive" in halted["haltReason"]
    assert [r["instance"] for r in halted["rejections"]] == [cohort[0]]
    assert {get(server, i).json()["version"] for i in INSTANCES} == {base}
    health = requests.get(f"{server.url}/health", timeout=5).json()
    assert health["details"]["rollouts"]["halted"][0]["haltReason"] == halted["haltReason"]
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert 'config_server_rollout_halted{application="orders",label="main"} 1.0' in metrics


def test_base_long_polls_stay_parked_through_a_halt_without_flask_and_get_the_next_commit(
    serve, repo_with_canary
):
    """A halt wakes every long poll of the application to decide its route again; those outside
    the cohort (held by the fast path) find nothing new, wait on, and get the next base commit."""
    from flask import request

    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[50]")}, "roll out")
    server = serve(repo.path)
    through_flask: list[str] = []
    server.app.before_request(lambda: through_flask.append(request.full_path) and None)
    wait_for(lambda: started(server), what="the rollout to start")
    outside = sorted(set(INSTANCES) - expected_cohort(50))[:10]
    base_etag = get(server, outside[0]).headers["ETag"]
    hub = server.app.extensions["config_server"].hub
    threads, answers, _ = long_polls(server, outside, base_etag)
    try:
        wait_for(lambda: hub.watchers() == len(outside), what="the base long polls to park")
        reroutes = hub.reroutes("orders")
        halted = requests.post(f"{server.url}/rollouts/orders/halt", json={"reason": "test"}, timeout=5)
        assert halted.status_code == 200
        wait_for(lambda: hub.reroutes("orders") > reroutes, what="the halt to reach the hub")
        wait_for(lambda: hub.watchers() == len(outside), what="the woken long polls to wait on")
        assert not answers
        new_base = repo.commit({"orders.yml": "message: base 2\n"}, "base 2")
    finally:
        for thread in threads:
            thread.join(timeout=40)
    assert {answers[i].status_code for i in outside} == {200}
    assert {answers[i].json()["version"] for i in outside} == {new_base}
    assert not [path for path in through_flask if "wait=" in path]


def test_a_rejection_of_another_version_or_by_a_base_instance_halts_nothing(serve, repo_with_canary):
    repo = repo_with_canary
    server, base, canary = rolled_out(serve, repo, rollout_file(steps="[50]"))
    outside = sorted(set(INSTANCES) - expected_cohort(50))[0]
    inside = sorted(expected_cohort(50))[0]
    get(server, outside, **{"X-Config-Rejected": f'{canary}; reason="not mine"'})
    get(server, inside, **{"X-Config-Rejected": f'{base}; reason="an old version"'})
    server.app.extensions["config_server"].rollouts.tick()
    assert started(server)["rejections"] == []
    assert get(server, inside).json()["version"] == canary


def test_a_halt_by_hand_and_by_alertmanager(serve, repo_with_canary):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    base, _ = versions(repo)
    server = serve(repo.path)
    wait_for(lambda: started(server), what="the rollout to start")
    resolved = {"status": "resolved", "alerts": [{"status": "resolved", "labels": {"alertname": "X"}}]}
    answer = requests.post(f"{server.url}/rollouts/orders/halt", json=resolved, timeout=5)
    assert answer.status_code == 200 and answer.json()["halted"] is False
    firing = {
        "version": "4",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "OrdersErrorRate", "severity": "page"},
                "annotations": {"summary": "5xx above 2%"},
            }
        ],
    }
    answer = requests.post(f"{server.url}/rollouts/orders/halt", json=firing, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.json()["haltReason"] == "alert OrdersErrorRate: 5xx above 2% (by 127.0.0.1)"
    assert get(server, INSTANCES[0]).json()["version"] == base
    missing = requests.post(f"{server.url}/rollouts/payments/halt", timeout=5)
    assert missing.status_code == 404 and "no rollout" in missing.json()["message"]


def test_a_halt_needs_the_rollout_role(serve, repo_with_canary, tmp_path: Path):

    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    auth = write_auth_file(
        tmp_path, ("reader", "r" * 32, "roles: [read]"), ("release-bot", "b" * 32, "roles: [rollout]")
    )
    server = serve(repo.path, auth_file=auth)
    url = f"{server.url}/rollouts/orders/halt"
    assert requests.post(url, timeout=5).status_code == 401
    assert requests.post(url, headers={"Authorization": "Bearer " + "r" * 32}, timeout=5).status_code == 403
    bot = {"Authorization": "Bearer " + "b" * 32}
    assert (
        requests.get(f"{server.url}/rollouts", headers=bot, timeout=5).json()["rollouts"][0]["state"]
        == "running"
    )
    answer = requests.post(url, headers=bot, json={"reason": "error budget"}, timeout=5)
    assert answer.status_code == 200 and answer.json()["haltReason"] == "error budget (by release-bot)"


def test_a_restart_mid_rollout_resumes_at_the_same_step_with_the_same_cohort(repo_with_canary, tmp_path):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[10, 50, 100]")}, "roll out")
    _, canary = versions(repo)
    data = tmp_path / "data"
    # the schedule began 90 minutes ago (bake 1h): the rollout is at its second step, 50%
    SQLiteStateStore(data / "state.db").start_rollout("orders", "main", "canary", time.time() - 5400)
    seen = []
    for _ in range(2):  # two servers, one after the other, on the same data directory
        app = create_app(Settings(repo=str(repo.path), data_dir=str(data)))
        server = LiveServer(app)
        try:
            status = started(server)
            cohort = {i for i in INSTANCES if get(server, i).json()["version"] == canary}
            seen.append((status["step"], status["started"], cohort, get(server, next(iter(cohort))).headers))
        finally:
            server.stop()
            app.extensions["config_server"].close()
    (step1, started1, cohort1, headers1), (step2, started2, cohort2, _) = seen
    assert step1 == step2 == 50
    assert started1 == started2
    assert cohort1 == cohort2 == expected_cohort(50)
    assert headers1["X-Config-Rollout"] == "orders; step=50; state=running"


def test_a_halt_survives_a_restart(repo_with_canary, tmp_path):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    base, _ = versions(repo)
    data = tmp_path / "data"
    for round_ in range(2):
        app = create_app(Settings(repo=str(repo.path), data_dir=str(data)))
        server = LiveServer(app)
        try:
            if round_ == 0:
                requests.post(f"{server.url}/rollouts/orders/halt", json={"reason": "bad"}, timeout=5)
            assert started(server, "halted")["haltReason"] == "bad (by 127.0.0.1)"
            assert get(server, INSTANCES[0]).json()["version"] == base
        finally:
            server.stop()
            app.extensions["config_server"].close()


def test_removing_the_file_ends_the_rollout(serve, repo_with_canary):
    repo = repo_with_canary
    server, base, canary = rolled_out(serve, repo, rollout_file(steps="[100]"))
    assert get(server, INSTANCES[0]).json()["version"] == canary
    etag = get(server, INSTANCES[0]).headers["ETag"]
    repo.commit({"rollouts/orders.yml": None}, "rollout done")
    base = repo.head()
    answer = requests.get(
        f"{server.url}/orders/default?wait=20",
        headers={"X-Config-Client-Id": INSTANCES[0], "If-None-Match": etag},
        timeout=30,
    )
    assert answer.json()["version"] == base and "X-Config-Rollout" not in answer.headers
    wait_for(lambda: requests.get(f"{server.url}/rollouts", timeout=5).json()["rollouts"] == [], what="end")
    assert (
        SQLiteStateStore(server.app.extensions["config_server"].settings.data_dir + "/state.db").rollouts()
        == []
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("canary: canary\nsteps: [10, 5]\nbake: 1h\n", "rollouts/orders.yml:2: steps"),
        ("canary: no-such-branch\nsteps: [10]\nbake: 1h\n", "unknown label 'no-such-branch'"),
    ],
)
def test_a_bad_rollout_file_is_ignored_with_a_visible_error(serve, repo_with_canary, content, words):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": content}, "bad rollout")
    base, _ = versions(repo)
    server = serve(repo.path)
    body = wait_for(lambda: requests.get(f"{server.url}/rollouts", timeout=5).json(), what="status")
    assert body["rollouts"] == []
    assert words in body["errors"][0]["message"]
    assert {get(server, i).json()["version"] for i in INSTANCES[:50]} == {base}
    health = requests.get(f"{server.url}/health", timeout=5).json()
    assert words in health["details"]["rollouts"]["errors"][0]["message"]


def test_match_labels_and_profiles_limit_the_cohort(serve, repo_with_canary):
    repo = repo_with_canary
    extra = "profiles: [prod]\nmatch:\n  labels: {zone: eu-west-1}\n"
    server, base, canary = rolled_out(serve, repo, rollout_file(steps="[100]", extra=extra))

    def version(profile: str, labels: str) -> str:
        headers = {"X-Config-Client-Id": "one", "X-Config-Client-Labels": labels}
        return requests.get(f"{server.url}/orders/{profile}", headers=headers, timeout=5).json()["version"]

    assert version("prod", "zone=eu-west-1,tier=web") == canary
    assert version("prod", "zone=us-east-1") == base
    assert version("default", "zone=eu-west-1") == base


def test_rollout_definition_is_plain_data():
    assert Rollout("orders", "canary", "canary", (10.0,), 60.0).duration == 60.0


def test_validate_reports_rollout_files_the_server_would_ignore(repo_with_canary):
    from click.testing import CliRunner

    from config_server.cli import main

    repo = repo_with_canary
    repo.commit(
        {
            "rollouts/orders.yml": "canary: canary\nsteps: [10, 5]\nbake: 1h\n",
            "rollouts/payments.yml": "canary: nope\nsteps: [10]\nbake: 1h\n",
            "rollouts/inventory.yml": rollout_file(),
            "payments.yml": "payments: {provider: stripe}\n",
        },
        "rollouts",
    )
    result = CliRunner().invoke(
        main, ["validate", str(repo.path), "--rev", "main"], env={"ENCRYPT_KEY": None}
    )
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        "rollouts/orders.yml:2: orders/*: steps: each step must be larger than the one before",
        "rollouts/payments.yml: payments/*: canary: unknown label 'nope'",
    ]
    repo.commit({"rollouts/orders.yml": None, "rollouts/payments.yml": None}, "fixed")
    result = CliRunner().invoke(
        main, ["validate", str(repo.path), "--rev", "main"], env={"ENCRYPT_KEY": None}
    )
    assert result.exit_code == 0, result.output


def test_the_rollout_commands_show_and_halt(serve, repo_with_canary):
    from click.testing import CliRunner

    from config_server.cli import main

    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[10, 100]")}, "roll out")
    server = serve(repo.path)
    wait_for(lambda: started(server), what="the rollout to start")
    for instance in INSTANCES[:40]:
        get(server, instance)
    state = server.app.extensions["config_server"]
    wait_for(lambda: state.inventory.flush() is not None and len(state.store.instances("orders")) == 40)
    status = CliRunner().invoke(main, ["rollout", "status", "orders", "--server", server.url])
    assert status.exit_code == 0, status.output
    lines = status.stdout.splitlines()
    assert lines[0] == "orders at main: running, step 10% of [10%, 100%]"
    cohort = len(expected_cohort(10) & set(INSTANCES[:40]))
    assert f"  cohort     {cohort} of 40 matching (40 instances)" in lines
    assert any(line.startswith("  next step  in 35") for line in lines)
    halt = CliRunner().invoke(
        main, ["rollout", "halt", "orders", "--server", server.url, "--reason", "pager"]
    )
    assert halt.exit_code == 0, halt.output
    assert halt.stdout == "orders at main: halted (pager (by 127.0.0.1))\n"
    status = CliRunner().invoke(main, ["rollout", "status", "--server", server.url, "--format", "json"])
    assert json.loads(status.stdout)["rollouts"][0]["state"] == "halted"
    missing = CliRunner().invoke(main, ["rollout", "halt", "payments", "--server", server.url])
    assert missing.exit_code == 1 and "404: no rollout of 'payments'" in missing.output


def test_the_console_shows_the_rollout_panel(serve, repo_with_canary):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    _, canary = versions(repo)
    server = serve(repo.path)
    wait_for(lambda: started(server), what="the rollout to start")
    get(server, INSTANCES[0])  # a rejection counts from an instance the canary served before
    get(server, INSTANCES[0], **{"X-Config-Rejected": f'{canary}; reason="max-items must be positive"'})
    wait_for(lambda: started(server, "halted"), what="the halt")
    index = requests.get(f"{server.url}/console/", timeout=5).text
    assert "rollout halted 100.0%" in index
    page = requests.get(f"{server.url}/console/app/orders", timeout=5).text
    assert '<section id="rollout">' in page
    assert 'data-state="halted"' in page
    assert "max-items must be positive" in page
    assert "give the rollout a new `id`" in page
    repo.commit({"rollouts/orders.yml": "canary: canary\nsteps: [5, 1]\nbake: 1h\n"}, "bad")
    wait_for(
        lambda: (
            "is ignored: rollouts/orders.yml:2: steps"
            in requests.get(f"{server.url}/console/app/orders", timeout=5).text
        ),
        what="the error on the page",
    )


def test_a_config_client_with_instance_labels_joins_a_matching_cohort(serve, repo_with_canary):
    from config_client import ConfigClient

    repo = repo_with_canary
    extra = "match:\n  labels: {zone: eu-west-1}\n"
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]", extra=extra)}, "roll out")
    _, canary = versions(repo)
    server = serve(repo.path)
    wait_for(lambda: started(server), what="the rollout to start")
    clients = {
        zone: ConfigClient(
            server.url, "orders", client_id=f"one-{zone}", instance_labels={"zone": zone}, watch=False
        )
        for zone in ("eu-west-1", "us-east-1")
    }
    try:
        for client in clients.values():
            client.start()
        assert clients["eu-west-1"].get("message") == "canary"
        assert clients["eu-west-1"].version == canary
        assert clients["us-east-1"].get("message") == "base"
    finally:
        for client in clients.values():
            client.stop()


def test_the_canary_goes_only_to_tokens_that_may_read_its_label(serve, repo_with_canary, tmp_path: Path):

    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    base, canary = versions(repo)
    auth = write_auth_file(
        tmp_path,
        ("main-only", "m" * 32, "roles: [read], labels: [main]"),
        ("any-label", "a" * 32, "roles: [read, rollout]"),
    )
    server = serve(repo.path, auth_file=auth)
    any_label = {"Authorization": "Bearer " + "a" * 32}
    wait_for(
        lambda: requests.get(f"{server.url}/rollouts", headers=any_label, timeout=5).json()["rollouts"],
        what="the rollout to start",
    )
    for token, expected in (("m" * 32, base), ("a" * 32, canary)):
        for path in ("/orders/default", "/orders/default?via=flask"):
            answer = requests.get(
                server.url + path,
                headers={"Authorization": f"Bearer {token}", "X-Config-Client-Id": INSTANCES[0]},
                timeout=5,
            )
            assert answer.status_code == 200 and answer.json()["version"] == expected, (token[0], path)


def test_a_deleted_canary_branch_sends_everyone_back_to_the_base(serve, repo_with_canary):
    repo = repo_with_canary
    server, base, canary = rolled_out(serve, repo, rollout_file(steps="[100]"))
    assert get(server, INSTANCES[0]).json()["version"] == canary
    rollouts = server.app.extensions["config_server"].rollouts
    rollouts.close()  # the loop stops: the request path still routes the cohort to the canary label
    repo.git("branch", "-D", "canary")
    assert rollouts.route("orders", "default", None, INSTANCES[0]).source == "canary"
    assert {get(server, i).json()["version"] for i in INSTANCES[:20]} == {base}
    assert "X-Config-Rollout" not in get(server, INSTANCES[0]).headers
    rollouts.tick()
    body = wait_for(lambda: requests.get(f"{server.url}/rollouts", timeout=5).json()["errors"], what="error")
    assert "unknown label 'canary'" in body[0]["message"]


def test_a_bad_edit_of_a_halted_rollout_keeps_it_halted(serve, repo_with_canary):
    repo = repo_with_canary
    good = rollout_file(steps="[100]")
    repo.commit({"rollouts/orders.yml": good}, "roll out")
    base, _ = versions(repo)
    server = serve(repo.path)
    wait_for(lambda: started(server), what="the rollout to start")
    requests.post(f"{server.url}/rollouts/orders/halt", json={"reason": "pager"}, timeout=5)
    repo.commit({"rollouts/orders.yml": good + "stepz: [1]\n"}, "a typo")
    wait_for(lambda: requests.get(f"{server.url}/rollouts", timeout=5).json()["errors"], what="the error")
    repo.commit({"rollouts/orders.yml": good}, "the typo fixed")
    halted = wait_for(lambda: started(server, "halted"), what="the rollout back, still halted")
    assert halted["haltReason"] == "pager (by 127.0.0.1)"
    assert get(server, INSTANCES[0]).json()["version"] == repo.head()


def test_rejections_are_counted_once_per_instance_up_to_the_threshold(serve, repo_with_canary):
    repo = repo_with_canary
    repo.commit(
        {"rollouts/orders.yml": rollout_file(steps="[100]").replace("rejected: 1", "rejected: 2")}, "roll"
    )
    _, canary = versions(repo)
    server = serve(repo.path, proxy_hops=1)
    wait_for(lambda: started(server), what="the rollout to start")
    rollouts = server.app.extensions["config_server"].rollouts
    rejected = {"X-Config-Rejected": f'{canary}; reason="no"'}
    # a rejection counts from an instance the canary served before, once per caller (address)
    get(server, INSTANCES[0])
    for _ in range(3):
        get(server, INSTANCES[0], **rejected)
        rollouts.tick()
    status = started(server)
    assert status is not None and [r["instance"] for r in status["rejections"]] == [INSTANCES[0]]
    get(server, INSTANCES[1], **{"X-Forwarded-For": "10.0.0.2"})
    get(server, INSTANCES[1], **rejected, **{"X-Forwarded-For": "10.0.0.2"})
    rollouts.tick()
    halted = started(server, "halted")
    assert halted["haltReason"].startswith(f"2 cohort instances rejected {canary[:12]}")
    assert sorted(r["instance"] for r in halted["rejections"]) == sorted(INSTANCES[:2])


def test_a_rollout_on_another_base_label_starts_once_that_label_is_asked_for(serve, repo_with_canary):
    repo = repo_with_canary
    repo.git("checkout", "-q", "-b", "stable")
    stable = repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out on stable")
    repo.git("checkout", "-q", "main")
    _, canary = versions(repo)
    server = serve(repo.path)

    def version(label: str) -> str:
        return requests.get(
            f"{server.url}/orders/default/{label}", headers={"X-Config-Client-Id": INSTANCES[0]}, timeout=5
        ).json()["version"]

    assert version("stable") == stable  # the first request names the label: the loop looks there
    wait_for(lambda: version("stable") == canary, what="the rollout on stable")
    assert get(server, INSTANCES[0]).json()["version"] == repo.git("rev-parse", "main")  # main has none
    assert started(server)["label"] == "stable"
    assert version(stable) == stable  # a commit id is never part of a rollout


def test_two_replicas_sharing_redis_agree_and_a_halt_at_one_reaches_the_other(
    serve, repo_with_canary, redis_server, tmp_path
):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[50]")}, "roll out")
    base, canary = versions(repo)
    replicas = [serve(repo.path, redis=redis_server.url, data_dir=str(tmp_path / f"r{n}")) for n in range(2)]
    for replica in replicas:
        wait_for(lambda replica=replica: started(replica), what="the rollout on each replica")
    assert started(replicas[0])["started"] == started(replicas[1])["started"]
    cohorts = [{i for i in INSTANCES[:60] if get(r, i).json()["version"] == canary} for r in replicas]
    assert cohorts[0] == cohorts[1] == expected_cohort(50) & set(INSTANCES[:60])
    requests.post(f"{replicas[0].url}/rollouts/orders/halt", json={"reason": "pager"}, timeout=5)
    wait_for(lambda: started(replicas[1], "halted"), what="the halt on the other replica")
    assert {get(replicas[1], i).json()["version"] for i in INSTANCES[:60]} == {base}


def test_a_halt_waits_for_a_busy_rollout_state_only_so_long_then_503(serve, repo_with_canary, monkeypatch):
    """A halt request never waits without end behind another tick: here the tick lock is held
    (as a tick stuck on a slow repository would hold it) and the wait cut to 0.2 s for the test."""
    import config_server.delivery.rollout_runner

    server, _, _ = rolled_out(serve, repo_with_canary, rollout_file(steps="[50]"))
    monkeypatch.setattr(config_server.delivery.rollout_runner, "TICK_WAIT_SECONDS", 0.2)
    rollouts = server.app.extensions["config_server"].rollouts
    with rollouts._tick_lock:
        busy = requests.post(f"{server.url}/rollouts/orders/halt", json={"reason": "test"}, timeout=5)
    assert busy.status_code == 503 and "busy" in busy.json()["message"]
    assert requests.post(f"{server.url}/rollouts/orders/halt", json={"reason": "test"}, timeout=5).ok


def get_at(server, label: str, instance: str) -> requests.Response:
    return requests.get(
        f"{server.url}/orders/default/{label}", headers={"X-Config-Client-Id": instance}, timeout=5
    )


def test_watching_more_labels_than_the_cap_is_said_once(serve, repo_with_canary, monkeypatch, caplog):
    """Rollout files are looked for at the labels asked for, up to MAX_LABELS (cut to 1 here):
    the label beyond it is not watched, and the log says so once."""
    import config_server.delivery.rollout_runner

    repo = repo_with_canary
    repo.git("branch", "release-1")
    repo.git("branch", "release-2")
    monkeypatch.setattr(config_server.delivery.rollout_runner, "MAX_LABELS", 1)
    server = serve(repo.path)
    for label in ("release-1", "release-2", "canary"):
        assert get_at(server, label, INSTANCES[0]).status_code == 200
    said = [r for r in caplog.records if "labels besides the default" in r.getMessage()]
    assert len(said) == 1 and "'release-2'" in said[0].getMessage()
    assert "release-2" not in server.app.extensions["config_server"].rollouts._scanned_labels()


def test_a_rollout_token_sees_and_halts_only_the_applications_of_its_globs(
    serve, repo_with_canary, tmp_path: Path
):
    repo = repo_with_canary
    repo.commit(
        {
            "payments.yml": "p: 1\n",
            "rollouts/orders.yml": rollout_file(steps="[100]"),
            "rollouts/payments.yml": rollout_file(steps="[100]"),
        },
        "two rollouts",
    )
    auth = write_auth_file(
        tmp_path,
        ("orders-bot", "o" * 32, "roles: [rollout], applications: [orders]"),
        ("ops", "a" * 32, "roles: [admin]"),
    )
    server = serve(repo.path, auth_file=auth)
    bot, ops = {"Authorization": "Bearer " + "o" * 32}, {"Authorization": "Bearer " + "a" * 32}

    def running(headers: dict[str, str]) -> list[str]:
        body = requests.get(f"{server.url}/rollouts", headers=headers, timeout=5).json()
        return sorted(r["application"] for r in body["rollouts"] if r["state"] == "running")

    wait_for(lambda: running(ops) == ["orders", "payments"], what="both rollouts to start")
    assert running(bot) == ["orders"]
    other = requests.get(f"{server.url}/rollouts?application=payments", headers=bot, timeout=5)
    assert other.status_code == 403 and "payments" in other.json()["message"]
    halt = requests.post(f"{server.url}/rollouts/payments/halt", headers=bot, json={"reason": "x"}, timeout=5)
    assert halt.status_code == 403
    assert running(ops) == ["orders", "payments"]
    mine = requests.post(f"{server.url}/rollouts/orders/halt", headers=bot, json={"reason": "x"}, timeout=5)
    assert mine.status_code == 200 and running(ops) == ["payments"]


def test_a_cross_site_form_cannot_halt_a_rollout_with_the_browsers_basic_credentials(
    serve, repo_with_canary, tmp_path: Path
):
    """The console is opened with HTTP Basic, which the browser re-sends by itself: a page of
    another origin that auto-submits a form to the halt endpoint must change nothing."""
    import base64

    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    auth = write_auth_file(tmp_path, ("ops", "a" * 32, "roles: [admin]"))
    server = serve(repo.path, auth_file=auth)
    basic = {"Authorization": "Basic " + base64.b64encode(b"ops:" + b"a" * 32).decode()}
    ops = {"Authorization": "Bearer " + "a" * 32}
    url = f"{server.url}/rollouts/orders/halt"

    def state() -> str | None:
        body = requests.get(f"{server.url}/rollouts", headers=ops, timeout=5).json()
        return body["rollouts"][0]["state"] if body["rollouts"] else None

    wait_for(lambda: state() == "running", what="the rollout to start")
    form = {**basic, "Content-Type": "text/plain"}
    cross_site = [
        {**form, "Origin": "https://attacker.example", "Sec-Fetch-Site": "cross-site"},
        {**form, "Origin": "https://attacker.example"},
        {**form, "Sec-Fetch-Site": "same-site"},
        {**form, "Origin": "null"},
        form,  # a browser that sends neither header: Basic with a form's content type
        basic,  # a body-less fetch() is a simple request too
        {**basic, "Content-Type": "application/x-www-form-urlencoded"},
        {**basic, "Content-Type": "multipart/form-data; boundary=x"},
    ]
    for headers in cross_site:
        answer = requests.post(url, data=b'{"reason": "csrf"}', headers=headers, timeout=5)
        assert answer.status_code == 403, headers
        assert "cross-site" in answer.json()["message"] or "Basic" in answer.json()["message"]
    assert state() == "running"
    # what a cross-site form cannot send passes: JSON with Basic from the server's own origin
    own = {**basic, "Content-Type": "application/json", "Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    answer = requests.post(url, data=b'{"reason": "by hand"}', headers=own, timeout=5)
    assert answer.status_code == 200 and state() == "halted"


def test_machine_clients_halt_unchanged_and_an_open_server_refuses_other_origins(serve, repo_with_canary):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    server = serve(repo.path)
    wait_for(lambda: started(server), what="the rollout to start")
    url = f"{server.url}/rollouts/orders/halt"
    cross = requests.post(url, json={"reason": "csrf"}, headers={"Origin": "http://evil.example"}, timeout=5)
    assert cross.status_code == 403 and started(server) is not None
    # curl without a body or a content type, as `config-server rollout halt` and Alertmanager do
    assert requests.post(url, timeout=5).status_code == 200
    assert started(server, "halted")["haltReason"] == "halted by hand (by 127.0.0.1)"


def test_one_caller_inventing_cohort_ids_cannot_halt_a_rollout(serve, repo_with_canary):
    """Cohort membership is a public hash, so a reader finds cohort ids offline. Its forged
    rejections count only for ids the canary served on an earlier request, and all of them as one
    caller (one address, one token): `halt-on.rejected` counts callers, not ids."""
    repo = repo_with_canary
    content = rollout_file(steps="[50]").replace("rejected: 1", "rejected: 3")
    repo.commit({"rollouts/orders.yml": content}, "roll out")
    _, canary = versions(repo)
    server = serve(repo.path, proxy_hops=1)
    wait_for(lambda: started(server), what="the rollout to start")
    rollouts = server.app.extensions["config_server"].rollouts
    cohort = sorted(expected_cohort(50))
    forged = {"X-Config-Rejected": f'{canary}; reason="forged"', "X-Forwarded-For": "203.0.113.7"}
    for instance in cohort[:6]:  # a rejection on an id's first request: it was never served the canary
        assert get(server, instance, **forged).json()["version"] == canary
    rollouts.tick()
    assert started(server)["rejections"] == []
    for instance in cohort[:6]:  # served before now, but six ids of one caller count once
        get(server, instance, **forged)
    rollouts.tick()
    status = started(server)
    assert status is not None and len(status["rejections"]) == 6
    for n, instance in enumerate(cohort[6:8]):  # two more callers, each with its own address
        address = {"X-Forwarded-For": f"10.0.0.{n + 1}"}
        get(server, instance, **address)
        get(server, instance, **address, **{"X-Config-Rejected": f'{canary}; reason="real"'})
    rollouts.tick()
    halted = started(server, "halted")
    assert halted is not None and halted["haltReason"].startswith(
        f"3 cohort instances rejected {canary[:12]}"
    )


def test_a_rejection_waits_for_the_canary_answer_another_worker_has_not_stored_yet(serve, repo_with_canary):
    """The answer before the rejection may have come from another worker, whose loop writes it to
    the store on its next tick: the rejection waits (CONFIRM_SECONDS) instead of being dropped."""
    repo = repo_with_canary
    server, _, canary = rolled_out(serve, repo, rollout_file(steps="[100]"))
    state = server.app.extensions["config_server"]
    rollouts = state.rollouts
    now = time.time()
    assert rollouts.note_rejection("orders", None, INSTANCES[0], canary, "bad", canary, "svc@10.0.0.1", now)
    rollouts.tick()
    assert started(server) is not None and started(server)["rejections"] == []
    key = ("orders", "main", "canary")
    state.store.record_canary_served(*key, [(INSTANCES[0], canary, now - 1)])  # the other worker's write
    rollouts.tick()
    halted = started(server, "halted")
    assert halted is not None and [r["instance"] for r in halted["rejections"]] == [INSTANCES[0]]


def test_a_rejection_reason_is_shown_to_readers_of_the_application_only_and_never_logged(
    serve, repo_with_canary, tmp_path: Path, caplog
):
    """A service's own validator may quote a value in its reason: the reason goes to the store
    and to readers of the application, not to a rollout-only token and not into the log."""
    import logging

    caplog.set_level(logging.INFO)
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    _, canary = versions(repo)
    auth = write_auth_file(
        tmp_path,
        ("orders-service", "s" * 32, "roles: [read]"),
        ("release-bot", "b" * 32, "roles: [rollout], applications: [orders]"),
        ("orders-ops", "o" * 32, "roles: [read, rollout], applications: [orders]"),
    )
    audit = tmp_path / "audit.log"
    server = serve(repo.path, auth_file=auth, audit_log=str(audit))
    service = {"Authorization": "Bearer " + "s" * 32}
    bot, ops = {"Authorization": "Bearer " + "b" * 32}, {"Authorization": "Bearer " + "o" * 32}
    wait_for(lambda: requests.get(f"{server.url}/rollouts", headers=bot, timeout=5).json()["rollouts"])
    secret = "db.password: 'hunter2-s3cr3t' is too short"
    get(server, INSTANCES[0], **service)
    get(server, INSTANCES[0], **service, **{"X-Config-Rejected": f'{canary}; reason="{secret}"'})

    def halted(headers: dict[str, str]) -> dict | None:
        body = requests.get(f"{server.url}/rollouts", headers=headers, timeout=5).json()
        return next((r for r in body["rollouts"] if r["state"] == "halted"), None)

    for_bot = wait_for(lambda: halted(bot), what="the halt")
    assert "hunter2" not in json.dumps(for_bot)
    assert for_bot["rejections"][0]["instance"] == INSTANCES[0] and for_bot["rejections"][0]["reason"] is None
    assert for_bot["haltReason"].startswith(f"1 cohort instance rejected {canary[:12]}: {INSTANCES[0]}")
    for_ops = halted(ops)
    assert for_ops["rejections"][0]["reason"] == secret and secret in for_ops["haltReason"]
    again = requests.post(f"{server.url}/rollouts/orders/halt", headers=bot, json={"reason": "x"}, timeout=5)
    assert again.status_code == 200 and "hunter2" not in again.text
    server.app.extensions["config_server"].audit.flush()
    assert "halted" in caplog.text and "hunter2" not in caplog.text
    assert "hunter2" not in audit.read_text()


HOSTILE_FILES = {
    "bake of 400 digits": "canary: canary\nsteps: [10]\nbake: " + "9" * 400 + "\n",
    "id of 5000 digits": "canary: canary\nsteps: [10]\nbake: 1h\nid: " + "7" * 5000 + "\n",
    "steps nested 3000 deep": "canary: canary\nbake: 1h\nsteps: " + "[" * 3000 + "]" * 3000 + "\n",
}


@pytest.mark.parametrize("hostile", HOSTILE_FILES.values(), ids=HOSTILE_FILES.keys())
def test_one_hostile_rollout_file_is_its_own_error_and_the_others_run(
    serve, repo_with_canary, hostile, caplog
):
    """Before: OverflowError, ValueError or RecursionError aborted every tick, so no rollout
    started, a manual halt answered 500 and a traceback was logged every 0.2 s."""
    repo = repo_with_canary
    repo.commit(
        {"rollouts/orders.yml": rollout_file(steps="[100]"), "rollouts/payments.yml": hostile}, "rollouts"
    )
    base, canary = versions(repo)
    server = serve(repo.path)
    wait_for(lambda: started(server), what="the good rollout to start")
    assert get(server, INSTANCES[0]).json()["version"] == canary
    health = requests.get(f"{server.url}/health", timeout=5).json()
    [error] = health["details"]["rollouts"]["errors"]
    assert error["application"] == "payments" and error["file"] == "rollouts/payments.yml"
    halt = requests.post(f"{server.url}/rollouts/orders/halt", json={"reason": "pager"}, timeout=5)
    assert halt.status_code == 200 and halt.json()["halted"] is True
    assert get(server, INSTANCES[0]).json()["version"] == base
    assert not [r for r in caplog.records if r.exc_info], "no traceback logged"


def test_validate_reports_a_hostile_rollout_file_and_checks_the_rest(repo_with_canary):
    from click.testing import CliRunner

    from config_server.cli import main

    repo = repo_with_canary
    repo.commit(
        {
            "rollouts/payments.yml": HOSTILE_FILES["steps nested 3000 deep"],
            "rollouts/orders.yml": "canary: nope\nsteps: [10]\nbake: 1h\n",
        },
        "rollouts",
    )
    result = CliRunner().invoke(
        main, ["validate", str(repo.path), "--rev", "main"], env={"ENCRYPT_KEY": None}
    )
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout.splitlines() == [
        "rollouts/orders.yml: orders/*: canary: unknown label 'nope'",
        "rollouts/payments.yml:3: payments/*: nested deeper than 16 levels",
    ]


def rollout_key(application: str, rollout_id: str = "canary") -> str:
    return "config-server:rollout:" + "\x1f".join((application, "main", rollout_id))


def test_an_unreadable_record_in_the_state_store_is_that_rollouts_error(
    serve, repo_with_canary, redis_server, tmp_path
):
    """Before: `started not-a-number` made float() raise out of the Redis store, so every tick
    failed (no other rollout started) and a manual halt answered 500."""
    import redis

    from config_server.state.redis import RedisStateStore

    repo = repo_with_canary
    repo.commit(
        {
            "rollouts/orders.yml": rollout_file(steps="[100]"),
            "rollouts/payments.yml": rollout_file(steps="[100]"),
        },
        "rollouts",
    )
    repo.commit({"payments.yml": "message: base\n"}, "payments")
    base, canary = versions(repo)
    RedisStateStore(redis_server.url).start_rollout("orders", "main", "canary", time.time())
    redis.Redis.from_url(redis_server.url).hset(rollout_key("orders"), "started", "not-a-number")
    server = serve(repo.path, redis=redis_server.url)
    body = wait_for(lambda: requests.get(f"{server.url}/rollouts", timeout=5).json(), what="status")
    assert [r["application"] for r in body["rollouts"]] == ["payments"]  # the other rollout runs
    [error] = body["errors"]
    assert error["application"] == "orders" and "'not-a-number'" in error["message"]
    assert (
        "cannot be read"
        in requests.get(f"{server.url}/health", timeout=5).json()["details"]["rollouts"]["errors"][0][
            "message"
        ]
    )
    assert get(server, INSTANCES[0]).json()["version"] == base  # its cohort gets the base label
    payments = requests.get(
        f"{server.url}/payments/default", headers={"X-Config-Client-Id": INSTANCES[0]}, timeout=5
    )
    assert payments.json()["version"] == canary
    halt = requests.post(f"{server.url}/rollouts/orders/halt", json={"reason": "pager"}, timeout=5)
    assert halt.status_code == 200 and halt.json()["haltReason"] == "pager (by 127.0.0.1)"
    body = requests.get(f"{server.url}/rollouts?application=orders", timeout=5).json()
    assert [r["state"] for r in body["rollouts"]] == ["halted"] and body["errors"] == []


def cohort_headers(replicas, instance: str) -> list[str]:
    """The X-Config-Rollout header (or '') each replica answers the cohort instance with."""
    return [get(replica, instance).headers.get("X-Config-Rollout", "") for replica in replicas]


def test_a_halt_survives_a_redis_restart_and_a_flush(serve, repo_with_canary, redis_server, tmp_path):
    """Redis without persistence (docs/deployment.md): before, a restart lost the halted record,
    the next tick started the rollout afresh and the cohort got the halted canary again."""
    import redis

    from config_server.state.redis import RedisStateStore

    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    base, _ = versions(repo)
    replicas = [serve(repo.path, redis=redis_server.url, data_dir=str(tmp_path / f"r{n}")) for n in range(2)]
    for replica in replicas:
        wait_for(lambda replica=replica: started(replica), what="the rollout on each replica")
    requests.post(f"{replicas[0].url}/rollouts/orders/halt", json={"reason": "pager"}, timeout=5)
    for replica in replicas:
        wait_for(lambda replica=replica: started(replica, "halted"), what="the halt on each replica")
    answered: list[str] = []

    def halted_in_redis() -> bool:
        answered.extend(cohort_headers(replicas, INSTANCES[0]))  # served all along
        records = RedisStateStore(redis_server.url).rollouts()
        return [(r.application, r.halt_reason) for r in records] == [("orders", "pager (by 127.0.0.1)")]

    redis_server.stop()
    redis_server.start()  # empty: no persistence
    wait_for(halted_in_redis, what="the halt back in the restarted Redis")
    redis.Redis.from_url(redis_server.url).flushall()
    wait_for(halted_in_redis, what="the halt back after a flush")
    assert answered and not [a for a in answered if "state=running" in a]
    for replica in replicas:
        assert started(replica, "halted")["haltReason"] == "pager (by 127.0.0.1)"
        assert started(replica) is None
        assert get(replica, INSTANCES[0]).json()["version"] == base


def test_a_halt_survives_a_restart_of_the_replica_and_redis_together(
    repo_with_canary, redis_server, tmp_path
):
    """Each machine keeps a durable copy of its rollouts' records under --data-dir: a replica
    restarted while Redis lost everything puts the halt back."""
    from config_server.state.redis import RedisStateStore

    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    base, _ = versions(repo)
    data = tmp_path / "data"
    for round_ in range(2):
        app = create_app(Settings(repo=str(repo.path), data_dir=str(data), redis=redis_server.url))
        server = LiveServer(app)
        try:
            if round_ == 0:
                wait_for(lambda server=server: started(server), what="the rollout to start")
                requests.post(f"{server.url}/rollouts/orders/halt", json={"reason": "pager"}, timeout=5)
            assert started(server, "halted")["haltReason"] == "pager (by 127.0.0.1)"
            assert "X-Config-Rollout" not in get(server, INSTANCES[0]).headers
            assert get(server, INSTANCES[0]).json()["version"] == base
        finally:
            server.stop()
            app.extensions["config_server"].close()
        if round_ == 0:
            redis_server.stop()
            redis_server.start()
            assert RedisStateStore(redis_server.url).rollouts() == []


def test_status_after_a_halt_shows_the_cohort_as_it_was_and_who_refused(serve, repo_with_canary):
    """Before: right after 8 cohort instances refused the canary, `rollout status` said `cohort 0
    of 0 matching (0 instances)` (the inventory not yet written, the step frozen) and named one
    refuser; the rejections queued before the halt were dropped."""
    from click.testing import CliRunner

    from config_server.cli import main

    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    _, canary = versions(repo)
    server = serve(repo.path, proxy_hops=1)
    wait_for(lambda: started(server), what="the rollout to start")
    state = server.app.extensions["config_server"]
    state.inventory.close()  # nothing reaches the inventory: as right after the refusals
    refusers = INSTANCES[:8]
    for n, instance in enumerate(refusers):
        assert get(server, instance, **{"X-Forwarded-For": f"10.0.0.{n}"}).json()["version"] == canary
    for n, instance in enumerate(refusers):
        rejected = {"X-Config-Rejected": f'{canary}; reason="no"', "X-Forwarded-For": f"10.0.0.{n}"}
        get(server, instance, **rejected)
    state.rollouts.tick()
    halted = wait_for(lambda: started(server, "halted"), what="the halt")
    assert sorted(r["instance"] for r in halted["rejections"]) == sorted(refusers)
    assert halted["cohort"] == 8 and halted["cohortInstances"] == sorted(refusers)
    status = CliRunner().invoke(main, ["rollout", "status", "orders", "--server", server.url])
    lines = status.stdout.splitlines()
    assert "  cohort     8 served the canary before the halt, 8 refused" in lines
    assert sorted(line for line in lines if line.startswith("  rejected")) == sorted(
        f"  rejected   {i}: no" for i in refusers
    )


def test_rollout_counts_group_instances_running_the_newest_settings_under_the_newest(serve, repo_with_canary):
    """A commit to another application's file moves the base label: the base instances still run
    its settings, so the rollout counts them under the new base version (issue 20 item 1)."""
    repo = repo_with_canary
    server, base, canary = rolled_out(serve, repo, rollout_file(steps="[10, 100]"))
    outside = [i for i in INSTANCES[:30] if i not in expected_cohort(10)][:10]
    inside = sorted(expected_cohort(10))[:3]
    for instance in outside:
        assert get(server, instance).json()["version"] == base
    for instance in inside:
        assert get(server, instance).json()["version"] == canary
    moved = repo.commit({"payments.yml": "p: 2\n"}, "payments only")
    wait_for(lambda: started(server)["baseVersion"] == moved, what="the base label to move")
    for instance in outside:
        assert get(server, instance, **{"X-Config-Applied": base}).json()["version"] == moved
    for instance in inside:
        get(server, instance, **{"X-Config-Applied": canary})
    server.app.extensions["config_server"].inventory.flush()
    body = started(server)
    assert body["versions"] == {moved: 10, canary: 3}
    page = requests.get(f"{server.url}/console/app/orders", timeout=5).text
    assert f'<tr class="rollout-version" data-version="{moved}"><td><code title="{moved}">' in page


def test_the_rollout_commands_read_the_caller_variables_and_the_old_names_with_a_warning(
    serve, repo_with_canary, tmp_path: Path
):
    """One scheme (issue 20 item 9): CONFIG_CLIENT_SERVERS and CONFIG_CLIENT_TOKEN, as
    config-client reads them; CONFIG_SERVER_URL/TOKEN (which look like server settings) still
    work, with a deprecation warning naming the new variable."""
    from click.testing import CliRunner

    from config_server.cli import main

    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    auth = write_auth_file(tmp_path, ("release-bot", "b" * 32, "roles: [rollout]"))
    server = serve(repo.path, auth_file=auth)
    unset = {"CONFIG_SERVER_URL": None, "CONFIG_SERVER_TOKEN": None}
    new = {
        **unset,
        "CONFIG_CLIENT_SERVERS": f"{server.url},http://127.0.0.1:9",
        "CONFIG_CLIENT_TOKEN": "b" * 32,
    }
    status = CliRunner().invoke(main, ["rollout", "status", "orders"], env=new)
    assert status.exit_code == 0, status.output
    assert status.stdout.startswith("orders at main: running")
    assert "deprecated" not in status.stderr

    old = {"CONFIG_CLIENT_SERVERS": None, "CONFIG_CLIENT_TOKEN": None}
    old |= {"CONFIG_SERVER_URL": server.url, "CONFIG_SERVER_TOKEN": "b" * 32}
    halt = CliRunner().invoke(main, ["rollout", "halt", "orders", "--reason", "pager"], env=old)
    assert halt.exit_code == 0, halt.output
    assert halt.stdout == "orders at main: halted (pager (by release-bot))\n"
    assert "warning: CONFIG_SERVER_URL is deprecated: set CONFIG_CLIENT_SERVERS instead" in halt.stderr
    assert "warning: CONFIG_SERVER_TOKEN is deprecated: set CONFIG_CLIENT_TOKEN instead" in halt.stderr

    both = {**new, "CONFIG_SERVER_URL": "http://127.0.0.1:9", "CONFIG_SERVER_TOKEN": "x" * 32}
    status = CliRunner().invoke(main, ["rollout", "status", "orders"], env=both)
    assert status.exit_code == 0 and "halted" in status.stdout.splitlines()[0], status.output
    assert "deprecated" not in status.stderr  # the new names win, silently


def test_a_halt_on_an_open_server_names_the_callers_address(serve, repo_with_canary):
    """On an open server every caller is the anonymous client: the halt says who by the caller's
    address (behind `--proxy-hops`, the forwarded one), not "anonymous" (issue 20 item 11)."""
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    server = serve(repo.path, proxy_hops=1)
    wait_for(lambda: started(server), what="the rollout to start")
    halt = requests.post(
        f"{server.url}/rollouts/orders/halt",
        json={"reason": "pager"},
        headers={"X-Forwarded-For": "203.0.113.7"},
        timeout=5,
    )
    assert halt.status_code == 200 and halt.json()["haltReason"] == "pager (by 203.0.113.7)"
    assert started(server, "halted")["haltReason"] == "pager (by 203.0.113.7)"
