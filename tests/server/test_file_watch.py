"""File watching off the gevent hub: watchdog in a child process, restarted, gone with its worker."""

import os
import signal
import threading
from pathlib import Path

import pytest
import requests

from config_server.delivery.file_watch import ChildFileWatch, ThreadFileWatch
from tests.helpers import wait_for


def _children_watching(parent_pid: int) -> list[int]:
    """Pids of file-watcher children of a process (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent_pid and b"config_server.delivery.file_watch_child" in cmdline:
            found.append(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0) until reaped; it is gone all the same.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize("watch_class", [ChildFileWatch, ThreadFileWatch])
def test_a_written_file_is_reported_with_its_path(tmp_path, watch_class):
    seen: list[list[str]] = []
    lock = threading.Lock()

    def on_paths(paths):
        with lock:
            seen.append(paths)

    watch = watch_class([(tmp_path, True)], on_paths).start()
    try:
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "orders.yml").write_text("a: 1\n")
        written = str(tmp_path / "sub" / "orders.yml")
        wait_for(lambda: any(written in paths for paths in seen), what="the event")
    finally:
        watch.stop()


def test_a_child_that_dies_is_started_again_and_asks_for_a_full_check(tmp_path, monkeypatch):
    monkeypatch.setattr("config_server.delivery.file_watch.RESTART_DELAYS", (0.1,))
    seen: list[list[str]] = []
    watch = ChildFileWatch([(tmp_path, False)], seen.append).start()
    try:
        first = watch.pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: watch.pid not in (None, first) and [] in seen, what="a new child")
        (tmp_path / "after.yml").write_text("b: 2\n")
        wait_for(lambda: any(str(tmp_path / "after.yml") in paths for paths in seen), what="its events")
    finally:
        watch.stop()
    assert _gone(watch.pid)


def test_a_folder_that_cannot_be_watched_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        ChildFileWatch([(tmp_path / "missing", False)], lambda paths: None).start()


def test_the_watcher_child_ends_with_its_gevent_worker(server_process, repo):
    repo.commit({"orders.yml": "value: 1\n"})
    server = server_process("--repo", str(repo.path), "--workers", "1")
    server.wait_ready(lambda: requests.get(f"{server.url}/health", timeout=1).ok)
    worker = requests.get(f"{server.url}/health", timeout=5).json()["details"]["worker"]
    children = wait_for(lambda: _children_watching(worker), what="the worker's file watcher")
    assert len(children) == 1
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: _gone(children[0]), what="the orphaned watcher to exit")
