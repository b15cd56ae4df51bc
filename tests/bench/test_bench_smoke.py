"""Every benchmark runs at a tiny size in the suite, so that none of them can rot.

They install their own tools (wrk, nginx, etcd, redis-server) when missing, as `make bench` does.
"""

import json

from bench import (
    client_reads,
    cluster,
    commit_to_callback,
    diff_scale,
    expansion_bomb,
    hostile_load,
    propagation,
    repo_scale,
    rollout_halt,
    serving,
    spellings,
    validate_scale,
    watcher_memory,
)


def read(path):
    return json.loads(path.read_text())


def test_commit_to_callback_smoke(tmp_path):
    out = tmp_path / "result.json"
    result = commit_to_callback.main(["--rounds", "2", "--workers", "1", "--json", str(out)])
    assert result["rounds"] == 2 and 0 < result["p50_ms"] < 10_000
    assert read(out)["p50_ms"] == result["p50_ms"] and read(out)["machine"]["nproc"] >= 1


def test_serving_smoke(tmp_path):
    out = tmp_path / "serving.json"
    args = ["--duration", "1", "--repeat", "1", "--connections", "4", "--threads", "1", "--workers", "1"]
    result = serving.main([*args, "--json", str(out)])
    servers = {row["server"]: row for row in result["rows"]}
    assert set(servers) == {
        "nginx (static file)",
        "bare Flask (same gunicorn)",
        "config-server",
        "config-server (auth file + audit log)",
        "config-server (no recording)",
    }
    assert all(row["rps"] > 0 and row["errors"] == 0 for row in servers.values())  # the token works
    assert result["ratio_to_bare_flask"] > 0 and read(out)["response_bytes"] > 100
    assert result["secured_ratio_to_bare_flask"] > 0 and result["secured_p99_ms"] > 0


def test_propagation_smoke(tmp_path):
    out = tmp_path / "propagation.json"
    result = propagation.main(["--sizes", "5", "--rounds", "1", "--workers", "1", "--json", str(out)])
    systems = {row["system"]: row for row in result["rows"]}
    assert set(systems) == {"config-server", "config-server (no recording)", "etcd"}
    assert all(row["watchers"] == 5 and 0 < row["max_ms"] < 30_000 for row in systems.values())


def test_watcher_memory_smoke(tmp_path):
    out = tmp_path / "memory.json"
    result = watcher_memory.main(["--watchers", "20", "--workers", "1", "--json", str(out)])
    assert result["watchers"] == 20 and result["rss_with_watchers_kib"] > 0


def test_repo_scale_smoke(tmp_path):
    out = tmp_path / "scale.json"
    args = [
        "--apps",
        "20",
        "--commits",
        "30",
        "--new-commits",
        "2",
        "--warm-requests",
        "20",
        "--workers",
        "1",
    ]
    result = repo_scale.main([*args, "--json", str(out)])
    assert result["applications"] == 20 and result["commits"] == 30
    assert result["ready_s"] > 0 and result["warm_ms"]["p99_ms"] > 0


def test_client_smoke(tmp_path):
    out = tmp_path / "client.json"
    result = client_reads.main(["--keys", "50", "--number", "1000", "--rounds", "3", "--json", str(out)])
    assert 0 < result["get_ns"]["get(hit)"] < 1_000_000 and result["apply_ms"]["p50_ms"] > 0


def test_expansion_bomb_smoke(tmp_path):
    out = tmp_path / "bomb.json"
    result = expansion_bomb.main(["--timeout", "20", "--json", str(out)])
    assert [row["answer"][:3] for row in result["rows"]] == ["422", "422"]  # broken: change safety
    assert read(out)["rows"][0]["peak_rss_mib"] > 0


def test_validate_scale_smoke(tmp_path):
    out = tmp_path / "validate.json"
    result = validate_scale.main(["--apps", "20", "--commits", "5", "--json", str(out)])
    assert result["validate_exit"] == 0 and result["validate_schema_exit"] == 0
    assert result["validate_summary"].startswith("0 problems in 21 environments")
    assert 0 < result["validate_s"] < 60 and read(out)["environment_schema_us"] > 0


def test_diff_scale_smoke(tmp_path):
    out = tmp_path / "diff.json"
    result = diff_scale.main(["--apps", "20", "--commits", "5", "--json", str(out)])
    assert result["shared_file"]["resolved"] == result["shared_file"]["changed"] == 21  # all, and application
    assert result["one_application"]["resolved"] == result["one_application"]["changed"] == 1
    assert 0 < result["one_application"]["command_s"] < 60 and read(out)["applications"] == 20


def test_cluster_smoke(tmp_path):
    out = tmp_path / "cluster.json"
    args = ["--watchers", "6", "--rounds", "1", "--interval", "1", "--clients", "6"]
    args += ["--single-watchers", "10", "--json", str(out)]
    result = cluster.main(args)
    modes = {row["mode"]: row for row in result["rows"]}
    assert set(modes) == {"redis", "interval"}
    assert all(row["watchers"] == 6 and 0 < row["max_ms"] < 30_000 for row in modes.values())
    assert all(sum(spread) == 6 and len(spread) == 3 for row in modes.values() for spread in row["spread"])
    behind_nginx = modes["redis"]["nginx_failover"]
    assert behind_nginx["on_killed_replica"] >= 2 and behind_nginx["next_commit_missed"] == 0
    moved = read(out)["failover"]
    assert moved["on_killed_replica"] == 2 and moved["next_commit_missed"] == 0
    single = result["single"]
    assert single["watchers"] == 10 and single["per_watcher_kib"] != 0 and single["harness"] == "idle"
    # Kernel receive times (CLOCK_REALTIME) come after the push's start, and not long after.
    assert 0 < single["p50_ms"] <= single["p99_ms"] < 30_000


def test_rollout_halt_smoke(tmp_path):
    out = tmp_path / "rollout_halt.json"
    result = rollout_halt.main(["--sizes", "10", "--rounds", "2", "--workers", "1", "--json", str(out)])
    (row,) = result["rows"]
    assert row["watchers"] == 10 and 0 < row["cohort"] < 10 and 0 < row["max_ms"] < 30_000
    assert read(out)["rows"] == result["rows"]


def test_hostile_load_smoke(tmp_path):
    out = tmp_path / "hostile_load.json"
    args = ["--watchers", "4", "--rounds", "2", "--interval", "0.5", "--workers", "1"]
    args += "--pipeliners 1 --slow-bodies 1 --non-readers 1 --parked 3 --spellings 3".split()
    result = hostile_load.main([*args, "--json", str(out)])
    phases = {row["phase"]: row for row in result["rows"]}
    assert set(phases) == {"no attack", "under attack"}
    assert all(row["answers"] == 8 and row["missed"] == 0 and row["probes"] > 0 for row in phases.values())
    opened = phases["under attack"]["attack_sockets_opened"]
    assert opened["parked"] >= 3 and opened["spelling"] >= 3 and opened["pipeliner"] >= 1
    assert read(out)["p99_ratio"] == result["p99_ratio"] > 0


def test_spellings_smoke(tmp_path):
    out = tmp_path / "spellings.json"
    result = spellings.main(
        ["--spellings", "70", "--slots-per-caller", "64", "--rounds", "2", "--json", str(out)]
    )
    assert [row[0] for row in result["rows"]] == [1, 2]
    assert all(row[1] != "missed" and row[2] != "missed" for row in result["rows"])  # every spelling answered
    assert read(out)["rows"] == result["rows"]
