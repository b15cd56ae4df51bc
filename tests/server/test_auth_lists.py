"""Access control over lists: a caller must be allowed every application and every label it lists."""

import json

import pytest

from tests.helpers import wait_for
from tests.server.test_auth import TOKENS, auth_yaml


@pytest.fixture
def secured(repo, serve, tmp_path):
    repo.commit({"application.yml": "shared: 1\n", "orders.yml": "a: 1\n", "payments.yml": "p: 1\n"})
    repo.git("branch", "release-1")
    repo.git("branch", "experiment")
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(auth_yaml())
    server = serve(repo.path, auth_file=str(auth_file), audit_log=str(tmp_path / "audit.log"))
    server.audit = tmp_path / "audit.log"
    return server


ORDERS = {"Authorization": f"Bearer {TOKENS['orders']}"}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/orders,orders/default", 200),
        ("/orders/default/main,release-1", 200),
        ("/orders/prod/release-1,main", 200),
        ("/main,release-1/orders-prod.yml", 200),
        ("/orders,payments/default", 403),
        ("/payments,orders/default", 403),
        ("/orders,application/default", 403),
        ("/orders/default/main,experiment", 403),
        ("/orders/default/experiment,main", 403),
        ("/main,experiment/orders-default.yml", 403),
        ("/orders,payments-default.json", 403),
        ("/orders/default/main,experiment/orders.yml", 403),
        ("/orders,payments/default/main/orders.yml", 403),
    ],
)
def test_every_listed_application_and_label_must_be_allowed(secured, http, path, status):
    response = http.get(secured.url + path, headers=ORDERS)
    assert response.status_code == status, response.text
    if status == 403:
        message = response.json()["message"]
        assert "orders-service" in message
        assert "payments" in message or "experiment" in message or "application" in message


def test_a_denied_list_is_audited_with_the_whole_list(secured, http):
    http.get(f"{secured.url}/orders,payments/default/main,release-1", headers=ORDERS)

    def lines():
        secured.app.extensions["config_server"].audit.flush()
        return [json.loads(line) for line in secured.audit.read_text().splitlines()]

    denied = wait_for(lambda: lines(), what="an audit line")[0]
    assert denied["event"] == "denied" and denied["status"] == 403
    assert (denied["application"], denied["label"]) == ("orders,payments", "main,release-1")
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    assert (
        http.get(f"{secured.url}/orders,payments/default/main,experiment", headers=admin).status_code == 200
    )
