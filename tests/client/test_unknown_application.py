"""A client started for an application the server holds no file for (issue 20 item 2): a warning
naming the closest known application, or, with `strict=True`, an error at start."""

from __future__ import annotations

import logging

import pytest

from config_client import UnknownApplication


@pytest.fixture
def server(repo, serve):
    repo.commit({"application.yml": "shared: 1\n", "orders.yml": "a: 1\n", "inventory.yml": "b: 2\n"})
    return serve(repo.path)


def test_a_misspelt_application_logs_a_warning_naming_the_closest_one(server, clients, caplog):
    with caplog.at_level(logging.WARNING, logger="config_client.client"):
        client = clients(server.url, "ordres", watch=False).start()
        client.refresh()
    assert client.get("shared") == 1  # served, as Spring serves it
    warnings = [r.getMessage() for r in caplog.records if r.name == "config_client.client"]
    assert warnings == [
        "the config server has no configuration file for application 'ordres' "
        "(it serves only the shared settings); did you mean 'orders'?"
    ]


def test_a_known_application_logs_no_such_warning(server, clients, caplog):
    with caplog.at_level(logging.WARNING, logger="config_client.client"):
        client = clients(server.url, "orders,inventory", watch=False).start()
    assert client.get("a") == 1
    assert not [r for r in caplog.records if "no configuration file" in r.getMessage()]


def test_strict_makes_an_unknown_application_an_error_at_start(server, clients):
    client = clients(server.url, "orders,invntory", strict=True, watch=False)
    with pytest.raises(UnknownApplication, match="'invntory'.*did you mean 'inventory'") as raised:
        client.start()
    assert raised.value.application == "invntory" and raised.value.closest == "inventory"
    assert client.get("a") is None  # nothing applied
    assert clients(server.url, "orders", strict=True, watch=False).start().get("a") == 1
