"""An instance is current when the settings it runs equal the newest ones of its environment
(their content ETag), not when its commit id is the label's newest: a commit to another
application's file leaves every `orders` instance current (issue 20 item 1)."""

from __future__ import annotations

import requests

from config_client import ConfigClient
from config_client.cli import main as client_main
from tests.helpers import wait_for


def test_a_commit_to_payments_only_leaves_orders_instances_current(repo, serve, capsys):
    first = repo.commit(
        {
            "orders.yml": "orders:\n  limit: 1\n",
            "orders-prod.yml": "orders:\n  limit: 2\n",
            "payments.yml": "p: 1\n",
        }
    )
    server = serve(repo.path)
    state = server.app.extensions["config_server"]
    clients = [
        ConfigClient(server.url, "orders", "prod", client_id=f"orders-{n}", watch=True, wait=2)
        for n in range(2)
    ]
    try:
        for client in clients:
            client.start()
        assert {c.version for c in clients} == {first}
        second = repo.commit({"payments.yml": "p: 2\n"})
        wait_for(
            lambda: requests.get(f"{server.url}/payments/default", timeout=5).json()["version"] == second,
            what="the server to serve the payments commit",
        )
        # the clients re-poll with the unchanged ETag and keep running the first commit's settings
        wait_for(
            lambda: (
                state.inventory.flush() is not None
                and {r.served for r in state.store.instances("orders")} == {second}
            ),
            what="both clients to poll after the commit",
        )
        assert {c.version for c in clients} == {first}
        body = requests.get(f"{server.url}/instances?application=orders", timeout=5).json()
        assert {i["id"]: i["current"] for i in body["instances"]} == {"orders-0": True, "orders-1": True}
        (env,) = body["environments"]
        assert env["current"] == 2 and env["instances"] == 2
        fragment = requests.get(f"{server.url}/console/app/orders/instances?profiles=prod", timeout=5).text
        assert 'data-catching-up="false"' in fragment
        assert fragment.count('data-current="true"') == 2
        page = requests.get(f"{server.url}/console/app/orders?profiles=prod", timeout=5).text
        assert 'data-catching-up="false"' in page
        assert client_main(["instances", "--server", server.url, "orders", "--profiles", "prod"]) == 0
        rows = capsys.readouterr().out.splitlines()[1:]
        assert len(rows) == 2 and all(row.rstrip().endswith("up (current)") for row in rows), rows
        # a change to orders' own settings: an instance still running the first commit is behind
        repo.commit({"orders-prod.yml": "orders:\n  limit: 3\n"})
        wait_for(lambda: {c.version for c in clients} == {repo.head()}, what="the clients to apply it")
        headers = {"X-Config-Client-Id": "orders-old", "X-Config-Applied": first}
        assert requests.get(f"{server.url}/orders/prod", headers=headers, timeout=5).ok
        state.inventory.flush()
        body = requests.get(f"{server.url}/instances?application=orders", timeout=5).json()
        assert {i["id"]: i["current"] for i in body["instances"]} == {
            "orders-0": True,
            "orders-1": True,
            "orders-old": False,
        }
        fragment = requests.get(f"{server.url}/console/app/orders/instances?profiles=prod", timeout=5).text
        assert 'data-catching-up="true"' in fragment
    finally:
        for client in clients:
            client.stop()


def _report(url: str, instance: str, applied: str) -> None:
    headers = {"X-Config-Client-Id": instance, "X-Config-Applied": applied}
    assert requests.get(f"{url}/orders/prod", headers=headers, timeout=5).ok


def test_the_instances_metric_counts_instances_running_the_newest_settings_under_the_newest(repo, serve):
    from tests.server.test_metrics import scrape, value

    first = repo.commit({"orders.yml": "orders:\n  limit: 1\n", "payments.yml": "p: 1\n"})
    server = serve(repo.path)
    state = server.app.extensions["config_server"]
    for n in range(2):
        _report(server.url, f"orders-{n}", first)
    second = repo.commit({"payments.yml": "p: 2\n"})
    wait_for(
        lambda: requests.get(f"{server.url}/payments/default", timeout=5).json()["version"] == second,
        what="the server to serve the payments commit",
    )
    for n in range(2):
        _report(server.url, f"orders-{n}", first)  # served the second, still running the first
    _report(server.url, "orders-old", "0" * 40)  # a version never served: other, as before
    state.inventory.flush()
    text = scrape(server.url)
    assert value(text, "config_server_instances", application="orders", version=second) == 2
    assert value(text, "config_server_instances", application="orders", version=first) == 0
    assert value(text, "config_server_instances", application="orders", version="other") == 1
    # orders' own settings change: the instances still on the first commit are behind, not newest
    third = repo.commit({"orders.yml": "orders:\n  limit: 2\n"})
    wait_for(
        lambda: requests.get(f"{server.url}/orders/prod", timeout=5).json()["version"] == third,
        what="the server to serve the orders commit",
    )
    for n in range(2):
        _report(server.url, f"orders-{n}", first)
    state.inventory.flush()
    text = scrape(server.url)
    # the poll that waited for the third commit runs it; the two behind and orders-old do not
    assert value(text, "config_server_instances", application="orders", version=third) == 1
    behind = [
        value(text, "config_server_instances", application="orders", version=v) for v in (first, "other")
    ]
    assert sum(behind) == 3


def test_the_instances_summary_names_the_commit_that_last_changed_the_settings(repo, serve):
    """`changedIn`: a commit to payments.yml (or a comment in orders.yml) leaves it at the commit
    that last changed orders/prod's resolved settings; a real change moves it."""
    first = repo.commit({"orders.yml": "orders:\n  limit: 1\n", "payments.yml": "p: 1\n"})
    server = serve(repo.path)
    state = server.app.extensions["config_server"]

    def changed_in() -> str | None:
        state.inventory.flush()
        body = requests.get(f"{server.url}/instances?application=orders", timeout=5).json()
        (env,) = body["environments"]
        return env["changedIn"]

    _report(server.url, "orders-1", first)
    assert changed_in() == first
    repo.commit({"payments.yml": "p: 2\n"})
    repo.commit({"orders.yml": "# a comment only\norders:\n  limit: 1\n"})
    _report(server.url, "orders-1", first)
    assert changed_in() == first
    third = repo.commit({"orders.yml": "orders:\n  limit: 2\n"})
    _report(server.url, "orders-1", third)
    assert changed_in() == third
