"""Resume and advance a rollout (docs/rollouts.md, "Halt, resume, advance"): the merge rule of
the records, the schedule they move, and real servers over HTTP (SQLite, restarts, two replicas
sharing a Redis that restarts and is flushed), the CLI, the audit log and the console."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from config_server import create_app
from config_server.content.rollout_plan import COMPLETE, HALTED, RUNNING, RolloutState, parse_rollout, phase
from config_server.settings import Settings
from config_server.state.base import ScheduleAnchor, restored_fields
from tests.helpers import GitRepo, LiveServer, wait_for
from tests.server.test_rollouts import (
    INSTANCES,
    expected_cohort,
    get,
    rollout_file,
    started,
    versions,
    write_auth_file,
)


@pytest.fixture
def repo_with_canary(repo: GitRepo) -> GitRepo:
    """main: `message: base`; branch `canary`: `message: canary`; back on main (as test_rollouts)."""
    repo.commit({"orders.yml": "message: base\n"}, "base")
    repo.git("checkout", "-q", "-b", "canary")
    repo.commit({"orders.yml": "message: canary\n"}, "canary")
    repo.git("checkout", "-q", "main")
    return repo


def at(rollout, state: RolloutState, now: float) -> tuple[str, int, float, float | None]:
    """The phase as a plain tuple: state, step index, percent, next step at."""
    current = phase(rollout, state, now)
    return current.state, current.step, current.percent, current.next_step_at


# --- the merge rule: every copy of a record converges, and only moves forward ----------------------


def test_a_resume_newer_than_the_halt_is_not_undone_by_a_copy_from_before_it():
    resumed = restored_fields((100.0, 150.0, "pager", 200.0, 200.0, 0, "resumed"), 100.0, 150.0, "pager")
    assert resumed[:4] == (100.0, 150.0, "pager", 200.0)  # the older copy brings no halt back
    assert resumed[4] == ScheduleAnchor(200.0, 0, "resumed")
    lost = restored_fields(None, 100.0, 150.0, "pager", 200.0, ScheduleAnchor(200.0, 0, "resumed"))
    assert lost[:4] == (100.0, 150.0, "pager", 200.0)  # a store that lost it gets the resume back


def test_a_halt_after_a_resume_halts_again_and_the_first_live_halt_wins():
    stored = (100.0, 150.0, "pager", 200.0, 200.0, 0, "resumed")
    assert restored_fields(stored, 100.0, 250.0, "again")[1:4] == (250.0, "again", 200.0)
    halted_again = (100.0, 250.0, "again", 200.0, 200.0, 0, "resumed")
    assert restored_fields(halted_again, 100.0, 260.0, "later")[1:3] == (250.0, "again")
    # without a resume, the stored halt stays (as before resume existed)
    assert restored_fields((100.0, 180.0, "first"), 100.0, 170.0, "known")[1:3] == (180.0, "first")


def test_the_later_schedule_move_wins_and_an_unreadable_halt_stays_a_halt():
    older, newer = ScheduleAnchor(200.0, 1, "advanced"), ScheduleAnchor(300.0, 2, "advanced again")
    assert (
        restored_fields(
            (100.0, None, None, None, 300.0, 2, "advanced again"), 100.0, None, None, None, older
        )[4]
        == newer
    )
    start, halt, _, resumed, _ = restored_fields((100.0, "garbage", None, 200.0), 100.0, None, None)
    assert halt is not None and resumed == 200.0 and halt >= resumed  # still halted


def test_phase_follows_the_anchor_a_resume_or_an_advance_sets():
    rollout = parse_rollout("orders", b"canary: canary\nsteps: [10, 50, 100]\nbake: 100s\n")
    halted = RolloutState(0.0, halted_at=150.0)
    assert at(rollout, halted, 1000.0)[:2] == (HALTED, 1)
    resumed = RolloutState(0.0, 150.0, None, resumed_at=900.0, anchor_at=900.0, anchor_step=1)
    assert at(rollout, resumed, 950.0) == (RUNNING, 1, 50, 1000.0)  # the halted step bakes again
    assert at(rollout, resumed, 1050.0)[:3] == (RUNNING, 2, 100)
    advanced = RolloutState(0.0, anchor_at=20.0, anchor_step=2)
    assert at(rollout, advanced, 30.0) == (RUNNING, 2, 100, 120.0)
    assert at(rollout, RolloutState(0.0, anchor_at=20.0, anchor_step=3), 30.0)[0] == COMPLETE


# --- real servers ------------------------------------------------------------------------------------


def cohort_versions(server, instances: list[str]) -> set[str]:
    return {get(server, i).json()["version"] for i in instances}


def test_halt_resume_advance_over_http_with_roles_and_audit_lines(serve, repo_with_canary, tmp_path: Path):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[10, 50, 100]")}, "roll out")
    base, canary = versions(repo)
    auth = write_auth_file(
        tmp_path,
        ("reader", "r" * 32, "roles: [read]"),
        ("alice", "a" * 32, "roles: [release, read]"),
        ("bot", "b" * 32, "roles: [rollout, read]"),
    )
    audit = tmp_path / "audit.log"
    server = serve(repo.path, auth_file=auth, audit_log=str(audit))
    alice, bot, reader = ({"Authorization": "Bearer " + c * 32} for c in "abr")
    url = f"{server.url}/rollouts/orders"
    wait_for(lambda: requests.get(f"{server.url}/rollouts", headers=bot, timeout=5).json()["rollouts"])
    cohort10 = sorted(expected_cohort(10))

    def status() -> dict:
        return requests.get(f"{server.url}/rollouts", headers=alice, timeout=5).json()["rollouts"][0]

    def ask(instance: str) -> str:
        answer = requests.get(
            f"{server.url}/orders/default", headers={**alice, "X-Config-Client-Id": instance}, timeout=5
        )
        return answer.json()["version"]

    assert requests.post(f"{url}/resume", headers=reader, timeout=5).status_code == 403
    assert requests.post(f"{url}/resume", timeout=5).status_code == 401
    not_halted = requests.post(f"{url}/resume", headers=alice, json={"reason": "x"}, timeout=5)
    assert not_halted.status_code == 409 and "is running, not halted" in not_halted.json()["message"]
    halt = requests.post(f"{url}/halt", headers=alice, json={"reason": "error rate"}, timeout=5)
    assert (
        halt.status_code == 200 and halt.json()["haltReason"] == "error rate (by alice)"
    )  # release may halt
    assert {ask(i) for i in cohort10} == {base}
    assert requests.post(f"{url}/advance", headers=bot, timeout=5).status_code == 409  # halted: resume first
    resume = requests.post(f"{url}/resume", headers=bot, json={"reason": "canary fixed"}, timeout=5)
    assert resume.status_code == 200, resume.text
    assert resume.json()["state"] == "running" and resume.json()["step"] == 10
    assert resume.json()["lastMove"]["note"] == "resumed by bot: canary fixed"
    assert {ask(i) for i in cohort10} == {canary}  # the cohort gets the canary again, at once
    shown = status()
    assert shown["state"] == "running" and shown["haltReason"] == "error rate (by alice)"  # history
    assert shown["resumedAt"] == resume.json()["resumedAt"] and 3590 < shown["secondsToNextStep"] <= 3600
    advance = requests.post(f"{url}/advance", headers=alice, json={"reason": "looks good"}, timeout=5)
    assert advance.status_code == 200 and advance.json()["step"] == 50
    assert {ask(i) for i in sorted(expected_cohort(50))} == {canary}
    assert status()["lastMove"] == {
        "at": advance.json()["lastMove"]["at"],
        "stepIndex": 1,
        "note": "advanced by alice: looks good",
    }
    requests.post(f"{url}/advance", headers=alice, timeout=5)
    last = requests.post(f"{url}/advance", headers=alice, json={"reason": "done"}, timeout=5)
    assert last.json()["state"] == "complete"
    assert requests.post(f"{url}/advance", headers=alice, timeout=5).status_code == 409
    server.app.extensions["config_server"].audit.flush()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    moves = [
        (e.get("action"), e["client"], e.get("reason"))
        for e in lines
        if e["event"] == "rollout" and e["status"] == 200 and e["method"] == "POST"
    ]
    assert moves == [
        ("halt", "alice", None),
        ("resume", "bot", "canary fixed"),
        ("advance", "alice", "looks good"),
        ("advance", "alice", "advanced by hand"),
        ("advance", "alice", "done"),
    ]


def test_a_resume_survives_a_restart_and_the_halt_does_not_come_back(repo_with_canary, tmp_path):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    _, canary = versions(repo)
    data = tmp_path / "data"
    for round_ in range(2):
        app = create_app(Settings(repo=str(repo.path), data_dir=str(data)))
        server = LiveServer(app)
        try:
            if round_ == 0:
                wait_for(lambda server=server: started(server), what="the rollout to start")
                requests.post(f"{server.url}/rollouts/orders/halt", json={"reason": "bad"}, timeout=5)
                assert started(server, "halted")
                requests.post(f"{server.url}/rollouts/orders/resume", json={"reason": "ok"}, timeout=5)
            status = wait_for(lambda server=server: started(server), what="the rollout running")
            assert status["lastMove"]["note"] == "resumed by 127.0.0.1: ok"
            assert get(server, INSTANCES[0]).json()["version"] == canary
        finally:
            server.stop()
            app.extensions["config_server"].close()


def test_a_resume_at_one_replica_reaches_the_other_and_survives_redis_restarts_and_flushes(
    serve, repo_with_canary, redis_server, tmp_path
):
    """The replicas' memories (and durable copies) still hold the halt: a Redis that lost the
    record gets it back merged, with the resume, so it stays running."""
    import redis

    from config_server.state.redis import RedisStateStore

    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    base, canary = versions(repo)
    replicas = [serve(repo.path, redis=redis_server.url, data_dir=str(tmp_path / f"r{n}")) for n in range(2)]
    for replica in replicas:
        wait_for(lambda replica=replica: started(replica), what="the rollout on each replica")
    requests.post(f"{replicas[0].url}/rollouts/orders/halt", json={"reason": "pager"}, timeout=5)
    for replica in replicas:
        wait_for(lambda replica=replica: started(replica, "halted"), what="the halt on each replica")
    resume = requests.post(f"{replicas[1].url}/rollouts/orders/resume", json={"reason": "fixed"}, timeout=5)
    assert resume.status_code == 200, resume.text
    for replica in replicas:
        wait_for(lambda replica=replica: started(replica), what="the resume on each replica", timeout=2)
        assert get(replica, INSTANCES[0]).json()["version"] == canary

    def resumed_in_redis() -> bool:
        records = RedisStateStore(redis_server.url).rollouts()
        return [(r.halted, r.resumed_at is not None) for r in records] == [(False, True)]

    seen: set[str] = set()
    redis_server.stop()
    redis_server.start()  # empty: no persistence
    wait_for(resumed_in_redis, what="the resumed record back in the restarted Redis")
    seen |= {h for h in (get(r, INSTANCES[0]).headers.get("X-Config-Rollout", "") for r in replicas)}
    redis.Redis.from_url(redis_server.url).flushall()
    wait_for(resumed_in_redis, what="the resumed record back after a flush")
    time.sleep(0.5)  # a few ticks of each replica: nobody puts the halt back
    assert resumed_in_redis()
    for replica in replicas:
        assert started(replica, "halted") is None
        assert get(replica, INSTANCES[0]).json()["version"] == canary
    assert not [h for h in seen if "state=halted" in h]
    # and a halt after the resume is a halt again, everywhere
    requests.post(f"{replicas[0].url}/rollouts/orders/halt", json={"reason": "again"}, timeout=5)
    for replica in replicas:
        wait_for(lambda replica=replica: started(replica, "halted"), what="the new halt", timeout=2)
        assert get(replica, INSTANCES[0]).json()["version"] == base


def test_a_replica_restarted_with_redis_lost_keeps_the_resume_from_its_durable_copy(
    repo_with_canary, redis_server, tmp_path
):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    _, canary = versions(repo)
    data = tmp_path / "data"
    for round_ in range(2):
        app = create_app(Settings(repo=str(repo.path), data_dir=str(data), redis=redis_server.url))
        server = LiveServer(app)
        try:
            if round_ == 0:
                wait_for(lambda server=server: started(server), what="the rollout to start")
                requests.post(f"{server.url}/rollouts/orders/halt", json={"reason": "pager"}, timeout=5)
                requests.post(f"{server.url}/rollouts/orders/resume", json={"reason": "fixed"}, timeout=5)
            status = wait_for(lambda server=server: started(server), what="the rollout running")
            assert status["haltReason"] == "pager (by 127.0.0.1)" and status["resumedAt"] is not None
            assert get(server, INSTANCES[0]).json()["version"] == canary
        finally:
            server.stop()
            app.extensions["config_server"].close()
        if round_ == 0:
            redis_server.stop()
            redis_server.start()


def test_the_rollout_commands_resume_and_advance(serve, repo_with_canary):
    from click.testing import CliRunner

    from config_server.cli import main

    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[10, 100]")}, "roll out")
    server = serve(repo.path)
    wait_for(lambda: started(server), what="the rollout to start")
    cli = CliRunner()
    refused = cli.invoke(main, ["rollout", "resume", "orders", "--server", server.url])
    assert refused.exit_code == 1 and "409" in refused.output
    cli.invoke(main, ["rollout", "halt", "orders", "--server", server.url, "--reason", "pager"])
    resumed = cli.invoke(main, ["rollout", "resume", "orders", "--server", server.url, "--reason", "fixed"])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout == "orders at main: resumed, running at step 10%\n"
    advanced = cli.invoke(main, ["rollout", "advance", "orders", "--server", server.url])
    assert advanced.stdout == "orders at main: advanced, running at step 100%\n"
    status = cli.invoke(main, ["rollout", "status", "orders", "--server", server.url]).stdout.splitlines()
    assert "  was halted pager (by 127.0.0.1)" in status
    assert "  moved      advanced by 127.0.0.1: advanced from the command line" in status


def test_the_console_shows_who_is_signed_in_and_the_rollout_buttons(serve, repo_with_canary, tmp_path: Path):
    repo = repo_with_canary
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[10, 100]")}, "roll out")
    open_server = serve(repo.path)
    wait_for(lambda: started(open_server), what="the rollout to start")
    for path in ("/console/", "/console/app/orders"):
        page = requests.get(open_server.url + path, timeout=5).text
        assert "signed in as <strong>anonymous (open server)</strong>" in page
    page = requests.get(open_server.url + "/console/app/orders", timeout=5).text
    assert (
        'data-action="halt"' in page
        and 'data-action="advance"' in page
        and 'data-action="resume"' not in page
    )
    requests.post(f"{open_server.url}/rollouts/orders/halt", json={"reason": "pager"}, timeout=5)
    page = requests.get(open_server.url + "/console/app/orders", timeout=5).text
    assert 'data-action="resume"' in page and 'data-action="halt"' not in page
    auth = write_auth_file(tmp_path, ("ops-admin", "o" * 32, "roles: [admin]"))
    guarded = serve(repo.path, auth_file=auth, data_dir=str(tmp_path / "guarded"))
    for path in ("/console/", "/console/app/orders"):
        page = requests.get(guarded.url + path, auth=("ops-admin", "o" * 32), timeout=5).text
        assert "signed in as <strong>ops-admin</strong>" in page
