"""Pins (issue 22, section 2): an environment answered a version it served before, on every path,
at once (held long polls woken), whatever lands on git, until it is unpinned."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from config_server import create_app
from config_server.delivery.pin_sync import PinSync
from config_server.safety.pins import PinBoard
from config_server.settings import Settings
from config_server.state import PinRecord, SQLiteStateStore
from tests.helpers import GitRepo, LiveServer, http_ready, wait_for
from tests.server.test_rollouts import write_auth_file

PINNED = "X-Config-Pinned"


@pytest.fixture
def history(repo: GitRepo) -> tuple[GitRepo, str, str]:
    """main: `a: 1` (the good version), then `a: 2` (the bad one); returns the repo and both ids."""
    good = repo.commit(
        {"orders.yml": "a: 1\n", "orders-prod.yml": "region: eu\n", "payments.yml": "p: 1\n"}, "good"
    )
    bad = repo.commit({"orders.yml": "a: 2\n"}, "bad")
    return repo, good, bad


def value(response: requests.Response) -> object:
    """The `a` of an orders answer."""
    return next(s["source"]["a"] for s in response.json()["propertySources"] if "a" in s["source"])


def pin(
    url: str, path: str, version: str, reason: str = "a: 2 breaks checkout", **kwargs
) -> requests.Response:
    return requests.post(
        f"{url}/pins/{path}", json={"version": version, "reason": reason}, timeout=10, **kwargs
    )


def long_poll(url: str, etag: str, results: list, path: str = "/orders/prod") -> None:
    response = requests.get(f"{url}{path}?wait=30", headers={"If-None-Match": etag}, timeout=40)
    results.append((time.monotonic(), response))


def test_a_pinned_environment_is_answered_its_version_whatever_lands_until_it_is_unpinned(serve, history):
    repo, good, bad = history
    server = serve(repo.path)
    assert value(requests.get(f"{server.url}/orders/prod", timeout=5)) == 2
    answer = pin(server.url, "orders/prod", good[:10])
    assert answer.status_code == 201, answer.text
    assert answer.json() == {
        "application": "orders",
        "profiles": "prod",
        "label": "main",
        "version": good,
        "reason": "a: 2 breaks checkout",
        "by": "127.0.0.1",
        "at": answer.json()["at"],
    }
    for path in ("/orders/prod", "/orders/prod/main", "/orders/prod?via=flask"):
        pinned = requests.get(server.url + path, timeout=5)
        assert value(pinned) == 1 and pinned.json()["version"] == good, path
        assert pinned.headers[PINNED] == f"{good}; by=127.0.0.1", path
    # other environments of the application are not pinned: a pin names its profiles and label
    for path in ("/orders/default", "/orders/dev", "/orders/prod,eu"):
        other = requests.get(server.url + path, timeout=5)
        assert value(other) == 2 and PINNED not in other.headers, path
    newer = repo.commit({"orders.yml": "a: 3\n"}, "newer")
    state = server.app.extensions["config_server"]
    state.hub.check()
    assert value(requests.get(f"{server.url}/orders/prod", timeout=5)) == 1
    assert requests.get(f"{server.url}/pins", timeout=5).json()["pins"][0]["version"] == good
    unpinned = requests.delete(f"{server.url}/pins/orders/prod", json={"reason": "fixed"}, timeout=5)
    assert unpinned.status_code == 200 and unpinned.json()["unpinReason"] == "fixed"
    after = requests.get(f"{server.url}/orders/prod", timeout=5)
    assert value(after) == 3 and after.json()["version"] == newer and PINNED not in after.headers
    assert requests.delete(f"{server.url}/pins/orders/prod", timeout=5).status_code == 404
    assert requests.get(f"{server.url}/pins", timeout=5).json() == {"pins": []}


def test_a_pin_and_an_unpin_reach_held_long_polls_within_a_second(serve, history):
    repo, good, _ = history
    server = serve(repo.path)
    hub = server.app.extensions["config_server"].hub
    etag = requests.get(f"{server.url}/orders/prod", timeout=5).headers["ETag"]
    results: list = []
    polls = [threading.Thread(target=long_poll, args=(server.url, etag, results)) for _ in range(3)]
    for poll in polls:
        poll.start()
    wait_for(lambda: hub.watchers() == 3, what="three long polls to park")
    sent = time.monotonic()
    assert pin(server.url, "orders/prod", good).status_code == 201
    for poll in polls:
        poll.join(timeout=10)
    assert len(results) == 3
    for answered, response in results:
        assert answered - sent < 1.0
        assert (
            response.status_code == 200 and value(response) == 1 and response.headers[PINNED].startswith(good)
        )
    pinned_etag = results[0][1].headers["ETag"]
    results.clear()
    poll = threading.Thread(target=long_poll, args=(server.url, pinned_etag, results))
    poll.start()
    wait_for(lambda: hub.watchers() == 1, what="a long poll on the pinned version to park")
    sent = time.monotonic()
    assert requests.delete(f"{server.url}/pins/orders/prod", timeout=5).status_code == 200
    poll.join(timeout=10)
    answered, response = results[0]
    assert answered - sent < 1.0 and value(response) == 2 and PINNED not in response.headers


def test_a_pin_survives_a_restart_of_the_server(history, tmp_path):
    repo, good, _ = history
    settings = Settings(repo=str(repo.path), data_dir=str(tmp_path / "data"))
    first = create_app(settings)
    server = LiveServer(first)
    try:
        assert pin(server.url, "orders/prod", good).status_code == 201
    finally:
        server.stop()
        first.extensions["config_server"].close()
    second = create_app(settings)
    server = LiveServer(second)
    try:
        answer = requests.get(f"{server.url}/orders/prod", timeout=5)
        assert value(answer) == 1 and answer.headers[PINNED] == f"{good}; by=127.0.0.1"
        health = requests.get(f"{server.url}/health", timeout=5).json()
        assert [p["version"] for p in health["details"]["pins"]] == [good]
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        assert (
            'config_server_pinned_environments{application="orders",label="main",profiles="prod"} 1.0'
            in metrics
        )
    finally:
        server.stop()
        second.extensions["config_server"].close()


@pytest.mark.parametrize(
    ("version", "words"),
    [
        ("abcdef1", "no commit"),
        ("0" * 40, "not on the history of label 'main'"),
        ("other", "not on the history of label 'main'"),
        ("broken", "is broken at"),
    ],
)
def test_only_a_good_version_on_the_labels_history_may_be_pinned(serve, history, version, words):
    repo, good, _ = history
    repo.git("checkout", "-q", "-b", "other")
    others = {"other": repo.commit({"orders.yml": "a: 9\n"}, "elsewhere")}
    repo.git("checkout", "-q", "main")
    others["broken"] = repo.commit({"orders.yml": "a: [\n"}, "broken")
    repo.commit({"orders.yml": "a: 4\n"}, "repaired")
    server = serve(repo.path)
    answer = pin(server.url, "orders/prod", others.get(version, version))
    assert answer.status_code == 422 and words in answer.json()["message"], answer.text
    assert requests.get(f"{server.url}/pins", timeout=5).json() == {"pins": []}
    assert pin(server.url, "orders/prod/main", good).status_code == 201


@pytest.mark.parametrize(
    "body", [{}, {"version": "GOOD"}, {"version": "GOOD", "reason": " "}, {"version": 1}]
)
def test_a_pin_needs_a_version_and_a_reason(serve, history, body):
    repo, good, _ = history
    server = serve(repo.path)
    sent = {k: (good if v == "GOOD" else v) for k, v in body.items()}
    answer = requests.post(f"{server.url}/pins/orders/prod", json=sent, timeout=5)
    assert answer.status_code == 400, answer.text


def test_pin_actions_need_the_release_role_within_the_clients_globs_and_are_audited(serve, history, tmp_path):
    repo, good, _ = history
    auth = write_auth_file(
        tmp_path,
        ("reader", "r" * 32, "roles: [read]"),
        ("rollout-bot", "o" * 32, "roles: [rollout]"),
        ("payments-release", "p" * 32, "roles: [release], applications: [payments]"),
        ("orders-release", "q" * 32, "roles: [release, read], applications: [orders], labels: [main]"),
        ("ops", "a" * 32, "roles: [admin]"),
    )
    audit = tmp_path / "audit.log"
    server = serve(repo.path, auth_file=auth, audit_log=str(audit))

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token * 32}"}

    assert pin(server.url, "orders/prod", good).status_code == 401
    for token in ("r", "o", "p"):
        refused = pin(server.url, "orders/prod", good, headers=bearer(token))
        assert refused.status_code == 403, token
        assert (
            requests.delete(f"{server.url}/pins/orders/prod", headers=bearer(token), timeout=5).status_code
            == 403
        )
    assert pin(server.url, "orders/prod/other", good, headers=bearer("q")).status_code == 403
    assert requests.get(f"{server.url}/pins", headers=bearer("r"), timeout=5).status_code == 403
    answer = pin(server.url, "orders/prod", good, "rollback INC-7", headers=bearer("q"))
    assert answer.status_code == 201 and answer.json()["by"] == "orders-release"
    read = requests.get(f"{server.url}/orders/prod", headers=bearer("q"), timeout=5)
    assert read.headers[PINNED] == f"{good}; by=orders-release"
    assert requests.get(f"{server.url}/pins", headers=bearer("p"), timeout=5).json() == {"pins": []}
    assert len(requests.get(f"{server.url}/pins", headers=bearer("a"), timeout=5).json()["pins"]) == 1
    gone = requests.delete(
        f"{server.url}/pins/orders/prod", json={"reason": "fixed in 1f2e"}, headers=bearer("a")
    )
    assert gone.status_code == 200 and gone.json()["unpinnedBy"] == "ops"
    server.app.extensions["config_server"].audit.flush()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    done = [line for line in lines if line["event"] in ("pin", "unpin") and line["status"] < 300]
    assert [(line["event"], line["client"]) for line in done] == [("pin", "orders-release"), ("unpin", "ops")]
    assert done[0]["version"] == good and done[0]["reason"] == "rollback INC-7"
    assert (done[0]["application"], done[0]["profiles"], done[0]["label"]) == ("orders", "prod", "main")
    assert done[1]["reason"] == "fixed in 1f2e"


def test_a_cross_site_form_cannot_pin_with_the_browsers_basic_credentials(serve, history, tmp_path):
    import base64

    repo, good, _ = history
    auth = write_auth_file(tmp_path, ("ops", "a" * 32, "roles: [admin]"))
    server = serve(repo.path, auth_file=auth)
    basic = {"Authorization": "Basic " + base64.b64encode(b"ops:" + b"a" * 32).decode()}
    body = json.dumps({"version": good, "reason": "csrf"}).encode()
    for headers in (
        {**basic, "Content-Type": "text/plain"},
        {**basic, "Content-Type": "application/json", "Origin": "https://attacker.example"},
        {**basic, "Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
    ):
        assert (
            requests.post(f"{server.url}/pins/orders/prod", data=body, headers=headers, timeout=5).status_code
            == 403
        )
    own = {**basic, "Content-Type": "application/json", "Origin": server.url}
    assert (
        requests.post(f"{server.url}/pins/orders/prod", data=body, headers=own, timeout=5).status_code == 201
    )


def test_a_pin_wins_over_a_rollout(serve, repo):
    from tests.server.test_rollouts import rollout_file

    good = repo.commit({"orders.yml": "a: 1\n"}, "good")
    repo.git("checkout", "-q", "-b", "canary")
    repo.commit({"orders.yml": "a: 5\n"}, "canary")
    repo.git("checkout", "-q", "main")
    repo.commit({"orders.yml": "a: 2\n", "rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out")
    server = serve(repo.path)
    instance = {"X-Config-Client-Id": "orders-1.internal:8080"}

    def canary() -> bool:
        return value(requests.get(f"{server.url}/orders/prod", headers=instance, timeout=5)) == 5

    wait_for(canary, what="the instance in the canary")
    assert pin(server.url, "orders/prod", good).status_code == 201
    answer = requests.get(f"{server.url}/orders/prod", headers=instance, timeout=5)
    assert value(answer) == 1 and PINNED in answer.headers and "X-Config-Rollout" not in answer.headers


def test_every_worker_of_a_machine_honours_a_pin_within_a_second(history, tmp_path):
    """Two apps on one data directory stand for two gunicorn workers: the store is the only link."""
    repo, good, _ = history
    settings = Settings(repo=str(repo.path), data_dir=str(tmp_path / "data"))
    apps = [create_app(settings) for _ in range(2)]
    servers = [LiveServer(app) for app in apps]
    try:
        etag = requests.get(f"{servers[1].url}/orders/prod", timeout=5).headers["ETag"]
        results: list = []
        poll = threading.Thread(target=long_poll, args=(servers[1].url, etag, results))
        poll.start()
        wait_for(lambda: apps[1].extensions["config_server"].hub.watchers() == 1, what="the poll to park")
        sent = time.monotonic()
        assert pin(servers[0].url, "orders/prod", good).status_code == 201
        poll.join(timeout=10)
        answered, response = results[0]
        assert answered - sent < 1.0 and value(response) == 1 and response.headers[PINNED].startswith(good)
    finally:
        for server, app in zip(servers, apps, strict=True):
            server.stop()
            app.extensions["config_server"].close()


def test_the_pin_command_and_the_unpin_command_talk_to_a_running_server(serve, history):
    from click.testing import CliRunner

    from config_server.cli import main

    repo, good, _ = history
    server = serve(repo.path)
    args = ["--server", server.url]
    pinned = CliRunner().invoke(
        main, ["pin", "orders", "prod", "--to", good[:12], "--reason", "INC-7", "--label", "main", *args]
    )
    assert pinned.exit_code == 0, pinned.output
    assert pinned.stdout == f"orders/prod at main: pinned to {good} (by 127.0.0.1: INC-7)\n"
    assert value(requests.get(f"{server.url}/orders/prod", timeout=5)) == 1
    listed = CliRunner().invoke(main, ["pins", *args])
    assert listed.exit_code == 0 and f"orders/prod at main: {good[:12]} by 127.0.0.1" in listed.stdout
    refused = CliRunner().invoke(main, ["pin", "orders", "prod", "--to", "abcdef1", "--reason", "x", *args])
    assert refused.exit_code == 1 and "422: no commit" in refused.output
    unpinned = CliRunner().invoke(main, ["unpin", "orders", "prod", *args])
    assert unpinned.exit_code == 0 and unpinned.stdout == f"orders/prod at main: unpinned (was {good})\n"
    assert value(requests.get(f"{server.url}/orders/prod", timeout=5)) == 2


def test_the_console_shows_the_applications_pins(serve, history):
    repo, good, _ = history
    server = serve(repo.path)
    assert pin(server.url, "orders/prod", good, "INC-7 <b>").status_code == 201
    page = requests.get(f"{server.url}/console/app/orders", timeout=5).text
    assert "Pinned" in page and good[:12] in page and "INC-7 &lt;b&gt;" in page
    assert f'data-url="/pins/orders/default" data-version="{good}"' in page  # a pin button per good commit
    assert 'data-method="DELETE" data-url="/pins/orders/prod/main"' in page
    assert "Pinned" not in requests.get(f"{server.url}/console/app/payments", timeout=5).text


def test_the_stores_keep_pins_and_say_when_they_lost_them(tmp_path, redis_server):
    from config_server.state.redis import RedisStateStore

    one = PinRecord("orders", "prod", "main", "a" * 40, "why", "ops", 1.0)
    two = PinRecord("orders", "default", "main", "b" * 40, "why", "ops", 2.0)
    for store in (SQLiteStateStore(tmp_path / "state.db"), RedisStateStore(redis_server.url)):
        assert store.pins() == []
        store.put_pin(one)
        store.put_pin(two)
        store.put_pin(PinRecord(*one.key, "c" * 40, "moved", "ops", 3.0))
        assert [p.version for p in store.pins()] == ["b" * 40, "c" * 40] and store.pins_intact()
        assert store.remove_pin(*two.key) == two and store.remove_pin(*two.key) is None
        store.restore_pins([one, two])  # a stored pin wins
        assert [p.version for p in store.pins()] == ["b" * 40, "c" * 40]
        store.close()
    redis_store = RedisStateStore(redis_server.url)
    redis_store.reader.flushall()
    assert not redis_store.pins_intact() and redis_store.pins() == []
    redis_store.close()


def test_a_redis_that_lost_its_pins_gets_back_what_the_workers_knew(redis_server):
    from config_server.state.redis import RedisStateStore

    store = RedisStateStore(redis_server.url)
    changes: list[set[str]] = []
    sync = PinSync(store, PinBoard(), changes.append, interval=0.05).start()
    try:
        record = PinRecord("orders", "prod", "main", "a" * 40, "INC-7", "ops", 1.0)
        assert sync.pin(record) == {"orders"}
        redis_server.stop()
        redis_server.start()  # no persistence: every key is gone
        wait_for(lambda: store.pins() == [record], what="the pin to be put back")
        assert sync.board.records() == [record] and changes == [{"orders"}]
        assert sync.unpin(record.key) == record
        time.sleep(0.2)
        assert store.pins() == [] and store.pins_intact() and sync.board.records() == []
    finally:
        sync.close()
        store.close()


def test_two_replicas_sharing_redis_honour_a_pin_within_a_second(serve, history, redis_server, tmp_path):
    repo, good, _ = history
    replicas = [serve(repo.path, redis=redis_server.url, data_dir=str(tmp_path / f"r{n}")) for n in range(2)]
    etag = requests.get(f"{replicas[1].url}/orders/prod", timeout=5).headers["ETag"]
    results: list = []
    poll = threading.Thread(target=long_poll, args=(replicas[1].url, etag, results))
    poll.start()
    wait_for(lambda: replicas[1].app.extensions["config_server"].hub.watchers() == 1, what="the poll to park")
    sent = time.monotonic()
    assert pin(replicas[0].url, "orders/prod", good).status_code == 201
    poll.join(timeout=10)
    answered, response = results[0]
    assert answered - sent < 1.0 and value(response) == 1 and response.headers[PINNED].startswith(good)
    assert requests.delete(f"{replicas[1].url}/pins/orders/prod", timeout=5).status_code == 200
    wait_for(lambda: value(requests.get(f"{replicas[0].url}/orders/prod", timeout=5)) == 2, timeout=1.5)


def test_a_pin_is_made_and_served_while_the_remote_is_unreachable(history, git_daemon, serve, tmp_path):
    """What is guaranteed: a commit the mirror fetched (any commit of the label's history it
    saw) can be pinned and served from the mirror alone; nothing asks the remote."""
    import shutil

    repo, good, bad = history
    url = git_daemon(repo)
    server = serve(url, refresh_interval=0)
    assert value(requests.get(f"{server.url}/orders/prod", timeout=5)) == 2
    shutil.rmtree(repo.path)  # the remote is gone for good
    assert pin(server.url, "orders/prod", good).status_code == 201
    answer = requests.get(f"{server.url}/orders/prod", timeout=5)
    assert value(answer) == 1 and answer.headers[PINNED].startswith(good)
    assert requests.delete(f"{server.url}/pins/orders/prod", timeout=5).status_code == 200
    assert requests.get(f"{server.url}/orders/prod", timeout=5).json()["version"] == bad


def test_under_gunicorn_a_pin_reaches_held_long_polls_within_a_second_and_survives_a_restart(
    history, server_process
):
    repo, good, _ = history

    def start():
        server = server_process("--repo", str(repo.path), "--workers", "2")
        return server.wait_ready(lambda: http_ready(f"{server.url}/health"))

    server = start()
    etag = requests.get(f"{server.url}/orders/prod", timeout=5).headers["ETag"]
    results: list = []
    polls = [threading.Thread(target=long_poll, args=(server.url, etag, results)) for _ in range(4)]
    for poll in polls:
        poll.start()
    from tests.helpers import held_long_polls

    wait_for(lambda: held_long_polls(server) == 4, what="four long polls to park")
    sent = time.monotonic()
    assert pin(server.url, "orders/prod", good).status_code == 201
    for poll in polls:
        poll.join(timeout=10)
    assert len(results) == 4
    for answered, response in results:
        assert answered - sent < 1.0, answered - sent
        assert value(response) == 1 and response.headers[PINNED] == f"{good}; by=127.0.0.1"
    server.stop()
    server = start()
    answer = requests.get(f"{server.url}/orders/prod", timeout=5)
    assert value(answer) == 1 and answer.headers[PINNED].startswith(good)


def test_rendered_formats_and_plain_text_files_come_from_the_pinned_commit(serve, repo):
    good = repo.commit(
        {"orders.yml": "a: 1\n", "orders-prod.yml": "r: eu\n", "nginx.conf": "a=${a}\n"}, "good"
    )
    repo.commit({"orders.yml": "a: 2\n"}, "bad")
    server = serve(repo.path)
    assert pin(server.url, "orders/prod", good).status_code == 201
    rendered = requests.get(f"{server.url}/orders-prod.yml", timeout=5)
    assert "a: 1" in rendered.text and rendered.headers[PINNED] == f"{good}; by=127.0.0.1"
    plain = requests.get(f"{server.url}/orders/prod/main/nginx.conf", timeout=5)
    assert plain.text == "a=1\n"
    assert plain.headers[PINNED] == f"{good}; by=127.0.0.1"  # a plain-text file says so too
    assert "a: 2" in requests.get(f"{server.url}/orders-default.yml", timeout=5).text
