"""The client resolves `${...}` placeholders as the server renders them (issue 20 item 3).

Against the whole merged environment, then the process environment, then `${key:default}`; a
change to a referenced key changes the derived key; a placeholder that cannot be resolved
rejects the version, naming the key.
"""

from __future__ import annotations

import dataclasses

import pytest
import requests

from config_client import RejectedVersion
from config_client import cli as client_cli
from config_client.snapshot import Snapshot
from tests.client.conftest import environment
from tests.helpers import wait_for

FILES = {
    "application.yml": "shop:\n  base: https://shop.example.com\n",
    "orders.yml": (
        "orders:\n"
        "  currency: USD\n"
        "  confirmation-url: ${shop.base}/orders/${orders.currency}\n"
        "  region: ${ORDERS_REGION_T20:eu}\n"
        "  retries: ${orders.missing-retries:3}\n"
    ),
}


@dataclasses.dataclass
class Orders:
    currency: str
    confirmation_url: str
    region: str
    retries: int


def test_bound_model_get_and_cli_see_resolved_placeholders(repo, serve, clients, capsys):
    repo.commit(FILES)
    server = serve(repo.path)
    client = clients(server.url, "orders")
    orders = client.bind(Orders, prefix="orders")
    client.start()
    url = "https://shop.example.com/orders/USD"
    assert client.get("orders.confirmation-url") == url
    assert client.snapshot.get("orders.retries") == "3" and client.get("orders.region") == "eu"
    assert orders.current() == Orders("USD", url, "eu", 3)
    assert client.settings["orders"]["confirmation-url"] == url
    rendered = requests.get(f"{server.url}/orders-default.json", timeout=5).json()
    assert client.settings == rendered  # the client agrees with the server's rendering
    code = client_cli.main(["get", "--server", server.url, "orders", "default", "orders.confirmation-url"])
    assert code == 0 and capsys.readouterr().out == url + "\n"


def test_placeholders_fall_back_to_the_process_environment_after_the_settings(monkeypatch):
    monkeypatch.setenv("ORDERS_REGION_T20", "us")
    monkeypatch.setenv("SHOP_NAME", "from-env")
    snap = Snapshot(
        environment({"a": "${ORDERS_REGION_T20:eu}", "b": "${shop.name}", "c": "${c2}", "c2": "x"})
    )
    assert (snap.get("a"), snap.get("b"), snap.get("c")) == ("us", "from-env", "x")
    assert snap.environment["propertySources"][0]["source"]["a"] == "${ORDERS_REGION_T20:eu}"  # raw


def test_change_to_a_referenced_key_fires_a_listener_for_the_derived_key(repo, serve, clients):
    repo.commit(FILES)
    server = serve(repo.path)
    client = clients(server.url, "orders").start()
    seen = []
    client.on_change(seen.append, keys="orders.confirmation-url")
    repo.commit({"orders.yml": FILES["orders.yml"].replace("USD", "EUR")})
    wait_for(lambda: seen, what="the listener for the derived key")
    change = seen[0]
    assert change.changed["orders.confirmation-url"] == (
        "https://shop.example.com/orders/USD",
        "https://shop.example.com/orders/EUR",
    )
    assert change.keys == ["orders.confirmation-url"]  # filtered to the key asked for
    assert client.get("orders.confirmation-url") == "https://shop.example.com/orders/EUR"


def test_unresolvable_placeholder_rejects_the_version_naming_the_key(env_server, clients):
    env_server.publish(
        environment({"orders.currency": "USD", "url": "/o/${orders.currency}"}, version="good")
    )
    client = clients(env_server.url, "orders").start()
    seen = []
    client.on_change(seen.append)
    env_server.publish(environment({"url": "/o/${orders.currency}", "name": "two"}, version="broken"))
    wait_for(lambda: client.rejected, what="the version to be refused")
    version, reason = client.rejected
    assert version == "broken" and "url" in reason and "${orders.currency}" in reason
    assert client.version == "good" and client.get("url") == "/o/USD" and seen == []
    wait_for(
        lambda: any(h.get("X-Config-Rejected", "").startswith("broken;") for h in env_server.requests),
        what="the refusal reported to the server",
    )
    with pytest.raises(RejectedVersion, match="a: placeholder"):
        Snapshot(environment({"a": "${b}", "b": "${a}"}))  # a cycle never resolves
