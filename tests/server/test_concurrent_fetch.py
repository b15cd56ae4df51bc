"""Concurrent fetches inside one gevent worker (webhooks, the interval loop, cluster hints at once)
take turns cooperatively instead of freezing the worker on the mirror's file lock."""

from concurrent.futures import ThreadPoolExecutor

import requests

from tests.helpers import http_ready


def test_concurrent_webhooks_in_one_gevent_worker_all_answer(repo, git_daemon, server_process):
    repo.commit({"orders.yml": "a: 1\n"})
    url = git_daemon(repo)
    server = server_process("--repo", url, "--workers", "1", "--refresh-interval", "0.2")
    server.wait_ready(lambda: http_ready(f"{server.url}/health"))

    def webhook(_: int) -> int:
        return requests.post(f"{server.url}/monitor", data={"path": "orders.yml"}, timeout=20).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(webhook, range(12))) == [200] * 12
