"""Our client with Spring's lists: `ConfigClient(url, "orders,shared", "prod", label="main,release-1")`."""

from config_client import ConfigClient
from config_client.transport import Transport
from tests.helpers import wait_for


def test_transport_keeps_commas_and_writes_a_slash_as_underscore_alias_in_each_label():
    transport = Transport("http://config.example/")
    try:
        url = transport.environment_url("orders,shared", "dev,prod", "main,release/1")
    finally:
        transport.close()
    assert url == "http://config.example/orders,shared/dev,prod/main,release(_)1"


def test_client_reads_and_watches_several_names_and_labels(repo, serve, tmp_path):
    repo.commit({"application.yml": "region: us\n", "orders.yml": "limit: 1\n", "shared.yml": "limit: 2\n"})
    repo.git("checkout", "--quiet", "-b", "release-1")
    release = repo.commit({"shared-prod.yml": "region: eu\n"})
    repo.git("checkout", "--quiet", "main")
    server = serve(repo.path)
    client = ConfigClient(
        server.url, "orders,shared", "prod", label="main,release-1", wait=5, cache_dir=tmp_path / "lkg"
    ).start()
    try:
        assert client.get("limit") == 2
        assert client.get("region") == "eu"
        assert client.version == f"{repo.head()},{release}"
        main = repo.commit({"orders.yml": "limit: 1\nextra: yes\n"})
        wait_for(lambda: client.get("extra") is True, what="the client to see the change on main")
        assert client.version == f"{main},{release}"
    finally:
        client.stop()
