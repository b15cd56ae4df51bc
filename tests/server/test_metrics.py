"""Prometheus metrics: exact request counts across gunicorn workers, and every listed metric."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import wait_for
from tests.server.test_auth import auth_yaml, bearer


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(url: str, **kwargs) -> str:
    answer = requests.get(f"{url}/metrics", timeout=10, headers={"Connection": "close"}, **kwargs)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return answer.text


ENV_OK = {"endpoint": "environment", "method": "GET", "status": "200"}


def environment_answers_per_worker(metrics_dir: Path) -> dict[str, float]:
    """Environment 200s counted in each worker's own counter file (one file per worker pid)."""
    counts = {}
    for path in sorted(metrics_dir.glob("counter_*.db")):
        counts[path.name] = sum(
            sample.value
            for metric in MultiProcessCollector.merge([str(path)])
            for sample in metric.samples
            if sample.name == "config_server_http_requests_total" and sample.labels == ENV_OK
        )
    return counts


def test_request_counter_is_exact_across_two_gunicorn_workers(repo, server_process, tmp_path):
    repo.commit({"orders.yml": "a: 1\n"})
    server = server_process("--repo", str(repo.path), "--workers", "2")
    server.wait_ready(
        lambda: requests.get(f"{server.url}/health", timeout=1, headers={"Connection": "close"}).ok
    )
    # The first worker to load the app answers /health while the second may still be booting (on a
    # loaded machine for seconds): wait until both have answered, each on a new connection.
    workers: set[int] = set()

    def both_workers_serving() -> bool:
        health = requests.get(f"{server.url}/health", timeout=1, headers={"Connection": "close"})
        workers.add(health.json()["details"]["worker"])
        return len(workers) == 2

    wait_for(both_workers_serving, timeout=30, what="both gunicorn workers to serve")
    before = value(scrape(server.url), "config_server_http_requests_total", **ENV_OK)
    metrics_dir = tmp_path / "data" / "metrics"
    sent, failed = 0, []

    def both_workers_answered() -> bool:
        # a new connection each: gunicorn's workers share the listener; at least 120, and more
        # until each worker has answered some (which one accepts is up to the scheduler)
        nonlocal sent
        for _ in range(20):
            answer = requests.get(f"{server.url}/orders/prod", timeout=10, headers={"Connection": "close"})
            sent += 1
            if not answer.ok:
                failed.append(answer.status_code)
        per_worker = environment_answers_per_worker(metrics_dir)
        return bool(failed) or (sent >= 120 and len(per_worker) == 2 and all(per_worker.values()))

    wait_for(both_workers_answered, timeout=60, what="both workers to answer Environment requests")
    assert not failed, failed
    after = value(scrape(server.url), "config_server_http_requests_total", **ENV_OK)
    assert after - before == sent
    # both workers answered: each keeps its counters in its own file of the shared folder
    per_worker = environment_answers_per_worker(metrics_dir)
    assert len(per_worker) == 2 and all(per_worker.values()), per_worker
    assert sum(per_worker.values()) == after
    # whichever worker answers the scrape, the sum is the same
    scrapes = {value(scrape(server.url), "config_server_http_requests_total", **ENV_OK) for _ in range(6)}
    assert scrapes == {after}


def test_instances_recorded_by_both_gunicorn_workers_share_one_store(repo, server_process):
    version = repo.commit({"orders.yml": "a: 1\n"})
    server = server_process("--repo", str(repo.path), "--workers", "2")
    server.wait_ready(
        lambda: requests.get(f"{server.url}/health", timeout=1, headers={"Connection": "close"}).ok
    )
    ids = {f"orders-{i}" for i in range(20)}
    for instance in sorted(ids):
        headers = {"Connection": "close", "X-Config-Client-Id": instance}
        assert requests.get(f"{server.url}/orders/prod", timeout=10, headers=headers).ok

    def recorded():
        body = requests.get(f"{server.url}/instances?application=orders", timeout=10).json()
        return {i["id"] for i in body["instances"] if i["version"] == version} == ids

    wait_for(recorded, what="both workers' flushers to write the reports")
    text = scrape(server.url)
    assert value(text, "config_server_instances", application="orders", version=version) == 20
    # a long poll answered directly by the hub (gevent worker) records the version it was answered with
    etag = requests.get(f"{server.url}/orders/prod", timeout=10).headers["ETag"]
    answer = {}
    poll = threading.Thread(
        target=lambda: answer.update(
            response=requests.get(
                f"{server.url}/orders/prod?wait=30",
                headers={"If-None-Match": etag, "X-Config-Client-Id": "watcher"},
                timeout=40,
            )
        )
    )
    poll.start()
    wait_for(lambda: value(scrape(server.url), "config_server_watchers") == 1, what="the long poll held")
    new = server_repo_commit(repo)
    poll.join(timeout=40)
    assert answer["response"].status_code == 200 and answer["response"].json()["version"] == new

    def answered_version():
        body = requests.get(f"{server.url}/instances?application=orders", timeout=10).json()
        return {i["id"]: i["served"] for i in body["instances"]}.get("watcher") == new

    wait_for(answered_version, what="the watcher recorded on the new version")
    log = server.stop()
    assert "Traceback" not in log and "Exception" not in log, log


def server_repo_commit(repo) -> str:
    return repo.commit({"orders.yml": "a: 2\n"}, message="second")


def test_requests_are_counted_on_the_fast_path_and_through_flask(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    etag = http.get(f"{server.url}/orders/prod").headers["ETag"]  # fast path
    http.get(f"{server.url}/orders/prod", headers={"If-None-Match": etag})  # Flask, 304
    http.get(f"{server.url}/orders/prod/nope")  # 404
    http.get(f"{server.url}/orders-prod.yml")
    text = scrape(server.url)
    assert value(text, "config_server_http_requests_total", **ENV_OK) == 1
    assert (
        value(text, "config_server_http_requests_total", endpoint="environment", method="GET", status="304")
        == 1
    )
    assert (
        value(text, "config_server_http_requests_total", endpoint="environment", method="GET", status="404")
        == 1
    )
    assert (
        value(text, "config_server_http_requests_total", endpoint="rendered", method="GET", status="200") == 1
    )
    assert value(text, "config_server_http_request_duration_seconds_count", endpoint="environment") == 3
    assert value(text, "config_server_cache_misses_total") >= 1
    assert value(text, "config_server_cache_hits_total") >= 1


def test_watchers_propagation_and_instances(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    etag = http.get(f"{server.url}/orders/prod").headers["ETag"]
    answers = []
    threads = [
        threading.Thread(
            target=lambda i=i: answers.append(
                requests.get(
                    f"{server.url}/orders/prod?wait=20",
                    headers={"If-None-Match": etag, "X-Config-Client-Id": f"w-{i}"},
                    timeout=30,
                )
            )
        )
        for i in range(3)
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: value(scrape(server.url), "config_server_watchers") == 3, what="3 watchers held")
    new = repo.commit({"orders.yml": "a: 2\n"})
    for thread in threads:
        thread.join(timeout=30)
    assert [a.status_code for a in answers] == [200, 200, 200]
    server.app.extensions["config_server"].inventory.flush()
    text = scrape(server.url)
    assert value(text, "config_server_watchers") == 0
    assert value(text, "config_server_watchers_answered_total") == 3
    assert value(text, "config_server_watchers_answered_per_change_count") == 1
    assert value(text, "config_server_watchers_answered_per_change_sum") == 3
    assert value(text, "config_server_propagation_seconds_count") == 1
    assert value(text, "config_server_http_requests_total", endpoint="watch", method="GET", status="200") == 3
    assert value(text, "config_server_instances", application="orders", version=new) == 3


def test_validation_failure_helper(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    server.app.extensions["config_server"].metrics.count_validation_failure("orders")
    text = scrape(server.url)
    assert value(text, "config_server_validation_failures_total", application="orders") == 1


def test_held_back_collector_reads_the_environments_held_back_at_scrape_time():
    from config_server.observability.metrics import HeldBackCollector

    held_now = [("orders", "prod", "main")]
    collector = HeldBackCollector(lambda: held_now)
    (family,) = collector.collect()
    assert [(s.labels, s.value) for s in family.samples] == [
        ({"application": "orders", "profiles": "prod", "label": "main"}, 1)
    ]
    held_now.clear()
    (family,) = collector.collect()
    assert family.samples == []


def test_git_fetch_duration_and_failures(repo, git_daemon, serve, http, tmp_path):
    repo.commit({"svc.yml": "a: 1\n"})
    url = git_daemon(repo)
    server = serve(url, refresh_interval=0)
    assert http.post(f"{server.url}/monitor", data={"path": "svc.yml"}).status_code == 200
    text = scrape(server.url)
    assert value(text, "config_server_git_fetch_duration_seconds_count") == 1
    assert value(text, "config_server_git_fetch_failures_total") == 0
    shutil.rmtree(tmp_path / "daemon" / "config.git")  # the remote is gone: the next fetch fails
    assert http.post(f"{server.url}/monitor", data={"path": "svc.yml"}).status_code == 503
    text = scrape(server.url)
    assert value(text, "config_server_git_fetch_duration_seconds_count") == 2
    assert value(text, "config_server_git_fetch_failures_total") == 1


def test_metrics_need_the_monitor_role_with_an_auth_file(repo, serve, tmp_path):
    repo.commit({"orders.yml": "a: 1\n"})
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(auth_yaml())
    server = serve(repo.path, auth_file=str(auth_file))
    assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 401
    assert requests.get(f"{server.url}/metrics", headers=bearer("orders"), timeout=5).status_code == 403
    assert "config_server_http_requests_total" in scrape(server.url, auth=("prometheus", _token("hook")))
    assert requests.get(f"{server.url}/metrics", headers=bearer("admin"), timeout=5).ok


def _token(name: str) -> str:
    return bearer(name)["Authorization"].removeprefix("Bearer ")


def test_held_back_gauge_drops_to_zero_after_the_repair_whichever_worker_answers(repo, server_process):
    from tests.server.test_change_safety import BASE, HELD

    repo.commit(BASE)
    server = server_process("--repo", str(repo.path), "--workers", "2")
    server.wait_ready(
        lambda: requests.get(f"{server.url}/health", timeout=1, headers={"Connection": "close"}).ok
    )
    url = f"{server.url}/orders/prod"
    held = {"application": "orders", "profiles": "prod", "label": "main"}
    broken = repo.commit({"orders-prod.yml": "orders:\n  max-items: 5000\n"})
    wait_for(
        lambda: requests.get(url, timeout=10, headers={"Connection": "close"}).headers.get(HELD) == broken,
        what="the held-back answer",
    )
    for _ in range(20):  # a new connection each: both workers hold it back
        assert requests.get(url, timeout=10, headers={"Connection": "close"}).headers[HELD] == broken
    wait_for(
        lambda: value(scrape(server.url), "config_server_held_back_environments", **held) == 1,
        what="the gauge to show the held-back environment",
    )
    repo.commit({"orders-prod.yml": "orders:\n  max-items: 900\n"})
    wait_for(
        lambda: value(scrape(server.url), "config_server_held_back_environments", **held) == 0,
        what="the gauge to drop once the label moved on, before any worker serves the repair",
    )
    assert HELD not in requests.get(url, timeout=10, headers={"Connection": "close"}).headers
    scrapes = {value(scrape(server.url), "config_server_held_back_environments", **held) for _ in range(8)}
    assert scrapes == {0}


def test_random_application_names_against_a_broken_shared_file_keep_metric_series_bounded(
    repo, serve, http, tmp_path
):
    import sqlite3
    import uuid

    good = repo.commit({"application.yml": "shared: 1\n", "orders.yml": "a: 1\n"})
    server = serve(repo.path)
    broken = repo.commit({"application.yml": "shared: [1\n"})
    assert http.get(f"{server.url}/orders/default").headers["X-Config-Held-Back"] == broken
    names = [f"rand{uuid.uuid4().hex[:10]}" for _ in range(50)]
    for name in names:  # an unknown application gets the shared files: broken, held back
        answer = http.get(f"{server.url}/{name}/default", headers={"X-Config-Client-Id": f"id-{name}"})
        assert answer.status_code == 200 and answer.headers["X-Config-Held-Back"] == broken
    server.app.extensions["config_server"].inventory.flush()
    found = samples(scrape(server.url))
    applications = {
        dict(labels).get("application") for (_, labels) in found if dict(labels).get("application")
    }
    assert applications <= {"orders", "other"}, applications
    assert value(scrape(server.url), "config_server_instances", application="other", version=good) == 50
    failures = [k for k in found if k[0] == "config_server_validation_failures_total"]
    assert len(failures) <= 2, failures
    held_series = [k for k in found if k[0] == "config_server_held_back_environments"]
    assert held_series == [
        (
            "config_server_held_back_environments",
            (("application", "orders"), ("label", "main"), ("profiles", "default")),
        )
    ]
    service = server.app.extensions["config_server"].service
    assert service.verdicts.flush()
    with sqlite3.connect(tmp_path / "data" / "verdicts.sqlite3") as db:
        stored = [
            row[0]
            for row in db.execute("SELECT environment FROM broken UNION ALL SELECT environment FROM held")
        ]
    assert stored and not [env for env in stored if env.startswith("rand")], stored
    assert not [row for row in service.held_back() if row["application"].startswith("rand")]


def test_the_instances_gauge_labels_only_versions_the_server_served(repo, serve, http):
    """`X-Config-Applied` is the caller's text: 900 made-up versions made 903 series; now they are `other`."""
    first = repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    inventory = server.app.extensions["config_server"].inventory
    assert http.get(f"{server.url}/orders/default", headers={"X-Config-Client-Id": "slow-1"}).ok
    inventory.flush()
    second = repo.commit({"orders.yml": "a: 2\n"})
    # served the second version, it still runs the first (which the server served it before)
    slow = {"X-Config-Client-Id": "slow-1", "X-Config-Applied": first}
    assert http.get(f"{server.url}/orders/default", headers=slow).json()["version"] == second
    assert http.get(f"{server.url}/orders/default", headers={"X-Config-Client-Id": "new-1"}).ok
    for i in range(40):
        made_up = {"X-Config-Client-Id": f"liar-{i}", "X-Config-Applied": f"{i:040x}"}
        assert http.get(f"{server.url}/orders/default", headers=made_up).ok
    inventory.flush()
    found = samples(scrape(server.url))
    series = {
        dict(labels)["version"]: count
        for (name, labels), count in found.items()
        if name == "config_server_instances"
    }
    assert series == {first: 1, second: 1, "other": 40}


def test_a_scrape_waiting_for_the_state_store_holds_up_no_other_request(repo, server_process, tmp_path):
    """`/metrics` read SQLite on the worker's loop: while it waited, `/health` waited too."""
    import sqlite3
    import time

    version = repo.commit({"orders.yml": "a: 1\n"})
    server = server_process("--repo", str(repo.path), "--workers", "1")
    server.wait_ready(
        lambda: requests.get(f"{server.url}/health", timeout=1, headers={"Connection": "close"}).ok
    )
    headers = {"Connection": "close", "X-Config-Client-Id": "i-1"}
    assert requests.get(f"{server.url}/orders/default", timeout=10, headers=headers).ok
    wait_for(
        lambda: (
            value(scrape(server.url), "config_server_instances", application="orders", version=version) == 1
        ),
        what="the instance recorded",
    )
    # Another process holds the state store's lock: a read waits for it (up to its busy timeout, 5 s).
    lock = sqlite3.connect(tmp_path / "data" / "state.db", isolation_level=None, timeout=10)
    lock.execute("PRAGMA locking_mode=EXCLUSIVE")
    lock.execute("BEGIN EXCLUSIVE")
    scraped = {}
    scraper = threading.Thread(target=lambda: scraped.update(text=scrape(server.url)))
    try:
        scraper.start()
        started = time.monotonic()
        slowest = 0.0
        while time.monotonic() - started < 2.0:  # a window well inside the store's busy timeout
            asked = time.monotonic()
            answer = requests.get(f"{server.url}/health", timeout=10, headers={"Connection": "close"})
            assert answer.status_code == 200
            slowest = max(slowest, time.monotonic() - asked)
        assert slowest < 1.0, f"/health took {slowest:.2f} s while a scrape waited for the store"
        assert scraper.is_alive()  # the scrape is still waiting for the lock
    finally:
        lock.close()
        scraper.join(timeout=15)
    assert value(scraped["text"], "config_server_instances", application="orders", version=version) == 1
    log = server.stop()
    assert "Traceback" not in log, log


def test_a_state_store_that_stays_locked_leaves_only_the_instances_out_of_a_scrape(tmp_path, caplog):
    import sqlite3

    from config_server.observability.metrics import InstancesCollector
    from config_server.state import SQLiteStateStore

    store = SQLiteStateStore(tmp_path / "state.db", busy_timeout=0.1)
    lock = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    lock.execute("PRAGMA locking_mode=EXCLUSIVE")
    lock.execute("BEGIN EXCLUSIVE")
    try:
        [family] = list(InstancesCollector(store.instances).collect())
    finally:
        lock.close()
    assert family.name == "config_server_instances" and family.samples == []
    assert "instances left out of the metrics" in caplog.text


def test_a_scrape_labels_each_application_once_not_once_per_instance(tmp_path):
    """The label of an application is looked up on the worker's loop (the repository's names):
    once per name and scrape, however many instances run it."""
    from config_server.observability.inventory import Inventory, parse_client_headers
    from config_server.observability.metrics import InstancesCollector
    from config_server.state import SQLiteStateStore

    store = SQLiteStateStore(tmp_path / "state.db")
    inventory = Inventory(store)
    for i in range(50):
        environ = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_CONFIG_CLIENT_ID": f"orders-{i}"}
        application = "orders" if i % 2 else "billing"
        inventory.observe(parse_client_headers(environ), application, "prod", "main", "v1")
    inventory.flush()
    asked = []

    def application_label(name: str) -> str:
        asked.append(name)
        return name

    [family] = list(InstancesCollector(store.instances, application_label).collect())
    assert sorted(asked) == ["billing", "orders"]
    assert {tuple(s.labels.values()): s.value for s in family.samples} == {
        ("billing", "v1"): 25,
        ("orders", "v1"): 25,
    }


def test_health_counts_the_watchers_of_every_worker_and_names_the_one_that_answered(repo, server_process):
    """Before: `/health` said `watchers` of the one worker that answered (3 while 8 clients
    watched); it says the total (the `config_server_watchers` gauge summed over the workers'
    files) and this worker's own count beside its pid."""
    repo.commit({"orders.yml": "a: 1\n"})
    server = server_process("--repo", str(repo.path), "--workers", "2")
    close = {"Connection": "close"}
    server.wait_ready(lambda: requests.get(f"{server.url}/health", timeout=1, headers=close).ok)
    etag = requests.get(f"{server.url}/orders/default", timeout=10, headers=close).headers["ETag"]
    answers: list[int] = []

    def poll() -> None:
        headers = {**close, "If-None-Match": etag}
        answers.append(
            requests.get(f"{server.url}/orders/default?wait=30", headers=headers, timeout=40).status_code
        )

    polls = [threading.Thread(target=poll) for _ in range(8)]
    for thread in polls:
        thread.start()
    try:
        wait_for(lambda: value(scrape(server.url), "config_server_watchers") == 8, timeout=20, what="8 held")
        seen: dict[int, dict] = {}

        def both_workers_answered() -> bool:
            details = requests.get(f"{server.url}/health", timeout=5, headers=close).json()["details"]
            seen[details["worker"]] = details
            return len(seen) == 2

        wait_for(both_workers_answered, timeout=30, what="both workers to answer /health")
        assert [d["watchers"] for d in seen.values()] == [8, 8]
        assert sum(d["workerWatchers"] for d in seen.values()) == 8
    finally:
        repo.commit({"orders.yml": "a: 2\n"})
        for thread in polls:
            thread.join(timeout=45)
    assert answers == [200] * 8
