"""`config-server backup` / `restore` of the state store: a round trip through a real server (a halted
rollout and inventory rows come back after the data dir is lost), taken while the server runs
and while a writer writes; restore refuses to replace an existing store without --force and
refuses a file that is not a state store."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import requests

from config_server.state.base import InstanceReport
from config_server.state.sqlite import SQLiteStateStore
from tests.helpers import GitRepo, wait_for
from tests.integration.test_rollouts_gunicorn import make_repo

CONFIG_SERVER = str(Path(sys.executable).with_name("config-server"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONFIG_SERVER, *args], capture_output=True, text=True, timeout=60)


def start(server_process, repo: GitRepo):
    server = server_process("--repo", str(repo.path), "--workers", "1")
    server.wait_ready(lambda: requests.get(f"{server.url}/health", timeout=1).ok)
    return server


def rollout(server) -> dict:
    return requests.get(f"{server.url}/rollouts", timeout=5).json()["rollouts"][0]


def instance_ids(server) -> set[str]:
    body = requests.get(f"{server.url}/instances?application=orders", timeout=5).json()
    return {i["id"] for i in body["instances"]}


def report(n: int, seen: float = 100.0) -> InstanceReport:
    return InstanceReport(
        instance_id=f"svc-{n}",
        application="orders",
        profiles="default",
        label="main",
        served="a" * 40,
        applied=None,
        rejected_version=None,
        rejected_reason=None,
        client_labels="",
        remote="10.0.0.1",
        user_agent="test",
        seen=seen,
        anonymous=False,
    )


def test_a_halted_rollout_and_the_inventory_survive_losing_the_data_dir(server_process, repo, tmp_path):
    make_repo(repo)
    data = tmp_path / "data"  # server_process's --data-dir
    server = start(server_process, repo)
    wait_for(lambda: rollout(server)["state"] == "running", what="the rollout to start")
    started = rollout(server)["started"]
    halted = requests.post(
        f"{server.url}/rollouts/orders/halt", json={"reason": "pager: bad canary"}, timeout=5
    )
    assert halted.status_code == 200, halted.text
    for n in range(5):
        requests.get(f"{server.url}/orders/default", headers={"X-Config-Client-Id": f"svc-{n}"}, timeout=5)
    wait_for(lambda: len(instance_ids(server)) == 5, what="the inventory to be written")

    backup = tmp_path / "backups" / "state-backup.db"
    backup.parent.mkdir()
    done = run("backup", str(backup), "--data-dir", str(data))  # while the server runs
    assert done.returncode == 0, done.stderr
    assert "rollouts 1" in done.stdout and "instances 5" in done.stdout
    assert not Path(f"{backup}-wal").exists()  # one self-contained file

    server.stop()
    shutil.rmtree(data)  # the machine is lost; the repository is still in git
    restored = run("restore", str(backup), "--data-dir", str(data))
    assert restored.returncode == 0, restored.stderr

    server = start(server_process, repo)
    wait_for(lambda: rollout(server)["state"] == "halted", what="the halt to be read back")
    after = rollout(server)
    assert after["started"] == started
    assert "pager: bad canary" in after["haltReason"]
    assert instance_ids(server) == {f"svc-{n}" for n in range(5)}


def test_a_backup_taken_while_a_writer_writes_is_consistent_and_complete_up_to_its_start(tmp_path):
    store = SQLiteStateStore(tmp_path / "data" / "state.db")
    store.record_instances([report(n) for n in range(100)])
    store.start_rollout("orders", "main", "r1", 10.0)
    store.halt_rollout("orders", "main", "r1", "bad canary", 20.0)
    store.record_rollout_rejection("orders", "main", "r1", "svc-1", "c" * 40, "schema: port", 15.0)
    stop = threading.Event()

    def write() -> None:
        n = 100
        while not stop.is_set():
            store.record_instances([report(n + k, seen=200.0) for k in range(50)])
            n += 50

    writer = threading.Thread(target=write)
    writer.start()
    try:
        done = run("backup", str(tmp_path / "copy.db"), "--data-dir", str(tmp_path / "data"))
    finally:
        stop.set()
        writer.join()
    assert done.returncode == 0, done.stderr

    copy = SQLiteStateStore(tmp_path / "copy.db")
    ids = {r.instance_id for r in copy.instances(limit=100_000)}
    assert {f"svc-{n}" for n in range(100)} <= ids
    assert len(ids) % 50 == 0  # whole transactions of the writer, never part of one
    [record] = copy.rollouts()
    assert (record.halted_at, record.halt_reason) == (20.0, "bad canary")
    assert [r.reason for r in copy.rollout_rejections("orders", "main", "r1")] == ["schema: port"]


def test_restore_refuses_to_replace_an_existing_store_without_force(tmp_path):
    data = tmp_path / "data"
    store = SQLiteStateStore(data / "state.db")
    store.record_instances([report(1)])
    assert run("backup", str(tmp_path / "copy.db"), "--data-dir", str(data)).returncode == 0
    store.record_instances([report(2)])  # recorded after the backup

    refused = run("restore", str(tmp_path / "copy.db"), "--data-dir", str(data))
    assert refused.returncode == 1
    assert "exists" in refused.stderr and "--force" in refused.stderr
    assert {r.instance_id for r in store.instances()} == {"svc-1", "svc-2"}  # left as it was

    forced = run("restore", str(tmp_path / "copy.db"), "--data-dir", str(data), "--force")
    assert forced.returncode == 0, forced.stderr
    assert {r.instance_id for r in store.instances()} == {"svc-1"}
    store.record_instances([report(3)])  # the restored store is written as before (WAL mode)
    assert {r.instance_id for r in store.instances()} == {"svc-1", "svc-3"}


def test_restore_refuses_a_file_that_is_not_a_state_store_and_leaves_the_store_alone(tmp_path):
    data = tmp_path / "data"
    SQLiteStateStore(data / "state.db").record_instances([report(1)])
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    refused = run("restore", str(junk), "--data-dir", str(data), "--force")
    assert refused.returncode == 1 and "not a SQLite state store" in refused.stderr
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE t (x)")
    refused = run("restore", str(other), "--data-dir", str(data), "--force")
    assert refused.returncode == 1 and "not a config-server state store" in refused.stderr
    assert {r.instance_id for r in SQLiteStateStore(data / "state.db").instances()} == {"svc-1"}


def test_backup_without_a_store_says_where_it_looked(tmp_path):
    missing = run("backup", str(tmp_path / "copy.db"), "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no state store at" in missing.stderr
    assert not (tmp_path / "copy.db").exists()
