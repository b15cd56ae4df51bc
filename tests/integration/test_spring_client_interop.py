"""A published third-party Spring Cloud Config client (PyPI `config-client`) against our server.

It is used only through its own public API, exactly as a team migrating from Spring Cloud Config
would use it; it must read the same values a Spring server would give it.
"""

import pytest
from config import ConfigClient

FILES = {
    "application.yml": "database:\n  host: localhost\n  port: 5432\nfeatures: [audit]\n",
    "application-prod.yml": "database:\n  host: db.prod.internal\n",
    "orders.yml": "orders:\n  max-items: 100\n",
    "orders-prod.yml": "orders:\n  max-items: 500\n",
    "nginx.conf": "upstream ${database.host}:${database.port}\n",
}


@pytest.fixture
def server(repo, serve):
    repo.commit(FILES)
    repo.git("tag", "v1")
    return serve(repo.path)


def test_client_reads_merged_settings(server):
    client = ConfigClient(
        address=server.url, app_name="orders", profile="prod", label="main", fail_fast=False
    )
    client.get_config()
    assert client.get("orders.max-items") == 500
    assert client.get("database.host") == "db.prod.internal"
    assert client.get("database.port") == 5432


def test_client_reads_at_a_tag_and_fetches_a_file(server):
    client = ConfigClient(
        address=server.url, app_name="orders", profile="default", label="v1", fail_fast=False
    )
    client.get_config()
    assert client.get("orders.max-items") == 100
    assert client.get_file("nginx.conf") == "upstream localhost:5432\n"


def test_client_sees_an_unknown_label_as_a_failure(server):
    client = ConfigClient(
        address=server.url, app_name="orders", profile="prod", label="nope", fail_fast=False
    )
    with pytest.raises(ConnectionError):
        client.get_config()


def test_client_fetches_several_names_and_labels(repo, server):
    """`app_name="orders,shared"` as `spring.cloud.config.name` would send it, at a label list."""
    repo.commit(
        {
            "shared.yml": "orders:\n  max-items: 7\n  region: eu\n",
            "shared-prod.yml": "database:\n  port: 6543\n",
        }
    )
    client = ConfigClient(
        address=server.url, app_name="orders,shared", profile="prod", label="v1,main", fail_fast=False
    )
    client.get_config()
    assert client.get("orders.max-items") == 500  # orders-prod.yml: profile files beat shared.yml
    assert client.get("orders.region") == "eu"
    assert client.get("database.port") == 6543  # shared-prod.yml beats application.yml
    assert client.get("database.host") == "db.prod.internal"
    missing = ConfigClient(
        address=server.url, app_name="orders,shared", profile="prod", label="main,nope", fail_fast=False
    )
    with pytest.raises(ConnectionError):
        missing.get_config()
