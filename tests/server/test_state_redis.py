"""The Redis state store answers exactly as the embedded SQLite store does (a real redis-server)."""

from __future__ import annotations

import pytest

from config_server.errors import StateUnavailable
from config_server.state import open_state_store
from config_server.state.base import InstanceReport
from config_server.state.redis import RedisStateStore
from config_server.state.sqlite import SQLiteStateStore

COMMIT_A, COMMIT_B, COMMIT_C, COMMIT_D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)


def report(n, application="orders", served=COMMIT_A, applied=None, rejected=None, reason=None, **more):
    return InstanceReport(
        instance_id=f"orders-{n}:1@host",
        application=application,
        profiles=more.get("profiles", "default"),
        label=more.get("label", "main"),
        served=served,
        applied=applied,
        rejected_version=rejected,
        rejected_reason=reason,
        client_labels="zone=eu-1",
        remote="10.0.0.1",
        user_agent="python-requests",
        seen=more.get("seen", 100.0),
        anonymous=more.get("anonymous", False),
    )


def scenario(store):
    """Every rule of the SQLite upsert, and the queries and pruning, in one run."""
    store.record_instances([report(1), report(2, application="billing"), report(3, profiles="prod")])
    store.record_instances([report(1, served=COMMIT_B, seen=110.0)])  # version moves: since 110
    store.record_instances([report(1, served=None, applied=COMMIT_B, seen=120.0)])  # same version
    store.record_instances(
        [
            report(
                2, application="billing", applied=COMMIT_C, rejected=COMMIT_D, reason='"port" bad', seen=105.0
            )
        ]
    )
    rejecting = store.instances("billing")
    store.record_instances([report(2, application="billing", served=COMMIT_C, seen=104.0)])  # older
    store.record_instances([report(4, seen=50.0, anonymous=True), report(5, label="v1", seen=130.0)])
    answers = {
        "rejecting": rejecting,
        "all": store.instances(),
        "orders": store.instances("orders"),
        "orders prod": store.instances("orders", "prod"),
        "label v1": store.instances(label="v1"),
        "seen after 105": store.instances(seen_after=105.0),
        "first two": store.instances(limit=2),
        "first of orders": store.instances("orders", limit=1),
        "none": store.instances(limit=0),
        "pruned": store.prune(60.0),
    }
    answers["left"] = store.instances()
    answers["pruned again"] = store.prune(60.0)
    answers["served"] = store.served_versions(0.0)
    answers["served after 105"] = store.served_versions(105.0)
    answers["last served"] = store.served_versions(0.0, limit=1)
    answers["pruned at 120"] = store.prune(120.0)
    answers["served after pruning"] = store.served_versions(0.0)
    return answers


def test_redis_store_answers_as_the_sqlite_store(tmp_path, redis_server):
    sqlite, redis = (
        scenario(SQLiteStateStore(tmp_path / "state.db")),
        scenario(RedisStateStore(redis_server.url)),
    )
    assert sqlite == redis
    assert len(sqlite["all"]) == 5 and sqlite["pruned"] == 1 and sqlite["pruned again"] == 0
    assert [r.rejected_reason for r in redis["rejecting"]] == ['"port" bad']
    billing = next(r for r in redis["all"] if r.application == "billing")
    # the later report carries no rejection, so it clears it; last_seen never goes back
    assert (billing.version, billing.rejected_reason, billing.last_seen) == (COMMIT_C, None, 105.0)
    # the versions served (never one only `applied` named), the most recently served first
    assert sqlite["served"] == [COMMIT_A, COMMIT_B, COMMIT_C] and sqlite["last served"] == [COMMIT_A]
    assert sqlite["served after 105"] == [COMMIT_A, COMMIT_B]
    assert sqlite["served after pruning"] == [COMMIT_A]


def test_both_stores_filter_with_accept_before_the_limit(tmp_path, redis_server):
    """`instances(accept=...)` counts only accepted rows towards `limit`, across read chunks."""

    def filtered(store):
        store.record_instances([report(n, application="a-first") for n in range(1200)])
        store.record_instances([report(n, application="orders") for n in range(3)])

        def mine(record):
            return record.application == "orders" or record.instance_id == "orders-1100:1@host"

        return store.instances(limit=3, accept=mine), store.instances(limit=10, accept=mine)

    sqlite = filtered(SQLiteStateStore(tmp_path / "state.db"))
    assert sqlite == filtered(RedisStateStore(redis_server.url))
    assert [(r.application, r.instance_id) for r in sqlite[0]] == [
        ("a-first", "orders-1100:1@host"),
        ("orders", "orders-0:1@host"),
        ("orders", "orders-1:1@host"),
    ]
    assert len(sqlite[1]) == 4


def caller_scenario(store):
    """Rejections count distinct callers; canary answers keep their first time, up to the cap."""
    key = ("orders", "main", "r1")
    store.start_rollout(*key, 100.0)
    store.record_canary_served(*key, [("orders-1", COMMIT_A, 101.0), ("orders-2", COMMIT_A, 102.0)])
    store.record_canary_served(*key, [("orders-1", COMMIT_A, 150.0), ("orders-1", COMMIT_B, 151.0)])
    served = [
        store.canary_served_at(*key, "orders-1", COMMIT_A),
        store.canary_served_at(*key, "orders-1", COMMIT_B),
        store.canary_served_at(*key, "orders-3", COMMIT_A),
    ]
    counts = [
        store.record_rollout_rejection(*key, "orders-1", COMMIT_A, "bad", 110.0, "svc@10.0.0.1"),
        store.record_rollout_rejection(*key, "orders-2", COMMIT_A, "bad", 111.0, "svc@10.0.0.1"),
        store.record_rollout_rejection(*key, "orders-3", COMMIT_A, "bad", 112.0, "svc@10.0.0.2"),
        store.record_rollout_rejection(*key, "orders-4", COMMIT_A, "bad", 113.0),
    ]
    store.end_rollout(*key)
    return served, counts, store.canary_served_at(*key, "orders-1", COMMIT_A)


def test_both_stores_count_callers_and_remember_canary_answers(tmp_path, redis_server, monkeypatch):
    sqlite = caller_scenario(SQLiteStateStore(tmp_path / "state.db"))
    assert sqlite == caller_scenario(RedisStateStore(redis_server.url))
    assert sqlite == ([101.0, 151.0, None], [1, 1, 2, 3], None)
    import config_server.state.redis
    import config_server.state.sqlite

    for module in (config_server.state.sqlite, config_server.state.redis):
        monkeypatch.setattr(module, "MAX_SERVED_PER_ROLLOUT", 1)
    for store in (SQLiteStateStore(tmp_path / "capped.db"), RedisStateStore(redis_server.url)):
        store.record_canary_served("orders", "main", "capped", [("a", COMMIT_A, 1.0), ("b", COMMIT_A, 2.0)])
        store.record_canary_served("orders", "main", "capped", [("c", COMMIT_A, 3.0)])
        found = [store.canary_served_at("orders", "main", "capped", i, COMMIT_A) for i in "abc"]
        assert found == [1.0, None, None]


def test_cluster_mode_opens_the_redis_store(tmp_path, redis_server):
    assert isinstance(open_state_store(tmp_path, redis_server.url), RedisStateStore)
    assert isinstance(open_state_store(tmp_path), SQLiteStateStore)


def test_redis_down_is_a_clear_503_error(redis_server):
    store = RedisStateStore(redis_server.url)
    redis_server.stop()
    with pytest.raises(StateUnavailable, match="Redis") as info:
        store.instances("orders")
    assert info.value.status == 503
    with pytest.raises(StateUnavailable):
        store.record_instances([report(1)])
    with pytest.raises(StateUnavailable):
        store.prune(0.0)


def rollout_scenario(store):
    """Rollout progress: the first start and the first halt win, rejections count per instance."""
    first = store.start_rollout("orders", "main", "release/v2", 100.0)
    again = store.start_rollout("orders", "main", "release/v2", 200.0)
    store.start_rollout("billing", "main", "v3", 150.0)
    counts = [
        store.record_rollout_rejection("orders", "main", "release/v2", "orders-1", COMMIT_A, "bad", 110.0),
        store.record_rollout_rejection("orders", "main", "release/v2", "orders-1", COMMIT_A, "bad", 111.0),
        store.record_rollout_rejection("orders", "main", "release/v2", "orders-2", COMMIT_A, None, 112.0),
    ]
    halted = store.halt_rollout("orders", "main", "release/v2", "2 rejected", 120.0)
    halted_again = store.halt_rollout("orders", "main", "release/v2", "by hand", 130.0)
    unknown = store.halt_rollout("payments", "main", "x", "by hand", 130.0)
    answers = {
        "first": first,
        "again": again,
        "counts": counts,
        "halted": halted,
        "halted again": halted_again,
        "unknown": unknown,
        "rollouts": store.rollouts(),
        "rejections": store.rollout_rejections("orders", "main", "release/v2"),
    }
    store.end_rollout("orders", "main", "release/v2")
    answers["after end"] = store.rollouts()
    answers["rejections after end"] = store.rollout_rejections("orders", "main", "release/v2")
    answers["restarted"] = store.start_rollout("orders", "main", "release/v2", 300.0)
    return answers


def test_redis_store_keeps_rollouts_as_the_sqlite_store(tmp_path, redis_server):
    sqlite = rollout_scenario(SQLiteStateStore(tmp_path / "state.db"))
    redis = rollout_scenario(RedisStateStore(redis_server.url))
    assert sqlite == redis
    assert (redis["first"].started, redis["again"].started) == (100.0, 100.0)
    assert redis["counts"] == [1, 1, 2]
    assert (redis["halted again"].halted_at, redis["halted again"].halt_reason) == (120.0, "2 rejected")
    assert redis["unknown"] is None
    assert [r.application for r in redis["rollouts"]] == ["billing", "orders"]
    assert [(r.instance_id, r.seen) for r in redis["rejections"]] == [
        ("orders-1", 111.0),
        ("orders-2", 112.0),
    ]
    assert [r.application for r in redis["after end"]] == ["billing"] and redis["rejections after end"] == []
    assert (redis["restarted"].started, redis["restarted"].halted_at) == (300.0, None)


def test_a_state_db_from_before_callers_is_opened_and_counts_its_rows_by_instance(tmp_path):
    import sqlite3

    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE rollout_rejections (application TEXT NOT NULL, label TEXT NOT NULL, "
            "rollout_id TEXT NOT NULL, instance_id TEXT NOT NULL, version TEXT NOT NULL, reason TEXT, "
            "seen REAL NOT NULL, PRIMARY KEY (application, label, rollout_id, instance_id))"
        )
        conn.execute(
            "INSERT INTO rollout_rejections VALUES ('orders', 'main', 'r1', 'old-1', 'v', NULL, 1.0)"
        )
    conn.close()
    store = SQLiteStateStore(path)
    assert (
        store.record_rollout_rejection("orders", "main", "r1", "new-1", "v", None, 2.0, "svc@10.0.0.1") == 2
    )


def test_a_redis_outage_is_logged_once_by_the_rollouts_loop_and_once_when_it_ends(
    tmp_path, redis_server, serve, caplog
):
    """Before: a full traceback every tick (0.2 s) for as long as Redis was away."""
    import logging

    from tests.helpers import GitRepo, wait_for

    caplog.set_level(logging.INFO, logger="config_server.delivery.rollout_runner")
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path, redis=redis_server.url)
    rollouts = server.app.extensions["config_server"].rollouts
    ticks: list[bool] = []
    tick = rollouts.tick

    def counted() -> None:
        ticks.append(True)
        tick()

    rollouts.tick = counted  # the loop's own ticks, counted

    def said() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "config_server.delivery.rollout_runner"]

    redis_server.stop()
    wait_for(lambda: said(), what="the outage in the log")
    seen = len(ticks)
    wait_for(lambda: len(ticks) >= seen + 10, what="ten more ticks during the outage")
    [outage] = said()
    assert "cannot be reached" in outage.getMessage() and outage.exc_info is None
    redis_server.start()
    wait_for(lambda: len(said()) == 2, what="the end of the outage in the log")
    seen = len(ticks)
    wait_for(lambda: len(ticks) >= seen + 10, what="ten more ticks after it")
    assert [r.levelname for r in said()] == ["ERROR", "WARNING"]
    assert "back" in said()[1].getMessage()
    assert not any(r.exc_info for r in said())


def corrupt_redis(store: RedisStateStore) -> None:
    """What no server writes, written by hand into Redis."""
    key = "config-server:rollout:" + "\x1f".join(("orders", "main", "v2"))
    store.reader.hset(key, "started", "not-a-number")
    halted = "config-server:rollout:" + "\x1f".join(("billing", "main", "v3"))
    store.reader.hset(halted, "halted_at", "soon")
    rejections = "config-server:rollout-rejections:" + "\x1f".join(("orders", "main", "v2"))
    store.reader.hset(rejections, "orders-9", "{not json")


def corrupt_sqlite(store: SQLiteStateStore) -> None:
    """The same, written by hand into the SQLite file."""
    import sqlite3

    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE rollouts SET started = 'not-a-number' WHERE application = 'orders'")
        conn.execute("UPDATE rollouts SET halted_at = 'soon' WHERE application = 'billing'")
        conn.execute(
            "INSERT INTO rollout_rejections (application, label, rollout_id, instance_id, version, "
            "reason, seen) VALUES ('orders', 'main', 'v2', 'orders-9', 'x', NULL, 'then')"
        )


def unreadable_scenario(store, corrupt):
    """Records that cannot be read are returned with their problem, never raised; restoring them
    keeps what is readable, puts back the rest, and keeps an unreadable halt a halt."""
    store.start_rollout("orders", "main", "v2", 100.0)
    store.start_rollout("billing", "main", "v3", 150.0)
    store.start_rollout("payments", "main", "v1", 160.0)
    corrupt(store)
    answers = {"read": store.rollouts(), "rejections": store.rollout_rejections("orders", "main", "v2")}
    answers["orders restored"] = store.restore_rollout("orders", "main", "v2", 90.0, None, None)
    answers["billing restored"] = store.restore_rollout("billing", "main", "v3", 140.0, None, None)
    answers["payments halted"] = store.restore_rollout("payments", "main", "v1", 1.0, 170.0, "pager")
    answers["payments halted again"] = store.restore_rollout("payments", "main", "v1", 1.0, 180.0, "later")
    answers["missing restored"] = store.restore_rollout("stock", "main", "v9", 50.0, 60.0, "known halt")
    answers["after"] = store.rollouts()
    return answers


def test_unreadable_rollout_records_are_reported_and_restored_alike_in_both_stores(tmp_path, redis_server):
    """Before: float() and json.loads raised ValueError out of the Redis store, so every rollout
    tick failed; the SQLite store handed a string to the schedule's arithmetic."""
    sqlite = unreadable_scenario(SQLiteStateStore(tmp_path / "state.db"), corrupt_sqlite)
    redis = unreadable_scenario(RedisStateStore(redis_server.url), corrupt_redis)
    assert sqlite == redis
    by_app = {r.application: r for r in redis["read"]}
    assert by_app["orders"].problem == "started is 'not-a-number'"
    assert by_app["billing"].problem == "halted_at is 'soon'" and by_app["billing"].halted_at is not None
    assert by_app["payments"].problem is None
    assert [(r.instance_id, r.reason) for r in redis["rejections"]] == [
        ("orders-9", "(unreadable in the state store)")
    ]
    assert (redis["orders restored"].started, redis["orders restored"].halted_at) == (90.0, None)
    assert redis["billing restored"].halted_at == 150.0  # an unreadable halt stays a halt
    assert "could not be read" in redis["billing restored"].halt_reason
    assert (redis["payments halted"].started, redis["payments halted"].halt_reason) == (160.0, "pager")
    assert redis["payments halted again"] == redis["payments halted"]  # the first halt wins
    assert all(r.problem is None for r in redis["after"])
    assert [r.application for r in redis["after"]] == ["billing", "orders", "payments", "stock"]


def test_reports_taken_while_redis_is_away_are_written_when_it_is_back(redis_server):
    from config_server.observability.inventory import Inventory, parse_client_headers

    inventory = Inventory(RedisStateStore(redis_server.url))
    headers = parse_client_headers({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_CONFIG_CLIENT_ID": "orders-1"})
    redis_server.stop()
    inventory.observe(headers, "orders", "default", "main", COMMIT_A)
    with pytest.raises(StateUnavailable):
        inventory.flush()
    redis_server.start()
    assert inventory.flush() == 1
    assert [(r.instance_id, r.served) for r in inventory.instances()] == [("orders-1", COMMIT_A)]


def test_a_redis_rollout_key_of_another_type_is_that_rollouts_problem_and_a_restore_replaces_it(redis_server):
    store = RedisStateStore(redis_server.url)
    store.start_rollout("orders", "main", "v2", 100.0)
    store.start_rollout("billing", "main", "v3", 150.0)
    store.reader.set("config-server:rollout:" + "\x1f".join(("orders", "main", "v2")), "by hand")
    orders, billing = sorted(store.rollouts(), key=lambda r: r.application, reverse=True)
    assert orders.problem.startswith("not a hash") and orders.halted_at is not None
    assert billing.problem is None and billing.started == 150.0
    restored = store.restore_rollout("orders", "main", "v2", 100.0, 120.0, "pager")
    assert (restored.started, restored.halted_at, restored.halt_reason, restored.problem) == (
        100.0,
        120.0,
        "pager",
        None,
    )
    assert [r.problem for r in store.rollouts()] == [None, None]


def test_both_stores_list_the_instances_a_canary_served_alike(tmp_path, redis_server):
    """The cohort as it was, for `rollout status` after a halt: each instance once, sorted."""

    def served(store):
        key = ("orders", "main", "listed")
        store.record_canary_served(*key, [("orders-2", COMMIT_A, 1.0), ("orders-1", COMMIT_A, 2.0)])
        store.record_canary_served(*key, [("orders-2", COMMIT_B, 3.0), ("orders-3", COMMIT_B, 4.0)])
        return store.canary_served_instances(*key), store.canary_served_instances(*key, limit=2)

    sqlite = served(SQLiteStateStore(tmp_path / "state.db"))
    assert sqlite == served(RedisStateStore(redis_server.url))
    assert sqlite == (["orders-1", "orders-2", "orders-3"], ["orders-1", "orders-2"])


def _open_store(path: str, barrier, results) -> None:
    """In a process of its own, when all are ready: open (and so create) the store; report errors."""
    barrier.wait(timeout=30)
    try:
        SQLiteStateStore(path).close()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(repr(exc))
        return
    results.put("")


def test_workers_booting_together_all_open_a_new_state_db(tmp_path):
    """Before: two gunicorn workers creating a replica's state.db at once, one failed to boot with
    `database is locked` (switching to WAL does not wait on SQLite's busy handler)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")  # started together, as gunicorn forks its workers
    for attempt in range(10):
        path = str(tmp_path / f"state-{attempt}.db")
        barrier, results = context.Barrier(6), context.Queue()
        processes = [context.Process(target=_open_store, args=(path, barrier, results)) for _ in range(6)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=30) for _ in processes]
        for process in processes:
            process.join(timeout=10)
        assert outcomes == [""] * 6, outcomes
